"""`python -m seqdsl.cli`: the same entry point as the `seqdsl` command."""
from . import entry

entry()
