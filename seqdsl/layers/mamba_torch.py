"""Mamba-1 (the `mamba` layer): transformers' `MambaMixer`, its torch path,
under the same parameter names and shapes (its state_dict loads strict).

The selective scan h_t = exp(dt_t·A) ⊙ h_{t-1} + dt_t·B_t·x_t, y_t = C_t·h_t
comes in four forms that the tests hold equal:

* `mamba_scan_naive`: the readable reference, one step at a time;
* `mamba_loop_scan`: training and prefill eagerly: a step loop over the
  steps' slices (`unbind`: one stack in backward, where indexing `da[:, t]`
  writes a full-size zero gradient every step), the read-out h_t·C_t in the
  loop (it keeps the states for backward once; a bmm over their stack after
  the loop keeps them twice and was 1.2-1.3x slower). On the CPU the layer's
  training step is 7-13x faster than with the chunked form, which makes
  log2(Q) + 2 passes over (B, T, di, N) (benchmarks/mamba_scan.py);
* `mamba_chunk_scan`: training and prefill under torch.compile, chunks of
  MAMBA_CHUNK steps: a doubling (Hillis-Steele) scan inside every chunk at
  once, then the state handed chunk to chunk, so the critical path is
  ceil(T/Q) chunks, not T steps, and one graph serves every length (the loop
  would unroll T steps);
* `mamba_scan_step`: one decoding step on the carried state.

On a GPU with mamba-ssm and causal-conv1d installed (the `cuda` extra) the
whole-sequence scan and convolution run their fused kernels instead
(torch_modules.cuda_kernel); the function is the same.

Streaming (`state` dict): "conv" the last K inputs of the convolution (the
reference's conv cache, model dtype), "ssm" the scan state (B, di, N) in fp32.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .torch_modules import carry_by_solve, causal_conv_silu, chunk_states_solve, cuda_kernel, softplus_inverse_dt, unpadded

MAMBA_CHUNK = 64


def mamba_scan_naive(da, dbx, c, h0=None):
    """da, dbx: (B, T, di, N) decay and input; c: (B, T, N). Returns y (B, T, di), h_T."""
    h = torch.zeros_like(dbx[:, 0]) if h0 is None else h0
    ys = []
    for t in range(da.shape[1]):
        h = da[:, t] * h + dbx[:, t]                            # (B, di, N)
        ys.append((h @ c[:, t, :, None])[..., 0])               # (B, di)
    return torch.stack(ys, 1), h


def mamba_loop_scan(da, dbx, c, h0=None):
    """The same as mamba_scan_naive over the steps' slices: y (B, T, di), h_T."""
    h = torch.zeros_like(dbx[:, 0]) if h0 is None else h0
    ys = []
    for a_t, b_t, c_t in zip(da.unbind(1), dbx.unbind(1), c[..., None].unbind(1)):
        h = torch.addcmul(b_t, a_t, h)                          # (B, di, N)
        ys.append(torch.bmm(h, c_t))                            # (B, di, 1)
    return torch.stack(ys, 1)[..., 0], h


def mamba_chunk_scan(da, dbx, c, h0=None, chunk=MAMBA_CHUNK):
    """The same as mamba_scan_naive, in chunks of `chunk` steps (T padded to a
    whole number of chunks with identity steps): y (B, T, di), h_T."""
    bsz, t = da.shape[:2]
    nc = (t + chunk - 1) // chunk      # ceil: a floor of -T would give inductor negative ranges
    pad = nc * chunk - t
    a = F.pad(da, (0, 0, 0, 0, 0, pad), value=1.0).view(bsz, nc, chunk, *da.shape[2:])   # (B, nc, Q, di, N)
    b = F.pad(dbx, (0, 0, 0, 0, 0, pad)).view(bsz, nc, chunk, *dbx.shape[2:])
    k = 1
    while k < chunk:  # doubling: a_t = prod of the last 2k decays, b_t = the scan over those 2k steps
        b = torch.cat([b[:, :, :k], b[:, :, k:] + a[:, :, k:] * b[:, :, :-k]], 2)
        a = torch.cat([a[:, :, :k], a[:, :, k:] * a[:, :, :-k]], 2)
        k *= 2
    h = torch.zeros_like(b[:, 0, 0]) if h0 is None else h0     # (B, di, N)
    if carry_by_solve(nc):   # every chunk count in one graph: the carry as one solve
        hc = chunk_states_solve(h.reshape(bsz, -1, 1), a[:, :, -1].reshape(bsz, nc, -1),
                                b[:, :, -1].reshape(bsz, nc, -1, 1))[:, :nc].reshape(bsz, nc, 1, *h.shape[1:])
        hs = (b + a * hc).reshape(bsz, nc * chunk, *h.shape[1:])
    else:
        hs = []
        for i in range(nc):                                     # the state entering chunk i
            hs.append(b[:, i] + a[:, i] * h[:, None])
            h = hs[-1][:, -1]
        hs = torch.cat(hs, 1)                                   # (B, nc·Q, di, N)
    y = hs @ F.pad(c, (0, 0, 0, pad))[..., None]                # (B, nc·Q, di, 1)
    return unpadded(y, t, 1)[..., 0], hs[:, :t][:, -1]                   # (a symbolic index would fix T)


def mamba_scan_step(h, da, dbx, c):
    """One step: h (B, di, N) fp32 updated in place; y (B, di)."""
    h.copy_(da * h + dbx)
    return (h @ c[..., None])[..., 0]


class Mamba(nn.Module):
    def __init__(self, d, state, expand, conv, dt_rank, bias=False, conv_bias=True):
        super().__init__()
        di = expand * d
        self.d_inner, self.state_size, self.kernel, self.dt_rank = di, state, conv, dt_rank
        self.in_proj = nn.Linear(d, 2 * di, bias=bias)
        self.conv1d = nn.Conv1d(di, di, conv, groups=di, bias=conv_bias, padding=conv - 1)
        self.x_proj = nn.Linear(di, dt_rank + 2 * state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, di, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, state + 1, dtype=torch.float32)).repeat(di, 1))
        self.D = nn.Parameter(torch.ones(di))
        self.out_proj = nn.Linear(di, d, bias=bias)
        with torch.no_grad():                                   # the reference's dt initialisation
            std = dt_rank ** -0.5
            self.dt_proj.weight.uniform_(-std, std)
            self.dt_proj.bias.copy_(softplus_inverse_dt(di))

    def forward(self, x, state=None):
        if x.shape[1] == 0:                   # an empty streaming chunk (a strided conv mid-stride)
            return torch.zeros_like(x)
        bsz, t, _ = x.shape
        n, r = self.state_size, self.dt_rank
        xs, z = self.in_proj(x).chunk(2, dim=-1)               # (B, T, di) each
        xs = causal_conv_silu(self.conv1d, xs.transpose(1, 2), state, self.kernel).transpose(1, 2)
        dt, b, c = self.x_proj(xs).split([r, n, n], dim=-1)     # (B, T, R), (B, T, N), (B, T, N)
        dt = F.softplus(self.dt_proj(dt)).float()               # (B, T, di)
        a = -torch.exp(self.A_log.float())                      # (di, N)
        h0 = None if state is None else state.get("ssm")
        scan = cuda_kernel("selective_scan", x.is_cuda) if h0 is None else None
        if scan is not None:   # mamba-ssm's fused selective scan (the `cuda` extra): the same y and h_T
            y, h = scan(*(v.float().transpose(1, 2).contiguous() for v in (xs, dt)), a,       # (B, di, T)
                        *(v.float().transpose(1, 2).contiguous() for v in (b, c)), return_last_state=True)
            y = y.transpose(1, 2)                               # (B, T, di)
            if state is not None:
                state["ssm"] = h.detach().clone()               # (B, di, N)
        else:
            da = torch.exp(dt[..., None] * a)                   # (B, T, di, N)
            dbx = (dt * xs.float())[..., None] * b.float()[:, :, None]
            c = c.float()
            if state is not None and t == 1:
                if h0 is None:
                    h0 = state["ssm"] = da.new_zeros(bsz, self.d_inner, n)
                y = mamba_scan_step(h0, da[:, 0], dbx[:, 0], c[:, 0])[:, None]
            else:
                form = mamba_chunk_scan if torch.compiler.is_compiling() else mamba_loop_scan
                y, h = form(da, dbx, c, h0)                     # (B, T, di)
                if state is not None and t:
                    state["ssm"] = h.detach().clone()
        y = (y + xs * self.D) * F.silu(z)
        return self.out_proj(y.to(x.dtype))
