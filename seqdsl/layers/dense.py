"""Position-wise dense layers: linear, mlp, swiglu."""
from __future__ import annotations

from typing import Literal

from .base import (Layer, LayerArgs, LayerError, PositiveInt, Probability, channels,
                   require_float, with_channels)

Activation = Literal["gelu", "relu", "silu", "tanh", "sigmoid"]


class LinearArgs(LayerArgs):
    out: PositiveInt
    bias: bool = True
    tie: str | None = None


class Linear(Layer):
    """C -> out. `tie=NAME` reuses the named embed's vocab x dim weight (no new weight)."""

    kind = "linear"
    Args = LinearArgs

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, "linear")
        c = channels(x)
        if args.tie is not None:
            target = ctx.lookup_alias(args.tie, arg="tie")
            if target.kind != "embed":
                raise LayerError(f"tie={args.tie} names a {target.kind}; only an embed weight can be tied",
                                 arg="tie")
            vocab, dim = target.args.vocab, target.args.dim
            if (args.out, c) != (vocab, dim):
                raise LayerError(f"tie={args.tie}: this linear maps {c} -> {args.out}, but the embed "
                                 f"weight is {vocab} x {dim}; a tied head must map {dim} -> {vocab}",
                                 arg="tie")
        return with_channels(x, args.out)

    def count_params(self, args, inputs, out):
        c = channels(inputs[0])
        weight = 0 if args.tie is not None else c * args.out
        return weight + (args.out if args.bias else 0)


class MlpArgs(LayerArgs):
    hidden: PositiveInt
    out: PositiveInt | None = None
    act: Activation = "gelu"
    dropout: Probability = 0.0


class Mlp(Layer):
    """linear(C -> hidden), act, [dropout], linear(hidden -> out); both with bias."""

    kind = "mlp"
    Args = MlpArgs

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, "mlp")
        c = channels(x)
        return with_channels(x, args.out or c)

    def count_params(self, args, inputs, out):
        c = channels(inputs[0])
        o = args.out or c
        return c * args.hidden + args.hidden + args.hidden * o + o


class SwigluArgs(LayerArgs):
    hidden: PositiveInt
    out: PositiveInt | None = None


class Swiglu(Layer):
    """w2(silu(w1 x) * w3 x): three bias-free linears (C->hidden twice, hidden->out)."""

    kind = "swiglu"
    Args = SwigluArgs

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, "swiglu")
        return with_channels(x, args.out or channels(x))

    def count_params(self, args, inputs, out):
        c = channels(inputs[0])
        return 2 * c * args.hidden + args.hidden * (args.out or c)


__all__ = ["Linear", "Mlp", "Swiglu", "LayerError"]
