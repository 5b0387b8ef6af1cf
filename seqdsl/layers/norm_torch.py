"""The torch lowering of batchnorm and of rmsnorm with an offset (layernorm and
plain rmsnorm are torch.nn's own) (docs/lowering.md).

Imports only torch, math and the shared kernels of torch_modules.py: `seqdsl
compile -o` pastes this file, less its imports, into standalone source.
"""
from __future__ import annotations

import torch
from torch import nn


class BatchNorm(nn.BatchNorm1d):
    def forward(self, x):
        c = x.shape[-1]
        return super().forward(x.reshape(-1, c)).reshape(x.shape)  # (B*T*.., C) -> x.shape


class OffsetRMSNorm(nn.Module):
    """x · rsqrt(mean(x²) + eps) · (offset + weight), in float32, cast back to
    x's dtype; the weight starts at 1 - offset. offset=1 is Gemma's RMSNorm
    (transformers' GemmaRMSNorm / RecurrentGemmaRMSNorm)."""

    def __init__(self, c: int, offset: float, eps: float):
        super().__init__()
        self.offset, self.eps = offset, eps
        self.weight = nn.Parameter(torch.full((c,), 1.0 - offset))

    def _norm(self, xf):
        return xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)

    def forward(self, x):
        y = self._norm(x.float())      # the float32 copy of a 16-bit x is freed here
        return (y * (self.offset + self.weight.float())).type_as(x)
