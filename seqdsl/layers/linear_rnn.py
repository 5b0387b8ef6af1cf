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
