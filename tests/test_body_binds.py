"""Names bound inside bodies (docs/language.md, "Names in bodies"): the
grammar's lines, the parser telling a line from a bound name from a layer
call, the checker's scoping and refusals (each at file:line:col), shapes and
parameters, the built module against a hand-written one with the same
weights, emitted == built, step() == forward(), segments, `seqdsl fmt`, the
builder, and `seqdsl verify` on repeated residual bodies with binds."""
from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

import seqdsl  # noqa: E402
import seqdsl.builder as sb  # noqa: E402
from seqdsl.backend.verify import verify  # noqa: E402
from seqdsl.cli import main  # noqa: E402
from seqdsl.errors import SourceFile, SpecError  # noqa: E402
from seqdsl.lang import ast  # noqa: E402
from seqdsl.lang.printer import format_text  # noqa: E402
from seqdsl.lang.syntax import parse_module  # noqa: E402

from test_backend_build import check_stream, one_thread  # noqa: E402,F401  (one_thread: autouse)
from test_hardening_emit import assert_emitted_equals_built  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "combining" / "body_binds.seq"

# Mamba's block without the scan, repeated: the names are each copy's own.
GATED = """\
model gated {
    let d = 8
    let di = 16

    input x: float[B, T, 8]

    y = x
        -> repeat(3) {
            residual {
                rmsnorm
                a, z = linear(2 * di, bias=false) -> split(2)
                g = z -> silu
                a
                    -> conv1d(di, 4, padding=causal, groups=di)
                    -> silu
                    -> mul(g)
                    -> linear(d, bias=false)
            }
        }

    output y
}
"""


def first_error(text: str):
    """The first diagnostic of a refused spec, as (line, column, message, help)."""
    with pytest.raises(SpecError) as exc:
        seqdsl.parse(text, path="bb.seq")
    d = exc.value.diagnostics[0]
    return d.span.line, d.span.column, d.message, d.help or ""


def model(body: str, extra: str = "") -> str:
    """A model whose value y is x through `body` (lines indented 8)."""
    return (f"{extra}model m {{\n    let d = 8\n    input x: float[B, T, 8]\n    w = x -> linear(8)\n"
            f"    y = x -> {body}\n    output y\n}}\n")


# ------------------------------------------------------------------ parsing
def test_lines_parse_to_binds_and_lines_from_names():
    module = parse_module(SourceFile("g.seq", GATED))
    body = module.models[0].statements[-2].stages[0].body[0].body
    rms, split, gate, line = body
    assert isinstance(rms, ast.Call) and rms.name == "rmsnorm"
    assert isinstance(split, ast.Line) and split.bound == ("a", "z") and split.source is None
    assert [s.name for s in split.stages] == ["linear", "split"]
    assert gate.bound == ("g",) and gate.source.name == "z" and [s.name for s in gate.stages] == ["silu"]
    assert line.bound == () and line.source.name == "a"
    assert [s.name for s in line.stages] == ["conv1d", "silu", "mul", "linear"]
    assert (line.source.span.line, line.source.span.column) == (13, 17)
    # the fast driver and Lark's own parser build the same tree
    assert parse_module(SourceFile("g.seq", GATED), fast=False).models == module.models


def test_a_bare_layer_line_stays_a_stage_and_bodies_without_binds_are_unchanged():
    text = model("residual {\n        g = linear(d) -> sigmoid\n        silu\n        mul(g)\n    }")
    body = parse_module(SourceFile("m.seq", text)).models[0].statements[-2].stages[0].body
    assert [type(i).__name__ for i in body] == ["Line", "Call", "Call"]
    plain = model("residual {\n        rmsnorm\n        linear(d) -> silu\n    }")
    body = parse_module(SourceFile("m.seq", plain)).models[0].statements[-2].stages[0].body
    assert all(isinstance(i, ast.Call) for i in body)
    arrows = model("residual { rmsnorm -> linear(d) -> silu }")
    same = parse_module(SourceFile("m.seq", arrows)).models[0].statements[-2].stages[0].body
    assert [(c.name, c.args and c.args[0].value.name) for c in same] == [
        (c.name, c.args and c.args[0].value.name) for c in body] == [("rmsnorm", ()), ("linear", "d"), ("silu", ())]


def test_a_name_is_a_source_only_after_its_bind_and_inside_its_body():
    # `g` in the sibling residual is not bound there: a layer call (unknown)
    text = model("repeat(1) {\n        residual {\n            g = linear(d)\n            mul(g)\n        }\n"
                 "        residual { g -> silu }\n    }")
    line, col, message, _ = first_error(text)
    assert (line, col, message) == (10, 20, "unknown layer 'g'")


# ------------------------------------------------------------------ checking
def test_gated_block_shapes_params_and_layer_names():
    g = seqdsl.parse(GATED).model()
    assert str(g.outputs["y"]) == "float[B, T, 8]"
    d, di = 8, 16
    per_copy = d + 2 * di * d + (di * 4 + di) + di * d      # rmsnorm, in_proj, conv, out_proj
    assert g.params == 3 * per_copy
    names = [n.name for n in g.nodes if "repeat[1]" in n.name]
    assert names == ["y.repeat[1].residual.rmsnorm", "y.repeat[1].residual.a.linear",
                     "y.repeat[1].residual.a.split", "y.repeat[1].residual.z.split",
                     "y.repeat[1].residual.g.silu", "y.repeat[1].residual.conv1d",
                     "y.repeat[1].residual.silu", "y.repeat[1].residual.mul",
                     "y.repeat[1].residual.linear", "y.repeat[1].residual.add"]
    # each copy's gate reads that copy's own z, and its mul that copy's gate
    mul = g.node("y.repeat[1].residual.mul")
    assert mul.sources == ("y.repeat[1].residual.silu", "y.repeat[1].residual.g.silu")
    assert g.node("y.repeat[1].residual.g.silu").sources == ("y.repeat[1].residual.z.split",)


def test_binds_in_a_body_equal_the_same_binds_written_as_statements():
    unrolled = """\
model m {
    let d = 8
    let di = 16

    input x: float[B, T, 8]

    h0 = x -> rmsnorm
    a, z = h0 -> linear(2 * di, bias=false) -> split(2)
    g = z -> silu
    u = a -> conv1d(di, 4, padding=causal, groups=di) -> silu -> mul(g) -> linear(d, bias=false)
    y = x -> add(u)

    output y
}
"""
    one = GATED.replace("repeat(3)", "repeat(1)")
    a, b = seqdsl.parse(one).model(), seqdsl.parse(unrolled).model()
    assert a.params == b.params
    assert sorted(n.kind for n in a.nodes) == sorted(n.kind for n in b.nodes)
    ea = seqdsl.estimate(a, seq=64)
    eb = seqdsl.estimate(b, seq=64)
    for field in ("flops_forward", "flops_train", "activation_bytes", "inference_peak_bytes"):
        assert getattr(ea.points[0], field) == getattr(eb.points[0], field), field


def test_a_tee_bind_leaves_the_current_value_and_a_glu_gate_is_x_times_sigmoid():
    text = model("repeat(2) {\n        g = linear(d) -> sigmoid\n        mul(g)\n    }")
    graph = seqdsl.parse(text).model()
    mul = graph.node("y.repeat[1].mul")
    assert mul.sources == ("y.repeat[0].mul", "y.repeat[1].g.sigmoid")
    assert graph.node("y.repeat[1].g.linear").sources == ("y.repeat[0].mul",)
    torch.manual_seed(0)
    built = seqdsl.build(graph)
    sd = built.state_dict()
    x = torch.randn(2, 5, 8)
    h = x
    for i in range(2):
        gate = torch.sigmoid(F.linear(h, sd[f"y.repeat[{i}].g.linear.weight"], sd[f"y.repeat[{i}].g.linear.bias"]))
        h = h * gate
    with torch.no_grad():
        assert torch.allclose(built(x), h, atol=1e-6)


def test_built_gated_block_equals_a_hand_written_module_with_the_same_weights():
    graph = seqdsl.parse(GATED).model()
    torch.manual_seed(0)
    built = seqdsl.build(graph)
    sd = built.state_dict()
    x = torch.randn(2, 11, 8)

    def hand(h):
        for i in range(3):
            p = f"y.repeat[{i}].residual."
            n = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-5) * sd[p + "rmsnorm.weight"]
            a, z = F.linear(n, sd[p + "a.linear.weight"]).chunk(2, dim=-1)
            c = F.conv1d(F.pad(a.transpose(1, 2), (3, 0)), sd[p + "conv1d.conv.weight"],
                         sd[p + "conv1d.conv.bias"], groups=16).transpose(1, 2)
            h = h + F.linear(F.silu(c) * F.silu(z), sd[p + "linear.weight"])
        return h

    with torch.no_grad():
        assert torch.allclose(built(x), hand(x), atol=1e-5)


def test_emitted_source_equals_the_built_module():
    assert_emitted_equals_built(GATED)
    assert_emitted_equals_built(EXAMPLE.read_text())


def test_a_causal_body_with_binds_streams_equal_to_forward():
    graph = seqdsl.parse(GATED).model()
    torch.manual_seed(0)
    built = seqdsl.build(graph).eval()
    check_stream(built, [torch.randn(2, 23, 8)])


def test_the_example_streams_and_its_two_conformer_conv_modules_agree():
    prog = seqdsl.load(EXAMPLE)
    torch.manual_seed(0)
    check_stream(seqdsl.build(prog.model("gated_conv_lm")).eval(), [torch.randint(0, 1000, (2, 19))])
    assert prog.model("conformer_encoder").params == 617_328
    # the `glu` module and the bound-gate one, given the same weights, compute the same
    two = seqdsl.parse('import "body_binds.seq"\nmodel a {\n    input h: float[B, T, 144]\n'
                       "    y = h -> conformer_conv(144)\n    z = h -> conformer_conv_bound(144)\n"
                       "    output y, z\n}\n", base_dir=EXAMPLE.parent).model()
    torch.manual_seed(0)
    built = seqdsl.build(two).eval()
    sd = built.state_dict()
    rename = {"residual.a.linear.": "residual.linear[0].", "residual.linear.": "residual.linear[1]."}
    for k in sd:
        if k.startswith("z.conformer_conv_bound."):
            tail = k[len("z.conformer_conv_bound."):]
            tail = next((old + tail[len(new):] for new, old in rename.items() if tail.startswith(new)), tail)
            sd[k] = sd["y.conformer_conv." + tail].clone()
    built.load_state_dict(sd)
    with torch.no_grad():
        y, z = built(torch.randn(2, 9, 144))
    assert torch.allclose(y, z, atol=1e-5)
    assert not torch.allclose(y, torch.zeros_like(y))


def test_binds_inside_segments_run_per_segment():
    body = ("segments(length=4, memory=0) {\n        a, b = linear(16) -> split(2)\n        g = b -> sigmoid\n"
            "        a -> mul(g) -> add(g)\n    }")
    seg = seqdsl.parse(model(body)).model()
    plain = seqdsl.parse(model(body.replace("segments(length=4, memory=0)", "residual"))).model()
    torch.manual_seed(0)
    built = seqdsl.build(seg).eval()
    x = torch.randn(2, 10, 8)
    sd = built.state_dict()
    a, b = F.linear(x, sd["y.segments.a.linear.weight"], sd["y.segments.a.linear.bias"]).chunk(2, -1)
    g = torch.sigmoid(b)
    with torch.no_grad():
        assert torch.allclose(built(x), a * g + g, atol=1e-6)
    assert plain.params == seg.params
    assert_emitted_equals_built(model(body))


def test_binds_carry_per_sequence_lengths():
    text = GATED.replace("input x: float[B, T, 8]", "input x: float[B, T, 8] lengths")
    torch.manual_seed(0)
    built = seqdsl.build(seqdsl.parse(text).model()).eval()
    x = torch.randn(2, 9, 8)
    with torch.no_grad():
        y, n = built(x, lengths=torch.tensor([9, 5]))
        alone = built(x[1:, :5])
    assert n.tolist() == [9, 5]
    assert torch.allclose(y[1, :5], alone[0], atol=1e-5)
    assert y[1, 5:].abs().max() == 0


def test_a_body_name_reaches_a_block_as_an_argument_and_as_cross_attention_context():
    extra = "block gate(v) {\n    mul(v)\n}\n\n"
    text = model("residual {\n        g = linear(d) -> sigmoid\n        gate(g)\n    }", extra)
    graph = seqdsl.parse(text).model()
    assert graph.node("y.residual.gate.mul").sources == ("x", "y.residual.g.sigmoid")
    ctx = model("residual {\n        m = linear(d)\n        cross_attention(2, context=m)\n    }")
    graph = seqdsl.parse(ctx).model()
    assert graph.node("y.residual.cross_attention").sources == ("x", "y.residual.m.linear")


def test_nested_bodies_see_the_names_around_them_and_as_names_each_copy():
    text = model("repeat(2) {\n        g = linear(d) as gate_proj -> sigmoid\n        residual { mul(g) }\n    }")
    graph = seqdsl.parse(text.replace("    w = x -> linear(8)\n", "")).model()
    assert graph.node("y.repeat[1].residual.mul").sources == ("y.repeat[0].residual.add",
                                                              "y.repeat[1].g.sigmoid")
    assert [n.alias for n in graph.nodes if n.alias] == ["gate_proj[0]", "gate_proj[1]"]
    assert graph.node("y.repeat[1].g.gate_proj").kind == "linear"


# ------------------------------------------------------------------ refusals
REFUSED = {
    "shadows a model value": ("residual {\n        w = linear(d)\n        mul(w)\n    }", (6, 9),
                              "'w' is already a value of the model (bound at line 4)"),
    "shadows a let": ("residual {\n        d = linear(8)\n        mul(d)\n    }", (6, 9),
                      "'d' is already a let (at line 2)"),
    "shadows a layer kind": ("residual {\n        silu = linear(d)\n        mul(silu)\n    }", (6, 9),
                             "'silu' is already a layer kind"),
    "bound twice": ("residual {\n        g = linear(d)\n        g = linear(d)\n        mul(g)\n    }", (7, 9),
                    "'g' is already bound in this body (at line 6)"),
    "bound twice in one line": ("residual {\n        a, a = linear(16) -> split(2)\n        mul(a)\n    }",
                                (6, 12), "'a' is bound twice in one line"),
    "shadows an enclosing body's name": (
        "repeat(2) {\n        g = linear(d)\n        residual {\n            g = linear(d)\n            mul(g)\n"
        "        }\n        mul(g)\n    }", (8, 13), "'g' is already bound in this body (at line 6)"),
    "shadows an as name": ("residual {\n        linear(d) as g\n        g = linear(d)\n        mul(g)\n    }",
                           (7, 9), "'g' is already a layer's `as` name"),
    "unused": ("repeat(2) {\n        g = linear(d) -> sigmoid\n        linear(d)\n    }", (6, 9),
               "'g' is bound but never used"),
    "throws away a value": ("repeat(2) {\n        g = linear(d) -> sigmoid\n        rmsnorm\n        g -> linear(d)\n"
                            "    }", (8, 9), "the value before it is never used"),
    "used outside its body": ("repeat(2) {\n        residual {\n            g = linear(d) -> sigmoid\n"
                              "            mul(g)\n        }\n        mul(g)\n    }", (10, 13), "unknown name 'g'"),
    "several names without split": ("residual {\n        a, b = linear(16)\n        mul(a) -> mul(b)\n    }",
                                    (6, 16), "needs the pipeline to end with split(2)"),
    "segments line from an outside name": (
        "repeat(1) {\n        g = linear(d)\n        segments(length=4, memory=0) {\n            g -> linear(d)\n"
        "        }\n    }", (8, 13), "'g' is bound outside this segments body"),
    "segments mul of an outside name": (
        "repeat(1) {\n        g = linear(d)\n        segments(length=4, memory=0) {\n            mul(g)\n        }\n"
        "    }", (8, 13), "mul cannot combine values inside segments"),
    "cross_attention context bound per segment": (
        "segments(length=4, memory=0) {\n        g = linear(d)\n        cross_attention(2, context=g)\n    }",
        (7, 9), "cross_attention reads its context= whole"),
    "a line from a model value": ("residual {\n        w -> linear(d)\n    }", (6, 9), "unknown layer 'w'"),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_refusals_point_at_the_spot(case):
    body, (line, col), words = REFUSED[case]
    got = first_error(model(body))
    assert got[:2] == (line, col), got
    assert words in got[2], got


def test_refusal_help_names_the_fix():
    assert "a body's names are its own" in first_error(model(REFUSED["used outside its body"][0]))[3]
    assert "add(w) or mul(w)" in first_error(model(REFUSED["a line from a model value"][0]))[3]
    hidden = first_error(model("residual {\n        g = linear(d)\n        usesg\n        mul(g)\n    }",
                               "block usesg() {\n    mul(g)\n}\n\n"))
    assert hidden[:2] == (2, 9) and "pass the value as an argument" in hidden[3]
    param = first_error(model("residual { gate(w) }", "block gate(v) {\n    v -> silu\n}\n\n"))
    assert param[:3] == (2, 5, "unknown layer 'v'") and "'v' is a block parameter" in param[3]
    block = first_error(model("residual {\n        gate = linear(d)\n        mul(gate)\n    }",
                              "block gate() {\n    silu\n}\n\n"))
    assert "'gate' is already a block (defined at bb.seq:1)" in block[2]


def test_a_block_binds_names_a_model_value_has():
    """Inside a block the model's values are not in scope: its names are free."""
    text = model("repeat(2) { gated(d) }", "block gated(d) {\n    w = linear(d) -> sigmoid\n    mul(w)\n}\n\n")
    assert seqdsl.parse(text).model().node("y.repeat[1].gated.w.sigmoid") is not None


def test_cli_check_refuses_with_file_line_col_and_no_traceback(tmp_path, capsys):
    spec = tmp_path / "unused.seq"
    spec.write_text(model(REFUSED["unused"][0]))
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr()
    text = err.out + err.err
    assert f"{spec}:6:9: error: 'g' is bound but never used" in text
    assert "Traceback" not in text


# ------------------------------------------------------------------ fmt and builder
def test_fmt_is_stable_and_reparses_to_the_same_graph():
    messy = GATED.replace("                a\n", "                # the gated path\n                a\n").replace(
        "g = z -> silu", "g = z -> silu   # gate").replace("-> silu\n                    -> mul(g)",
                                                         "-> silu -> mul(g)")
    once = format_text(messy)
    assert format_text(once) == once
    assert "# the gated path" in once and "# gate" in once
    before, after = seqdsl.parse(messy).model(), seqdsl.parse(once).model()
    assert [(n.name, n.kind, n.sources) for n in before.nodes] == [(n.name, n.kind, n.sources) for n in after.nodes]
    assert format_text(GATED) == GATED
    assert format_text(EXAMPLE.read_text()) == EXAMPLE.read_text()


def test_fmt_never_puts_a_body_with_binds_on_one_line():
    text = model("residual { g = linear(d) -> sigmoid\n        mul(g) }")
    out = format_text(text)
    assert "residual {\n            g = linear(d) -> sigmoid\n            mul(g)\n        }" in out
    assert seqdsl.parse(out).model().params == seqdsl.parse(text).model().params


def test_builder_writes_binds_and_lines_in_bodies():
    m = sb.model("gated")
    d = m.let("d", 8)
    di = m.let("di", 16)
    x = m.input("x", "float", ["B", "T", 8])
    y = m.bind("y", x, sb.repeat(3, sb.residual(
        sb.rmsnorm(),
        sb.bind(("a", "z"), sb.linear(2 * di, bias=False), sb.split(2)),
        sb.bind("g", sb.silu(), source="z"),
        sb.line("a", sb.conv1d(di, 4, padding="causal", groups=di), sb.silu(), sb.mul("g"),
                sb.linear(d, bias=False)))))
    m.output(y)
    assert m.to_seq() == GATED
    assert m.check().params == seqdsl.parse(GATED).model().params


def test_builder_refuses_a_line_outside_a_body():
    m = sb.model("m")
    x = m.input("x", "float", ["B", "T", 8])
    with pytest.raises(TypeError, match="lines of a body"):
        m.bind("y", x, sb.bind("g", sb.linear(8)))
    with pytest.raises(ValueError, match="give the stages"):
        sb.bind("g")
    with pytest.raises(ValueError, match="not a valid identifier"):
        sb.bind("g h", sb.linear(8))


# ------------------------------------------------------------------ verify
VERIFIED = {
    "gated": GATED,
    "glu_ffn": model("repeat(3) {\n        residual {\n            layernorm\n"
                     "            u, v = linear(32) -> split(2)\n            g = v -> sigmoid\n"
                     "            u -> mul(g) -> linear(d)\n        }\n    }"),
    "tee_gate": model("repeat(2) {\n        residual {\n            rmsnorm\n            g = linear(d) -> silu\n"
                      "            linear(d) -> mul(g) -> add(g)\n        }\n    }"),
}


@pytest.mark.parametrize("name", VERIFIED)
def test_verify_measures_binds_in_repeated_residual_bodies(name):
    report = verify(seqdsl.parse(VERIFIED[name].replace("    w = x -> linear(8)\n", "")), seq=[16, 25], batch=2)
    assert report.ok, [(r.figure, r.seq, r.estimate, r.measured) for r in report.failed]
    assert {r.figure for r in report.rows} >= {"params", "flops_train", "activation_bytes",
                                                "inference_live_bytes"}
