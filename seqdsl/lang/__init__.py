"""Text <-> AST: the grammar driver (`syntax`), the AST (`ast`), and the
canonical printer behind `seqdsl fmt` (`printer`), the shipped LALR table
(`parse_table`; `python -m seqdsl.lang` rewrites it). Imports only seqdsl.errors
and seqdsl.limits."""
