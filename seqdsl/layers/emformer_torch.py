"""The torch lowering of emformer: torchaudio.models.Emformer's training-mode
forward (docs/lowering.md), the whole utterance at once under one attention
mask per layer; and its streaming form, torchaudio's Emformer.infer, one
segment and its right context at a time with a per-layer state (`step`).

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
        return self._feed_forward(y, x), mems

    def _feed_forward(self, y, x):
        x = self._drop(y) + x
        del y
        x = self._drop(self.fc2(self._drop(self.act(self.fc1(self.ffn_norm(x)))))) + x
        return self.out_norm(x)

    def segment_step(self, x, rc_rows: int, segment: int, mem_in, bank, lc_k, lc_v):
        """One segment (torchaudio's _EmformerLayer.infer): x (B, R + S, C), its
        right-context rows then its S utterance rows; bank (B, m, C), the
        memory of up to `memory` segments before it; lc_k, lc_v (B, l, C), the
        keys and values of up to `left` utterance frames before it; mem_in
        (B, 1, C), this segment's memory from the layer below. Queries
        [rows, summary] see every key [bank, left context, rows] but the
        summary does not see the bank. Returns the output rows, this layer's
        memory for the layer above (the summary's output, squashed) and the
        segment's utterance keys and values (the next left context)."""
        b, rows, c = x.shape
        h = self.attn_norm(x)
        q_in, kv_in = h, h
        if self.memory:
            summary = F.avg_pool1d(h[:, rc_rows:].transpose(1, 2), segment, segment, ceil_mode=True)
            q_in, kv_in = torch.cat([h, summary.transpose(1, 2)], 1), torch.cat([bank, h], 1)
        del h
        q = self.q(q_in).view(b, -1, self.h, self.dh).transpose(1, 2)
        kv = self.kv(kv_in)
        m = bank.shape[1] if self.memory else 0
        k_seg, v_seg = kv[:, m + rc_rows:].chunk(2, dim=-1)
        k, v = torch.cat([lc_k, kv[:, :, :c]], 1), torch.cat([lc_v, kv[:, :, c:]], 1)
        k, v = (z.view(b, -1, self.h, self.dh).transpose(1, 2) for z in (k, v))
        scores = (q * self.dh ** -0.5) @ k.transpose(-2, -1)
        if self.memory and m:
            scores[:, :, -1, lc_k.shape[1]:lc_k.shape[1] + m] = EMFORMER_NEG_INF
        y = (self._drop(F.softmax(scores, dim=-1)) @ v).transpose(1, 2).reshape(b, -1, c)
        y = self.o(y)
        mem_out = None
        if self.memory:
            mem_out = torch.tanh(y[:, rows:]) if self.tanh_on_mem else y[:, rows:].clamp(-10, 10)
            y = y[:, :rows]
        return self._feed_forward(y, x), mem_out, k_seg, v_seg


class Emformer(nn.Module):
    """torchaudio.models.Emformer over a batch-first input whose last `right`
    frames are the utterance's right context: (B, T, C) -> (B, T - right, C).
    forward(x) is its training-mode forward; forward(chunk, state=...) its
    streaming form (torchaudio's infer): the chunk's frames join a buffer,
    each segment runs once its `right` lookahead frames have arrived, and the
    output is the frames of the segments run (so it lags the input by
    `right` frames and up to a segment); state["final"] = True (SeqModel.step(
    ..., final=True)) runs what is left as the last, shorter segment."""

    #: SeqModel.step tells it when the stream ends (state["final"])
    holds_frames = True

    def __init__(self, c, heads, ffn, layers, segment, left, right, memory, act, tanh_on_mem, dropout):
        super().__init__()
        # not `memory`: SeqModel gives a module with a `memory` attribute a state in every forward
        self.segment, self.left, self.right, self.max_memory = segment, left, right, memory
        self.layers = nn.ModuleList(EmformerLayer(c, heads, ffn, act, dropout, memory, tanh_on_mem)
                                    for _ in range(layers))

    def forward(self, x, state=None):
        x = _dense(x)
        if state is not None:
            return self._stream(x, state)
        t = x.shape[1] - self.right
        if t < 1:
            raise ValueError(f"emformer needs more than right={self.right} frames, got {x.shape[1]}")
        rc = x.index_select(1, emformer_blocks(t, self.segment, self.right, x.device))
        rows = torch.cat([rc, x[:, :t]], 1)
        n_rc = rc.shape[1]
        del rc
        mask = emformer_mask(t, self.segment, self.left, self.right, self.max_memory, x.device)
        mems = None
        if self.max_memory:
            mems = F.avg_pool1d(x[:, :t].transpose(1, 2), self.segment, self.segment,
                                ceil_mode=True).transpose(1, 2)[:, :-1]
        for layer in self.layers:
            rows, mems = layer(rows, mems, mask, n_rc, self.segment)
        # a copy: a view would hold the right-context rows' storage too
        return rows[:, n_rc:].clone(memory_format=torch.contiguous_format)

    def init_stream(self, x, state) -> None:
        """The streaming state, allocated once at its full size (the estimate's
        state figure): the input buffer (segment + right - 1 frames, the most
        that waits between steps), and per layer the memory bank (`memory` slots)
        and the left context's keys and values (`left` frames each); how many
        of each are filled are plain counts."""
        b, _, c = x.shape
        n, new = len(self.layers), x.new_zeros
        state.update(buf=new(b, self.segment + self.right - 1, c), fill=0, past=0, segments=0,
                     bank=new(n, b, self.max_memory, c), k=new(n, b, self.left, c), v=new(n, b, self.left, c))

    def _stream(self, x, state):
        if "buf" not in state:
            self.init_stream(x, state)
        buf, fill = state["buf"], state["fill"]
        x = torch.cat([buf[:, :fill], x], 1) if fill else x
        window, start, outs = self.segment + self.right, 0, []
        while x.shape[1] - start >= window:
            outs.append(self._segment(x[:, start:start + window], self.segment, state))
            start += self.segment
        if state.get("final") and x.shape[1] - start > self.right:
            # the end of the stream: the frames left are the last, shorter segment and its lookahead
            outs.append(self._segment(x[:, start:], x.shape[1] - start - self.right, state))
            start = x.shape[1] - self.right
        if state.get("final") and not state["past"]:
            raise ValueError(f"emformer needs more than right={self.right} frames, got {x.shape[1]}")
        state["fill"] = x.shape[1] - start
        buf[:, :state["fill"]] = x[:, start:]
        if not outs:
            return x.new_zeros(x.shape[0], 0, x.shape[2])
        return outs[0] if len(outs) == 1 else torch.cat(outs, 1)

    def _segment(self, window, s: int, state):
        """One segment of s frames followed by its `right` lookahead frames
        through every layer (torchaudio's Emformer.infer); the state moves on."""
        r, m_max, left = self.right, self.max_memory, self.left
        utt = window[:, :s]
        rows = torch.cat([window[:, s:], utt], 1)
        mem_in = None
        if m_max:
            mem_in = F.avg_pool1d(utt.transpose(1, 2), self.segment, self.segment, ceil_mode=True).transpose(1, 2)
        m = min(m_max, state["segments"])
        l_ = min(left, state["past"])
        for i, layer in enumerate(self.layers):
            bank, k, v = state["bank"][i], state["k"][i], state["v"][i]
            rows, mem_out, k_seg, v_seg = layer.segment_step(rows, r, self.segment, mem_in, bank[:, m_max - m:],
                                                             k[:, left - l_:], v[:, left - l_:])
            # the bank takes the memory this layer was given, the left context its keys and values
            if m_max:
                bank.copy_(torch.cat([bank, mem_in], 1)[:, -m_max:])
            if left:
                k.copy_(torch.cat([k, k_seg], 1)[:, -left:])
                v.copy_(torch.cat([v, v_seg], 1)[:, -left:])
            mem_in = mem_out
        state["past"] += s
        state["segments"] += 1
        return rows[:, r:]


__all__ = ["Emformer", "EmformerLayer", "emformer_blocks", "emformer_mask"]
