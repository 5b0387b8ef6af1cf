"""The `seqdsl` command: argument parsing, exit codes, tables and plots.

`app` builds the parser and runs a command; each command's work lives in the
library (seqdsl.check, seqdsl.cost, seqdsl.backend), never here. A repeated
`compile --estimate` is answered from the per-user cache before any of that
loads (`estimate.run_cached`, cli/cache.py).
"""
import gc
import signal
import sys

import seqdsl

from .estimate import run_cached
from .exits import finish_output, interrupted, output_error

__all__ = ["entry", "main"]


def entry() -> None:
    """The console script: a cached estimate if this command line is one
    (no sympy, lark or pydantic loaded), else `app.entry`."""
    seqdsl._sigint_from_now_raises()
    try:
        code = run_cached(sys.argv[1:])
    except KeyboardInterrupt:
        code = interrupted()
    except OSError as exc:     # printing: stdout full or closed (the cache's own errors are misses)
        code = output_error(exc)
    if code is None:
        try:
            from .app import entry as full   # lazy: lark, sympy, pydantic
        except BaseException as exc:  # Ctrl-C while it loads: one line, exit 130
            if not (isinstance(exc, KeyboardInterrupt) or seqdsl._sigint_seen):
                raise
            seqdsl._exit_interrupted()
        full()
        return
    code = finish_output(code)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # exiting now: a late Ctrl-C changes nothing
    except ValueError:
        pass
    gc.freeze()
    sys.exit(code)


def __getattr__(name: str):
    if name == "main":
        from .app import main   # lazy: lark, sympy, pydantic
        return main
    raise AttributeError(f"module 'seqdsl.cli' has no attribute {name!r}")
