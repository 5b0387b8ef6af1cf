"""conv1d / conv2d / conv3d over the K axes just before the channel axis.

Axes before those (other than the batch) are folded into the batch, so conv2d
on video [B, T, H, W, C] convolves each frame. Padding: `same` gives
ceil(n / stride), `valid` floor((n - kernel) / stride) + 1, `causal` (conv1d)
pads kernel - 1 on the left, which also gives ceil(n / stride).
"""
from __future__ import annotations

import math
from typing import Literal

import sympy

from ..ir import TensorType
from ..symbolic import as_int, ceil_div, floor_div
from .base import Layer, LayerArgs, LayerError, PositiveInt, channels, require_float, require_rank


class ConvArgs(LayerArgs):
    out: PositiveInt
    kernel: PositiveInt | list[PositiveInt]
    stride: PositiveInt | list[PositiveInt] = 1
    padding: Literal["same", "valid", "causal"] = "same"
    groups: PositiveInt = 1
    bias: bool = True


class Conv(Layer):
    Args = ConvArgs

    def __init__(self, ndim: int):
        self.ndim = ndim
        self.kind = f"conv{ndim}d"

    def per_axis(self, args, field: str) -> tuple[int, ...]:
        value = getattr(args, field)
        if isinstance(value, int):
            return (value,) * self.ndim
        if len(value) != self.ndim:
            raise LayerError(f"{self.kind} takes {self.ndim} {field} size(s), got {len(value)}",
                             arg=field, help=f"give one int or a list of {self.ndim}")
        return tuple(value)

    def conv_axes(self, x: TensorType) -> range:
        """Indices of the convolved axes in x.dims."""
        return range(x.rank - 1 - self.ndim, x.rank - 1)

    def time_is_convolved(self, x: TensorType) -> bool:
        return 1 in self.conv_axes(x)

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, self.kind)
        require_rank(x, at_least=self.ndim + 2,
                     what=f" ([B, {self.ndim} convolved axes.., C])")
        c = channels(x)
        kernel, stride = self.per_axis(args, "kernel"), self.per_axis(args, "stride")
        if args.padding == "causal" and self.ndim != 1:
            raise LayerError(f"padding=causal is only defined for conv1d, not {self.kind}",
                             arg="padding", help="use padding=same or padding=valid")
        if c % args.groups or args.out % args.groups:
            raise LayerError(f"groups={args.groups} must divide both the {c} input and "
                             f"the {args.out} output channels", arg="groups")
        dims = list(x.dims)
        for axis, k, s in zip(self.conv_axes(x), kernel, stride):
            n = dims[axis]
            if args.padding == "valid":
                if as_int(n) is not None and as_int(n) < k:
                    raise LayerError(f"padding=valid needs at least kernel={k} positions "
                                     f"on axis {axis}, which has {n}", arg="kernel")
                dims[axis] = floor_div(n - k, s) + 1 if as_int(n) is None else sympy.Integer((as_int(n) - k) // s + 1)
            else:
                dims[axis] = ceil_div(n, s)
        dims[-1] = sympy.Integer(args.out)
        return TensorType("float", tuple(dims))

    def count_params(self, args, inputs, out):
        c = channels(inputs[0])
        weight = args.out * (c // args.groups) * math.prod(self.per_axis(args, "kernel"))
        return weight + (args.out if args.bias else 0)

    def is_causal(self, args, inputs=None) -> bool:
        if args.padding == "causal":
            return True
        return inputs is not None and not self.time_is_convolved(inputs[0])
