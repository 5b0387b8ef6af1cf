"""Every test, and every seqdsl process a test starts, keeps its estimate
cache (seqdsl/cli/cache.py) in a temporary directory, never in the user's
~/.cache/seqdsl. Set at configuration, before test modules copy os.environ."""
import os
import shutil
import tempfile

_SAVED = {}


def pytest_configure(config):
    _SAVED["XDG_CACHE_HOME"] = os.environ.get("XDG_CACHE_HOME")
    _SAVED["dir"] = tempfile.mkdtemp(prefix="seqdsl-test-cache-")
    os.environ["XDG_CACHE_HOME"] = _SAVED["dir"]


def pytest_unconfigure(config):
    if "dir" not in _SAVED:
        return
    shutil.rmtree(_SAVED.pop("dir"), ignore_errors=True)
    saved = _SAVED.pop("XDG_CACHE_HOME")
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved
