"""retention's module: flash-linear-attention `MultiScaleRetention`
(fla/layers/multiscale_retention.py, defaults: swish output gate fused with
the RMSNorm, no short convolution, no feature map) in plain PyTorch, with its
parameter names and shapes. The recurrence is gated linear attention with one
fixed decay per head, gamma_h = 1 - 2^(-5-h) (linear_rnn_torch)."""
from __future__ import annotations


import torch
from torch import nn

from .linear_rnn_torch import GatedRMSNorm, gated_projections, gla_forward


def rotate_half_rope(x, start: int, inv_freq):
    """RoPE of fla's RotaryEmbedding (GPT-NeoX halves, base 10000) on
    x (B, T, H, D) at positions start, start+1, ..."""
    t = torch.arange(start, start + x.shape[1], device=x.device, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)                                   # (T, D/2)
    cos = torch.cat([freqs.cos(), freqs.cos()], -1)[:, None].to(x.dtype)   # (T, 1, D)
    sin = torch.cat([freqs.sin(), freqs.sin()], -1)[:, None].to(x.dtype)
    x1, x2 = x.chunk(2, -1)
    return x * cos + torch.cat([-x2, x1], -1) * sin


class MultiScaleRetention(nn.Module):
    def __init__(self, c, heads, expand_k=1.0, expand_v=2.0, chunk=64):
        super().__init__()
        gated_projections(self, c, heads, expand_k, expand_v, chunk)
        self.o_proj = nn.Linear(self.value_dim, c, bias=False)
        self.g_norm_swish_gate = GatedRMSNorm(self.head_v, eps=1e-5)
        dk = self.head_k
        self.register_buffer("inv_freq", 1.0 / (10000.0 ** (torch.arange(0, dk, 2, dtype=torch.float32) / dk)),
                             persistent=False)
        # log gamma_h, gamma_h = 1 - 2^(-5-h): RetNet's multi-scale decays
        self.register_buffer("log_decay", torch.log1p(-torch.exp2(-5.0 - torch.arange(heads, dtype=torch.float32))),
                             persistent=False)

    def forward(self, x, state=None):
        b, t, _ = x.shape
        if t == 0:
            return x.new_zeros(b, 0, self.o_proj.out_features)
        h, dk, dv = self.heads, self.head_k, self.head_v
        start = 0 if state is None else state.get("pos", 0)
        if state is not None:
            state["pos"] = start + t
        q = rotate_half_rope(self.q_proj(x).view(b, t, h, dk), start, self.inv_freq).transpose(1, 2)  # (B, H, T, dk)
        k = rotate_half_rope(self.k_proj(x).view(b, t, h, dk), start, self.inv_freq).transpose(1, 2)
        v = self.v_proj(x).view(b, t, h, dv).transpose(1, 2)                                         # (B, H, T, dv)
        g = self.log_decay.view(1, h, 1, 1).expand(b, h, t, 1)
        o = gla_forward(q, k, v, g, dk ** -0.5, self.chunk, state).to(x.dtype).transpose(1, 2)      # (B, T, H, dv)
        o = self.g_norm_swish_gate(o, self.g_proj(x).view(b, t, h, dv)).reshape(b, t, h * dv)
        return self.o_proj(o)
