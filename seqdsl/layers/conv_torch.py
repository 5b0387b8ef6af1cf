"""The torch lowering of conv1d, conv2d and conv3d, channels-last, with causal streaming (docs/lowering.md).

Imports only torch, math and the shared kernels of torch_modules.py: `seqdsl
compile -o` pastes this file, less its imports, into standalone source.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .torch_modules import _dense, zero_padded


class Conv(nn.Module):
    def __init__(self, ndim, c, out, kernel, stride, padding, groups, bias):
        super().__init__()
        self.ndim, self.kernel, self.stride, self.padding = ndim, tuple(kernel), tuple(stride), padding
        cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[ndim]
        self.conv = cls(c, out, self.kernel, self.stride, padding=0, groups=groups, bias=bias)

    def _pads(self, sizes):
        pads = []
        for axis, (n, k, s) in enumerate(zip(sizes, self.kernel, self.stride)):
            if isinstance(self.padding, tuple):    # explicit (left, right) per axis
                pads.append(tuple(self.padding[axis]))
            elif self.padding == "valid":
                pads.append((0, 0))
            elif self.padding == "causal":
                pads.append((k - 1, 0))
            else:
                total = max((-(-n // s) - 1) * s + k - n, 0)
                pads.append((total // 2, total - total // 2))
        flat = []
        for lo, hi in reversed(pads):      # F.pad wants the last axis first
            flat += [lo, hi]
        return flat

    def forward(self, x, state=None, lengths=None):
        if lengths is not None:      # per-sequence lengths: the padding reads as the convolution's zeros
            x = zero_padded(x, lengths)
        nd = self.ndim
        lead = x.shape[:x.dim() - 1 - nd]          # B and folded axes
        conv_sizes = list(x.shape[x.dim() - 1 - nd:-1])
        c = x.shape[-1]
        y = x.reshape(math.prod(lead), *conv_sizes, c)   # (B*folded, *conv, C)
        y = y.movedim(-1, 1)                       # (N, C, *conv)
        if state is not None and self.padding == "causal" and x.dim() == 3:
            y = self._stream(y, state)             # conv1d over time: a chunk of the stream
        else:
            pads = self._pads(conv_sizes)
            # conv1d's kernel wants channels-first dense input (it would copy this
            # strided view unseen): F.pad makes that copy, even with no padding.
            # conv2d/3d read the channels-last view as it is when nothing is padded.
            if nd == 1 or any(pads):
                y = F.pad(y, pads)
            y = self.conv(y)                       # (N, out, *conv')
        y = y.movedim(1, -1)                       # (N, *conv', out), a strided view
        # channels-last made dense here, once, not by each consumer (see _dense)
        return _dense(y.reshape(*lead, *y.shape[1:]))   # (B, folded.., *conv', out)

    def _stream(self, y, state):
        """Causal conv1d on a chunk y (N, C, t) of a stream. Output j of the whole
        sequence reads padded positions j·s .. j·s + k - 1 (k - 1 zeros first).
        state["buf"] holds the padded stream from the next output's window start,
        so a chunk yields floor((len - k) / s) + 1 outputs (possibly none) and
        keeps the rest; when stride > kernel the next window starts beyond the
        data seen so far, and state["skip"] counts the inputs to drop first."""
        k, s = self.kernel[0], self.stride[0]
        prev = state.get("buf")
        if prev is None:
            prev = y.new_zeros(y.shape[0], y.shape[1], k - 1)
        skip = state.get("skip", 0)
        drop = min(skip, y.shape[-1])
        y = torch.cat([prev, y[..., drop:]], dim=-1)     # (N, C, buffered + t - drop)
        n = y.shape[-1]
        n_out = (n - k) // s + 1 if n >= k else 0
        state["skip"] = skip - drop + max(n_out * s - n, 0)
        state["buf"] = y[..., min(n_out * s, n):]
        if n_out == 0:
            return y.new_zeros(y.shape[0], self.conv.out_channels, 0)
        return self.conv(y[..., :(n_out - 1) * s + k])  # (N, out, n_out)
