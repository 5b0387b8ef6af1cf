"""emformer: torchaudio's Emformer stack (seqdsl/layers/emformer.py) against
a plain reference written from torchaudio's source (tests/emformer_ref.py):
outputs equal after loading the reference's weights, forward FLOPs equal to
FlopCounterMode's count of the reference, parameters equal; its streaming
(step(), torchaudio's infer) against the reference's infer, its state and
per-frame FLOPs against the estimate; its checks and diagnostics, `fmt` and
builder round trips. The
layer conformance harness (tests/test_layer_harness.py) holds its training
FLOPs, saved activations and inference live set against the built module."""
from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

import seqdsl  # noqa: E402
import seqdsl.builder as sb  # noqa: E402
from seqdsl.backend import measure  # noqa: E402
from seqdsl.lang.printer import format_text  # noqa: E402

from emformer_ref import Emformer, emformer_weights  # noqa: E402
from test_encoder_decoder_generation import nbytes  # noqa: E402  (state bytes, context inputs skipped)


from test_backend_build import one_thread  # noqa: E402,F401  (autouse: one intra-op thread)


def spec(args: str, c: int = 16) -> str:
    return f"model m {{\n    input x: float[B, T, {c}]\n    y = x -> emformer({args})\n    output y\n}}\n"


# (seqdsl arguments, the reference's) — memory bank or none, tanh or clamp on it, left
# context shorter or longer than the utterance, no lookahead, a lookahead longer than a segment
CASES = [
    ("2, 32, segment=4, left=6, right=2",
     dict(heads=2, ffn=32, layers=1, segment=4, left_context_length=6, right_context_length=2)),
    ("4, 24, segment=5, layers=2, left=3, right=1, memory=2, act=gelu",
     dict(heads=4, ffn=24, layers=2, segment=5, activation="gelu", left_context_length=3,
          right_context_length=1, max_memory_size=2)),
    ("2, 16, segment=8, layers=2, memory=1, act=silu, tanh_on_mem=true",
     dict(heads=2, ffn=16, layers=2, segment=8, activation="silu", max_memory_size=1, tanh_on_mem=True)),
    ("2, 16, segment=3, layers=3, left=100, right=5, memory=5, tanh_on_mem=true",
     dict(heads=2, ffn=16, layers=3, segment=3, left_context_length=100, right_context_length=5,
          max_memory_size=5, tanh_on_mem=True)),
]


@pytest.mark.parametrize("args, ref_args", CASES, ids=[c[0] for c in CASES])
def test_equals_torchaudio_reference(args, ref_args):
    graph = seqdsl.parse(spec(args)).model()
    torch.manual_seed(0)
    ref = Emformer(16, **ref_args).eval()
    assert graph.params == sum(p.numel() for p in ref.parameters())
    ours = seqdsl.build(graph).eval()
    ours.load_state_dict(emformer_weights("y.emformer", ref), strict=True)
    right = ref_args.get("right_context_length", 0)
    # one frame past the lookahead (one short segment), whole and partial last segments
    for t in (right + 1, 24 + right, 37):
        x = torch.randn(2, t, 16, generator=torch.Generator().manual_seed(t))
        with torch.no_grad(), measure.counter() as c:
            expected = ref(x)
        with torch.no_grad():
            got = ours(x)
        assert got.shape == (2, t - right, 16)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        assert seqdsl.estimate(graph, seq={"T": t}, batch=2).points[0].flops_forward == c.get_total_flops()


def test_training_gradients_equal_the_reference():
    """Train mode (dropout 0): the input gradient and a weight gradient match."""
    args, ref_args = CASES[1]
    graph = seqdsl.parse(spec(args)).model()
    torch.manual_seed(1)
    ref = Emformer(16, **ref_args).train()
    ours = seqdsl.build(graph).train()
    ours.load_state_dict(emformer_weights("y.emformer", ref), strict=True)
    x = torch.randn(1, 23, 16, generator=torch.Generator().manual_seed(2))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    (ref(xa) ** 2).sum().backward()
    (ours(xb) ** 2).sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.state_dict(keep_vars=True)["y.emformer.layers.0.kv.weight"].grad,
                               ref.emformer_layers[0].attention.emb_to_key_value.weight.grad, rtol=1e-4, atol=1e-5)


def test_what_each_query_sees_changes_the_output():
    """left=, memory= and the lookahead each reach the output (so the equality above is not vacuous)."""
    base = "2, 16, segment=4, left=4, right=2, memory=2"
    torch.manual_seed(0)
    x = torch.randn(1, 30, 16)
    outs = {}
    for args in (base, base.replace("left=4", "left=0"), base.replace("memory=2", "memory=1")):
        graph = seqdsl.parse(spec(args)).model()
        module = seqdsl.build(graph, seed=0).eval()
        with torch.no_grad():
            outs[args] = module(x)
    first, *others = outs.values()
    assert all(not torch.allclose(first, o) for o in others)
    # the lookahead frames change the output of the segment before them only
    graph = seqdsl.parse(spec("2, 16, segment=4, right=2")).model()
    module = seqdsl.build(graph, seed=0).eval()
    y = x.clone()
    y[:, 5] += torch.randn(16)          # a frame of segment 1, in segment 0's right context
    with torch.no_grad():
        a, b = module(x), module(y)
    changed = (a - b).abs().amax(-1)[0] > 0
    assert changed[:8].all() and not changed[8:].any()


def test_flops_grow_with_the_square_of_the_length():
    """Every layer's score matrix is dense over all queries and keys (torchaudio's training form)."""
    graph = seqdsl.parse(spec("2, 16, segment=4, left=4, right=1")).model()
    f = [seqdsl.estimate(graph, seq={"T": t}, batch=1).points[0].flops_forward for t in (1025, 2049, 4097)]
    assert (f[2] - f[1]) > 1.9 * (f[1] - f[0])


def test_parameters_follow_the_rule():
    graph = seqdsl.parse(spec("4, 64, segment=4, layers=3", c=32)).model()
    assert graph.params == 3 * (4 * 32 * 32 + 2 * 32 * 64 + 11 * 32 + 64)


@pytest.mark.parametrize("args, message, col", [
    ("3, 16, segment=4", "heads=3 does not divide the 16 channels", "3, 16"),
    ("2, 16, segment=4, act=tanh", "act", "act=tanh"),
    ("2, 16, segment=0", "segment", "segment=0"),
    ("2, 16, segment=4, right=-1", "right", "right=-1"),
])
def test_bad_arguments_are_diagnosed_at_the_argument(args, message, col):
    text = spec(args)
    with pytest.raises(seqdsl.SpecError) as info:
        seqdsl.parse(text, "m.seq").model()
    err = info.value
    assert message in err.message
    assert err.span.line == 3
    assert err.span.column == text.splitlines()[2].find(col) + 1


def test_too_short_an_input_and_segments_are_refused():
    text = "model m {\n    input x: float[B, 3, 16]\n    y = x -> emformer(2, 16, segment=4, right=3)\n    output y\n}\n"
    with pytest.raises(seqdsl.SpecError, match="not more than right=3"):
        seqdsl.parse(text).model()
    text = ("model m {\n    input x: float[B, T, 16]\n"
            "    y = x -> segments(length=8, memory=8) { emformer(2, 16, segment=4) }\n    output y\n}\n")
    with pytest.raises(seqdsl.SpecError, match="cannot run inside segments"):
        seqdsl.parse(text).model()


@pytest.mark.parametrize("right", [0, 2])
def test_per_sequence_lengths_are_refused_though_it_streams(right):
    """It streams (is_causal), but a segment's frames see its later frames:
    padding would reach the valid outputs, even with no lookahead."""
    text = spec(f"2, 16, segment=4, right={right}").replace("float[B, T, 16]", "float[B, T, 16] lengths")
    with pytest.raises(seqdsl.SpecError, match="no rule for per-sequence lengths: a segment's frames"):
        seqdsl.parse(text).model()


def test_the_built_module_refuses_an_input_no_longer_than_the_lookahead():
    module = seqdsl.build(seqdsl.parse(spec("2, 16, segment=4, right=3")).model())
    with pytest.raises(ValueError, match="more than right=3 frames"):
        module(torch.zeros(1, 3, 16))


def test_cli_reports_the_error_without_a_traceback(tmp_path):
    path = tmp_path / "bad.seq"
    path.write_text(spec("3, 16, segment=4"))
    run = subprocess.run([sys.executable, "-m", "seqdsl", "check", str(path)], capture_output=True, text=True)
    assert run.returncode == 1
    assert f"{path}:3:" in run.stderr and "heads=3 does not divide" in run.stderr
    assert "Traceback" not in run.stderr


# ---------------------------------------------------------------- streaming: torchaudio's infer
def stream(module, x, n, final=True, **context):
    """x through module.step in chunks of n frames, final=True with the last;
    (the outputs joined, the state)."""
    state = module.init_state(x.shape[0], **context)
    chunks = [x[:, s:s + n] for s in range(0, x.shape[1], n)]
    outs = []
    for i, chunk in enumerate(chunks):
        y, state = module.step(chunk, state=state, final=final and i == len(chunks) - 1)
        outs.append(y)
    return torch.cat(outs, 1), state


@pytest.mark.parametrize("args, ref_args", CASES, ids=[c[0] for c in CASES])
def test_reference_infer_over_segments_equals_its_forward(args, ref_args):
    """torchaudio's infer fed as its streaming recipes feed it (one segment and
    its lookahead a call, the last segment shorter) equals the training-mode
    forward: the memory bank, the left context and the right-context rows
    are the same numbers, only summed in another order."""
    torch.manual_seed(0)
    ref = Emformer(16, **ref_args).eval()
    right = ref_args.get("right_context_length", 0)
    for t in (right + 1, 24 + right, 37):
        x = torch.randn(2, t, 16, generator=torch.Generator().manual_seed(t))
        with torch.no_grad():
            torch.testing.assert_close(ref.infer_stream(x), ref(x), rtol=1e-5, atol=1e-5)


def test_reference_infer_differs_from_forward_given_two_segments_at_once():
    """Where they differ: infer takes all it is given (less the lookahead) as
    one segment (one summary; every frame sees every other), so a call with
    two segments is not the forward's two segments."""
    args, ref_args = CASES[1]                          # segment=5, right=1, memory=2
    torch.manual_seed(0)
    ref = Emformer(16, **ref_args).eval()
    x = torch.randn(1, 11, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        once, _ = ref.infer(x)
        expected = ref(x)
    assert once.shape == expected.shape == (1, 10, 16)
    assert not torch.allclose(once[:, :5], expected[:, :5], atol=1e-3)


@pytest.mark.parametrize("args, ref_args", CASES, ids=[c[0] for c in CASES])
def test_step_equals_the_reference_infer(args, ref_args):
    """step() over chunks of 1, 3, 17 frames and the whole input, final=True
    with the last: torchaudio's infer segment by segment, the last segment
    shorter (and so the forward)."""
    graph = seqdsl.parse(spec(args)).model()
    torch.manual_seed(0)
    ref = Emformer(16, **ref_args).eval()
    ours = seqdsl.build(graph).eval()
    ours.load_state_dict(emformer_weights("y.emformer", ref), strict=True)
    right = ref_args.get("right_context_length", 0)
    for t in (right + 1, 24 + right, 37):
        x = torch.randn(2, t, 16, generator=torch.Generator().manual_seed(t))
        with torch.no_grad():
            expected = ref.infer_stream(x)
            for n in (1, 3, 17, t):
                got, _ = stream(ours, x, n)
                torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_output_lags_until_a_segment_and_its_lookahead_arrive():
    """segment=4, right=2: frame by frame, 4 outputs come at input frames 6,
    10, ... (a segment and its 2 lookahead frames); the last, shorter segment
    only with final=True, here on an empty chunk."""
    graph = seqdsl.parse(spec("2, 16, segment=4, left=3, right=2, memory=1")).model()
    module = seqdsl.build(graph, seed=0).eval()
    x = torch.randn(1, 13, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full = module(x)
        state = module.init_state(1)
        outs = [module.step(x[:, i:i + 1], state=state)[0] for i in range(13)]
        assert [y.shape[1] for y in outs] == [0, 0, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0]
        last, _ = module.step(x[:, 13:], state=state, final=True)
    assert last.shape[1] == 3
    torch.testing.assert_close(torch.cat(outs + [last], 1), full, rtol=1e-5, atol=1e-5)


def test_a_stream_no_longer_than_the_lookahead_is_refused_at_its_end():
    module = seqdsl.build(seqdsl.parse(spec("2, 16, segment=4, right=3")).model()).eval()
    with torch.no_grad(), pytest.raises(ValueError, match="more than right=3 frames"):
        stream(module, torch.zeros(1, 3, 16), 2)


@pytest.mark.parametrize("args", [c[0] for c in CASES])
def test_streaming_state_and_flops_equal_the_estimate(args):
    """The state's tensors (input buffer, memory banks, left-context keys and
    values, allocated whole on the first step) take the estimate's state
    bytes; the step that completes segment k's window (input length
    T = k·segment + right) runs segment·(FLOPs per frame at T): the memory
    bank and left context still filling (k = 1, 2) and full (k = 9)."""
    graph = seqdsl.parse(spec(args)).model()
    node = next(n for n in graph.nodes if n.kind == "emformer")
    seg, right = node.args.segment, node.args.right
    module = seqdsl.build(graph, seed=0).eval()
    for k in (1, 2, 9):
        t = k * seg + right
        x = torch.randn(2, t, 16, generator=torch.Generator().manual_seed(k))
        with torch.no_grad():
            _, state = stream(module, x[:, :t - 1], 64, final=False)
            with measure.counter() as c:
                y, state = module.step(x[:, t - 1:], state=state)
        assert y.shape[1] == seg
        point = seqdsl.estimate(graph, seq={"T": t}, batch=2).points[0]
        assert abs(c.get_total_flops() - seg * point.flops_per_token) < seg     # per frame, rounded
        assert nbytes(state, skip=("__skip__",)) == point.state_bytes == \
            2 * 16 * 4 * (node.args.layers * (node.args.memory + 2 * node.args.left) + seg + right - 1)


RNNT = """model rnnt {
    input frames: float[B, T, 8]
    input targets: int[B, U]
    source = frames -> linear(16) -> emformer(2, 32, segment=3, layers=2, left=4, right=1, memory=2) -> linear(24)
    target = targets -> embed(11, 24) -> ln_lstm(24)
    logits = source -> join(target) -> relu -> linear(11)
    output logits
}
"""


def test_an_rnnt_streams_its_audio_with_the_labels_given_once():
    """The labels come last, but join reads them whole: the estimate streams
    the audio with the labels given once, as init_state(targets=...) does;
    the stream equals the forward, its state and per-frame FLOPs the
    estimate's (a whole segment's frames fed one by one, left context and
    memory bank full)."""
    graph = seqdsl.parse(RNNT).model()
    t, u, seg = 31, 4, 3
    est = seqdsl.estimate(graph, seq={"T": t, "U": u}, batch=2)
    assert est.streaming and est.stream_context == ["targets"]
    module = seqdsl.build(graph, seed=0).eval()
    x = torch.randn(2, t, 8, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 11, (2, u), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = module(x, y)
        for n in (1, 4, t):
            got, state = stream(module, x, n, targets=y)
            torch.testing.assert_close(got, full, rtol=1e-5, atol=1e-5)
        _, state = stream(module, x[:, :t - seg], 64, final=False, targets=y)
        with measure.counter() as c:
            for i in range(t - seg, t):
                module.step(x[:, i:i + 1], state=state)
    assert c.get_total_flops() == seg * est.points[0].flops_per_token
    assert nbytes(state, skip=("targets", "__skip__")) == est.points[0].state_bytes


def test_fmt_and_builder_round_trip():
    text = ("model m {\n  input x : float[B,T,16]\n"
            "  y = x->emformer(2,16,segment=4,layers=2,left=3,right=1,memory=2,act=gelu,tanh_on_mem=true)\n"
            "  output y\n}\n")
    canonical = format_text(text, "<t>")
    assert format_text(canonical, "<t>") == canonical
    assert "emformer(2, 16, segment=4, layers=2, left=3, right=1, memory=2, act=gelu, tanh_on_mem=true)" \
        in canonical
    params = seqdsl.parse(text).model().params
    assert seqdsl.parse(canonical).model().params == params
    m = sb.model("m")
    x = m.input("x", "float", ["B", "T", 16])
    m.output(m.bind("y", x, sb.emformer(2, 16, segment=4, layers=2, left=3, right=1, memory=2, act="gelu",
                                        tanh_on_mem=True)))
    assert m.check().params == params
    assert "emformer(2, 16, segment=4" in m.to_seq()


# ---------------------------------------------------------------- ln_lstm: the RNN-T predictor's LSTM
def test_ln_lstm_equals_torchaudio_custom_lstm():
    from emformer_ref import CustomLSTM
    text = "model m {\n    input x: float[B, T, 24]\n    y = x -> ln_lstm(16, eps=1e-3)\n    output y\n}\n"
    graph = seqdsl.parse(text).model()
    torch.manual_seed(0)
    ref = CustomLSTM(24, 16, 1e-3)
    with torch.no_grad():       # norms off their defaults, so a swapped g_norm/c_norm shows
        for p in (ref.g_norm.weight, ref.g_norm.bias, ref.c_norm.weight, ref.c_norm.bias):
            p.uniform_(-1.0, 1.0)
    assert graph.params == sum(p.numel() for p in ref.parameters())
    ours = seqdsl.build(graph).eval()
    ours.load_state_dict({f"y.ln_lstm.{k}": v for k, v in ref.state_dict().items()}, strict=True)
    x = torch.randn(3, 11, 24, generator=torch.Generator().manual_seed(4))
    with torch.no_grad(), measure.counter() as c:
        expected = ref(x.transpose(0, 1)).transpose(0, 1)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5)
    assert seqdsl.estimate(graph, seq={"T": 11}, batch=3).points[0].flops_forward == c.get_total_flops()
