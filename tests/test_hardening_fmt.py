"""`seqdsl fmt` must not lose information, change meaning or damage files."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqdsl.lang import ast
from seqdsl.errors import SourceFile, SpecError
from seqdsl.lang.printer import expr_text, format_text
from seqdsl.lang.syntax import parse_module

ROOT = Path(__file__).resolve().parent.parent
# the shared conformance corpus sits beside a checkout, or beside the folder of worktrees
_CONFORMANCE_DIRS = [ROOT.parent / "shared" / "conformance", ROOT.parent.parent / "shared" / "conformance"]
CONFORMANCE = next((d for d in _CONFORMANCE_DIRS if d.is_dir()), None)
BUNDLED = sorted((ROOT / "specs").rglob("*.seq")) + sorted((ROOT / "examples").rglob("*.seq"))
CONFORMANCE_SPECS = sorted(CONFORMANCE.rglob("*.seq")) if CONFORMANCE else []
EXE = [sys.executable, "-m", "seqdsl"]


def _id(path: Path) -> str:
    for base in (ROOT, CONFORMANCE):
        if base is not None and path.is_relative_to(base):
            return str(path.relative_to(base))
    return path.name


def fmt(*args, cwd=None, timeout=120):
    return subprocess.run(EXE + ["fmt", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


def fmt_here(capsys, *args):
    """`seqdsl fmt ARGS` in this process (quicker than a subprocess): rc, stdout, stderr."""
    from seqdsl.cli.app import main
    rc = main(["fmt", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def shape(node):
    """An AST without spans (what the program means, not where it was written)."""
    if isinstance(node, ast.Module):
        return ("module", shape(node.imports), shape(node.blocks), shape(node.models))
    if dataclasses.is_dataclass(node):
        return (type(node).__name__,) + tuple(
            shape(getattr(node, f.name)) for f in dataclasses.fields(node) if not f.name.endswith("span"))
    if isinstance(node, tuple):
        return tuple(shape(n) for n in node)
    if isinstance(node, float):
        return ("float", node.hex())  # so that -0.0 and 0.0 differ
    return node


def parse(text: str, path: str = "<string>"):
    return parse_module(SourceFile(path, text))


def comment_tokens(text: str):
    from seqdsl.lang.syntax import _parser
    return [t for t in _parser().lex(text, dont_ignore=True) if t.type == "COMMENT"]


def comment_texts(text: str) -> list[str]:
    return [str(t).rstrip() for t in comment_tokens(text)]


# ---------------------------------------------------------------- 9: comments
def with_comments_everywhere(text: str, positions=None) -> tuple[str, list[str]]:
    """`text` with a comment on its own line before every line (and at the
    end), and a comment after the code of every line that has none. Returns
    the text and the comments added, in order. `positions`, if given, keeps
    only those indices of the candidate positions."""
    has_comment = {t.line for t in comment_tokens(text)}
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out, added, k = [], [], 0

    def take(kind, i):
        nonlocal k
        k += 1
        if positions is None or (k - 1) in positions:
            added.append(f"# {kind}{i} ¤")
            return True
        return False
    for i, line in enumerate(lines, start=1):
        indent = line[:len(line) - len(line.lstrip())]
        if take("own", i):
            out.append(indent + added[-1])
        if i not in has_comment and take("end", i):
            line = line + "  " + added[-1]
        out.append(line)
    if take("own", len(lines) + 1):
        out.append(added[-1])
    return "\n".join(out) + "\n", added


def candidate_count(text: str) -> int:
    return len(with_comments_everywhere(text)[1])


def check_fmt_keeps(text: str, path: str) -> str:
    """fmt keeps every comment, in order, keeps the program, and is idempotent."""
    once = format_text(text, path)
    assert comment_texts(once) == comment_texts(text), "comments lost, added or reordered"
    assert shape(parse(once)) == shape(parse(text, path)), "fmt changed the program"
    assert format_text(once, path) == once, "fmt is not idempotent"
    return once


def _parses(path: Path) -> bool:
    try:
        parse(path.read_text(), str(path))
        return True
    except SpecError:
        return False


@pytest.mark.parametrize("path", BUNDLED, ids=_id)
def test_fmt_keeps_comments_at_every_position_of_bundled_specs(path):
    text, added = with_comments_everywhere(path.read_text())
    once = check_fmt_keeps(text, str(path))
    assert [c for c in comment_texts(once) if c in added] == added


@pytest.mark.skipif(CONFORMANCE is None, reason="no shared/conformance corpus beside this checkout "
                    f"(looked in {', '.join(map(str, _CONFORMANCE_DIRS))})")
@pytest.mark.parametrize("path", CONFORMANCE_SPECS, ids=_id)
def test_fmt_keeps_comments_at_every_position_of_conformance_specs(path):
    if not _parses(path):
        # a spec with a syntax error: fmt must refuse it, with or without comments
        with pytest.raises(SpecError):
            format_text(with_comments_everywhere(path.read_text())[0], str(path))
        return
    text, added = with_comments_everywhere(path.read_text())
    once = check_fmt_keeps(text, str(path))
    assert [c for c in comment_texts(once) if c in added] == added


def graph_json(model) -> dict:
    """`seqdsl graph --json`, less where each node was written."""
    import json
    from seqdsl.graph.render import to_json
    data = json.loads(to_json(model))
    for node in data["nodes"]:
        del node["line"], node["column"]
    return data


def test_fmt_keeps_the_checked_graph_of_specs_with_comments():
    """The checked program (graph json) of every bundled and conformance spec
    that checks is the same after fmt."""
    import seqdsl
    checked = 0
    for path in BUNDLED + CONFORMANCE_SPECS:
        try:
            before = seqdsl.parse(path.read_text(), str(path), base_dir=path.parent)
        except SpecError:  # a file of blocks only, or a spec refused on purpose
            continue
        checked += 1
        text, _ = with_comments_everywhere(path.read_text())
        after = seqdsl.parse(format_text(text, str(path)), str(path), base_dir=path.parent)
        assert list(after.models) == list(before.models), path
        for name in before.models:
            assert graph_json(after.models[name]) == graph_json(before.models[name]), (path, name)
    assert checked >= 10


_ALL = [p for p in BUNDLED + CONFORMANCE_SPECS if _parses(p)]


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_fmt_keeps_comments_at_any_subset_of_positions(data):
    """Comments at some positions only (so layout decisions vary) are kept too."""
    path = data.draw(st.sampled_from(_ALL), label="spec")
    source = path.read_text()
    n = candidate_count(source)
    chosen = data.draw(st.sets(st.integers(0, n - 1), max_size=12), label="positions")
    text, added = with_comments_everywhere(source, chosen)
    once = check_fmt_keeps(text, str(path))
    assert [c for c in comment_texts(once) if c in added] == added



def break_points(text: str) -> list[int]:
    """Offsets where a line may break without ending anything: inside ( ) or
    [ ] after an opening bracket or a comma, before a closing one, and on
    either side of `->`."""
    from seqdsl.lang.syntax import _parser
    out, depth = [], 0
    for t in _parser().lex(text, dont_ignore=True):
        if t.type in ("RPAR", "RSQB"):
            depth -= 1
            out.append(t.start_pos)
        if t.type in ("LPAR", "LSQB"):
            depth += 1
        if (t.type in ("LPAR", "LSQB", "COMMA") and depth > 0) or t.type == "_ARROW":
            out.append(t.end_pos)
        if t.type == "_ARROW":
            out.append(t.start_pos)
    return sorted(set(out))


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_fmt_keeps_comments_in_lines_broken_anywhere(data):
    """Argument, dim and parameter lists and pipelines broken over lines, with
    comments at the breaks: every comment kept, in order, same program."""
    path = data.draw(st.sampled_from(_ALL), label="spec")
    text = path.read_text()
    points = break_points(text)
    chosen = data.draw(st.sets(st.sampled_from(points), min_size=1, max_size=8), label="breaks")
    for i, offset in enumerate(sorted(chosen, reverse=True)):
        comment = data.draw(st.sampled_from(["", f"  # b{i}", f"  # b{i}\n# own{i}"]), label="comment")
        text = text[:offset] + comment + "\n        " + text[offset:]
    check_fmt_keeps(text, str(path))

@pytest.mark.parametrize("text", [
    # after a statement whose next line starts with `->`
    "model m {\n    input x: float[B, T, 8]\n    y = x  # c1\n        -> linear(8)\n    output y\n}\n",
    # on a continued block header
    "block b(h,  # c1\n        d=2) {\n    linear(h)\n}\n",
    "block b(h,\n        d=2) {  # c1\n    linear(h)\n}\n",
    # inside a multi-line dim list or argument list
    "model m {\n    input x: float[B,  # c1\n        T, 8]\n    y = x -> linear(8)\n    output y\n}\n",
    "model m {\n    input x: float[B, T, 8]\n    y = x -> linear(8,  # c1\n        bias=false) -> relu\n"
    "    output y\n}\n",
    "model m {\n    input x: float[B, T, 8]\n    y = x -> repeat(  # c1\n        2) { linear(8) }\n"
    "    output y\n}\n",
    "model m {\n    let d = (8 +  # c1\n        8)\n    input x: float[B, T, d]\n    y = x -> linear(8)\n"
    "    output y\n}\n",
    # after `->` at the end of a line, and after a stage followed by another
    "model m {\n    input x: float[B, T, 8]\n    y = x ->  # c1\n        linear(8)\n    output y\n}\n",
    "model m {\n    input x: float[B, T, 8]\n    y = x -> residual { linear(8)  # c1\n"
    "        relu } -> gelu  # c2\n    output y\n}\n",
    # only comments; a comment after the closing brace
    "# c1\n# c2\n",
    "model m {\n    input x: float[B, T, 8]\n    y = x -> linear(8)\n    output y }  # c1\n",
])
def test_fmt_keeps_comments_the_old_printer_dropped(text):
    once = check_fmt_keeps(text, "<test>")
    assert "# c1" in once


def test_fmt_of_many_comments_keeps_them_in_order():
    body = "".join(f"    # note {i}\n    let a{i} = {i}  # after {i}\n" for i in range(300))
    text = "model m {\n" + body + "    input x: float[B, T, 8]\n    y = x\n    output y\n}\n"
    once = check_fmt_keeps(text, "<test>")
    assert comment_texts(once) == [c for i in range(300) for c in (f"# note {i}", f"# after {i}")]


# ---------------------------------------------------------------- 13: linear time
def test_fmt_check_of_40000_comment_lines_is_fast(tmp_path):
    """Linear in the number of comments. The old printer, quadratic, took about
    19 s of CPU for 20,000 statements each after a comment line and 75 s for
    40,000 (the issue: 8,000 took 10.7 s, 30,000 did not finish in 120 s);
    now 40,000 take about 2 s, so a 60 s limit is generous yet tells them apart."""
    body = "".join(f"    # note {i}\n    let a{i} = {i}\n" for i in range(40_000))
    spec = tmp_path / "many.seq"
    spec.write_text("model m {\n" + body + "    input x: float[B, T, 8]\n    y = x\n    output y\n}\n")
    r = fmt("--check", spec, timeout=60)
    assert r.returncode == 1 and "would reformat" in r.stderr
    r = fmt("--stdout", spec, timeout=60)
    assert r.returncode == 0 and r.stdout.count("# note") == 40_000


# ---------------------------------------------------------------- 11: float literals
def _let_value(text: str):
    (model,) = parse(f"model m {{\n    let a = {text}\n}}\n").models
    return model.statements[0].value


@pytest.mark.parametrize("literal, word", [
    ("1e999", "large"), ("1.5E+400", "large"), ("1_000e400", "large"),
    ("1e-400", "small"), ("0.5e-330", "small"), ("2e-324", "small"),
])
def test_a_float_literal_that_does_not_fit_is_refused_at_the_literal(literal, word):
    text = (f"model m {{\n    input x: float[B, T, 8]\n    y = x -> layernorm(eps={literal}) -> dropout({literal})\n"
            "    output y\n}\n")
    with pytest.raises(SpecError) as info:
        format_text(text)
    message = info.value.render()
    assert f"too {word}" in message and "3:28: error" in message, message


@pytest.mark.parametrize("literal, value", [("0.0e-999", 0.0), ("0e999", 0.0), ("5e-324", 5e-324),
                                            ("3e-324", 5e-324), ("1.7976931348623157e308", 1.7976931348623157e308)])
def test_float_literals_that_fit_still_parse(literal, value):
    assert _let_value(literal).value == value


def test_fmt_refuses_an_overflowing_literal_without_writing(tmp_path):
    spec = tmp_path / "m.seq"
    spec.write_text("model m {\n  input x: float[B, T, 8]\n  y = x -> layernorm(eps=1e999)\n  output y\n}\n")
    before = spec.read_bytes()
    r = fmt(spec)
    assert r.returncode == 1 and "too large" in r.stderr and "Traceback" not in r.stderr
    assert spec.read_bytes() == before


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_float_fmt_prints_reads_back_as_the_same_value(v):
    text = expr_text(ast.Literal(v, None))
    e = _let_value(text)
    sign = 1.0
    if isinstance(e, ast.Neg):
        sign, e = -1.0, e.operand
    assert isinstance(e, ast.Literal) and isinstance(e.value, float), text
    assert (sign * e.value).hex() == v.hex(), text


@pytest.mark.parametrize("v", [float("inf"), float("-inf"), float("nan")])
def test_a_float_with_no_literal_is_not_printed_as_a_name(v):
    with pytest.raises(ValueError):
        expr_text(ast.Literal(v, None))


# ---------------------------------------------------------------- 10: links and modes
MESSY = "model m {\n  input x: float[B,T,8]  # in\n  y = x->linear(8)\n  output y\n}\n"
CANONICAL = "model m {\n    input x: float[B, T, 8]  # in\n\n    y = x -> linear(8)\n\n    output y\n}\n"


def test_fmt_canonical_text():
    assert format_text(MESSY) == CANONICAL


def test_fmt_through_a_symlink_rewrites_the_target_and_keeps_the_link(tmp_path):
    target = tmp_path / "real" / "m.seq"
    target.parent.mkdir()
    target.write_text(MESSY)
    link = tmp_path / "link.seq"
    link.symlink_to(target)
    r = fmt(link)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == CANONICAL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.seq", "real"]   # no temporary left
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.seq"]


def test_fmt_keeps_the_file_mode(tmp_path):
    spec = tmp_path / "m.seq"
    spec.write_text(MESSY)
    spec.chmod(0o640)
    assert fmt(spec).returncode == 0
    assert spec.read_text() == CANONICAL
    assert spec.stat().st_mode & 0o7777 == 0o640
    spec.write_text(MESSY)
    spec.chmod(0o755)
    assert fmt(spec).returncode == 0
    assert spec.stat().st_mode & 0o7777 == 0o755


def test_fmt_keeps_hard_links(tmp_path):
    spec = tmp_path / "m.seq"
    spec.write_text(MESSY)
    other = tmp_path / "other.seq"
    os.link(spec, other)
    inode = spec.stat().st_ino
    assert fmt(spec).returncode == 0
    assert spec.stat().st_ino == inode and spec.stat().st_nlink == 2
    assert other.read_text() == CANONICAL == spec.read_text()


# ---------------------------------------------------------------- 12: several files
def test_fmt_of_several_files_with_one_refused_writes_none(tmp_path, capsys):
    a, b, c = (tmp_path / f"{n}.seq" for n in "abc")
    a.write_text(MESSY)
    b.write_text("model m {\n  input x: float[B, T, 8]\n  y = x -> repeat(2) { linear(8)\n  output y\n}\n")
    c.write_text(MESSY.replace("model m", "model n"))
    d = tmp_path / "d.seq"
    d.write_text("model m {\n  let a = 1e999\n}\n")
    before = {p: p.read_bytes() for p in (a, b, c, d)}
    for mode in ([], ["--check"], ["--stdout"]):
        rc, out, err = fmt_here(capsys, *mode, a, b, c, d)
        assert rc == 1, (mode, err)
        assert "b.seq:4:3: error" in err and "d.seq:2:11: error" in err   # every refused file
        assert "2 of 4 files refused" in err and "reformat" not in err
        assert out == ""
        assert {p: p.read_bytes() for p in (a, b, c, d)} == before
    r = fmt(a, b, c, d)   # the same from the command: no traceback
    assert r.returncode == 1 and "Traceback" not in r.stderr and "2 of 4 files refused; no file was written" in r.stderr
    assert {p: p.read_bytes() for p in (a, b, c, d)} == before
    rc, out, err = fmt_here(capsys, a, c)
    assert rc == 0
    assert err.splitlines() == [f"reformatted {a}", f"reformatted {c}"]
    assert a.read_text() == CANONICAL


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.seq", "cannot find"),
    (lambda d: d, "is a directory"),
    (lambda d: (d / "notes.txt", (d / "notes.txt").write_text(MESSY))[0], "is not a .seq file"),
    (lambda d: (d / "dangling.seq", (d / "dangling.seq").symlink_to(d / "gone.seq"))[0], "broken symbolic link"),
], ids=["missing", "directory", "not-seq", "dangling-link"])
def test_fmt_of_something_not_a_spec_is_a_one_line_usage_error(tmp_path, capsys, make, message):
    path = make(tmp_path)
    for mode in ([], ["--check"], ["--stdout"]):
        rc, out, err = fmt_here(capsys, *mode, path)
        assert rc == 2, err
        assert err.count("\n") == 1 and message in err and err.startswith("seqdsl fmt: error:")
        assert out == ""
    good = tmp_path / "good.seq"
    good.write_text(MESSY)
    rc, out, err = fmt_here(capsys, good, path)
    assert rc == 2 and good.read_text() == MESSY and "no file was written" in err


def test_fmt_usage_error_from_the_command_is_one_line(tmp_path):
    r = fmt(tmp_path)
    assert r.returncode == 2 and r.stderr == f"seqdsl fmt: error: '{tmp_path}' is a directory; give the .seq files in it\n"


# ---------------------------------------------------------------- more: encodings, line ends, stdout
def test_fmt_keeps_crlf_line_endings(tmp_path):
    spec = tmp_path / "m.seq"
    spec.write_bytes(MESSY.replace("\n", "\r\n").encode())
    assert fmt(spec).returncode == 0
    assert spec.read_bytes() == CANONICAL.replace("\n", "\r\n").encode()
    assert fmt("--check", spec).returncode == 0   # a canonical CRLF file needs no change
    assert format_text(MESSY) == CANONICAL        # LF stays LF


def test_fmt_keeps_unicode_and_strips_trailing_whitespace(tmp_path):
    text = 'import "blocks/café.seq"   \nmodel m {   # é → ü  \t\n  input x: float[B, T, 8]\t\n  y = x\n  output y\n}\n'
    once = format_text(text)
    assert 'import "blocks/café.seq"\n' in once and "model m {  # é → ü\n" in once
    assert all(line == line.rstrip() for line in once.splitlines())
    spec = tmp_path / "u.seq"
    spec.write_text(text, encoding="utf-8")
    (tmp_path / "blocks").mkdir()
    assert fmt(spec).returncode == 0 and spec.read_text(encoding="utf-8") == once


def test_fmt_keeps_string_escapes_in_imports():
    for literal in (r'"a\"b.seq"', r'"a\\b.seq"', r'"a\nb.seq"', r'"x#y.seq"', r'"\\\"\\"'):
        text = f"import {literal}  # c\n"
        once = check_fmt_keeps(text, "<test>")
        assert once.count("#") == text.count("#")


def test_fmt_takes_a_bom_as_check_does(tmp_path):
    """A leading byte order mark is accepted by check; fmt formats the file
    and drops the mark (canonical form has none)."""
    spec = tmp_path / "bom.seq"
    spec.write_bytes(b"\xef\xbb\xbf" + MESSY.encode())
    r = subprocess.run(EXE + ["check", str(spec)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    r = fmt(spec)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert spec.read_text() == format_text(MESSY)


def test_fmt_stdout_leaves_the_file_alone(tmp_path):
    spec = tmp_path / "m.seq"
    spec.write_text(MESSY)
    r = fmt("--stdout", spec)
    assert r.returncode == 0 and r.stdout == CANONICAL and r.stderr == ""
    assert spec.read_text() == MESSY


def test_fmt_of_very_long_lines_keeps_everything():
    dims = ", ".join(f"D{i}" for i in range(60))
    args = ", ".join(f"k{i}={i}" for i in range(40))
    text = (f"model m {{\n    input x: float[{dims}]  # {'c' * 500}\n"
            f"    y = x -> linear(8, {args}) -> relu -> residual {{ linear(8) -> relu -> linear(8) -> gelu }}"
            " -> layernorm\n    output y\n}\n")
    once = check_fmt_keeps(text, "<test>")
    assert max(map(len, once.splitlines())) > 88 and "c" * 500 in once


def test_a_string_with_a_line_break_is_not_printed_broken():
    with pytest.raises(ValueError):
        expr_text(ast.Literal("a\nb.seq", None))


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="only root can give a file away")
def test_fmt_keeps_the_owner(tmp_path):
    spec = tmp_path / "m.seq"
    spec.write_text(MESSY)
    os.chown(spec, 4321, 4321)
    assert fmt(spec).returncode == 0 and spec.read_text() == CANONICAL
    assert (spec.stat().st_uid, spec.stat().st_gid) == (4321, 4321)


def test_fmt_says_which_files_it_rewrote_when_a_write_fails(tmp_path, monkeypatch, capsys):
    from seqdsl.cli import app as cli
    a, b, c = (tmp_path / f"{n}.seq" for n in "abc")
    for p in (a, b, c):
        p.write_text(MESSY)
    real_save = cli.save_atomic

    def failing_save(path, save):
        if str(path).endswith("b.seq"):
            raise cli.UsageError(f"cannot write {path}: Read-only file system")
        real_save(path, save)
    monkeypatch.setattr(cli, "save_atomic", failing_save)
    assert cli.main(["fmt", str(a), str(b), str(c)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"reformatted {a}",
                   f"seqdsl fmt: error: cannot write {os.path.realpath(b)}: Read-only file system",
                   f"reformatted {c}"]
    assert a.read_text() == c.read_text() == CANONICAL and b.read_text() == MESSY


def test_fmt_stdout_gives_the_files_bytes_whatever_the_terminal_encoding(tmp_path):
    spec = tmp_path / "u.seq"
    spec.write_bytes(MESSY.replace("# in", "# café → ü").replace("\n", "\r\n").encode())
    r = subprocess.run(EXE + ["fmt", "--stdout", str(spec)], capture_output=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "ascii"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == CANONICAL.replace("# in", "# café → ü").replace("\n", "\r\n").encode()


def test_fmt_of_a_hard_linked_file_on_a_full_disk_leaves_it_whole(tmp_path, monkeypatch, capsys):
    import errno

    from seqdsl.cli import app as cli
    spec = tmp_path / "m.seq"
    spec.write_text(MESSY)   # the canonical text is longer: room must be made for it
    assert len(CANONICAL) > len(MESSY)
    os.link(spec, tmp_path / "other.seq")

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    assert cli.main(["fmt", str(spec)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert spec.read_text() == MESSY == (tmp_path / "other.seq").read_text()


@pytest.mark.parametrize("text", ["", "\n", "\n\n   \n", "\r\n"])
def test_fmt_of_an_empty_file_is_empty(text):
    assert format_text(text) == ""
