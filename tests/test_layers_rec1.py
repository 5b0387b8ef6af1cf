"""The v0.2 recurrent mixers mamba, mamba2, rglru, mingru (LANGUAGE.md,
"Modern recurrent layers"): checking, parameter counts, lowering against the
reference implementations, streaming, and costs against the measured module."""
from __future__ import annotations

import pytest

from seqdsl.check.elaborate import parse as loads
from seqdsl.errors import SpecError


def spec(body: str, d: int = 64) -> str:
    return f"model m {{\n    input x: float[B, T, {d}]\n    y = x -> {body}\n    output y\n}}\n"


def graph(body: str, d: int = 64):
    return loads(spec(body, d)).model()


# ---------------------------------------------------------------- check
@pytest.mark.parametrize("body, d, params", [
    ("mamba", 64, 32_640),                                   # LANGUAGE.md's worked counts
    ("mamba2(state=16, head_dim=16)", 64, 28_088),
    ("rglru(4)", 64, 15_040),
    ("mingru(expand=1.5)", 96, 41_472),
    ("mingru", 64, 2 * 64 * 64),
    ("mamba(dt_rank=8, bias=true, conv_bias=false)", 64, 3 * 64 * 128 + 128 * (16 + 48 + 4 + 2) + 2 * 128 + 64),
    ("mamba2(state=16, head_dim=16, groups=2, bias=true)", 64,
     64 * (384 + 64 + 8) + 192 * 4 + 24 + 128 + 192 + (256 + 64 + 8 + 64)),
    ("rglru(2, width=32, conv=3)", 64, 3 * 64 * 32 + 2 * 32 * 32 // 2 + 32 * 9 + 64),
])
def test_params_and_shape(body, d, params):
    g = graph(body, d)
    (node,) = [n for n in g.nodes if n.kind not in ("input", "add")]
    assert node.params == params
    assert str(node.output) == f"float[B, T, {d}]"


def test_defaults():
    from seqdsl.layers import LAYERS
    a = LAYERS["mamba"].Args()
    assert (a.state, a.expand, a.conv, a.dt_rank, a.bias, a.conv_bias) == (16, 2, 4, "auto", False, True)
    assert LAYERS["mamba"].dims(a, 100)[3] == 7                  # ceil(100 / 16)
    a = LAYERS["mamba2"].Args()
    assert (a.state, a.expand, a.head_dim, a.groups, a.conv, a.chunk) == (128, 2, 64, 1, 4, 256)
    assert LAYERS["rglru"].Args(heads=4).conv == 4 and LAYERS["mingru"].Args().expand == 1
    assert all(LAYERS[k].is_causal(LAYERS[k].Args(**({"heads": 2} if k == "rglru" else {})))
               for k in ("mamba", "mamba2", "rglru", "mingru"))


@pytest.mark.parametrize("body, d, words", [
    ("mamba2(head_dim=48)", 64, "not a multiple of head_dim=48"),
    ("mamba2(state=16, head_dim=16, groups=3)", 64, "groups=3 does not divide its 8 heads"),
    ("rglru(5)", 64, "heads=5 does not divide its width 64"),
    ("rglru(3, width=64)", 96, "does not divide its width 64"),
    ("mamba(dt_rank=fast)", 64, "expects an int or one of auto"),
    ("mingru(expand=0)", 64, "expects a value > 0"),
    ("mingru(expand=0.001)", 64, "inner width"),
])
def test_errors(body, d, words):
    with pytest.raises(SpecError) as e:
        graph(body, d)
    assert words in str(e.value)


def test_rank_and_dtype_errors():
    for body in ("mamba", "mamba2", "rglru(2)", "mingru"):
        with pytest.raises(SpecError, match="rank-3"):
            loads(f"model m {{\n input x: float[B, 64]\n y = x -> {body}\n output y\n}}\n").model()
        with pytest.raises(SpecError, match="float input"):
            loads(f"model m {{\n input x: int[B, T]\n y = x -> {body}\n output y\n}}\n").model()
