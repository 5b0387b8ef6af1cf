"""seqdsl: declare hybrid sequence models in .seq, check them, cost them, compile them.

    import seqdsl
    program = seqdsl.load("specs/transformer_lm.seq")
    model = program.model()            # the ModelGraph (networkx DiGraph inside)
    print(model.params, model.outputs)

Nothing here imports torch; `seqdsl.build` (the torch backend) does, lazily.
"""
from __future__ import annotations

from .check.elaborate import load, parse
from .cost.estimate import estimate
from .errors import Diagnostic, SpecError
from .graph.ir import ModelGraph, Node, Program, TensorType

__version__ = "0.1.0"

__all__ = ["Diagnostic", "ModelGraph", "Node", "Program", "SpecError", "TensorType",
           "__version__", "build", "compile_model", "estimate", "load", "parse"]


def __getattr__(name: str):
    if name in ("build", "compile_model"):
        from .backend import seqmodel   # lazy: torch loads only when the backend is first used
        return getattr(seqmodel, name)
    raise AttributeError(f"module 'seqdsl' has no attribute {name!r}")
