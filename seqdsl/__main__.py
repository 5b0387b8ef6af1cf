"""`python -m seqdsl`: the same as the `seqdsl` command."""
import seqdsl

try:
    from .cli import entry
except BaseException as exc:  # Ctrl-C while importing: one line, exit 130 (as entry() does)
    if not (isinstance(exc, KeyboardInterrupt) or seqdsl._sigint_seen):
        raise
    seqdsl._exit_interrupted()

entry()
