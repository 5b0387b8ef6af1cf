"""The torch lowering of combining values: mul, concat, split (docs/lowering.md).

Imports only torch: `seqdsl compile -o` pastes this file, less its imports,
into standalone source.
"""
from __future__ import annotations

import torch
from torch import nn


class Mul(nn.Module):
    def forward(self, x, other):
        return x * other


class Concat(nn.Module):
    def forward(self, x, other):
        return torch.cat((x, other), dim=-1)


class Split(nn.Module):
    """One part of the channels, `size` of them from `start`, as a contiguous
    copy: a matmul after a strided view would copy it anyway (F.linear clones
    a non-contiguous input), so the copy is made once, where the estimate
    counts it."""

    def __init__(self, start: int, size: int):
        super().__init__()
        self.start = start
        self.size = size

    def forward(self, x):
        return x.narrow(-1, self.start, self.size).contiguous()
