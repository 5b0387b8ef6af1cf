"""The measuring helpers now live in seqdsl/backend/measure.py (used by `seqdsl verify`
and `seqdsl bench` too); this re-export keeps `import measure` in the tests."""
from seqdsl.backend.measure import *  # noqa: F401,F403
from seqdsl.backend.measure import __all__  # noqa: F401
