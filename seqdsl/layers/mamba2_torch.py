"""Mamba-2 (the `mamba2` layer): transformers' `Mamba2Mixer`, its torch path
(gated RMSNorm included: gate first, then normalise per group), under the same
parameter names and shapes (its state_dict loads strict).

The SSD recurrence per head h_t = exp(dt_t·A)·h_{t-1} + dt_t·x_t ⊗ B_t,
y_t = h_t·C_t + D·x_t comes in three forms that the tests hold equal:

* `ssd_naive`: the readable reference, one step at a time;
* `ssd_chunk_scan`: training and prefill, the reference's chunked form (chunks
  of `chunk` steps: intra-chunk products, chunk states, the state handed chunk
  to chunk, state-to-output products), from an initial state when streaming;
* `ssd_step`: one decoding step on the carried state.

On a GPU with mamba-ssm and causal-conv1d installed (the `cuda` extra) the
chunked scan (from a carried state too) and the whole-sequence convolution run
their fused kernels instead (torch_modules.cuda_kernel); the function is the same.

Streaming (`state` dict): "conv" the last K inputs of the convolution over
x, B, C (the reference's conv cache, model dtype), "ssm" (B, Hm, P, N) fp32.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .torch_modules import causal_conv_silu, cuda_kernel, softplus_inverse_dt, unpadded


def _segsum(x):
    """(..., Q) -> (..., Q, Q): sum of x over (s, t] below the diagonal, -inf above."""
    q = x.size(-1)
    x = x[..., None].expand(*x.size(), q)
    x = x.masked_fill(~torch.tril(torch.ones(q, q, dtype=torch.bool, device=x.device), -1), 0)
    s = torch.cumsum(x, dim=-2)
    return s.masked_fill(~torch.tril(torch.ones(q, q, dtype=torch.bool, device=x.device), 0), -torch.inf)


def ssd_naive(x, dt, a, b, c, h0=None):
    """x (B, T, H, P), dt (B, T, H), a (H,), b/c (B, T, H, N) fp32. y (B, T, H, P), h_T."""
    h = x.new_zeros(x.shape[0], x.shape[2], x.shape[3], b.shape[-1]) if h0 is None else h0
    ys = []
    for t in range(x.shape[1]):
        decay = torch.exp(dt[:, t] * a)[..., None, None]                            # (B, H, 1, 1)
        h = decay * h + (dt[:, t, :, None] * x[:, t])[..., None] * b[:, t, :, None]  # (B, H, P, N)
        ys.append((h @ c[:, t, :, :, None])[..., 0])                                # (B, H, P)
    return torch.stack(ys, 1), h


def ssd_chunk_scan(x, dt, a, b, c, chunk, h0=None):
    """The reference's chunked SSD (mamba2_chunk_scan) without D: same arguments
    as ssd_naive. Returns y (B, T, H, P) and the final state (B, H, P, N)."""
    bsz, t, nh, p = x.shape
    nc = (t + chunk - 1) // chunk      # ceil, and the padding from it, as the other chunked forms: the
    pad = nc * chunk - t               # padded length is nc·Q to the compiler (not T + (Q - T mod Q) mod Q)
    x = x * dt[..., None]
    a = a * dt                                                                      # (B, T, H)
    x, a, b, c = [F.pad(v, (0, 0) * (v.dim() - 2) + (0, pad)) for v in (x, a, b, c)]
    x = x.reshape(bsz, nc, chunk, nh, p)                                            # (b, c, l, h, p)
    b = b.reshape(bsz, nc, chunk, nh, -1)                                           # (b, c, l, h, n)
    c = c.reshape(bsz, nc, chunk, nh, -1)
    a = a.reshape(bsz, nc, chunk, nh).permute(0, 3, 1, 2)                           # (b, h, c, l)
    a_cum = torch.cumsum(a, dim=-1)
    # 1. within each chunk: attention-like scores C·B masked by the decays
    decay = torch.exp(_segsum(a))                                                   # (b, h, c, l, s)
    scores = torch.einsum("bclhn,bcshn->bclsh", c, b) * decay.permute(0, 2, 3, 4, 1)
    y_diag = torch.einsum("bclsh,bcshp->bclhp", scores, x)
    # 2. each chunk's own final state
    b_decay = b * torch.exp(a_cum[..., -1:] - a_cum).permute(0, 2, 3, 1)[..., None]
    states = torch.einsum("bclhn,bclhp->bchpn", b_decay, x)                         # (b, c, h, p, n)
    # 3. the state entering every chunk, from the initial one
    first = torch.zeros_like(states[:, :1]) if h0 is None else h0[:, None].to(states.dtype)
    states = torch.cat([first, states], dim=1)
    chunk_decay = torch.exp(_segsum(F.pad(a_cum[..., -1], (1, 0)))).transpose(1, 3)  # (b, z, c, h)
    states = torch.einsum("bzch,bzhpn->bchpn", chunk_decay, states)
    states, final = states[:, :-1], states[:, -1]
    # 4. the entering state's contribution to every output
    y_off = torch.einsum("bclhn,bchpn->bclhp", c, states) * torch.exp(a_cum).permute(0, 2, 3, 1)[..., None]
    y = unpadded((y_diag + y_off).reshape(bsz, nc * chunk, nh, p), t, 1)
    return y, final


def ssd_step(h, x, dt, a, b, c):
    """One step: h (B, H, P, N) updated in place; x (B, H, P), dt (B, H), b/c (B, H, N). y (B, H, P)."""
    h.copy_(torch.exp(dt * a)[..., None, None] * h + (dt[..., None] * x)[..., None] * b[:, :, None])
    return (h @ c[..., None])[..., 0]


class MambaGatedRMSNorm(nn.Module):
    """The reference's MambaRMSNormGated: y·silu(gate), then RMS-normalised per group."""

    def __init__(self, width, group_size, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.group_size, self.eps = group_size, eps

    def forward(self, x, gate):
        """x (..., G, di/G) already in groups, gate (..., di) -> (..., di). Every
        tensor kept for backward is made in groups, none is a view of one: inductor
        cannot order a saved view's strides over a dynamic length (pytorch#185510)."""
        dtype = x.dtype
        g = x.float() * F.silu(gate.reshape(x.shape).float())
        g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * g.flatten(-2).to(dtype)


class Mamba2(nn.Module):
    def __init__(self, d, state, expand, head_dim, groups, conv, chunk, bias=False, conv_bias=True):
        super().__init__()
        di = expand * d
        self.d_inner, self.state_size, self.head_dim, self.groups = di, state, head_dim, groups
        self.heads, self.kernel, self.chunk = di // head_dim, conv, chunk
        self.conv_dim = di + 2 * groups * state
        self.in_proj = nn.Linear(d, di + self.conv_dim + self.heads, bias=bias)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, conv, groups=self.conv_dim, bias=conv_bias,
                                padding=conv - 1)
        self.dt_bias = nn.Parameter(softplus_inverse_dt(self.heads))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, self.heads + 1, dtype=torch.float32)))
        self.norm = MambaGatedRMSNorm(di, di // groups)
        self.D = nn.Parameter(torch.ones(self.heads))
        self.out_proj = nn.Linear(di, d, bias=bias)

    def forward(self, x, state=None):
        if x.shape[1] == 0:                   # an empty streaming chunk (a strided conv mid-stride)
            return torch.zeros_like(x)
        bsz, t, _ = x.shape
        nh, p, n, g = self.heads, self.head_dim, self.state_size, self.groups
        gate, xbc, dt = self.in_proj(x).split([self.d_inner, self.conv_dim, nh], dim=-1)
        xbc = causal_conv_silu(self.conv1d, xbc.transpose(1, 2), state, self.kernel).transpose(1, 2)
        xs, b, c = xbc.split([self.d_inner, g * n, g * n], dim=-1)
        dt = F.softplus(dt + self.dt_bias).float()                                  # (B, T, H)
        a = -torch.exp(self.A_log.float())                                           # (H,)
        xs = xs.reshape(bsz, t, nh, p).float()
        if torch.compiler.is_compiling():   # inductor cannot order the strides of a saved view that has
            xs = xs.contiguous()            # the length in them (pytorch#185510): saved as its own tensor
        b, c = b.reshape(bsz, t, g, n).float(), c.reshape(bsz, t, g, n).float()      # (B, T, G, N)
        h0 = None if state is None else state.get("ssm")
        scan = cuda_kernel("ssd_chunk_scan", x.is_cuda) if not (state is not None and t == 1) else None
        if scan is not None:   # mamba-ssm's fused SSD (the `cuda` extra): the same y and final state
            y, final = scan(xs, dt, a, b, c, self.chunk, initial_states=h0, return_final_states=True)
            if state is not None:
                state["ssm"] = final.detach()
        else:
            b, c = b.repeat_interleave(nh // g, dim=2), c.repeat_interleave(nh // g, dim=2)   # (B, T, H, N)
            if state is not None and t == 1:
                if h0 is None:
                    h0 = state["ssm"] = xs.new_zeros(bsz, nh, p, n)
                y = ssd_step(h0, xs[:, 0], dt[:, 0], a, b[:, 0], c[:, 0])[:, None]
            else:
                y, final = ssd_chunk_scan(xs, dt, a, b, c, self.chunk, h0)
                if state is not None and t:
                    state["ssm"] = final.detach()
        groups = (bsz, t, g, self.d_inner // g)                                      # the norm's groups
        y = y.reshape(groups) + (xs * self.D[:, None]).reshape(groups)
        y = self.norm(y, gate)
        return self.out_proj(y.to(x.dtype))
