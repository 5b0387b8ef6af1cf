"""Explicit convolution padding (issue: real architectures): `padding=p` pads p
zeros on both sides as PyTorch's `padding=p` does (Wav2Letter's k=32, p=16
gives T+1 frames), conv1d's `[left, right]` each side apart, conv2d/3d's
list one per axis; shapes, parameters and outputs equal torch.nn.ConvNd
with the same weights, and bad paddings are refused at the argument."""
import pytest

import seqdsl

torch = pytest.importorskip("torch")
from small_specs import assert_refused  # noqa: E402
F = torch.nn.functional


def graph(input_type: str, stage: str):
    text = f"model m {{\n    input x: {input_type}\n    y = x -> {stage}\n    output y\n}}\n"
    return seqdsl.parse(text, "m.seq").model()


def test_wav2letter_padding_gives_t_plus_one_frames():
    g = graph("float[B, T, 40]", "conv1d(250, 32, padding=16)")
    assert str(g.nodes[-1].output.dims[1]) == "T + 1"
    model = seqdsl.build(g)
    ref = torch.nn.Conv1d(40, 250, 32, padding=16)
    ref.load_state_dict({k.split(".")[-1]: v for k, v in model.state_dict().items()})
    x = torch.randn(2, 100, 40)
    with torch.no_grad():
        y = model(x)
        assert y.shape == (2, 101, 250)
        assert torch.allclose(y, ref(x.transpose(1, 2)).transpose(1, 2), atol=1e-5)


@pytest.mark.parametrize("input_type, stage, shape, pad", [
    ("float[B, T, 4]", "conv1d(6, 5, stride=2, padding=[3, 1])", (2, 17, 4), (3, 1)),
    ("float[B, T, 7, 5, 2]", "conv2d(3, [3, 2], stride=2, padding=[1, 0])", (2, 3, 7, 5, 2), (1, 1, 0, 0)),
    ("float[B, T, 6, 6, 3]", "conv3d(4, 3, padding=1)", (2, 5, 6, 6, 3), (1, 1, 1, 1, 1, 1)),
])
def test_outputs_equal_torch_with_the_same_zeros(input_type, stage, shape, pad):
    g = graph(input_type, stage)
    model = seqdsl.build(g)
    conv = model.named_layer("y.conv" + stage[4:6]).conv
    x = torch.randn(*shape)
    nd = conv.weight.dim() - 2
    with torch.no_grad():
        y = model(x)
        # by hand: fold, channels first, F.pad (last axis first), convolve with the module's weights
        lead = x.shape[:x.dim() - 1 - nd]
        xs = x.reshape(-1, *x.shape[x.dim() - 1 - nd:]).movedim(-1, 1)
        ref = getattr(F, f"conv{nd}d")(F.pad(xs, _torch_order(pad, nd)),
                                       conv.weight, conv.bias, stride=conv.stride)
        ref = ref.movedim(1, -1).reshape(*lead, *ref.shape[2:], ref.shape[1])
    assert y.shape == ref.shape
    assert torch.allclose(y, ref, atol=1e-5)
    sizes = {"B": shape[0], "T": shape[1]}
    dims = [int(d.subs({s: sizes[s.name] for s in d.free_symbols})) for d in g.nodes[-1].output.dims]
    assert tuple(dims) == tuple(y.shape)


def _torch_order(pad, nd):
    """pad given as (left, right) per axis in axis order -> F.pad's last-axis-first list."""
    pairs = [pad[2 * i:2 * i + 2] for i in range(nd)]
    return [v for p in reversed(pairs) for v in p]


@pytest.mark.parametrize("input_type, stage, message", [
    ("float[B, T, 4]", "conv1d(4, 3, padding=[1, 1, 1])", "conv1d takes padding=[left, right], got a list of 3"),
    ("float[B, T, 4, 4, 2]", "conv2d(4, 3, padding=[1, 1, 1])", "conv2d takes one padding per axis (2)"),
    ("float[B, T, 4]", "conv1d(4, 3, padding=3)", "is not below the kernel (3)"),
    ("float[B, T, 4]", "conv1d(4, 3, padding=-1)", "padding"),
    ("float[B, 2, 4]", "conv1d(4, 5, padding=1)", "fewer than kernel=5"),
])
def test_bad_paddings_name_the_argument(input_type, stage, message):
    assert_refused(input_type, stage, message)