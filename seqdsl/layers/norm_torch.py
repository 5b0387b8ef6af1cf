"""The torch lowering of batchnorm (layernorm and rmsnorm are torch.nn's own) (docs/lowering.md).

Imports only torch, math and the shared kernels of torch_modules.py: `seqdsl
compile -o` pastes this file, less its imports, into standalone source.
"""
from __future__ import annotations

from torch import nn



class BatchNorm(nn.BatchNorm1d):
    def forward(self, x):
        c = x.shape[-1]
        return super().forward(x.reshape(-1, c)).reshape(x.shape)  # (B*T*.., C) -> x.shape
