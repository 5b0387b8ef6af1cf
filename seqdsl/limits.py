"""Limits that keep the compiler safe on hostile specs.

Each is checked *before* the work it bounds (a repeat count before expanding,
the expanded size before building the graph), so a spec past a limit is
refused in milliseconds instead of after eating memory.
"""

MAX_FILE_BYTES = 4 * 1024 * 1024      # one .seq file
MAX_IMPORTS = 256                     # files reachable through imports
MAX_NESTING = 64                      # brackets, bodies and block calls
MAX_EXPR_DEPTH = 100                  # operators chained in one expression (1+1+...)
MAX_REPEAT = 10_000                   # one repeat(N)
MAX_NODES = 200_000                   # layer instances after expansion
MAX_DIM = 2 ** 40                     # any concrete dimension, channel or size
MAX_DIM_DEPTH = 32                    # floor/ceil nested in one symbolic dim (strided convs in a row)
MAX_LITERAL_DIGITS = 40               # digits in an integer literal
MAX_VALUE = 10 ** 30                  # magnitude of any `let` value
MAX_LIST = 16                         # items in a list argument
MAX_ITEMS = 256                       # comma-separated items in one ( ) or [ ], checked while lexing
MAX_WRITTEN = 100_000                 # statements and stages written in one file (each costs ~1 KB of AST)
MAX_DIAGNOSTICS = 20                  # errors reported for one file (checking goes on past the first)
MAX_LENGTH = 10 ** 15                 # any sequence length or batch a command or estimate takes
