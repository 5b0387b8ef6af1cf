"""`python -m seqdsl`: the same as the `seqdsl` command."""
from .cli import entry

entry()
