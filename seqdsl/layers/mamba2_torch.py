"""Mamba-2 (the `mamba2` layer): transformers' `Mamba2Mixer`, its torch path
(gated RMSNorm included: gate first, then normalise per group), under the same
parameter names and shapes (its state_dict loads strict).

The SSD recurrence per head h_t = exp(dt_t·A)·h_{t-1} + dt_t·x_t ⊗ B_t,
y_t = h_t·C_t + D·x_t comes in three forms that the tests hold equal:

* `ssd_naive`: the readable reference, one step at a time;
* `ssd_chunk_scan`: training and prefill, the reference's chunked algorithm
  (chunks of `chunk` steps: intra-chunk products, chunk states, the state
  handed chunk to chunk, state-to-output products) with the scores C·Bᵀ once
  per group and every product a bmm on its operands in place, from an
  initial state when streaming;
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


class SsdDecayedScores(torch.autograd.Function):
    """ssd_chunk_scan's intra-chunk scores (b, h, c, l, s) = exp(a_cum[l] -
    a_cum[s])·cb[l, s] from a (b, h, c, l), its cumulative sum a_cum and the
    causal (lower-triangular) group scores cb (b, c, g, l, s), each group's H/G
    heads consecutive.

    The segment sum is the difference of cumulative sums (as mamba-ssm's kernel
    computes it) plus the fp32 cumsum's rounding error there (from an fp64
    cumsum), and the backward sums each a's segments in fp64: as accurate as
    the reference's cumsum over each segment (its (Q, Q) masked cumsum, whose
    backward flips; benchmarks/mamba2_accuracy.py).
    It is clamped to [-80, 0] before exp: exp is 10-50x slower on inputs past
    -87, where it underflows (those decays become e^-80, not 0: below 1e-34,
    beside the diagonal's 1), and above the diagonal, where cb is 0, it never
    overflows. Its own backward, the segment sums' gradient gs·scores summed over
    each row and column, is two passes over the scores where autograd's is five,
    and keeps no pre-exp copy."""

    @staticmethod
    def forward(ctx, a, a_cum, cb):
        bsz, nh, nc, q = a_cum.shape
        lo = (torch.cumsum(a.double(), dim=-1) - a_cum.double()).float()
        decay = a_cum[..., :, None] - a_cum[..., None, :]
        decay.add_(lo[..., :, None]).sub_(lo[..., None, :]).clamp_(-80.0, 0.0).exp_()
        scores = decay.view(bsz, cb.shape[2], -1, nc, q, q) * cb.transpose(1, 2)[:, :, None]
        ctx.save_for_backward(decay, cb, scores)
        return scores.view(bsz, nh, nc, q, q)

    @staticmethod
    def backward(ctx, gs):
        decay, cb, scores = ctx.saved_tensors
        gs = gs.reshape(scores.shape)
        gd = (gs * scores).flatten(1, 2).double()       # the segment sums' gradient (b, h, c, l, s), fp64
        ga = (gd.sum(-1) - gd.sum(-2)).flip(-1).cumsum(-1).flip(-1)   # each a[j]: its segments, s < j <= l
        return ga.float(), None, (gs * decay.view(scores.shape)).sum(2).transpose(1, 2)


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
    """The reference's chunked SSD (mamba2_chunk_scan) without D, B and C read
    per group: x (B, T, H, P), dt (B, T, H), a (H,), b/c (B, T, G, N) fp32, the
    H/G heads of a group consecutive (G = H: ssd_naive's per-head b, c). Returns
    y (B, T, H, P) and the final state (B, H, P, N).

    Laid out so that every product is one bmm on its operands in place, none of
    the (Q, Q) tensors copied: x and the outputs time-major (b, c, l, h, p), the
    decays and scores head-major (b, h, c, l, s). Within a chunk the decay from
    s to l is exp(a_cum[l] - a_cum[s]), as mamba-ssm's kernel computes it, plus
    the rounding error of the fp32 cumulative sum (from an fp64 one, no
    gradient): as accurate as the reference's cumsum of each segment, without
    its (Q, Q) cumsum."""
    bsz, t, nh, p = x.shape
    g, n, q = b.shape[2], b.shape[3], chunk
    k = nh // g                        # heads per group
    nc = (t + q - 1) // q              # ceil, and the padding from it, as the other chunked forms: the
    pad = nc * q - t                   # padded length is nc·Q to the compiler (not T + (Q - T mod Q) mod Q)
    # padded as 3-d tensors, whose padded copies are always contiguous (a 4-d one laid out channels-last
    # stays so): x, B and C time-major, then B and C with the groups before the time (a copy when G > 1)
    xs = F.pad((x * dt[..., None]).flatten(2), (0, 0, 0, pad)).view(bsz, nc, q, nh, p)   # (b, c, l, h, p)
    a = F.pad((a * dt).transpose(1, 2), (0, pad)).view(bsz, nh, nc, q)                 # (b, h, c, l)
    b, c = [F.pad(v.flatten(2), (0, 0, 0, pad)).view(bsz, nc, q, g, n).transpose(2, 3).contiguous()
            for v in (b, c)]                                                            # (b, c, g, s, n)
    a_cum = torch.cumsum(a, dim=-1)
    # 1. within each chunk: the scores C·Bᵀ per group, causal, decayed per head, applied to x (head-major:
    # a copy unless H = 1)
    scores = SsdDecayedScores.apply(a, a_cum, torch.tril(c @ b.transpose(-1, -2)))   # (b, h, c, l, s)
    y_diag = scores @ xs.permute(0, 3, 1, 2, 4).contiguous()                          # (b, h, c, l, p)
    del scores                         # (kept for backward when training)
    # 2. each chunk's own final state: x decayed to the chunk's end (groups first: a copy when G > 1), times B
    xd = xs * torch.exp(a_cum[..., -1:] - a_cum).permute(0, 2, 3, 1)[..., None]       # (b, c, l, h, p)
    xd = xd.view(bsz, nc, q, g, k * p).transpose(2, 3).contiguous()                   # (b, c, g, l, kp)
    states = (xd.transpose(-1, -2) @ b).view(bsz, nc, nh, p, n)                       # (b, c, h, p, n)
    del xd
    # 3. the state entering every chunk and the final one, from the initial one when streaming (the
    # chunk states head-major: a copy unless H = 1 or one chunk, whatever the batch)
    w = torch.exp(_segsum(F.pad(a_cum[..., -1], (1, 0))))                             # (b, h, nc+1, nc+1)
    states = w[..., 1:] @ states.permute(0, 2, 1, 3, 4).contiguous().view(bsz, nh, nc, p * n)  # (b, h, nc+1, pn)
    if h0 is not None:
        states = states + w[..., :1] * h0.to(states.dtype).reshape(bsz, nh, 1, p * n)
    final = states[:, :, -1].view(bsz, nh, p, n)
    states = states[:, :, :-1].transpose(1, 2).contiguous().view(bsz, nc, g, k * p, n)  # (b, c, g, kp, n)
    # 4. the entering state's contribution to every output, made time-major (a copy when G > 1)
    y_off = (c @ states.transpose(-1, -2)).transpose(2, 3)                            # (b, c, l, g, kp)
    y_off = y_off.reshape(bsz, nc, q, nh, p).contiguous() * torch.exp(a_cum).permute(0, 2, 3, 1)[..., None]
    y = y_off + y_diag.permute(0, 2, 3, 1, 4)                                         # (b, c, l, h, p)
    return unpadded(y.view(bsz, nc * q, nh, p), t, 1), final


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
        # x heads time-major in a tensor of their own (the conv's output is channels-first): the scan's
        # products read it in place, and no saved view has the length in its strides, which inductor
        # cannot order (pytorch#185510). (.to(memory_format=) skips the copy at B = 1, torch 2.13.)
        xs = xs.reshape(bsz, t, nh, p).contiguous().float()
        b, c = b.reshape(bsz, t, g, n).float(), c.reshape(bsz, t, g, n).float()      # (B, T, G, N)
        h0 = None if state is None else state.get("ssm")
        scan = cuda_kernel("ssd_chunk_scan", x.is_cuda) if not (state is not None and t == 1) else None
        if scan is not None:   # mamba-ssm's fused SSD (the `cuda` extra): the same y and final state
            y, final = scan(xs, dt, a, b, c, self.chunk, initial_states=h0, return_final_states=True)
            if state is not None:
                state["ssm"] = final.detach()
        else:
            if state is not None and t == 1:
                if h0 is None:
                    h0 = state["ssm"] = xs.new_zeros(bsz, nh, p, n)
                b, c = b[:, 0].repeat_interleave(nh // g, dim=1), c[:, 0].repeat_interleave(nh // g, dim=1)
                y = ssd_step(h0, xs[:, 0], dt[:, 0], a, b, c)[:, None]                  # b, c (B, H, N)
            else:
                y, final = ssd_chunk_scan(xs, dt, a, b, c, self.chunk, h0)
                if state is not None and t:
                    state["ssm"] = final.detach()
                del final             # a view of all the states handed between chunks: not held to the end
        groups = (bsz, t, g, self.d_inner // g)                                      # the norm's groups
        y = y.reshape(groups) + (xs * self.D[:, None]).reshape(groups)
        y = self.norm(y, gate)
        return self.out_proj(y.to(x.dtype))
