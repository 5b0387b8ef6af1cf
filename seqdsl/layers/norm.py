"""Normalisations over the channel axis."""
from __future__ import annotations

from .base import Layer, LayerArgs, PositiveFloat, channels, require_float


class NormArgs(LayerArgs):
    eps: PositiveFloat = 1e-5


class Norm(Layer):
    """layernorm (weight + bias), rmsnorm (weight), batchnorm (weight + bias;
    running statistics are buffers). Shape unchanged."""

    Args = NormArgs

    def __init__(self, kind: str, params_per_channel: int):
        self.kind = kind
        self.params_per_channel = params_per_channel

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, self.kind)
        channels(x)
        return x

    def count_params(self, args, inputs, out):
        return self.params_per_channel * channels(inputs[0])
