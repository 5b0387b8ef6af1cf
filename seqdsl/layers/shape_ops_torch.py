"""The torch lowering of unsqueeze, flatten, permute, spatial and time pooling (docs/lowering.md).

Imports only torch, math and the shared kernels of torch_modules.py: `seqdsl
compile -o` pastes this file, less its imports, into standalone source.
"""
from __future__ import annotations

import torch
from torch import nn

from .torch_modules import zero_padded



class Unsqueeze(nn.Module):
    def forward(self, x):
        return x.unsqueeze(-1)


class Flatten(nn.Module):
    def forward(self, x):
        return x.flatten(2)


class Permute(nn.Module):
    def __init__(self, order):
        super().__init__()
        self.order = tuple(order)

    def forward(self, x):
        # always a new tensor, as the estimate counts (contiguous() would
        # return an already-contiguous permutation as a view)
        return x.permute(self.order).clone(memory_format=torch.contiguous_format)


class SpatialPool(nn.Module):
    def __init__(self, reduce):
        super().__init__()
        self.reduce = reduce

    def forward(self, x):
        dims = tuple(range(2, x.dim() - 1))
        if not dims:
            return x
        return x.mean(dims) if self.reduce == "mean" else x.amax(dims)


class TimePool(nn.Module):
    def __init__(self, reduce):
        super().__init__()
        self.reduce = reduce

    def forward(self, x, lengths=None):
        # The first or last step as its own [B, C] tensor, not a view of x:
        # whatever reads it (a linear's contiguous copy, an elementwise op's view
        # of all of x) then saves or keeps [B, C], never x's [B, T, C] storage.
        if lengths is None:
            if self.reduce == "mean":
                return x.mean(1)
            return (x[:, 0] if self.reduce == "first" else x[:, -1]).clone()  # (B, C)
        # per-sequence lengths: the mean over each sequence's own steps, its first or its
        # last step (a sequence a valid convolution left no steps gives zeros)
        if self.reduce == "first":
            return zero_padded(x, lengths)[:, 0].clone()
        if self.reduce == "last":
            return zero_padded(x, lengths)[torch.arange(x.shape[0], device=x.device), (lengths - 1).clamp(min=0)]
        n = lengths.clamp(min=1).to(x.dtype).view(-1, *([1] * (x.dim() - 2)))
        return zero_padded(x, lengths).sum(1) / n
