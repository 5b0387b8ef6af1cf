"""The torch lowering of linear, mlp and swiglu (docs/lowering.md).

Imports only torch, math and the shared kernels of torch_modules.py: `seqdsl
compile -o` pastes this file, less its imports, into standalone source.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .torch_modules import ACTS, _dense


class Linear(nn.Module):
    def __init__(self, c: int, out: int, bias: bool, tied: nn.Module | None = None):
        super().__init__()
        if tied is None:
            self.weight = nn.Parameter(torch.empty(out, c))
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        else:
            self.__dict__["tied"] = tied      # not a submodule: the weight belongs to the embed
        self.bias = nn.Parameter(torch.zeros(out)) if bias else None

    def forward(self, x):
        w = self.weight if "tied" not in self.__dict__ else self.__dict__["tied"].weight
        return F.linear(_dense(x), w, self.bias)


class Mlp(nn.Module):
    def __init__(self, c, hidden, out, act, dropout, bias=True):
        super().__init__()
        self.fc1 = nn.Linear(c, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, out, bias=bias)
        self.act = ACTS[act]
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.fc2(self.dropout(self.act(self.fc1(_dense(x)))))


class Swiglu(nn.Module):
    def __init__(self, c, hidden, out, act="silu", bias=False):
        super().__init__()
        self.act = ACTS[act]
        self.w1 = nn.Linear(c, hidden, bias=bias)
        self.w2 = nn.Linear(hidden, out, bias=bias)
        self.w3 = nn.Linear(c, hidden, bias=bias)

    def forward(self, x):
        x = _dense(x)
        return self.w2(self.act(self.w1(x)) * self.w3(x))
