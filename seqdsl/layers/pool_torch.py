"""The torch lowering of windowed pooling: `Pool` (docs/lowering.md).

Imports only torch, math and the shared kernels of torch_modules.py: `seqdsl
compile -o` pastes this file, less its imports, into standalone source.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .torch_modules import _dense, time_mask, zero_padded


class Pool(nn.Module):
    def __init__(self, op, ndim, kernel, stride, padding):
        super().__init__()
        self.op, self.ndim, self.kernel, self.stride, self.padding = op, ndim, tuple(kernel), tuple(stride), tuple(padding)
        self.fn = getattr(F, f"{op}_pool{ndim}d")

    def forward(self, x, lengths=None):
        nd = self.ndim
        if lengths is not None:      # the padding reads as the pool's own: -inf (max) or zeros (avg)
            pad = float("-inf") if self.op == "max" else 0.0
            x = x.masked_fill(~time_mask(lengths, x.shape[1]).view(x.shape[0], x.shape[1], *([1] * (x.dim() - 2))),
                              pad)
        lead = x.shape[:x.dim() - 1 - nd]          # B and folded axes
        y = x.reshape(math.prod(lead), *x.shape[x.dim() - 1 - nd:])   # (N, *pooled, C)
        y = self.fn(y.movedim(-1, 1), self.kernel, self.stride, self.padding)   # (N, C, *pooled')
        y = y.movedim(1, -1)
        y = _dense(y.reshape(*lead, *y.shape[1:]))
        if lengths is not None and self.op == "max":
            # windows wholly past a sequence's end hold -inf: zeroed, as every padded output is
            axis = 1 - (x.dim() - 1 - nd)          # the time axis among the pooled ones, if pooled
            if axis >= 0:
                k, s, p = self.kernel[axis], self.stride[axis], self.padding[axis]
                lengths = torch.div(lengths + 2 * p - k, s, rounding_mode="floor") + 1
            y = zero_padded(y, lengths.clamp(min=0))
        return y
