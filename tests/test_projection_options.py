"""Per-projection options real architectures need: attention biases on a
chosen subset of q, k, v, o (Whisper's k_proj has none; RecurrentGemma
biases only o_proj), the bias-free mlp, and partial rotary positions
(rope_dims: only the first part of each head rotates) with a chosen base.
Parameter counts equal the modules', outputs equal the definition, bad
combinations are refused at the argument."""
import pytest

import seqdsl

torch = pytest.importorskip("torch")
from small_specs import assert_refused  # noqa: E402


def graph(stage, c=16):
    text = f"model m {{\n    input x: float[B, T, {c}]\n    y = x -> {stage}\n    output y\n}}\n"
    return seqdsl.parse(text, "m.seq").model()


@pytest.mark.parametrize("stage, biased", [
    ("attention(4, bias=[q, v, o])", {"q", "v", "o"}),
    ("attention(4, kv_heads=2, bias=[o])", {"o"}),
    ("attention(4, bias=[])", set()),
    ("attention(4, bias=true)", {"q", "k", "v", "o"}),
])
def test_attention_biases_per_projection(stage, biased):
    g = graph(stage)
    model = seqdsl.build(g)
    names = {k.split(".")[-2] for k in model.state_dict() if k.endswith(".bias")}
    assert names == biased
    assert g.params == sum(p.numel() for p in model.parameters())


def test_cross_attention_biases_per_projection():
    text = ("model m {\n    input mem: float[B, S, 8]\n    input x: float[B, T, 16]\n"
            "    y = x -> cross_attention(4, context=mem, bias=[q, v, o])\n    output y\n}\n")
    g = seqdsl.parse(text, "m.seq").model()
    model = seqdsl.build(g)
    assert {k.split(".")[-2] for k in model.state_dict() if k.endswith(".bias")} == {"q", "v", "o"}
    assert g.params == sum(p.numel() for p in model.parameters()) == 2 * 256 + 2 * 8 * 16 + 16 + 16 + 16


def test_bias_free_mlp():
    g = graph("mlp(32, bias=false)")
    model = seqdsl.build(g)
    assert g.params == 2 * 16 * 32 == sum(p.numel() for p in model.parameters())
    assert not any(k.endswith(".bias") for k in model.state_dict())


def rotary_by_definition(x, start, rd, base):
    """RoFormer's rotation, NeoX's rotate-half layout, on the first rd dims."""
    t = x.shape[-2]
    inv = 1.0 / base ** (torch.arange(0, rd, 2, dtype=torch.float64) / rd)
    ang = torch.outer(torch.arange(start, start + t, dtype=torch.float64), inv)
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    xr, xp = x[..., :rd].double(), x[..., rd:]
    half = rd // 2
    rotated = xr * cos + torch.cat([-xr[..., half:], xr[..., :half]], -1) * sin
    return torch.cat([rotated.to(x.dtype), xp], -1)


@pytest.mark.parametrize("rd, base", [(4, 10000.0), (2, 500000.0), (8, 10000.0)])
def test_partial_rotary_equals_the_definition(rd, base):
    from seqdsl.layers.attention_torch import rope
    x = torch.randn(2, 3, 7, 8)
    assert torch.allclose(rope(x, 5, rd, base), rotary_by_definition(x, 5, rd, base), atol=1e-5)
    assert torch.equal(rope(x, 5, rd, base)[..., rd:], x[..., rd:])     # passed through exactly


def test_partial_rotary_attention_streams_and_costs_like_full_rotary():
    g = graph("attention(2, causal=true, pos=rope, rope_dims=4, rope_base=500000)")
    full = graph("attention(2, causal=true, pos=rope)")
    a, b = (seqdsl.estimate(x, seq=64).points[0] for x in (g, full))
    assert (a.flops_train, a.activation_bytes, a.inference_peak_bytes) == \
           (b.flops_train, b.activation_bytes, b.inference_peak_bytes)
    model = seqdsl.build(g).eval()
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        whole = model(x)
        state = model.init_state(2)
        parts = [model.step(x[:, i:i + 1], state=state)[0] for i in range(9)]
    assert torch.allclose(torch.cat(parts, 1), whole, atol=1e-5)


@pytest.mark.parametrize("stage, message", [
    ("attention(4, bias=[q, q])", "bias names the q projection twice"),
    ("attention(4, bias=[z])", "a list of q, k, v, o"),
    ("attention(4, rope_dims=2)", "rope_dims= is an option of rotary positions, but pos is none"),
    ("attention(4, pos=alibi, rope_base=100)", "rope_base= is an option of rotary positions"),
    ("attention(4, pos=rope, rope_dims=3)", "rope_dims=3 must be even and at most the head size 4"),
    ("attention(4, pos=rope, rope_dims=6)", "rope_dims=6 must be even"),
    ("mlp(8, bias=1)", "bias"),
])
def test_bad_options_name_the_argument(stage, message):
    assert_refused("float[B, T, 16]", stage, message)


def test_emitted_source_keeps_the_options():
    from test_hardening_emit import assert_emitted_equals_built
    assert_emitted_equals_built("model m {\n    input x: float[B, T, 16]\n"
                                "    y = x -> attention(4, causal=true, pos=rope, rope_dims=2, rope_base=500000, "
                                "bias=[q, o]) -> mlp(32, bias=false)\n    output y\n}\n")
