"""AST -> checked graph: elaboration of a parsed file and its imports, using
the layer registry (seqdsl.layers) for shapes and parameter counts."""
from .elaborate import load, parse, read_source

__all__ = ["load", "parse", "read_source"]
