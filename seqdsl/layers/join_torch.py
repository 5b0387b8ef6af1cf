"""The torch lowering of join (docs/lowering.md).

Imports only torch: `seqdsl compile -o` pastes this file, less its imports,
into standalone source.
"""
from __future__ import annotations

from torch import nn


class Join(nn.Module):
    def forward(self, x, context):
        # [B, T, 1, C] + [B, 1, U, C] -> [B, T, U, C]
        return x.unsqueeze(2) + context.unsqueeze(1)
