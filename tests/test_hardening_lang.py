"""Hostile input to parse and check: every case ends in one diagnostic and
exit 1 (or a clean success), never a traceback, a hang or a memory blow-up.

Each test here failed before the fix it guards (issue "hardening", the
language front end's items)."""
import os
import pickle
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

import seqdsl

ROOT = Path(__file__).resolve().parent.parent
DIAG = re.compile(r"^(?P<path>[^\n:]+):(?P<line>\d+):(?P<col>\d+): error: (?P<msg>.*)$", re.M)


def M(body, dims="B, T, 8", lets=""):
    """A one-pipeline model; `y = x -> BODY` is on line 3 + lets."""
    return f"model m {{\n{lets}    input x: float[{dims}]\n    y = x -> {body}\n    output y\n}}\n"


def refusal(text, **kw):
    with pytest.raises(seqdsl.SpecError) as exc:
        seqdsl.parse(text, **kw)
    return exc.value


def check(path, env=None, timeout=60, cwd=None):
    """`python -m seqdsl check PATH` in a subprocess, with this checkout's seqdsl."""
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "seqdsl", "check", str(path)], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=cwd)


def caret_column(rendered: str) -> tuple[int, str]:
    """(the display column of the caret, the quoted line) in a rendered diagnostic."""
    lines = rendered.splitlines()
    quote, caret = lines[1], lines[2]
    bar = quote.index("| ") + 2
    return caret.index("^") - bar, quote[bar:]


# ---------------------------------------------------------------- 1: parse cache
class _Plant:
    """Unpickling this creates the marker file (it stands for any code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _cache_places(tmp_path: Path) -> list[Path]:
    """Where a parse cache was (the old $TMPDIR path) or might be put (a per-user cache dir)."""
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    xdg = tmp_path / "xdg" / "seqdsl"
    xdg.mkdir(parents=True)
    return [tmp_path / f"seqdsl-lark-{uid}.cache", xdg / "lark.cache", xdg / "seq.lark.cache"]


@pytest.mark.parametrize("attack", ["pickle", "fifo"])
def test_parse_tables_are_never_loaded_from_a_planted_file(tmp_path, attack):
    if attack == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    marker = tmp_path / "pwned"
    places = _cache_places(tmp_path)
    for place in places:
        if attack == "pickle":
            place.write_bytes(b"0" * 64 + b"\n" + pickle.dumps(_Plant(marker)) + pickle.dumps(_Plant(marker)))
        else:
            os.mkfifo(place)
    spec = tmp_path / "m.seq"
    spec.write_text(M("linear(8)"))
    env = {"TMPDIR": str(tmp_path), "TEMP": str(tmp_path), "TMP": str(tmp_path),
           "XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path)}
    try:
        proc = check(spec, env=env, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("check hung on a FIFO planted where the parse cache was")
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists(), "a planted pickle was unpickled"


def test_the_parser_is_built_without_a_cache():
    from seqdsl import syntax
    assert not hasattr(syntax, "_cache_path")
    assert not syntax._parser().options.cache


# ---------------------------------------------------------------- 2: terminal injection
def test_control_characters_are_quoted_visibly_with_the_caret_in_place():
    text = M("\x1b[2Jlinear(8)")
    out = refusal(text).render()
    assert "\x1b" not in out, out
    col, quote = caret_column(out)
    assert quote.rstrip() == r"    y = x -> \x1b[2Jlinear(8)"
    assert quote[col:].startswith(r"\x1b"), out
    # an error after escapes on the same line: the caret still lands on the right text
    out = refusal(M('linear(8, bias="\x1b[31m\x07", baias=true)')).render()
    assert "\x1b" not in out and "\x07" not in out, ascii(out)
    col, quote = caret_column(out)
    assert quote[col:].startswith("baias=true"), out


@pytest.mark.parametrize("ch", ["\u202e", "\u200b", "\x9b", "\x00", "\x7f", "\ufeff"])
def test_invisible_and_bidi_characters_are_escaped(ch):
    out = refusal(M(f"linear(8) {ch}lienar")).render()
    assert ch not in out, ascii(out)


def test_messages_help_and_paths_are_escaped(tmp_path):
    # an import path is a string literal: it may hold escapes, and the message quotes it
    err = refusal('import "\x1b]0;pwned\x07.seq"\n' + M("linear(8)"), base_dir=tmp_path)
    out = err.render()
    assert "\x1b" not in out and "\x07" not in out, ascii(out)
    err = refusal(M("lienar(8)"), path="evil\x1b[2J.seq")
    assert "\x1b" not in err.render()


def _width(text: str) -> int:
    """Terminal columns: wide (CJK) characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def test_wide_characters_and_tabs_keep_the_caret_aligned():
    out = refusal(M("lienar(8)").replace("y = x", "y = x\t") + "# 漢字\n").render()
    col, quote = caret_column(out)
    assert quote[col:].startswith("lienar"), out
    # wide characters before the spot: the caret sits under it on the terminal
    out = refusal(M('linear(8, bias="漢字漢字", baias=true)')).render()
    col, quote = caret_column(out)
    target = quote.index("baias")
    assert col == _width(quote[:target]), out


# ---------------------------------------------------------------- 24: one definition of lines
LINE_LIKE = ["\f", "\r", "\v", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("ch", LINE_LIKE, ids=[ascii(c) for c in LINE_LIKE])
def test_line_like_characters_do_not_move_the_caret(ch):
    text = f"# a{ch}b\n" + M("lienar(8)")
    err = refusal(text)
    assert (err.span.line, err.span.column) == (4, 14)
    col, quote = caret_column(err.render())
    assert quote.strip() == "y = x -> lienar(8)", ascii(quote)
    assert quote[col:].startswith("lienar"), ascii(err.render())


@pytest.mark.parametrize("ch", LINE_LIKE, ids=[ascii(c) for c in LINE_LIKE])
def test_line_like_characters_on_the_error_line(ch):
    err = refusal(M("lienar(8)").replace("    y = x", f"    # {ch}\n    y = x"))
    col, quote = caret_column(err.render())
    assert quote.strip() == "y = x -> lienar(8)"
    assert quote[col:].startswith("lienar")


def test_crlf_files_quote_the_line_without_the_cr():
    err = refusal(M("lienar(8)").replace("\n", "\r\n"))
    assert (err.span.line, err.span.column) == (3, 14)
    col, quote = caret_column(err.render())
    assert quote == "    y = x -> lienar(8)" and quote[col:].startswith("lienar")


def test_end_of_file_errors_point_at_the_last_line():
    err = refusal("# x\f y\nmodel m {\n    input x: float[B, T, 8]\n")
    assert err.span.line == 3
    assert "end of file" in err.message


# ---------------------------------------------------------------- 25: brackets in comments and strings
def test_brackets_in_comments_do_not_count_as_nesting():
    text = "# ( unmatched\n" * 65 + M("linear(8)")
    assert seqdsl.parse(text).model().params == 72
    text = "".join(f"# {'(' * 100} [{{\n" for _ in range(3)) + M("linear(8) # ((((( [[[[ {{{{")
    assert seqdsl.parse(text).model().params == 72


def test_brackets_in_strings_do_not_count(tmp_path):
    (tmp_path / "b.seq").write_text("block b(d) { linear(d) }\n")
    odd = "{" + "(" * 70 + "[.seq"
    (tmp_path / odd).write_text("block c(d) { linear(d) }\n")
    text = f'import "b.seq"\nimport "{odd}"\n' + M("b(8) -> c(8)")
    assert seqdsl.parse(text, base_dir=tmp_path).model().params == 144


def test_an_unclosed_brace_report_ignores_braces_in_strings_and_comments():
    text = 'import "{x.seq"  # {\nmodel m {\n    input x: float[B, T, 8]  # }\n    y = x -> linear(8)\n    output y\n'
    err = refusal(text)
    assert "opened at line 2" in err.message, err.render()
    # every brace closed: a stray statement is a plain syntax error, not an open '{' of line 1
    text = 'import "{x.seq"  # {\n' + M("linear(8)") + "output y\n"
    err = refusal(text)
    assert "opened at" not in err.message and err.span.line == 7, err.render()


def test_real_nesting_is_still_bounded():
    err = refusal(M("linear(" + "(" * 70 + "8" + ")" * 70 + ")"))
    assert "nested more than 64" in err.message and err.span.line == 3
    err = refusal(M("residual { " * 70 + "linear(8)" + " }" * 70))
    assert "nested more than 64" in err.message and err.span.line == 3
