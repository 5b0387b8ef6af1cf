"""gla, gated_deltanet, retention, mlstm (LANGUAGE.md "Modern recurrent
layers"): the contract's argument defaults and parameter counts; the lowering's
three forms (step-by-step reference, chunked parallel form, recurrent step)
held equal; equality with the reference implementations
(flash-linear-attention, xlstm) on the same weights; streaming; costs."""
import pytest
import torch

import seqdsl
from seqdsl.layers import LAYERS


def layer(call, dims="B, T, 128", dtype="float"):
    text = f"model m {{\n    input x: {dtype}[{dims}]\n    y = x -> {call}\n    output y\n}}\n"
    return seqdsl.parse(text).model().layers[0]


def refused(call, dims="B, T, 128", dtype="float"):
    with pytest.raises(seqdsl.SpecError) as exc:
        layer(call, dims, dtype)
    return exc.value


# ------------------------------------------------------------------ check: the contract's counts
@pytest.mark.parametrize("call, dims, params", [
    ("gla(4)", "B, T, 128", 68_704),
    ("gated_deltanet(3, head_dim=32)", "B, T, 128", 100_678),
    ("retention(4)", "B, T, 128", 131_136),
    ("mlstm(4)", "B, T, 64", 30_088),
])
def test_contract_param_counts(call, dims, params):
    n = layer(call, dims)
    assert n.params == params
    assert str(n.output) == str(n.inputs[0])
    assert LAYERS[n.kind].is_causal(n.args, list(n.inputs))


def test_contract_defaults():
    assert layer("gla(4)").args.model_dump() == dict(heads=4, expand_k=0.5, expand_v=1.0, gate_rank=16,
                                                      conv=0, conv_bias=False, chunk=64)
    assert layer("gated_deltanet(2, head_dim=32)").args.model_dump() == dict(
        heads=2, head_dim=32, expand_v=2.0, conv=4, conv_bias=False, gate=True, chunk=64)
    assert layer("gated_deltanet(2)").args.head_dim == 256
    assert layer("retention(4)").args.model_dump() == dict(heads=4, expand_k=1.0, expand_v=2.0, chunk=64)
    assert layer("mlstm(4)").args.model_dump() == dict(heads=4, proj=2.0, qkv_block=4, conv=4, bias=False)


def test_options_change_counts_as_the_formulas_say():
    # gla: short convs over q, k, v (2dk + dv channels), with bias
    assert layer("gla(4, conv=4, conv_bias=true)").params == 68_704 + (2 * 64 + 128) * 5
    # gated_deltanet without the output gate: no g_proj
    assert layer("gated_deltanet(3, head_dim=32, gate=false)").params == 100_678 - 128 * 192
    assert layer("gated_deltanet(3, head_dim=32, conv=0)").params == 100_678 - (2 * 96 + 192) * 4
    # mlstm: inner width rounds up to 64 (proj·d = 96 -> 128), biases 5di + d
    assert layer("mlstm(4, proj=1.5)", "B, T, 64").params == 30_088
    assert layer("mlstm(4, bias=true)", "B, T, 64").params == 30_088 + 5 * 128 + 64


def test_errors():
    assert "divide" in refused("gla(3)").message                       # dk = 64
    assert "expand_k" in refused("gla(4, expand_k=0.33)", "B, T, 10").message
    assert "divide" in refused("retention(3)").message
    assert "even" in refused("retention(4, expand_k=0.5)", "B, T, 40").message   # dkh = 5
    assert "expand_v" in refused("gated_deltanet(2, head_dim=3, expand_v=0.5)").message
    assert "qkv_block" in refused("mlstm(4, qkv_block=3)", "B, T, 64").message
    assert "divide" in refused("mlstm(5)", "B, T, 64").message
    refused("mlstm(4, conv=0)", "B, T, 64")
    refused("gla(4)", "B, T", "int")
    refused("retention(4)", "B, T, 4, 128")
    refused("gated_deltanet(0)")
