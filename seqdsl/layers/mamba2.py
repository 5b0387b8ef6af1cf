"""mamba2: the Mamba-2 (SSD) mixer, exactly transformers' `Mamba2Mixer`,
gated RMSNorm included (gate first, then normalise per group).
Lowering: mamba2_torch.py; derivations: docs/recurrent_layers.md."""
from __future__ import annotations

from .base import LayerArgs, LayerError, ModuleSpec, PositiveInt, channels
from .mamba import SequenceMixer


class Mamba2Args(LayerArgs):
    state: PositiveInt = 128
    expand: PositiveInt = 2
    head_dim: PositiveInt = 64
    groups: PositiveInt = 1
    conv: PositiveInt = 4
    chunk: PositiveInt = 256
    bias: bool = False
    conv_bias: bool = True


class Mamba2(SequenceMixer):
    kind = "mamba2"
    Args = Mamba2Args

    @staticmethod
    def dims(args, d: int) -> tuple[int, int, int, int, int]:
        """(di, Hm, G, N, K): inner width, heads, groups, state, conv width."""
        di = args.expand * d
        return di, di // args.head_dim, args.groups, args.state, args.conv

    def validate(self, args, c):
        di = args.expand * c
        if di % args.head_dim:
            raise LayerError(f"mamba2's inner width expand*d = {args.expand}*{c} = {di} is not a multiple "
                             f"of head_dim={args.head_dim}", arg="head_dim",
                             help=f"pick a head_dim that divides {di}")
        hm = di // args.head_dim
        if hm % args.groups:
            raise LayerError(f"mamba2's groups={args.groups} does not divide its {hm} heads "
                             f"(expand*d / head_dim = {di} / {args.head_dim})", arg="groups",
                             help="every group of B and C serves the same number of heads")

    def count_params(self, args, inputs, out):
        d = channels(inputs[0])
        di, hm, g, n, k = self.dims(args, d)
        conv = di + 2 * g * n
        return (d * (3 * di + 2 * g * n + hm) + conv * k + 3 * hm + di + args.conv_bias * conv
                + args.bias * (2 * di + 2 * g * n + hm + d))

    def module(self, node, memory):
        a = node.args
        return ModuleSpec("Mamba2", (channels(node.inputs[0]), a.state, a.expand, a.head_dim, a.groups, a.conv,
                                     a.chunk, a.bias, a.conv_bias), lowering="mamba2_torch")
