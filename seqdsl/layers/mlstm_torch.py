"""mlstm's module: xlstm `mLSTMLayer` (xlstm/blocks/mlstm/layer.py, cell.py,
backends.py) in plain PyTorch, with its parameter names and shapes.

The mLSTM cell, per head (D = head size, k scaled by 1/sqrt(D)), with the
stabiliser m_t = max(log f_t + m_{t-1}, i_t), m_0 = -inf:
    C_t = exp(log f_t + m_{t-1} - m_t) C_{t-1} + exp(i_t - m_t) k_t^T v_t     (n_t likewise with k_t)
    h_t = q_t C_t / (max(|q_t n_t|, exp(-m_t)) + 1e-6)
With m_0 = -inf, m_t is exactly the row maximum that xlstm's parallel form
(`parallel_stabilized_simple`, what mLSTMLayer.forward runs) subtracts, so the
three forms here — `naive_mlstm` (step by step), `chunk_mlstm` (chunked, as
xlstm's `chunkwise_simple`) and `mlstm_step` — equal the reference's forward.
(xlstm's own `step` starts from m_0 = 0, which differs from its forward
whenever exp(-m) is the larger term of the normaliser.)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .linear_rnn_torch import ShortConv, _chunked, conv_stream
from .torch_modules import carry_by_solve, chunk_states_solve, unpadded


def mlstm_step(q, k, v, i, f, c, n, m, eps: float = 1e-6):
    """One token. q, k, v (B, H, D) (k already scaled), i, f (B, H) gate
    pre-activations, state c (B, H, D, D), n (B, H, D), m (B, H)."""
    logf = F.logsigmoid(f)
    m_new = torch.maximum(logf + m, i)
    fg, ig = (logf + m - m_new).exp(), (i - m_new).exp()
    c = fg[..., None, None] * c + ig[..., None, None] * (k.unsqueeze(-1) @ v.unsqueeze(-2))
    n = fg[..., None] * n + ig[..., None] * k
    qn = (q.unsqueeze(-2) @ n.unsqueeze(-1)).squeeze(-1)                # (B, H, 1)
    h = (q.unsqueeze(-2) @ c).squeeze(-2) / (torch.maximum(qn.abs(), (-m_new).exp()[..., None]) + eps)
    return h, c, n, m_new


def _zero_state(q):
    b, h, _, d = q.shape
    return (q.new_zeros(b, h, d, d), q.new_zeros(b, h, d), q.new_full((b, h), float("-inf")))


def naive_mlstm(q, k, v, i, f, state=None):
    """The readable reference: mlstm_step over t. q, k, v (B, H, T, D), i, f (B, H, T)."""
    c, n, m = state if state is not None else _zero_state(q)
    k = k / math.sqrt(q.shape[-1])
    out = []
    for t in range(q.shape[2]):
        h, c, n, m = mlstm_step(q[:, :, t], k[:, :, t], v[:, :, t], i[:, :, t], f[:, :, t], c, n, m)
        out.append(h)
    return torch.stack(out, 2), (c, n, m)


def chunk_mlstm(q, k, v, i, f, chunk: int = 64, state=None, eps: float = 1e-6):
    """The chunked form (xlstm `chunkwise_simple`, with m_0 = -inf): T padded
    to n chunks of Q (padding: i = -inf, log f = 0, so it writes nothing).
    Per chunk a = cumulative log forget gate; the chunk's own contribution to
    the state, k^T (v·exp(i + a_Q - a - m_loc)), is one batched product; the
    state (C, n, m) is passed chunk to chunk (elementwise, n steps); outputs
    are the masked intra-chunk product plus q·C at the chunk start, both with
    the exact row stabiliser max(intra row max, m_start + a)."""
    bsz, h, t, d = q.shape
    nc = (t + chunk - 1) // chunk      # ceil: a floor of -T would give inductor negative ranges
    qc = _chunked(q, nc, chunk)                                        # (B, H, n, Q, D)
    kc, vc = _chunked(k / math.sqrt(d), nc, chunk), _chunked(v, nc, chunk)
    a = _chunked(F.logsigmoid(f).unsqueeze(-1), nc, chunk).squeeze(-1).cumsum(-1)   # (B, H, n, Q)
    ig = F.pad(i, (0, nc * chunk - t), value=float("-inf")).reshape(bsz, h, nc, chunk)
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    logd = (a.unsqueeze(-1) - a.unsqueeze(-2) + ig.unsqueeze(-2)).masked_fill(~causal, float("-inf"))
    wl = ig + a[..., -1:] - a                                          # log weight of each step at the chunk end
    mloc = wl.max(-1).values                                           # (B, H, n)
    kw = kc * (wl - mloc.unsqueeze(-1)).exp().unsqueeze(-1)
    kv, ksum = kw.transpose(-1, -2) @ vc, kw.sum(-2)                   # (B, H, n, D, D), (B, H, n, D)
    (cs, ns, ms), (c, n, m) = _carry_mlstm(state if state is not None else _zero_state(q), a[..., -1], mloc, kv, ksum)
    inter = ms.unsqueeze(-1) + a                                       # (B, H, n, Q): log scale of the carried state
    stab = torch.maximum(logd.max(-1).values, inter)
    e = (qc @ kc.transpose(-1, -2)) * (logd - stab.unsqueeze(-1)).exp()   # (B, H, n, Q, Q)
    qs = qc * (inter - stab).exp().unsqueeze(-1)
    num = e @ vc + qs @ cs                                             # (B, H, n, Q, D)
    qn = e.sum(-1) + (qs @ ns.unsqueeze(-1)).squeeze(-1)
    hs = num / (torch.maximum(qn.abs(), (-stab).exp()) + eps).unsqueeze(-1)
    return unpadded(hs.reshape(bsz, h, nc * chunk, d), t, 2), (c, n, m)


def _carry_mlstm(state, a_last, mloc, kv, ksum):
    """(C, n, m) passed chunk to chunk: m' = max(a_Q + m, m_loc), each part
    rescaled to m'. Returns the states at each chunk's start, stacked, and the
    last. Eagerly a loop over the chunks; under torch.compile (one graph for
    every chunk count) the same in parallel: m_j = P_j + cummax(m_0, m_loc,i -
    P_i+1) with P the log decay before chunk j, then (C, n) by one solve
    (torch_modules.chunk_states_solve) with the rescalings as decays."""
    c, n, m = state
    if carry_by_solve(a_last.shape[-1]):
        dd = c.shape[-1] * c.shape[-1]
        before = F.pad(a_last.cumsum(-1), (1, 0))                          # (B, H, nc+1)
        ms = before + torch.cat([m.unsqueeze(-1), mloc - before[..., 1:]], -1).cummax(-1).values
        old, new = (a_last + ms[..., :-1] - ms[..., 1:]).exp(), (mloc - ms[..., 1:]).exp()
        u = torch.cat([kv.flatten(-2), ksum], -1) * new.unsqueeze(-1)      # (B, H, nc, D·D + D)
        x = chunk_states_solve(torch.cat([c.flatten(-2), n], -1).unsqueeze(-2), old.unsqueeze(-1),
                               u.unsqueeze(-2)).squeeze(-2)                 # (B, H, nc+1, D·D + D)
        cs, ns = x[..., :dd].unflatten(-1, c.shape[-2:]), x[..., dd:]
        return (cs[:, :, :-1], ns[:, :, :-1], ms[..., :-1]), (cs[:, :, -1], ns[:, :, -1], ms[..., -1])
    cs, ns, ms = [], [], []
    for j in range(kv.shape[2]):
        cs.append(c), ns.append(n), ms.append(m)
        m_new = torch.maximum(a_last[:, :, j] + m, mloc[:, :, j])
        old, new = (a_last[:, :, j] + m - m_new).exp(), (mloc[:, :, j] - m_new).exp()
        c = old[..., None, None] * c + new[..., None, None] * kv[:, :, j]
        n = old[..., None] * n + new[..., None] * ksum[:, :, j]
        m = m_new
    return (torch.stack(cs, 2), torch.stack(ns, 2), torch.stack(ms, 2)), (c, n, m)


class Headwise(nn.Module):
    """xlstm LinearHeadwiseExpand (expand 1): block-diagonal, weight (blocks, out, in)."""

    def __init__(self, width: int, block: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(width // block, block, block))
        nn.init.normal_(self.weight, std=math.sqrt(2 / (5 * width)))
        self.bias = nn.Parameter(torch.zeros(width)) if bias else None

    def forward(self, x):
        shape = x.shape
        y = torch.einsum("...hd,hod->...ho", x.view(*shape[:-1], self.weight.shape[0], -1), self.weight)
        y = y.reshape(shape)
        return y if self.bias is None else y + self.bias


class HeadNorm(nn.Module):
    """xlstm MultiHeadLayerNorm: a LayerNorm per head (group norm), weight 1 + w, no bias."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.weight = nn.Parameter(torch.zeros(width))

    def forward(self, h):
        """h (B, H, T, D) -> (B, T, H·D)."""
        b, nh, t, d = h.shape
        y = F.layer_norm(h.transpose(1, 2), (d,), eps=1e-5)            # (B, T, H, D)
        return y.reshape(b, t, nh * d) * (1 + self.weight)


class MLstmCell(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.igate = nn.Linear(3 * width, heads)
        self.fgate = nn.Linear(3 * width, heads)
        self.outnorm = HeadNorm(width, heads)


class CausalConv(nn.Module):
    """xlstm CausalConv1d (depthwise, with bias), here followed by silu."""

    def __init__(self, width: int, kernel: int):
        super().__init__()
        self.conv = ShortConv(width, kernel, bias=True)


class MLstm(nn.Module):
    state_initial = {"m": float("-inf")}     # the stabiliser before the first step (step(lengths=) carries it)

    def __init__(self, c, heads, proj=2.0, qkv_block=4, conv=4, bias=False, chunk=64):
        super().__init__()
        di = math.ceil(proj * c / 64) * 64
        self.heads, self.inner, self.chunk = heads, di, chunk
        self.proj_up = nn.Linear(c, 2 * di, bias=bias)
        self.q_proj = Headwise(di, qkv_block, bias)
        self.k_proj = Headwise(di, qkv_block, bias)
        self.v_proj = Headwise(di, qkv_block, bias)
        self.conv1d = CausalConv(di, conv)
        self.mlstm_cell = MLstmCell(di, heads)
        self.learnable_skip = nn.Parameter(torch.ones(di))
        self.proj_down = nn.Linear(di, c, bias=bias)

    def forward(self, x, state=None):
        b, t, _ = x.shape
        if t == 0:
            return x.new_zeros(b, 0, self.proj_down.out_features)
        h, d = self.heads, self.inner // self.heads
        xm, z = self.proj_up(x).split(self.inner, -1)
        xc = conv_stream(self.conv1d.conv, xm, state, "conv")          # silu(causal conv)
        q, k, v = self.q_proj(xc), self.k_proj(xc), self.v_proj(xm)
        gates = torch.cat([q, k, v], -1)
        cell = self.mlstm_cell
        i, f = cell.igate(gates).transpose(1, 2), cell.fgate(gates).transpose(1, 2)   # (B, H, T)
        q, k, v = (y.view(b, t, h, d).transpose(1, 2) for y in (q, k, v))   # (B, H, T, D)
        if state is None:
            hs = chunk_mlstm(q, k, v, i, f, self.chunk)[0]
        else:
            st = (state["C"], state["n"], state["m"]) if "C" in state else None
            if t == 1:
                st = st or _zero_state(q)
                hs, *st = mlstm_step(q[:, :, 0], k[:, :, 0] / math.sqrt(d), v[:, :, 0], i[:, :, 0], f[:, :, 0], *st)
                hs = hs.unsqueeze(2)
            else:
                hs, st = chunk_mlstm(q, k, v, i, f, self.chunk, st)
            state["C"], state["n"], state["m"] = st
        y = cell.outnorm(hs) + self.learnable_skip * xc
        return self.proj_down(y * F.silu(z))
