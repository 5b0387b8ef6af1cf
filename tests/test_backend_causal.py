"""Backend: causal layers are causal, segments behave as Transformer-XL, and
step() over chunks reproduces forward for every streamable spec."""
from __future__ import annotations

import glob
import os

import pytest

torch = pytest.importorskip("torch")

import seqdsl  # noqa: E402
from seqdsl.diagnostics import SpecError  # noqa: E402

from test_backend_build import SPECS, make_inputs  # noqa: E402

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


def _chunks(x_list, n):
    t = x_list[0].shape[1]
    for s in range(0, t, n):
        yield [x[:, s:s + n] for x in x_list]


def check_stream(model, inputs, context=None, tol=1e-5):
    context = context or {}
    names = [n for n in model.input_names if n not in context]
    stream_inputs = [x for n, x in zip(model.input_names, inputs) if n in names]
    with torch.no_grad():
        full = model(*inputs)
        for n in (1, 3, 17):
            state = model.init_state(inputs[0].shape[0], **context)
            outs = []
            for chunk in _chunks(stream_inputs, n):
                y, state = model.step(*chunk, state=state)
                outs.append(y)
            got = torch.cat(outs, 1)
            assert torch.allclose(got, full, atol=tol, rtol=tol), (n, (got - full).abs().max())


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


def _streamable(graph):
    model = seqdsl.build(graph)
    try:
        model.eval().check_streamable()
        return True
    except SpecError:
        return False


@pytest.mark.parametrize("path", SPECS, ids=os.path.basename)
def test_step_matches_forward_bundled(path):
    prog = seqdsl.load(path)
    for graph in prog.models.values():
        torch.manual_seed(0)
        model = seqdsl.build(graph).eval()
        names = list(graph.inputs)
        # encoder-decoder specs stream the last input with the others as context
        for context_names in ((), tuple(names[:-1])):
            try:
                model.check_streamable(context_names)
                break
            except SpecError:
                continue
        else:
            continue
        model = model.double()
        env = {s: (2 if s == graph.batch_symbol else 21) for s in graph.symbols}
        inputs = [x.double() if x.is_floating_point() else x for x in make_inputs(graph, env)]
        context = {n: x for n, x in zip(names, inputs) if n in context_names}
        check_stream(model, inputs, context=context)
