"""Hand-written PyTorch twins of the bundled specs (specs/*.seq) and of the
shared conformance specs (../shared/conformance/specs/*.seq).

Each twin is the model an expert would write by hand in plain PyTorch
(nanoGPT style: nn.Linear, nn.LSTM, F.scaled_dot_product_attention), with the
layer internals of docs/lowering.md, so that

* its parameter count equals the spec's `seqdsl check` count to the last weight
  (tied weights counted once), and
* its forward is real: output shapes equal the spec's symbolic shapes, and the
  cost engineers can measure FLOPs and time on it.

Registry: ``TWINS[key] = Twin(path, factory, model)``; ``TWINS[key]()`` builds
the module. Keys are the spec's stem for specs/*.seq, ``conformance/<stem>``
for the shared corpus and ``<stem>:<model>`` for files with several models.
``example_inputs(key, batch, seq)`` makes inputs of the right dtypes and sizes.

Only this file and the tests that need it import torch.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
EXAMPLES = ROOT / "examples"
CONFORMANCE = ROOT.parent / "shared" / "conformance" / "specs"


# ====================================================================== helpers
def sinusoid_table(n: int, c: int, reverse: bool = False) -> torch.Tensor:
    """Sinusoidal positions (Vaswani et al.): sin on even, cos on odd channels,
    base 10000. reverse=True gives positions n-1 .. 0 (Transformer-XL's r)."""
    pos = torch.arange(n, dtype=torch.float32)
    if reverse:
        pos = pos.flip(0)
    inv = 1.0 / (10000 ** (torch.arange(0, c, 2, dtype=torch.float32) / c))
    ang = pos[:, None] * inv[None]                                  # (n, c/2)
    return torch.stack([ang.sin(), ang.cos()], -1).view(n, c)       # interleave: even sin, odd cos


def apply_rope(x: torch.Tensor, start: int = 0) -> torch.Tensor:
    """Rotate-half RoPE (GPT-NeoX / LLaMA layout), base 10000; x (B, H, T, dh)."""
    t, dh = x.shape[-2], x.shape[-1]
    inv = 1.0 / (10000 ** (torch.arange(0, dh, 2, dtype=torch.float32, device=x.device) / dh))
    pos = torch.arange(start, start + t, dtype=torch.float32, device=x.device)
    ang = torch.cat([pos[:, None] * inv[None]] * 2, -1)             # (T, dh)
    x1, x2 = x[..., : dh // 2], x[..., dh // 2:]
    return x * ang.cos() + torch.cat([-x2, x1], -1) * ang.sin()


def alibi_bias(heads: int, t: int, causal: bool, device=None) -> torch.Tensor:
    """ALiBi (Press et al.): -slope_h * distance, slopes 2^(-8(h+1)/H); (1, H, T, T)."""
    slopes = torch.tensor([2 ** (-8 * (h + 1) / heads) for h in range(heads)], device=device)
    i = torch.arange(t, device=device)[:, None]
    j = torch.arange(t, device=device)[None]
    dist = (i - j).float() if causal else (i - j).abs().float()
    bias = -slopes[:, None, None] * dist                            # (H, T, T)
    if causal:
        bias = bias.masked_fill(j > i, float("-inf"))
    return bias[None]


def orthogonal_features(m: int, d: int, seed: int = 0) -> torch.Tensor:
    """FAVOR+ random features: [m, d] blocks of orthogonal rows with
    chi-distributed norms (Choromanski et al. 2021), from a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    blocks = []
    for _ in range(-(-m // d)):
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
        blocks.append(q.T)
    w = torch.cat(blocks)[:m]
    norms = torch.randn(m, d, generator=g).norm(dim=1, keepdim=True)
    return w * norms


# ====================================================================== position-wise
class Residual(nn.Module):
    """x + body(x)."""

    def __init__(self, *body: nn.Module):
        super().__init__()
        self.body = nn.Sequential(*body)

    def forward(self, x):
        return x + self.body(x)


class Act(nn.Module):
    FNS = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def forward(self, x):
        return self.FNS[self.name](x)


class MLP(nn.Module):
    """fc1 -> act -> dropout -> fc2, both nn.Linear with bias (gelu is exact erf gelu)."""

    def __init__(self, c: int, hidden: int, out: int | None = None, act: str = "gelu", dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(c, hidden)
        self.act = Act(act)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, out or c)

    def forward(self, x):
        return self.fc2(self.drop(self.act(self.fc1(x))))


class SwiGLU(nn.Module):
    """w2(silu(w1 x) * w3 x), three bias-free projections (Shazeer 2020)."""

    def __init__(self, c: int, hidden: int, out: int | None = None):
        super().__init__()
        self.w1 = nn.Linear(c, hidden, bias=False)
        self.w2 = nn.Linear(hidden, out or c, bias=False)
        self.w3 = nn.Linear(c, hidden, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class BatchNorm(nn.Module):
    """nn.BatchNorm1d over the channel axis of channels-last data."""

    def __init__(self, c: int, eps: float = 1e-5):
        super().__init__()
        self.bn = nn.BatchNorm1d(c, eps=eps)

    def forward(self, x):
        return self.bn(x.reshape(-1, x.shape[-1])).view(x.shape)


class PosEnc(nn.Module):
    """x + positions[:T]: fixed sinusoids, or a learned [max_len, C] table."""

    def __init__(self, c: int, kind: str = "sinusoidal", max_len: int | None = None):
        super().__init__()
        self.kind = kind
        if kind == "learned":
            self.weight = nn.Parameter(torch.randn(max_len, c) * 0.02)

    def forward(self, x):
        T, C = x.shape[1], x.shape[2]
        if self.kind == "learned":
            return x + self.weight[:T]
        return x + sinusoid_table(T, C).to(x)


class TiedLinear(nn.Module):
    """The output head sharing an nn.Embedding's weight (plus its own bias, if any)."""

    def __init__(self, embedding: nn.Embedding, bias: bool):
        super().__init__()
        self.weight = embedding.weight                              # same Parameter object
        self.bias = nn.Parameter(torch.zeros(embedding.num_embeddings)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


# ====================================================================== convolutions
class Conv(nn.Module):
    """convKd over the K axes before channels (channels-last in and out); axes
    between B and those are folded into the batch. Padding by explicit F.pad:
    same = TensorFlow's rule (output ceil(n/s)), causal = k-1 on the left."""

    def __init__(self, ndim: int, c: int, out: int, kernel, stride=1, padding="same", groups=1, bias=True):
        super().__init__()
        as_tuple = lambda v: tuple(v) if isinstance(v, (list, tuple)) else (v,) * ndim  # noqa: E731
        self.ndim, self.kernel, self.stride, self.padding = ndim, as_tuple(kernel), as_tuple(stride), padding
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[ndim]
        self.conv = conv(c, out, self.kernel, self.stride, padding=0, groups=groups, bias=bias)

    def pads(self, sizes):
        pads = []
        for n, k, s in zip(sizes, self.kernel, self.stride):
            if self.padding == "same":
                total = max((-(-n // s) - 1) * s + k - n, 0)
                pads.append((total // 2, total - total // 2))
            elif self.padding == "causal":
                pads.append((k - 1, 0))
            else:
                pads.append((0, 0))
        return [p for pair in reversed(pads) for p in pair]            # F.pad: last axis first

    def forward(self, x):
        lead, sizes, C = x.shape[: -1 - self.ndim], x.shape[-1 - self.ndim: -1], x.shape[-1]
        x = x.reshape(-1, *sizes, C).movedim(-1, 1)                 # (N, C, *sizes)
        y = self.conv(F.pad(x, self.pads(sizes))).movedim(1, -1)    # (N, *sizes', out)
        return y.reshape(*lead, *y.shape[1:]).contiguous()          # dense channels-last


class Unsqueeze(nn.Module):
    def forward(self, x):
        return x.unsqueeze(-1)


class Flatten(nn.Module):
    def forward(self, x):
        return x.flatten(2)


class SpatialPool(nn.Module):
    def __init__(self, how: str):
        super().__init__()
        self.how = how

    def forward(self, x):                                           # [B, T, .., C] -> [B, T, C]
        dims = tuple(range(2, x.dim() - 1))
        return x.mean(dims) if self.how == "mean" else x.amax(dims)


class TimeMean(nn.Module):
    def forward(self, x):
        return x.mean(1)


class TimeLast(nn.Module):
    def forward(self, x):
        return x[:, -1]


# ====================================================================== attention
class Attention(nn.Module):
    """Self-attention of docs/lowering.md: projections q, k, v, o; heads split
    (B, T, H, dh) -> (B, H, T, dh); one of the kernels below per configuration.

    Inside `Segments` (mem_len is not None) keys and values are cat(mem, x),
    with mem the last mem_len inputs this layer saw, detached."""

    def __init__(self, c, heads, kv_heads=None, causal=False, window=None, pos=None, kind="softmax",
                 features=None, proj=None, max_len=None, dropout=0.0, bias=True):
        super().__init__()
        self.h, self.kvh, self.dh = heads, kv_heads or heads, c // heads
        self.causal, self.window, self.pos, self.kind, self.dropout = causal, window, pos, kind, dropout
        self.q = nn.Linear(c, c, bias=bias)
        self.k = nn.Linear(c, self.kvh * self.dh, bias=bias)
        self.v = nn.Linear(c, self.kvh * self.dh, bias=bias)
        self.o = nn.Linear(c, c, bias=bias)
        if pos == "relative":                                       # Transformer-XL
            self.r_proj = nn.Linear(c, c, bias=False)
            self.u = nn.Parameter(torch.zeros(heads, self.dh))
            self.v_bias = nn.Parameter(torch.zeros(heads, self.dh))
        if kind == "linformer":
            self.E = nn.Parameter(torch.randn(proj, max_len) / math.sqrt(max_len))
            self.F = nn.Parameter(torch.randn(proj, max_len) / math.sqrt(max_len))
            self.max_len = max_len
        if kind == "performer":
            self.m = features or max(1, int(self.dh * math.log(self.dh)))
            self.register_buffer("W", orthogonal_features(self.m, self.dh))
        self.mem_len: int | None = None                             # set by Segments
        self.mem: torch.Tensor | None = None

    def heads_of(self, z, n):                                       # (B, T, n*dh) -> (B, n, T, dh)
        B, T, _ = z.shape
        return z.view(B, T, n, self.dh).transpose(1, 2)

    def forward(self, x):
        B, T, C = x.shape
        if self.mem_len is not None or self.pos == "relative":
            return self.forward_with_memory(x)
        q = self.heads_of(self.q(x), self.h)                        # (B, H, T, dh)
        k_in, v_in = self.k(x), self.v(x)                           # (B, T, kvh*dh)
        if self.kind == "linformer":
            if T > self.max_len:
                raise ValueError(f"linformer attention got T={T} > max_len={self.max_len}")
            k_in = self.E[:, :T] @ k_in                             # (B, proj, kvh*dh)
            v_in = self.F[:, :T] @ v_in
        k, v = self.heads_of(k_in, self.kvh), self.heads_of(v_in, self.kvh)
        if self.pos == "rope":
            q, k = apply_rope(q), apply_rope(k)
        p = self.dropout if self.training else 0.0
        if self.kind in ("linear", "performer"):
            y = self.linear_attention(q, k, v)
        elif self.window is not None and T > self.window:
            y = self.sliding_window(q, k, v, p)
        else:
            mask = alibi_bias(self.h, T, self.causal, x.device) if self.pos == "alibi" else None
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
                                               is_causal=self.causal and mask is None,
                                               enable_gqa=self.kvh != self.h)
        return self.o(y.transpose(1, 2).reshape(B, T, C))

    # -- window=W, T > W: blocked, each query block sees 2 (causal) or 3 key blocks
    def sliding_window(self, q, k, v, p):
        B, H, T, dh = q.shape
        W = self.window
        nb = -(-T // W)
        right = 0 if self.causal else W
        n_blocks = 2 if self.causal else 3
        # blocks put the head axis third from last, where SDPA's enable_gqa looks for it
        qb = F.pad(q, (0, 0, 0, nb * W - T)).view(B, H, nb, W, dh).transpose(1, 2)  # (B, nb, H, W, dh)
        kp = F.pad(k, (0, 0, W, nb * W - T + right))                             # one block of left pad
        vp = F.pad(v, (0, 0, W, nb * W - T + right))
        kb = torch.cat([kp[:, :, i * W: i * W + nb * W].reshape(B, self.kvh, nb, W, dh)
                        for i in range(n_blocks)], 3).transpose(1, 2)            # (B, nb, kvh, nW, dh)
        vb = torch.cat([vp[:, :, i * W: i * W + nb * W].reshape(B, self.kvh, nb, W, dh)
                        for i in range(n_blocks)], 3).transpose(1, 2)
        qpos = torch.arange(nb * W, device=q.device).view(nb, W, 1)
        kpos = (torch.arange(nb, device=q.device).view(nb, 1, 1) - 1) * W \
            + torch.arange(n_blocks * W, device=q.device).view(1, 1, -1)        # (nb, 1, nW)
        upper = kpos <= qpos if self.causal else kpos <= qpos + W
        mask = (kpos >= 0) & (kpos < T) & (kpos >= qpos - W) & upper              # (nb, W, nW)
        mask = mask[:, None]                                                     # (nb, 1, W, nW)
        if self.pos == "alibi":                                                  # -slope_h·|i - j| on the band
            slopes = torch.tensor([2 ** (-8 * (h + 1) / H) for h in range(H)], device=q.device)
            dist = (qpos - kpos).abs().float()[:, None]                          # (nb, 1, W, nW)
            mask = (-slopes[:, None, None] * dist).masked_fill(~mask, float("-inf"))   # (nb, H, W, nW)
        y = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, dropout_p=p,
                                           enable_gqa=self.kvh != self.h)        # (B, nb, H, W, dh)
        return y.transpose(1, 2).reshape(B, H, nb * W, dh)[:, :, :T]

    # -- kind=linear / performer: phi feature maps, V' = [V, 1] carries the denominator
    def phi(self, x, is_query):
        if self.kind == "linear":
            return F.elu(x) + 1
        dh = x.shape[-1]
        z = x @ self.W.t() / dh ** 0.25 - (x ** 2).sum(-1, keepdim=True) / (2 * math.sqrt(dh))
        # stabiliser: per query row; one constant over all keys (keeps the ratios exact)
        shift = z.amax(-1, keepdim=True) if is_query else z.amax((-2, -1), keepdim=True)
        return torch.exp(z - shift.detach()) / math.sqrt(self.m)

    def linear_attention(self, q, k, v):
        B, H, T, dh = q.shape
        if self.kvh != self.h:
            k = k.repeat_interleave(self.h // self.kvh, 1)
            v = v.repeat_interleave(self.h // self.kvh, 1)
        pq, pk = self.phi(q, True), self.phi(k, False)                 # (B, H, T, m)
        vv = torch.cat([v, torch.ones_like(v[..., :1])], -1)          # (B, H, T, dh+1)
        if not self.causal:
            y = pq @ (pk.transpose(-1, -2) @ vv)                      # (B, H, T, dh+1)
        else:
            c = 64
            nc = -(-T // c)
            pad = (0, 0, 0, nc * c - T)
            pq = F.pad(pq, pad).view(B, H, nc, c, -1)                 # (B, H, nc, c, m)
            pk = F.pad(pk, pad).view(B, H, nc, c, -1)
            vv = F.pad(vv, pad).view(B, H, nc, c, -1)                 # (B, H, nc, c, dh+1)
            intra = (pq @ pk.transpose(-1, -2)).tril() @ vv
            kv = pk.transpose(-1, -2) @ vv                            # (B, H, nc, m, dh+1)
            state = kv.cumsum(2) - kv                                 # exclusive prefix over chunks
            y = (intra + pq @ state).view(B, H, nc * c, -1)[:, :, :T]
        return y[..., :dh] / y[..., dh:]

    # -- Transformer-XL: keys over cat(mem, x); explicit relative math for pos=relative
    def forward_with_memory(self, x):
        B, L, C = x.shape
        mem = self.mem if self.mem is not None else x[:, :0]
        xcat = torch.cat([mem, x], 1)                                 # (B, M + L, C)
        klen, m = xcat.shape[1], mem.shape[1]
        q = self.heads_of(self.q(x), self.h)                          # (B, H, L, dh)
        k = self.heads_of(self.k(xcat), self.kvh)                     # (B, kvh, klen, dh)
        v = self.heads_of(self.v(xcat), self.kvh)
        if self.kvh != self.h and self.pos == "relative":             # the explicit math needs all heads
            k = k.repeat_interleave(self.h // self.kvh, 1)
            v = v.repeat_interleave(self.h // self.kvh, 1)
        allowed = torch.ones(L, klen, dtype=torch.bool, device=x.device)
        if self.causal:
            allowed = torch.arange(klen, device=x.device)[None] <= torch.arange(L, device=x.device)[:, None] + m
        p = self.dropout if self.training else 0.0
        if self.pos == "relative":
            r = self.r_proj(sinusoid_table(klen, C, reverse=True).to(x)).view(klen, self.h, self.dh)
            ac = (q + self.u[:, None]) @ k.transpose(-1, -2)                       # (B, H, L, klen)
            bd = torch.einsum("bhid,jhd->bhij", q + self.v_bias[:, None], r)
            if self.causal:
                bd = F.pad(bd, (1, 0)).view(B, self.h, klen + 1, L)[:, :, 1:].view(B, self.h, L, klen)  # rel_shift
            else:   # a later key scored by its distance |i - j| too (as ALiBi's): column klen-1-|i + m - j|
                dist = (torch.arange(m, klen, device=x.device)[:, None] - torch.arange(klen, device=x.device)).abs()
                bd = bd.gather(-1, (klen - 1 - dist).expand(B, self.h, L, klen))
            att = ((ac + bd) / math.sqrt(self.dh)).masked_fill(~allowed, float("-inf")).softmax(-1)
            y = F.dropout(att, p) @ v
        else:
            if self.pos == "rope":
                q, k = apply_rope(q, start=m), apply_rope(k)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p,
                                               enable_gqa=k.shape[1] != self.h)
        if self.mem_len:
            self.mem = xcat[:, -self.mem_len:].detach()
        return self.o(y.transpose(1, 2).reshape(B, L, C))


class CrossAttention(nn.Module):
    """q from x [B, T, C], k and v from the context [B, S, Cc]; SDPA, not causal."""

    def __init__(self, c, c_context, heads, kv_heads=None, bias=True):
        super().__init__()
        self.h, self.kvh, self.dh = heads, kv_heads or heads, c // heads
        self.q = nn.Linear(c, c, bias=bias)
        self.k = nn.Linear(c_context, self.kvh * self.dh, bias=bias)
        self.v = nn.Linear(c_context, self.kvh * self.dh, bias=bias)
        self.o = nn.Linear(c, c, bias=bias)

    def forward(self, x, context):
        B, T, C = x.shape
        S = context.shape[1]
        q = self.q(x).view(B, T, self.h, self.dh).transpose(1, 2)              # (B, H, T, dh)
        k = self.k(context).view(B, S, self.kvh, self.dh).transpose(1, 2)      # (B, kvh, S, dh)
        v = self.v(context).view(B, S, self.kvh, self.dh).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, enable_gqa=self.kvh != self.h)
        return self.o(y.transpose(1, 2).reshape(B, T, C))


class CrossResidual(nn.Module):
    """x + cross_attention(norm(x), context) (pre-norm) or norm(x + cross(x)) (post-norm)."""

    def __init__(self, cross: CrossAttention, pre: nn.Module | None = None, post: nn.Module | None = None,
                 dropout: float = 0.0):
        super().__init__()
        self.pre, self.cross, self.drop, self.post = pre, cross, nn.Dropout(dropout), post
        self.pre = pre if pre is not None else nn.Identity()
        self.post = post if post is not None else nn.Identity()

    def forward(self, x, context):
        return self.post(x + self.drop(self.cross(self.pre(x), context)))


class Segments(nn.Module):
    """Transformer-XL segment recurrence: run the body over segments of
    `length` steps; each attention layer inside keeps its last `memory` inputs."""

    def __init__(self, body: nn.Module, length: int, memory: int):
        super().__init__()
        self.body, self.length = body, length
        self.attentions = [m for m in body.modules() if isinstance(m, Attention)]
        for a in self.attentions:
            a.mem_len = memory

    def forward(self, x):
        for a in self.attentions:
            a.mem = None
        outs = [self.body(x[:, s: s + self.length]) for s in range(0, x.shape[1], self.length)]
        for a in self.attentions:
            a.mem = None
        return torch.cat(outs, 1)


class Recurrent(nn.Module):
    """nn.LSTM / GRU / RNN, batch first, returning the output sequence only."""

    def __init__(self, kind, c, hidden, layers=1, bidirectional=False, dropout=0.0, nonlinearity="tanh"):
        super().__init__()
        extra = {"nonlinearity": nonlinearity} if kind == "rnn" else {}
        cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind]
        self.rnn = cls(c, hidden, layers, batch_first=True, dropout=dropout,
                       bidirectional=bidirectional, **extra)

    def forward(self, x):
        return self.rnn(x)[0]


def lstm(*a, **k):
    return Recurrent("lstm", *a, **k)


def gru(*a, **k):
    return Recurrent("gru", *a, **k)


# ====================================================================== bundled specs
class LlamaLayer(nn.Module):
    """specs/blocks/common.seq llama_layer: pre-RMSNorm GQA+RoPE, pre-RMSNorm SwiGLU."""

    def __init__(self, d, heads, kv_heads, hidden):
        super().__init__()
        self.attn_norm = nn.RMSNorm(d, eps=1e-5)
        self.attn = Attention(d, heads, kv_heads, causal=True, pos="rope", bias=False)
        self.ffn_norm = nn.RMSNorm(d, eps=1e-5)
        self.ffn = SwiGLU(d, hidden)

    def forward(self, x):
        x = x + self.attn(self.attn_norm(x))
        return x + self.ffn(self.ffn_norm(x))


class TransformerLM(nn.Module):
    """specs/transformer_lm.seq: LLaMA-style GPT, GQA 12/4, SwiGLU 2048, tied head."""

    def __init__(self, vocab=32_000, d=768, heads=12, kv_heads=4, hidden=2048, layers=12):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(LlamaLayer(d, heads, kv_heads, hidden) for _ in range(layers))
        self.norm = nn.RMSNorm(d, eps=1e-6)
        self.lm_head = TiedLinear(self.wte, bias=False)

    def forward(self, tokens):
        x = self.wte(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))


class AwdLstmLM(nn.Module):
    """specs/lstm_lm.seq: AWD-LSTM sizes, 400 -> 1150 -> 1150 -> 400, tied decoder with bias."""

    def __init__(self, vocab=33_278, emb=400, hid=1_150):
        super().__init__()
        self.encoder = nn.Embedding(vocab, emb)
        self.rnns = nn.ModuleList([lstm(emb, hid), lstm(hid, hid), lstm(hid, emb)])
        self.drop_in, self.drop_hid, self.drop_out = nn.Dropout(0.4), nn.Dropout(0.3), nn.Dropout(0.4)
        self.decoder = TiedLinear(self.encoder, bias=True)

    def forward(self, tokens):
        x = self.drop_in(self.encoder(tokens))
        for i, rnn in enumerate(self.rnns):
            x = (self.drop_out if i == len(self.rnns) - 1 else self.drop_hid)(rnn(x))
        return self.decoder(x)


class ConformerLiteLayer(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.attn = Residual(nn.LayerNorm(d), Attention(d, heads, pos="alibi", dropout=0.1))
        self.conv = Residual(nn.LayerNorm(d), Conv(1, d, d, 15, groups=d), BatchNorm(d), nn.SiLU(),
                             nn.Linear(d, d))
        self.ffn = Residual(nn.LayerNorm(d), MLP(d, 4 * d, act="silu", dropout=0.1))

    def forward(self, x):
        return self.ffn(self.conv(self.attn(x)))


class SpeechRecognizer(nn.Module):
    """specs/speech_recognizer.seq: conv1d frontend (T/4), 8 Conformer-lite layers, BiLSTM CTC head."""

    def __init__(self, d=256, heads=4, chars=32):
        super().__init__()
        self.frontend = nn.Sequential(Conv(1, 80, d, 5, 2), nn.GELU(), Conv(1, d, d, 5, 2), nn.GELU(),
                                      nn.LayerNorm(d))
        self.encoder = nn.Sequential(*(ConformerLiteLayer(d, heads) for _ in range(8)))
        self.lstm = lstm(d, 320, 2, bidirectional=True, dropout=0.1)
        self.ctc_head = nn.Linear(640, chars)
        self.speaker = nn.Linear(d, 192, bias=False)

    def forward(self, feats):
        encoded = self.encoder(self.frontend(feats))
        return self.ctc_head(self.lstm(encoded)), self.speaker(encoded.mean(1))


def frame_conv(c, width, stride=2):
    return nn.Sequential(Conv(2, c, width, 3, stride, bias=False), BatchNorm(width), nn.ReLU())


class VideoClassifier(nn.Module):
    """specs/video_classifier.seq: conv3d + per-frame conv2d stem, windowed attention, BiGRU."""

    def __init__(self, d=256, classes=174):
        super().__init__()
        self.stem = nn.Sequential(
            Conv(3, 3, 32, [3, 7, 7], [1, 2, 2]), BatchNorm(32), nn.ReLU(),   # [B, T, 64, 64, 32]
            frame_conv(32, 64), frame_conv(64, 128),                          # [B, T, 16, 16, 128]
            Conv(2, 128, d, 3, 2, padding="valid"), nn.ReLU(),                # [B, T, 7, 7, d]
            SpatialPool("max"))                                               # [B, T, d]
        self.pos = PosEnc(d, "learned", 512)
        self.temporal = nn.Sequential(*(
            m for _ in range(3) for m in (
                Residual(nn.LayerNorm(d), Attention(d, 8, window=16, causal=True)),
                Residual(nn.LayerNorm(d), MLP(d, 2 * d)))))
        self.gru = gru(d, d // 2, bidirectional=True)
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(d, classes))

    def forward(self, clip):
        x = self.gru(self.temporal(self.pos(self.stem(clip))))
        return self.head(x.mean(1))


def prenorm_attention(d, heads, causal=False):
    return Residual(nn.LayerNorm(d), Attention(d, heads, causal=causal))


def prenorm_mlp(d, hidden, act="gelu", p=0.0):
    return Residual(nn.LayerNorm(d), MLP(d, hidden, act=act, dropout=p))


class Translation(nn.Module):
    """specs/translation.seq: pre-norm encoder (512) / decoder (384), GQA cross-attention."""

    def __init__(self, src_vocab=32_000, tgt_vocab=24_000, d_enc=512, d_dec=384):
        super().__init__()
        self.src_embed = nn.Embedding(src_vocab, d_enc)
        self.encoder = nn.Sequential(*(m for _ in range(6) for m in (
            prenorm_attention(d_enc, 8), prenorm_mlp(d_enc, 4 * d_enc, "relu", 0.1))))
        self.enc_norm = nn.LayerNorm(d_enc)
        self.tgt_embed = nn.Embedding(tgt_vocab, d_dec)
        self.self_attn = nn.ModuleList(prenorm_attention(d_dec, 6, causal=True) for _ in range(4))
        self.cross = nn.ModuleList(CrossResidual(CrossAttention(d_dec, d_enc, 6, kv_heads=2),
                                                 pre=nn.LayerNorm(d_dec)) for _ in range(4))
        self.ffn = nn.ModuleList(prenorm_mlp(d_dec, 4 * d_dec, "relu", 0.1) for _ in range(4))
        self.dec_norm = nn.LayerNorm(d_dec)
        self.head = TiedLinear(self.tgt_embed, bias=False)
        self.drop = nn.Dropout(0.1)
        self.pos = PosEnc(d_enc)

    def forward(self, src, tgt):
        memory = self.enc_norm(self.encoder(self.drop(self.pos(self.src_embed(src)))))
        x = self.pos(self.tgt_embed(tgt))
        for attn, cross, ffn in zip(self.self_attn, self.cross, self.ffn):
            x = ffn(cross(attn(x), memory))
        return self.head(self.dec_norm(x))


class LongDocument(nn.Module):
    """specs/long_document.seq: window+RoPE, linear, Performer, Transformer-XL
    segments; tied LM head and a Linformer-pooled topic head."""

    def __init__(self, vocab=16_384, d=512, heads=8):
        super().__init__()
        ff = 4 * d
        self.tok = nn.Embedding(vocab, d)
        blocks = []
        for _ in range(2):
            blocks += [Residual(nn.LayerNorm(d), Attention(d, heads, window=128, causal=True, pos="rope")),
                       Residual(nn.LayerNorm(d), SwiGLU(d, ff))]
        for _ in range(2):
            blocks += [Residual(nn.LayerNorm(d), Attention(d, heads, kind="linear", causal=True)),
                       Residual(nn.LayerNorm(d), MLP(d, ff))]
        blocks.append(Residual(nn.LayerNorm(d), Attention(d, heads, kind="performer", features=128, causal=True)))
        xl = nn.Sequential(*(m for _ in range(2) for m in (
            Residual(nn.LayerNorm(d), Attention(d, heads, causal=True, pos="relative")),
            Residual(nn.LayerNorm(d), MLP(d, ff)))))
        blocks += [Segments(xl, length=256, memory=256), nn.LayerNorm(d)]
        self.trunk = nn.Sequential(*blocks)
        self.lm_head = TiedLinear(self.tok, bias=False)
        self.topic = nn.Sequential(
            Residual(nn.LayerNorm(d), Attention(d, heads, kind="linformer", proj=128, max_len=8192)),
            TimeMean(), nn.Linear(d, 20))

    def forward(self, tokens):
        x = self.trunk(self.tok(tokens))
        return self.lm_head(x), self.topic(x)


class KeywordSpotter(nn.Module):
    """specs/keyword_spotter.seq: causal conv frontend, causal ALiBi attention, GRU, ReLU RNN."""

    def __init__(self, d=128, keywords=12):
        super().__init__()
        self.frontend = nn.Sequential(
            Conv(1, 40, d, [5], padding="causal"), nn.ReLU(),
            Conv(1, d, d, 3, 2, padding="causal", groups=4), nn.ReLU())
        self.attn = Residual(nn.LayerNorm(d), Attention(d, 4, causal=True, pos="alibi"))
        self.ffn = Residual(nn.LayerNorm(d), MLP(d, 2 * d, act="relu"))
        self.state = gru(d, d, layers=2, dropout=0.1)
        self.rnn = Recurrent("rnn", d, 64, nonlinearity="relu")
        self.head = nn.Linear(64, keywords)

    def forward(self, mfcc):
        x = self.ffn(self.attn(self.frontend(mfcc)))
        return self.head(self.rnn(self.state(x))[:, -1])


class GPT(nn.Module):
    """examples/lm_sizes.seq: a small GPT-2 (learned positions, pre-LayerNorm, tied head)."""

    def __init__(self, vocab=1_000, d=128, heads=4, layers=2, max_len=256):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = PosEnc(d, "learned", max_len)
        self.blocks = nn.Sequential(*(m for _ in range(layers) for m in (
            prenorm_attention(d, heads, causal=True), prenorm_mlp(d, 4 * d))))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = TiedLinear(self.wte, bias=False)

    def forward(self, tokens):
        return self.lm_head(self.ln_f(self.blocks(self.wpe(self.wte(tokens)))))


# ====================================================================== conformance specs
class GPT2(nn.Module):
    """conformance transformer_lm: GPT-2 small, 124,439,808 parameters."""

    def __init__(self, vocab=50257, d=768, heads=12, layers=12, max_len=1024):
        super().__init__()
        self.gpt = GPT(vocab, d, heads, layers, max_len)

    def forward(self, tokens):
        return self.gpt(tokens)


class MediumLstmLM(nn.Module):
    """conformance lstm_lm: Zaremba et al.'s medium LSTM LM (untied)."""

    def __init__(self, vocab=10000, d=650):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.drop = nn.Dropout(0.5)
        self.lstm = lstm(d, d, 2, dropout=0.5)
        self.head = nn.Linear(d, vocab)

    def forward(self, tokens):
        return self.head(self.drop(self.lstm(self.drop(self.embed(tokens)))))


class SpeechConv2d(nn.Module):
    """conformance speech_conv2d: 2-D subsampling (T/4, F/4) then a 3-layer BiLSTM."""

    def __init__(self, d=320, vocab=500):
        super().__init__()
        self.subsample = nn.Sequential(Unsqueeze(), Conv(2, 1, d, 3, 2), nn.ReLU(),
                                       Conv(2, d, d, 3, 2), nn.ReLU(), Flatten())   # [B, T', 20*d]
        self.proj = nn.Linear(20 * d, d)
        self.lstm = lstm(d, d, 3, bidirectional=True)
        self.head = nn.Linear(2 * d, vocab)

    def forward(self, feats):
        return self.head(self.lstm(self.proj(self.subsample(feats))))


class SpeechHybrid(nn.Module):
    """conformance speech_hybrid: causal conv1d frontend, Transformer-XL encoder
    over segments(64, memory 64), 2-layer LSTM decoder."""

    def __init__(self, d=256, heads=4, vocab=1024):
        super().__init__()
        self.frontend = nn.Sequential(Conv(1, 80, d, 3, 2, "causal"), nn.GELU(),
                                      Conv(1, d, d, 3, 2, "causal"), nn.GELU())
        xl = nn.Sequential(*(m for _ in range(6) for m in (
            Residual(nn.LayerNorm(d), Attention(d, heads, causal=True, pos="relative")),
            Residual(nn.LayerNorm(d), MLP(d, 4 * d)))))
        self.encoder = nn.Sequential(Segments(xl, 64, 64), nn.LayerNorm(d))
        self.lstm = lstm(d, d, 2)
        self.head = nn.Linear(d, vocab)

    def forward(self, feats):
        return self.head(self.lstm(self.encoder(self.frontend(feats))))


class PostNorm(nn.Module):
    """norm(x + dropout(sublayer(x))), the original Transformer's order."""

    def __init__(self, d, sublayer):
        super().__init__()
        self.sublayer, self.drop, self.norm = sublayer, nn.Dropout(0.1), nn.LayerNorm(d)

    def forward(self, x):
        return self.norm(x + self.drop(self.sublayer(x)))


class Translator(nn.Module):
    """conformance translator: Transformer base (post-norm), shared vocab, tied head."""

    def __init__(self, vocab=32000, d=512, heads=8, ff=2048, layers=6):
        super().__init__()
        self.src_embed = nn.Embedding(vocab, d)
        self.tgt_embed = nn.Embedding(vocab, d)
        self.pos, self.drop = PosEnc(d), nn.Dropout(0.1)
        self.encoder = nn.Sequential(*(m for _ in range(layers) for m in (
            PostNorm(d, Attention(d, heads)), PostNorm(d, MLP(d, ff, act="relu")))))
        self.self_attn = nn.ModuleList(PostNorm(d, Attention(d, heads, causal=True)) for _ in range(layers))
        self.cross = nn.ModuleList(CrossResidual(CrossAttention(d, d, heads), post=nn.LayerNorm(d), dropout=0.1)
                                   for _ in range(layers))
        self.ffn = nn.ModuleList(PostNorm(d, MLP(d, ff, act="relu")) for _ in range(layers))
        self.head = TiedLinear(self.tgt_embed, bias=False)

    def forward(self, src, tgt):
        memory = self.encoder(self.drop(self.pos(self.src_embed(src))))
        x = self.drop(self.pos(self.tgt_embed(tgt)))
        for attn, cross, ffn in zip(self.self_attn, self.cross, self.ffn):
            x = ffn(cross(attn(x), memory))
        return self.head(x)


class LongContext(nn.Module):
    """conformance long_context: Performer x4, Linformer x2, windowed GQA+RoPE, scalar head."""

    def __init__(self, d=512, heads=8):
        super().__init__()
        layers = [nn.Linear(64, d)]
        for _ in range(4):
            layers += [Residual(nn.LayerNorm(d), Attention(d, heads, kind="performer", features=256, causal=True)),
                       Residual(nn.LayerNorm(d), MLP(d, 4 * d))]
        for _ in range(2):
            layers += [Residual(nn.LayerNorm(d), Attention(d, heads, kind="linformer", proj=256, max_len=16384)),
                       Residual(nn.LayerNorm(d), MLP(d, 4 * d))]
        layers += [Residual(nn.RMSNorm(d, eps=1e-5),
                            Attention(d, heads, kv_heads=2, window=512, causal=True, pos="rope")),
                   nn.Linear(d, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, signal):
        return self.net(signal)


class VideoHybrid(nn.Module):
    """conformance video_hybrid: per-frame conv stem, windowed RoPE attention, GRU, last step."""

    def __init__(self, d=384, classes=400):
        super().__init__()
        self.stem = nn.Sequential(
            Conv(2, 3, 64, 7, 2), BatchNorm(64), nn.ReLU(),
            Conv(2, 64, 128, 3, 2), BatchNorm(128), nn.ReLU(),
            Conv(2, 128, d, 3, 2), nn.ReLU(), SpatialPool("mean"))
        self.pos = PosEnc(d)
        self.blocks = nn.Sequential(*(m for _ in range(4) for m in (
            Residual(nn.LayerNorm(d), Attention(d, 6, window=32, pos="rope")),
            Residual(nn.LayerNorm(d), SwiGLU(d, 4 * d)))))
        self.gru = gru(d, d)
        self.head = nn.Linear(d, classes)

    def forward(self, frames):
        x = self.gru(self.blocks(self.pos(self.stem(frames))))
        return self.head(x[:, -1])


# ====================================================================== v0.2 recurrent specs
def _reference(name: str):
    """The test-only reference package (the `reference` extra); skips without it."""
    import pytest
    return pytest.importorskip(name)


class Mamba2LM(nn.Module):
    """specs/mamba2_lm.seq: transformers' Mamba2ForCausalLM itself at
    state-spaces/mamba2-130m's sizes (the `mamba2` layer is exactly its mixer)."""

    def __init__(self, vocab=50_288, d=768, layers=24):
        super().__init__()
        tf = _reference("transformers")
        cfg = tf.Mamba2Config(vocab_size=vocab, hidden_size=d, num_hidden_layers=layers, state_size=128,
                              expand=2, head_dim=64, num_heads=2 * d // 64, n_groups=1, conv_kernel=4,
                              chunk_size=256, layer_norm_epsilon=1e-5, tie_word_embeddings=True)
        self.lm = tf.Mamba2ForCausalLM(cfg)

    def forward(self, tokens):
        return self.lm(tokens).logits


class GriffinRecurrent(nn.Module):
    """transformers' RecurrentGemmaRecurrentBlock (the `rglru` layer), run without a cache."""

    def __init__(self, d, heads):
        super().__init__()
        from transformers.models.recurrent_gemma.modeling_recurrent_gemma import RecurrentGemmaRecurrentBlock
        tf = _reference("transformers")
        cfg = tf.RecurrentGemmaConfig(hidden_size=d, lru_width=d, num_attention_heads=heads, conv1d_width=4)
        self.block = RecurrentGemmaRecurrentBlock(cfg, 0)
        with torch.no_grad():   # the block leaves its gates torch.empty (its model's _init_weights fills them)
            for p in self.block.parameters():
                p.copy_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))

    def forward(self, x):
        pos = torch.arange(x.shape[1], device=x.device)[None].expand(x.shape[0], -1)
        return self.block(x, pos, None, use_cache=False)[0]


class GriffinLayer(nn.Module):
    """Pre-RMSNorm temporal mixing (RG-LRU block or local MQA), pre-RMSNorm SwiGLU."""

    def __init__(self, d, hidden, mixer):
        super().__init__()
        self.mix_norm, self.mixer = nn.RMSNorm(d, eps=1e-5), mixer
        self.ffn_norm, self.ffn = nn.RMSNorm(d, eps=1e-5), SwiGLU(d, hidden)

    def forward(self, x):
        x = x + self.mixer(self.mix_norm(x))
        return x + self.ffn(self.ffn_norm(x))


class GriffinLike(nn.Module):
    """specs/griffin_like.seq: 4 x (RG-LRU, RG-LRU, local attention), tied head."""

    def __init__(self, vocab=32_000, d=1024, heads=8, hidden=3072, blocks=4):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        mixers = []
        for _ in range(blocks):
            mixers += [GriffinRecurrent(d, heads), GriffinRecurrent(d, heads),
                       Attention(d, heads, kv_heads=1, causal=True, window=1024, pos="rope", bias=False)]
        self.layers = nn.ModuleList(GriffinLayer(d, hidden, m) for m in mixers)
        self.norm = nn.RMSNorm(d, eps=1e-5)
        self.lm_head = TiedLinear(self.wte, bias=False)

    def forward(self, tokens):
        x = self.wte(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))


# ====================================================================== registry
class Twin(NamedTuple):
    path: Path
    factory: Callable[[], nn.Module]
    model: str | None = None           # model name, for files with several

    def __call__(self) -> nn.Module:
        return self.factory()


TWINS: dict[str, Twin] = {
    "transformer_lm": Twin(SPECS / "transformer_lm.seq", TransformerLM),
    "lstm_lm": Twin(SPECS / "lstm_lm.seq", AwdLstmLM),
    "speech_recognizer": Twin(SPECS / "speech_recognizer.seq", SpeechRecognizer),
    "video_classifier": Twin(SPECS / "video_classifier.seq", VideoClassifier),
    "translation": Twin(SPECS / "translation.seq", Translation),
    "long_document": Twin(SPECS / "long_document.seq", LongDocument),
    "keyword_spotter": Twin(SPECS / "keyword_spotter.seq", KeywordSpotter),
    "mamba2_lm": Twin(SPECS / "mamba2_lm.seq", Mamba2LM),
    "griffin_like": Twin(SPECS / "griffin_like.seq", GriffinLike),
    "transformer_183m": Twin(SPECS / "transformer_183m.seq",
                             lambda: TransformerLM(d=1024, heads=8, kv_heads=4, hidden=3072, layers=12)),
    "lm_sizes:gpt_tiny": Twin(EXAMPLES / "lm_sizes.seq", GPT, "gpt_tiny"),
    "lm_sizes:gpt_small": Twin(EXAMPLES / "lm_sizes.seq", lambda: GPT(d=256, heads=8, layers=4, max_len=512),
                               "gpt_small"),
    "conformance/transformer_lm": Twin(CONFORMANCE / "transformer_lm.seq", GPT2),
    "conformance/lstm_lm": Twin(CONFORMANCE / "lstm_lm.seq", MediumLstmLM),
    "conformance/speech_conv2d": Twin(CONFORMANCE / "speech_conv2d.seq", SpeechConv2d),
    "conformance/speech_hybrid": Twin(CONFORMANCE / "speech_hybrid.seq", SpeechHybrid),
    "conformance/translator": Twin(CONFORMANCE / "translator.seq", Translator),
    "conformance/long_context": Twin(CONFORMANCE / "long_context.seq", LongContext),
    "conformance/video_hybrid": Twin(CONFORMANCE / "video_hybrid.seq", VideoHybrid),
}


def load_model(key: str):
    """The checked seqdsl ModelGraph a twin mirrors."""
    import seqdsl
    twin = TWINS[key]
    return seqdsl.load(twin.path).model(twin.model)


def example_inputs(key: str, batch: int = 2, seq: int | dict = 16, seed: int = 0) -> tuple:
    """Inputs for TWINS[key] in the spec's input order: float inputs ~ N(0, 1),
    int inputs uniform token ids below the smallest vocab that embeds them.
    `seq` sets every sequence symbol, or maps symbol -> size ({"S": 24, "T": 16})."""
    model = load_model(key)
    sizes = dict(seq) if isinstance(seq, dict) else {s: seq for s in model.seq_symbols}
    sizes[model.batch_symbol] = batch
    vocab = min((n.args.vocab for n in model.layers if n.kind == "embed"), default=2)
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in model.inputs.values():
        shape = _evaluate(t.dims, sizes)
        if t.dtype == "int":
            out.append(torch.randint(0, vocab, shape, generator=g))
        else:
            out.append(torch.randn(shape, generator=g))
    return tuple(out)


def output_sizes(key: str, batch: int = 2, seq: int | dict = 16) -> list[tuple[int, ...]]:
    """The spec's symbolic output shapes evaluated at these sizes."""
    model = load_model(key)
    sizes = dict(seq) if isinstance(seq, dict) else {s: seq for s in model.seq_symbols}
    sizes[model.batch_symbol] = batch
    return [_evaluate(t.dims, sizes) for t in model.outputs.values()]


def _evaluate(dims, sizes: dict) -> tuple[int, ...]:
    """Symbolic dims (sympy) at concrete sizes, looked up by symbol name."""
    return tuple(int(d.subs({s: sizes[s.name] for s in d.free_symbols})) for d in dims)
