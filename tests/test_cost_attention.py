"""Attention cost rules against references written from docs/lowering.md:
parameters equal, forward and training FLOPs within 0.5% of FlopCounterMode
(with the CPU flash-attention formulas registered), saved bytes within 10%,
generation state exact."""
import pytest
import torch
from torch import nn

import seqdsl
from cost_refs import Attention, SegmentAttention, check
from seqdsl.cost.estimate import estimate

C = 32


def spec(layer: str) -> str:
    # a linear first, so the attention's input needs a gradient (as in a real stack)
    return f"model m {{\n  input x: float[B, T, {C}]\n  y = x -> linear({C}) -> {layer}\n  output y\n}}\n"


CASES = [
    ("attention(4)", dict(heads=4), [16, 40, 96]),
    ("attention(4, causal=true)", dict(heads=4, causal=True), [16, 40, 96]),
    ("attention(4, kv_heads=2, causal=true, pos=rope)", dict(heads=4, kv_heads=2, causal=True, pos="rope"),
     [16, 40, 96]),
    ("attention(4, pos=alibi)", dict(heads=4, pos="alibi"), [16, 40, 64]),
    ("attention(4, causal=true, pos=alibi, bias=false)", dict(heads=4, causal=True, pos="alibi", bias=False),
     [16, 40, 64]),
    # window: T <= W is plain SDPA, T > W the blocked band (2W causal, 3W keys)
    ("attention(4, window=16, causal=true)", dict(heads=4, window=16, causal=True), [16, 40, 96]),
    ("attention(4, window=16)", dict(heads=4, window=16), [12, 40, 96]),
    ("attention(4, kv_heads=2, window=16, causal=true, pos=rope)",
     dict(heads=4, kv_heads=2, window=16, causal=True, pos="rope"), [16, 40, 96]),
    ("attention(4, kind=linear)", dict(heads=4, kind="linear"), [16, 40, 100]),
    ("attention(4, kind=linear, causal=true)", dict(heads=4, kind="linear", causal=True), [40, 64, 100]),
    ("attention(4, kind=performer, features=16)", dict(heads=4, kind="performer", features=16), [16, 40, 100]),
    ("attention(4, kind=performer, features=16, causal=true)",
     dict(heads=4, kind="performer", features=16, causal=True), [40, 64, 100]),
    ("attention(4, kind=linformer, proj=8, max_len=128)",
     dict(heads=4, kind="linformer", proj=8, max_len=128), [16, 40, 100]),
]


@pytest.mark.parametrize("layer,kw,lengths", CASES, ids=[c[0] for c in CASES])
def test_self_attention_matches_reference(layer, kw, lengths):
    check(spec(layer), lambda: nn.Sequential(nn.Linear(C, C), Attention(C, **kw)), lengths, channels=C)


@pytest.mark.parametrize("relative", [False, True], ids=["sdpa", "relative"])
@pytest.mark.parametrize("length,memory", [(16, 16), (16, 24), (16, 0)])
def test_segments_match_reference(relative, length, memory):
    pos = ", pos=relative" if relative else ""
    layer = f"segments(length={length}, memory={memory}) {{ attention(4, causal=true{pos}) }}"
    check(spec(layer), lambda: nn.Sequential(nn.Linear(C, C), SegmentAttention(
        C, 4, causal=True, relative=relative, length=length, memory=memory)), [16, 40, 70], channels=C)


def test_relative_without_segments_is_one_segment():
    check(spec("attention(4, pos=relative)"),
          lambda: nn.Sequential(nn.Linear(C, C), SegmentAttention(C, 4, causal=False, relative=True)),
          [16, 40], channels=C)


class Cross(nn.Module):
    def __init__(self, c, cc, heads):
        super().__init__()
        self.h, self.dh = heads, c // heads
        self.inp, self.ctx = nn.Linear(c, c), nn.Linear(cc, cc)
        self.q, self.o = nn.Linear(c, c), nn.Linear(c, c)
        self.k, self.v = nn.Linear(cc, c), nn.Linear(cc, c)

    def forward(self, x, context):
        x, context = self.inp(x), self.ctx(context)
        B, T, _ = x.shape
        S = context.shape[1]
        q = self.q(x).view(B, T, self.h, self.dh).transpose(1, 2)
        k = self.k(context).view(B, S, self.h, self.dh).transpose(1, 2)
        v = self.v(context).view(B, S, self.h, self.dh).transpose(1, 2)
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.o(out.transpose(1, 2).reshape(B, T, -1))


def test_cross_attention_with_other_length():
    text = ("model m {\n  input x: float[B, T, 32]\n  input mem: float[B, S, 16]\n"
            "  ctx = mem -> linear(16)\n  y = x -> linear(32) -> cross_attention(4, context=ctx)\n  output y\n}\n")
    check(text, lambda: Cross(32, 16, 4), [16, 40], extra_dims={"S": 24},
          inputs=lambda b, t: [torch.randn(b, t, 32), torch.randn(b, 24, 16)])


# ------------------------------------------------------------------ generation state
def _state(layer, t, batch=3, dtype="float32", channels=C):
    text = f"model m {{\n  input x: float[B, T, {channels}]\n  y = x -> {layer}\n  output y\n}}\n"
    return estimate(seqdsl.parse(text), seq=t, batch=batch, dtype=dtype).points[0]


@pytest.mark.parametrize("t", [1, 17, 100])
def test_kv_cache_bytes_are_exact(t):
    torch.manual_seed(0)
    ref = Attention(C, 4, kv_heads=2, causal=True)
    x = torch.randn(3, t, C)
    k, v = ref.k(x), ref.v(x)                     # the cache: every position's k and v
    assert _state("attention(4, kv_heads=2, causal=true)", t).state_bytes == k.nbytes + v.nbytes
    half = _state("attention(4, kv_heads=2, causal=true)", t, dtype="bfloat16").state_bytes
    assert half == (k.nbytes + v.nbytes) // 2


@pytest.mark.parametrize("t", [5, 16, 100])
def test_window_cache_keeps_w_positions(t):
    ref = Attention(C, 4, causal=True, window=16)
    x = torch.randn(3, t, C)
    k, v = ref.k(x)[:, -16:], ref.v(x)[:, -16:]
    assert _state("attention(4, causal=true, window=16)", t).state_bytes == k.nbytes + v.nbytes


def test_linear_attention_state_is_constant():
    ref = Attention(C, 4, kind="performer", features=16, causal=True)
    x = torch.randn(3, 50, C)
    q = ref.q(x).view(3, 50, 4, 8).transpose(1, 2)
    v = ref.v(x).view(3, 50, 4, 8).transpose(1, 2)
    phi_k = ref.phi(q, False)
    vv = torch.cat([v, torch.ones_like(v[..., :1])], -1)
    state = phi_k.transpose(-1, -2) @ vv          # S = Σ phi(k)^T [v, 1]
    for t in (1, 50, 10 ** 9):
        p = _state("attention(4, kind=performer, features=16, causal=true)", t)
        assert p.state_bytes == state.nbytes
    assert _state("attention(4, kind=linear, causal=true)", 7).state_bytes == 3 * 4 * 8 * 9 * 4


def test_non_causal_attention_cannot_stream():
    est = estimate(seqdsl.parse(spec("attention(4)")), seq=64)
    assert not est.streaming and est.points[0].state_bytes is None and est.points[0].flops_per_token is None
    assert "line 3" in est.streaming_blocker and "attention" in est.streaming_blocker


def test_per_token_cost_of_full_attention_grows_with_t():
    a = _state("attention(4, causal=true)", 100, batch=1)
    b = _state("attention(4, causal=true)", 101, batch=1)
    assert b.flops_per_token - a.flops_per_token == 4 * C   # one more key: 4·heads·d_head
    w1 = _state("attention(4, causal=true, window=16)", 1000, batch=1)
    w2 = _state("attention(4, causal=true, window=16)", 10 ** 9, batch=1)
    assert w1.flops_per_token == w2.flops_per_token
