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
    from seqdsl.lang import syntax
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


# ---------------------------------------------------------------- 26: import cycles
def test_a_self_import_is_named_as_a_cycle(tmp_path):
    (tmp_path / "a.seq").write_text('import "a.seq"\nblock b(d) { linear(d) }\n' + M("b(8)"))
    with pytest.raises(seqdsl.SpecError) as exc:
        seqdsl.load(tmp_path / "a.seq")
    err = exc.value
    assert err.message == "import cycle: a.seq -> a.seq", err.render()
    assert (err.span.line, err.span.column) == (1, 1) and "defined twice" not in err.render()


def test_an_import_cycle_is_named_at_the_import_that_closes_it(tmp_path):
    (tmp_path / "a.seq").write_text('import "b.seq"\nblock a1(d) { linear(d) }\n' + M("a1(8) -> b1(8)"))
    (tmp_path / "b.seq").write_text('block b1(d) { linear(d) }\n\nimport "a.seq"\n')
    proc = check(tmp_path / "a.seq", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first == "b.seq:3:1: error: import cycle: a.seq -> b.seq -> a.seq", proc.stderr
    # three files, in a folder
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "x.seq").write_text('import "y.seq"\n' + M("linear(8)"))
    (sub / "y.seq").write_text('import "z.seq"\n')
    (sub / "z.seq").write_text('import "x.seq"\n')
    with pytest.raises(seqdsl.SpecError) as exc:
        seqdsl.load(sub / "x.seq")
    assert exc.value.message == "import cycle: x.seq -> y.seq -> z.seq -> x.seq"


def test_a_file_imported_twice_without_a_cycle_is_fine(tmp_path):
    (tmp_path / "a.seq").write_text('import "b.seq"\nimport "c.seq"\n' + M("bb(8) -> cc(8)"))
    (tmp_path / "b.seq").write_text('import "d.seq"\nblock bb(d) { dd(d) }\n')
    (tmp_path / "c.seq").write_text('import "d.seq"\nblock cc(d) { dd(d) }\n')
    (tmp_path / "d.seq").write_text("block dd(d) { linear(d) }\n")
    assert seqdsl.load(tmp_path / "a.seq").model().params == 144


# ---------------------------------------------------------------- 27: an empty file
@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "block b(d) { linear(d) }\n"])
def test_a_file_without_a_model_is_refused_at_line_1(tmp_path, text):
    path = tmp_path / "empty.seq"
    path.write_text(text)
    proc = check(path)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{path}:1:1: error: {path} defines no model"), proc.stderr


# ---------------------------------------------------------------- 16: memory in proportion to the input
MB = 1024 * 1024
BIG = 4 * MB - 400  # just under MAX_FILE_BYTES, room for the model around it

HUGE_INPUTS = {
    "blank_lines": lambda: "\n" * BIG + M("linear(8)"),
    "crlf_lines": lambda: "\r\n" * (BIG // 2) + M("linear(8)"),
    "spaced_blank_lines": lambda: " \n" * (BIG // 2) + M("linear(8)"),
    "int_literal": lambda: M("linear(" + "9" * BIG + ")"),
    "int_with_underscores": lambda: M("linear(1" + "_1" * (BIG // 2) + ")"),
    "float_fraction": lambda: M("dropout(0." + "1" * BIG + ")"),
    "float_exponent": lambda: M("dropout(1e" + "1" * BIG + ")"),
    "string_escapes": lambda: 'import "' + "\\\\" * (BIG // 2) + '"\n' + M("linear(8)"),
    "long_string": lambda: 'import "' + "a" * BIG + '"\n' + M("linear(8)"),
    "long_name": lambda: M("a" * BIG),
    "long_comment": lambda: "#" + "(" * BIG + "\n" + M("linear(8)"),
    "many_stages": lambda: M("linear(8)" + " -> relu" * (BIG // 8)),
    "many_statements": lambda: "model m {\n    input x: float[B, T, 8]\n" + "    a = x\n" * (BIG // 10) + "}\n",
    "long_list": lambda: M("conv1d(8, [" + "1," * (BIG // 2 - 20) + "1])"),
    "many_arguments": lambda: M("linear(" + "1," * (BIG // 2 - 20) + "1)"),
    "min_arguments": lambda: M("linear(min(" + "1," * (BIG // 2 - 20) + "1))"),
}


def peak_rss_mb(path: Path, timeout=120) -> tuple[int, str, float]:
    """(exit code, stderr, peak resident MB) of `seqdsl check PATH`, measured
    by a wrapper process (RUSAGE_CHILDREN covers only that one check)."""
    code = ("import resource, subprocess, sys\n"
            "p = subprocess.run([sys.executable, '-m', 'seqdsl', 'check', sys.argv[1]],"
            " capture_output=True, text=True)\n"
            "sys.stderr.write(p.stderr)\n"
            "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    rc, kb = proc.stdout.split()
    return int(rc), proc.stderr, int(kb) / 1024


@pytest.mark.parametrize("name", sorted(HUGE_INPUTS))
def test_a_4mb_spec_stays_in_bounded_memory(tmp_path, name):
    path = tmp_path / "big.seq"
    path.write_text(HUGE_INPUTS[name]())
    assert path.stat().st_size <= 4 * MB
    rc, err, mb = peak_rss_mb(path)
    assert rc in (0, 1), err[-2000:]
    assert "internal error" not in err and "Traceback" not in err
    assert len(err) < 5000, "a diagnostic quotes the 4 MB line whole"
    assert mb < 400, f"{name}: {mb:.0f} MB"


def test_number_literals_keep_their_rules():
    assert seqdsl.parse(M("linear(1_0)")).model().params == 90
    assert seqdsl.parse(M("dropout(0.000_1)")).model().layers[0].args.p == 0.0001
    for bad in ("linear(1__0)", "linear(1_)", "dropout(1_.5)", "dropout(1._5)", "dropout(1_e5)"):
        err = refusal(M(bad))
        assert err.span.line == 3, (bad, err.render())
    assert "between two digits" in refusal(M("linear(1__0)")).message


# ---------------------------------------------------------------- 18: deep length-changing chains
CHAINS = {
    "same_200": " -> ".join(["conv1d(8, 3, stride=2)"] * 200),
    "same_2000": " -> ".join(["conv1d(8, 3, stride=2)"] * 2000),
    "valid_200": " -> ".join(["conv1d(8, 3, stride=2, padding=valid)"] * 200),
    "repeat_valid": "repeat(2000) { conv1d(8, 3, stride=3, padding=valid) }",
    "repeat_mixed": "repeat(500) { conv1d(8, 3, stride=2) -> conv1d(8, 2, stride=3, padding=valid) }",
    "causal_2000": "repeat(2000) { conv1d(8, 3, stride=2, padding=causal) }",
}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_deep_strided_conv_chains_end_in_a_diagnostic(name):
    try:
        seqdsl.parse(M(CHAINS[name]))
    except seqdsl.SpecError as exc:
        assert exc.span is not None and exc.span.line == 3, exc.render()
        assert "conv1d" in exc.message and "nests more than" in exc.message
    # RecursionError or any other exception fails the test


def test_deep_conv2d_chains_over_symbolic_sizes_end_in_a_diagnostic():
    err = refusal(M("repeat(300) { conv2d(8, 3, stride=2) }", dims="B, T, H, W, 8"))
    assert "nests more than" in err.message and err.span.line == 3


def test_a_realistic_number_of_strided_convs_still_checks():
    m = seqdsl.parse(M(" -> ".join(["conv1d(8, 3, stride=2)"] * 30))).model()
    assert "ceil" in str(m.outputs["y"])


def test_check_cli_on_a_deep_chain_exits_1(tmp_path):
    path = tmp_path / "deep.seq"
    path.write_text(M(CHAINS["same_200"]))
    proc = check(path, timeout=120)
    assert proc.returncode == 1 and "internal error" not in proc.stderr, proc.stderr


# ---------------------------------------------------------------- 14: the layer limit counts the whole file
def _models(n, body):
    return "".join(f"model m{i} {{\n    input x: float[B, T, 8]\n    y = x -> {body}\n    output y\n}}\n"
                   for i in range(n))


def test_the_layer_limit_counts_every_model_and_refuses_before_building():
    import time
    text = "block big(d) { repeat(9999) { " + " -> ".join(["gelu"] * 20) + " } }\n" + _models(30, "big(8)")
    assert len(text) < 4096
    t0 = time.perf_counter()
    err = refusal(text)
    assert time.perf_counter() - t0 < 5
    assert "models of this file" in err.message and "200000" in err.message
    assert err.span.line == 7  # model m1: the one that goes past the limit


def test_the_layer_limit_counts_imported_blocks_across_models(tmp_path):
    (tmp_path / "big.seq").write_text("block big(d) { repeat(5000) { gelu -> gelu -> gelu } }\n")
    (tmp_path / "m.seq").write_text('import "big.seq"\n' + _models(14, "big(8)"))
    with pytest.raises(seqdsl.SpecError) as exc:
        seqdsl.load(tmp_path / "m.seq")
    assert "models of this file" in exc.value.message


def test_models_under_the_limit_together_still_check():
    program = seqdsl.parse(_models(3, "repeat(5000) { relu -> relu }"))
    assert [len(m.layers) for m in program.models.values()] == [10000] * 3


def test_one_pipeline_past_the_limit_is_refused_at_the_stage():
    err = refusal(M(" -> ".join(["relu"] * 1000) + " -> repeat(10000) { relu -> relu -> relu -> relu -> relu "
                    "-> relu -> relu -> relu -> relu -> relu -> relu -> relu -> relu -> relu -> relu -> relu "
                    "-> relu -> relu -> relu -> relu }"))
    assert err.message.startswith("repeat(10000) would expand the model to"), err.message


def test_fans_of_empty_blocks_are_bounded():
    import time
    blocks = "block e() { }\n" + "".join(f"block b{i}() {{ b{i + 1}() -> b{i + 1}() }}\n" for i in range(60))
    blocks += "block b60() { e() }\n"
    t0 = time.perf_counter()
    err = refusal(blocks + M("b0()"))
    assert "would expand" in err.message and time.perf_counter() - t0 < 10


# ---------------------------------------------------------------- more of the same class
def test_items_in_one_bracket_pair_are_bounded_while_lexing():
    import time
    for body in ("conv1d(8, [" + "1, " * 300 + "1])", "linear(" + "1, " * 300 + "1)",
                 "linear(min(" + "1, " * 300 + "1))"):
        t0 = time.perf_counter()
        err = refusal(M(body))
        assert "more than 256 items" in err.message and err.span.line == 3
        assert time.perf_counter() - t0 < 2
    # commas in comments and strings, and in separate brackets, do not add up
    text = "# " + ", " * 1000 + "\n" + M(" -> ".join(["linear(8, bias=true)"] * 300))
    assert seqdsl.parse(text).model().params == 300 * 72
    # nor do the commas of output statements, outside any ( or [
    outputs = "".join(f"model m{i} {{\n    input x: float[B, T, 8]\n    a = x -> relu\n    b = x -> gelu\n"
                      f"    output a, b\n}}\n" for i in range(300))
    assert len(seqdsl.parse(outputs).models) == 300


def test_written_statements_and_stages_are_bounded():
    err = refusal(M("linear(8)" + " -> relu" * 100_001))
    assert "more than 100000 statements and stages" in err.message and err.span.line == 3
    assert "repeat" in err.render()


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.seq"
    path.write_bytes(b"\xef\xbb\xbf" + M("lienar(8)").encode())
    with pytest.raises(seqdsl.SpecError) as exc:
        seqdsl.load(path)
    assert (exc.value.span.line, exc.value.span.column) == (3, 14)
    path.write_bytes(b"\xef\xbb\xbf" + M("linear(8)").encode())
    assert seqdsl.load(path).model().params == 72
    assert seqdsl.parse("\ufeff" + M("linear(8)")).model().params == 72


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_spec_or_import_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.seq")
    proc = check(tmp_path / "pipe.seq", timeout=60)
    assert proc.returncode == 1 and "is not a file" in proc.stderr
    (tmp_path / "m.seq").write_text('import "pipe.seq"\n' + M("linear(8)"))
    proc = check(tmp_path / "m.seq", timeout=60)
    assert proc.returncode == 1 and "is not a file" in proc.stderr and "m.seq:1:1" in proc.stderr


def test_a_directory_is_not_a_spec(tmp_path):
    proc = check(tmp_path, timeout=60)
    assert proc.returncode == 1 and "is not a file" in proc.stderr
