"""The LALR table shipped as JSON beside the grammar (seqdsl.lang.parse_table):
it belongs to the grammar as it is, and the parser loaded from it is the
parser Lark builds from the grammar, on valid specs and on bad ones."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import lark
import pytest

from seqdsl.errors import SourceFile, SpecError
from seqdsl.lang import parse_table, syntax

ROOT = Path(__file__).resolve().parent.parent
FILES = (sorted((ROOT / "specs").glob("*.seq")) + sorted((ROOT / "examples").rglob("*.seq"))
         + sorted((ROOT / "tests" / "bad_specs").glob("*.seq")))


def built():
    return syntax._build(syntax.grammar_file().read_text())


def loaded():
    path = syntax.grammar_file()
    return parse_table.load(path, path.read_text(), postlex=syntax._Newlines(), transformer=syntax._TRANSFORMER)


def test_the_shipped_table_is_the_grammars():
    path = syntax.grammar_file()
    table = json.loads(parse_table.table_path(path).read_text())
    assert table["grammar_sha256"] == parse_table._digest(path.read_text()), (
        "grammars/seq.lark changed: regenerate its table with `python -m seqdsl.lang`")
    assert table["format"] == parse_table.FORMAT


def test_the_parser_in_use_is_loaded_from_the_table():
    path = syntax.grammar_file()
    if json.loads(parse_table.table_path(path).read_text())["lark"] != lark.__version__:
        pytest.skip(f"the table was written with another Lark than {lark.__version__}: it is built instead")
    assert loaded() is not None


def _outcome(parser, source):
    """The AST, or the diagnostics, of one file parsed with `parser` (Lark's loop:
    the fast driver reads the same table)."""
    old = syntax._parser
    syntax._parser = lambda: parser
    try:
        return ("ok", syntax.parse_module(source, fast=False))
    except SpecError as e:
        return ("error", [(d.message, d.span, d.help) for d in e.diagnostics])
    finally:
        syntax._parser = old


def test_loaded_and_built_parsers_agree_on_every_spec_and_bad_spec():
    a, b = loaded(), built()
    if a is None:
        pytest.skip("no table for this Lark")
    assert FILES
    sources = [SourceFile(str(f), f.read_text()) for f in FILES]
    outcomes = [(_outcome(a, s), _outcome(b, s)) for s in sources]
    assert all(x == y for x, y in outcomes)
    assert {kind for (kind, _), _ in outcomes} == {"ok", "error"}


@pytest.mark.parametrize("damage", ["missing", "not json", "other grammar", "other lark", "truncated data"])
def test_a_bad_table_is_ignored(tmp_path, damage):
    grammar = tmp_path / "seq.lark"
    text = syntax.grammar_file().read_text()
    grammar.write_text(text)
    table = parse_table.table_path(grammar)
    good = json.loads(parse_table.table_path(syntax.grammar_file()).read_text())
    if damage == "not json":
        table.write_text("{ this is not json")
    elif damage == "other grammar":
        table.write_text(json.dumps(good))
        grammar.write_text(text + "\n// edited\n")
    elif damage == "other lark":
        table.write_text(json.dumps({**good, "lark": "0.0.1"}))
    elif damage == "truncated data":
        table.write_text(json.dumps({**good, "data": {"rules": []}}))
    assert parse_table.load(grammar, grammar.read_text(), postlex=syntax._Newlines(),
                            transformer=syntax._TRANSFORMER) is None


def test_regenerating_writes_a_table_the_loader_takes(tmp_path):
    tree = tmp_path / "pkg"
    shutil.copytree(ROOT / "seqdsl", tree / "seqdsl", symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__", "seq.lark.json"))
    out = subprocess.run([sys.executable, "-m", "seqdsl.lang"], cwd=tree, capture_output=True,
                         text=True, env={"PYTHONPATH": str(tree), "PATH": ""})
    assert out.returncode == 0, out.stderr
    written = tree / "seqdsl" / "grammars" / "seq.lark.json"
    assert written.is_file()
    grammar = written.with_name("seq.lark")
    assert parse_table.load(grammar, grammar.read_text(), postlex=syntax._Newlines(),
                            transformer=syntax._TRANSFORMER) is not None
