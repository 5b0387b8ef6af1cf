"""Writing output files whole or not at all.

Every file a command writes (source, profiles, plots, exports) goes through
`save_atomic`: a temporary beside the target, renamed over it.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UsageError


def save_atomic(path, save) -> None:
    """save(tmp) writes a temporary file beside `path` (same suffix, for
    writers that look at it), which is then renamed over `path`: a failure
    leaves the old file whole and no temporary behind. An unwritable place is
    a usage error (one line, exit 2)."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp" + target.suffix)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    os.close(fd)
    try:
        # mkstemp makes the file 0600; give it the mode a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        save(tmp)
        os.replace(tmp, target)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None
        raise


def write_atomic(path, data: str | bytes) -> None:
    """Text or bytes to `path`, whole or not at all (`save_atomic`)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data

    def save(tmp):
        with open(tmp, "wb") as f:
            f.write(payload)
    save_atomic(path, save)
