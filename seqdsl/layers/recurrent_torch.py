"""The torch lowering of lstm, gru and rnn: torch.nn's cuDNN/oneDNN modules, batch first (docs/lowering.md).

Imports only torch, math and the shared kernels of torch_modules.py: `seqdsl
compile -o` pastes this file, less its imports, into standalone source.
"""
from __future__ import annotations

from torch import nn



class Recurrent(nn.Module):
    state_batch_dim = 1      # state["h"]: torch's (layers · dirs, B, hidden)

    def __init__(self, kind, c, hidden, layers, bidirectional, dropout, nonlinearity="tanh"):
        super().__init__()
        kw = dict(num_layers=layers, batch_first=True, dropout=dropout, bidirectional=bidirectional)
        if kind == "rnn":
            kw["nonlinearity"] = nonlinearity
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind](c, hidden, **kw)

    def forward(self, x, state=None, lengths=None):
        # torch's batch-first output is a transposed view of time-major storage;
        # a contiguous copy gives the next layer the [B, T, C] layout every cost
        # rule assumes (no time-major copy before another recurrent layer, no
        # reshape copy in a linear after it)
        if lengths is not None and state is None and self.rnn.bidirectional:
            # per-sequence lengths: packed, so the backward direction starts at each sequence's own
            # end (a unidirectional pass needs nothing: valid steps never read later ones)
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
            y = self.rnn(packed)[0]
            return nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])[0].contiguous()
        if state is None:
            return self.rnn(x)[0].contiguous()  # (B, T, dirs * hidden)
        if x.shape[1] == 0:   # an empty chunk (a strided conv upstream is mid-stride): nothing to step
            r = self.rnn
            return x.new_zeros(x.shape[0], 0, r.hidden_size * (2 if r.bidirectional else 1))
        y, h = self.rnn(x, state.get("h"))
        state["h"] = h
        return y.contiguous()  # (B, T, dirs * hidden)
