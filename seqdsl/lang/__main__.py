"""`python -m seqdsl.lang`: write the LALR table of grammars/seq.lark beside it
(grammars/seq.lark.json, seqdsl.lang.parse_table). Run it after editing the grammar."""
from .parse_table import write
from .syntax import _build, grammar_file

path = grammar_file()
print(f"wrote {write(path, _build(path.read_text()))}")
