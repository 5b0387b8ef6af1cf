"""The `seqdsl` command: argument parsing, exit codes, tables and plots.

`app` builds the parser and runs a command; each command's work lives in the
library (seqdsl.check, seqdsl.cost, seqdsl.backend), never here.
"""
from .app import entry, main

__all__ = ["entry", "main"]
