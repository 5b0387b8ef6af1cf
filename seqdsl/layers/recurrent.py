"""lstm / gru / rnn, exactly torch.nn.LSTM / GRU / RNN (batch_first)."""
from __future__ import annotations

from typing import Literal

import sympy

from .base import (example, Layer, LayerArgs, LayerError, ModuleSpec, PositiveInt, Probability, channels, require_float, require_rank, with_channels)
from .costs import LayerCost, ParallelRule

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


class RecurrentArgs(LayerArgs):
    hidden: PositiveInt
    layers: PositiveInt = 1
    bidirectional: bool = False
    dropout: Probability = 0.0


class RnnArgs(RecurrentArgs):
    nonlinearity: Literal["tanh", "relu"] = "tanh"


class Recurrent(Layer):
    takes_lengths = True       # bidirectional: packed, so the backward pass starts at each sequence's end
    shape_rule = "`[B, T, C] -> [B, T, hidden]` (`2 · hidden` if bidirectional)"
    causal_rule = "yes unless bidirectional=true"
    arg_docs = {"hidden": "hidden (and output) width per direction", "layers": "stacked layers (at most 64)",
                "bidirectional": "also run backwards in time and concatenate both directions",
                "dropout": "dropout probability between stacked layers",
                "nonlinearity": "the cell's activation"}
    notes = "Not allowed inside `segments` (segment memory is for attention layers)."

    def __init__(self, kind: str):
        self.kind = kind
        self.gates = GATES[kind]
        self.Args = RnnArgs if kind == "rnn" else RecurrentArgs
        self.summary = f"{'Elman RNN' if kind == 'rnn' else kind.upper()}, exactly torch.nn.{kind.upper()} (batch first)"
        self.params_rule = (f"dirs · Σ over layers ({self.gates} · hidden · (in + hidden) + 2 · {self.gates} · hidden); "
                            "in = C for the first layer, dirs · hidden after; dirs = 2 if bidirectional, else 1")

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

    @staticmethod
    def onednn_workspace(rows, h: int, i: int, e: int):
        """Bytes of the workspace oneDNN's LSTM saves per layer and direction,
        fitted on torch 2.13 (CPU): 4·(14h + 3in) a row at fp32 (within 3% once
        B·T·h >= 16k; page rounding dominates below), about 42h + 11in at
        bf16/fp16, whose gates stay partly fp32 (within 10%)."""
        return rows * (4 * (14 * h + 3 * i) if e == 4 else 42 * h + 11 * i)

    def cost(self, args, inputs, out, ctx):
        """Per layer and direction 2·B·T·G·h·(in + h), G = 4 (LSTM), 3 (GRU), 1 (RNN)
        (COST_MODEL.md). LSTM runs oneDNN (aten.mkldnn_rnn_layer): its backward
        computes every gradient, 2x the forward. GRU/RNN decompose into mm:
        weight gradients, hidden gradients for steps 1..T-1 (h0 needs none), and
        the input gradient of the first layer only when its input needs one.
        Saved per layer and direction: oneDNN keeps hx, cx, hy, cy, its output
        and a workspace (`onednn_workspace`); GRU keeps 7 B x h tensors a
        step, RNN one (plus h0). Time-major copies of the input (B > 1) and the
        dropout masks between layers are counted too."""
        x = inputs[0]
        b, t, c = x.dims[0], x.dims[1], channels(x)
        g, h, d, e = self.gates, args.hidden, self.directions(args), ctx.elem
        ins = self.layer_inputs(args, c)
        per = [2 * b * t * g * h * (i + h) for i in ins]           # one direction
        flops = d * sum(per)
        many = sympy.Piecewise((1, sympy.StrictGreaterThan(b, 1)), (0, True)) \
            if not isinstance(b, (int, sympy.Integer)) else int(b > 1)
        if self.kind == "lstm":
            # oneDNN's backward computes every gradient, the first input's too
            backward, first_input = 2 * flops, (0,)
            per_dir = [self.onednn_workspace(b * t, h, i, e) + 4 * b * h * e + t * b * h * e for i in ins]
        else:
            hidden_grad = 2 * b * (t - 1) * g * h * h
            backward = d * sum(2 * b * t * g * h * (i + h) for i in ins) + d * len(ins) * hidden_grad
            backward += d * sum(2 * b * t * g * h * i for i in ins[1:])
            first_input = (d * 2 * b * t * g * h * ins[0],)
            steps = 7 * t if self.kind == "gru" else t + 1
            per_dir = [steps * b * h * e for _ in ins]
        saved = d * sum(per_dir) + many * b * t * c * e
        if d == 2 and args.layers > 1:          # cat of both directions feeds the next layer
            saved += (args.layers - 1) * b * t * 2 * h * e
        elif self.kind != "lstm" and args.layers > 1:   # stacked outputs feed the next layer
            saved += (args.layers - 1) * b * t * h * e
        if args.dropout > 0 and args.layers > 1:  # mask and dropped copy between layers
            saved += (args.layers - 1) * 2 * b * t * d * h * e
        # inference, measured on torch 2.13's CPU kernels (tests/test_layer_harness.py,
        # tests/test_memory_shapes.py): oneDNN's LSTM holds the time-major copy of
        # its input, h0/c0 and every layer's final (h, c) throughout; at its last
        # layer also that layer's input (the previous layer's output) and, when
        # bidirectional, both directions' outputs beside their concatenation (the
        # output); its gates live in its own scratchpad. The decomposed GRU
        # holds the input projection and gate activations of a direction, 5h (9h
        # for both directions, the first direction's output kept), the RNN its
        # input projection and pre-activation, 2h a direction
        if self.kind == "lstm":
            workspace = many * b * t * c * e + 4 * args.layers * d * b * h * e
            if args.layers > 1:
                workspace += d * b * t * h * e
            if d == 2:
                workspace += d * b * t * h * e
        elif self.kind == "gru":
            workspace = b * t * e * h * (d * (g + 1) + 1)
        else:
            workspace = b * t * e * 2 * d * h
        return LayerCost(flops=flops, backward_flops=backward, input_grad_flops=first_input,
                         saved_bytes=saved, workspace_bytes=workspace,
                         state_bytes=(2 if self.kind == "lstm" else 1) * args.layers * d * h * b * e,
                         depth=args.layers * t, has_weights=True)

    def is_causal(self, args, inputs=None) -> bool:
        return not args.bidirectional

    def parallel(self, args, inputs, elem):
        """Replicated under tp (each step needs the whole hidden state); under
        context parallelism each rank hands its final state to the next."""
        return ParallelRule(cp="state")

    def module(self, node, memory):
        a = node.args
        return ModuleSpec("Recurrent", (self.kind, channels(node.inputs[0]), a.hidden, a.layers, a.bidirectional,
                                        a.dropout, getattr(a, "nonlinearity", "tanh")), lowering="recurrent_torch")

    def examples(self):
        extra = {"lstm": "lstm(64, layers=2, dropout=0.1)", "gru": "gru(48, bidirectional=true)",
                 "rnn": "rnn(64, nonlinearity=relu)"}[self.kind]
        return (example("float[B, T, 64]", f"{self.kind}(64)"), example("float[B, T, 64]", extra))
