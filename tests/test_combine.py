"""Combining values: `add(b)`, `mul(b)`, `concat(b)`, `split(N)` and binds of
several names (docs/language.md, "Combining values"): syntax and fmt, the
checker's diagnostics, exact costs, measurement, streaming, emitted source and
the builder. The layer harness (tests/test_layer_harness.py) runs the kinds'
own examples besides."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import seqdsl  # noqa: E402
import seqdsl.builder as sb  # noqa: E402
from seqdsl.backend.emit import emit_program  # noqa: E402
from seqdsl.backend.measure import example_inputs, input_env  # noqa: E402
from seqdsl.backend.verify import verify  # noqa: E402
from seqdsl.lang.printer import format_text  # noqa: E402

from test_backend_build import check_stream, one_thread  # noqa: E402,F401  (one_thread: autouse)
from test_hardening_emit import assert_emitted_equals_built, import_source, inputs_for  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "combining" / "combining_values.seq"

GATED = """\
model m {
    input x: float[B, T, 8]

    a, b = x -> linear(16) -> split(2)
    g = b -> sigmoid
    y = a -> mul(g) -> linear(8)

    output y
}
"""


def model_text(*lines: str, inputs=("x: float[B, T, 8]",)) -> str:
    return "model m {\n" + "".join(f"    input {i}\n" for i in inputs) + "".join(
        f"    {line}\n" for line in lines) + "}\n"


# ------------------------------------------------------------------ syntax and fmt
def test_a_bind_of_several_names_parses_and_prints_back():
    prog = seqdsl.parse(GATED)
    graph = prog.model()
    assert graph.values["a"] == "a.split" and graph.values["b"] == "b.split"
    assert [graph.node(v).args.part for v in ("a.split", "b.split")] == [0, 1]
    assert format_text(GATED) == GATED


def test_fmt_keeps_comments_around_the_names_of_a_split():
    text = ("model m {\n    input x: float[B, T, 8]\n\n    # before\n    a,  b = x  # after the source\n"
            "        -> linear(16)  # after linear\n        -> split(2)  # after split\n"
            "    y = a -> add(b)\n\n    output y\n}\n")
    out = format_text(text)
    for comment in ("# before", "# after the source", "# after linear", "# after split"):
        assert comment in out
    assert "a, b = x" in out and format_text(out) == out
    assert seqdsl.parse(out).model().params == seqdsl.parse(text).model().params


# ------------------------------------------------------------------ diagnostics
@pytest.mark.parametrize("line, where, words", [
    ("y = x -> mul(zz)", (7, 18), ["unknown name 'zz'", "'z'"]),
    ("y = x -> add(zz)", (7, 18), ["unknown name 'zz'", "'z'"]),
    ("y = x -> add(3)", (7, 18), ["got int 3"]),
    ("y = x -> add(w)", (7, 18), ["add needs the same shape", "float[B, T, 8]", "float[B, T, 4]"]),
    ("y = x -> mul(w)", (7, 18), ["mul needs the same shape", "float[B, T, 8]", "float[B, T, 4]"]),
    ("y = x -> mul(tok)", (7, 18), ["mul needs the same shape", "int[B, T]"]),
    ("y = x -> concat(t)", (7, 21), ["but for the channels", "float[B, T, 8]", "float[B, S, 8]"]),
    ("y = x -> add(z, w)", (7, 14), ["add takes one value"]),
    ("y = x -> add(z) as q", (7, 14), ["cannot take `as`"]),
    ("a, b = x -> split(3)", (7, 23), ["split(3) does not divide the 8 channels"]),
    ("a, b = x -> linear(9) -> split(2)", (7, 36), ["split(2) does not divide the 9 channels"]),
    ("a, b = x -> split([3, 4])", (7, 23), ["add up to 7, not the 8 channels"]),
    ("a, b, c = x -> split(2)", (7, 20), ["split makes 2 parts, but 3 names are bound"]),
    ("a, b = x -> linear(8)", (7, 17), ["needs the pipeline to end with split(2)"]),
    ("a, b = x", (7, 5), ["needs the pipeline to end with split(2)"]),
    ("a, b = x -> split(2, part=0)", (7, 17), ["part= is set by the names bound"]),
    ("a, b = x -> split(2) as q", (7, 17), ["cannot take `as`"]),
    ("a, a = x -> split(2)", (7, 8), ["'a' is bound twice in one statement"]),
    ("a, z = x -> split(2)", (7, 8), ["'z' is already bound"]),
    ("y = x -> split(2)", (7, 20), ["split makes 2 values", "a, b = ... -> split(...)"]),
    ("y = x -> split(2, part=2)", (7, 23), ["2 parts (0 to 1), not a part 2"]),
])
def test_errors_name_the_spot_and_both_shapes(line, where, words):
    text = model_text("z = x -> linear(8)", "w = x -> linear(4)", line, "output x",
                      inputs=("x: float[B, T, 8]", "t: float[B, S, 8]", "tok: int[B, T]"))
    with pytest.raises(seqdsl.SpecError) as info:
        seqdsl.parse(text)
    d = info.value.diagnostics[0]
    assert (d.span.line, d.span.column) == where, str(info.value)
    shown = str(info.value)
    for w in words:
        assert w in shown, shown


def test_inside_segments_the_combining_stages_are_refused():
    text = ("block gate(g) {\n    mul(g)\n}\n\nmodel m {\n    input x: float[B, T, 8]\n    z = x -> linear(8)\n"
            "    y = x -> segments(length=4, memory=0) { gate(z) }\n    u = x -> segments(length=4, memory=0) { add(z) }\n"
            "    output y, u\n}\n")
    with pytest.raises(seqdsl.SpecError) as info:
        seqdsl.parse(text)
    messages = [d.message for d in info.value.diagnostics]
    assert len(messages) == 2 and all("inside segments" in m for m in messages), messages
    assert info.value.diagnostics[0].span.line == 2          # in the block, with a note where it is called


def test_a_block_named_add_is_refused_and_a_block_can_take_the_gate():
    with pytest.raises(seqdsl.SpecError, match="block 'add' has the name of a built-in"):
        seqdsl.parse("block add(d) { linear(d) }\n" + model_text("y = x -> add(8)", "output y"))
    blocked = seqdsl.parse("block gate(g, d) {\n    mul(g) -> linear(d)\n}\n\n" + model_text(
        "z = x -> linear(8) -> silu", "y = x -> gate(z, 8)", "output y")).model()
    inline = seqdsl.parse(model_text("z = x -> linear(8) -> silu", "y = x -> mul(z) -> linear(8)",
                                     "output y")).model()
    assert blocked.params == inline.params == 2 * 72
    assert blocked.node("y.gate.mul").sources == ("x", "z.silu")


def test_the_cli_refuses_with_the_spot_and_exit_1(tmp_path):
    spec = tmp_path / "bad.seq"
    spec.write_text(model_text("w = x -> linear(4)", "y = x -> mul(w)", "output y"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "seqdsl", "check", str(spec)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{spec}:4:18: error: mul needs the same shape" in r.stderr


# ------------------------------------------------------------------ costs
def test_estimate_is_exact_for_a_gate():
    """x [B,T,8] -> linear(16) -> split: a, b [.., 8]; g = sigmoid(b); mul; linear(8)."""
    graph = seqdsl.parse(GATED).model()
    p = seqdsl.estimate(graph, seq=10, batch=3).points[0]
    rows, e = 3 * 10, 4
    assert graph.params == 8 * 16 + 16 + 8 * 8 + 8
    # the two linears only: the split, sigmoid and mul are element-wise (no FLOPs)
    assert p.flops_forward == 2 * rows * (8 * 16 + 8 * 8)
    # sigmoid keeps g; mul keeps a and g (each for the other's gradient: g once);
    # linear keeps mul's output; the split parts' backward needs nothing
    assert p.activation_bytes == rows * e * (8 + 8 + 8)
    # live at b's split: x (the caller's), the linear's output, a and b
    assert p.inference_peak_bytes == e * graph.params + rows * e * (8 + 16 + 8 + 8)
    assert p.state_bytes == 0 and p.flops_per_token == 3 * 2 * (8 * 16 + 8 * 8)   # batch 3


def test_mul_keeps_a_factor_only_while_the_other_needs_a_gradient():
    """y = x * g with x the model input (no gradient): g's gradient needs x
    (the caller's, not counted); x needs none, so g is not kept."""
    graph = seqdsl.parse(model_text("g = x -> linear(8)", "y = x -> mul(g)", "output y")).model()
    assert seqdsl.estimate(graph, seq=10, batch=3).points[0].activation_bytes == 0
    both = seqdsl.parse(model_text("h = x -> linear(8)", "g = x -> linear(8)", "y = h -> mul(g)",
                                   "output y")).model()
    assert seqdsl.estimate(both, seq=10, batch=3).points[0].activation_bytes == 2 * 3 * 10 * 8 * 4


@pytest.mark.parametrize("text", [
    GATED,
    model_text("h = x -> linear(16)", "g = x -> linear(4) -> tanh", "y = h -> concat(g) -> add(h2)",
               "output y", inputs=("x: float[B, T, 8]", "h2: float[B, T, 20]")),
    model_text("g = x -> linear(8)", "y = x -> mul(g)", "output y"),
], ids=["gate", "concat-add", "mul-of-input"])
def test_estimates_match_measurement(text):
    report = verify(seqdsl.parse(text).model(), seq=[16, 33], batch=2)
    bad = [f"{r.figure} at {r.seq}: {r.estimate} vs {r.measured}" for r in report.rows if not r.ok]
    assert not bad, bad


@pytest.mark.parametrize("model", ["gated_conv_lm", "bert_embeddings", "birnn_sum"])
def test_the_example_verifies(model):
    report = verify(str(EXAMPLE), model, seq=[32, 48], batch=2)
    bad = [f"{r.figure} at {r.seq}: {r.estimate} vs {r.measured}" for r in report.rows if not r.ok]
    assert not bad, bad


# ------------------------------------------------------------------ streaming and emit
def test_a_gated_model_streams_like_its_forward():
    graph = seqdsl.load(str(EXAMPLE)).model("gated_conv_lm")
    module = seqdsl.build(graph, seed=0).eval()
    tokens = torch.randint(0, 1000, (2, 23), generator=torch.Generator().manual_seed(0))
    check_stream(module, [tokens])
    two = seqdsl.build(seqdsl.parse(model_text(
        "p, q = x -> linear(16) -> split([4, 12])", "r = q -> linear(4) -> silu",
        "y = p -> mul(r) -> add(c) -> concat(x) -> gru(8)", "output y",
        inputs=("c: float[B, T, 4]", "x: float[B, T, 8]"))).model(), seed=0).eval()
    check_stream(two, inputs_for(two._graph, t=21))       # both inputs streamed, chunk by chunk


def test_a_streamed_value_cannot_meet_one_computed_from_the_context():
    module = seqdsl.build(seqdsl.parse(model_text(
        "y = x -> linear(8) -> add(c)", "output y", inputs=("c: float[B, T, 8]", "x: float[B, T, 8]"))).model())
    with pytest.raises(seqdsl.SpecError, match=r"'y.add' \(add\).*combines a streamed value with 'c'"):
        module.init_state(2, c=torch.zeros(2, 5, 8))
    module.init_state(2)                                   # both streamed: fine


def test_emitted_source_computes_what_build_computes():
    assert_emitted_equals_built(GATED)
    graphs = list(seqdsl.load(str(EXAMPLE)).models.values())
    mod = import_source(emit_program(graphs, EXAMPLE.name))
    for graph in graphs:
        built = seqdsl.build(graph, seed=0).eval()
        emitted = mod.MODELS[graph.name]().eval()
        emitted.load_state_dict(built.state_dict())
        xs = example_inputs(graph, input_env(graph, {"T": 19}, 2))   # token ids below each vocab
        with torch.no_grad():
            assert torch.allclose(built(*xs), emitted(*xs), atol=1e-6)


# ------------------------------------------------------------------ builder
def test_builder_writes_the_same_spec():
    m = sb.model("m")
    x = m.input("x", "float", ["B", "T", 8])
    a, b = m.bind(("a", "b"), x, sb.linear(16), sb.split(2))
    g = m.bind("g", b, sb.sigmoid())
    m.output(m.bind("y", a, sb.mul(g), sb.linear(8)))
    assert m.to_seq() == GATED
    assert m.check().params == seqdsl.parse(GATED).model().params
    w = m.bind("w", x, sb.concat(x), sb.add("y2"))
    assert "w = x -> concat(x) -> add(y2)" in m.to_seq() and w.name == "w"
    with pytest.raises(sb.BuilderError):
        m.bind(("ok", "not a name"), x, sb.split(2))
    with pytest.raises(TypeError):
        sb.add(3)
