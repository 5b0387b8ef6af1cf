"""Layers that only move axes: unsqueeze, flatten, permute, spatial and time pooling."""
from __future__ import annotations

import math

import sympy

from ..graph.ir import TensorType
from ..limits import MAX_DIM
from ..graph.symbolic import as_int
from .base import example, Layer, LayerArgs, LayerError, ModuleSpec, NonNegInt, require_float, require_rank
from .costs import LayerCost


class Unsqueeze(Layer):
    """[B, T, F] -> [B, T, F, 1]: a channel axis for 2-D convolution."""

    kind = "unsqueeze"
    summary = "adds a channel axis of size 1 (a spectrogram [B, T, F] before conv2d)"
    shape_rule = "`[B, T, .., F] -> [B, T, .., F, 1]` (rank 2 or more; dtype kept)"
    params_rule = "0"

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_rank(x, at_least=2)
        return TensorType(x.dtype, x.dims + (sympy.Integer(1),))

    def cost(self, args, inputs, out, ctx):
        """x.unsqueeze(-1): a view."""
        return LayerCost(output_is_view=True, depth=0)

    def module(self, node, memory):
        return ModuleSpec("Unsqueeze", lowering="shape_ops_torch")

    def examples(self):
        return (example("float[B, T, 8]", "unsqueeze"),)


class Flatten(Layer):
    """[B, T, .., C] -> [B, T, prod(..) * C]."""

    kind = "flatten"
    summary = "merges every axis after T into the channel axis"
    shape_rule = "`[B, T, .., C] -> [B, T, prod(..) · C]` (rank 3 or more)"
    params_rule = "0"

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_rank(x, at_least=3)
        merged = x.dims[2:]
        if all(as_int(d) is not None for d in merged):
            size = sympy.Integer(math.prod(as_int(d) for d in merged))
            if size > MAX_DIM:
                raise LayerError(f"flatten of {x} gives {size} channels, past the limit of {MAX_DIM}")
        else:
            size = sympy.Mul(*merged)
        return TensorType(x.dtype, x.dims[:2] + (size,))

    def cost(self, args, inputs, out, ctx):
        """x.flatten(2): a view. Every layer writes a dense output (a conv's
        channels-last result is made contiguous where it is written), so
        merging the trailing axes copies nothing."""
        return LayerCost(output_is_view=True, depth=0)

    def module(self, node, memory):
        return ModuleSpec("Flatten", lowering="shape_ops_torch")

    def examples(self):
        return (example("float[B, T, 4, 3]", "flatten"),)


class PermuteArgs(LayerArgs):
    order: list[NonNegInt]


class Permute(Layer):
    """Reorders the axes after T: channels-first video [B, T, 3, H, W] ->
    channels-last [B, T, H, W, 3] is `permute([0, 1, 3, 4, 2])`."""

    kind = "permute"
    Args = PermuteArgs
    summary = ("reorders the axes after T (a channels-first input [B, T, 3, H, W] to the channels-last "
               "[B, T, H, W, 3] that conv and pool layers read)")
    shape_rule = "`[B, T, d2, .., dn] -> [B, T, d[order[2]], .., d[order[n]]]` (rank 3 or more)"
    params_rule = "0"
    arg_docs = {"order": "the input axis each output axis takes, as torch's `permute`: a permutation of "
                         "0..rank-1 that keeps 0 (B) and 1 (T) first"}
    notes = ("Costs a copy: the output is a new contiguous tensor (no FLOPs; nothing saved for backward). "
             "Position-wise over T, so it streams.")

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_rank(x, at_least=3, what=" ([B, T, .., C])")
        order = list(args.order)
        if sorted(order) != list(range(x.rank)):
            raise LayerError(f"order={order} is not a permutation of the {x.rank} axes of {x}", arg="order",
                             help=f"list each axis 0..{x.rank - 1} once, e.g. {self._channels_last(x.rank)} "
                                  f"moves axis 2 last")
        if order[:2] != [0, 1]:
            raise LayerError(f"order={order} moves the batch or time axis; they stay first", arg="order",
                             help=f"start the order with 0, 1, e.g. {self._channels_last(x.rank)}")
        if order == list(range(x.rank)):
            raise LayerError(f"order={order} leaves every axis in place", arg="order",
                             help="leave the stage out")
        return TensorType(x.dtype, tuple(x.dims[i] for i in order))

    @staticmethod
    def _channels_last(rank: int) -> list[int]:
        return [0, 1] + list(range(3, rank)) + [2]

    def cost(self, args, inputs, out, ctx):
        """x.permute(order) then a contiguous copy: a new tensor, no FLOPs,
        nothing saved (the backward permutes the gradient back)."""
        return LayerCost(depth=0)

    def module(self, node, memory):
        return ModuleSpec("Permute", (tuple(node.args.order),), lowering="shape_ops_torch")

    def examples(self):
        return (example("float[B, T, 3, 4, 5]", "permute([0, 1, 3, 4, 2])"),
                example("float[B, T, 3, 6]", "permute([0, 1, 3, 2]) -> conv1d(4, 3)"))


class SpatialPool(Layer):
    """[B, T, .., C] -> [B, T, C], mean or max over the axes between T and C."""

    shape_rule = "`[B, T, .., C] -> [B, T, C]` (rank 4 or more)"
    params_rule = "0"

    def __init__(self, reduce: str):
        self.reduce = reduce
        self.kind = f"spatial_{reduce}"
        self.summary = f"{'mean' if reduce == 'mean' else 'maximum'} over the axes between T and C (per frame)"

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, self.kind)
        require_rank(x, at_least=4, what=" ([B, T, .., C] with axes to pool)")
        return TensorType("float", (x.dims[0], x.dims[1], x.dims[-1]))

    def cost(self, args, inputs, out, ctx):
        """mean saves nothing; amax saves its input and output (to route the gradient)."""
        if self.reduce == "max":
            return LayerCost(saves_inputs=(True,), saves_output=True)
        return LayerCost()

    def module(self, node, memory):
        return ModuleSpec("SpatialPool", (self.reduce,), lowering="shape_ops_torch")

    def examples(self):
        return (example("float[B, T, 4, 4, 3]", self.kind),)


class TimePool(Layer):
    """[B, T, C] -> [B, C]: mean over time, the last step, or the first."""

    causal_by_default = False
    takes_lengths = True       # the mean over each sequence's own steps, or its last one
    shape_rule = "`[B, T, C] -> [B, C]`"
    params_rule = "0"
    notes = "Needs the whole sequence: not allowed inside `segments`, and a model using it cannot stream."
    SUMMARIES = {"mean": "mean over the time axis", "last": "the last time step",
                 "first": "the first time step (BERT's pooler reads token 0)"}

    def __init__(self, reduce: str):
        self.reduce = reduce
        self.kind = f"time_{reduce}"
        self.summary = self.SUMMARIES[reduce]
        if reduce == "first":   # reads one position, but its output has no time axis to stream
            self.causal_rule = "no: its output has no time axis"
            self.notes = "Not allowed inside `segments`, and a model using it cannot stream."

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, self.kind)
        require_rank(x, 3, what=" [B, T, C]")
        if ctx.in_segments:
            raise LayerError(f"{self.kind} cannot run inside segments: it drops the time axis the segments cut; "
                             "use it after the segments stage")
        return TensorType("float", (x.dims[0], x.dims[2]))

    def cost(self, args, inputs, out, ctx):
        """x.mean(1) saves nothing; x[:, -1].clone() (x[:, 0].clone()) is a new
        [B, C] tensor that saves nothing either (a view would keep x's whole
        storage alive for an elementwise consumer, while a linear saves a copy
        of it)."""
        if self.reduce in ("last", "first"):
            return LayerCost(depth=0)
        return LayerCost()

    def module(self, node, memory):
        return ModuleSpec("TimePool", (self.reduce,), lowering="shape_ops_torch")

    def examples(self):
        return (example("float[B, T, 8]", self.kind),)
