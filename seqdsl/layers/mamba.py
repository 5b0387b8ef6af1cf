"""mamba: the Mamba-1 selective SSM mixer, exactly transformers' `MambaMixer`.

Shared with the other v0.2 mixers (mamba2, rglru, mingru): `SequenceMixer`,
the `[B, T, C] -> [B, T, C]` causal shape rule, and the short-convolution cost.
Lowering: mamba_torch.py; derivations: docs/recurrent_layers.md.
"""
from __future__ import annotations

import math
from typing import Literal, Union

from .base import Layer, LayerArgs, LayerError, ModuleSpec, PositiveInt, channels, require_float, require_rank, with_channels

#: Mamba-1's chunk length (the lowering's chunked scan: a doubling scan inside
#: a chunk, the state handed chunk to chunk). It changes cost, never the function.
MAMBA_CHUNK = 64


class SequenceMixer(Layer):
    """A linear-time mixer of the v0.2 table: float [B, T, C] in, same shape out."""

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, self.kind)
        require_rank(x, 3, what=" [B, T, C]")
        c = channels(x)
        if ctx.in_segments:
            raise LayerError(f"{self.kind} cannot run inside segments",
                             help="segments carry memory for attention layers only; "
                                  "put the recurrent layer before or after the segments block")
        self.validate(args, c)
        return with_channels(x, c)

    def validate(self, args, c: int) -> None:
        """Raise LayerError for argument combinations the reference refuses."""

    def is_causal(self, args, inputs=None) -> bool:
        return True


def short_conv_cost(b, t, width: int, k: int):
    """A depthwise causal conv over exactly T outputs (left pad only):
    FlopCounterMode counts 2·B·T·width·K."""
    return 2 * b * t * width * k


class MambaArgs(LayerArgs):
    state: PositiveInt = 16
    expand: PositiveInt = 2
    conv: PositiveInt = 4
    dt_rank: Union[PositiveInt, Literal["auto"]] = "auto"
    bias: bool = False
    conv_bias: bool = True


class Mamba(SequenceMixer):
    kind = "mamba"
    Args = MambaArgs

    @staticmethod
    def dims(args, d: int) -> tuple[int, int, int, int]:
        """(di, N, K, R): inner width, state, conv width, dt rank."""
        r = math.ceil(d / 16) if args.dt_rank == "auto" else args.dt_rank
        return args.expand * d, args.state, args.conv, r

    def count_params(self, args, inputs, out):
        d = channels(inputs[0])
        di, n, k, r = self.dims(args, d)
        return (3 * d * di + di * (2 * r + 3 * n + k + 2) + args.conv_bias * di
                + args.bias * (2 * di + d))

    def module(self, node, memory):
        a = node.args
        di, n, k, r = self.dims(a, channels(node.inputs[0]))
        return ModuleSpec("Mamba", (channels(node.inputs[0]), n, a.expand, k, r, a.bias, a.conv_bias),
                          lowering="mamba_torch")
