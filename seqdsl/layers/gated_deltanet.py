"""gated_deltanet: the gated delta rule (Yang et al. 2024, arXiv:2412.06464),
exactly flash-linear-attention's `GatedDeltaNet`: q, k, v projections through
silu'd short convolutions, L2-normalised q and k, a per-head decay
-exp(A_log)·softplus(a + dt_bias) and write strength sigmoid(b), the delta-rule
state update, a gated RMSNorm per head (gate=true) and the output projection.
Lowering: gated_deltanet_torch.py."""
from __future__ import annotations

from .base import Layer, LayerArgs, ModuleSpec, NonNegInt, PositiveInt
from . import linear_rnn as lr


class GatedDeltaNetArgs(LayerArgs):
    heads: PositiveInt
    head_dim: PositiveInt = 256
    expand_v: float = 2.0
    conv: NonNegInt = 4
    conv_bias: bool = False
    gate: bool = True
    chunk: PositiveInt = 64


class GatedDeltaNet(Layer):
    kind = "gated_deltanet"
    Args = GatedDeltaNetArgs

    def dims(self, args):
        """(Kd, Vd, dk per head, dv per head)."""
        dvh = lr.scaled_width(args.head_dim, args.expand_v, "expand_v")
        return args.heads * args.head_dim, args.heads * dvh, args.head_dim, dvh

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        lr.check_sequence(x, self.kind, ctx)
        self.dims(args)
        return x

    def count_params(self, args, inputs, out):
        c = lr.channels(inputs[0])
        kd, vd, _, dvh = self.dims(args)
        h = args.heads
        return (c * (2 * kd + 2 * vd + 2 * h) + int(args.gate) * c * vd + 2 * h
                + lr.conv_params(2 * kd + vd, args.conv, args.conv_bias) + dvh)

    def module(self, node, memory):
        a, c = node.args, lr.channels(node.inputs[0])
        return ModuleSpec("GatedDeltaNet", (c,), dict(
            heads=a.heads, head_dim=a.head_dim, expand_v=a.expand_v, conv=a.conv,
            conv_bias=a.conv_bias, gate=a.gate, chunk=a.chunk), lowering="gated_deltanet_torch")
