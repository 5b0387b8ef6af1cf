"""Layers that only move axes: unsqueeze, flatten, spatial and time pooling."""
from __future__ import annotations

import math

import sympy

from ..ir import TensorType
from ..symbolic import as_int
from .base import Layer, LayerError, require_float, require_rank


class Unsqueeze(Layer):
    """[B, T, F] -> [B, T, F, 1]: a channel axis for 2-D convolution."""

    kind = "unsqueeze"

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_rank(x, at_least=2)
        return TensorType(x.dtype, x.dims + (sympy.Integer(1),))


class Flatten(Layer):
    """[B, T, .., C] -> [B, T, prod(..) * C]."""

    kind = "flatten"

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_rank(x, at_least=3)
        merged = x.dims[2:]
        if all(as_int(d) is not None for d in merged):
            size = sympy.Integer(math.prod(as_int(d) for d in merged))
        else:
            size = sympy.Mul(*merged)
        return TensorType(x.dtype, x.dims[:2] + (size,))


class SpatialPool(Layer):
    """[B, T, .., C] -> [B, T, C], mean or max over the axes between T and C."""

    def __init__(self, reduce: str):
        self.reduce = reduce
        self.kind = f"spatial_{reduce}"

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, self.kind)
        require_rank(x, at_least=4, what=" ([B, T, .., C] with axes to pool)")
        return TensorType("float", (x.dims[0], x.dims[1], x.dims[-1]))


class TimePool(Layer):
    """[B, T, C] -> [B, C]: mean over time, or the last step."""

    causal_by_default = False

    def __init__(self, reduce: str):
        self.reduce = reduce
        self.kind = f"time_{reduce}"

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, self.kind)
        require_rank(x, 3, what=" [B, T, C]")
        if ctx.in_segments:
            raise LayerError(f"{self.kind} cannot run inside segments: it needs the whole sequence")
        return TensorType("float", (x.dims[0], x.dims[2]))
