"""Emformer (Shi et al. 2021, torchaudio.models.Emformer): streaming block
attention, segments with left context, a right-context lookahead and a
memory bank, as one layer kind for the whole stack (docs/language.md).

The memory bank of layer l + 1 is what layer l's attention wrote for the
segment summaries, and every layer attends over right-context rows the
layer before it computed: the layers of a stack share state that a
`[B, T, C] -> [B, T, C]` layer cannot carry, so the stack is one layer
(`layers=`). Costed as torchaudio's training-mode forward computes it: the
whole utterance at once, one dense (masked) score matrix per layer; its
streaming (step(), torchaudio's infer) per segment (emformer_stream_cost).

Parameters: per layer, query C·C + C, key/value C·2C + 2C, output C·C + C,
three layer norms 2C each, the feed-forward C·ffn + ffn + ffn·C + C.
"""
from __future__ import annotations

from typing import Literal

from ..graph.ir import TensorType
from ..graph.symbolic import as_int, ceil_div, smax, smin
from .base import (example, Layer, LayerArgs, LayerError, ModuleSpec, NonNegInt, PositiveInt, Probability,
                   channels, require_float, require_rank)
from .costs import STAT_BYTES, LayerCost, ParallelRule, matmul, transient_peak


class EmformerArgs(LayerArgs):
    heads: PositiveInt
    ffn: PositiveInt
    segment: PositiveInt
    layers: PositiveInt = 1
    left: NonNegInt = 0
    right: NonNegInt = 0
    memory: NonNegInt = 0
    act: Literal["relu", "gelu", "silu"] = "relu"
    tanh_on_mem: bool = False
    dropout: Probability = 0.0


def emformer_rows(t, args):
    """(utterance frames, segments, right-context rows, queries, keys) of one
    layer at input length t (symbolic or not): queries are the right-context
    blocks, the utterance and a summary per segment (memory > 0); keys the
    memory bank (a summary per segment but the last), the right-context blocks
    and the utterance."""
    tu = t - args.right
    n = ceil_div(tu, args.segment)
    rc = args.right * n
    mem = 1 if args.memory else 0
    return tu, n, rc, rc + tu + mem * n, mem * (n - 1) + rc + tu


def more_than_one(n):
    """1 when the positive integer n is more than 1, else 0 (Min(1, n - 1) when symbolic)."""
    return int(as_int(n) > 1) if as_int(n) is not None else smin(1, n - 1)


def emformer_stream_cost(b, n, c, args, e):
    """(FLOPs per input frame, state bytes) of streaming (docs/lowering.md,
    torchaudio's infer). At input length n, frame n completes the window of
    the segment after p = max(n - right - segment, 0) frames, whose run,
    spread over its `segment` frames, is the figure: per layer, queries Q =
    right + segment + [memory > 0] (the rows and the summary), keys and
    values projected for the m = min(memory, ceil(p / segment)) bank slots
    used and the rows, scores and probabilities @ v over those keys plus the
    l = min(left, p) cached left-context keys, the output projection over Q,
    the feed-forward over the rows. The state: per layer the memory bank
    (`memory` slots) and the left context's keys and values (`left` frames
    each), and the input buffer (segment + right - 1 frames), allocated at
    full size on the first step."""
    s, r, f = args.segment, args.right, args.ffn
    p = smax(n - r - s, 0)
    mem = 1 if args.memory else 0
    m = smin(args.memory, ceil_div(p, s)) if args.memory else 0
    lc = smin(args.left, p) if args.left else 0
    q, rows = r + s + mem, r + s
    keys = lc + m + rows
    per_layer = (2 * matmul(b * q, c, c) + matmul(b * (m + rows), c, 2 * c) + 2 * matmul(b * c, q, keys)
                 + matmul(b * rows, c, f) + matmul(b * rows, f, c))
    state = b * c * e * (args.layers * (args.memory + 2 * args.left) + s + r - 1)
    return args.layers * per_layer / s, state


class Emformer(Layer):
    kind = "emformer"
    Args = EmformerArgs
    causal_by_default = False
    summary = ("Emformer stack (torchaudio.models.Emformer): segment attention with left context, "
               "a right-context lookahead and a memory bank, each layer with a feed-forward and three layer norms")
    shape_rule = "`[B, T, C] -> [B, T - right, C]`: the input's last `right` frames are the lookahead"
    params_rule = "layers · (4 · C² + 2 · C · ffn + 11 · C + ffn)"
    causal_rule = ("streams with a lag: step() runs each segment once its `right` lookahead frames have "
                   "arrived (torchaudio's infer), so an output frame comes `right` frames and the rest of its "
                   "segment after its input frame; step(..., final=True) runs the last, shorter segment")
    arg_docs = {
        "heads": "attention heads; divides C",
        "ffn": "feed-forward hidden width",
        "segment": "frames per segment (torchaudio's segment_length)",
        "layers": "Emformer layers in the stack (torchaudio's num_layers)",
        "left": "frames before its segment each query also sees (left_context_length)",
        "right": "lookahead frames after each segment (right_context_length); the input carries "
                 "`right` frames past the utterance",
        "memory": "memory bank: each segment also sees the summaries of the `memory` segments before it "
                  "(max_memory_size); 0: no memory bank, no summaries",
        "act": "the feed-forward's activation",
        "tanh_on_mem": "squash the memory bank with tanh (else clamp to [-10, 10])",
        "dropout": "dropout on the attention probabilities, the attention output and in the feed-forward"}
    notes = ("Computed as torchaudio's training-mode forward: the utterance is cut into ceil((T - right) / segment) "
             "segments, each followed by its right-context block (the `right` frames after it), and every layer "
             "attends with one masked score matrix over all queries and keys, so its FLOPs grow with T². "
             "Streaming (step()) is torchaudio's infer(): one segment and its lookahead at a time, each layer "
             "keeping its memory bank and the keys and values of the last `left` frames; outputs equal forward's. "
             "Not allowed inside `segments`.")

    def is_causal(self, args, inputs=None) -> bool:
        """It streams (with a lag, segment by segment): no output needs more
        than its segment's `right` lookahead frames."""
        return True

    def check_lengths(self, args, inputs, out):
        """Refused: streaming is not causality (is_causal above)."""
        raise LayerError("has no rule for per-sequence lengths: a segment's frames see its later frames and "
                         "its lookahead, so the padding would change the valid outputs",
                         help="drop `lengths` from the input (the module then runs on the padded batch as it is)")

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, "emformer")
        require_rank(x, 3, what=" [B, T, C]")
        c = channels(x)
        if c % args.heads:
            divisors = [d for d in range(1, c + 1) if c % d == 0]
            near = sorted(divisors, key=lambda d: (abs(d - args.heads), d))[:3]
            raise LayerError(f"heads={args.heads} does not divide the {c} channels", arg="heads",
                             help="divisors of {} near {}: {}".format(c, args.heads, ", ".join(map(str, sorted(near)))))
        if ctx.in_segments:
            raise LayerError("emformer cannot run inside segments: it cuts the sequence into its own segments",
                             help="put it outside the segments block; emformer(segment=, left=, memory=) "
                                  "already bounds what each query sees")
        t = as_int(x.dims[1])
        if t is not None and t <= args.right:
            raise LayerError(f"the input has {t} frames, not more than right={args.right}: no utterance is left "
                             f"after the lookahead", arg="right", help=f"give it more than {args.right} frames")
        return TensorType(x.dtype, (x.dims[0], x.dims[1] - args.right, x.dims[2]))

    def count_params(self, args, inputs, out):
        c, f = channels(inputs[0]), args.ffn
        return args.layers * (4 * c * c + 2 * c * f + 11 * c + f)

    def cost(self, args, inputs, out, ctx):
        """Per layer (docs/lowering.md): q over the Q queries, k and v over the
        K keys (one C x 2C linear), the scores and probabilities @ v as dense
        Q x K products (4·B·C·Q·K), the output projection over Q, the
        feed-forward over the X = right-context + utterance rows. Backward 2x
        throughout (every product's operands need gradients)."""
        x = inputs[0]
        b, t, c = x.dims[0], x.dims[1], channels(x)
        f, h, e, layers = args.ffn, args.heads, ctx.elem, args.layers
        tu, n, rc, q, k = emformer_rows(t, args)
        rows = rc + tu
        attn = matmul(b * q, c, c) + matmul(b * k, c, 2 * c) + 2 * matmul(b * c, q, k) + matmul(b * q, c, c)
        ffn = matmul(b * rows, c, f) + matmul(b * rows, f, c)
        per_layer = attn + ffn
        sc = b * h * q * k                # one layer's scores (and probabilities)
        bq, bk, bx, bf, bn = b * q * c, b * k * c, b * rows * c, b * rows * f, b * n * c
        stats = 2 * b * rows * STAT_BYTES  # a layer norm's mean and rstd
        act = 1 if args.act == "relu" else 2   # relu keeps its output, gelu/silu their input and output
        # saved per layer: the norms' inputs and statistics (the attention norm's input and
        # output, the feed-forward norm's input and output, the output norm's input), the
        # copies the score and value products read (q, k^T, v), the probabilities, the
        # merged heads (the output projection's input), the activation's tensors
        layer = (5 * bx + 2 * bq + 2 * bk + sc + act * bf) * e + 3 * stats
        squash = 0
        if args.memory:
            # the query and key/value inputs are copies ([rows, summaries], [memory, rows]);
            # the memory squash keeps tanh's output or clamp's input (the output projection's),
            # but not in the last layer: nothing reads its memory, so what the squash saved
            # is freed before backward (1.09-1.14x measured with one layer)
            layer += (bq + bk) * e
            squash = (b * (n - 1) * c if args.tanh_on_mem else bq) * e
        if args.dropout > 0:
            # masks and dropped copies: the probabilities (2), the attention output and the
            # feed-forward output (masks), the hidden (mask and the dropped copy unless the
            # activation's output is already kept)
            layer += (2 * sc + 2 * bx + (3 - act) * bf) * e
        saved = layers * layer + (layers - 1) * squash + q * k    # the boolean mask, shared by every layer
        # inference (docs/lowering.md): the right-context rows gathered and the rows
        # [right context, utterance] built; per layer, beside its input rows, the mask and
        # the memory bank: the attention's moments, then the feed-forward's; at the end the
        # last rows beside the output (the utterance's rows copied)
        mem_bank = bn * e if args.memory else 0
        base = bx * e + q * k + mem_bank
        if args.memory:
            attn_in = [bx * e + stats, (2 * bx + bn + bq + bk) * e, (2 * bq + bk) * e, (bq + 3 * bk) * e]
        else:
            attn_in = [bx * e + stats, (bx + bq) * e, (bx + bq + 2 * bk) * e]
        # the score and value bmms read the scaled q, k^T and v in place when the batch and
        # heads axes merge (one head, or a batch of one; q also with one query row), else
        # copy them; the merged heads are a copy with several heads and query rows
        # (1.3x measured with one head, where the rule counted every copy)
        several_b, several_q = more_than_one(b), more_than_one(q)
        copy_q = several_b * several_q if h > 1 else 0
        copy_kv = several_b if h > 1 else 0
        merge = several_q if h > 1 else 0
        attn = [((2 + copy_q) * bq + (2 + copy_kv) * bk + sc) * e, (bq + 2 * bk + 2 * sc) * e,
                (bq + (2 + copy_kv) * bk + sc) * e, ((1 + merge) * bq + 2 * bk + sc) * e, 2 * bq * e]
        new_mem = b * (n - 1) * c * e if args.memory else 0
        # the feed-forward runs beside the attention's output (the layer's forward holds it:
        # 0.90-0.92x measured where the feed-forward is the busiest moment, C = 4): its
        # residual sum, the norm, fc1, the activation, fc2, the second sum, the output norm
        ffn = [p + bq * e for p in (bx * e, 2 * bx * e + stats, (2 * bx + bf) * e, (bx + 2 * bf) * e,
                                    (2 * bx + bf) * e, 3 * bx * e, 2 * bx * e + stats)]
        moments = ([(b * rc * c + bx) * e]
                   + [base + p for p in attn_in + attn] + [base + new_mem + p for p in ffn]
                   + [bx * e + b * tu * c * e])
        # every transient written once (the roofline's bytes moved): per layer the norms,
        # q, k/v, the scaled q and the products' copies, scores, probabilities, the merged
        # heads and projections, the feed-forward; before the layers the right-context
        # rows, the rows and the mask
        per_layer_work = (6 * bx + 6 * bq + 4 * bk + 2 * sc + 2 * bf) * e
        if args.memory:
            per_layer_work += (bq + bk + b * (2 * n - 1) * c) * e
        work = layers * per_layer_work + (b * rc * c + bx) * e + q * k + mem_bank
        live = transient_peak(b * tu * c * e, before=moments)
        step, state = emformer_stream_cost(b, t, c, args, e)
        return LayerCost(flops=layers * per_layer, backward_flops=2 * layers * per_layer, input_grad_flops=(0,),
                         saves_inputs=(False,), saves_inputs_if_grad=(bool(args.memory),), saved_bytes=saved, workspace_bytes=work,
                         live_workspace_bytes=live, step_flops=step, state_bytes=state, depth=layers, has_weights=True)

    def parallel(self, args, inputs, elem):
        """Replicated: the stack is one layer here (no tensor-parallel plan)."""
        return ParallelRule()

    def module(self, node, memory):
        a, c = node.args, channels(node.inputs[0])
        return ModuleSpec("Emformer", (c, a.heads, a.ffn, a.layers, a.segment, a.left, a.right, a.memory,
                                       a.act, a.tanh_on_mem, a.dropout), lowering="emformer_torch")

    def examples(self):
        x = "float[B, T, 16]"
        return (example(x, "emformer(2, 32, segment=4, left=6, right=2)"),
                example(x, "emformer(4, 24, segment=5, layers=2, left=3, right=1, memory=2, act=gelu)"),
                example(x, "emformer(2, 16, segment=8, memory=1, tanh_on_mem=true, act=silu)"),
                example(x, "emformer(2, 16, segment=3, layers=2, right=2, dropout=0.1)"))
