"""The per-user cache of `compile --estimate`: a repeated estimate of an
unchanged spec reads the closed forms derived last time instead of loading
sympy, lark and pydantic and deriving them again.

* Where: `$XDG_CACHE_HOME/seqdsl` (else `~/.cache/seqdsl`), made 0700. A
  directory or entry that is not ours, is group- or world-writable, is a
  symbolic link or not a regular file (a FIFO is never waited on), or is
  larger than MAX_ENTRY_BYTES is ignored. `SEQDSL_NO_CACHE=1` or
  `--no-cache` turns the cache off.
* What: one JSON file per (spec path, --model, --dtype), plain data only
  (seqdsl.cost.cached, seqdsl.graph.exprdata; never a pickle, never code),
  holding the key it was derived under: seqdsl's version and the mtimes of
  its files, the spec's bytes, and the path and SHA-256 of every file the
  spec imports (read again and compared on each hit). Anything that does
  not match exactly is a miss: the estimate is derived as usual and the
  entry written again (atomically, seqdsl.atomic).
* When: only the plain `seqdsl compile SPEC --estimate [--seq --batch
  --dtype --optimizer --hw --json --per-layer --formula --model]` is
  answered here, and only from an entry a successful run wrote (a refused
  spec is never cached; a length the spec refuses goes the usual way, which
  words the refusal). Any other command line goes the usual way.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from .. import __version__
from ..atomic import save_atomic
from ..cost.cached import OPTIMIZERS, check_forms, check_profile, report_from_forms
from ..cost.lengths import parse_int, parse_seq
from ..errors import UsageError
from ..graph.exprdata import Unavailable
from ..limits import MAX_FILE_BYTES

SCHEMA = 1
MAX_ENTRY_BYTES = 64 * 1024 * 1024
PACKAGE = Path(__file__).resolve().parent.parent
PROFILES = PACKAGE / "profiles"
_FLAGS = ("--estimate", "--json", "--per-layer", "--formula", "--no-cache")
_VALUES = ("--model", "--seq", "--batch", "--dtype", "--optimizer", "--hw")


def disabled(no_cache: bool = False) -> bool:
    return no_cache or os.environ.get("SEQDSL_NO_CACHE", "") not in ("", "0")


def cache_path() -> Path | None:
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):        # the XDG spec: a relative value is ignored
        home = os.path.expanduser("~")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    return Path(base) / "seqdsl"


# ------------------------------------------------------------------ the files
def _read_regular(path, limit: int, dir_fd: int | None = None, private: bool = False) -> bytes | None:
    """A regular file's bytes, or None: never through a final symbolic link
    (for entries), never blocking on a FIFO, never past `limit`; private: only
    ours and not writable by others."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if private:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except (OSError, ValueError):
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        if private and (info.st_uid != os.getuid() or info.st_mode & 0o022):
            return None
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks) if size <= limit else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _open_dir(create: bool) -> tuple[int, Path] | None:
    """(fd, path) of the cache directory if it is ours and private enough."""
    path = cache_path()
    if path is None:
        return None
    if create:
        try:
            os.makedirs(path.parent, mode=0o700, exist_ok=True)
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        os.close(fd)
        return None
    return fd, path


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fingerprint() -> str:
    """seqdsl's version and the size and mtime of each of its files: an
    edited checkout (a changed cost rule) misses as a new version does."""
    parts = [__version__]
    pending = [str(PACKAGE)]
    while pending:
        here = pending.pop()
        with os.scandir(here) as it:
            for e in sorted(it, key=lambda e: e.name):
                if e.is_dir(follow_symlinks=False):
                    if e.name != "__pycache__":
                        pending.append(e.path)
                elif e.name.endswith((".py", ".lark", ".json")):
                    info = e.stat()
                    parts.append(f"{e.path}:{info.st_size}:{info.st_mtime_ns}")
    return _sha("\n".join(parts).encode())


class Slot:
    """Where the entry of one (spec, --model, --dtype) lives and the key its
    content must carry. Reads the spec's bytes once, before anything else."""

    def __init__(self, spec: str, model: str | None, dtype: str):
        self.spec = spec
        data = _read_regular(spec, MAX_FILE_BYTES)
        self.data = data
        self.ok = data is not None
        real = os.path.realpath(spec)
        self.name = _sha(json.dumps([real, model, dtype]).encode())[:40] + ".json"
        self.key = _sha(json.dumps([SCHEMA, _fingerprint(), real, model, dtype,
                                    _sha(data or b"")]).encode())

    def load(self) -> dict | None:
        """The checked entry, or None: absent, not ours, damaged, another
        key, or an imported file changed since."""
        opened = _open_dir(create=False)
        if opened is None or not self.ok:
            return None
        fd, _ = opened
        try:
            raw = _read_regular(self.name, MAX_ENTRY_BYTES, dir_fd=fd, private=True)
        finally:
            os.close(fd)
        if raw is None:
            return None
        try:
            doc = json.loads(raw, parse_constant=_no_constant)
            check_entry(doc, self.key)
        except (ValueError, RecursionError, TypeError, KeyError):
            return None
        for path, digest in doc["imports"]:
            data = _read_regular(path, MAX_FILE_BYTES)
            if data is None or _sha(data) != digest:
                return None
        return doc

    def save(self, forms: dict, imports: list, profiles: dict) -> None:
        """Write the entry (whole or not at all); imports: `file_hashes` of
        the imported files, taken before they were loaded. A cache that
        cannot be written is no error."""
        doc = {"schema": SCHEMA, "seqdsl": __version__, "key": self.key, "imports": imports,
               "profiles": profiles, "forms": forms}
        payload = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
        if len(payload) > MAX_ENTRY_BYTES:
            return
        opened = _open_dir(create=True)
        if opened is None:
            return
        fd, path = opened
        os.close(fd)

        def write(tmp):
            with open(tmp, "wb") as f:
                f.write(payload)
            os.chmod(tmp, 0o600)
        try:
            save_atomic(path / self.name, write)
        except UsageError:
            pass


def file_hashes(paths: list[str]) -> list | None:
    """[[real path, SHA-256], ...] of files, or None if one cannot be read."""
    out = []
    for path in paths:
        data = _read_regular(path, MAX_FILE_BYTES)
        if data is None:
            return None
        out.append([os.path.realpath(path), _sha(data)])
    return out


def _no_constant(name):
    raise ValueError(f"{name} in a cache entry")


def check_entry(doc, key: str) -> None:
    """Refuse (ValueError) an entry that is not exactly what Slot.save writes under `key`."""
    if not isinstance(doc, dict) or list(doc) != ["schema", "seqdsl", "key", "imports", "profiles", "forms"]:
        raise ValueError("not an entry")
    if doc["schema"] != SCHEMA or doc["seqdsl"] != __version__ or doc["key"] != key:
        raise ValueError("another seqdsl or another spec")
    imports = doc["imports"]
    if not isinstance(imports, list) or not all(
            isinstance(i, list) and len(i) == 2 and isinstance(i[0], str) and os.path.isabs(i[0])
            and isinstance(i[1], str) and len(i[1]) == 64 for i in imports):
        raise ValueError("malformed imports")
    check_forms(doc["forms"])
    roofline = doc["forms"]["roofline"]
    profiles = doc["profiles"]
    if not isinstance(profiles, dict) or (profiles and roofline is None):
        raise ValueError("malformed profiles")
    for digest, p in profiles.items():
        if not isinstance(digest, str) or len(digest) != 64:
            raise ValueError("malformed profile key")
        check_profile(p, roofline["floors"])


def profile_digest(name_or_path: str) -> str | None:
    """SHA-256 of the profile file `--hw` names (resolved as
    cost.hardware.load_profile does), or None if it cannot be read."""
    path = PROFILES / f"{name_or_path}.json"
    if not path.is_file():
        path = Path(name_or_path)
    data = _read_regular(path, 1 << 20)
    return None if data is None else _sha(data)


# ------------------------------------------------------------------ the fast path
def parse_estimate_argv(argv: list[str]) -> dict | None:
    """The options of `compile SPEC --estimate ...` if argv is exactly that
    in a plain spelling (each flag whole, at most once); None for anything
    else, which argparse then reads as usual."""
    if len(argv) < 3 or argv[0] != "compile":
        return None
    opts: dict = {}
    spec = None
    i = 1
    while i < len(argv):
        a = argv[i]
        name, eq, value = a.partition("=")
        if a in _FLAGS:
            if a in opts:
                return None
            opts[a] = True
        elif name in _VALUES:
            if name in opts:
                return None
            if not eq:
                i += 1
                if i == len(argv):
                    return None
                value = argv[i]
            if value.startswith("-"):
                return None
            opts[name] = value
        elif a.startswith("-") or spec is not None:
            return None
        else:
            spec = a
        i += 1
    if spec is None or "--estimate" not in opts:
        return None
    opts["spec"] = spec
    return opts


def cached_report(argv: list[str]):
    """(report, as JSON?) of `seqdsl compile ... --estimate` from the cache,
    or None when it must be derived (a miss, or any other command line)."""
    opts = parse_estimate_argv(argv)
    if opts is None or disabled(opts.get("--no-cache", False)):
        return None
    spec = opts["spec"]
    if ":" in spec and not os.path.exists(spec):     # FILE.seq:MODEL: the usual way
        return None
    try:
        rep = _report(opts)
    except (Unavailable, UsageError):     # the usual path words the refusal
        return None
    except Exception:  # noqa: BLE001 - whatever went wrong here, the usual path answers (and reports it)
        if os.environ.get("SEQDSL_DEBUG"):
            raise
        return None
    return None if rep is None else (rep, "--json" in opts)


def _report(opts: dict):
    dtype = opts.get("--dtype", "float32")
    doc = Slot(opts["spec"], opts.get("--model"), dtype).load()
    if doc is None:
        return None
    forms = doc["forms"]
    profile = None
    if "--hw" in opts:
        profile = doc["profiles"].get(profile_digest(opts["--hw"]) or "")
        if profile is None:
            return None
    optimizer = opts.get("--optimizer", "adam")
    if optimizer not in OPTIMIZERS:
        return None
    batch = parse_int(opts.get("--batch", "1"), "--batch")
    seq = parse_seq(opts.get("--seq"), tuple(forms["seq_symbols"]))
    return report_from_forms(forms, seq, batch, optimizer, profile,
                             per_layer="--per-layer" in opts, formulas="--formula" in opts)
