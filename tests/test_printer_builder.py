"""Canonical printing, `seqdsl fmt`, and the Python builder API."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seqdsl
import seqdsl.builder as sb
from seqdsl.lang import ast
from seqdsl.errors import SourceFile
from seqdsl.lang.printer import expr_text, format_text
from seqdsl.lang.syntax import parse_module

ROOT = Path(__file__).resolve().parent.parent
SPECS = (sorted((ROOT / "specs").glob("*.seq")) + sorted((ROOT / "examples").rglob("*.seq"))
         + sorted((ROOT.parent / "shared" / "conformance" / "specs").glob("*.seq")))


def graph_signature(model):
    """What must survive a round trip: names, kinds, args, shapes, params, edges."""
    nodes = [(n.name, n.kind, n.args.model_dump() if n.args is not None else None,
              str(n.output), tuple(str(t) for t in n.inputs), n.params, n.sources) for n in model.nodes]
    return nodes, sorted(model.graph.edges(data="port")), dict(model.inputs), dict(model.outputs)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_builder_round_trip_gives_the_same_graph(path):
    text = path.read_text()
    original = seqdsl.load(path)
    module = parse_module(SourceFile(str(path), text))
    rebuilt = sb.from_ast(module).check(base_dir=path.parent)
    assert list(rebuilt.models) == list(original.models)
    for name in original.models:
        assert graph_signature(rebuilt.models[name]) == graph_signature(original.models[name])


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_fmt_is_idempotent_and_keeps_comments_and_meaning(path):
    text = path.read_text()
    once = format_text(text, str(path))
    assert format_text(once) == once
    comments = [line.split("#", 1)[1].strip() for line in text.splitlines() if "#" in line]
    for c in comments:
        assert c in once, f"comment lost: {c!r}"
    a = seqdsl.parse(text, base_dir=path.parent)
    b = seqdsl.parse(once, base_dir=path.parent)
    for name in a.models:
        assert graph_signature(a.models[name]) == graph_signature(b.models[name])


def test_fmt_gives_a_trailing_comment_to_the_last_stage_on_its_line():
    text = ("model m {\n    input x: float[B, T, 8]\n    y = x\n"
            "        -> linear(8) -> gelu   # after both\n"
            "        -> residual { layernorm -> linear(8) }  # after residual\n"
            "    output y\n}\n")
    lines = format_text(text).splitlines()
    assert "        -> linear(8)" in lines
    assert "        -> gelu  # after both" in lines
    assert "        -> residual { layernorm -> linear(8) }  # after residual" in lines


def test_fmt_cli_check_write_and_stdout(tmp_path):
    messy = tmp_path / "m.seq"
    messy.write_text("model m {  # the model\n  input x: float[B,T,8]\n  y = x->linear(8)   ->  relu # act\n"
                     "  output y\n}\n")
    exe = [sys.executable, "-m", "seqdsl.cli"]
    r = subprocess.run(exe + ["fmt", "--check", str(messy)], capture_output=True, text=True)
    assert r.returncode == 1 and "would reformat" in r.stderr
    assert messy.read_text().startswith("model m {  # the model")  # --check writes nothing
    r = subprocess.run(exe + ["fmt", "--stdout", str(messy)], capture_output=True, text=True)
    assert r.returncode == 0 and "y = x -> linear(8) -> relu  # act" in r.stdout
    r = subprocess.run(exe + ["fmt", str(messy)], capture_output=True, text=True)
    assert r.returncode == 0
    assert messy.read_text() == r.stdout or "y = x -> linear(8) -> relu  # act" in messy.read_text()
    r = subprocess.run(exe + ["fmt", "--check", str(messy)], capture_output=True, text=True)
    assert r.returncode == 0


def test_fmt_refuses_a_bad_spec_without_writing(tmp_path):
    bad = tmp_path / "bad.seq"
    bad.write_text("model m {\n  input x: float[B, T, 8]\n  y = x -> repeat(2) { linear(8)\n  output y\n}\n")
    before = bad.read_text()
    r = subprocess.run([sys.executable, "-m", "seqdsl.cli", "fmt", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "4:3: error" in r.stderr
    assert bad.read_text() == before


# ---------------------------------------------------------------- expressions
def _exprs():
    leaves = st.one_of(st.integers(0, 50).map(lambda v: ast.Literal(v, None)),
                       st.sampled_from(["a", "b"]).map(lambda n: ast.Name(n, None)))

    def extend(children):
        return st.one_of(
            st.tuples(st.sampled_from(["+", "-", "*", "//", "%", "**"]), children, children).map(
                lambda t: ast.BinOp(t[0], t[1], t[2], None)),
            children.map(lambda c: ast.Neg(c, None)),
            st.tuples(st.sampled_from(["min", "max"]), children, children).map(
                lambda t: ast.FuncCall(t[0], (t[1], t[2]), None)))
    return st.recursive(leaves, extend, max_leaves=8)


def _eval(e, env):
    if isinstance(e, ast.Literal):
        return e.value
    if isinstance(e, ast.Name):
        return env[e.name]
    if isinstance(e, ast.Neg):
        return -_eval(e.operand, env)
    if isinstance(e, ast.FuncCall):
        return (min if e.func == "min" else max)(_eval(a, env) for a in e.args)
    a, b = _eval(e.left, env), _eval(e.right, env)
    return {"+": a + b, "-": a - b, "*": a * b,
            "//": a // b if b else None, "%": a % b if b else None,
            "**": a ** b if 0 <= b <= 3 and abs(a) < 10 ** 6 else None}[e.op]


@settings(max_examples=150, deadline=None)
@given(_exprs())
def test_printed_expressions_parse_back_to_the_same_value(e):
    env = {"a": 7, "b": 3}
    try:
        expected = _eval(e, env)
    except TypeError:  # a None from an undefined sub-expression
        return
    if expected is None or abs(expected) > 10 ** 20:
        return
    text = f"model m {{\n let a = 7\n let b = 3\n let r = {expr_text(e)}\n input x: float[B, T, 8]\n output x\n}}\n"
    module = parse_module(SourceFile("<t>", text))
    reparsed = module.models[0].statements[2].value
    assert _eval(reparsed, env) == expected
    assert expr_text(reparsed) == expr_text(e) or _eval(reparsed, env) == expected


# ---------------------------------------------------------------- builder
def test_builder_builds_a_model_and_prints_canonical_text():
    m = sb.model("asr")
    d = m.let("d", 256)
    feats = m.input("feats", "float", ["B", "T", 80])
    enc = m.bind("enc", feats,
                 sb.conv1d(d, kernel=3, stride=2, padding="causal"), sb.gelu(),
                 sb.repeat(2, sb.residual(sb.layernorm(), sb.attention(4, causal=True)),
                           sb.residual(sb.layernorm(), sb.mlp(4 * d))),
                 sb.lstm(d, as_="decoder"))
    m.output(enc)
    graph = m.check()
    assert str(graph.outputs["enc"]) == "float[B, ceil(T/2), 256]"
    decoder = graph.node("enc.decoder")  # `as NAME` names the node
    assert (decoder.kind, decoder.alias) == ("lstm", "decoder")
    text = m.to_seq()
    assert "-> conv1d(d, kernel=3, stride=2, padding=causal)" in text
    assert seqdsl.parse(text).model().params == graph.params


def test_builder_blocks_and_expressions():
    prog = sb.Program()
    prog.add(sb.block("ffn", ["d", ("mult", 4)], sb.layernorm(), sb.mlp(sb.ref("mult") * sb.ref("d"))))
    m = prog.add(sb.model("lm"))
    d = m.let("d", 64)
    x = m.input("x", "float", ["B", "T", d])
    m.output(m.bind("y", x, sb.residual(sb.call("ffn", d, mult=2))))
    model = prog.check().model("lm")
    (mlp,) = [n for n in model.layers if n.kind == "mlp"]
    assert mlp.args.hidden == 128
    assert model.params == 2 * 64 + (64 * 128 + 128 + 128 * 64 + 64)


def test_builder_reports_the_same_diagnostics_as_text():
    m = sb.model("bad")
    x = m.input("x", "float", ["B", "T", 8])
    m.output(m.bind("y", x, sb.attention(3)))
    with pytest.raises(seqdsl.SpecError) as info:
        m.check()
    assert "heads=3 does not divide the 8 channels" in info.value.message
    assert info.value.span.line == 4


def test_builder_refuses_bad_names_and_unknown_layers():
    with pytest.raises(seqdsl.SpecError, match="not a valid identifier"):
        sb.model("no spaces")
    with pytest.raises(seqdsl.SpecError, match="not a valid identifier"):
        sb.model("repeat")
    with pytest.raises(AttributeError, match="attention"):
        sb.atention(4)
    with pytest.raises(seqdsl.SpecError, match="unknown layer"):
        sb.layer("__import__")


def test_bundled_specs_are_in_canonical_form():
    """Every spec the project ships is what `seqdsl fmt` prints (CI checks it too)."""
    from seqdsl.lang.printer import format_text
    root = Path(__file__).resolve().parent.parent
    paths = sorted(root.glob("specs/**/*.seq")) + sorted(root.glob("examples/**/*.seq"))
    assert paths
    off = [str(p.relative_to(root)) for p in paths if format_text(p.read_text(), str(p)) != p.read_text()]
    assert not off, f"not canonical (run `seqdsl fmt {' '.join(off)}`): {off}"
