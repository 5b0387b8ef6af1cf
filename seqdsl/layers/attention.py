"""Self-attention and cross-attention.

Parameters (LANGUAGE.md): query and output projections C x C, key and value
projections C x (kv_heads * C / heads), each with a bias when bias=true.
pos=relative adds a C x C position projection without bias and the two
Transformer-XL bias vectors u, v of C. linformer adds two proj x max_len
projections. Performer's random features are a buffer.
"""
from __future__ import annotations

import math
from typing import Literal

from ..ir import Ref, TensorType
from .base import (Layer, LayerArgs, LayerError, PositiveInt, Probability, ValueRef, channels,
                   require_float, require_rank)


class AttentionArgs(LayerArgs):
    heads: PositiveInt
    kv_heads: PositiveInt | None = None
    causal: bool = False
    window: PositiveInt | None = None
    pos: Literal["rope", "alibi", "relative"] | None = None
    kind: Literal["softmax", "linear", "performer", "linformer"] = "softmax"
    features: PositiveInt | None = None
    proj: PositiveInt | None = None
    max_len: PositiveInt | None = None
    dropout: Probability = 0.0
    bias: bool = True


def performer_features(args, d_head: int) -> int:
    """FAVOR+ feature count: given, or the paper's default d·ln(d)."""
    return args.features or max(1, int(d_head * math.log(d_head)))


def _check_heads(c: int, heads: int, kv_heads: int) -> None:
    if c % heads:
        raise LayerError(f"heads={heads} does not divide the {c} channels",
                         arg="heads", help=_divisors_hint(c, heads))
    if heads % kv_heads:
        raise LayerError(f"kv_heads={kv_heads} does not divide heads={heads} "
                         f"(each key/value head serves a whole group of query heads)",
                         arg="kv_heads", help=_divisors_hint(heads, kv_heads))


def _divisors_hint(n: int, near: int) -> str:
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    best = sorted(divisors, key=lambda d: (abs(d - near), d))[:3]
    return "divisors of {} near {}: {}".format(n, near, ", ".join(map(str, sorted(best))))


class Attention(Layer):
    kind = "attention"
    Args = AttentionArgs

    @staticmethod
    def kv_heads(args) -> int:
        return args.kv_heads or args.heads

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, "attention")
        require_rank(x, 3, what=" [B, T, C]")
        c = channels(x)
        kvh = self.kv_heads(args)
        _check_heads(c, args.heads, kvh)
        d_head = c // args.heads
        kind = args.kind
        if kind == "linformer":
            if args.causal:
                raise LayerError("linformer attention cannot be causal: it projects the whole "
                                 "sequence to proj positions, so every output sees the future",
                                 arg="causal", help="use kind=performer or kind=linear for causal linear-cost attention")
            if args.proj is None or args.max_len is None:
                raise LayerError("linformer attention needs proj= (projected length) and max_len=",
                                 arg="kind", help="attention(8, kind=linformer, proj=256, max_len=4096)")
        else:
            for name in ("proj", "max_len"):
                if getattr(args, name) is not None:
                    raise LayerError(f"{name}= only applies to kind=linformer, not kind={kind}", arg=name)
        if args.features is not None and kind != "performer":
            raise LayerError(f"features= only applies to kind=performer, not kind={kind}", arg="features")
        if kind != "softmax":
            if args.window is not None:
                raise LayerError(f"window= needs kind=softmax; kind={kind} attends to the whole "
                                 "sequence at linear cost already", arg="window")
            if args.pos is not None:
                raise LayerError(f"pos={args.pos} is not supported with kind={kind}", arg="pos",
                                 help="add absolute positions before the layer: -> posenc")
            if kvh != args.heads:
                raise LayerError(f"kv_heads is only supported with kind=softmax, not kind={kind}",
                                 arg="kv_heads")
        if args.pos == "rope" and d_head % 2:
            raise LayerError(f"pos=rope needs an even head size, got {c} / {args.heads} = {d_head}",
                             arg="pos")
        if args.pos == "relative" and kvh != args.heads:
            raise LayerError("pos=relative (Transformer-XL) needs kv_heads equal to heads", arg="kv_heads")
        if args.pos == "relative" and args.window is not None:
            raise LayerError("pos=relative with window= is not supported", arg="window")
        if ctx.in_segments:
            if kind != "softmax":
                raise LayerError(f"kind={kind} attention cannot run inside segments; "
                                 "segment memory is defined for softmax attention", arg="kind")
            if args.window is not None:
                raise LayerError("window= cannot be combined with segments", arg="window",
                                 help="segments(length, memory) already bounds what each query sees")
        return x

    def count_params(self, args, inputs, out):
        c = channels(inputs[0])
        kvd = self.kv_heads(args) * (c // args.heads)
        n = 2 * c * c + 2 * c * kvd
        if args.bias:
            n += 2 * c + 2 * kvd
        if args.pos == "relative":
            n += c * c + 2 * c
        if args.kind == "linformer":
            n += 2 * args.proj * args.max_len
        return n

    def is_causal(self, args, inputs=None) -> bool:
        return args.causal


class CrossAttentionArgs(LayerArgs):
    heads: PositiveInt
    context: ValueRef
    kv_heads: PositiveInt | None = None
    bias: bool = True


class CrossAttention(Layer):
    """Queries from the input, keys and values from `context` (length S may differ)."""

    kind = "cross_attention"
    Args = CrossAttentionArgs

    def context_args(self):
        return ("context",)

    @staticmethod
    def kv_heads(args) -> int:
        return args.kv_heads or args.heads

    def infer_shape(self, args, inputs, ctx):
        x, context = inputs
        require_float(x, "cross_attention")
        require_rank(x, 3, what=" [B, T, C]")
        if context.dtype != "float" or context.rank != 3:
            raise LayerError(f"context={args.context.name} must be a float [B, S, C] value, got {context}",
                             arg="context")
        if context.dims[0] != x.dims[0]:
            raise LayerError(f"context={args.context.name} has batch {context.dims[0]}, "
                             f"the input has {x.dims[0]}", arg="context")
        c = channels(x)
        channels(context)
        _check_heads(c, args.heads, self.kv_heads(args))
        return x

    def count_params(self, args, inputs, out):
        x, context = inputs
        c, cc = channels(x), channels(context)
        kvd = self.kv_heads(args) * (c // args.heads)
        n = 2 * c * c + 2 * cc * kvd
        if args.bias:
            n += 2 * c + 2 * kvd
        return n
