"""Rules shared by the linear-attention recurrences (gla, gated_deltanet,
retention, mlstm): the [B, T, C] -> [B, T, C] shape rule, width checks, the
short-convolution parameters and the chunked form's closed-form counts.
Lowering: linear_rnn_torch.py; derivations: docs/linear_attention_layers.md."""
from __future__ import annotations

import math

from .base import LayerError, channels, require_float, require_rank
from ..graph.symbolic import ceil_div


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
    import sympy
    from ..graph.symbolic import as_int
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


# ------------------------------------------------------------------ memory (fitted to the lowering; see the docs)
def gla_memory(b, t, c, h, dk, dv, dkh, dvh, r, k, q, e, gated_keys):
    return 0, 0


def delta_memory(b, t, c, h, kd, vd, dk, dv, k, q, e, gate):
    return 0, 0


def mlstm_memory(b, t, c, h, di, d, k, q, e):
    return 0, 0
