"""The fast parse driver (seqdsl.lang.syntax._FastDriver) against Lark itself.

The driver runs Lark's own LALR table and callbacks with a faster lexer and
loop. It must be invisible: on every input it yields Lark's tokens and Lark's
AST, or declines (None) so that Lark parses the text and reports the error.
"""
import sys
from pathlib import Path

import pytest
from hypothesis import given

from seqdsl.lang import syntax
from seqdsl.errors import SourceFile, SpecError

from test_frontend_fuzz import SETTINGS, damaged

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from check_speed import dense_spec, typical_spec  # noqa: E402

FILES = sorted((ROOT / "specs").glob("*.seq")) + sorted((ROOT / "examples").rglob("*.seq"))
FILES += sorted((ROOT.parent / "shared" / "conformance").glob("*/*.seq"))


def lark_tokens(text):
    return [(t.type, str(t), t.start_pos, t.line, t.column, t.end_line, t.end_column, t.end_pos)
            for t in syntax._parser().lex(text)]


def fast_tokens(text):
    toks = list(syntax._fast_driver().tokens(text))
    assert toks[-1] is not None and toks[-1].type == "$END"
    return [(t.type, str(t), t.start_pos, t.line, t.column, t.end_line, t.end_column, t.end_pos)
            for t in toks[:-1]]


def fast_only(source):
    """The driver's own result: an AST, or None where it leaves the text to Lark."""
    with syntax._LOCK:
        syntax._TRANSFORMER.source = source
        syntax._TRANSFORMER.expr_depth = {}
        try:
            return syntax._fast_driver().parse(source.text)
        finally:
            syntax._TRANSFORMER.source = None


def outcome(source, fast):
    try:
        return syntax.parse_module(source, fast=fast)
    except SpecError as exc:
        return exc.render()


def test_the_driver_builds_with_this_lark():
    assert syntax._fast_driver() is not None


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_same_tokens_and_tree_as_lark(path):
    source = SourceFile(str(path), path.read_text())
    try:
        expected = syntax.parse_module(source, fast=False)
    except SpecError as exc:
        assert outcome(source, True) == exc.render()
        return
    assert fast_tokens(source.text) == lark_tokens(source.text)
    assert fast_only(source) == expected          # the driver itself took it, and agrees


@pytest.mark.parametrize("make", [typical_spec, dense_spec])
def test_same_tree_on_the_benchmark_specs(make):
    source = SourceFile("bench.seq", make(2_000))
    assert fast_only(source) == syntax.parse_module(source, fast=False)


@pytest.mark.parametrize("text", [
    "model m {\n  input x: float[B, T, 8]\n  y = x -> linear(8)\n  output y\n}\n",
    "model m {\n  input x: float[B, T, 8]\n  y = x -> linear(8) ->\n  output y\n}\n",   # syntax error
    "model m {\n  input x: float[B, T, 8]\n  y = x -> linear(8) $ \n  output y\n}\n",  # bad character
    "model m { input x: float[B, T, 8] }",                                          # no newline at all
    "",
    "\n\n# only a comment\n",
    "model m {\n  let k = (1 +\n 2)\n  input x: float[B, T, k]\n  y = x\n    # note\n    -> linear(8) as out\n  output y\n}",
    "model m {\n  input x: float[B, T, 8]\n  y = x -> linear(8, 1_000_000_000_000_000_000_000_000_000_000_000_000)\n  output y\n}\n",
])
def test_edge_cases_agree(text):
    source = SourceFile("edge.seq", text)
    assert outcome(source, True) == outcome(source, False)


def test_a_syntax_error_is_left_to_lark():
    source = SourceFile("bad.seq", "model m {\n  input x: float[B, T, 8]\n  y = x -> -> linear(8)\n}\n")
    assert fast_only(source) is None
    with pytest.raises(SpecError) as exc:
        syntax.parse_module(source)
    assert "bad.seq:3:" in exc.value.render()


@SETTINGS
@given(damaged())
def test_damaged_specs_agree(text):
    source = SourceFile("damaged.seq", text)
    lark = outcome(source, False)
    assert outcome(source, True) == lark
    try:
        ours = fast_only(source)
    except SpecError as exc:                       # a rule's own check (argument order, literal size):
        assert exc.render() == lark                # Lark's run stops at the same place
        return
    if ours is not None:                           # whatever the driver accepts, Lark builds the same
        assert ours == lark


def test_lines_are_counted_through_ignored_multiline_tokens():
    """Positions stay Lark's even where an ignored token spans lines (our
    grammar has none today; a block comment is the obvious future one)."""
    from lark import Lark
    grammar = r"""
        start: _NL? (NAME (_NL NAME)*)? _NL?
        NAME: /[a-z]+/
        _NL: /(\r?\n)+/
        BLOCK_COMMENT: /\/\*(.|\n)*?\*\//
        %ignore BLOCK_COMMENT
        %ignore " "
    """
    lark = Lark(grammar, parser="lalr", lexer="basic", postlex=syntax._Newlines())
    driver = syntax._FastDriver(lark)
    text = "a /* one\ntwo\n */ b\n\nc /* x */\nd\n"
    ours = [(t.type, str(t), t.line, t.column, t.end_line, t.end_column) for t in driver.tokens(text)][:-1]
    theirs = [(t.type, str(t), t.line, t.column, t.end_line, t.end_column) for t in lark.lex(text)]
    assert ours == theirs
    assert ("NAME", "b", 3, 5, 3, 6) in ours
