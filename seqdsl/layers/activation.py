"""Element-wise layers: activations and dropout. Shape unchanged, no weights."""
from __future__ import annotations

from .base import Layer, LayerArgs, Probability, require_float


class Activation(Layer):
    def __init__(self, kind: str):
        self.kind = kind

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, self.kind)
        return x


class DropoutArgs(LayerArgs):
    p: Probability


class Dropout(Layer):
    kind = "dropout"
    Args = DropoutArgs

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, "dropout")
        return x
