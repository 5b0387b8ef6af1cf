"""permute (stating a channels-first input's layout), the check-time warning on
a conv or pool that reads a channels-first layout, and join (the RNN-T
joiner's [B, T, C] + [B, U, C] -> [B, T, U, C]): shapes, errors, costs,
lowering against hand-written torch references, emit, fmt, the CLI."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import seqdsl
from seqdsl.errors import SpecError
from seqdsl.lang.printer import format_text

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from seqdsl.backend.emit import class_name, emit_program  # noqa: E402
from test_encoder_decoder_generation import nbytes  # noqa: E402  (state bytes, context inputs skipped)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def model(body: str, name: str = "m") -> str:
    return f"model {name} {{\n" + "\n".join("    " + ln for ln in body.splitlines()) + "\n}\n"


def refused(text: str) -> SpecError:
    with pytest.raises(SpecError) as exc:
        seqdsl.parse(text)
    return exc.value


VIDEO_CF = model("input x: float[B, T, 3, 32, 32]\n"
                 "y = x -> permute([0, 1, 3, 4, 2]) -> conv2d(8, 3, stride=2) -> spatial_mean\n"
                 "output y")


# ------------------------------------------------------------------ permute
def test_permute_moves_channels_first_to_last():
    g = seqdsl.parse(VIDEO_CF).model()
    perm = g.layers[0]
    assert perm.kind == "permute" and str(perm.output) == "float[B, T, 32, 32, 3]"
    conv = g.layers[1]
    assert str(conv.output) == "float[B, T, 16, 16, 8]" and conv.params == 8 * 3 * 9 + 8
    assert g.warnings == []


@pytest.mark.parametrize("order, words, col", [
    ("[0, 1, 3, 3, 2]", "is not a permutation of the 5 axes", 22),
    ("[0, 1, 2, 3]", "is not a permutation of the 5 axes", 22),
    ("[1, 0, 3, 4, 2]", "moves the batch or time axis", 22),
    ("[0, 1, 2, 3, 4]", "leaves every axis in place", 22),
])
def test_permute_refuses_a_bad_order_at_the_argument(order, words, col):
    err = refused(model(f"input x: float[B, T, 3, 32, 32]\ny = x -> permute({order})\noutput y"))
    d = err.diagnostics[0]
    assert words in d.message and (d.span.line, d.span.column) == (3, col), d.render()
    assert d.help


def test_permute_costs_a_copy_and_no_flops():
    text = model("input x: float[B, T, 3, 32, 32]\ny = x -> permute([0, 1, 3, 4, 2])\noutput y")
    p = seqdsl.estimate(seqdsl.parse(text), seq=10, batch=2, optimizer="none").points[0]
    numel = 2 * 10 * 3 * 32 * 32
    assert p.flops_forward == 0 and p.flops_train == 0 and p.activation_bytes == 0
    # the input and its permuted copy are live together
    assert p.inference_peak_bytes == 2 * numel * 4


def test_permute_lowers_to_a_contiguous_copy_of_torch_permute():
    m = seqdsl.build(seqdsl.parse(VIDEO_CF)).eval()
    x = torch.randn(2, 5, 3, 32, 32)
    perm = m._mods[seqdsl.parse(VIDEO_CF).model().layers[0].name]
    y = perm(x)
    assert torch.equal(y, x.permute(0, 1, 3, 4, 2)) and y.is_contiguous()
    assert y.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
    # already contiguous in the new order: still a copy, as the estimate counts
    z = torch.randn(2, 5, 32, 32, 3).permute(0, 1, 4, 2, 3)
    assert perm(z).untyped_storage().data_ptr() != z.untyped_storage().data_ptr()


def test_permute_and_join_emit_standalone_source_equal_to_build(tmp_path):
    prog = seqdsl.parse(VIDEO_CF + JOINER)
    out = tmp_path / "gen.py"
    out.write_text(emit_program(list(prog.models.values()), "t.seq"))
    spec = importlib.util.spec_from_file_location("gen_layout_join", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    inputs = {"m": (torch.randn(2, 4, 3, 32, 32),), "joiner": (torch.randn(2, 5, 6), torch.randn(2, 7, 6))}
    for graph in prog.models.values():
        built = seqdsl.build(prog, graph.name).eval()
        emitted = getattr(mod, class_name(graph.name))().eval()
        emitted.load_state_dict(built.state_dict())
        with torch.no_grad():
            assert torch.equal(emitted(*inputs[graph.name]), built(*inputs[graph.name]))


def test_permute_and_join_print_canonically():
    text = ("model m {\n    input p: float[B, U, 6]\n    input x: float[B, T, 3, 8, 6]\n\n"
            "    y = x -> permute([0, 1, 3, 4, 2]) -> conv2d(6, 3) -> spatial_mean -> join(context=p)\n\n"
            "    output y\n}\n")
    assert format_text(text) == text
    assert str(seqdsl.parse(text).model().outputs["y"]) == "float[B, T, U, 6]"


# ------------------------------------------------------------------ the layout warning
def conv_on(shape: str) -> str:
    return model(f"input x: float[{shape}]\ny = x -> conv2d(16, 3) -> spatial_mean\noutput y")


def test_channels_first_video_warns_at_the_conv():
    prog = seqdsl.parse(conv_on("B, T, 3, 112, 112"))
    (w,) = prog.warnings
    assert prog.model().warnings == [w] and w.severity == "warning"
    assert (w.span.line, w.span.column) == (3, 14)
    assert "112 channels" in w.message and "channels-first" in w.message
    assert "permute([0, 1, 3, 4, 2])" in w.help
    assert w.render().startswith("<string>:3:14: warning: conv2d reads 112 channels")


@pytest.mark.parametrize("shape", ["B, T, 112, 112, 3",     # channels-last video
                                   "B, T, 4, 4, 512",       # a late feature map: small spatial, many channels
                                   "B, T, 80, 1",           # a spectrogram with its channel axis
                                   "B, T, 3, 256",          # a strided-down spectrogram (only the channels after it)
                                   "B, T, H, W, 3"])        # symbolic sizes: nothing to judge
def test_channels_last_inputs_do_not_warn(shape):
    assert seqdsl.parse(conv_on(shape)).warnings == []


def test_the_suggested_permute_silences_the_warning_and_pools_warn_too():
    text = model("input x: float[B, T, 3, 112, 112]\n"
                 "y = x -> maxpool2d(2) -> permute([0, 1, 3, 4, 2]) -> conv2d(16, 3) -> spatial_mean\noutput y")
    (w,) = seqdsl.parse(text).warnings
    assert w.message.startswith("maxpool2d reads 112 channels")
    fixed = model("input x: float[B, T, 3, 112, 112]\n"
                  "y = x -> permute([0, 1, 3, 4, 2]) -> maxpool2d(2) -> conv2d(16, 3) -> spatial_mean\noutput y")
    assert seqdsl.parse(fixed).warnings == []


def test_check_prints_the_warning_to_stderr_and_exits_0(tmp_path):
    spec = tmp_path / "video.seq"
    spec.write_text(conv_on("B, T, 3, 112, 112"))
    r = subprocess.run([sys.executable, "-m", "seqdsl", "check", str(spec)], capture_output=True, text=True,
                       cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert "parameters:" in r.stdout and "warning:" not in r.stdout
    assert f"{spec}:3:14: warning: conv2d reads 112 channels" in r.stderr
    assert "help: if the value is channels-first" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------ join
JOINER = model("input y: float[B, U, 6]\ninput x: float[B, T, 6]\n"
               "pred = y -> linear(8)\n"
               "out = x -> linear(8) -> join(context=pred) -> tanh -> linear(5)\n"
               "output out", name="joiner")


class Joiner(nn.Module):
    """torchaudio's RNN-T joiner, written out: projections, the broadcast add,
    the activation, the output linear."""

    def __init__(self, c_in, c, vocab):
        super().__init__()
        self.src, self.tgt, self.out = nn.Linear(c_in, c), nn.Linear(c_in, c), nn.Linear(c, vocab)

    def forward(self, y, x):
        joint = self.src(x).unsqueeze(2) + self.tgt(y).unsqueeze(1)
        return self.out(torch.tanh(joint))


def test_join_shape_is_the_grid_of_both_axes():
    g = seqdsl.parse(JOINER).model()
    assert str(g.outputs["out"]) == "float[B, T, U, 5]"
    assert [n.kind for n in g.layers] == ["linear", "linear", "join", "tanh", "linear"]
    assert g.node_map["out.join"].params == 0


def test_join_is_the_broadcast_add():
    text = model("input y: float[B, U, 6]\ninput x: float[B, T, 6]\nz = x -> join(context=y)\noutput z")
    m = seqdsl.build(seqdsl.parse(text)).eval()
    y, x = torch.randn(3, 7, 6), torch.randn(3, 5, 6)
    with torch.no_grad():
        assert torch.equal(m(y, x), x.unsqueeze(2) + y.unsqueeze(1))


def test_joiner_equals_torchaudio_style_reference_and_its_flops_exactly():
    prog = seqdsl.parse(JOINER)
    m = seqdsl.build(prog)
    ref = Joiner(6, 8, 5)
    g = prog.model()
    ref.src.load_state_dict(m._mods["out.linear[0]"].state_dict())
    ref.tgt.load_state_dict(m._mods["pred.linear"].state_dict())
    ref.out.load_state_dict(m._mods["out.linear[1]"].state_dict())
    assert sum(p.numel() for p in ref.parameters()) == g.params
    y, x = torch.randn(2, 7, 6), torch.randn(2, 11, 6)
    with torch.no_grad():
        torch.testing.assert_close(m(y, x), ref(y, x))
    with FlopCounterMode(display=False) as fwd, torch.no_grad():
        ref(y, x)
    with FlopCounterMode(display=False) as train:
        ref(y, x).sum().backward()
    p = seqdsl.estimate(prog, seq={"T": 11, "U": 7}, batch=2).points[0]
    assert p.flops_forward == fwd.get_total_flops() > 0
    assert p.flops_train == train.get_total_flops()
    # the output linear over B·T·U rows is most of it
    assert 2 * 2 * 11 * 7 * 8 * 5 > p.flops_forward / 2


def test_join_costs_no_flops_and_its_output_is_new_memory():
    text = model("input y: float[B, U, 6]\ninput x: float[B, T, 6]\nz = x -> join(context=y)\noutput z")
    p = seqdsl.estimate(seqdsl.parse(text), seq={"T": 10, "U": 4}, batch=2, optimizer="none").points[0]
    assert p.flops_forward == 0 and p.activation_bytes == 0
    assert p.inference_peak_bytes >= 2 * 10 * 4 * 6 * 4


@pytest.mark.parametrize("ctx_type, words", [
    ("float[B, U, 5]", "context=y float[B, U, 5] has 5 channels, the input float[B, T, 6] has 6"),
    ("float[N, U, 6]", "context=y float[N, U, 6] has batch N, the input float[B, T, 6] has B"),
    ("float[B, U, 2, 6]", "must be a float [B, U, C] value, got float[B, U, 2, 6]"),
    ("int[B, U]", "must be a float [B, U, C] value, got int[B, U]"),
])
def test_join_refuses_values_that_do_not_match_naming_both(ctx_type, words):
    err = refused(model(f"input y: {ctx_type}\ninput x: float[B, T, 6]\nz = x -> join(context=y)\noutput z"))
    d = err.diagnostics[0]
    assert words in d.message and (d.span.line, d.span.column) == (4, 19), d.render()


def test_rnnt_example_is_canonical_and_its_joiner_dominates():
    path = ROOT / "examples" / "rnnt_joiner.seq"
    text = path.read_text()
    assert format_text(text) == text
    est = seqdsl.estimate(seqdsl.load(path), seq={"T": 400, "U": 40}, batch=1)
    g = seqdsl.load(path).model()
    assert str(g.outputs["logits"]) == "float[B, ceil(T/2), U, 512]"
    joint_linear = 2 * 200 * 40 * 320 * 512
    assert joint_linear > 0.6 * est.points[0].flops_forward




def test_joiner_streams_its_input_with_the_context_given_once():
    """Every layer is causal, but join reads its context whole: the estimate
    takes the predictor's input as given once (init_state) and streams x, as
    the built model does; per-step FLOPs and the state are measured."""
    prog = seqdsl.parse(JOINER)
    t, u = 6, 4
    est = seqdsl.estimate(prog, seq={"T": t, "U": u}, batch=2)
    assert est.streaming and est.stream_context == ["y"]
    m = seqdsl.build(prog).eval()
    y, x = torch.randn(2, u, 6), torch.randn(2, t, 6)
    with torch.no_grad():
        full = m(y, x)
        state = m.init_state(2, y=y)
        outs = [m.step(x[:, i:i + 1], state=state)[0] for i in range(t - 1)]
        with FlopCounterMode(display=False) as step:
            outs.append(m.step(x[:, t - 1:], state=state)[0])
    torch.testing.assert_close(torch.cat(outs, 1), full)
    assert step.get_total_flops() == est.points[0].flops_per_token == 2 * 2 * 6 * 8 + 2 * 2 * u * 8 * 5
    assert nbytes(state, skip=("y", "__skip__")) == est.points[0].state_bytes == 2 * u * 8 * 4


def test_builder_writes_permute_and_join():
    import seqdsl.builder as sb
    m = sb.model("j")
    p = m.input("p", "float", ["B", "U", 8])
    x = m.input("x", "float", ["B", "T", 3, 16, 16])
    pred = m.bind("pred", p, sb.linear(8))
    m.output(m.bind("out", x, sb.permute([0, 1, 3, 4, 2]), sb.conv2d(8, 3), sb.spatial_mean(),
                    sb.join(context=pred), sb.tanh(), sb.linear(5)))
    assert "-> permute([0, 1, 3, 4, 2])" in m.to_seq() and "-> join(context=pred)" in m.to_seq()
    graph = m.check()
    assert str(graph.outputs["out"]) == "float[B, T, U, 5]" and graph.warnings == []
