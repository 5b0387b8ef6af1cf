"""gated_deltanet's module: flash-linear-attention `GatedDeltaNet`
(fla/layers/gated_deltanet.py, defaults: q/k L2-normalised and beta sigmoided
in the kernel, the gate -exp(A_log)·softplus(a + dt_bias) in the kernel, swish
output gate fused with the RMSNorm) in plain PyTorch, with its parameter names
and shapes.

The gated delta rule (fla.ops.gated_delta_rule), per head, S of dk x dv in fp32:
    S_t = exp(g_t) S_{t-1} + k_t^T beta_t (v_t - k_t exp(g_t) S_{t-1}),   o_t = (scale·q_t) S_t
in three forms held equal by the tests: `naive_delta_rule` (step by step),
`chunk_delta_rule` (the chunked WY form of Yang et al. 2024) and `delta_step`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .linear_rnn_torch import GatedRMSNorm, ShortConv, _chunked, acc, acc_dtype, conv_stream
from .torch_modules import SOLVE_MAX_CHUNKS, carry_by_solve, cuda_kernel, unpadded


def delta_step(q, k, v, beta, g, scale, s):
    """One token. q, k (B, H, dk), v (B, H, dv), beta, g (B, H), s (B, H, dk, dv)
    fp32 -> (o (B, H, dv), new s)."""
    q, k, v = acc(q), acc(k), acc(v)
    s = s * acc(g).exp()[..., None, None]
    u = acc(beta)[..., None] * (v - (k.unsqueeze(-2) @ s).squeeze(-2))       # (B, H, dv): the correction
    s = s + k.unsqueeze(-1) @ u.unsqueeze(-2)
    return ((q * scale).unsqueeze(-2) @ s).squeeze(-2), s


def naive_delta_rule(q, k, v, beta, g, scale, s=None):
    """The readable reference: delta_step over t. q, k (B, H, T, dk), v (B, H, T, dv),
    beta, g (B, H, T) -> (o (B, H, T, dv) fp32, final s)."""
    b, h, t, dk = q.shape
    if s is None:
        s = q.new_zeros(b, h, dk, v.shape[-1], dtype=acc_dtype(q))
    out = []
    for i in range(t):
        o, s = delta_step(q[:, :, i], k[:, :, i], v[:, :, i], beta[:, :, i], g[:, :, i], scale, s)
        out.append(o)
    return torch.stack(out, 2), s


def chunk_delta_rule(q, k, v, beta, g, scale, chunk: int = 64, s=None):
    """The chunked form: T padded to n chunks of Q (padding has beta = 0, g = 0:
    no write, no decay). Per chunk, the WY representation turns the Q
    sequential corrections into products: with L_ij = exp(b_i - b_j) (b the
    cumulative log decay in the chunk) and M = tril_-1((beta k) k^T ⊙ L),
    T = (I + M)^-1 (one unit-triangular solve), u = T (beta v),
    w = T (beta k exp(b)). Then chunk by chunk v_new = u - w S, the state
    S <- exp(b_Q) S + (k exp(b_Q - b))^T v_new, and at the end, batched,
    o = (q exp(b)) S_start + tril(q k^T ⊙ L) v_new."""
    bsz, h, t, dk = q.shape
    dv = v.shape[-1]
    n = -(-t // chunk)
    qc = _chunked(acc(q) * scale, n, chunk)                         # (B, H, n, Q, dk)
    kc, vc = _chunked(acc(k), n, chunk), _chunked(acc(v), n, chunk)
    bc = _chunked(acc(beta).unsqueeze(-1), n, chunk)                # (B, H, n, Q, 1)
    b = _chunked(acc(g).unsqueeze(-1), n, chunk).squeeze(-1).cumsum(-1)   # (B, H, n, Q)
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    decay = (b.unsqueeze(-1) - b.unsqueeze(-2)).masked_fill(~causal, float("-inf")).exp()   # (B, H, n, Q, Q)
    eye = torch.eye(chunk, device=q.device)
    m = ((kc * bc) @ kc.transpose(-1, -2) * decay).masked_fill(~causal, 0) * (1 - eye)
    tinv = torch.linalg.solve_triangular(eye + m, eye.expand_as(m), upper=False, unitriangular=True)
    u = tinv @ (vc * bc)                                               # (B, H, n, Q, dv)
    w = tinv @ (kc * bc * b.exp().unsqueeze(-1))                       # (B, H, n, Q, dk)
    p = (qc @ kc.transpose(-1, -2)) * decay                            # (B, H, n, Q, Q), zero above the diagonal
    last = b[..., -1:]                                                 # (B, H, n, 1)
    kd = kc * (last - b).exp().unsqueeze(-1)                           # keys decayed to the chunk end
    if s is None:
        s = q.new_zeros(bsz, h, dk, dv, dtype=acc_dtype(q))
    starts, fresh, s = _carry_delta(s, u, w, last, kd)
    o = (qc * b.exp().unsqueeze(-1)) @ starts + p @ fresh
    return unpadded(o.reshape(bsz, h, n * chunk, dv), t, 2), s


def _carry_delta(s, u, w, last, kd):
    """Chunk by chunk: v_new = u - w S, S <- e^(b_Q) S + (k decayed)^T v_new.
    Returns the states at each chunk's start and the v_new, stacked, and the
    last state. The transition is a dk x dk matrix per chunk (not elementwise,
    so not chunk_states_solve): eagerly the loop over the n chunks; under
    torch.compile, up to SOLVE_MAX_CHUNKS chunks (carry_by_solve), the same
    loop over SOLVE_MAX_CHUNKS steps, the chunks past n given u = w = kd = 0
    and b_Q = 0 (S passes unchanged), so one graph serves every chunk count
    where a loop over n would be unrolled per length."""
    n = u.shape[2]
    steps = n
    if carry_by_solve(n):
        steps, pad = SOLVE_MAX_CHUNKS, SOLVE_MAX_CHUNKS - n
        u, w, kd = (F.pad(z, (0, 0, 0, 0, 0, pad)) for z in (u, w, kd))
        last = F.pad(last, (0, 0, 0, pad))
    starts, fresh = [], []
    for i in range(steps):
        starts.append(s)
        vn = u[:, :, i] - w[:, :, i] @ s                               # (B, H, Q, dv)
        s = s * last[:, :, i].exp()[..., None] + kd[:, :, i].transpose(-1, -2) @ vn
        fresh.append(vn)
    return unpadded(torch.stack(starts, 2), n, 2), unpadded(torch.stack(fresh, 2), n, 2), s


class GatedDeltaNet(nn.Module):
    def __init__(self, c, heads, head_dim=256, expand_v=2.0, conv=4, conv_bias=False, gate=True, chunk=64):
        super().__init__()
        self.heads, self.chunk, self.conv, self.gate = heads, chunk, conv, gate
        self.head_k, self.head_v = head_dim, round(head_dim * expand_v)
        self.key_dim, self.value_dim = heads * self.head_k, heads * self.head_v
        self.q_proj = nn.Linear(c, self.key_dim, bias=False)
        self.k_proj = nn.Linear(c, self.key_dim, bias=False)
        self.v_proj = nn.Linear(c, self.value_dim, bias=False)
        self.a_proj = nn.Linear(c, heads, bias=False)
        self.b_proj = nn.Linear(c, heads, bias=False)
        self.A_log = nn.Parameter(torch.log(torch.empty(heads).uniform_(1, 16)))
        self.dt_bias = nn.Parameter(torch.zeros(heads))
        if conv:
            self.q_conv1d = ShortConv(self.key_dim, conv, conv_bias)
            self.k_conv1d = ShortConv(self.key_dim, conv, conv_bias)
            self.v_conv1d = ShortConv(self.value_dim, conv, conv_bias)
        if gate:
            self.g_proj = nn.Linear(c, self.value_dim, bias=False)
        self.o_norm = GatedRMSNorm(self.head_v, eps=1e-5, gated=gate)
        self.o_proj = nn.Linear(self.value_dim, c, bias=False)

    def forward(self, x, state=None):
        b, t, _ = x.shape
        if t == 0:
            return x.new_zeros(b, 0, self.o_proj.out_features)
        h, dk, dv = self.heads, self.head_k, self.head_v
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.conv:
            q = conv_stream(self.q_conv1d, q, state, "conv_q")
            k = conv_stream(self.k_conv1d, k, state, "conv_k")
            v = conv_stream(self.v_conv1d, v, state, "conv_v")
        else:
            q, k, v = F.silu(q), F.silu(k), F.silu(v)
        q, k = (_l2norm(z.view(b, t, h, dk)).transpose(1, 2) for z in (q, k))   # (B, H, T, dk)
        v = v.view(b, t, h, dv).transpose(1, 2)                        # (B, H, T, dv)
        beta = torch.sigmoid(self.b_proj(x)).transpose(1, 2)           # (B, H, T)
        g = (-acc(self.A_log).exp() * F.softplus(acc(self.a_proj(x)) + self.dt_bias)).transpose(1, 2)
        scale = dk ** -0.5
        fla_chunk = cuda_kernel("chunk_gated_delta_rule", x.is_cuda) if state is None else None
        if fla_chunk is not None:   # fla's fused kernel (the `cuda` extra), its (B, T, H, ...) layout: the same o
            o = fla_chunk(*(z.transpose(1, 2) for z in (q, k, v, g, beta)), scale=scale)[0].transpose(1, 2)
        elif state is None:
            o = chunk_delta_rule(q, k, v, beta, g, scale, self.chunk)[0]
        else:
            s = state.get("S")
            if s is None:
                s = x.new_zeros(b, h, dk, dv, dtype=acc_dtype(x))
            if t == 1:
                o, s = delta_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], beta[:, :, 0], g[:, :, 0], scale, s)
                o = o.unsqueeze(2)
            else:
                o, s = chunk_delta_rule(q, k, v, beta, g, scale, self.chunk, s)
            state["S"] = s
        o = o.to(x.dtype).transpose(1, 2)                              # (B, T, H, dv)
        o = self.o_norm(o, self.g_proj(x).view(b, t, h, dv) if self.gate else None)
        return self.o_proj(o.reshape(b, t, h * dv))


def _l2norm(x, eps: float = 1e-6):
    """fla's l2norm: x / sqrt(sum(x²) + eps) over the head dim, in fp32."""
    xf = acc(x)
    return (xf * torch.rsqrt(xf.pow(2).sum(-1, keepdim=True) + eps)).to(x.dtype)
