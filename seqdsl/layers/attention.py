"""Self-attention and cross-attention.

Parameters (docs/language.md): query and output projections C x C, key and value
projections C x (kv_heads * C / heads), each with a bias when bias=true.
pos=relative adds a C x C position projection without bias and the two
Transformer-XL bias vectors u, v of C. linformer adds two proj x max_len
projections. Performer's random features are a buffer.
"""
from __future__ import annotations

import math
from typing import Literal

import sympy

from ..graph.symbolic import as_int, ceil_div, min_dim, smax, smin
from .base import (example, Layer, LayerArgs, LayerError, ModuleSpec, PositiveFloat, PositiveInt, Probability, ValueRef, channels, require_float, require_rank)
from .costs import LayerCost, ParallelRule, STAT_BYTES, matmul, segment_sums, transient_peak


#: The projections `bias=[...]` may name (Whisper's k has no bias; RecurrentGemma biases only o).
Projection = Literal["q", "k", "v", "o"]


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
    bias: bool | list[Projection] = True
    rope_dims: PositiveInt | None = None
    rope_base: PositiveFloat = 10000.0


def biased(args) -> tuple[bool, bool, bool, bool]:
    """Whether the q, k, v and o projections have a bias: `bias=true|false`
    for all four, or the list of those that do."""
    if isinstance(args.bias, bool):
        return (args.bias,) * 4
    if len(set(args.bias)) != len(args.bias):
        twice = next(p for p in args.bias if args.bias.count(p) > 1)
        raise LayerError(f"bias names the {twice} projection twice", arg="bias")
    return tuple(p in args.bias for p in ("q", "k", "v", "o"))


def _bias_params(args, c: int, kvd: int) -> int:
    bq, bk, bv, bo = biased(args)
    return c * (bq + bo) + kvd * (bk + bv)


def rope_options(args) -> dict:
    """The lowering's keyword arguments for partial or re-based rotary
    positions; none for the defaults (so emitted source stays as it was)."""
    out = {}
    if args.rope_dims is not None:
        out["rope_dims"] = args.rope_dims
    if args.rope_base != 10000.0:
        out["rope_base"] = args.rope_base
    return out


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
    takes_lengths = True       # non-causal: a key padding mask (attention_torch.Attention)
    Args = AttentionArgs
    summary = ("multi-head self-attention: softmax (optionally windowed, grouped key/value heads, "
               "RoPE/ALiBi/relative positions), linear, Performer or Linformer")
    shape_rule = "`[B, T, C] -> [B, T, C]`; heads divides C, kv_heads divides heads"
    params_rule = ("2 · C² + 2 · C · kvd + (C per biased q and o) + (kvd per biased k and v) + [pos=relative] · (C² + 2 · C) "
                   "+ [kind=linformer] · 2 · proj · max_len; kvd = kv_heads · C / heads")
    causal_rule = "yes with causal=true"
    # the cost rule takes the window as a symbol too (seqdsl.layers.costs.cost_symbol):
    # layers that differ only in it share one closed form
    symbolic_cost_args = ("window",)
    arg_docs = {
        "heads": "query heads; divides C (head size C / heads)",
        "kv_heads": "key/value heads (grouped-query attention); divides heads; none: heads",
        "causal": "each position attends only to itself and earlier positions",
        "window": "sliding window: each position sees the W previous positions (and, if not causal, "
                  "the W next); softmax only",
        "pos": "positions inside attention: `rope` (rotary, even head size), `alibi` (linear bias), "
               "`relative` (Transformer-XL); none: no positions",
        "kind": "`softmax`; `linear` (elu + 1 feature map); `performer` (FAVOR+ random features); "
                "`linformer` (keys and values projected to proj positions; not causal)",
        "features": "performer's random features; none: d_head · ln(d_head)",
        "proj": "linformer's projected length (required by linformer)",
        "max_len": "linformer's longest sequence (required by linformer)",
        "dropout": "dropout probability on the attention weights",
        "rope_dims": "with pos=rope: rotate only the first rope_dims (even) of each head, the rest pass "
                     "through (partial rotary); none: the whole head",
        "rope_base": "with pos=rope: the base θ of the rotation frequencies",
        "bias": "biases on the q, k, v and output projections: true, false, or the list of those that "
                "have one (`bias=[q, v, o]`: Whisper's k_proj has none)"}
    notes = ("Inside `segments` only kind=softmax without window= is allowed; each such layer also attends "
             "to the memory of earlier segments. pos, window and kv_heads other than heads need kind=softmax.")

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
        if args.pos == "rope" and d_head % 2 and args.rope_dims is None:
            raise LayerError(f"pos=rope needs an even head size, got {c} / {args.heads} = {d_head}",
                             arg="pos", help="or rotate an even part of each head with rope_dims=")
        if args.pos != "rope" and (args.rope_dims is not None or args.rope_base != 10000.0):
            which = "rope_dims" if args.rope_dims is not None else "rope_base"
            raise LayerError(f"{which}= is an option of rotary positions, but pos is {args.pos or 'none'}",
                             arg=which, help="add pos=rope, or drop the option")
        if args.rope_dims is not None and (args.rope_dims % 2 or args.rope_dims > d_head):
            raise LayerError(f"rope_dims={args.rope_dims} must be even and at most the head size {d_head}",
                             arg="rope_dims", help=f"e.g. rope_dims={max(2, d_head // 4 * 2)} (half the head)")
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
        n = 2 * c * c + 2 * c * kvd + _bias_params(args, c, kvd)
        if args.pos == "relative":
            n += c * c + 2 * c
        if args.kind == "linformer":
            n += 2 * args.proj * args.max_len
        return n

    def is_causal(self, args, inputs=None) -> bool:
        return args.causal

    def cost(self, args, inputs, out, ctx):
        """The kernels of docs/lowering.md, counted (COST_MODEL.md): projections
        as linears; softmax cores 4·B·C·pairs (C = heads·d_head) with the
        fused-kernel backward 2.5x (aten._scaled_dot_product_flash_attention_for_cpu
        saves q, k, v, its output and an fp32 logsumexp); the blocked window and
        the Transformer-XL math path as their bmm's (backward 2x each)."""
        x = inputs[0]
        b, t, c = x.dims[0], x.dims[1], channels(x)
        kvd = self.kv_heads(args) * (c // args.heads)
        n = b * t
        proj = {"q": matmul(n, c, c), "kv": 2 * matmul(n, c, kvd), "o": matmul(n, c, c)}
        if ctx.segments is not None or args.pos == "relative":
            return _segment_attention_cost(args, x, c, kvd, ctx)
        if args.kind in ("linear", "performer"):
            return _linear_attention_cost(args, x, c, proj, ctx)
        if args.kind == "linformer":
            return _linformer_cost(args, x, c, kvd, proj, ctx)
        return _softmax_cost(args, x, c, kvd, proj, ctx)

    def parallel(self, args, inputs, elem):
        """Heads over tp (q/k/v column-, output row-parallel: one all-reduce);
        under context parallelism softmax attention gathers the keys and values
        of the whole sequence around the ring, linear kinds hand on their
        state; a window needs only the keys and values of the W positions
        before a rank's block. Selective recompute (Korthikanti et al. 2022) keeps q, k, v,
        the output and the log-sum-exp, recomputing scores and probabilities."""
        x = inputs[0]
        b, t, c = x.dims[0], x.dims[1], channels(x)
        kvh = self.kv_heads(args)
        kvd = kvh * (c // args.heads)
        keep = None
        if args.kind == "softmax" and args.pos != "relative":
            keep = (2 * b * t * c + 2 * b * t * kvd) * elem + b * args.heads * t * STAT_BYTES
        window = None if args.window is None else 2 * b * args.window * kvd * elem
        return ParallelRule(tp="split", all_reduces=1, divides=(("heads", args.heads), ("kv_heads", kvh)),
                            cp="state" if args.kind in ("linear", "performer") else "kv",
                            kv_bytes=2 * b * t * kvd * elem, kv_window_bytes=window, selective_saved=keep)

    def module(self, node, memory):
        """memory: M inside segments(memory=M) (Transformer-XL cache), else None."""
        a, c = node.args, channels(node.inputs[0])
        feats = performer_features(a, c // a.heads) if a.kind == "performer" else None
        return ModuleSpec("Attention", (c,), dict(
            heads=a.heads, kv_heads=self.kv_heads(a), causal=a.causal, window=a.window, pos=a.pos,
            kind=a.kind, features=feats, proj=a.proj, max_len=a.max_len, dropout=a.dropout, bias=biased(a),
            memory=memory, **rope_options(a)), lowering="attention_torch")

    def examples(self):
        x = "float[B, T, 16]"
        return tuple(example(x, s) for s in (
            "attention(2)", "attention(2, causal=true)", "attention(4, kv_heads=2, causal=true, pos=rope)",
            "attention(2, causal=true, window=5)", "attention(2, causal=true, pos=alibi)",
            "attention(2, causal=true, pos=relative)", "attention(2, causal=true, kind=linear)",
            "attention(2, causal=true, kind=performer)", "attention(2, kind=linformer, proj=4, max_len=256)",
            "attention(2, causal=true, dropout=0.1)",
            "segments(length=8, memory=8) { attention(2, causal=true) }",
            "attention(4, causal=true, bias=[q, v, o])",
            "attention(4, causal=true, pos=rope, rope_dims=2, rope_base=500000)"))


# ------------------------------------------------------------------ cost rules
# Each returns a LayerCost for one self-attention layer (Attention.cost).
def _pick(t, limit, small, big):
    """small when t <= limit, else big; a Piecewise when t or limit (a cost
    symbol) is symbolic."""
    if as_int(t) is not None and as_int(limit) is not None:
        return small if as_int(t) <= as_int(limit) else big
    if isinstance(t, sympy.Basic) and t.is_Symbol and small != big:   # canonical already: skip sympy's evaluation (ms per distinct limit)
        return sympy.Piecewise((small, sympy.LessThan(t, limit, evaluate=False)), (big, True), evaluate=False)
    return sympy.Piecewise((small, sympy.LessThan(t, limit)), (big, True))


def _softmax_cost(args, x, c, kvd, proj, ctx):
    """SDPA on the T x T pairs (flash on the CPU), or the blocked band for
    window=W < T: q blocks of W against 2W (causal) or 3W keys, one SDPA with a
    5-D boolean mask, which the CPU runs on the math path (two bmm's forward,
    four backward; it saves the scaled q and k blocks, the v blocks and the
    probabilities)."""
    b, t = x.dims[0], x.dims[1]
    h, dh, e = args.heads, c // args.heads, ctx.elem
    n = b * t
    weights = proj["q"] + proj["kv"] + proj["o"]
    backward = weights + proj["o"]
    input_grad = (proj["q"] + proj["kv"],)
    # rope: cos and sin (T, dh), made for q and again for k, each kept by its products
    rope = 4 * t * dh * e if args.pos == "rope" else 0
    # q, k, v and the output: the CPU flash kernel writes it (B, T, H, dh)-contiguous,
    # so merging the heads is a view and o's input is the saved output itself
    heads_bytes = (2 * c + 2 * kvd) * n * e
    dense_core = 2 * matmul(n, c, t)                  # 4·B·C·T² (all T x T pairs)
    dense_saved = heads_bytes + b * h * t * STAT_BYTES + rope
    dense_work = heads_bytes + (2 * n * c * e if args.pos == "rope" else 0)   # rotated copies
    dense_live = None
    if args.pos == "rope":
        # q rotated (the angles, cos, sin beside rot, x·cos, rot·sin and their sum), then k
        # beside the rotated q, then the kernel's output and logsumexp beside both; q, k, v
        # throughout (the sum of all was 0.76-0.85x measured: seed 1886)
        qkv, qb, kb, tables = (c + 2 * kvd) * n * e, n * c * e, n * kvd * e, 3 * t * dh * e
        dense_live = transient_peak(n * c * e, before=[qkv + tables + 4 * qb, qkv + qb + tables + 4 * kb,
                                                       qkv + qb + kb + n * c * e + b * h * t * STAT_BYTES],
                                    after=[qkv + qb + kb + n * c * e])
    if args.pos == "alibi":                           # (1, H, T, T) float bias, saved by the kernel
        dense_saved += h * t * t * e
        dense_work += h * t * t * e
        # built in place in fp32 (positions, a (T, T) bool for the causal mask),
        # cast to the model dtype, freed when the kernel returns; then the
        # attention output (and its logsumexp) beside q, k, v
        qkv, bias32, y = (c + 2 * kvd) * n * e, 4 * h * t * t, n * c * e
        build = qkv + 4 * t + bias32 + (t * t if args.causal else 0)
        dense_live = transient_peak(n * c * e, before=[build, qkv + bias32 + (h * t * t * e if e != 4 else 0),
                                                       qkv + h * t * t * e + y + b * h * t * STAT_BYTES],
                                    after=[qkv + y])
    flops = weights + dense_core
    bwd = backward + sympy.Rational(5, 2) * dense_core
    if args.dropout > 0:
        # Training with attention dropout runs SDPA's math path (the fused CPU
        # kernel has no dropout): two bmm's backward each (2x, not 2.5x), and it
        # saves the probabilities, the dropped probabilities and the mask (in the
        # compute dtype) instead of a log-sum-exp; an additive bias is not kept.
        bwd = backward + 2 * dense_core
        dense_saved = heads_bytes + 3 * b * h * t * t * e + rope
    saved, work, live = dense_saved, dense_work, dense_live
    keys = t
    cache = t
    if args.window is not None:
        w = args.window
        k_w = (2 if args.causal else 3) * w
        nb = ceil_div(t, w)
        band = 2 * matmul(b * nb * w, c, k_w)         # 4·B·C·nb·W·kW pairs
        band_saved = (b * c * nb * (w + 2 * k_w) + b * h * nb * w * k_w + n * c) * e + rope
        # padded q/k/v, their blocks, the scaled copies, scores and probabilities
        band_work = (2 * b * h * nb * w * k_w + 2 * b * c * nb * (w + 2 * k_w) + 4 * n * c) * e
        # the mask SDPA adds: ALiBi's (H, nb, W, kW) bias, or the boolean band (kept)
        # and its float copy; only the probabilities' backward reads it, so it is not saved
        mask = h * nb * w * k_w * e if args.pos == "alibi" else nb * w * k_w * (1 + e)
        band_work += mask
        if args.dropout > 0:      # training: the dropped probabilities and the mask too
            band_saved += 2 * b * h * nb * w * k_w * e
        # alive at once (inference): q, k, v; the padded q blocks, k and v padded by a
        # block each side (nb + 2 blocks), their kW-wide bands, the mask and the int64
        # positions; then in SDPA's math path, which computes in fp32 (16-bit q, k and
        # v blocks copied to fp32 first: 0.52-0.55x without), the scaled q and k and the
        # scores (k freed at the mask's add, the scores' sum beside them), and after the
        # kernel its output blocks and their merged copy beside the projection's output
        qkv, qb = (n * c + 2 * n * kvd) * e, b * c * nb * w * e
        held = qkv + qb + 2 * b * c * (nb + 2) * w * e + 2 * b * c * nb * k_w * e + mask + 8 * nb * (w + k_w)
        held += 0 if e == 4 else 4 * b * c * nb * (w + 2 * k_w)
        qs, ks, scores = 4 * b * c * nb * w, 4 * b * c * nb * k_w, 4 * b * h * nb * w * k_w
        band_live = transient_peak(n * c * e, before=[held + qs + ks + scores, held + qs + 2 * scores],
                                   after=[qkv + qb + n * c * e])
        flops = _pick(t, w, flops, weights + band)
        bwd = _pick(t, w, bwd, backward + 2 * band)
        saved = _pick(t, w, saved, band_saved)
        live = _pick(t, w, work if live is None else live, band_live)
        work = _pick(t, w, work, band_work)
        keys = min_dim(t, w + 1)
        cache = min_dim(t, w)
    step = 2 * matmul(b, c, c) + 2 * matmul(b, c, kvd) + 2 * matmul(b, c, keys)
    return LayerCost(flops=flops, backward_flops=bwd, input_grad_flops=input_grad,
                     saves_inputs=(True,), saved_bytes=saved, workspace_bytes=work, live_workspace_bytes=live,
                     step_flops=step, state_bytes=2 * b * kvd * cache * e, has_weights=True)


CHUNK = 64   # causal linear attention chunk length (docs/lowering.md)


def _linear_attention_cost(args, x, c, proj, ctx):
    """Linear attention with V' = [V, 1] (d_head + 1 columns). Not causal:
    KV = phi(K)^T V', out = phi(Q) KV: 4·B·H·T·m·(dh + 1). Causal, chunks of
    64 over T padded to nc·64: intra tril(phi(Q_c) phi(K_c)^T) V'_c and the
    chunk states phi(K_c)^T V'_c, phi(Q_c) S. Performer (FAVOR+) adds the
    feature maps x W^T for Q and K (2·B·H·T·dh·m each; W is a buffer, so its
    backward is the input gradient only). Every other product's backward is
    2x (both operands need gradients)."""
    b, t = x.dims[0], x.dims[1]
    h, dh, e = args.heads, c // args.heads, ctx.elem
    n = b * t
    m = performer_features(args, dh) if args.kind == "performer" else dh
    dv = dh + 1
    bh = b * h
    feat = 2 * matmul(bh * t, dh, m) if args.kind == "performer" else 0
    weights = proj["q"] + proj["kv"] + proj["o"]
    saved = (2 * n * c + n * c) * e                   # q, k (feature maps' inputs), merged output
    if args.kind == "performer":
        # the exp results of q and k, q's exp input (kept by its row max, which k,
        # unshifted, has not: 1.10-1.14x measured when counted for both, random
        # seed 550), q's row maxima (model dtype), the W buffer
        saved += (3 * bh * t * m + m * dh + bh * t) * e
    if args.causal:
        nc = ceil_div(t, CHUNK)
        tp = nc * CHUNK
        core = matmul(bh * tp, m, CHUNK) + matmul(bh * tp, CHUNK, dv) + 2 * matmul(bh * tp, m, dv)
        # the padded phi(Q), phi(K) chunks, V', the masked intra scores, the
        # chunk states S, the numerator/denominator
        saved += (2 * bh * tp * m + 2 * bh * tp * dv + bh * tp * CHUNK + bh * nc * m * dv) * e
        work = (4 * bh * tp * m + 2 * bh * tp * dv + bh * tp * CHUNK + 2 * bh * nc * m * dv + 3 * n * c) * e
        # alive at once: q, k, v, phi(Q), phi(K) and V's ones column throughout; the
        # dense (padded) phi chunks and V'; the raw and masked chunk scores, then
        # the masked scores with the intra-chunk, state and sum terms; after the
        # kernel, q, k, v, phi(Q), phi(K) and the merged heads beside the output
        base = (3 * n * c + 2 * bh * t * m + bh * t) * e
        # phi(Q), phi(K) are copied dense unless they already are (FAVOR+'s maps) and T
        # needs no padding; V' is (padded or not) one tensor. padded: 1 if tp > T, else 0
        padded = smin(1, tp - t) if as_int(t) is None else int(as_int(tp) > as_int(t))
        copies = 1 if args.kind == "linear" else padded
        chunks = (2 * bh * tp * m * copies + bh * tp * dv) * e
        score, states = bh * tp * CHUNK * e, bh * nc * m * dv * e
        live = transient_peak(n * c * e, before=[
            base + chunks + 2 * score,
            base + chunks + score + 3 * bh * tp * dv * e + 2 * states,
            base + chunks + score + 2 * bh * tp * dv * e + 2 * states + n * c * e],
            after=[(3 * n * c + 2 * bh * t * m + n * c) * e])
    else:
        core = 2 * matmul(bh * t, m, dv)
        saved += (2 * bh * t * m + 2 * bh * t * dv + bh * m * dv) * e
        work = (2 * bh * t * m + 2 * bh * t * dv + bh * m * dv + 3 * n * c) * e
        # alive at once, beside q, k, v: FAVOR+'s map of k (phi(Q) made; the
        # projection, its shifted exponent, exp and phi(K), with the row norms),
        # the larger for many features (summed as work: 0.71-0.80x measured);
        # then phi(Q), phi(K), V' and its ones column, KV, the numerator and the
        # quotient; after, phi(Q), phi(K) and the merged heads beside the output
        qkv = 3 * n * c * e
        moments = [qkv + (2 * bh * t * m + bh * t + 2 * bh * t * dv + bh * m * dv) * e + n * c * e]
        if args.kind == "performer":
            moments.append(qkv + (5 * bh * t * m + bh * t) * e)
        live = transient_peak(n * c * e, before=moments, after=[qkv + (2 * bh * t * m + n * c) * e])
    step = 4 * matmul(b, c, c) + 2 * matmul(bh, dh, m) * (1 if args.kind == "performer" else 0) \
        + 2 * matmul(bh, m, dv)
    return LayerCost(flops=weights + feat + core, backward_flops=weights + proj["o"] + feat + 2 * core,
                     input_grad_flops=(proj["q"] + proj["kv"],), saves_inputs=(True,),
                     saved_bytes=saved, workspace_bytes=work, live_workspace_bytes=live, step_flops=step,
                     state_bytes=bh * m * dv * e, has_weights=True)


def _linformer_cost(args, x, c, kvd, proj, ctx):
    """K' = E[:, :T] K, V' = F[:, :T] V over the sequence (2·B·proj·T·kvd each,
    backward 2x: E and K both need gradients), then SDPA of T queries on proj keys."""
    b, t = x.dims[0], x.dims[1]
    h, e, p = args.heads, ctx.elem, args.proj
    n = b * t
    eproj = 2 * matmul(b * p, t, kvd)
    core = 2 * matmul(n, c, p)
    weights = proj["q"] + proj["kv"] + proj["o"]
    saved = (2 * n * c + 2 * n * kvd + 2 * b * p * kvd) * e + b * h * t * STAT_BYTES
    # q, k, v; each einsum copies its operand (B, T, kvd) for bmm, and K' (V')
    # replaces K (V); then the attention output (and its logsumexp) beside q, K', V'
    q_kv = (n * c + 2 * b * p * kvd) * e
    live = transient_peak(n * c * e, before=[(n * c + 3 * n * kvd + b * p * kvd) * e,
                                             (n * c + 2 * n * kvd + 2 * b * p * kvd) * e,
                                             q_kv + n * c * e + b * h * t * STAT_BYTES],
                          after=[q_kv + n * c * e])
    return LayerCost(flops=weights + eproj + core,
                     backward_flops=weights + proj["o"] + 2 * eproj + sympy.Rational(5, 2) * core,
                     input_grad_flops=(proj["q"] + proj["kv"],), saves_inputs=(True,), saved_bytes=saved,
                     workspace_bytes=(3 * n * c + 2 * n * kvd + 2 * b * p * kvd) * e,
                     live_workspace_bytes=live, has_weights=True)


def _segment_attention_cost(args, x, c, kvd, ctx):
    """Inside segments(L, M) (docs/lowering.md): per segment, k/v are projected
    from cat(mem, x_seg), and query i sees mem plus the segment: pairs
    Σ len_s·(mem_s + len_s). Softmax: one SDPA with a boolean mask (the CPU
    converts it to a float mask the kernel saves). pos=relative
    (Transformer-XL, Dai et al. 2019): AC = (q+u)k^T, BD = (q+v)r^T with
    r = r_proj(sinusoid(klen)), then probs @ v — three bmm's (backward 2x each),
    r_proj once per segment. Outside segments pos=relative is one segment."""
    b, t = x.dims[0], x.dims[1]
    h, e = args.heads, ctx.elem
    n = b * t
    if ctx.segments is not None:
        length, memory = ctx.segments
        _, sq, cross, mem_sum = segment_sums(t, length, memory)
        pairs, klen = sq + cross, t + mem_sum
        step_keys = memory + length
        state = b * (memory + length) * c * e
        # inference frees each segment's temporaries before the next: one segment's
        # worth, plus the segment outputs held until they are concatenated
        seg_len = min_dim(t, length)
        # keys of the widest segment: the memory is what earlier segments left (none
        # when one segment is the whole input)
        # (symbolic also when length or memory are cost symbols: seqdsl.cost.model's shared costs)
        concrete = None not in (as_int(t), as_int(seg_len), as_int(memory))
        seg_klen = seg_len + (min(as_int(memory), as_int(t) - as_int(seg_len)) if concrete
                              else smin(memory, t - seg_len))
        held = n * c * e
    else:
        pairs, klen = t * t, t
        step_keys = t
        state = 2 * b * kvd * t * e
        seg_len, seg_klen = t, t
        held = 0
    mem_rows = klen - t      # memory rows, projected on their own (the k/v linears save them)
    q = matmul(n, c, c)
    kv = 2 * matmul(b * klen, c, kvd)
    weights = 2 * q + kv
    step = 2 * matmul(b, c, c) + 2 * matmul(b, c, kvd)
    if args.pos == "relative":
        r_proj = matmul(klen, c, c)
        core = 3 * matmul(b * c, 1, pairs)            # AC, BD, probs @ v: 6·B·C·pairs
        flops = weights + r_proj + core
        backward = weights + r_proj + q + 2 * core
        # r enters autograd twice: sinusoid and r saved by r_proj / the BD einsum, plus the
        # einsum's contiguous copy of r: 3·klen·C
        saved = (b * mem_rows * c + 2 * b * klen * kvd + 3 * klen * c + 3 * n * c + b * h * pairs) * e + pairs
        if not args.causal:       # BD by distance: index_select keeps its int32 index (attention_torch.distance_index)
            saved += 4 * pairs
        work = (b * seg_klen * c + 2 * b * seg_klen * kvd + 2 * seg_klen * c + 3 * b * seg_len * c
                + 2 * b * h * seg_len * seg_klen) * e + held
        # alive at once (one segment, docs/lowering.md): q, k, v and r throughout;
        # AC with q + u and the copies its product reads, then BD's the same way,
        # then BD's shifted (padded) copy beside AC and BD; then the scores (BD
        # added in place) with their probabilities and the bool masks; then the
        # probabilities with v's copy and the result
        def phases_at(p_len, k_len):     # one segment of p_len queries and k_len keys
            qkv = (b * p_len * c + 2 * b * k_len * kvd) * e
            r, scores = k_len * c * e, b * h * p_len * k_len * e
            # q + u (or q + v), and with several heads bmm's copies of it and of k (or r);
            # one head reads them in place (1.26-1.3x measured with one head: seeds 489, 404)
            operands = (b * p_len * c + (b * p_len * c + b * k_len * c if h > 1 else 0)) * e
            return [qkv + r + operands + scores, qkv + r + 2 * scores + operands,
                    qkv + r + 2 * scores + (b * h * p_len * (k_len + 1) * e if args.causal  # rel_shift's padded copy
                                            else scores + 4 * p_len * k_len),   # index_select's copy, its index
                    qkv + 2 * scores + 2 * p_len * k_len,
                    qkv + scores + (b * k_len * kvd + b * p_len * c) * e]
        phases = phases_at(seg_len, seg_klen)
        step += 3 * matmul(b, c, step_keys) + matmul(1, c, c)
        if args.dropout > 0:      # training: the dropped probabilities and the mask too
            saved += 2 * b * h * pairs * e
    else:
        core = 2 * matmul(b * c, 1, pairs)            # 4·B·C·pairs
        flops = weights + core
        backward = weights + q + sympy.Rational(5, 2) * core
        saved = (b * mem_rows * c + 2 * b * klen * kvd + 2 * n * c + pairs) * e + b * h * t * STAT_BYTES
        if args.pos == "rope":
            # cos and sin (rows, dh) made for each piece's q and again for its k (memory
            # rows too), each kept by its products (left out: 0.68-0.73x measured, random
            # seed 1876)
            saved += 2 * (t + klen) * (c // h) * e
        work = (b * seg_klen * c + 2 * b * seg_klen * kvd + 3 * b * seg_len * c + seg_len * seg_klen) * e + held
        phases = [work - held]
        phases_at = None
        step += 2 * matmul(b, c, step_keys)
        if args.dropout > 0:
            # training with dropout: SDPA's math path (see _softmax_cost): backward 2x,
            # probabilities, dropped probabilities and mask saved; no float mask, no lse
            backward = weights + q + 2 * core
            saved += 3 * b * h * pairs * e - pairs * e - b * h * t * STAT_BYTES
    # The input gradient reaches k/v only through the segment's own rows: the
    # memory rows are projected from detached activations (no gradient through them).
    input_grad = q + 2 * matmul(n, c, kvd)
    # Inside segments, one piece's (the widest): the pieces held until they are
    # concatenated are the model walk's (seqdsl.cost.model), and nothing is left
    # beside the piece's output. Outside, q, k, v and the merged heads are left
    # beside the output.
    if ctx.segments is not None:
        # One piece (Attention._segment) of p_len steps after m memory rows:
        # forward's frame keeps q, k and v as projected, so with memory the
        # concatenated k and v come beside them, and the memory rows' own k and
        # v; the layer keeps its memory (b·m·C) from piece to piece. Beside the
        # output: those, the bool mask and the attention output. RoPE rotates q
        # and k into new tensors (with memory the rotated k replaces the
        # concatenated one); while it rotates k: its four k-sized temporaries
        # and the angles.
        def piece_live(p_len, m):
            k_len = p_len + m
            with_mem = (1 if as_int(m) else 0) if as_int(m) is not None else smin(1, m)
            kv = 2 * b * m * kvd + 2 * b * p_len * kvd + with_mem * 2 * b * k_len * kvd
            mask, extra = p_len * k_len, b * m * c * e
            after = (2 * b * p_len * c + kv) * e + mask + extra
            # pos=relative's phases count q, k and v as used; add what the frame and the memory keep
            before = ([p + extra + (kv - 2 * b * k_len * kvd) * e for p in phases_at(p_len, k_len)]
                      if args.pos == "relative" else [])
            if args.pos != "relative":
                # inside SDPA: the bool mask made a float one, beside the output and its logsumexp
                before.append(after + p_len * k_len * e + b * h * p_len * STAT_BYTES)
            if args.pos == "rope":
                after += (b * p_len * c + (1 - with_mem) * b * k_len * kvd) * e
                before[-1] += (b * p_len * c + (1 - with_mem) * b * k_len * kvd) * e
                dh = c // h
                before.append((2 * b * p_len * c + kv + 4 * b * k_len * kvd) * e + mask + extra
                              + (3 * k_len * dh + k_len + dh // 2) * 4)
            return transient_peak(b * p_len * c * e, before=before, after=[after])

        live = piece_live(seg_len, seg_klen - seg_len)          # the widest piece
        # the walk's two candidates (seqdsl.cost.model._segments_peaks): the last
        # piece, and the last full one (none when one piece is the whole input)
        pieces = ceil_div(t, length)
        last = t - length * (pieces - 1)
        several = smin(1, pieces - 1)
        before_full = t - last - length
        if as_int(before_full) is not None:
            before_full = max(as_int(before_full), 0)
        else:
            before_full = smax(0, before_full)
        per_piece = (piece_live(last, smin(memory, t - last)),
                     several * piece_live(length, smin(memory, before_full)))
    else:
        live = transient_peak(n * c * e, before=phases, after=[(b * seg_len * c + 2 * b * seg_klen * kvd + n * c) * e])
        per_piece = None
    return LayerCost(flops=flops, backward_flops=backward, input_grad_flops=(input_grad,),
                     saves_inputs=(True,), saved_bytes=saved, workspace_bytes=work, live_workspace_bytes=live,
                     segment_workspace=per_piece, step_flops=step, state_bytes=state, has_weights=True)


class CrossAttentionArgs(LayerArgs):
    heads: PositiveInt
    context: ValueRef
    kv_heads: PositiveInt | None = None
    bias: bool | list[Projection] = True


class CrossAttention(Layer):
    """Queries from the input, keys and values from `context` (length S may differ)."""

    kind = "cross_attention"
    takes_lengths = True       # the queries are position-wise
    masks_context = True       # the context's lengths: a key padding mask
    Args = CrossAttentionArgs
    summary = "multi-head attention from the input (queries) to another bound value (keys and values)"
    shape_rule = "`[B, T, C]` with context `[B, S, Cc]` -> `[B, T, C]`; S may differ from T"
    params_rule = "2 · C² + 2 · Cc · kvd + (C per biased q and o) + (kvd per biased k and v); kvd = kv_heads · C / heads"
    arg_docs = {"heads": "query heads; divides C", "context": "a value bound earlier in the model, float `[B, S, Cc]`",
                "kv_heads": "key/value heads; divides heads; none: heads",
                "bias": "biases on the q, k, v and output projections: true, false, or the list of those that "
                "have one (`bias=[q, v, o]`: Whisper's k_proj has none)"}
    notes = "Not causal over the context, which is read whole; causal over the input, so a decoder can stream."

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
        n = 2 * c * c + 2 * cc * kvd + _bias_params(args, c, kvd)
        return n

    def cost(self, args, inputs, out, ctx):
        """q from x, k/v from the context (length S), one SDPA (flash on the CPU),
        not causal. Generation: the context's k/v are cached once. Inside
        segments(L, M) each of the ceil(T/L) pieces projects the whole context
        again (seqmodel._run_segments runs the body piece by piece), so the k/v
        projections, their backward and their saved outputs count once a piece."""
        x, context = inputs
        b, t, c = x.dims[0], x.dims[1], channels(x)
        s, cc = context.dims[1], channels(context)
        kvd = self.kv_heads(args) * (c // args.heads)
        e = ctx.elem
        pieces = ceil_div(t, ctx.segments[0]) if ctx.segments is not None else 1
        q = matmul(b * t, c, c)
        kv = pieces * 2 * matmul(b * s, cc, kvd)
        core = 2 * matmul(b * t, c, s)       # 4·B·heads·d_head·T·S

        saved = (2 * b * t * c + pieces * 2 * b * s * kvd) * e + b * args.heads * t * STAT_BYTES
        return LayerCost(flops=2 * q + kv + core,
                         backward_flops=2 * q + kv + q + sympy.Rational(5, 2) * core,
                         input_grad_flops=(q, kv), saves_inputs=(True, True), saved_bytes=saved,
                         workspace_bytes=(2 * b * t * c + 2 * b * s * kvd) * e,   # q, k, v, attention output
                         step_flops=2 * matmul(b, c, c) + 2 * matmul(b, c, s),
                         state_bytes=2 * b * s * kvd * e, has_weights=True)

    def parallel(self, args, inputs, elem):
        """Heads over tp, one all-reduce; the context is read whole on every rank."""
        return ParallelRule(tp="split", all_reduces=1,
                            divides=(("heads", args.heads), ("kv_heads", self.kv_heads(args))))

    def module(self, node, memory):
        a = node.args
        return ModuleSpec("CrossAttention", (channels(node.inputs[0]), channels(node.inputs[1]), a.heads,
                                             self.kv_heads(a), biased(a)), lowering="attention_torch")

    def examples(self):
        return (example("float[B, T, 16]", "cross_attention(2, context=memory)", "memory: float[B, S, 16]"),
                example("float[B, T, 16]", "cross_attention(4, context=memory, kv_heads=2, bias=false)",
                        "memory: float[B, S, 16]"))
