"""The torch lowering of ln_lstm: torchaudio's _CustomLSTM with layer_norm=True
(torchaudio/models/rnnt.py), one step at a time (docs/lowering.md).

Imports only torch, math and the shared kernels of torch_modules.py: `seqdsl
compile -o` pastes this file, less its imports, into standalone source.
"""
from __future__ import annotations

import torch
from torch import nn

from .torch_modules import _dense


class LnLstm(nn.Module):
    """gates = g_norm(x2g(x_t) + p2g(h)); i, f, g, o = chunks; c = c_norm(σ(f)·c
    + σ(i)·tanh(g)); h = σ(o)·tanh(c). x2g and p2g have no bias."""

    def __init__(self, c, hidden, eps):
        super().__init__()
        self.hidden = hidden
        self.x2g = nn.Linear(c, 4 * hidden, bias=False)
        self.p2g = nn.Linear(hidden, 4 * hidden, bias=False)
        self.g_norm = nn.LayerNorm(4 * hidden, eps=eps)
        self.c_norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x, state=None):
        b, t = x.shape[0], x.shape[1]
        if t == 0:      # an empty chunk (a strided layer upstream is mid-stride): nothing to step
            return x.new_zeros(b, 0, self.hidden)
        h, c = (state.get("h"), state.get("c")) if state is not None else (None, None)
        if h is None:
            h = x.new_zeros(b, self.hidden)
            c = x.new_zeros(b, self.hidden)
        outs = []
        for gates in self.x2g(_dense(x)).unbind(1):
            i, f, g, o = self.g_norm(gates + self.p2g(h)).chunk(4, 1)
            c = self.c_norm(f.sigmoid() * c + i.sigmoid() * g.tanh())
            h = o.sigmoid() * c.tanh()
            outs.append(h)
        if state is not None:
            state["h"], state["c"] = h, c
        return torch.stack(outs, 1)
