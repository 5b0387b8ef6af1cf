"""The torch lowering of activations: `Act`, one module over the functions in ACTS, and `Scale` (docs/lowering.md).

Imports only torch, math and the shared kernels of torch_modules.py: `seqdsl
compile -o` pastes this file, less its imports, into standalone source.
"""
from __future__ import annotations

import torch
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


class Scale(nn.Module):
    """x · factor; round="bfloat16"/"float16": the factor as that type holds it
    (transformers' Gemma keeps sqrt(d) in a bfloat16 buffer), exactly."""

    def __init__(self, factor: float, round: str | None = None):
        super().__init__()
        self.factor = factor if round is None else torch.tensor(factor, dtype=getattr(torch, round)).item()

    def forward(self, x):
        return x * self.factor
