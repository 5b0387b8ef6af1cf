"""The activation variants real architectures need (GPT-2's tanh GELU,
DeepSpeech's clipped ReLU, Primer's squared ReLU, Gemma 2's logit soft-cap,
the Conformer's GLU, GeGLU feed-forwards): each equals the function its
source defines, and refuses arguments that make no sense, naming the place.
Their FLOPs and memory are checked with every other kind in
tests/test_layer_harness.py."""
import math

import pytest

import seqdsl

torch = pytest.importorskip("torch")
from small_specs import assert_refused  # noqa: E402


def build(stages: str, c: int = 8):
    text = f"model m {{\n    input x: float[B, T, {c}]\n    y = x -> {stages}\n    output y\n}}\n"
    graph = seqdsl.parse(text, "<test>").model()
    return graph, seqdsl.build(graph)


def by_definition(name, x):
    """Each function as its paper or reference code writes it, not via F.*"""
    if name == "gelu_tanh":    # GPT-2's gelu_new
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == "squared_relu":
        return torch.clamp(x, min=0) ** 2
    if name == "hardtanh(min=0, max=20)":
        return torch.minimum(torch.clamp(x, min=0), torch.tensor(20.0))
    if name == "log_softmax":
        return x - torch.logsumexp(x, dim=-1, keepdim=True)
    if name == "softcap(2.5)":
        return 2.5 * torch.tanh(x / 2.5)
    if name == "glu":
        a, b = x.chunk(2, dim=-1)
        return a * torch.sigmoid(b)
    raise KeyError(name)


@pytest.mark.parametrize("name", ["gelu_tanh", "squared_relu", "hardtanh(min=0, max=20)", "log_softmax",
                                  "softcap(2.5)", "glu"])
def test_each_activation_is_its_definition(name):
    graph, module = build(name)
    x = 8 * torch.randn(2, 5, 8)
    assert torch.allclose(module(x), by_definition(name, x), atol=1e-5)
    assert graph.params == 0
    assert graph.nodes[-1].output.dims[-1] == (4 if name == "glu" else 8)


def test_geglu_is_a_gated_feed_forward_with_gelu():
    graph, module = build("geglu(16, out=4, act=gelu_tanh)")
    assert graph.params == 2 * 8 * 16 + 16 * 4
    x = torch.randn(2, 5, 8)
    sd = module.state_dict()
    w1, w2, w3 = (next(v for k, v in sd.items() if k.endswith(s)) for s in ("w1.weight", "w2.weight", "w3.weight"))
    ref = (by_definition("gelu_tanh", x @ w1.T) * (x @ w3.T)) @ w2.T
    assert torch.allclose(module(x), ref, atol=1e-5)


def test_mlp_takes_the_new_activations():
    for act in ("gelu_tanh", "squared_relu"):
        graph, module = build(f"mlp(16, act={act})")
        assert graph.params == 8 * 16 + 16 + 16 * 8 + 8
        sd = module.state_dict()
        w1, b1, w2, b2 = (next(v for k, v in sd.items() if k.endswith(s))
                          for s in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"))
        x = torch.randn(2, 5, 8)
        ref = by_definition(act, x @ w1.T + b1) @ w2.T + b2
        assert torch.allclose(module(x), ref, atol=1e-5)


@pytest.mark.parametrize("stages, c, message", [
    ("glu", 7, "glu halves the channels, but the input has 7"),
    ("hardtanh(min=3, max=1)", 8, "hardtanh's min (3.0) must be below its max (1.0)"),
    ("softcap(0)", 8, "cap"),
    ("softcap", 8, "cap"),
    ("mlp(16, act=glu)", 8, "act"),
])
def test_bad_arguments_name_the_place(stages, c, message):
    assert_refused(f"float[B, T, {c}]", stages, message)