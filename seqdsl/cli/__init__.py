"""The `seqdsl` command: argument parsing, exit codes, tables and plots.

`app` builds the parser and runs a command; each command's work lives in the
library (seqdsl.check, seqdsl.cost, seqdsl.backend), never here.
"""
import seqdsl

try:
    from .app import entry, main
except BaseException as exc:  # Ctrl-C while the console script loads: one line, exit 130
    if not (seqdsl._running_as_cli() and (isinstance(exc, KeyboardInterrupt) or seqdsl._sigint_seen)):
        raise
    seqdsl._exit_interrupted()

__all__ = ["entry", "main"]
