"""gla's module: flash-linear-attention `GatedLinearAttention` (fla/layers/gla.py,
defaults: swish output gate fused with the RMSNorm, gate_logit_normalizer 16,
no feature map, one kv head group) in plain PyTorch, with its parameter names
and shapes, so `load_state_dict(reference.state_dict(), strict=True)` works."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .linear_rnn_torch import GatedRMSNorm, gated_projections, ShortConv, conv_stream, gla_forward


class GatedLinearAttention(nn.Module):
    def __init__(self, c, heads, expand_k=0.5, expand_v=1.0, gate_rank=16, conv=0, conv_bias=False, chunk=64):
        super().__init__()
        gated_projections(self, c, heads, expand_k, expand_v, chunk)
        self.conv = conv
        if conv:
            self.q_conv1d = ShortConv(self.key_dim, conv, conv_bias)
            self.k_conv1d = ShortConv(self.key_dim, conv, conv_bias)
            self.v_conv1d = ShortConv(self.value_dim, conv, conv_bias)
        self.gk_proj = nn.Sequential(nn.Linear(c, gate_rank, bias=False), nn.Linear(gate_rank, self.key_dim, bias=True))
        self.o_proj = nn.Linear(self.value_dim, c, bias=False)
        self.g_norm_swish_gate = GatedRMSNorm(self.head_v, eps=1e-5)
        self.gate_logit_normalizer = 16

    def forward(self, x, state=None):
        b, t, _ = x.shape
        if t == 0:
            return x.new_zeros(b, 0, self.o_proj.out_features)
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.conv:
            q = conv_stream(self.q_conv1d, q, state, "conv_q")
            k = conv_stream(self.k_conv1d, k, state, "conv_k")
            v = conv_stream(self.v_conv1d, v, state, "conv_v")
        gk = F.logsigmoid(self.gk_proj(x)) / self.gate_logit_normalizer
        h, dk, dv = self.heads, self.head_k, self.head_v
        q, k, gk = (z.view(b, t, h, dk).transpose(1, 2) for z in (q, k, gk))   # (B, H, T, dk)
        v = v.view(b, t, h, dv).transpose(1, 2)                               # (B, H, T, dv)
        o = gla_forward(q, k, v, gk, dk ** -0.5, self.chunk, state)          # (B, H, T, dv) fp32
        o = o.to(x.dtype).transpose(1, 2)                                     # (B, T, H, dv)
        g = self.g_proj(x).view(b, t, h, dv)
        o = self.g_norm_swish_gate(o, g).reshape(b, t, h * dv)
        return self.o_proj(o)
