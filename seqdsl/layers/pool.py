"""Windowed pooling: maxpool1d/2d/3d and avgpool1d/2d/3d over the K axes just
before the channel axis, as conv1d/2d/3d convolve them (axes before those,
other than B, are batch). Output size per axis floor((n + 2·padding - kernel)
/ stride) + 1, stride defaulting to the kernel (PyTorch's rule); avg pooling
counts padded zeros (count_include_pad). Channels unchanged, no weights.
Whole-axis pooling is spatial_mean / spatial_max / time_mean (shape_ops.py).
"""
from __future__ import annotations

from typing import Literal

import sympy

from ..graph.ir import TensorType
from ..graph.symbolic import as_int, floor_div
from .base import (example, Layer, LayerArgs, LayerError, ModuleSpec, NonNegInt, PositiveInt, channels, require_float,
                   require_rank)
from .costs import INDEX_BYTES, LayerCost, ParallelRule, numel


class PoolArgs(LayerArgs):
    kernel: PositiveInt | list[PositiveInt]
    stride: PositiveInt | list[PositiveInt] | None = None
    padding: NonNegInt | list[NonNegInt] = 0


class Pool(Layer):
    Args = PoolArgs
    takes_lengths = True       # padding read as pooling's own padding (-inf for max, zeros for avg)
    params_rule = "0"
    causal_rule = "yes when the time axis is not pooled (maxpool2d on [B, T, H, W, C] frames); otherwise no"
    arg_docs = {"padding": "zeros (avg) or -inf (max) on both sides of each pooled axis; at most kernel / 2"}

    def __init__(self, op: Literal["max", "avg"], ndim: int):
        self.op, self.ndim = op, ndim
        self.kind = f"{op}pool{ndim}d"
        what = "maximum" if op == "max" else "mean"
        self.summary = (f"{what} over windows of the {ndim} axis/axes just before the channel axis "
                        f"(F.{op}_pool{ndim}d)")
        self.shape_rule = (f"the {ndim} axes just before C each become floor((n + 2·padding - kernel) / stride)"
                           f" + 1; C unchanged; the axes before them, other than B, are batch "
                           f"(input rank {ndim + 2} or more)")
        self.arg_docs = {**Pool.arg_docs,
                         "kernel": "window: one int for every axis" + (f", or a list of {ndim}" if ndim > 1 else ""),
                         "stride": "step: as kernel; none: the kernel (windows do not overlap)"}

    def per_axis(self, args, field: str) -> tuple[int, ...]:
        value = getattr(args, field)
        if value is None:            # stride defaults to the kernel
            return self.per_axis(args, "kernel")
        if isinstance(value, int):
            return (value,) * self.ndim
        if len(value) != self.ndim:
            raise LayerError(f"{self.kind} takes {self.ndim} {field} size(s), got {len(value)}",
                             arg=field, help=f"give one int or a list of {self.ndim}")
        return tuple(value)

    def axes(self, x: TensorType) -> range:
        return range(x.rank - 1 - self.ndim, x.rank - 1)

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, self.kind)
        require_rank(x, at_least=self.ndim + 2, what=f" ([B, {self.ndim} pooled axes.., C])")
        kernel, stride, pad = (self.per_axis(args, f) for f in ("kernel", "stride", "padding"))
        dims = list(x.dims)
        for axis, k, s, p in zip(self.axes(x), kernel, stride, pad):
            if 2 * p > k:
                raise LayerError(f"padding {p} is more than half the kernel ({k})", arg="padding",
                                 help=f"pad at most {k // 2} (PyTorch's limit: a window must hold an input)")
            n = dims[axis]
            if as_int(n) is not None:
                if (self.op, self.ndim) == ("avg", 3) and as_int(n) < k:
                    # PyTorch's avg_pool3d checks the input before padding ("input image smaller
                    # than kernel size"); the other pools only check the output size
                    raise LayerError(f"axis {axis} has {n} positions, fewer than kernel={k}: the kernel "
                                     f"must fit the unpadded input", arg="kernel",
                                     help=f"a kernel of at most {as_int(n)} on that axis")
                if as_int(n) + 2 * p < k:
                    raise LayerError(f"axis {axis} has {n} positions ({as_int(n) + 2 * p} padded), fewer than "
                                     f"kernel={k}", arg="kernel")
                dims[axis] = sympy.Integer((as_int(n) + 2 * p - k) // s + 1)
            else:
                dims[axis] = floor_div(n + 2 * p - k, s) + 1
        return TensorType("float", tuple(dims))

    def cost(self, args, inputs, out, ctx):
        """No FLOPs (FlopCounterMode counts none for pooling). Backward keeps
        the input, and max pooling its int64 argmax indices, which the CPU
        kernel also writes in inference. The kernels keep the input's
        channels-last layout, so the result needs no copy, except avg_pool3d,
        which writes channels-first: its channels-last result is a dense copy
        beside the raw output (measured: tests/test_layer_harness.py)."""
        x = inputs[0]
        indices = numel(out.dims) * INDEX_BYTES if self.op == "max" else 0
        # (one channel: channels-first is channels-last, nothing to copy)
        raw = numel(out.dims) * ctx.elem if (self.op, self.ndim) == ("avg", 3) and channels(x) > 1 else 0
        time = 1 in self.axes(x)
        stride = self.per_axis(args, "stride")[list(self.axes(x)).index(1)] if time else 1
        return LayerCost(saves_inputs=(True,), saved_bytes=indices, workspace_bytes=raw + indices,
                         time_stride=stride)

    def is_causal(self, args, inputs=None) -> bool:
        return inputs is not None and 1 not in self.axes(inputs[0])

    def parallel(self, args, inputs, elem):
        """Channel-wise: its output is split as its input is."""
        return ParallelRule(output="input")

    def module(self, node, memory):
        a = node.args
        return ModuleSpec("Pool", (self.op, self.ndim, self.per_axis(a, "kernel"), self.per_axis(a, "stride"),
                                   self.per_axis(a, "padding")), lowering="pool_torch")

    def examples(self):
        if self.ndim == 1:
            return (example("float[B, T, 8]", f"{self.op}pool1d(2)"),
                    example("float[B, T, 6]", f"{self.op}pool1d(3, stride=2, padding=1)"))
        if self.ndim == 2:
            return (example("float[B, T, 6, 6, 4]", f"{self.op}pool2d(2)"),
                    example("float[B, T, 7, 5, 2]", f"{self.op}pool2d([3, 2], stride=[2, 1], padding=[1, 0])"))
        return (example("float[B, T, 6, 6, 3]", f"{self.op}pool3d([1, 2, 2])"),)
