"""Kernels shared by the linear-attention recurrences (gla, retention,
gated_deltanet): the depthwise short convolution with its streaming window,
the gated RMSNorm, and the gated linear attention recurrence in its three
forms — `naive_gla` (step by step, the readable reference), `chunk_gla` (the
chunked parallel form for training and prefill) and `gla_step` (one token,
for streaming) — held equal by tests/test_layers_rec2.py.

The recurrence (flash-linear-attention `fla.ops.gla`), per head:
    S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,      o_t = (scale·q_t) S_t
with S of dk x dv kept in fp32 (fp64 for a float64 model), g_t <= 0 a log decay per key channel (GLA) or
one per head broadcast over the keys (retention).
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from .torch_modules import carry_by_solve, chunk_states_solve, cuda_kernel, depthwise_conv1d, unpadded


def acc(x):
    """x at the accumulation dtype: fp32 (as fla's kernels, whatever the model
    dtype), or fp64 for a float64 model."""
    return x if x.dtype == torch.float64 else x.float()


def acc_dtype(x):
    return torch.float64 if x.dtype == torch.float64 else torch.float32


# ------------------------------------------------------------------ short convolution
class ShortConv(nn.Conv1d):
    """fla's ShortConvolution: a depthwise causal conv1d over time followed by
    silu, parameters `weight` (D, 1, K) and `bias` (D). Padding on the left
    only, so it computes exactly T outputs. Streaming keeps the last K inputs
    (B, D, K), the window fla's cache holds."""

    def __init__(self, width: int, kernel: int, bias: bool, act: bool = True):
        super().__init__(width, width, kernel, groups=width, bias=bias)
        self.act = act

    def forward(self, x, window=None):
        """x (B, T, D) -> (y (B, T, D), new window (B, D, K) or None)."""
        k = self.kernel_size[0]
        xt = x.transpose(1, 2)                                          # (B, D, T)
        if window is None:
            xp, new = F.pad(xt, (k - 1, 0)), None
        else:
            xp = torch.cat([window[..., 1:], xt], -1)                  # (B, D, K-1+T)
            new = torch.cat([window, xt], -1)[..., -k:]
        y = depthwise_conv1d(xp, self.weight, self.bias).transpose(1, 2)
        return (F.silu(y) if self.act else y), new


def conv_stream(conv, x, state, key):
    """Run `conv` over a chunk of the stream: the window lives in state[key]."""
    if state is None:
        return conv(x)[0]
    window = state.get(key)
    if window is None:
        window = x.new_zeros(x.shape[0], x.shape[-1], conv.kernel_size[0])
    y, state[key] = conv(x, window)
    return y


class GatedRMSNorm(nn.Module):
    """fla's FusedRMSNormGated (swish gate): rmsnorm(x)·weight·silu(g) over
    the last dim (one head), computed in fp32."""

    def __init__(self, width: int, eps: float = 1e-5, gated: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps, self.gated = eps, gated

    def forward(self, x, g=None):
        xf = acc(x)
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * acc(self.weight)
        if self.gated:
            y = y * F.silu(acc(g))
        return y.to(x.dtype)


def gated_projections(module, c, heads, expand_k, expand_v, chunk) -> None:
    """The q, k, v and output-gate projections fla's GatedLinearAttention and
    MultiScaleRetention share (their names, shapes and creation order), with
    the widths they derive: dk = expand_k·c and dv = expand_v·c over `heads`."""
    module.heads, module.chunk = heads, chunk
    module.key_dim, module.value_dim = round(c * expand_k), round(c * expand_v)
    module.head_k, module.head_v = module.key_dim // heads, module.value_dim // heads
    module.q_proj = nn.Linear(c, module.key_dim, bias=False)
    module.k_proj = nn.Linear(c, module.key_dim, bias=False)
    module.v_proj = nn.Linear(c, module.value_dim, bias=False)
    module.g_proj = nn.Linear(c, module.value_dim, bias=False)


# ------------------------------------------------------------------ gated linear attention
def gla_step(q, k, v, g, scale, s):
    """One token. q, k, g (B, H, dk), v (B, H, dv), s (B, H, dk, dv) fp32
    -> (o (B, H, dv), new s)."""
    s = s * acc(g).exp().unsqueeze(-1) + acc(k).unsqueeze(-1) @ acc(v).unsqueeze(-2)
    o = (acc(q) * scale).unsqueeze(-2) @ s                          # (B, H, 1, dv)
    return o.squeeze(-2), s


def naive_gla(q, k, v, g, scale, s=None):
    """The readable reference: gla_step over t. q, k, g (B, H, T, dk) (g may
    have a last dim of 1), v (B, H, T, dv) -> (o (B, H, T, dv) fp32, final s)."""
    b, h, t, dk = q.shape
    if s is None:
        s = q.new_zeros(b, h, dk, v.shape[-1], dtype=acc_dtype(q))
    g = g.expand(b, h, t, dk)
    out = []
    for i in range(t):
        o, s = gla_step(q[:, :, i], k[:, :, i], v[:, :, i], g[:, :, i], scale, s)
        out.append(o)
    return torch.stack(out, 2), s


def _chunked(x, n: int, q: int):
    """(B, H, T, d) zero-padded to n·q positions -> (B, H, n, q, d), contiguous
    (so that T = n·q, which pads nothing, runs the same products on the same
    layouts as any other T)."""
    t = x.shape[2]
    return F.pad(x, (0, 0, 0, n * q - t)).contiguous().reshape(x.shape[0], x.shape[1], n, q, x.shape[-1])


def chunk_gla(q, k, v, g, scale, chunk: int = 64, s=None):
    """The chunked parallel form (Yang et al. 2023, §4): T padded to n chunks of
    Q; within a chunk the decays are folded into q and k (relative to the
    chunk start), the intra-chunk part is a masked Q x Q product, the state is
    passed chunk to chunk (elementwise, n steps), and its contribution is one
    batched product. Same arguments as naive_gla; padded positions have g = 0
    and k = 0, so they change nothing. Exact in exact arithmetic; the folded
    decays exp(-b) grow as a chunk's decay accumulates, so keep Q moderate for
    strongly decaying gates."""
    bsz, h, t, dk = q.shape
    dv = v.shape[-1]
    n = (t + chunk - 1) // chunk      # ceil: a floor of -T would give inductor negative ranges
    qc = _chunked(acc(q) * scale, n, chunk)                         # (B, H, n, Q, dk)
    kc, vc = _chunked(acc(k), n, chunk), _chunked(acc(v), n, chunk)
    b = _chunked(acc(g), n, chunk).cumsum(-2)                       # (B, H, n, Q, dk|1): log decay since chunk start
    qe, ke = qc * b.exp(), kc * (-b).exp()
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    a = (qe @ ke.transpose(-1, -2)).masked_fill(~causal, 0)            # (B, H, n, Q, Q)
    o = a @ vc                                                         # (B, H, n, Q, dv)
    last = b[..., -1:, :]                                              # (B, H, n, 1, dk|1)
    u = (kc * (last - b).exp()).transpose(-1, -2) @ vc                 # (B, H, n, dk, dv): the chunk's own state
    decay = last.exp().transpose(-1, -2)                               # (B, H, n, dk|1, 1)
    if s is None:
        s = q.new_zeros(bsz, h, dk, dv, dtype=acc_dtype(q))
    starts, s = _carry(s, decay, u)
    o = o + qe @ starts                                                # inter-chunk: q·S at the chunk start
    return unpadded(o.reshape(bsz, h, n * chunk, dv), t, 2), s


def _carry(s, decay, u):
    """The state passed chunk to chunk, S <- decay·S + U (elementwise): the
    states at each chunk's start, stacked (B, H, n, dk, dv), and the last.
    Under torch.compile one triangular solve (torch_modules.chunk_states_solve),
    so that one graph serves every number of chunks (a traced loop would be
    unrolled per T); eagerly the loop."""
    if carry_by_solve(u.shape[2]):
        bsz, h, n, dk, dv = u.shape
        kk = decay.shape[3]                                            # dk (gla) or 1 (retention)
        x = chunk_states_solve(s.reshape(bsz, h, kk, -1), decay[..., 0], u.reshape(bsz, h, n, kk, -1))
        x = x.reshape(bsz, h, n + 1, dk, dv)
        return x[:, :, :-1], x[:, :, -1]
    starts = []
    for i in range(u.shape[2]):
        starts.append(s)
        s = decay[:, :, i] * s + u[:, :, i]
    return torch.stack(starts, 2), s


def gla_forward(q, k, v, g, scale, chunk: int, state=None, key: str = "S"):
    """chunk_gla for a whole sequence (state None) or a chunk of a stream
    (state[key] carries S); a single token takes gla_step. A whole sequence on
    a GPU runs fla's chunk_gla when flash-linear-attention imports (the `cuda`
    extra): the same function, in its (B, T, H, K) layout."""
    if state is None:
        fla_chunk = cuda_kernel("chunk_gla", q.is_cuda)
        if fla_chunk is not None:
            q, k, v, g = (z.transpose(1, 2) for z in (q, k, v, g.expand_as(q)))     # (B, T, H, dk|dv)
            return fla_chunk(q, k, v, g, scale)[0].transpose(1, 2)                  # (B, H, T, dv)
        return chunk_gla(q, k, v, g, scale, chunk)[0]
    s = state.get(key)
    if s is None:
        s = q.new_zeros(q.shape[0], q.shape[1], q.shape[-1], v.shape[-1], dtype=acc_dtype(q))
    if q.shape[2] == 1:
        o, s = gla_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], g[:, :, 0].expand_as(q[:, :, 0]), scale, s)
        o = o.unsqueeze(2)
    else:
        o, s = chunk_gla(q, k, v, g, scale, chunk, s)
    state[key] = s
    return o
