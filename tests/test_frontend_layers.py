"""Each layer's shape rule and parameter count (seqdsl/layers), checked against
LANGUAGE.md's rules and, where one exists, the real torch.nn module."""
import math

import pytest
import torch
from torch import nn

import seqdsl
import twins
from seqdsl.layers import LAYERS


def layer(call, dims="B, T, 16", dtype="float", extra=""):
    """Check a one-layer model; return its (first) layer node."""
    text = f"model m {{\n    input x: {dtype}[{dims}]\n{extra}    y = x -> {call}\n    output y\n}}\n"
    return seqdsl.parse(text).model().layers[0]


def refused(call, dims="B, T, 16", dtype="float", extra=""):
    with pytest.raises(seqdsl.SpecError) as exc:
        layer(call, dims, dtype, extra)
    return exc.value


def at(node, **sizes):
    """The node's output dims evaluated at concrete symbol sizes."""
    return tuple(int(d.subs({s: sizes[s.name] for s in d.free_symbols})) for d in node.output.dims)


def numel(module):
    return sum(p.numel() for p in module.parameters())


def test_registry_covers_the_v01_library():
    v01 = {"conv1d", "conv2d", "conv3d", "unsqueeze", "flatten", "spatial_mean", "spatial_max",
           "time_mean", "time_last", "embed", "posenc", "linear", "mlp", "swiglu", "layernorm",
           "rmsnorm", "batchnorm", "relu", "gelu", "silu", "tanh", "sigmoid", "dropout", "attention",
           "cross_attention", "lstm", "gru", "rnn"}
    assert v01 <= set(LAYERS)


# ----------------------------------------------------------------- recurrent
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (1, True), (3, False), (2, True)])
def test_recurrent_params_equal_torch(kind, layers, bidirectional):
    n = layer(f"{kind}(24, layers={layers}, bidirectional={str(bidirectional).lower()})", "B, T, 10")
    ref = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind](10, 24, layers, bidirectional=bidirectional)
    assert n.params == numel(ref)
    assert str(n.output) == f"float[B, T, {48 if bidirectional else 24}]"


def test_rnn_nonlinearity_and_bad_values():
    assert layer("rnn(8, nonlinearity=relu)").params == numel(nn.RNN(16, 8, nonlinearity="relu"))
    assert "nonlinearity" in refused("rnn(8, nonlinearity=gelu)").message
    assert "nonlinearity" in refused("lstm(8, nonlinearity=relu)").message
    assert "dropout" in refused("lstm(8, dropout=1.5)").message
    refused("lstm(0)")
    refused("lstm(8)", "B, T, 4, 16")          # rank 4
    refused("lstm(8)", "B, T", "int")          # token ids


# ----------------------------------------------------------------- convolutions
@pytest.mark.parametrize("call,dims,ref", [
    ("conv1d(32, 5)", "B, T, 12", nn.Conv1d(12, 32, 5)),
    ("conv1d(32, kernel=5, groups=4, bias=false)", "B, T, 12", nn.Conv1d(12, 32, 5, groups=4, bias=False)),
    ("conv1d(12, 7, groups=12)", "B, T, 12", nn.Conv1d(12, 12, 7, groups=12)),
    ("conv2d(16, [3, 5])", "B, T, 40, 6", nn.Conv2d(6, 16, (3, 5))),
    ("conv2d(16, 3, groups=2)", "B, T, 40, 6", nn.Conv2d(6, 16, 3, groups=2)),
    ("conv3d(8, [3, 5, 5], bias=false)", "B, T, 16, 16, 3", nn.Conv3d(3, 8, (3, 5, 5), bias=False)),
    ("conv3d(8, 3, groups=4)", "B, T, 8, 8, 4", nn.Conv3d(4, 8, 3, groups=4)),
])
def test_conv_params_equal_torch(call, dims, ref):
    assert layer(call, dims).params == numel(ref)


@pytest.mark.parametrize("padding,k,s", [("same", 3, 1), ("same", 3, 2), ("same", 4, 3), ("valid", 3, 1),
                                         ("valid", 5, 2), ("causal", 3, 1), ("causal", 4, 2)])
def test_conv1d_length_rules(padding, k, s):
    n = layer(f"conv1d(8, kernel={k}, stride={s}, padding={padding})", "B, T, 4")
    for t in range(k, 40):
        expect = math.floor((t - k) / s) + 1 if padding == "valid" else math.ceil(t / s)
        assert at(n, B=2, T=t) == (2, expect, 8), (t, n.output)
        # and the twin (explicit F.pad, docs/lowering.md) really produces that length
        if t in (k, 17, 31):
            conv = twins.Conv(1, 4, 8, k, s, padding)
            assert conv(torch.randn(2, t, 4)).shape == (2, expect, 8)


def test_conv2d_over_time_and_frequency_with_lists():
    n = layer("conv2d(8, kernel=[3, 5], stride=[2, 1], padding=valid)", "B, T, 80, 1")
    assert at(n, B=1, T=11) == (1, 5, 76, 8)
    n = layer("conv2d(8, kernel=3, stride=2)", "B, T, 80, 1")
    assert at(n, B=1, T=11) == (1, 6, 40, 8)
    assert str(n.output) == "float[B, ceil(T/2), 40, 8]"


def test_conv2d_on_video_convolves_each_frame_and_conv3d_convolves_time():
    n = layer("conv2d(8, 3, stride=2)", "B, T, 32, 32, 3")
    assert str(n.output) == "float[B, T, 16, 16, 8]"
    n = layer("conv3d(8, [3, 3, 3], stride=[2, 2, 2], padding=valid)", "B, T, 32, 32, 3")
    assert at(n, B=1, T=9) == (1, 4, 15, 15, 8)
    n = layer("conv1d(8, 3, stride=2)", "B, T, 10, 3")          # convolves the 10-axis; T batched
    assert str(n.output) == "float[B, T, 5, 8]"


def test_conv_errors():
    assert "causal" in refused("conv2d(8, 3, padding=causal)", "B, T, 8, 1").message
    assert "groups" in refused("conv1d(8, 3, groups=3)", "B, T, 16").message        # 16 % 3
    assert "groups" in refused("conv1d(10, 3, groups=4)", "B, T, 16").message       # out 10 % 4
    assert "kernel" in refused("conv2d(8, [3, 3, 3])", "B, T, 8, 1").message        # list length
    refused("conv2d(8, 3)", "B, T, 16")                                             # no spatial axis
    refused("conv1d(8, 0)")
    refused("conv1d(8, 5, padding=valid)", "B, 3, 16")                              # kernel > length
    refused("conv1d(8, 3)", "B, T", "int")


# ----------------------------------------------------------------- position-wise
@pytest.mark.parametrize("call,ref,out", [
    ("linear(32)", nn.Linear(16, 32), 32),
    ("linear(32, bias=false)", nn.Linear(16, 32, bias=False), 32),
    ("mlp(64)", twins.MLP(16, 64), 16),
    ("mlp(64, out=8, act=relu, dropout=0.1)", twins.MLP(16, 64, 8), 8),
    ("swiglu(40)", twins.SwiGLU(16, 40), 16),
    ("swiglu(40, out=4)", twins.SwiGLU(16, 40, 4), 4),
    ("layernorm", nn.LayerNorm(16), 16),
    ("layernorm(eps=1e-6)", nn.LayerNorm(16), 16),
    ("rmsnorm", nn.RMSNorm(16), 16),
    ("batchnorm", nn.BatchNorm1d(16), 16),
    ("relu", nn.ReLU(), 16), ("gelu", nn.GELU(), 16), ("silu", nn.SiLU(), 16),
    ("tanh", nn.Tanh(), 16), ("sigmoid", nn.Sigmoid(), 16), ("dropout(0.2)", nn.Dropout(0.2), 16),
])
def test_positionwise_params_and_shapes(call, ref, out):
    n = layer(call)
    assert n.params == numel(ref)
    assert str(n.output) == f"float[B, T, {out}]"


def test_positionwise_layers_keep_extra_axes():
    assert str(layer("linear(8)", "B, T, 5, 16").output) == "float[B, T, 5, 8]"
    assert str(layer("layernorm", "B, T, 5, 16").output) == "float[B, T, 5, 16]"


def test_embed_and_posenc():
    n = layer("embed(1000, 64)", "B, T", "int")
    assert n.params == numel(nn.Embedding(1000, 64)) and str(n.output) == "float[B, T, 64]"
    assert "int" in refused("embed(1000, 64)").message
    assert layer("posenc").params == 0
    assert layer("posenc(learned, max_len=128)").params == 128 * 16
    assert "max_len" in refused("posenc(learned)").message
    refused("posenc(kind=rotary)")
    refused("linear(8)", "B, T", "int")


def test_tied_linear_shares_the_embedding():
    text = """model m {
    input x: int[B, T]
    y = x -> embed(100, 16) as emb -> linear(100, tie=emb)
    z = x -> embed(100, 16) as emb2 -> linear(100, bias=false, tie=emb2)
    output y, z
}"""
    model = seqdsl.parse(text).model()
    heads = [n for n in model.layers if n.kind == "linear"]
    assert [h.params for h in heads] == [100, 0]             # the bias only / nothing
    assert model.params == 2 * 1600 + 100
    bad = text.replace("linear(100, tie=emb)", "linear(99, tie=emb)")
    with pytest.raises(seqdsl.SpecError):
        seqdsl.parse(bad)
    with pytest.raises(seqdsl.SpecError) as exc:
        seqdsl.parse(text.replace("tie=emb)", "tie=nothere)"))
    assert "nothere" in exc.value.message


# ----------------------------------------------------------------- attention
def attention_params(c, heads, kv_heads=None, bias=True, relative=False, linformer=None):
    """LANGUAGE.md: q, o C x C; k, v C x kv_heads*C/heads; biases; XL extras; linformer E, F."""
    kvd = (kv_heads or heads) * c // heads
    n = 2 * c * c + 2 * c * kvd + ((2 * c + 2 * kvd) if bias else 0)
    if relative:
        n += c * c + 2 * c
    if linformer:
        n += 2 * linformer[0] * linformer[1]
    return n


@pytest.mark.parametrize("call,kw", [
    ("attention(4)", {}),
    ("attention(4, kv_heads=2, bias=false)", dict(kv_heads=2, bias=False)),
    ("attention(8, kv_heads=1, causal=true, pos=rope)", dict(kv_heads=1)),
    ("attention(4, causal=true, pos=relative)", dict(relative=True)),
    ("attention(4, pos=alibi, window=8)", {}),
    ("attention(4, kind=performer, features=32)", {}),
    ("attention(4, kind=linear, causal=true)", {}),
    ("attention(4, kind=linformer, proj=16, max_len=256)", dict(linformer=(16, 256))),
])
def test_attention_params_match_the_convention_and_the_twin(call, kw):
    n = layer(call, "B, T, 32")
    heads = int(call.split("(")[1].split(",")[0].rstrip(")"))
    assert n.params == attention_params(32, heads, **kw)
    args = n.args.model_dump()
    twin = twins.Attention(32, **{k: v for k, v in args.items() if k not in ("dropout", "rope_dims", "rope_base")})
    assert numel(twin) == n.params
    assert str(n.output) == "float[B, T, 32]"


def test_attention_errors():
    assert "divide" in refused("attention(5)", "B, T, 32").message
    assert "kv_heads" in refused("attention(4, kv_heads=3)", "B, T, 32").message
    assert "causal" in refused("attention(4, kind=linformer, proj=8, max_len=64, causal=true)").message
    assert "proj" in refused("attention(4, kind=linformer)").message
    assert "features" in refused("attention(4, features=8)").message
    refused("attention(4, pos=sinusoidal)")
    refused("attention(4, kind=flash)")
    refused("attention(4, window=0)")
    refused("attention(4)", "B, T, 4, 16")
    refused("attention(4)", "B, T", "int")


def test_cross_attention_projects_keys_from_the_context_channels():
    text = """model m {
    input src: float[B, S, 48]
    input tgt: float[B, T, 32]
    y = tgt -> cross_attention(4, context=src, kv_heads=2)
    output y
}"""
    model = seqdsl.parse(text).model()
    (n,) = model.layers
    assert n.params == numel(twins.CrossAttention(32, 48, 4, kv_heads=2))
    assert n.params == 2 * (32 * 32 + 32) + 2 * (48 * 16 + 16)
    assert str(n.output) == "float[B, T, 32]"
    assert "src" in n.sources[1] or len(n.inputs) == 2


# ----------------------------------------------------------------- shape ops
@pytest.mark.parametrize("call,dims,out", [
    ("unsqueeze", "B, T, 80", "float[B, T, 80, 1]"),
    ("flatten", "B, T, 20, 8", "float[B, T, 160]"),
    ("flatten", "B, T, 4, 5, 8", "float[B, T, 160]"),
    ("spatial_mean", "B, T, 7, 7, 8", "float[B, T, 8]"),
    ("spatial_max", "B, T, 20, 8", "float[B, T, 8]"),
    ("time_mean", "B, T, 8", "float[B, 8]"),
    ("time_last", "B, T, 8", "float[B, 8]"),
    ("time_first", "B, T, 8", "float[B, 8]"),
])
def test_shape_ops(call, dims, out):
    n = layer(call, dims)
    assert str(n.output) == out and n.params == 0


def test_shape_ops_with_the_twins():
    x = torch.randn(2, 3, 4, 5, 8)
    assert twins.Flatten()(x).shape == (2, 3, 160)
    assert twins.SpatialPool("max")(x).shape == (2, 3, 8)


def test_time_first_and_last_read_their_positions():
    text = "model m {\n    input x: float[B, T, 8]\n    a = x -> time_first\n    z = x -> time_last\n    output a, z\n}"
    x = torch.randn(2, 5, 8)
    first, last = seqdsl.build(seqdsl.parse(text).model())(x)
    assert torch.equal(first, x[:, 0]) and torch.equal(last, x[:, -1])


def test_shape_op_errors():
    refused("time_mean", "B, T, 4, 8")
    refused("time_last", "B, T", "int")
    refused("time_first", "B, T, 4, 8")
    refused("flatten", "B, T", "int")
