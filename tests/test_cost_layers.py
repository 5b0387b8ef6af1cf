"""Position-wise, embedding, normalisation and convolution cost rules against
references written from docs/lowering.md."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import seqdsl
from cost_refs import Attention, check
from seqdsl.cost.estimate import estimate


def spec(c, body, dims="B, T"):
    return f"model m {{\n  input x: float[{dims}, {c}]\n  y = x -> {body}\n  output y\n}}\n"


class Mlp(nn.Module):
    def __init__(self, c, hidden, out=None, act="gelu", dropout=0.0):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(c, hidden), nn.Linear(hidden, out or c)
        self.act, self.drop = getattr(F, act) if act != "tanh" else torch.tanh, nn.Dropout(dropout)

    def forward(self, x):
        return self.fc2(self.drop(self.act(self.fc1(x))))


class Swiglu(nn.Module):
    def __init__(self, c, hidden, out=None):
        super().__init__()
        self.w1, self.w3 = nn.Linear(c, hidden, bias=False), nn.Linear(c, hidden, bias=False)
        self.w2 = nn.Linear(hidden, out or c, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class BatchNorm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bn = nn.BatchNorm1d(c)

    def forward(self, x):
        return self.bn(x.reshape(-1, x.shape[-1])).view(x.shape)


class Act(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


POSITIONWISE = [
    ("linear(48) -> mlp(64)", lambda: nn.Sequential(nn.Linear(16, 48), Mlp(48, 64))),
    ("linear(48) -> mlp(64, out=32, act=relu, dropout=0.2)",
     lambda: nn.Sequential(nn.Linear(16, 48), Mlp(48, 64, 32, "relu", 0.2))),
    ("linear(48) -> mlp(64, act=silu, dropout=0.1)",
     lambda: nn.Sequential(nn.Linear(16, 48), Mlp(48, 64, None, "silu", 0.1))),
    ("linear(48) -> swiglu(64)", lambda: nn.Sequential(nn.Linear(16, 48), Swiglu(48, 64))),
    ("linear(48) -> layernorm -> linear(8)",
     lambda: nn.Sequential(nn.Linear(16, 48), nn.LayerNorm(48), nn.Linear(48, 8))),
    ("linear(48) -> rmsnorm -> linear(8, bias=false)",
     lambda: nn.Sequential(nn.Linear(16, 48), nn.RMSNorm(48), nn.Linear(48, 8, bias=False))),
    ("linear(48) -> batchnorm -> relu -> linear(8)",
     lambda: nn.Sequential(nn.Linear(16, 48), BatchNorm(48), nn.ReLU(), nn.Linear(48, 8))),
    ("linear(48) -> gelu -> dropout(0.5) -> tanh -> sigmoid -> linear(8)",
     lambda: nn.Sequential(nn.Linear(16, 48), nn.GELU(), nn.Dropout(0.5), nn.Tanh(), nn.Sigmoid(),
                           nn.Linear(48, 8))),
    ("mlp(32) -> dropout(0)", lambda: nn.Sequential(Mlp(16, 32), nn.Dropout(0.0))),
]


@pytest.mark.parametrize("body,build", POSITIONWISE, ids=[p[0] for p in POSITIONWISE])
def test_positionwise_matches_reference(body, build):
    check(spec(16, body), build, [8, 33, 64], channels=16)


class Embedder(nn.Module):
    def __init__(self, tied):
        super().__init__()
        self.emb = nn.Embedding(100, 32)
        self.pos = nn.Parameter(torch.zeros(256, 32))
        self.norm = nn.LayerNorm(32)
        self.head = None if tied else nn.Linear(32, 100)

    def forward(self, tokens):
        x = self.norm(self.emb(tokens) + self.pos[: tokens.shape[1]])
        return F.linear(x, self.emb.weight) if self.head is None else self.head(x)


@pytest.mark.parametrize("tied", [False, True])
def test_embed_posenc_and_tied_head(tied):
    head = "linear(100, bias=false, tie=wte)" if tied else "linear(100)"
    text = ("model m {\n  input tokens: int[B, T]\n  y = tokens -> embed(100, 32) as wte "
            f"-> posenc(learned, max_len=256) -> layernorm -> {head}\n  output y\n}}\n")
    check(text, lambda: Embedder(tied), [8, 40, 100], inputs=lambda b, t: [torch.randint(0, 100, (b, t))])


# ------------------------------------------------------------------ convolutions
class Conv(nn.Module):
    """docs/lowering.md: fold the leading axes into the batch, channels first,
    explicit F.pad (same: TensorFlow's split; causal: k - 1 on the left)."""

    def __init__(self, ndim, c, out, kernel, stride=1, padding="same", groups=1):
        super().__init__()
        self.ndim, self.padding = ndim, padding
        self.k = (kernel,) * ndim if isinstance(kernel, int) else tuple(kernel)
        self.s = (stride,) * ndim if isinstance(stride, int) else tuple(stride)
        self.conv = getattr(nn, f"Conv{ndim}d")(c, out, self.k, self.s, groups=groups)

    def forward(self, x):
        lead, spatial, c = x.shape[: x.dim() - 1 - self.ndim], x.shape[x.dim() - 1 - self.ndim: -1], x.shape[-1]
        z = x.reshape(-1, *spatial, c).movedim(-1, 1)                    # (N, C, *spatial)
        pads = []
        for n, k, s in reversed(list(zip(spatial, self.k, self.s))):
            if self.padding == "same":
                total = max((math.ceil(n / s) - 1) * s + k - n, 0)
                pads += [total // 2, total - total // 2]
            elif self.padding == "causal":
                pads += [k - 1, 0]
            else:
                pads += [0, 0]
        if any(pads) or self.ndim == 1:      # conv1d: F.pad is its dense copy, padded or not
            z = F.pad(z, pads)
        y = self.conv(z).movedim(1, -1)                                  # (N, *spatial', out)
        return y.reshape(*lead, *y.shape[1:]).contiguous()               # dense channels-last, as the lowering


class Unsqueeze(nn.Module):
    def forward(self, x):
        return x.unsqueeze(-1)


CONVS = [
    ("linear(16) -> conv1d(24, kernel=3, stride=2, padding=causal)", "B, T", 16,
     lambda: nn.Sequential(nn.Linear(16, 16), Conv(1, 16, 24, 3, 2, "causal"))),
    ("conv1d(24, kernel=5, padding=same, groups=1)", "B, T", 16, lambda: Conv(1, 16, 24, 5, 1, "same")),
    ("conv1d(24, kernel=4, stride=3, padding=valid)", "B, T", 16, lambda: Conv(1, 16, 24, 4, 3, "valid")),
    ("unsqueeze -> conv2d(8, kernel=3, stride=2) -> relu", "B, T", 20,
     lambda: nn.Sequential(Unsqueeze(), Conv(2, 1, 8, 3, 2, "same"), nn.ReLU())),
    ("conv2d(8, kernel=[3, 5], stride=[1, 2])", "B, T, 12", 3, lambda: Conv(2, 3, 8, (3, 5), (1, 2))),
    ("conv3d(4, kernel=3, stride=2)", "B, T, 6, 6", 2, lambda: Conv(3, 2, 4, 3, 2)),
]


@pytest.mark.parametrize("body,dims,c,build", CONVS, ids=[p[0] for p in CONVS])
def test_convolutions_match_reference(body, dims, c, build):
    extra = [int(d) for d in dims.split(", ")[2:]]
    check(spec(c, body, dims), build, [9, 16, 33], channels=c,
          inputs=lambda b, t: [torch.randn(b, t, *extra, c)])


def test_video_conv_convolves_each_frame_and_can_stream():
    text = spec(3, "conv2d(8, kernel=3, stride=2) -> spatial_mean", "B, T, 16, 16")
    check(text, lambda: nn.Sequential(Conv(2, 3, 8, 3, 2), Act(lambda y: y.mean((2, 3)))), [3, 5, 8],
          channels=3, inputs=lambda b, t: [torch.randn(b, t, 16, 16, 3)])
    est = estimate(seqdsl.parse(text), seq=[4, 8], batch=1)
    assert est.streaming and est.points[0].flops_per_token == est.points[1].flops_per_token


def test_causal_conv_state_is_the_last_k_minus_1_inputs():
    text = spec(16, "conv1d(24, kernel=5, padding=causal)")
    p = estimate(seqdsl.parse(text), seq=100, batch=3).points[0]
    assert p.state_bytes == torch.zeros(3, 4, 16).nbytes
    assert p.flops_per_token == 2 * 3 * 24 * 16 * 5


def test_same_padding_over_time_cannot_stream():
    est = estimate(seqdsl.parse(spec(16, "conv1d(24, kernel=3)")), seq=64)
    assert not est.streaming and "conv1d" in est.streaming_blocker and "line 3" in est.streaming_blocker


BF16 = [
    ("attention(4, causal=true)", lambda: Attention(32, 4, causal=True), 0.0),
    ("mlp(64)", lambda: Mlp(32, 64), 0.0),
    ("layernorm -> linear(8)", lambda: nn.Sequential(nn.LayerNorm(32), nn.Linear(32, 8)), 0.0),
    ("rmsnorm -> linear(8)", lambda: nn.Sequential(nn.RMSNorm(32), nn.Linear(32, 8)), 0.0),
    ("lstm(64)", lambda: FirstOutput(nn.LSTM(32, 64, batch_first=True)), 0.10),
]


class FirstOutput(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)[0]


@pytest.mark.parametrize("body,build,tol", BF16, ids=[b[0] for b in BF16])
def test_saved_bytes_at_bfloat16(body, build, tol):
    """Half-size activations, but what stays fp32 stays fp32 (logsumexp,
    RMSNorm's upcast, part of oneDNN's workspace)."""
    import measure
    if body.startswith("lstm") and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        # Without AVX512-BF16/AMX, torch runs a bf16 LSTM step by step in ATen
        # instead of oneDNN's fused layer, which saves different tensors; the
        # estimate describes the fused kernel (as cuDNN on a GPU).
        pytest.skip("this CPU has no oneDNN bf16 support: bf16 LSTM is not the fused kernel")
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(32, 32), build()).to(torch.bfloat16)
    model = seqdsl.parse(spec(32, f"linear(32) -> {body}"))
    for t in (64, 256):
        measured = measure.saved_bytes(module, torch.randn(2, t, 32, dtype=torch.bfloat16))
        est = estimate(model, seq=t, batch=2, dtype="bfloat16").points[0].activation_bytes
        assert abs(est - measured) <= tol * measured, (t, est, measured)


def test_strided_causal_conv_amortises_the_steps_after_it():
    text = spec(16, "conv1d(24, kernel=3, stride=2, padding=causal) -> linear(8)")
    p = estimate(seqdsl.parse(text), seq=100, batch=1).points[0]
    conv_step = 2 * 24 * 16 * 3          # one output position
    linear_step = 2 * 24 * 8
    # one output (and one linear step) per two input steps
    assert p.flops_per_token == (conv_step + linear_step) // 2
