"""The torch lowering of embed and posenc (docs/lowering.md).

Imports only torch, math and the shared kernels of torch_modules.py: `seqdsl
compile -o` pastes this file, less its imports, into standalone source.
"""
from __future__ import annotations

import torch
from torch import nn

from .torch_modules import sinusoid


class Posenc(nn.Module):
    def __init__(self, c, kind, max_len):
        super().__init__()
        self.kind, self.c = kind, c
        if kind == "learned":
            self.weight = nn.Parameter(torch.randn(max_len, c) * 0.02)

    def forward(self, x, state=None):
        t = x.shape[1]
        off = 0 if state is None else state.get("pos", 0)
        if state is not None:
            state["pos"] = off + t
        if self.kind == "learned":
            return x + self.weight[off:off + t]
        return x + sinusoid(t, self.c, x.device, x.dtype, start=off)


class Embed(nn.Embedding):
    pass
