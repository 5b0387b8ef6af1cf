"""Combining bound values: `mul` and `concat` take a second value, `split`
cuts the channels into parts (docs/language.md, "Combining values").

`add(b)` is not a layer kind: it is the graph's own `add` node, the one a
residual makes (seqdsl/check/models.py builds it, seqdsl/cost/model.py costs
it). All of these are position-wise: they stream when their inputs do, the
second value arriving chunk by chunk with the first (`aligned_context`).

Shape rule, for every value a stage combines: the same dtype (float) and the
same shape, dims compared symbolically; no broadcasting. `concat` may differ
in the channel (last) dim only.
"""
from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from .base import (Layer, LayerArgs, LayerError, ModuleSpec, NonNegInt, PositiveInt, ValueRef, channels,
                   require_float, with_channels)
from .costs import ZERO, LayerCost
from ..graph.ir import TensorType
from ..graph.symbolic import dims_equal
from ..limits import MAX_LIST


def same_shape(x: TensorType, other: TensorType, what: str, channels_too: bool = True) -> None:
    """`other` has x's shape (all dims, or all but the channels), else a
    LayerError naming both shapes."""
    require_float(x, what)
    dims = x.dims if channels_too else x.dims[:-1]
    odims = other.dims if channels_too else other.dims[:-1]
    if other.dtype != "float" or other.rank != x.rank or not all(dims_equal(a, b) for a, b in zip(dims, odims)):
        rule = "the same shape" if channels_too else "the same shape but for the channels"
        raise LayerError(f"{what} needs {rule}: the input is {x}, the other value is {other}", arg="other",
                         help="no broadcasting: bring both to one shape first (e.g. a linear to the "
                              "same channels, or one value per time step)")


def not_in_segments(ctx, kind: str) -> None:
    """Inside segments(...) the other value must be one bound in the same
    segments body (segment by segment, as the input is); one from outside
    is whole."""
    if ctx.in_segments and not getattr(ctx, "context_in_segments", False):
        raise LayerError(f"{kind} cannot combine values inside segments(...): the body runs segment by "
                         "segment, the other value is whole",
                         help="combine the values before or after the segments stage, or bind the other "
                              "value inside the segments body")


class OtherArgs(LayerArgs):
    other: ValueRef


class Mul(Layer):
    kind = "mul"
    Args = OtherArgs
    summary = "element-wise product of the input and another bound value (a gate: `y = x -> mul(g)`)"
    shape_rule = "`[..]` with other `[..]` (the same shape, float) -> `[..]`"
    params_rule = "0"
    arg_docs = {"other": "a value bound earlier in the model or the body (or passed to a block), of the input's shape"}
    notes = "No broadcasting. Position-wise: streams when both values do."
    aligned_context = True

    def context_args(self):
        return ("other",)

    def infer_shape(self, args, inputs, ctx):
        x, other = inputs
        same_shape(x, other, "mul")
        not_in_segments(ctx, "mul")
        return x

    def cost(self, args, inputs, out, ctx):
        """No FLOPs (element-wise, COST_MODEL.md); autograd keeps each factor
        while the other needs a gradient (it is the other's gradient over the
        incoming one)."""
        return LayerCost(saves_inputs=(True, True), saves_for_other=True, step_flops=ZERO)

    def module(self, node, memory):
        return ModuleSpec("Mul", lowering="combine_torch")

    def examples(self):
        return (two_values("float[B, T, 8]", "mul(g)"),
                gated("float[B, T, 8]", "g = x -> linear(8) -> silu", "mul(g)"),
                two_values("float[B, T, 4, 6]", "mul(g)"))


class Concat(Layer):
    kind = "concat"
    Args = OtherArgs
    summary = "the input and another bound value side by side along the channels (`y = a -> concat(b)`)"
    shape_rule = "`[.., C]` with other `[.., Co]` (equal but for the channels, float) -> `[.., C + Co]`"
    params_rule = "0"
    arg_docs = {"other": "a value bound earlier in the model or the body (or passed to a block), of the input's shape "
                         "but for the channels"}
    notes = "Its output is a new tensor (a copy of both). Position-wise: streams when both values do."
    aligned_context = True

    def context_args(self):
        return ("other",)

    def infer_shape(self, args, inputs, ctx):
        x, other = inputs
        same_shape(x, other, "concat", channels_too=False)
        not_in_segments(ctx, "concat")
        return with_channels(x, channels(x) + channels(other))

    def cost(self, args, inputs, out, ctx):
        """No FLOPs; torch.cat saves nothing (its backward slices the gradient)."""
        return LayerCost(step_flops=ZERO)

    def module(self, node, memory):
        return ModuleSpec("Concat", lowering="combine_torch")

    def examples(self):
        return (two_values("float[B, T, 8]", "concat(g)", "float[B, T, 4]"),
                gated("float[B, T, 8]", "g = x -> linear(4) -> tanh", "concat(g) -> linear(8)"),
                two_values("float[B, T, 3, 4]", "concat(g)", "float[B, T, 3, 2]"))


class SplitArgs(LayerArgs):
    parts: Union[Annotated[int, Field(ge=2, le=MAX_LIST)],
                 Annotated[list[PositiveInt], Field(min_length=2, max_length=MAX_LIST)]]
    part: NonNegInt | None = None


class Split(Layer):
    kind = "split"
    Args = SplitArgs
    summary = ("one part of the channels cut into `parts` equal parts, or parts of the listed sizes; "
               "`a, b = x -> split(2)` binds every part")
    shape_rule = "`[.., C] -> [.., C / parts]` (or `[.., parts[part]]`)"
    params_rule = "0"
    arg_docs = {"parts": "how many equal parts (divides C), or a list of the parts' sizes (sums to C)",
                "part": "which part (from 0); set by a binding of several names, `a, b = x -> split(2)`"}
    notes = ("Each part is a contiguous copy (a matmul would copy a strided view anyway), so the estimate "
             "holds whatever follows. Position-wise: streams.")

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, "split")
        sizes = split_sizes(args, channels(x))
        if args.part is None:
            n = len(sizes)
            raise LayerError(f"split makes {n} values: bind them all with `"
                             + ", ".join("abcdefgh"[i] if i < 8 else f"v{i}" for i in range(n))
                             + " = ... -> split(...)`", arg="parts",
                             help="or take one part: split(..., part=0)")
        if args.part >= len(sizes):
            raise LayerError(f"split has {len(sizes)} parts (0 to {len(sizes) - 1}), not a part {args.part}",
                             arg="part")
        return with_channels(x, sizes[args.part])

    def cost(self, args, inputs, out, ctx):
        """A contiguous copy of one part (narrow, then contiguous): no FLOPs,
        a new tensor of the output's size, nothing saved (the copy's backward
        pads the gradient)."""
        return LayerCost(depth=0, step_flops=ZERO)

    def module(self, node, memory):
        sizes = split_sizes(node.args, channels(node.inputs[0]))
        return ModuleSpec("Split", (sum(sizes[:node.args.part]), sizes[node.args.part]), lowering="combine_torch")

    def examples(self):
        return ("input x: float[B, T, 8]\na, b = x -> linear(16) -> split(2)\ny = a -> mul(b)\noutput y",
                "input x: float[B, T, 8]\nh, g, o = x -> split([2, 4, 2])\ny = g -> concat(h) -> concat(o)\noutput y",
                "input x: float[B, T, 3, 6]\ny = x -> split(3, part=1)\noutput y")


def split_sizes(args, c: int) -> list[int]:
    """The parts' channel counts, checked against the input's C."""
    if isinstance(args.parts, int):
        if c % args.parts:
            raise LayerError(f"split({args.parts}) does not divide the {c} channels into equal parts",
                             arg="parts", help=f"give parts that divide {c}, or list the sizes: "
                                               f"split([{c // args.parts}, ...])")
        return [c // args.parts] * args.parts
    if sum(args.parts) != c:
        raise LayerError(f"split's sizes {args.parts} add up to {sum(args.parts)}, not the {c} channels",
                         arg="parts")
    return list(args.parts)


def two_values(x_type: str, stages: str, g_type: str | None = None) -> str:
    """An example over two inputs of the model, both streamed."""
    return f"input g: {g_type or x_type}\ninput x: {x_type}\ny = x -> {stages}\noutput y"


def gated(x_type: str, bind: str, stages: str) -> str:
    """An example where the second value is computed from the first."""
    return f"input x: {x_type}\n{bind}\ny = x -> {stages}\noutput y"
