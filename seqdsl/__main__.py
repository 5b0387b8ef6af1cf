"""`python -m seqdsl`: the same as the `seqdsl` command."""
try:
    from .cli import entry
except KeyboardInterrupt:     # Ctrl-C while importing: one line, exit 130 (as entry() does)
    import os
    import signal
    import sys
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stderr.write("seqdsl: interrupted\n")
    os._exit(130)

entry()
