"""mlstm: the matrix LSTM (Beck et al. 2024, arXiv:2405.04517), exactly xlstm's
`mLSTMLayer`: an up-projection to 2·di (di = ceil(proj·d/64)·64) split into
the mLSTM branch and an output gate, a causal depthwise convolution (with
bias), block-diagonal q/k/v projections of qkv_block x qkv_block blocks,
exponential input and sigmoid forget gates per head, a per-head LayerNorm, a
learnable skip and the down-projection. Lowering: mlstm_torch.py."""
from __future__ import annotations

import math

from .base import Layer, LayerArgs, LayerError, ModuleSpec, PositiveInt
from . import linear_rnn as lr


class MlstmArgs(LayerArgs):
    heads: PositiveInt
    proj: float = 2.0
    qkv_block: PositiveInt = 4
    conv: PositiveInt = 4
    bias: bool = False


class Mlstm(Layer):
    kind = "mlstm"
    Args = MlstmArgs

    def inner(self, args, c: int) -> int:
        """di = ceil(proj·d / 64)·64 (xlstm rounds the up-projection up to 64)."""
        if args.proj <= 0:
            raise LayerError(f"proj={args.proj} must be positive", arg="proj")
        di = math.ceil(args.proj * c / 64) * 64
        if di % args.qkv_block:
            raise LayerError(f"qkv_block={args.qkv_block} does not divide the inner width {di}",
                             arg="qkv_block")
        lr.split_heads_of(di, args.heads, "inner")
        return di

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        self.inner(args, lr.check_sequence(x, self.kind, ctx))
        return x

    def count_params(self, args, inputs, out):
        c = lr.channels(inputs[0])
        di, h = self.inner(args, c), args.heads
        return (3 * c * di + di * (3 * args.qkv_block + args.conv + 3 + 6 * h) + 2 * h
                + int(args.bias) * (5 * di + c))

    def module(self, node, memory):
        a, c = node.args, lr.channels(node.inputs[0])
        return ModuleSpec("MLstm", (c,), dict(heads=a.heads, proj=a.proj, qkv_block=a.qkv_block,
                                              conv=a.conv, bias=a.bias), lowering="mlstm_torch")
