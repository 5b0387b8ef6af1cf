"""The LALR table of grammars/seq.lark, shipped as JSON beside the grammar
(grammars/seq.lark.json), so that a process does not build it again.

Building the table from the grammar costs Lark ~40-50 ms of CPU per process
(measured on the 2-core machine of benchmarks/estimate_speed.py), a sixth of
what a cold `seqdsl check` spends beyond its imports; loading it from JSON
costs a few. The file is plain data, never a pickle (Lark's own `cache=` and
`save()` pickle): it is read with `json` and handed to Lark's deserializer,
which compiles the terminals' regular expressions from it and runs nothing
else. It is used only when it names the grammar's SHA-256 and the installed
Lark's version; otherwise, or when it is missing or damaged, the table is
built from the grammar as before (the same parser either way:
tests/test_parse_table.py).

Regenerate after editing the grammar (the test says when):

    python -m seqdsl.lang
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lark
from lark import Lark
from lark.grammar import Rule
from lark.lexer import TerminalDef

# Options handed to Lark at run time, not stored: objects of this package.
RUNTIME_OPTIONS = ("postlex", "transformer")
FORMAT = 1


def table_path(grammar: Path) -> Path:
    return grammar.with_name(grammar.name + ".json")


def _digest(grammar_text: str) -> str:
    return hashlib.sha256(grammar_text.encode()).hexdigest()


def _int_keys(pairs):
    """JSON object keys are strings; the table's dicts are keyed by state and
    memo ids (ints) or by names (never all digits)."""
    return {int(k) if k.isdigit() else k: v for k, v in pairs}


def dump(parser: Lark, grammar_text: str) -> str:
    data, memo = parser.memo_serialize([TerminalDef, Rule])
    data["options"] = {k: v for k, v in data["options"].items() if k not in RUNTIME_OPTIONS}
    return json.dumps({"format": FORMAT, "grammar_sha256": _digest(grammar_text), "lark": lark.__version__,
                       "data": data, "memo": memo}, sort_keys=True, separators=(",", ":")) + "\n"


def load(grammar: Path, grammar_text: str, **runtime) -> Lark | None:
    """The parser from the shipped table, or None when there is none for this
    grammar text and Lark version (the caller builds it)."""
    try:
        obj = json.loads(table_path(grammar).read_text(), object_pairs_hook=_int_keys)
        if (obj.get("format") != FORMAT or obj.get("lark") != lark.__version__
                or obj.get("grammar_sha256") != _digest(grammar_text)):
            return None
        return Lark._load_from_dict(obj["data"], obj["memo"], **runtime)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, lark.exceptions.LarkError):
        return None   # missing, damaged or of another Lark: build from the grammar


def write(grammar: Path, parser: Lark) -> Path:
    """Write the table of `parser`, built from `grammar`, beside it."""
    out = table_path(grammar)
    out.write_text(dump(parser, grammar.read_text()))
    return out
