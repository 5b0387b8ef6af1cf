"""Small hand-written PyTorch references for the cost tests, written from
docs/lowering.md (the same contract the backend and tests/twins.py follow),
and the helper that checks one spec against one reference."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import measure
import seqdsl
from seqdsl.cost.estimate import estimate


# ------------------------------------------------------------------ attention
def rope(x):
    """Rotate-half RoPE (GPT-NeoX/LLaMA layout), base 10000; x (B, H, T, dh)."""
    t, dh = x.shape[-2], x.shape[-1]
    inv = 1.0 / (10000 ** (torch.arange(0, dh, 2, dtype=torch.float32) / dh))
    ang = torch.arange(t, dtype=torch.float32)[:, None] * inv[None]
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    x1, x2 = x[..., : dh // 2], x[..., dh // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def alibi(h, t, causal):
    slopes = torch.tensor([2 ** (-8 * (i + 1) / h) for i in range(h)])
    i = torch.arange(t)[:, None]
    j = torch.arange(t)[None]
    dist = (i - j).float() if causal else (i - j).abs().float()
    bias = -slopes[:, None, None] * dist                         # (H, T, T)
    if causal:
        bias = bias.masked_fill(j > i, float("-inf"))
    return bias[None]                                            # (1, H, T, T)


class Attention(nn.Module):
    def __init__(self, c, heads, kv_heads=None, causal=False, window=None, pos=None, kind="softmax",
                 features=None, proj=None, max_len=None, bias=True):
        super().__init__()
        self.h, self.kvh = heads, kv_heads or heads
        self.dh = c // heads
        self.causal, self.window, self.pos, self.kind = causal, window, pos, kind
        self.q = nn.Linear(c, c, bias)
        self.k = nn.Linear(c, self.kvh * self.dh, bias)
        self.v = nn.Linear(c, self.kvh * self.dh, bias)
        self.o = nn.Linear(c, c, bias)
        if kind == "linformer":
            self.E = nn.Parameter(torch.randn(proj, max_len) / max_len)
            self.F = nn.Parameter(torch.randn(proj, max_len) / max_len)
        if kind == "performer":
            self.m = features or max(1, int(self.dh * math.log(self.dh)))
            w = torch.randn(self.m, self.dh)
            self.register_buffer("W", w)

    def forward(self, x):
        B, T, C = x.shape
        q = self.q(x).view(B, T, self.h, self.dh).transpose(1, 2)           # (B, H, T, dh)
        k_lin, v_lin = self.k(x), self.v(x)
        if self.kind == "linformer":
            k_lin = torch.matmul(self.E[:, :T], k_lin)                     # (B, proj, kvd)
            v_lin = torch.matmul(self.F[:, :T], v_lin)
        S = k_lin.shape[1]
        k = k_lin.view(B, S, self.kvh, self.dh).transpose(1, 2)            # (B, kvh, S, dh)
        v = v_lin.view(B, S, self.kvh, self.dh).transpose(1, 2)
        if self.pos == "rope":
            q, k = rope(q), rope(k)
        if self.kind in ("linear", "performer"):
            out = self.linear_core(q, k, v)
        elif self.window is not None and T > self.window:
            out = self.banded(q, k, v)
        else:
            mask = alibi(self.h, T, self.causal) if self.pos == "alibi" else None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                 is_causal=self.causal and mask is None,
                                                 enable_gqa=self.kvh != self.h)
        return self.o(out.transpose(1, 2).reshape(B, T, C))

    def banded(self, q, k, v):
        B, H, T, dh = q.shape
        W = self.window
        nb = -(-T // W)
        right = 0 if self.causal else W
        qb = F.pad(q, (0, 0, 0, nb * W - T)).view(B, H, nb, W, dh)         # (B, H, nb, W, dh)
        kp = F.pad(k, (0, 0, W, nb * W - T + right))                       # block -1 .. nb (+1)
        vp = F.pad(v, (0, 0, W, nb * W - T + right))
        n_blocks = 3 if right else 2
        kb = torch.cat([kp[:, :, i * W: i * W + nb * W].reshape(B, -1, nb, W, dh) for i in range(n_blocks)], 3)
        vb = torch.cat([vp[:, :, i * W: i * W + nb * W].reshape(B, -1, nb, W, dh) for i in range(n_blocks)], 3)
        if self.kvh != self.h:
            kb = kb.repeat_interleave(self.h // self.kvh, 1)
            vb = vb.repeat_interleave(self.h // self.kvh, 1)
        qpos = torch.arange(nb * W).view(nb, W, 1)
        kpos = torch.stack([torch.arange((i - 1) * W, (i - 1) * W + n_blocks * W) for i in range(nb)])[:, None]
        mask = (kpos >= 0) & (kpos < T) & (kpos >= qpos - W) & (kpos <= qpos if self.causal else kpos <= qpos + W)
        out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask)  # (B, H, nb, W, dh)
        return out.reshape(B, H, nb * W, dh)[:, :, :T]

    def phi(self, x, is_query):
        if self.kind == "linear":
            return F.elu(x) + 1
        dh = x.shape[-1]
        proj = x @ self.W.t() / dh ** 0.25
        norm = (x ** 2).sum(-1, keepdim=True) / (2 * math.sqrt(dh))
        z = proj - norm
        if is_query:      # the max shift is per query row, for queries only (docs/lowering.md)
            z = z - z.amax(-1, keepdim=True).detach()
        return torch.exp(z) / math.sqrt(self.m)

    def linear_core(self, q, k, v):
        B, H, T, dh = q.shape
        pq, pk = self.phi(q, True), self.phi(k, False)
        vv = torch.cat([v, torch.ones_like(v[..., :1])], -1)                 # V' = [V, 1]
        if not self.causal:
            kv = pk.transpose(-1, -2) @ vv                                  # (B, H, m, dh+1)
            out = pq @ kv
        else:
            c = 64
            nc = -(-T // c)
            pad = nc * c - T
            pad_to = lambda z: torch.cat([z, z.new_zeros(B, H, pad, z.shape[-1])], 2)  # noqa: E731 - always a copy
            pq = pad_to(pq).view(B, H, nc, c, -1)                           # (B, H, nc, c, m)
            pk = pad_to(pk).view(B, H, nc, c, -1)
            vv = pad_to(vv).view(B, H, nc, c, -1)
            intra = (pq @ pk.transpose(-1, -2)).tril() @ vv
            kv = pk.transpose(-1, -2) @ vv                                  # (B, H, nc, m, dh+1)
            state = kv.cumsum(2) - kv
            out = (intra + pq @ state).view(B, H, nc * c, -1)[:, :, :T]
        return out[..., :dh] / out[..., dh:]


def sinusoid(n, c):
    pos = torch.arange(n - 1, -1, -1, dtype=torch.float32)[:, None]
    inv = 1.0 / (10000 ** (torch.arange(0, c, 2, dtype=torch.float32) / c))
    ang = pos * inv[None]
    return torch.stack([ang.sin(), ang.cos()], -1).view(n, c)


class SegmentAttention(nn.Module):
    """Attention with Transformer-XL memory (docs/lowering.md, Segments), run
    over `segments(length, memory)`; pos=relative uses the explicit math."""

    def __init__(self, c, heads, causal=True, relative=False, length=None, memory=0):
        super().__init__()
        self.h, self.dh, self.causal, self.relative = heads, c // heads, causal, relative
        self.length, self.memory = length, memory
        self.q, self.k, self.v, self.o = (nn.Linear(c, c) for _ in range(4))
        if relative:
            self.r_proj = nn.Linear(c, c, bias=False)
            self.u = nn.Parameter(torch.zeros(heads, self.dh))
            self.v_bias = nn.Parameter(torch.zeros(heads, self.dh))

    def forward(self, x):
        B, T, C = x.shape
        L = self.length or T
        mem = x[:, :0]
        outs = []
        for s in range(0, T, L):
            xs = x[:, s:s + L]
            xs = xs.clone(memory_format=torch.contiguous_format) if L < T else xs  # as the lowering
            outs.append(self.segment(xs, mem))
            if self.memory:
                mem = torch.cat([mem, xs], 1)[:, -self.memory:].detach().clone()  # compact, as the lowering
        return torch.cat(outs, 1) if len(outs) > 1 else outs[0]

    def segment(self, xs, mem):
        B, Ls, C = xs.shape
        klen = mem.shape[1] + Ls
        q = self.q(xs).view(B, Ls, self.h, self.dh).transpose(1, 2)
        # memory rows are projected on their own: they are detached, so their
        # projection needs no input gradient (as the lowering does it)
        k, v = self.k(xs), self.v(xs)
        if mem.shape[1]:
            k, v = torch.cat([self.k(mem), k], 1), torch.cat([self.v(mem), v], 1)
        k = k.view(B, klen, self.h, self.dh).transpose(1, 2)
        v = v.view(B, klen, self.h, self.dh).transpose(1, 2)
        m = klen - Ls
        allowed = torch.ones(Ls, klen, dtype=torch.bool)
        if self.causal:
            allowed = torch.arange(klen)[None] <= torch.arange(Ls)[:, None] + m
        if not self.relative:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        else:
            r = self.r_proj(sinusoid(klen, C)).view(klen, self.h, self.dh)
            ac = (q + self.u[:, None]) @ k.transpose(-1, -2)
            bd = torch.einsum("bhid,jhd->bhij", q + self.v_bias[:, None], r)
            if self.causal:
                bd = F.pad(bd, (1, 0)).view(B, self.h, klen + 1, Ls)[:, :, 1:].view(B, self.h, Ls, klen)
            else:   # a later key by its distance: column klen-1-|i + m - j| of row i, kept as an int32 index
                dist = (torch.arange(m, klen)[:, None] - torch.arange(klen)[None]).abs()
                idx = (torch.arange(Ls)[:, None] * klen + klen - 1 - dist).view(-1).to(torch.int32)
                bd = bd.flatten(2).index_select(2, idx).view(B, self.h, Ls, klen)
            score = ((ac + bd) / math.sqrt(self.dh)).masked_fill(~allowed, float("-inf"))
            out = score.softmax(-1) @ v
        return self.o(out.transpose(1, 2).reshape(B, Ls, C))


# ------------------------------------------------------------------ checking
def check(spec: str, build, lengths, batch=2, channels=None, dtype_check=True, saved_tol=0.10,
          flops_tol=0.005, int_input=False, extra_dims=None, inputs=None):
    """Estimate `spec` and measure build() at each length: params equal,
    forward and training FLOPs within flops_tol, saved bytes within saved_tol."""
    model = seqdsl.parse(spec).model()
    torch.manual_seed(0)
    module = build()
    assert measure.params(module) == model.params, (measure.params(module), model.params)
    report = []
    for t in lengths:
        seq = {d: t for d in model.seq_symbols}
        if extra_dims:
            seq.update(extra_dims)
        point = estimate(model, seq=seq, batch=batch).points[0]
        xs = inputs(batch, t) if inputs else [torch.randn(batch, t, channels)]
        fwd, train = measure.forward_and_train_flops(module, *xs)
        saved = measure.saved_bytes(module, *xs)
        report.append((t, point.flops_forward, fwd, point.flops_train, train, point.activation_bytes, saved))
        assert _close(point.flops_forward, fwd, flops_tol), ("forward", t, point.flops_forward, fwd)
        assert _close(point.flops_train, train, flops_tol), ("train", t, point.flops_train, train)
        assert _close(point.activation_bytes, saved, saved_tol), ("saved", t, point.activation_bytes, saved)
    return report


def _close(estimated, measured, tol):
    if measured == 0:
        return estimated == 0
    return abs(estimated - measured) <= tol * measured
