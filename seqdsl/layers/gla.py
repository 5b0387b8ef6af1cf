"""gla: gated linear attention, exactly flash-linear-attention's
`GatedLinearAttention` (Yang et al. 2023, arXiv:2312.06635) with its defaults:
q, k, v, output-gate and low-rank key-gate projections, an optional short
convolution, a per-key-channel decay exp(logsigmoid(gk)/16), a gated RMSNorm
per head and the output projection. Lowering: gla_torch.py."""
from __future__ import annotations

from .base import Layer, LayerArgs, ModuleSpec, NonNegInt, PositiveInt
from . import linear_rnn as lr

class GlaArgs(LayerArgs):
    heads: PositiveInt
    expand_k: float = 0.5
    expand_v: float = 1.0
    gate_rank: PositiveInt = 16
    conv: NonNegInt = 0
    conv_bias: bool = False
    chunk: PositiveInt = 64


class Gla(Layer):
    kind = "gla"
    Args = GlaArgs

    def dims(self, args, c: int):
        """(dk, dv, dk per head, dv per head)."""
        dk = lr.scaled_width(c, args.expand_k, "expand_k")
        dv = lr.scaled_width(c, args.expand_v, "expand_v")
        return dk, dv, lr.split_heads_of(dk, args.heads, "key"), lr.split_heads_of(dv, args.heads, "value")

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        c = lr.check_sequence(x, self.kind, ctx)
        self.dims(args, c)
        return x

    def count_params(self, args, inputs, out):
        c = lr.channels(inputs[0])
        dk, dv, _, dvh = self.dims(args, c)
        r = args.gate_rank
        return (c * (2 * dk + 3 * dv + r) + dk * (r + 1) + dvh
                + lr.conv_params(2 * dk + dv, args.conv, args.conv_bias))

    def module(self, node, memory):
        a, c = node.args, lr.channels(node.inputs[0])
        return ModuleSpec("GatedLinearAttention", (c,), dict(
            heads=a.heads, expand_k=a.expand_k, expand_v=a.expand_v, gate_rank=a.gate_rank,
            conv=a.conv, conv_bias=a.conv_bias, chunk=a.chunk), lowering="gla_torch")
