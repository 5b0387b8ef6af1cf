"""ln_lstm: an LSTM layer whose gates and cell are layer-normed, as
torchaudio's _CustomLSTM with layer_norm=True computes it (the predictor of
torchaudio's Emformer RNN-T; Ba et al. 2016's layer-normalised LSTM).

Parameters: x2g C x 4h and p2g h x 4h without bias, the gate norm's 2 · 4h,
the cell norm's 2h.
"""
from __future__ import annotations

from .base import (example, Layer, LayerArgs, LayerError, ModuleSpec, PositiveFloat, PositiveInt, channels,
                   require_float, require_rank, with_channels)
from .costs import STAT_BYTES, LayerCost, ParallelRule, matmul, transient_peak


class LnLstmArgs(LayerArgs):
    hidden: PositiveInt
    eps: PositiveFloat = 1e-5


class LnLstm(Layer):
    kind = "ln_lstm"
    Args = LnLstmArgs
    summary = ("one LSTM layer with layer-normed gates and cell, stepped in Python as torchaudio's "
               "_CustomLSTM(layer_norm=True) (the Emformer RNN-T's predictor)")
    shape_rule = "`[B, T, C] -> [B, T, hidden]`"
    params_rule = "4 · hidden · C + 4 · hidden² + 10 · hidden"
    arg_docs = {"hidden": "hidden (and output) width", "eps": "the two layer norms' epsilon"}
    notes = ("gates = layernorm(W_x x_t + W_h h), no biases besides the norms'; c = layernorm(σ(f)·c + σ(i)·tanh(g)); "
             "h = σ(o)·tanh(c). One layer: stack them with repeat, a dropout between as torchaudio's predictor "
             "puts one after each. Causal: streams with step(). Not allowed inside `segments`.")

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, "ln_lstm")
        require_rank(x, 3, what=" [B, T, C]")
        channels(x)
        if ctx.in_segments:
            raise LayerError("ln_lstm cannot run inside segments",
                             help="segments carry memory for attention layers only; "
                                  "put the recurrent layer before or after the segments block")
        return with_channels(x, args.hidden)

    def count_params(self, args, inputs, out):
        c, h = channels(inputs[0]), args.hidden
        return 4 * h * c + 4 * h * h + 10 * h

    def cost(self, args, inputs, out, ctx):
        """x2g over all steps at once (2·B·T·C·4h), then p2g once a step
        (2·B·h·4h). Backward: the weight gradients, the hidden's gradient at
        steps 1..T-1 (h0 is a constant), the input's when it needs one. Saved a
        step: h and c before it, the gate norm's input and the four activations,
        the cell norm's input, tanh(c), both norms' statistics."""
        x = inputs[0]
        b, t, c = x.dims[0], x.dims[1], channels(x)
        h, e = args.hidden, ctx.elem
        into = matmul(b * t, c, 4 * h)
        step = matmul(b, h, 4 * h)
        bh = b * h
        saved = t * (12 * bh * e + 4 * b * STAT_BYTES)
        # inference: the input projection (B, T, 4h) and the steps' outputs, stacked at the
        # end; one step's moments: p2g's product and the sum, the normed gates, the
        # activations and products, the new cell (normed) and its tanh; at the stack, the
        # last step's normed gates (4h) and cell (h) are still held
        gx, outs = 4 * b * t * h * e, t * bh * e
        step_peak = 12 * bh * e + 2 * b * STAT_BYTES
        # written once a step (the roofline's bytes moved): p2g's product, the sum, the normed
        # gates, the four activations, three products and sums, the cell (normed), tanh, h
        live = transient_peak(b * t * h * e, before=[gx + outs + step_peak, gx + 2 * outs + 5 * bh * e])
        return LayerCost(flops=into + t * step, backward_flops=into + (2 * t - 1) * step, input_grad_flops=(into,),
                         saves_inputs=(True,), saved_bytes=saved, workspace_bytes=gx + outs + t * 21 * bh * e,
                         live_workspace_bytes=live, step_flops=matmul(b, c, 4 * h) + step,
                         state_bytes=2 * bh * e, depth=t, has_weights=True)

    def parallel(self, args, inputs, elem):
        """Replicated under tp (each step needs the whole hidden state); under
        context parallelism each rank hands its final state to the next."""
        return ParallelRule(cp="state")

    def module(self, node, memory):
        a = node.args
        return ModuleSpec("LnLstm", (channels(node.inputs[0]), a.hidden, a.eps), lowering="ln_lstm_torch")

    def examples(self):
        return (example("float[B, T, 24]", "ln_lstm(16)"), example("float[B, T, 8]", "ln_lstm(20, eps=1e-3)"))
