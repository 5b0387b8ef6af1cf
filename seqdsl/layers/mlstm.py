"""mlstm: the matrix LSTM (Beck et al. 2024, arXiv:2405.04517), exactly xlstm's
`mLSTMLayer`: an up-projection to 2·di (di = ceil(proj·d/64)·64) split into
the mLSTM branch and an output gate, a causal depthwise convolution (with
bias), block-diagonal q/k/v projections of qkv_block x qkv_block blocks,
exponential input and sigmoid forget gates per head, a per-head LayerNorm, a
learnable skip and the down-projection. Lowering: mlstm_torch.py."""
from __future__ import annotations

import math

from .base import LayerArgs, LayerError, ModuleSpec, PositiveInt, example
from . import linear_rnn as lr
from .costs import LayerCost


#: chunk length of mlstm's chunked form (the contract gives mlstm no `chunk`)
CHUNK = 64


class MlstmArgs(LayerArgs):
    heads: PositiveInt
    proj: float = 2.0
    qkv_block: PositiveInt = 4
    conv: PositiveInt = 4
    bias: bool = False


class Mlstm(lr.HeadsLayer):
    kind = "mlstm"
    Args = MlstmArgs
    summary = ("matrix LSTM, exactly xlstm's mLSTMLayer: up-projection, causal conv, block-diagonal "
               "q/k/v, exponential-gated matrix memory per head, gated down-projection")
    shape_rule = "`[B, T, C] -> [B, T, C]`"
    params_rule = ("3·C·di + di·(3·qkv_block + conv + 3 + 6·heads) + 2·heads + [bias]·(5di + C); "
                   "di = ceil(proj·C / 64)·64")
    arg_docs = {"heads": "heads; must divide di", "proj": "up-projection factor (di rounded up to 64)",
                "qkv_block": "block size of the block-diagonal q, k, v projections; must divide di",
                "conv": "causal depthwise convolution width (with bias)",
                "bias": "biases in the up, down and q/k/v projections"}
    notes = ("Streams with a constant state (C, n, m per head at the model dtype, plus the conv window). "
             "Its chunked form uses chunks of 64. Not allowed inside `segments`. "
             "See docs/linear_attention_layers.md.")

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

    def cost(self, args, inputs, out, ctx):
        """docs/linear_attention_layers.md: up- and down-projections, the
        block-diagonal q, k, v (2·qkv_block FLOPs per channel), the two gate
        projections from cat(q, k, v), the convolution, and chunk_mlstm's
        products per chunk of Q = 64 (D = di / heads): k^T v and q·C (Q·D·D),
        q k^T and the intra product (Q·Q·D), q·n (Q·D). State: C, n and m per
        head and the convolution window, at the model dtype (as xlstm)."""
        x = inputs[0]
        b, t, c = x.dims[0], x.dims[1], lr.channels(x)
        di, h, e = self.inner(args, c), args.heads, ctx.elem
        d, q, k, blk = di // h, CHUNK, args.conv, args.qkv_block
        p = lr.Products()
        p.linear(b * t, c, 2 * di, from_input=True)
        lr.short_conv(p, b * t, di, k)
        p.product(3 * 2 * b * t * di * blk)                # q, k, v: weight and input gradients
        p.linear(b * t, 3 * di, h).linear(b * t, 3 * di, h)   # input and forget gates
        p.linear(b * t, di, c)
        _, tp = lr.chunks(t, q)
        p.product(2 * b * h * tp * (2 * q * d + 2 * d * d + d))
        # one chunk: the carried state is the zero start (q·C, q·n: q's gradient
        # only) and the chunk's k^T v feeds only the final state
        p.backward -= lr.one_chunk(t, q, 2 * b * h * q * (3 * d * d + d))
        step = (2 * b * (3 * c * di + di * k + 3 * di * blk + 6 * di * h)
                + 2 * b * h * (2 * d * d + d))
        saved, work = lr.mlstm_memory(b, t, c, h, di, d, k, q, e)
        return LayerCost(flops=p.forward, backward_flops=p.backward, input_grad_flops=(p.input_grad,),
                         saves_inputs=(True,), saved_bytes=saved, workspace_bytes=work, step_flops=step,
                         state_bytes=b * h * (d * d + d + 1) * e + b * di * k * e,
                         depth=lr.chunked_depth(t, q), has_weights=True)

    def examples(self):
        return (example("float[B, T, 64]", "mlstm(2)"),
                example("float[B, T, 48]", "mlstm(4, proj=1.5, qkv_block=8, conv=3, bias=true)"))


    def module(self, node, memory):
        a, c = node.args, lr.channels(node.inputs[0])
        return ModuleSpec("MLstm", (c,), dict(heads=a.heads, proj=a.proj, qkv_block=a.qkv_block,
                                              conv=a.conv, bias=a.bias, chunk=CHUNK), lowering="mlstm_torch")
