"""The torch lowering of windowed pooling: `Pool` (docs/lowering.md).

Imports only torch, math and the shared kernels of torch_modules.py: `seqdsl
compile -o` pastes this file, less its imports, into standalone source.
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import nn

from .torch_modules import _dense


class Pool(nn.Module):
    def __init__(self, op, ndim, kernel, stride, padding):
        super().__init__()
        self.ndim, self.kernel, self.stride, self.padding = ndim, tuple(kernel), tuple(stride), tuple(padding)
        self.fn = getattr(F, f"{op}_pool{ndim}d")

    def forward(self, x):
        nd = self.ndim
        lead = x.shape[:x.dim() - 1 - nd]          # B and folded axes
        y = x.reshape(math.prod(lead), *x.shape[x.dim() - 1 - nd:])   # (N, *pooled, C)
        y = self.fn(y.movedim(-1, 1), self.kernel, self.stride, self.padding)   # (N, C, *pooled')
        y = y.movedim(1, -1)
        return _dense(y.reshape(*lead, *y.shape[1:]))
