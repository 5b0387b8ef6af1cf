"""The torch lowering of emformer: torchaudio.models.Emformer's training-mode
forward (docs/lowering.md), the whole utterance at once under one attention
mask per layer.

Imports only torch, math and the shared kernels of torch_modules.py: `seqdsl
compile -o` pastes this file, less its imports, into standalone source.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .torch_modules import ACTS, _dense

#: torchaudio's masked score (not -inf: a row never has every key masked anyway)
EMFORMER_NEG_INF = -1e8


def emformer_blocks(t_utt: int, segment: int, right: int, device):
    """The time indices of the right-context blocks: block i (of
    ceil(t_utt / segment)) is the `right` frames after segment i, the last
    block the `right` frames after the utterance."""
    n = -(-t_utt // segment)
    starts = [(i + 1) * segment for i in range(n - 1)] + [t_utt]
    return torch.tensor([s + j for s in starts for j in range(right)], dtype=torch.long, device=device)


def emformer_mask(t_utt: int, segment: int, left: int, right: int, memory: int, device):
    """True where a query may NOT attend. Queries: the right-context blocks,
    the utterance, then one summary per segment (memory > 0); keys: the memory
    bank (a summary per segment but the last; memory > 0), the right-context
    blocks, the utterance. Segment i's rows see the memory of the `memory`
    segments before it, its own right-context block and the utterance from
    left frames before the segment to its end; its summary the same but the
    memory."""
    n = -(-t_utt // segment)
    seg_rc = torch.arange(n * right, device=device) // max(right, 1)
    seg_utt = torch.arange(t_utt, device=device) // segment
    seg_sum = torch.arange(n if memory else 0, device=device)
    qseg = torch.cat([seg_rc, seg_utt, seg_sum])[:, None]
    is_summary = torch.arange(qseg.shape[0], device=device)[:, None] >= n * right + t_utt
    mem = torch.arange(n - 1 if memory else 0, device=device)[None, :]
    mem_ok = (mem < qseg) & (mem >= qseg - memory) & ~is_summary
    rc_ok = seg_rc[None, :] == qseg
    pos = torch.arange(t_utt, device=device)[None, :]
    utt_ok = (pos >= qseg * segment - left) & (pos < (qseg + 1) * segment)
    return ~torch.cat([mem_ok, rc_ok, utt_ok], dim=1)


class EmformerLayer(nn.Module):
    """One layer on the rows [right-context blocks, utterance] (B, X, C) and
    the memory bank (B, N - 1, C): pre-norm attention with a residual, a
    pre-norm feed-forward with a residual, a final layer norm."""

    def __init__(self, c, heads, ffn, act, dropout, memory, tanh_on_mem):
        super().__init__()
        self.h, self.dh, self.dropout = heads, c // heads, dropout
        self.memory, self.tanh_on_mem = memory, tanh_on_mem
        self.attn_norm = nn.LayerNorm(c)
        self.q = nn.Linear(c, c)
        self.kv = nn.Linear(c, 2 * c)
        self.o = nn.Linear(c, c)
        self.ffn_norm = nn.LayerNorm(c)
        self.fc1 = nn.Linear(c, ffn)
        self.fc2 = nn.Linear(ffn, c)
        self.act = ACTS[act]
        self.out_norm = nn.LayerNorm(c)

    def _drop(self, x):
        return F.dropout(x, self.dropout) if self.training and self.dropout > 0 else x

    def _attention(self, x, mems, mask, rc_rows: int, segment: int):
        """[right context, utterance, summaries] attend to [memory, right
        context, utterance]: (B, Q, C), the summaries' rows last. Written so
        each temporary is freed once read (the scores are masked in place)."""
        b, _, c = x.shape
        h = self.attn_norm(x)
        q_in = kv_in = h
        if self.memory:
            summary = F.avg_pool1d(h[:, rc_rows:].transpose(1, 2), segment, segment, ceil_mode=True)
            q_in, kv_in = torch.cat([h, summary.transpose(1, 2)], 1), torch.cat([mems, h], 1)
            del summary
        del h
        q = self.q(q_in).view(b, -1, self.h, self.dh).transpose(1, 2)
        del q_in
        k, v = self.kv(kv_in).view(b, -1, 2 * self.h, self.dh).transpose(1, 2).chunk(2, dim=1)
        del kv_in
        probs = F.softmax(((q * self.dh ** -0.5) @ k.transpose(-2, -1)).masked_fill_(mask, EMFORMER_NEG_INF), dim=-1)
        del q, k
        y = (self._drop(probs) @ v).transpose(1, 2).reshape(b, -1, c)
        del probs, v
        return self.o(y)

    def forward(self, x, mems, mask, rc_rows: int, segment: int):
        rows = x.shape[1]
        y = self._attention(x, mems, mask, rc_rows, segment)
        if self.memory:
            mems = y[:, rows:-1]
            mems = torch.tanh(mems) if self.tanh_on_mem else mems.clamp(-10, 10)
            y = y[:, :rows]
        x = self._drop(y) + x
        del y
        x = self._drop(self.fc2(self._drop(self.act(self.fc1(self.ffn_norm(x)))))) + x
        return self.out_norm(x), mems


class Emformer(nn.Module):
    """torchaudio.models.Emformer over a batch-first input whose last `right`
    frames are the utterance's right context: (B, T, C) -> (B, T - right, C)."""

    def __init__(self, c, heads, ffn, layers, segment, left, right, memory, act, tanh_on_mem, dropout):
        super().__init__()
        self.segment, self.left, self.right, self.memory = segment, left, right, memory
        self.layers = nn.ModuleList(EmformerLayer(c, heads, ffn, act, dropout, memory, tanh_on_mem)
                                    for _ in range(layers))

    def forward(self, x):
        x = _dense(x)
        t = x.shape[1] - self.right
        if t < 1:
            raise ValueError(f"emformer needs more than right={self.right} frames, got {x.shape[1]}")
        rc = x.index_select(1, emformer_blocks(t, self.segment, self.right, x.device))
        rows = torch.cat([rc, x[:, :t]], 1)
        n_rc = rc.shape[1]
        del rc
        mask = emformer_mask(t, self.segment, self.left, self.right, self.memory, x.device)
        mems = None
        if self.memory:
            mems = F.avg_pool1d(x[:, :t].transpose(1, 2), self.segment, self.segment,
                                ceil_mode=True).transpose(1, 2)[:, :-1]
        for layer in self.layers:
            rows, mems = layer(rows, mems, mask, n_rc, self.segment)
        # a copy: a view would hold the right-context rows' storage too
        return rows[:, n_rc:].clone(memory_format=torch.contiguous_format)


__all__ = ["Emformer", "EmformerLayer", "emformer_blocks", "emformer_mask"]
