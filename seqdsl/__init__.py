"""seqdsl: declare hybrid sequence models in .seq, check them, cost them, compile them.

    import seqdsl
    program = seqdsl.load("specs/transformer_lm.seq")
    model = program.model()            # the ModelGraph (networkx DiGraph inside)
    print(model.params, model.outputs)

Nothing here imports torch; `seqdsl.build` (the torch backend) does, lazily.
"""
from __future__ import annotations

from .errors import Diagnostic, SpecError
from .check.elaborate import load, parse
from .graph.ir import ModelGraph, Node, Program, TensorType

__version__ = "0.1.0"

__all__ = ["Diagnostic", "ModelGraph", "Node", "Program", "SpecError", "TensorType",
           "__version__", "build", "compile_model", "estimate", "load", "parse"]


def __getattr__(name: str):
    # Lazy: the cost model (sympy) loads on first use of seqdsl.estimate(...).
    if name == "estimate":
        from .cost.estimate import estimate
        return estimate
    if name in ("build", "compile_model"):
        # Lazy: torch loads only when the backend is first used.
        from . import backend
        return getattr(backend, name)
    raise AttributeError(f"module 'seqdsl' has no attribute {name!r}")
