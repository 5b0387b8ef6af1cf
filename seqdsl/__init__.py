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
           "__version__", "load", "parse"]
