"""Text <-> AST: the grammar driver (`syntax`), the AST (`ast`), and the
canonical printer behind `seqdsl fmt` (`printer`). Imports only seqdsl.errors
and seqdsl.limits."""
