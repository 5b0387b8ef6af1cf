"""How a `seqdsl` process ends when it cannot finish normally: Ctrl-C
(130), stdout closed early or full (141, 2). Light (no sympy): the cached
estimate (cli/cache.py) ends through these as every other command does."""
from __future__ import annotations

import errno
import os
import sys


EXIT_PIPE = 141          # stdout closed early (EPIPE): 128 + SIGPIPE, quietly


def interrupted() -> int:
    print("seqdsl: interrupted", file=sys.stderr)
    return 130


def stdout_failed(exc: OSError) -> bool:
    """Whether `exc` is a failure to write our output (a full disk or quota,
    a closed pipe). Files the commands write themselves go through
    `save_atomic`, which reports its own errors, so these are stdout's."""
    return isinstance(exc, BrokenPipeError) or exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EPIPE)


def output_error(exc: OSError) -> int:
    """stdout cannot take our output: point it at /dev/null (so the exit-time
    flush does not fail again) and say so in one line, except for a closed
    pipe, which is the reader's choice (exit quietly)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    if isinstance(exc, BrokenPipeError):
        return EXIT_PIPE
    print(f"seqdsl: error: cannot write the output: {exc.strerror or exc}", file=sys.stderr)
    return 2


def finish_output(code: int) -> int:
    """Flush stdout now, so a full disk or closed pipe is reported like any
    other output error instead of by the interpreter at exit."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        return output_error(exc)
    return code
