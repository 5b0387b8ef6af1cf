"""Griffin's recurrent block (the `rglru` layer): transformers'
`RecurrentGemmaRecurrentBlock` under the same parameter names and shapes (its
state_dict loads strict): a GeLU gate branch, a temporal depthwise conv, the
RG-LRU with block-diagonal gates, the product, an output projection.

The RG-LRU recurrence h_t = a_t ⊙ h_{t-1} + sqrt(1 - a_t²) ⊙ (i_t ⊙ x_t)
(position 0 resets: a = 0 and no normalisation) comes in three forms that the
tests hold equal:

* `rglru_scan_naive`: the readable reference, one step at a time;
* `rglru_chunk_scan`: training and prefill, chunks of RGLRU_CHUNK steps: a
  doubling (Hillis-Steele) scan inside every chunk, the state handed chunk to chunk;
* the decoding step (T = 1 with a state): one multiply-add.

Streaming (`state` dict): "conv" the last K-1 inputs of the conv (model
dtype), "h" the recurrent state (B, W) in fp32 as the reference keeps it,
"pos" the position (the reset at 0).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from .torch_modules import carry_by_solve, causal_depthwise_conv, chunk_states_solve, unpadded

RGLRU_CHUNK = 64
_MAX_SQRT_GRADIENT = 1000.0


class SqrtBoundDerivative(torch.autograd.Function):
    """sqrt with its gradient clipped at _MAX_SQRT_GRADIENT, as the reference."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sqrt(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / torch.sqrt(torch.clip(4.0 * x, min=1 / _MAX_SQRT_GRADIENT ** 2))


def rglru_scan_naive(a, x, h0=None):
    """a, x: (B, T, W) fp32. Every state (B, T, W)."""
    h = torch.zeros_like(x[:, 0]) if h0 is None else h0
    hs = []
    for t in range(x.shape[1]):
        h = a[:, t] * h + x[:, t]
        hs.append(h)
    return torch.stack(hs, 1)


def rglru_chunk_scan(a, x, h0=None, chunk=RGLRU_CHUNK):
    """Every state (B, T, W) of h_t = a_t·h_{t-1} + x_t, from h0."""
    bsz, t = x.shape[:2]
    nc = (t + chunk - 1) // chunk      # ceil: a floor of -T would give inductor negative ranges
    pad = nc * chunk - t                                        # identity steps at the end
    a = F.pad(a, (0, 0, 0, pad), value=1.0).view(bsz, nc, chunk, -1)   # (B, nc, Q, W)
    b = F.pad(x, (0, 0, 0, pad)).view(bsz, nc, chunk, -1)
    k = 1
    while k < chunk:
        b = torch.cat([b[:, :, :k], b[:, :, k:] + a[:, :, k:] * b[:, :, :-k]], 2)
        a = torch.cat([a[:, :, :k], a[:, :, k:] * a[:, :, :-k]], 2)
        k *= 2
    h = torch.zeros_like(b[:, 0, 0]) if h0 is None else h0     # (B, W)
    if carry_by_solve(nc):   # every chunk count in one graph: the carry as one solve
        hs = chunk_states_solve(h[..., None], a[:, :, -1], b[:, :, -1, :, None])[:, :nc, :, 0]   # (B, nc, W)
        return unpadded((b + a * hs[:, :, None]).reshape(bsz, nc * chunk, -1), t, 1)
    out = []
    for i in range(nc):
        out.append(b[:, i] + a[:, i] * h[:, None])
        h = out[-1][:, -1]
    return unpadded(torch.cat(out, 1), t, 1)


class RgLru(nn.Module):
    """The reference's RecurrentGemmaRglru: gates per head block, the scan."""

    def __init__(self, width, heads):
        super().__init__()
        self.heads, self.block = heads, width // heads
        self.recurrent_param = nn.Parameter(torch.empty(width))
        self.input_gate_weight = nn.Parameter(torch.empty(heads, self.block, self.block))
        self.input_gate_bias = nn.Parameter(torch.zeros(heads, self.block))
        self.recurrent_gate_weight = nn.Parameter(torch.empty(heads, self.block, self.block))
        self.recurrent_gate_bias = nn.Parameter(torch.zeros(heads, self.block))
        with torch.no_grad():                                   # the reference's initialisation
            for w in (self.input_gate_weight, self.recurrent_gate_weight):
                w.normal_(0, math.sqrt(1.0 / self.block))
            # as the reference's _init_weights: a² uniform in [0.9², 0.999²], Λ = log(1/a - 1)
            self.recurrent_param.uniform_(0.9 ** 2 + 1e-8, 0.999 ** 2 + 1e-8).log_().mul_(0.5).neg_().exp_().sub_(1.0).log_()

    def _gate(self, x, w, bias):
        bsz, t, width = x.shape
        xh = x.reshape(bsz * t, self.heads, self.block).transpose(0, 1)   # (H, B*T, block)
        y = torch.baddbmm(bias[:, None, :], xh, w)                          # (H, B*T, block)
        return torch.sigmoid(y.transpose(0, 1).reshape(bsz, t, width))

    def forward(self, x, state=None):
        bsz, t, _ = x.shape
        pos = 0 if state is None else state.get("pos", 0)
        i_gate = self._gate(x, self.input_gate_weight, self.input_gate_bias)
        r_gate = self._gate(x, self.recurrent_gate_weight, self.recurrent_gate_bias)
        log_a = -8.0 * r_gate * F.softplus(self.recurrent_param)
        a = torch.exp(log_a)
        mult = SqrtBoundDerivative.apply(1 - torch.exp(2 * log_a))
        reset = (torch.arange(pos, pos + t, device=x.device) == 0)[None, :, None]   # (1, T, 1)
        mult = reset + ~reset * mult
        xn = (x * i_gate * mult.to(x.dtype)).float()
        a = (a * ~reset).float()
        h0 = None if state is None else state.get("h")
        if state is not None and t == 1 and h0 is not None:
            h = a * h0[:, None] + xn                            # the decoding step
        else:
            h = rglru_chunk_scan(a, xn, h0)
        if state is not None:
            state["pos"] = pos + t
            if t:
                state["h"] = h[:, -1].detach().clone()
        return h.to(x.dtype)


class Rglru(nn.Module):
    def __init__(self, d, heads, width, conv):
        super().__init__()
        self.width, self.kernel = width, conv
        self.linear_y = nn.Linear(d, width)
        self.linear_x = nn.Linear(d, width)
        self.linear_out = nn.Linear(width, d)
        self.conv_1d = nn.Conv1d(width, width, conv, groups=width, padding=conv - 1)
        self.rg_lru = RgLru(width, heads)

    def _conv(self, x, state):
        return causal_depthwise_conv(self.conv_1d, x, state, self.kernel - 1)   # x (B, C, T)

    def forward(self, x, state=None):
        if x.shape[1] == 0:                   # an empty streaming chunk (a strided conv mid-stride)
            return torch.zeros_like(x)
        y = F.gelu(self.linear_y(x), approximate="tanh")                    # gate branch (B, T, W)
        xb = self._conv(self.linear_x(x).transpose(1, 2), state).transpose(1, 2)
        xb = self.rg_lru(xb, state)
        return self.linear_out(xb * y)
