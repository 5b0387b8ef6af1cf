"""Backend: causal layers are causal, segments behave as Transformer-XL, and
step() over chunks reproduces forward (the bundled specs stream in
test_backend_build, which builds each of them once)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import seqdsl  # noqa: E402
from seqdsl.errors import SpecError  # noqa: E402

from test_backend_build import check_stream, one_thread  # noqa: E402,F401  (one_thread: autouse)

C = 16


def spec(body: str, extra: str = "") -> str:
    return f"""
model m {{
    input x: float[B, T, {C}]
{extra}
    y = x -> {body}
    output y
}}"""


def build(text, seed=0):
    torch.manual_seed(seed)
    return seqdsl.build(seqdsl.parse(text).model()).double().eval()


def influence(model, t=40, c=C):
    """dep[t_out, t_in]: whether output t_out changes when input t_in is perturbed."""
    torch.manual_seed(1)
    x = torch.randn(1, t, c, dtype=torch.float64)
    with torch.no_grad():
        base = model(x)
        dep = torch.zeros(t, t, dtype=torch.bool)
        for p in range(t):
            x2 = x.clone()
            x2[0, p] += 1.0
            dep[:, p] = (model(x2) - base).abs().amax(-1)[0] > 1e-9
    return dep


CAUSAL = {
    "full": "attention(2, causal=true)",
    "window": "attention(2, causal=true, window=5)",
    "performer": "attention(2, causal=true, kind=performer)",
    "linear": "attention(2, causal=true, kind=linear)",
    "rope_gqa": "attention(4, kv_heads=2, causal=true, pos=rope)",
    "alibi": "attention(2, causal=true, pos=alibi)",
    "relative": "attention(2, causal=true, pos=relative)",
    "conv": "conv1d(16, 4, padding=causal)",
    "segments": "segments(length=8, memory=8) { attention(2, causal=true) }",
    "lstm": "lstm(16)",
}


@pytest.mark.parametrize("name", sorted(CAUSAL))
def test_causal_layers_do_not_look_ahead(name):
    dep = influence(build(spec(CAUSAL[name])))
    t = dep.shape[0]
    future = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    assert not (dep & future).any(), "an output depends on a later input"
    assert dep.diagonal().all()


def test_window_sees_exactly_w_back_blocked():
    w = 5
    dep = influence(build(spec(f"attention(2, causal=true, window={w})")), t=23)
    i = torch.arange(23)
    expect = (i[None, :] <= i[:, None]) & (i[None, :] >= i[:, None] - w)
    assert torch.equal(dep, expect)
    dep = influence(build(spec(f"attention(2, window={w})")), t=23)
    assert torch.equal(dep, (i[None, :] - i[:, None]).abs() <= w)


@pytest.mark.parametrize("length,memory", [(8, 8), (8, 3), (8, 0), (6, 10)])
def test_segments_receptive_field_transformer_xl(length, memory):
    t = 30
    dep = influence(build(spec(f"segments(length={length}, memory={memory}) {{ attention(2, causal=true) }}")), t=t)
    for q in range(t):
        seg_start = (q // length) * length
        lo = max(seg_start - memory, 0)
        expect = torch.zeros(t, dtype=torch.bool)
        expect[lo:q + 1] = True
        assert torch.equal(dep[q], expect), (q, dep[q].nonzero().flatten().tolist())


def test_segment_memory_has_no_gradient():
    model = build(spec("segments(length=4, memory=4) { attention(2, causal=true) }"))
    x = torch.randn(1, 12, C, dtype=torch.float64, requires_grad=True)
    y = model(x)
    y[0, 11].sum().backward()
    # position 11 is in segment [8, 12); memory covers 4..7 but is detached
    assert x.grad[0, :8].abs().sum() == 0
    assert x.grad[0, 8:].abs().sum() > 0


@pytest.mark.parametrize("name", sorted(CAUSAL))
def test_step_matches_forward_small(name):
    model = build(spec(CAUSAL[name]))
    check_stream(model, [torch.randn(2, 29, C, dtype=torch.float64)])


def test_step_cross_attention_context_once():
    text = """
model m {
    input src: float[B, S, 8]
    input x: float[B, T, 16]
    mem = src -> linear(16) -> attention(2)
    y = x -> attention(2, causal=true) -> cross_attention(2, context=mem) -> lstm(16)
    output y
}"""
    model = build(text)
    src = torch.randn(2, 11, 8, dtype=torch.float64)
    x = torch.randn(2, 23, 16, dtype=torch.float64)
    check_stream(model, [src, x], context={"src": src})


def test_non_causal_spec_refuses_to_stream_naming_the_layer():
    model = build(spec("attention(2, causal=true) -> conv1d(16, 3)"))
    with pytest.raises(SpecError) as e:
        model.init_state(1)
    msg = str(e.value)
    assert "conv1d" in msg and "line 5" in msg

STRIDED = {
    "stride<kernel": "conv1d(16, 4, stride=2, padding=causal)",
    "stride=kernel": "conv1d(16, 3, stride=3, padding=causal) -> attention(2, causal=true) -> lstm(16)",
    "stride>kernel": "conv1d(16, 1, stride=4, padding=causal) -> residual { attention(2, causal=true, window=3) } "
                     "-> linear(8)",
    "two strided": "conv1d(16, 5, stride=2, padding=causal) -> gelu -> conv1d(16, 2, stride=2, padding=causal) "
                   "-> posenc -> attention(2, causal=true, kind=performer) -> gru(16)",
    "into segments": "conv1d(16, 3, stride=2, padding=causal) -> segments(length=4, memory=3) "
                     "{ residual { attention(2, causal=true) } -> mlp(16) } -> linear(4)",
}


@pytest.mark.parametrize("name", sorted(STRIDED))
def test_step_strided_causal_conv_matches_forward(name):
    """A strided causal conv emits an output only once a full stride has arrived,
    so chunks of 1 and 3 give empty outputs in between; layers after it step
    through those empty chunks."""
    model = build(spec(STRIDED[name]))
    for t in (29, 32):
        check_stream(model, [torch.randn(2, t, C, dtype=torch.float64)])


def test_strided_causal_conv_is_causal():
    """Output j of conv1d(k=4, stride=2, causal) reads inputs 2j-3 .. 2j only."""
    model = build(spec("conv1d(16, 4, stride=2, padding=causal)"))
    torch.manual_seed(1)
    x = torch.randn(1, 20, C, dtype=torch.float64)
    with torch.no_grad():
        base = model(x)
        for p in range(20):
            x2 = x.clone()
            x2[0, p] += 1.0
            changed = ((model(x2) - base).abs().amax(-1)[0] > 1e-9).nonzero().flatten().tolist()
            assert changed == [j for j in range(10) if 2 * j - 3 <= p <= 2 * j], (p, changed)


STREAM_VERDICT = [spec(b) for b in list(STRIDED.values()) + list(CAUSAL.values())] + [
    spec("attention(2, causal=true) -> conv1d(16, 3)"),
    spec("conv1d(16, 3, stride=2, padding=same)"),
    spec("lstm(16, bidirectional=true)"),
    spec("attention(2) -> linear(4)"),
]


@pytest.mark.parametrize("text", STREAM_VERDICT)
def test_backend_streams_exactly_what_the_cost_model_streams(text):
    from seqdsl.cost.model import model_cost
    graph = seqdsl.parse(text).model()
    blocker = model_cost(graph).streaming_blocker
    model = seqdsl.build(graph).eval()
    if blocker is None:
        model.check_streamable()
    else:
        with pytest.raises(SpecError, match=f"line {blocker.line}"):
            model.check_streamable()
