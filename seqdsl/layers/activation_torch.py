"""The torch lowering of activations: `Act`, one module over the functions in ACTS (docs/lowering.md).

Imports only torch, math and the shared kernels of torch_modules.py: `seqdsl
compile -o` pastes this file, less its imports, into standalone source.
"""
from __future__ import annotations

from torch import nn

from .torch_modules import ACTS


class Act(nn.Module):
    def __init__(self, kind: str, *params: float):
        super().__init__()
        self.kind = kind
        self.fn = ACTS[kind]
        self.params = params     # hardtanh's bounds, softcap's cap

    def forward(self, x):
        return self.fn(x, *self.params)
