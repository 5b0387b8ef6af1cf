"""seqdsl: declare hybrid sequence models in .seq, check them, cost them, compile them.

    import seqdsl
    program = seqdsl.load("specs/transformer_lm.seq")
    model = program.model()            # the ModelGraph (networkx DiGraph inside)
    print(model.params, model.outputs)

Nothing here imports torch; `seqdsl.build` (the torch backend) does, lazily.
"""
from __future__ import annotations

import os as _os
import signal as _signal
import sys as _sys


def _running_as_cli() -> bool:
    """Whether this process is the `seqdsl` command (`python -m seqdsl` or
    the console script), which owns Ctrl-C: exit 130 with one line."""
    argv = getattr(_sys, "orig_argv", None) or _sys.argv
    if "-m" in argv[:-1] and argv[argv.index("-m") + 1] == "seqdsl":
        return True
    return bool(_sys.argv) and _os.path.basename(_sys.argv[0]) in ("seqdsl", "seqdsl.exe")


try:   # the heavy imports (sympy, pydantic, lark): most of a short command's first second
    from .check.elaborate import load, parse
    from .cost.estimate import estimate
    from .errors import Diagnostic, SpecError
    from .graph.ir import ModelGraph, Node, Program, TensorType
except KeyboardInterrupt:
    if not _running_as_cli():
        raise
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    _sys.stderr.write("seqdsl: interrupted\n")
    _sys.stderr.flush()
    _os._exit(130)

__version__ = "0.1.0"

__all__ = ["Diagnostic", "ModelGraph", "Node", "Program", "SpecError", "TensorType",
           "__version__", "build", "compile_model", "estimate", "load", "parse"]


def __getattr__(name: str):
    if name in ("build", "compile_model"):
        from .backend import seqmodel   # lazy: torch loads only when the backend is first used
        return getattr(seqmodel, name)
    raise AttributeError(f"module 'seqdsl' has no attribute {name!r}")
