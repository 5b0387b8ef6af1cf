"""Generation figures for an encoder–decoder (issue: real architectures,
item 11): the decoder streams while the encoder's input is given once
(`init_state(batch, src=...)`), so a non-causal encoder no longer hides the
per-token cost and the state. Per-token FLOPs equal FlopCounterMode on one
`step()`, the state equals the bytes `init_state` and the steps keep
(cross-attention's keys and values projected once, the encoder output the
streamed layers read), and the streamed output equals the forward."""
import pytest

import seqdsl

torch = pytest.importorskip("torch")

from seqdsl.backend.measure import counter as flop_counter  # noqa: E402  (with the CPU SDPA formulas)

from test_backend_build import one_thread  # noqa: E402,F401  (autouse)

S2S = """model s2s {
    input src: int[B, S]
    input tgt: int[B, T]
    memory = src -> embed(100, 32) -> attention(4) -> layernorm
    out = tgt -> embed(100, 32) -> attention(4, causal=true) -> cross_attention(4, context=memory, kv_heads=2)
          -> linear(100)
    output out
}
"""


def nbytes(obj, skip=()):
    if isinstance(obj, torch.Tensor):
        return obj.nbytes
    if isinstance(obj, dict):          # the caller's own context inputs are not the state's
        return sum(nbytes(v, skip) for k, v in obj.items() if k not in skip)
    if isinstance(obj, (list, tuple)):
        return sum(nbytes(v) for v in obj)
    return 0


@pytest.mark.parametrize("text", [S2S, None], ids=["s2s", "translation"])
def test_decoder_streams_with_the_source_given_once(text):
    graph = (seqdsl.parse(text, "s2s.seq") if text else seqdsl.load("specs/translation.seq")).model()
    src, tgt = list(graph.inputs)
    s, t = 23, 7
    est = seqdsl.estimate(graph, seq={"S": s, "T": t}, batch=2)
    assert est.streaming and est.stream_context == [src]
    model = seqdsl.build(graph).eval()
    torch.manual_seed(0)
    x_src, x_tgt = torch.randint(0, 50, (2, s)), torch.randint(0, 50, (2, t))
    with torch.no_grad():
        full = model(x_src, x_tgt)
        full = full[0] if isinstance(full, tuple) else full
        state = model.init_state(2, **{src: x_src})
        outs = []
        for i in range(t):
            if i == t - 1:        # the t-th position: what flops_per_token at T = t counts
                with flop_counter() as counter:
                    y = model.step(x_tgt[:, i:i + 1], state=state)[0]
            else:
                y = model.step(x_tgt[:, i:i + 1], state=state)[0]
            outs.append(y)
    assert torch.allclose(torch.cat(outs, 1), full, atol=1e-4)
    assert counter.get_total_flops() == est.points[0].flops_per_token
    assert nbytes(state, skip=(src, "__skip__")) == est.points[0].state_bytes


def test_a_context_read_from_the_streamed_side_still_blocks():
    text = S2S.replace("cross_attention(4, context=memory, kv_heads=2)", "attention(4)")
    est = seqdsl.estimate(seqdsl.parse(text, "s2s.seq").model(), seq={"S": 8, "T": 8})
    assert not est.streaming and "attention" in est.streaming_blocker and est.stream_context == []
