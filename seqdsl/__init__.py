"""seqdsl: declare hybrid sequence models in .seq, check them, cost them, compile them.

    import seqdsl
    program = seqdsl.load("specs/transformer_lm.seq")
    model = program.model()            # the ModelGraph (networkx DiGraph inside)
    print(model.params, model.outputs)

Nothing here imports torch; `seqdsl.build` (the torch backend) does, lazily.
"""
from __future__ import annotations

from .diagnostics import Diagnostic, SpecError
from .elaborate import load, parse
from .ir import ModelGraph, Node, Program, TensorType

__version__ = "0.1.0"

__all__ = ["Diagnostic", "ModelGraph", "Node", "Program", "SpecError", "TensorType",
           "__version__", "build", "compile_model", "estimate", "load", "parse"]


def __getattr__(name: str):
    # Lazy: the cost model (sympy) loads on first use of seqdsl.estimate(...).
    if name == "estimate":
        import importlib
        return importlib.import_module(".estimate", __name__)  # callable: seqdsl.estimate(...)
    if name in ("build", "compile_model"):
        # Lazy: torch loads only when the backend is first used.
        import importlib
        return getattr(importlib.import_module(".backend", __name__), name)
    raise AttributeError(f"module 'seqdsl' has no attribute {name!r}")
