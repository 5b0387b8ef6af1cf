"""conv1d / conv2d / conv3d over the K axes just before the channel axis.

Axes before those (other than the batch) are folded into the batch, so conv2d
on video [B, T, H, W, C] convolves each frame. Padding: `same` gives
ceil(n / stride), `valid` floor((n - kernel) / stride) + 1, `causal` (conv1d)
pads kernel - 1 on the left, which also gives ceil(n / stride). An explicit
padding (`padding=16`, conv1d's `padding=[left, right]`, conv2d/3d's
`padding=[p1, p2(, p3)]` per axis) pads that many zeros, giving
floor((n + left + right - kernel) / stride) + 1 as PyTorch does.
"""
from __future__ import annotations

import math
from typing import Literal

import sympy

from ..graph.ir import TensorType
from ..graph.symbolic import as_int, ceil_div, floor_div
from .base import (example, Layer, LayerArgs, LayerError, ModuleSpec, NonNegInt, PositiveInt, channels, require_float,
                   require_rank)
from .costs import LayerCost, numel, transient_peak


class ConvArgs(LayerArgs):
    out: PositiveInt
    kernel: PositiveInt | list[PositiveInt]
    stride: PositiveInt | list[PositiveInt] = 1
    padding: Literal["same", "valid", "causal"] | NonNegInt | list[NonNegInt] = "same"
    groups: PositiveInt = 1
    bias: bool = True


class Conv(Layer):
    Args = ConvArgs
    takes_lengths = True       # padding zeroed: read as the convolution's own zero padding
    params_rule = "out · (C / groups) · prod(kernel) + [bias] · out"
    causal_rule = ("yes with padding=causal (conv1d), or when the time axis is not convolved "
                   "(conv2d on [B, T, H, W, C] frames); otherwise no")
    arg_docs = {"out": "output channels",
                "padding": "`same`: each axis becomes ceil(n / stride); `valid`: floor((n - kernel) / stride) + 1; "
                           "`causal` (conv1d only): pads kernel - 1 on the left, ceil(n / stride); an int p: p "
                           "zeros on both sides of every axis, floor((n + 2p - kernel) / stride) + 1 (PyTorch's "
                           "`padding=p`); conv1d's `[left, right]` pads each side apart; conv2d/3d's list gives "
                           "one p per axis",
                "groups": "grouped convolution; divides C and out (groups=C: depthwise)",
                "bias": "add a bias per output channel"}

    def __init__(self, ndim: int):
        self.ndim = ndim
        self.kind = f"conv{ndim}d"
        self.summary = {1: "1-D convolution over the axis just before the channel axis (time, on [B, T, C])",
                        2: "2-D convolution over the 2 axes just before the channel axis (time and frequency "
                           "on [B, T, F, C]; each frame's height and width on [B, T, H, W, C])",
                        3: "3-D convolution over the 3 axes just before the channel axis (time, height "
                           "and width on [B, T, H, W, C])"}[ndim]
        self.shape_rule = ("`[B, T, C] -> [B, T', out]`, T' as `padding` says; on a longer input the axis "
                           "before C is convolved and the axes before it, other than B, are batch" if ndim == 1 else
                           f"the {ndim} axes just before C are convolved, each as `padding` says; `C -> out`; "
                           f"the axes before them, other than B, are batch (input rank {ndim + 2} or more)")
        self.arg_docs = {**Conv.arg_docs,
                         "kernel": "kernel size: one int for every axis" + (f", or a list of {ndim}" if ndim > 1 else ""),
                         "stride": "stride: one int for every axis" + (f", or a list of {ndim}" if ndim > 1 else "")}

    def per_axis(self, args, field: str) -> tuple[int, ...]:
        value = getattr(args, field)
        if isinstance(value, int):
            return (value,) * self.ndim
        if len(value) != self.ndim:
            raise LayerError(f"{self.kind} takes {self.ndim} {field} size(s), got {len(value)}",
                             arg=field, help=f"give one int or a list of {self.ndim}")
        return tuple(value)

    def explicit_pads(self, args) -> tuple[tuple[int, int], ...] | None:
        """(left, right) zeros per convolved axis for an explicit padding, or
        None for same / valid / causal."""
        p = args.padding
        if isinstance(p, str):
            return None
        if isinstance(p, int):
            return ((p, p),) * self.ndim
        if self.ndim == 1:
            if len(p) != 2:
                raise LayerError(f"conv1d takes padding=[left, right], got a list of {len(p)}", arg="padding",
                                 help="give one int for both sides, or [left, right]")
            return ((p[0], p[1]),)
        if len(p) != self.ndim:
            raise LayerError(f"{self.kind} takes one padding per axis ({self.ndim}), got a list of {len(p)}",
                             arg="padding", help=f"give one int for every axis, or a list of {self.ndim}")
        return tuple((q, q) for q in p)

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
        explicit = self.explicit_pads(args)
        for i, (axis, k, s) in enumerate(zip(self.conv_axes(x), kernel, stride)):
            n = dims[axis]
            if explicit is not None:
                lo, hi = explicit[i]
                if lo >= k or hi >= k:
                    raise LayerError(f"padding {lo, hi} on axis {axis} is not below the kernel ({k}): "
                                     f"some outputs would read only zeros", arg="padding",
                                     help=f"pad at most {k - 1} on each side")
                if as_int(n) is not None and as_int(n) + lo + hi < k:
                    raise LayerError(f"axis {axis} has {n} positions, {as_int(n) + lo + hi} padded: fewer than "
                                     f"kernel={k}", arg="kernel")
                m = n + lo + hi - k
                dims[axis] = floor_div(m, s) + 1 if as_int(n) is None else sympy.Integer(as_int(m) // s + 1)
            elif args.padding == "valid":
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

    def padding_total(self, args, axis: int, n, k: int, s: int):
        """(F.pad total, padded) on the `axis`-th convolved axis (docs/lowering.md):
        same pads max((ceil(n/s) - 1)·s + k - n, 0) (TensorFlow's rule), causal
        k - 1, an explicit padding left + right; `padded` is 1 when the total is
        above 0, else 0, a closed form in n where that depends on n."""
        explicit = self.explicit_pads(args)
        if explicit is not None:
            total = sum(explicit[axis])
        elif args.padding == "valid":
            total = 0
        elif args.padding == "causal":
            total = k - 1
        elif k == 1:    # (ceil(n/s) - 1)·s + 1 - n <= 0 for every n: never padded
            total = 0
        else:
            total = (ceil_div(n, s) - 1) * s + k - n
            if as_int(n) is not None:
                total = max(int(total), 0)
            elif k > s:     # (-n mod s) + k - s >= k - s > 0 at every n
                return total, sympy.Integer(1)
            else:
                # the total is (-n mod s) + k - s, above 0 only where n mod s is 1 .. k - 1
                # (kernel = stride = 2: odd n): `padded` is floor(((-n mod s) + k - 1) / s)
                rest = ceil_div(n, s) * s - n               # -n mod s
                padded = floor_div(rest + k - 1, s)
                return (rest if k == s else padded * total), padded
        return sympy.Integer(total), sympy.Integer(1 if total > 0 else 0)

    def cost(self, args, inputs, out, ctx):
        """2·batch·out_positions·out·(C/groups)·prod(kernel) (aten.convolution);
        weight and input gradients the same each (aten.convolution_backward,
        whose FlopCounterMode formula over-counts groups > 1). Memory, as the
        lowering runs (docs/lowering.md): conv1d always convolves a dense
        channels-first copy (F.pad's, with or without padding), saves it and
        writes a channels-first result that the channels-last output copies;
        conv2d/3d pad only when padding is needed (else they read and save the
        channels-last input itself) and write channels-last."""
        x = inputs[0]
        c = channels(x)
        kernel, stride = self.per_axis(args, "kernel"), self.per_axis(args, "stride")
        axes = list(self.conv_axes(x))
        batch = numel([d for i, d in enumerate(x.dims[:-1]) if i not in axes])
        out_positions = numel([out.dims[i] for i in axes])
        f = 2 * batch * out_positions * args.out * (c // args.groups) * math.prod(kernel)
        pads, padded = zip(*[self.padding_total(args, j, x.dims[i], k, s)
                             for j, (i, k, s) in enumerate(zip(axes, kernel, stride))])
        # 1 where some axis is padded, else 0: with padding=same, a kernel and a stride above
        # 1 this depends on the length (kernel = stride = 2: odd lengths only), and counting
        # the padded copy at every length was 1.33x (saved 4,096 bytes, 0 measured: seed 642)
        symbolic = [flag for flag in padded if as_int(flag) is None]
        any_padded = sympy.Integer(1) if 1 in padded else sympy.Max(*symbolic) if symbolic else sympy.Integer(0)
        # conv1d always convolves a copy; conv2d/3d only a padded one (else the input in place)
        copied = sympy.Integer(1) if self.ndim == 1 else any_padded
        copy = copied * batch * c * numel([x.dims[i] + p for i, p in zip(axes, pads)]) * ctx.elem
        time = 1 in axes
        t_stride = stride[axes.index(1)] if time else 1
        step = None
        state = 0
        if time:
            # one output step per t_stride input steps; the last k - 1 inputs are the state
            t_k = kernel[axes.index(1)]
            step = f / out.dims[1] / t_stride
            state = (t_k - 1) * batch * c * numel([x.dims[i] for i in axes if i != 1]) * ctx.elem
        out_bytes = numel(out.dims) * ctx.elem
        # Where aten.convolution writes channels-first (then copied channels-last): conv1d, but
        # not over one output position (already channels-last) nor over an unpadded one-channel
        # copy (F.pad keeps its channels-last strides, and the result follows them); a pointwise
        # conv3d (kernel and stride all 1) always. Measured with LiveTensorTracker: conv1d(16, 1)
        # on [B, T, 5, 1] was 1.83x, conv3d(16, 1) 0.52-0.6x (random specs, seeds 507 and 1832).
        # (1 or 0, or where an unpadded one-channel conv1d depends on the length, a 0/1 form)
        pointwise = all(k == 1 for k in kernel) and all(s == 1 for s in stride)
        if self.ndim == 1 and as_int(out.dims[axes[0]]) != 1:
            channels_first = any_padded if c == 1 else sympy.Integer(1)    # not an unpadded one-channel copy
        else:
            channels_first = sympy.Integer(1 if self.ndim == 3 and pointwise else 0)
        raw = channels_first * out_bytes
        if channels_first == 0:
            live = copy                 # the padded copy is freed once the output is written
        else:
            # the copy and the raw result, then the raw result beside the output
            live = transient_peak(out_bytes, before=[copy + out_bytes], after=[out_bytes])
            if channels_first != 1:
                live = channels_first * live + (1 - channels_first) * copy
        return LayerCost(flops=f, backward_flops=f, input_grad_flops=(f,), saves_inputs=(1 - copied,),
                         saved_bytes=copy, workspace_bytes=copy + raw, live_workspace_bytes=live,
                         step_flops=step, state_bytes=state, time_stride=t_stride, has_weights=True)

    def check_lengths(self, args, inputs, out):
        """padding=same with a stride pads by the length (TensorFlow's rule): a
        shorter sequence alone would start its windows elsewhere."""
        x = inputs[0]
        if args.padding == "same" and self.time_is_convolved(x):
            s = self.per_axis(args, "stride")[list(self.conv_axes(x)).index(1)]
            k = self.per_axis(args, "kernel")[list(self.conv_axes(x)).index(1)]
            if s > 1:
                raise LayerError(f"padding=same with stride {s} pads by each length, so a shorter "
                                 "sequence alone would place its windows differently", arg="padding",
                                 help=f"pad explicitly (padding={(k - 1) // 2}, or [left, right]) or use "
                                      "padding=causal or valid")

    def is_causal(self, args, inputs=None) -> bool:
        if args.padding == "causal":
            return True
        return inputs is not None and not self.time_is_convolved(inputs[0])

    def module(self, node, memory):
        a = node.args
        padding = self.explicit_pads(a) or a.padding       # explicit: ((left, right), ...) per axis
        return ModuleSpec("Conv", (self.ndim, channels(node.inputs[0]), a.out, self.per_axis(a, "kernel"),
                                   self.per_axis(a, "stride"), padding, a.groups, a.bias), lowering="conv_torch")

    def examples(self):
        if self.ndim == 1:
            return (example("float[B, T, 8]", "conv1d(8, 3)"),
                    example("float[B, T, 8]", "conv1d(6, 4, stride=2, padding=causal, groups=2)"),
                    example("float[B, T, 8]", "relu -> conv1d(4, 1, bias=false)"),
                    example("float[B, T, 8]", "conv1d(6, 5, stride=2, padding=[3, 1])"))
        if self.ndim == 2:
            return (example("float[B, T, 6, 6, 4]", "conv2d(4, 3, stride=2)"),
                    example("float[B, T, 7, 5, 2]", "conv2d(3, [3, 2], padding=valid, bias=false)"),
                    example("float[B, T, 7, 5, 2]", "conv2d(3, [3, 2], stride=2, padding=[1, 0])"))
        return (example("float[B, T, 6, 6, 3]", "conv3d(4, [3, 3, 3], stride=[1, 2, 2])"),)
