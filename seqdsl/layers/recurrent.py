"""lstm / gru / rnn, exactly torch.nn.LSTM / GRU / RNN (batch_first)."""
from __future__ import annotations

from typing import Literal

import sympy

from ..graph.symbolic import ceil_div
from .base import (example, Layer, LayerArgs, LayerError, ModuleSpec, PositiveInt, Probability, channels, require_float, require_rank, with_channels)
from .costs import LayerCost, ParallelRule, transient_peak

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
PAGE = 4096     # oneDNN starts each section of an RNN workspace on a page
# [B, h] temporaries a decomposed cell's step writes besides its hidden
# product [B, G·h] and its output (GRU: the candidate's pre-activation)
STEP_TEMPS = {"gru": 1, "rnn": 0}


def good_ld(width: int, size: int) -> int:
    """oneDNN's leading dimension for a row of `width` elements of `size`
    bytes: rounded up to 64 bytes, and 64 bytes more when a multiple of 256
    elements (rnn_utils get_good_ld: avoids 4K aliasing)."""
    per = 64 // size
    ld = -(-width // per) * per
    return ld + per if ld % 256 == 0 else ld


def time_major_copy(b, t):
    """1 when torch copies a [B, T, C] input into time-major order before the
    recurrence (its [T, B, C] transpose is not contiguous: B > 1 and T > 1),
    and the module copies the time-major output back into [B, T, C] order
    (recurrent_torch.py), else 0; a Piecewise when B or T is symbolic."""
    conds = [sympy.StrictGreaterThan(n, 1) for n in (b, t) if not isinstance(n, (int, sympy.Integer))]
    if any(isinstance(n, (int, sympy.Integer)) and n <= 1 for n in (b, t)):
        return 0
    if not conds:
        return 1
    return sympy.Piecewise((1, sympy.And(*conds)), (0, True))


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
    def onednn_workspace(b, t, h: int, i: int, e: int):
        """Bytes of the workspace oneDNN's LSTM (aten.mkldnn_rnn_layer, one
        layer and direction, input width i) keeps for backward: the uint8
        tensor autograd saves. oneDNN 3.x lays out seven sections of it
        (rnn_utils set_workspace_sizes / set_offsets), each starting on a 4096-byte
        page: the gates and h_t of every step, T·B rows of 4h and h; then the
        layer states, c states and the three gradient buffers (layer, iter,
        iter_c), 2·B·(T + 1) rows each (the layer is stacked on one input
        layer). A row of width w is padded to oneDNN's leading dimension
        (`good_ld`). Gates, h_t and states are at the model dtype (fp32 or
        bf16), the gradient buffers at fp32. Exact (to the byte) on torch
        2.13's CPU build over 744 shapes, B 1-7, T 1-64, in and h 1-256, fp32
        and bf16; tests/test_cost_recurrent.py keeps 72 of them."""
        rows, states = b * t, 2 * b * (t + 1)
        width = max(i, h)
        sections = (rows * good_ld(4 * h, e) * e,          # gates
                    rows * good_ld(h, e) * e,              # h_t
                    states * good_ld(width, e) * e,        # layer (= iter) states
                    states * h * e,                        # c states
                    states * good_ld(width, 4) * 4,        # d(layer states)
                    states * good_ld(width, 4) * 4,        # d(iter states)
                    states * h * 4)                        # d(c states)
        return sum(PAGE * ceil_div(n, PAGE) for n in sections)

    def cost(self, args, inputs, out, ctx):
        """Per layer and direction 2·B·T·G·h·(in + h), G = 4 (LSTM), 3 (GRU), 1 (RNN)
        (COST_MODEL.md). LSTM runs oneDNN (aten.mkldnn_rnn_layer): its backward
        computes every gradient, 2x the forward. GRU/RNN decompose into mm:
        weight gradients, hidden gradients for steps 1..T-1 (h0 needs none), and
        the input gradient of the first layer only when its input needs one.
        Saved, measured with saved-tensor hooks on torch 2.13 (CPU) and exact
        over B 1-3, T 1-33, layers 1-3, both directions, with and without
        dropout (tests/test_cost_recurrent.py keeps a grid of them):
        * LSTM, per layer and direction: hx, cx, hy, cy, its output and the
          workspace (`onednn_workspace`); once, the time-major copy of the
          input (`time_major_copy`).
        * GRU 7, RNN 1 B x h tensors a step per layer and direction, plus h0
          (one [layers·dirs, B, h] storage; GRU's first step saves one tensor
          fewer, the same bytes); each direction's input projection of the
          first layer copies the input time-major.
        * Between stacked layers the next layer's input [B, T, dirs·h]: the
          concatenation of both directions (a unidirectional LSTM's output is
          already counted; GRU/RNN stack their step outputs into a new
          tensor); with dropout the mask and the dropped copy instead."""
        x = inputs[0]
        b, t, c = x.dims[0], x.dims[1], channels(x)
        g, h, d, e = self.gates, args.hidden, self.directions(args), ctx.elem
        ins = self.layer_inputs(args, c)
        per = [2 * b * t * g * h * (i + h) for i in ins]           # one direction
        flops = d * sum(per)
        many = time_major_copy(b, t)
        copy = many * b * t * c * e                                # the input, time-major
        between = (args.layers - 1) * b * t * d * h * e            # each next layer's input
        if self.kind == "lstm":
            # oneDNN's backward computes every gradient, the first input's too
            backward, first_input = 2 * flops, (0,)
            saved = d * sum(self.onednn_workspace(b, t, h, i, e) + 4 * b * h * e + t * b * h * e for i in ins)
            saved += copy
            if args.dropout > 0 and args.layers > 1:
                saved += 2 * between                  # mask and dropped copy
            elif d == 2:
                saved += between                      # cat of both directions
        else:
            hidden_grad = 2 * b * (t - 1) * g * h * h
            backward = d * sum(2 * b * t * g * h * (i + h) for i in ins) + d * len(ins) * hidden_grad
            backward += d * sum(2 * b * t * g * h * i for i in ins[1:])
            first_input = (d * 2 * b * t * g * h * ins[0],)
            steps = 7 * t if self.kind == "gru" else t + 1
            saved = d * len(ins) * steps * b * h * e + d * copy
            saved += (2 if args.dropout > 0 else 1) * between
        # inference: the live set moment by moment (`lstm_live`, `decomposed_live`)
        if self.kind == "lstm":
            workspace, live = self.lstm_live(args, b, t, c, many, e)
        else:
            workspace, live = self.decomposed_live(args, b, t, c, many, e)
        return LayerCost(flops=flops, backward_flops=backward, input_grad_flops=first_input,
                         saved_bytes=saved, workspace_bytes=workspace, live_workspace_bytes=live,
                         state_bytes=(2 if self.kind == "lstm" else 1) * args.layers * d * h * b * e,
                         depth=args.layers * t, has_weights=True)

    def lstm_live(self, args, b, t, c: int, many, e):
        """(workspace_bytes, live_workspace_bytes) of the LSTM's inference
        forward, torch 2.13's CPU path (aten/src/ATen/native/mkldnn/RNN.cpp):
        h0 and c0 ([layers·dirs, B, h] each) and the time-major copy of the
        input (`copy`) live throughout; each layer and direction's
        mkldnn_rnn_layer writes its output [T, B, h] and final h and c, which
        are kept until h_n and c_n stack them at the end. A layer's outputs
        (and, bidirectional, their concatenation) live until the next layer
        has replaced them, so a layer l > 1 runs beside its input. The module
        then drops h_n and c_n and copies the time-major output into [B, T, C]
        order (when `many`, `time_major_copy`). oneDNN's gates are in its own
        scratchpad, which the measurement cannot see
        (docs/cost_model.md). Exact against the live-tensor tracker over B
        1-3, T 1-9, C 3-48, h 4-16, layers 1-3, both directions
        (tests/test_cost_recurrent.py)."""
        h, d, n = args.hidden, self.directions(args), args.layers
        u = b * t * h * e                      # one direction's [T, B, h]
        s = n * d * b * h * e                  # h0 (c0, the final h, c, h_n, c_n alike)
        copy = many * b * t * c * e
        out = d * u
        # beside the output at the end: h0, c0, the final h and c, h_n, c_n, the
        # copy and (bidirectional) the last layer's two direction outputs
        after = 6 * s + copy + (d - 1) * 2 * u
        # the last layer's largest moment beside its input: its new output
        # (unidirectional), or both directions' outputs and their concatenation
        # beside the previous layer's (bidirectional)
        before = [4 * s + copy + (2 * u if d == 1 else 6 * u)] if n > 1 else []
        # then the module's contiguous copy of the output beside the time-major
        # one (when that is not already [B, T, C]-contiguous: `many`), h_n and
        # c_n already dropped (recurrent_torch.py)
        live = transient_peak(out, before=before, after=[after, many * out])
        # each written once: the copy, h0/c0, final states and their stacks,
        # every layer and direction's output and (bidirectional) every
        # concatenation (the last one time-major, copied into the output)
        workspace = copy + 6 * s + d * n * u + (d - 1) * n * 2 * u - (1 - many) * out
        return workspace, live

    def decomposed_live(self, args, b, t, c: int, many, e):
        """(workspace_bytes, live_workspace_bytes) of the GRU's or RNN's
        inference forward, torch 2.13's CPU path (aten/src/ATen/native/RNN.cpp).
        h0, [layers·dirs, B, h], lives throughout. A direction first projects
        its whole input, P = [T, B, G·h] (G = 3 for GRU, 1 for RNN); the first
        layer's input is copied time-major when `many` (`time_major_copy`), the
        copy freed once the bias add has written a second P. Then it steps:
        each step writes a hidden product [B, G·h], `STEP_TEMPS` more [B, h]
        and its output [B, h], all T outputs kept; at the last step (T + G +
        STEP_TEMPS)·B·h sit beside P. Then it stacks the outputs ([T, B, h])
        while P is still held. A bidirectional layer keeps the forward
        direction's outputs and stack while the backward one runs, then
        concatenates both (2·[T, B, h]). A layer l > 1 holds its input (the
        previous layer's output) and the final h of the layers before it. At
        the end the final h of every layer and their stack (h_n) sit beside the
        output; the module then drops h_n and copies the time-major output
        into [B, T, C] order (when `many`). Exact against the live-tensor tracker over B 1-3, T 1-9, C
        3-48, h 4-16, layers 1-3, both directions (tests/test_cost_recurrent.py)."""
        h, d, n, g = args.hidden, self.directions(args), args.layers, self.gates
        u = b * t * h * e                      # one direction's [T, B, h]
        p = g * u                              # its projection
        h0 = n * d * b * h * e
        copy = many * b * t * c * e
        steps = (t + g + STEP_TEMPS[self.kind]) * b * h * e    # at the last step

        def moments(projections):
            """A layer's largest moments beside what it starts with."""
            if d == 1:
                return [*projections, p + steps, p + 2 * u]
            # the backward direction runs beside the forward one's outputs and stack
            return [2 * u + p + q for q in projections] + [2 * u + p + steps, p + 6 * u]

        before = [h0 + m for m in moments([copy + p, p + many * p])]
        if n > 1:     # the last layer: beside its input and the earlier layers' final h
            before += [h0 + (n - 1) * d * b * h * e + d * u + m for m in moments([p])]
        out = d * u
        # then the module's contiguous copy of the output beside the time-major
        # one (when that is not already [B, T, C]-contiguous: `many`), h_n
        # already dropped (recurrent_torch.py)
        live = transient_peak(out, before=before, after=[3 * h0, many * out])
        # each transient written once: the copies and bias-add copies, every
        # layer and direction's projection, step products and temporaries, step
        # outputs and stack, the concatenations (the last one time-major, copied
        # into the output), h0, the final h and h_n
        workspace = d * (copy + many * p) + d * n * (p + g * u + STEP_TEMPS[self.kind] * u + 2 * u)
        workspace += (d - 1) * n * 2 * u + 3 * h0 - (1 - many) * out
        return workspace, live

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
