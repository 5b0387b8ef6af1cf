"""`python -m seqdsl.cli`: the same entry point as the `seqdsl` command."""
from .app import entry

entry()
