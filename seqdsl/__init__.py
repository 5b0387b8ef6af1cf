"""seqdsl: declare hybrid sequence models in .seq, check them, cost them, compile them.

    import seqdsl
    program = seqdsl.load("specs/transformer_lm.seq")
    model = program.model()            # the ModelGraph (networkx DiGraph inside)
    print(model.params, model.outputs)

Nothing here imports torch; `seqdsl.build` (the torch backend) does, lazily;
the rest of the API loads sympy, lark and pydantic when first used.
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


_sigint_seen = False   # a Ctrl-C arrived while the command was working


def _on_sigint(signum, frame):
    """Ctrl-C once the command works: its handlers remove what it was writing."""
    global _sigint_seen
    _sigint_seen = True
    raise KeyboardInterrupt


def _on_sigint_loading(signum, frame):
    """Ctrl-C while the command's modules load (nothing written yet, no
    handler of its own in place): exit at once."""
    _exit_interrupted()


def _sigint_from_now_raises() -> None:
    """The command's entry point starts its work: Ctrl-C raises
    KeyboardInterrupt from here on (entry() catches it)."""
    if _running_as_cli():
        _signal.signal(_signal.SIGINT, _on_sigint)


def _exit_interrupted() -> None:
    """One line and exit 130, as the command's entry point does."""
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    _sys.stderr.write("seqdsl: interrupted\n")
    _sys.stderr.flush()
    _os._exit(130)


if _running_as_cli():
    # until the entry point runs (`_sigint_from_now_raises`), a Ctrl-C lands in
    # module-level imports that no handler of the command surrounds
    _signal.signal(_signal.SIGINT, _on_sigint_loading)

from .errors import Diagnostic, SpecError

__version__ = "0.1.0"

__all__ = ["Diagnostic", "ModelGraph", "Node", "Program", "SpecError", "TensorType",
           "__version__", "build", "compile_model", "estimate", "load", "parse"]


def __getattr__(name: str):
    """The rest of the API loads when first used: sympy, pydantic and lark are
    most of a short command's first second, and a cached estimate needs none."""
    if name in ("load", "parse"):
        from .check import elaborate   # lazy: lark, sympy, pydantic
        return getattr(elaborate, name)
    if name == "estimate":
        from .cost.estimate import estimate   # lazy: sympy, pydantic
        return estimate
    if name in ("ModelGraph", "Node", "Program", "TensorType"):
        from .graph import ir   # lazy: sympy
        return getattr(ir, name)
    if name in ("build", "compile_model"):
        from .backend import seqmodel   # lazy: torch loads only when the backend is first used
        return getattr(seqmodel, name)
    raise AttributeError(f"module 'seqdsl' has no attribute {name!r}")
