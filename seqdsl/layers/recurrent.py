"""lstm / gru / rnn, exactly torch.nn.LSTM / GRU / RNN (batch_first)."""
from __future__ import annotations

from typing import Literal

from .base import (Layer, LayerArgs, LayerError, PositiveInt, Probability, channels,
                   require_float, require_rank, with_channels)

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


class RecurrentArgs(LayerArgs):
    hidden: PositiveInt
    layers: PositiveInt = 1
    bidirectional: bool = False
    dropout: Probability = 0.0


class RnnArgs(RecurrentArgs):
    nonlinearity: Literal["tanh", "relu"] = "tanh"


class Recurrent(Layer):
    def __init__(self, kind: str):
        self.kind = kind
        self.gates = GATES[kind]
        self.Args = RnnArgs if kind == "rnn" else RecurrentArgs

    def directions(self, args) -> int:
        return 2 if args.bidirectional else 1

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, self.kind)
        require_rank(x, 3, what=" [B, T, C]")
        channels(x)
        if args.layers > 64:
            raise LayerError(f"{self.kind} with {args.layers} layers is past the limit of 64", arg="layers")
        if ctx.in_segments:
            raise LayerError(f"{self.kind} cannot run inside segments",
                             help="segments carry memory for attention layers only; "
                                  "put the recurrent layer before or after the segments block")
        return with_channels(x, args.hidden * self.directions(args))

    def layer_inputs(self, args, c: int) -> list[int]:
        """Input width of each stacked layer."""
        return [c] + [args.hidden * self.directions(args)] * (args.layers - 1)

    def count_params(self, args, inputs, out):
        g, h = self.gates, args.hidden
        per_direction = sum(g * h * (i + h) + 2 * g * h for i in self.layer_inputs(args, channels(inputs[0])))
        return per_direction * self.directions(args)

    def is_causal(self, args, inputs=None) -> bool:
        return not args.bidirectional
