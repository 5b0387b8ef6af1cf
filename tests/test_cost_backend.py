"""The estimate describes the module seqdsl.build emits (issue 4): FLOPs equal
and saved-for-backward bytes equal for Transformer-XL segments, where the
lowering's choices (memory rows projected on their own, detached; a compact
copy of the memory; one copy of each segment piece) decide the figures."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import seqdsl  # noqa: E402
from seqdsl.backend import measure  # noqa: E402

C = 32


def _spec(body: str) -> str:
    return f"""model m {{
    input x: float[B, T, {C}]
    y = x -> linear({C}) -> {body}
    output y
}}"""


@pytest.mark.parametrize("pos", ["", ", pos=relative"], ids=["sdpa", "relative"])
@pytest.mark.parametrize("length,memory", [(16, 16), (16, 24), (16, 0)])
def test_segments_estimate_equals_the_built_module(pos, length, memory):
    program = seqdsl.parse(_spec(f"segments(length={length}, memory={memory}) "
                                 f"{{ attention(4, causal=true{pos}) }}"))
    torch.manual_seed(0)
    module = seqdsl.build(program)
    module.train()
    for t in (16, 40, 70):  # one segment, several, a ragged last one
        x = torch.randn(2, t, C)
        fwd, train = measure.forward_and_train_flops(module, x)
        saved = measure.saved_bytes(module, x)
        p = seqdsl.estimate(program, seq=t, batch=2).points[0]
        assert (p.flops_forward, p.flops_train) == (fwd, train), t
        assert p.activation_bytes == saved, (t, p.activation_bytes, saved)


ATTENTION = [
    "attention(4)", "attention(4, causal=true)", "attention(4, pos=alibi)",
    "attention(4, pos=alibi, causal=true)", "attention(4, pos=rope, causal=true)",
    "attention(4, kv_heads=2, causal=true)", "attention(4, window=8, causal=true)",
    "attention(4, window=8)", "attention(4, window=8, kv_heads=2, causal=true)", "attention(4, pos=relative)",
]


@pytest.mark.parametrize("dropout", [0.0, 0.1], ids=["eval-like", "dropout"])
@pytest.mark.parametrize("layer", ATTENTION)
def test_attention_variants_estimate_equals_the_built_module(layer, dropout):
    """Training FLOPs exact, saved bytes within 10% (most are exact): the kernel path the module
    takes (fused SDPA, or the math path that attention dropout forces) is the
    one the cost rule describes."""
    body = layer[:-1] + (f", dropout={dropout})" if dropout else ")")
    program = seqdsl.parse(_spec(body))
    torch.manual_seed(0)
    module = seqdsl.build(program)
    module.train()
    for t in (16, 40):
        x = torch.randn(2, t, C)
        fwd, train = measure.forward_and_train_flops(module, x)
        saved = measure.saved_bytes(module, x)
        p = seqdsl.estimate(program, seq=t, batch=2).points[0]
        assert (p.flops_forward, p.flops_train) == (fwd, train), t
        assert abs(p.activation_bytes - saved) <= 0.10 * saved, (t, p.activation_bytes, saved)
