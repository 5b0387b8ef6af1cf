"""Writing output files whole or not at all.

Every file a command writes (source, profiles, plots, exports) goes through
`save_atomic`: a temporary beside the target, renamed over it.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

from .errors import UsageError


def save_atomic(path, save) -> None:
    """save(tmp) writes a temporary file beside `path` (same suffix, for
    writers that look at it), which is then renamed over `path`: a failure
    leaves the old file whole and no temporary behind. An unwritable place is
    a usage error (one line, exit 2)."""
    target = Path(path)
    try:
        tmp = _new_temporary(target)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    try:
        # made 0600; give it the mode a plain open() would
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


def _new_temporary(target: Path) -> str:
    """A new empty file (0600) beside `target`, as tempfile.mkstemp makes one
    (an unguessable name, created exclusively, never through a link); without
    importing tempfile, which a cached estimate would pay for (seqdsl/cli/cache.py)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = str(target.parent / f".{target.name}.{os.urandom(6).hex()}.tmp{target.suffix}")
        try:
            os.close(os.open(tmp, flags, 0o600))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary name beside {target}")


def write_atomic(path, data: str | bytes) -> None:
    """Text or bytes to `path`, whole or not at all (`save_atomic`)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data

    def save(tmp):
        with open(tmp, "wb") as f:
            f.write(payload)
    save_atomic(path, save)


def check_output(path, reads, flag: str = "-o", suffixes: tuple[str, ...] | None = None) -> None:
    """Refuse, before any work, an output that would overwrite a file the
    command reads (the spec, one it imports, a profile: compared by
    os.path.samefile, so links and ../ spellings are caught), a directory,
    or a file name without one of `suffixes`. UsageError (exit 2)."""
    out = Path(path)
    if not str(path).strip():
        raise UsageError(f"{flag}: empty file name")
    if suffixes is not None and out.suffix.lower() not in suffixes:
        raise UsageError(f"{flag} {path}: the file name must end in {' or '.join(suffixes)}")
    if out.is_dir():
        raise UsageError(f"{flag} {path} is a directory; give a file name")
    if out.exists() and not out.is_file():   # a device or fifo: the atomic rename would replace the node
        raise UsageError(f"{flag} {path} is not a regular file")
    if not out.parent.is_dir() if str(out.parent) else False:
        raise UsageError(f"cannot write {path}: no directory {out.parent}")
    for r in reads:
        if r is None:
            continue
        try:
            same = os.path.samefile(out, r)
        except OSError:           # one of them does not exist (yet)
            same = os.path.abspath(out) == os.path.abspath(r)
        if same:
            raise UsageError(f"{flag} {path} would overwrite {r}, which this command reads; "
                             "choose another output file")
