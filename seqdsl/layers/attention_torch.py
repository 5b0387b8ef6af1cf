"""The torch lowering of attention (softmax, windowed, linear, Performer, Linformer, Transformer-XL segments) and cross_attention (docs/lowering.md).

Imports only torch, math and the shared kernels of torch_modules.py: `seqdsl
compile -o` pastes this file, less its imports, into standalone source.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .torch_modules import _dense, sinusoid, time_mask


def split_heads(x, h):
    b, t, c = x.shape
    return x.view(b, t, h, c // h).transpose(1, 2)    # (B, T, H, dh) -> (B, H, T, dh)


def merge_heads(x):
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)  # (B, H, T, dh) -> (B, T, C)


def rope(x, start: int, dims=None, base=10000.0):
    """Rotate-half RoPE (NeoX layout); x (B, H, T, dh). With `dims` < dh only
    the first `dims` of each head rotate (partial rotary: GPT-NeoX's
    rotary_pct, RecurrentGemma's partial_rotary_factor); the rest pass through
    as x·1 + x·0, exactly, so that the partial and the whole rotation run the
    same kernels on the same sizes (one cost rule)."""
    t, d = x.shape[-2], x.shape[-1]
    r = d if dims is None else dims
    inv = 1.0 / (base ** (torch.arange(0, r, 2, device=x.device, dtype=torch.float32) / r))
    pos = torch.arange(start, start + t, device=x.device, dtype=torch.float32)
    ang = torch.outer(pos, inv)
    ang = torch.cat([ang, ang], dim=-1)                # (T, r)
    cos, sin = ang.cos(), ang.sin()
    if r < d:
        cos = torch.cat([cos, cos.new_ones(t, d - r)], dim=-1)
        sin = torch.cat([sin, sin.new_zeros(t, d - r)], dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)       # (T, dh)
    rot = torch.cat([-x[..., r // 2:r], x[..., : r // 2], x[..., r:]], dim=-1)
    return x * cos + rot * sin


def elu1(x):
    return F.elu(x) + 1


def linear_attention(q, k, v, causal: bool, chunk: int = 64):
    """q, k feature-mapped (B, H, T, m); v (B, H, T, d). Denominator rides in V' = [V, 1]."""
    ones = v.new_ones(*v.shape[:-1], 1)
    vp = torch.cat([v, ones], dim=-1)                        # (B, H, T, d+1)
    if not causal:
        kv = k.transpose(-2, -1) @ vp                          # (B, H, m, d+1)
        out = q @ kv
    else:
        b, h, t, m = q.shape
        nc = -(-t // chunk)
        pad = nc * chunk - t
        if pad:
            q, k, vp = (F.pad(z, (0, 0, 0, pad)) for z in (q, k, vp))
        else:   # one dense copy each (F.pad makes it above): every product would copy a strided chunk view
            q, k = q.contiguous(), k.contiguous()
        qc = q.view(b, h, nc, chunk, m)                        # (B, H, nc, c, m)
        kc = k.view(b, h, nc, chunk, m)
        vc = vp.view(b, h, nc, chunk, vp.shape[-1])
        scores = (qc @ kc.transpose(-2, -1)).tril()           # (B, H, nc, c, c)
        intra = scores @ vc
        kv = kc.transpose(-2, -1) @ vc                         # (B, H, nc, m, d+1)
        s = kv.cumsum(2) - kv                                  # exclusive prefix over chunks
        out = (intra + qc @ s).reshape(b, h, nc * chunk, -1)[:, :, :t]
    return out[..., :-1] / out[..., -1:]


def key_mask(lengths, t):
    """[B, t] bool: the keys each sequence's queries may see under per-sequence
    lengths; key 0 always, so no query row is empty (a sequence left without
    steps gives finite values, which its zero length then drops)."""
    mask = time_mask(lengths, t)
    mask[:, 0] = True
    return mask


def alibi_slopes(h):
    return torch.tensor([2 ** (-8 * (i + 1) / h) for i in range(h)])


def rel_shift(x):
    """Transformer-XL shift: x (B, H, Tq, Tk) scored against positions Tk-1..0."""
    b, h, q, k = x.shape
    x = F.pad(x, (1, 0))                                       # (B, H, Tq, Tk+1)
    x = x.view(b, h, k + 1, q)                                 # reinterpret
    return x[:, :, 1:].reshape(b, h, q, k)                     # (B, H, Tq, Tk)


def distance_index(tq, tk, device):
    """(Tq·Tk,) int32: for query i (position Tk - Tq + i) and key j, the
    flat index in a (Tq, Tk) row-major x scored against positions Tk-1..0 (as
    rel_shift's) of the distance |i' - j|: i·Tk + Tk-1-|i' - j|. Non-causal
    relative attention scores a later key by its distance too, as ALiBi's
    -slope·|i - j| does, so no score depends on the padded length (rel_shift's
    upper triangle reads the next query's row at Tk-dependent positions).
    index_select keeps only this index for backward (gather would keep x too)."""
    qpos = torch.arange(tk - tq, tk, device=device)[:, None]
    kpos = torch.arange(tk, device=device)[None, :]
    rows = torch.arange(tq, device=device)[:, None] * tk
    return (rows + tk - 1 - (qpos - kpos).abs()).view(-1).to(torch.int32)


class Attention(nn.Module):
    def __init__(self, c, heads, kv_heads, causal, window, pos, kind, features, proj, max_len,
                 dropout, bias, memory=None, rope_dims=None, rope_base=10000.0):
        super().__init__()
        self.c, self.h, self.kvh = c, heads, kv_heads
        self.dh = c // heads
        self.causal, self.window, self.pos, self.kind = causal, window, pos, kind
        self.dropout = dropout
        self.memory = memory          # None: not in segments; else M (>= 0)
        self.rope_dims, self.rope_base = rope_dims, rope_base
        kvd = kv_heads * self.dh
        bq, bk, bv, bo = bias          # per projection
        self.q = nn.Linear(c, c, bias=bq)
        self.k = nn.Linear(c, kvd, bias=bk)
        self.v = nn.Linear(c, kvd, bias=bv)
        self.o = nn.Linear(c, c, bias=bo)
        if pos == "relative":
            self.r_proj = nn.Linear(c, c, bias=False)
            self.u = nn.Parameter(torch.zeros(heads, self.dh))
            self.v_bias = nn.Parameter(torch.zeros(heads, self.dh))
        if pos == "alibi":
            self.register_buffer("slopes", alibi_slopes(heads), persistent=False)
        if kind == "performer":
            m = features
            g = torch.Generator().manual_seed(0)
            blocks = []
            for _ in range(-(-m // self.dh)):
                a = torch.randn(self.dh, self.dh, generator=g)
                qm, _ = torch.linalg.qr(a)
                blocks.append(qm.T)
            w = torch.cat(blocks)[:m]
            norms = torch.randn(m, self.dh, generator=g).norm(dim=1, keepdim=True)
            self.register_buffer("features", w * norms)
        if kind == "linformer":
            self.E = nn.Parameter(torch.randn(proj, max_len) / math.sqrt(proj))
            self.F = nn.Parameter(torch.randn(proj, max_len) / math.sqrt(proj))
            self.max_len = max_len

    # -------------------------------------------------------------- feature maps
    def _performer(self, x, is_query):
        d = self.dh
        proj = x @ self.features.T.to(x.dtype) / d ** 0.25                    # (B, H, T, m)
        sq = (x * x).sum(-1, keepdim=True) / (2 * math.sqrt(d))
        z = proj - sq
        if is_query:
            # per-query shift: cancels between numerator and denominator
            z = z - z.amax(dim=-1, keepdim=True).detach()
        # keys are not shifted: the same map in every chunk, so streaming equals forward
        return torch.exp(z) / math.sqrt(self.features.shape[0])

    def forward(self, x, state=None, lengths=None):
        b, t, _ = x.shape
        x = _dense(x)
        if self.causal or (state is not None and self.memory is None):
            lengths = None        # causal: a valid query sees only earlier, valid keys
        q = split_heads(self.q(x), self.h)
        k = split_heads(self.k(x), self.kvh)
        v = split_heads(self.v(x), self.kvh)
        drop = self.dropout if self.training else 0.0
        if self.memory is not None:
            return self._segment(x, q, k, v, state, lengths)
        start = 0
        if state is not None:
            start = state.get("pos", 0)
            state["pos"] = start + t
        if self.pos == "rope":
            q, k = rope(q, start, self.rope_dims, self.rope_base), rope(k, start, self.rope_dims, self.rope_base)
        if self.kind in ("linear", "performer"):
            return self._linear_kind(q, k, v, state, lengths)
        if self.kind == "linformer":
            if t > self.max_len:
                raise ValueError(f"linformer attention has max_len={self.max_len}, got T={t}")
            if lengths is not None:      # padded keys and values add nothing to the projections
                valid = time_mask(lengths, t)[:, None, :, None]
                k, v = k.masked_fill(~valid, 0), v.masked_fill(~valid, 0)
            k = torch.einsum("pt,bhtd->bhpd", self.E[:, :t], k)
            v = torch.einsum("pt,bhtd->bhpd", self.F[:, :t], v)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
            return self.o(merge_heads(y))
        if state is not None:
            return self._stream_softmax(q, k, v, state, start)
        keys = None if lengths is None else key_mask(lengths, t)[:, None, None, :]    # (B, 1, 1, T)
        if self.pos == "relative":
            y = self._relative(q, k, v, keys)
        elif self.window is not None and t > self.window:
            y = self._windowed(q, k, v, lengths)
        elif self.pos == "alibi":
            # (1, H, T, T): a 4-D bias keeps the CPU on the fused kernel (3-D falls to math);
            # passed as a temporary, so inference frees it as soon as the kernel returns
            bias = self._alibi(t, q)[None]
            if keys is not None:
                bias = bias.masked_fill(~keys, float("-inf"))
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop,
                                               enable_gqa=self.kvh != self.h)
        elif keys is not None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, dropout_p=drop,
                                               enable_gqa=self.kvh != self.h)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, dropout_p=drop,
                                               enable_gqa=self.kvh != self.h)
        return self.o(merge_heads(y))

    def _alibi(self, t, q):
        """The (H, T, T) ALiBi bias -slope_h·|i - j| (causal: keys after the query
        -inf), written into one (H, T, T) tensor in place: j - i from positions
        in float32 or wider (exact), times the slopes, then cast to q's dtype
        (bf16/fp16: one rounding); causal masking needs a (T, T) bool."""
        dtype = torch.promote_types(q.dtype, torch.float32)
        pos = torch.arange(t, device=q.device, dtype=dtype)
        h = self.slopes.shape[0]
        bias = pos.expand(h, 1, t) - pos[:, None].expand(h, t, 1)        # j - i
        slopes = self.slopes.to(dtype)[:, None, None]
        if self.causal:
            bias.mul_(slopes).masked_fill_(pos[None, :] > pos[:, None], float("-inf"))
        else:
            bias.abs_().mul_(-slopes)
        return bias.to(q.dtype)

    def _linear_kind(self, q, k, v, state, lengths=None):
        if self.kind == "linear":
            fq, fk = elu1(q), elu1(k)
        else:
            fq, fk = self._performer(q, True), self._performer(k, False)
        if lengths is not None:          # padded keys add nothing to the sums over keys
            fk = fk.masked_fill(~key_mask(lengths, fk.shape[2])[:, None, :, None], 0)
        if state is None:
            return self.o(merge_heads(linear_attention(fq, fk, v, self.causal)))
        # streaming (causal): carry S = sum phi(k)^T [v, 1]
        vp = torch.cat([v, v.new_ones(*v.shape[:-1], 1)], -1)
        s = state.get("S")
        if s is None:
            s = fk.new_zeros(*fk.shape[:2], fk.shape[-1], vp.shape[-1])
        intra = (fq @ fk.transpose(-2, -1)).tril() @ vp
        out = intra + fq @ s
        state["S"] = s + fk.transpose(-2, -1) @ vp
        return self.o(merge_heads(out[..., :-1] / out[..., -1:]))

    def _drop(self) -> float:
        """Dropout on the attention probabilities: training only."""
        return self.dropout if self.training else 0.0

    def _windowed(self, q, k, v, lengths=None):
        """Blocked sliding window: O(T·W); with per-sequence lengths, no key at
        or past a sequence's length (but its first)."""
        b, h, t, d = q.shape
        w = self.window
        nb = -(-t // w)
        pad = nb * w - t
        rep = self.h // self.kvh
        # (B, H, nb, W, dh), contiguous: padding nothing copies q with its heads-transposed
        # strides, and SDPA would copy the scaled blocks again for its bmm
        qb = F.pad(q, (0, 0, 0, pad)).contiguous().view(b, h, nb, w, d)
        # keys and values padded once, by a block before and a block plus `pad` after:
        # blocks -1 .. nb (heads repeated first when grouped; the repeat is freed here)
        kb, vb = (F.pad(z.repeat_interleave(rep, dim=1) if rep > 1 else z, (0, 0, w, w + pad))
                  .view(b, h, nb + 2, w, d) for z in (k, v))
        nk = 2 if self.causal else 3
        kk = torch.cat([kb[:, :, i:i + nb] for i in range(nk)], dim=3)  # (B, H, nb, nk·W, dh)
        vv = torch.cat([vb[:, :, i:i + nb] for i in range(nk)], dim=3)
        qpos = torch.arange(nb * w, device=q.device).view(nb, w, 1)
        kpos = (torch.arange(nb, device=q.device).view(nb, 1) * w - w
                + torch.arange(nk * w, device=q.device).view(1, -1)).view(nb, 1, nk * w)
        if self.causal:
            mask = (kpos <= qpos) & (kpos >= qpos - w)
        else:
            mask = (kpos - qpos).abs() <= w
        mask = mask & (kpos >= 0) & (kpos < t)                           # (nb, W, nk·W)
        if lengths is not None:
            mask = (mask & ((kpos < lengths.view(-1, 1, 1, 1)) | (kpos == 0)))[:, None]   # (B, 1, nb, W, nk·W)
        if self.pos == "alibi":
            # the band's ALiBi bias -slope_h·|i - j| (causal keys are never after the
            # query), as _alibi and the streaming step make it: (H, nb, W, nk·W)
            # (B, H, ... with lengths), from float32 distances, cast once to q's dtype
            dtype = torch.promote_types(q.dtype, torch.float32)
            mask = ((kpos - qpos).abs().to(dtype) * -self.slopes.to(dtype)[:, None, None, None]
                    ).masked_fill(~mask, float("-inf")).to(q.dtype)
        y = F.scaled_dot_product_attention(qb, kk, vv, attn_mask=mask, dropout_p=self._drop())
        return y.reshape(b, h, nb * w, d)[:, :, :t]

    def _relative(self, q, k, v, mask):
        """Transformer-XL: q (B,H,Tq,dh), k/v (B,H,Tk,dh) with the memory first."""
        probs = self._relative_scores(q, k, mask).softmax(-1)   # the scores are freed here
        if self._drop():
            probs = F.dropout(probs, self._drop())
        return probs @ v

    def _relative_scores(self, q, k, mask):
        """(AC + BD) / sqrt(dh), masked, in one (B, H, Tq, Tk) tensor: BD and the
        scaling and masking are applied in place (autograd keeps none of the
        overwritten values), so BD's product and shifted copy are freed at once."""
        tq, tk = q.shape[2], k.shape[2]
        r = self.r_proj(sinusoid(tk, self.c, q.device, q.dtype).flip(0))   # positions tk-1 .. 0
        r = r.view(tk, self.h, self.dh).transpose(0, 1)                     # (H, Tk, dh)
        scores = (q + self.u[:, None].to(q.dtype)) @ k.transpose(-2, -1)   # AC
        bd = (q + self.v_bias[:, None].to(q.dtype)) @ r.transpose(-2, -1)   # (B, H, Tq, Tk) against Tk-1..0
        if self.causal:
            scores += rel_shift(bd)         # a key after the query is masked: only the lower triangle counts
        else:
            scores += bd.flatten(2).index_select(2, distance_index(tq, tk, q.device)).view(bd.shape)
        bd = None
        scores /= math.sqrt(self.dh)
        if mask is None:
            mask = _seg_mask(tq, tk - tq, True, q.device) if self.causal else None
        if mask is not None:
            scores.masked_fill_(~mask, float("-inf"))
        return scores

    def _segment(self, x, q, k, v, state, lengths=None):
        """One (piece of a) segment with per-layer memory: `mem` holds the last M
        inputs of earlier segments, `cur` this segment's earlier inputs (both detached).
        lengths (not causal): each sequence's valid steps in this piece; its
        later keys are masked. The memory and `cur` are all valid: a sequence's
        padding comes after its real steps, so it reaches the memory only after
        its last valid piece (whose outputs are then padding too)."""
        mem, cur = state.get("mem"), state.get("cur")
        prev = [z for z in (mem, cur) if z is not None]
        m = sum(z.shape[1] for z in prev)
        if m:
            xm = torch.cat(prev, 1) if len(prev) > 1 else prev[0]
            km = split_heads(self.k(xm), self.kvh)
            vm = split_heads(self.v(xm), self.kvh)
            k, v = torch.cat([km, k], 2), torch.cat([vm, v], 2)
        t = q.shape[2]
        mask = _seg_mask(t, m, self.causal, x.device)
        if lengths is not None:       # keys at or past a sequence's length; key 0 always (no empty row)
            mask = mask & key_mask(lengths + m, m + t)[:, None, None, :]         # (B, 1, t, m + t)
        if self.pos == "relative":
            y = self._relative(q, k, v, mask)
        else:
            if self.pos == "rope":
                q, k = rope(q, m, self.rope_dims, self.rope_base), rope(k, 0, self.rope_dims, self.rope_base)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self._drop(),
                                               enable_gqa=self.kvh != self.h)
        state["cur"] = x.detach() if cur is None else torch.cat([cur, x.detach()], 1)
        return self.o(merge_heads(y))

    def end_segment(self, state):
        """After a segment: mem = cat(mem, segment)[-M:] (no gradient)."""
        mem, cur = state.get("mem"), state.get("cur")
        full = cur if mem is None else torch.cat([mem, cur], 1)
        # a compact copy: a view would keep all of `full` alive (and saved) for backward
        state["mem"] = full[:, max(full.shape[1] - self.memory, 0):].clone() if self.memory else None
        state["cur"] = None

    def _stream_softmax(self, q, k, v, state, start):
        """Causal streaming: a growing (or window-bounded) key/value cache."""
        kc, vc = state.get("k"), state.get("v")
        if kc is not None:
            k, v = torch.cat([kc, k], 2), torch.cat([vc, v], 2)
        t, tk = q.shape[2], k.shape[2]
        past = tk - t
        qpos = torch.arange(past, tk, device=q.device)[:, None]
        kpos = torch.arange(tk, device=q.device)[None, :]
        mask = kpos <= qpos
        if self.window is not None:
            mask = mask & (kpos >= qpos - self.window)
        if self.pos == "relative":
            y = self._relative(q, k, v, mask)
        elif self.pos == "alibi":
            dist = (qpos - kpos).to(q.dtype)
            bias = (-self.slopes.to(q.dtype)[:, None, None] * dist).masked_fill(~mask, float("-inf"))
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, enable_gqa=self.kvh != self.h)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.kvh != self.h)
        keep = tk if self.window is None else min(tk, self.window)
        state["k"], state["v"] = k[:, :, tk - keep:], v[:, :, tk - keep:]
        return self.o(merge_heads(y))


def _seg_mask(t, m, causal, device):
    qpos = torch.arange(m, m + t, device=device)[:, None]
    kpos = torch.arange(m + t, device=device)[None, :]
    if causal:
        return kpos <= qpos
    return torch.ones(t, m + t, dtype=torch.bool, device=device)


class CrossAttention(nn.Module):
    def __init__(self, c, cc, heads, kv_heads, bias):
        super().__init__()
        self.h, self.kvh, self.dh = heads, kv_heads, c // heads
        kvd = kv_heads * self.dh
        bq, bk, bv, bo = bias          # per projection
        self.q = nn.Linear(c, c, bias=bq)
        self.k = nn.Linear(cc, kvd, bias=bk)
        self.v = nn.Linear(cc, kvd, bias=bv)
        self.o = nn.Linear(c, c, bias=bo)

    def forward(self, x, context, state=None, lengths=None, context_lengths=None):
        # the queries are position-wise (lengths= changes nothing); the context's
        # lengths mask its padded keys
        q = split_heads(self.q(x), self.h)
        if state is not None and "k" in state:     # streaming: the context's keys and values, projected once
            k, v = state["k"], state["v"]
        else:
            k = split_heads(self.k(context), self.kvh)
            v = split_heads(self.v(context), self.kvh)
            if state is not None:
                state["k"], state["v"] = k, v
        keys = None if context_lengths is None else key_mask(context_lengths, k.shape[2])[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, enable_gqa=self.kvh != self.h)
        return self.o(merge_heads(y))
