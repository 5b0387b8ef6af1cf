"""Rules shared by the linear-attention recurrences (gla, gated_deltanet,
retention, mlstm): the [B, T, C] -> [B, T, C] shape rule, width checks, the
short-convolution parameters, the chunked form's closed-form counts and
the tensor/context-parallel rule (HeadsLayer).
Lowering: linear_rnn_torch.py; derivations: docs/linear_attention_layers.md."""
from __future__ import annotations

import sympy

import math

from .base import Layer, LayerError, channels, require_float, require_rank
from ..graph.symbolic import as_int, ceil_div
from .costs import ParallelRule, transient_peak


class HeadsLayer(Layer):
    """A linear-attention recurrence's parallel rule: heads over tp
    (projections column-, output row-parallel: one all-reduce); under context
    parallelism each rank hands its final state on."""

    def parallel(self, args, inputs, elem):
        return ParallelRule(tp="split", all_reduces=1, cp="state", divides=(("heads", args.heads),))


def check_sequence(x, kind: str, ctx) -> int:
    """A float [B, T, C] input outside segments; returns C."""
    require_float(x, kind)
    require_rank(x, 3, what=" [B, T, C]")
    c = channels(x)
    if ctx is not None and getattr(ctx, "in_segments", False):
        raise LayerError(f"{kind} cannot run inside segments",
                         help="segments carry memory for attention layers only; "
                              "put the recurrent layer before or after the segments block")
    return c


def scaled_width(c: int, factor: float, arg: str) -> int:
    """round(c·factor), refused unless the product is a whole number (the
    references assert `hidden_size * expand` is an integer)."""
    w = round(c * factor)
    if w <= 0 or not math.isclose(c * factor, w):
        raise LayerError(f"{arg}={factor} times the {c} channels is {c * factor:g}, "
                         "not a whole positive width", arg=arg)
    return w


def split_heads_of(width: int, heads: int, what: str, arg: str = "heads") -> int:
    if width % heads:
        divisors = [d for d in range(1, width + 1) if width % d == 0]
        near = sorted(divisors, key=lambda d: (abs(d - heads), d))[:3]
        raise LayerError(f"heads={heads} does not divide the {what} width {width}", arg=arg,
                         help="divisors near {}: {}".format(heads, ", ".join(map(str, sorted(near)))))
    return width // heads


def key_value_dims(c: int, args) -> tuple[int, int, int, int]:
    """(dk, dv, dk per head, dv per head) from expand_k, expand_v and heads,
    each checked (gla, retention)."""
    dk = scaled_width(c, args.expand_k, "expand_k")
    dv = scaled_width(c, args.expand_v, "expand_v")
    return dk, dv, split_heads_of(dk, args.heads, "key"), split_heads_of(dv, args.heads, "value")


def conv_params(width: int, k: int, bias: bool) -> int:
    """A depthwise short convolution over `width` channels (fla ShortConvolution)."""
    return width * (k + int(bias)) if k > 0 else 0


def chunks(t, q: int):
    """(number of chunks, padded length) of the chunked form: ceil(T/Q), ceil(T/Q)·Q."""
    n = ceil_div(t, q)
    return n, n * q


def gla_core_flops(bh, t, q: int, dk: int, dv: int):
    """FLOPs of linear_rnn_torch.chunk_gla over bh = B·H heads: per chunk
    q~k~^T (Q·Q·dk), A·v (Q·Q·dv), the chunk's state k^T v (dk·Q·dv) and
    q·S (Q·dk·dv), 2 FLOPs per MAC, over the padded length ceil(T/Q)·Q."""
    _, tp = chunks(t, q)
    return 2 * bh * tp * (q * (dk + dv) + 2 * dk * dv)


class Products:
    """FLOPs of a layer's matmuls, forward and backward (COST_MODEL.md): a
    product's backward costs its forward once per operand that needs a
    gradient; a product of the layer's input x needs x's gradient only when x
    does (kept apart, as LayerCost.input_grad_flops)."""

    def __init__(self):
        self.forward = self.backward = self.input_grad = 0

    def linear(self, rows, k: int, n: int, from_input: bool = False):
        """x W^T of rows x k by k x n: the weight gradient always, the input's
        only if the input needs one."""
        f = 2 * rows * k * n
        self.forward += f
        self.backward += f
        if from_input:
            self.input_grad += f
        else:
            self.backward += f
        return self

    def product(self, flops, grads: int = 2):
        """A product of two activations (both need gradients: backward 2x)."""
        self.forward += flops
        self.backward += grads * flops
        return self


def short_conv(p: Products, rows, width: int, k: int):
    """The depthwise short convolution of `width` channels: 2·k FLOPs per
    output, exactly T outputs (padded on the left only); its input is a
    projection (weight and input gradients both)."""
    if k:
        p.product(2 * rows * width * k)


def one_chunk(t, q: int, value):
    """value when T fits in one chunk (T <= Q), else 0; a Piecewise when T is symbolic."""
    if as_int(t) is not None:
        return value if as_int(t) <= q else 0
    return sympy.Piecewise((value, sympy.LessThan(t, q)), (0, True))


def gla_core_backward(bh, t, q: int, dk: int, dv: int):
    """Backward of chunk_gla's products: 2x each, except with one chunk, where
    the carried state is the zero start (no gradient: q·S computes only q's)
    and the chunk's own state k^T v feeds nothing but the final state."""
    return 2 * gla_core_flops(bh, t, q, dk, dv) - one_chunk(t, q, 3 * 2 * bh * q * dk * dv)


def chunked_depth(t, q: int):
    """COST_MODEL.md: a chunked linear recurrence passes its state chunk to
    chunk: ceil(T/Q) steps, plus 1."""
    return ceil_div(t, q) + 1


# ------------------------------------------------------------------ memory
# What autograd saves and what inference holds at once, tensor by tensor as the
# lowering makes them (docs/linear_attention_layers.md lists them). The
# recurrences run in fp32 (F32) whatever the model dtype (fla does the same);
# mlstm runs at the model dtype (as xlstm). Bool masks are 1 byte, indices 8.
F32 = 4


def _norm_saved(b, t, h, dv, e, gated: bool):
    """The gated RMSNorm (fp32 inside) and the output projection's input:
    rsqrt per head, the normalised rows, and with the gate g, silu(g) and the
    normalised·weight product; o_proj keeps its input."""
    return b * t * h * F32 + (4 if gated else 1) * b * t * dv * F32 + b * t * dv * e


def _conv_saved(b, t, width: int, k: int, e):
    """Each short conv keeps its left-padded input and silu its input."""
    return b * width * (2 * t + k - 1) * e if k else 0


def gla_memory(b, t, c, h, dk, dv, dkh, dvh, r, k, q, e, gated_keys):
    """(saved, workspace, live workspace) bytes of gla (gated_keys: per-key
    decays that need a gradient) or retention (one fixed decay per head)."""
    n, tp = chunks(t, q)
    bh = b * h
    # The carry's last step only makes the final state, which no output reads
    # without streaming: what that step alone saved is freed before backward
    # (1.07-1.49x measured where it was counted: random seed 1431), and with
    # one chunk also the chunk's own state k^T v, which feeds only that step.
    if gated_keys:
        # q, k, e^b, e^-b, their products q~, k~, e^(b_Q - b), k decayed; decays
        # per chunk (kept by exp); each carried state but the last (kept by the
        # decay product) and their stack; one chunk: k decayed is k^T v's only
        core = 8 * tp * dkh + n * dkh + (2 * n - 1) * dkh * dvh - one_chunk(t, q, tp * dkh)
        model = _conv_saved(b, t, 2 * dk + dv, k, e) + b * t * (r + 2 * dk) * e   # gk: rank input, logsigmoid in/buffer
    else:
        # the decays need no gradient: q~, k~, k decayed, three decay vectors,
        # the stacked states; the per-chunk decays are kept by the products of
        # the steps after the first and before the last (none with two chunks
        # or fewer); one chunk: k decayed and its decay vector are k^T v's only.
        # RoPE keeps cos and sin for q and k
        core = (3 * tp * dkh + 3 * tp + n - one_chunk(t, 2 * q, n) + n * dkh * dvh
                - one_chunk(t, q, tp * dkh + tp))
        model = 4 * t * dkh * e
    core += tp * q + 2 * tp * dvh                    # masked scores, v chunks, padded output
    saved = bh * core * F32 + q * q + model + _norm_saved(b, t, h, dv, e, True)
    # inference: everything chunk_gla holds at its last product, plus q, k, v (and gk)
    # (q, k, e^b, q~, k~, a transient decay; scores; v, output, inter-chunk
    # product; decays; chunk states, carried states, their stack, the last)
    held = 6 * tp * dkh + tp * q + 3 * tp * dvh + n * dkh + 3 * n * dkh * dvh + dkh * dvh
    if not gated_keys:      # the decays are (Q, 1) per chunk
        held += 3 * tp - 4 * tp * dkh + tp * dkh
    layer = b * t * (2 * dk + dv + (dk if gated_keys else 0)) * e       # q, k, v (and gk) at the model dtype
    work = bh * held * F32 + q * q + layer
    # The other moment: chunk_gla's intra-chunk scores and their masked copy
    # (Q x Q per chunk) beside the padded q, k, v, the decays and the decayed
    # q and k, before any output; the peak when Q is large beside the head
    # widths (a short T in one chunk of 64: the estimate was 0.84x without it).
    masked = (bh * (4 * tp * dkh + tp * dvh + tp * (dkh if gated_keys else 1) + 2 * tp * q) * F32
              + 2 * q * q + layer)
    # Then, held from the intra-chunk part to the end: q, k, the decays b, q~, k~
    # (the decays are (Q, 1) without gated keys), the masked scores, v, the intra
    # output, the chunks' own states U and the chunk decays; the carry's busiest
    # moments are its stack (the n + 1 carried states listed beside the n
    # stacked) and the inter-chunk sum (the stack and the last state beside the
    # product and both outputs). o_proj runs after all of it is freed: its
    # output is beside q, k, v (and gk), the gate (gla binds it) and the gated
    # norm's contiguous output (the sum of both moments with the output on top
    # was 1.17-1.31x measured: seed 926's gla(chunk=4), C = 256 with narrow heads)
    base = ((4 * tp * dkh + tp * (dkh if gated_keys else 1) + tp * q + 2 * tp * dvh + n * dkh * dvh
             + n * (dkh if gated_keys else 1)) * bh * F32 + q * q + layer)
    carry = [base + (2 * n + 1) * dkh * dvh * bh * F32, base + ((n + 1) * dkh * dvh + 2 * tp * dvh) * bh * F32]
    tail = layer + (2 if gated_keys else 1) * b * t * dv * e
    return saved, work, transient_peak(b * t * c * e, before=[masked, *carry], after=[tail])


def delta_memory(b, t, c, h, kd, vd, dk, dv, k, q, e, gate):
    """(saved, workspace) bytes of gated_deltanet."""
    n, tp = chunks(t, q)
    bh = b * h
    # per chunk: decays, (beta k) k^T, I + M, its inverse, q k^T and its masked
    # product (Q x Q); k, beta k twice, the w input, w, q, q e^b, k decayed
    # (dk); v, beta v, v_new, their stack, the padded output (dv); beta and
    # three decay vectors; per chunk step the decay and the carried state, and
    # their stack. With one chunk the zero start needs no gradient: w and q e^b
    # are not kept.
    # The carry's last step makes only the final state, which nothing reads
    # without streaming: its v_new (stacked, so a copy) and, with one chunk, k
    # decayed, which only that step reads, are freed before backward (1.02-1.07x
    # measured where they were counted: random seed 1431).
    core = (6 * tp * q + 8 * tp * dk + 5 * tp * dv + 4 * tp + n + 2 * n * dk * dv
            - one_chunk(t, q, 2 * q * dk) - q * dv - one_chunk(t, q, q * dk))
    model = (_conv_saved(b, t, 2 * kd + vd, k, e) if k else b * t * (2 * kd + vd) * e)   # conv, or silu inputs
    model += 2 * b * t * kd * F32 + 2 * b * t * h * F32                  # l2norm: rows and rsqrt, q and k
    model += 3 * b * t * h * F32 + 2 * h * F32                           # beta, the gate's softplus in/out, exp(A_log)
    saved = bh * core * F32 + 2 * q * q + q * q * F32 + model + _norm_saved(b, t, h, vd, e, gate)
    # what chunk_delta_rule holds at its last product: decays, M, T, the masked
    # q k^T (Q); q, k, w, k decayed (dk); v, u, the v_new list, its stack and
    # the two products (dv); beta, b; the carried states and the last; eye;
    # plus the layer's q, k, v, beta and gate
    held = 4 * tp * q + 4 * tp * dk + 6 * tp * dv + 2 * tp + (n + 1) * dk * dv
    work = (bh * held * F32 + q * q + q * q * F32 + b * t * (2 * kd + vd) * e
            + 2 * b * t * h * F32)
    return saved, work


def mlstm_memory(b, t, c, h, di, d, k, q, e):
    """(saved, workspace) bytes of mlstm (its cell at the model dtype)."""
    n, tp = chunks(t, q)
    bh = b * h
    # k, v, k weighted, q, q scaled, numerator, output (D); decay weights, q k^T,
    # their product (Q); eight row statistics; per chunk the chunk state k^T v,
    # its key sum, the chunk max, the carried C, n and three scalars, the
    # stacked C and n; argmax indices of the row and chunk maxima
    core = 7 * tp * d + 3 * tp * q + 8 * tp + 3 * n * d * d + 3 * n * d + 4 * n - one_chunk(t, q, q * d)
    model = b * di * (t + k - 1) * e + 13 * b * t * di * e            # see docs: conv, q/k copies, up, gates, ...
    model += 2 * b * h * t * e + 2 * b * t * h * F32 + di * e         # logsigmoid in/buffer, layer-norm stats, 1 + w
    # the last step of the carry only makes the final state, which no output reads when nothing
    # streams: what it saved (the last start's C and n; with one chunk also k^T v and its key
    # sum and bmm's copy of k weighted) is freed with it before backward (was counted: 1.39x
    # measured at one chunk)
    final = bh * (d * d + d) * e + one_chunk(t, q, bh * (d * d + d + q * d) * e)
    saved = bh * core * e + bh * (tp + n) * 8 + q * q + model - final
    # D x D states: the chunk states k^T v (n), the carried C of each chunk start (n, listed),
    # and at the last step old·C, new·kv and their sum; then the n starts stacked beside the list
    # (4n was one short in one chunk: 0.83x measured at C = 1600, seed 359)
    states = sympy.Max(2 * n + 3, 3 * n + 1)
    held = 6 * tp * d + 3 * tp * q + 6 * tp + states * d * d + 4 * n * d
    work = bh * held * e + bh * (tp + n) * 8 + q * q + b * t * (6 * di) * e
    return saved, work
