"""One small nn.Module per layer concept, written to docs/lowering.md.

Every module takes channels-last tensors as the spec sees them. Modules that
keep streaming state (attention, recurrent, conv causal, posenc) accept an
optional `state` dict and update it in place; `state=None` is the whole-sequence
forward.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


ACTS = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


# Names a submodule key must not take: attributes of a ModuleDict (`eval`,
# `training`, `state_dict`, `_modules`, `keys`, ...), which add_module refuses.
_RESERVED_KEYS = frozenset(dir(nn.ModuleDict()))


def storage_key(name: str) -> str:
    """The ModuleDict key a spec name is stored under: the name itself, or
    `<name>` when it is a module attribute. No spec name has `<`, so the keys
    of two names never meet, and the state_dict keys of other names stay as
    the spec writes them."""
    return f"<{name}>" if name in _RESERVED_KEYS or name.startswith("<") else name


class Scope(nn.ModuleDict):
    """A ModuleDict indexed by spec names (bound values, `as` names, layer
    kinds, `repeat[0]`): any name works, attribute names included (storage_key)."""

    def __getitem__(self, name):
        return super().__getitem__(storage_key(name))

    def __setitem__(self, name, module):
        super().__setitem__(storage_key(name), module)

    def __contains__(self, name):
        return super().__contains__(storage_key(name))


def check_inputs(model, named, env=None, offsets=None) -> None:
    """Each (input name, tensor) against the spec, before a forward or a step:
    a tensor, of the declared dtype kind and rank, channels equal, and every
    symbolic dim (B, T, S) one size across the inputs (and the stream's batch,
    given in env); then the positions a learned posenc sees within its
    max_len (offsets: positions a stream already took). The error names the
    input, its declaration and line. `model` has spec_name, input_specs
    {name: (dtype, dims: int | symbol | None, declaration, line)} and
    position_limits ((layer, symbols, length function or None for the symbol
    itself, max_len, line), ...). Plain Python on sizes, run eagerly and
    skipped while torch traces, so a compiled graph never sees it."""
    if torch.compiler.is_compiling():
        return
    env = dict(env or {})
    where = {}
    spec = model.spec_name
    for name, x in named:
        dtype, dims, declared, line = model.input_specs[name]
        at = f"the spec declares {declared} (line {line})"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{spec}: input '{name}' must be a tensor, not {type(x).__name__}; {at}")
        if dtype == "float" and not x.is_floating_point():
            raise TypeError(f"{spec}: input '{name}' is a {x.dtype} tensor, but {at}: float values")
        if dtype == "int" and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
            raise TypeError(f"{spec}: input '{name}' is a {x.dtype} tensor, but {at}: integer token ids")
        if x.dim() != len(dims):
            raise ValueError(f"{spec}: input '{name}' has shape {tuple(x.shape)} (rank {x.dim()}), "
                             f"but {at} (rank {len(dims)})")
        for axis, (want, got) in enumerate(zip(dims, x.shape)):
            if isinstance(want, int) and got != want:
                raise ValueError(f"{spec}: input '{name}' has shape {tuple(x.shape)}: axis {axis} is {got}, but {at}")
            if isinstance(want, str):
                if want in env and env[want] != got:
                    other = (f"input '{where[want]}' has {want}={env[want]}" if want in where
                             else f"the state has {want}={env[want]}")
                    raise ValueError(f"{spec}: input '{name}' has {want}={got} (shape {tuple(x.shape)}), "
                                     f"but {other}; {at}")
                env.setdefault(want, got)
                where.setdefault(want, name)
    for layer, symbols, length_of, max_len, line in model.position_limits:
        if not all(s in env for s in symbols):
            continue
        start = (offsets or {}).get(layer, 0)
        length = int(env[symbols[0]] if length_of is None else length_of({s: env[s] for s in symbols}))
        if start + length > max_len:
            src = ", ".join(f"input '{where[s]}' has {s}={env[s]}" for s in symbols if s in where)
            raise ValueError(f"{spec}: posenc '{layer}' (line {line}) learned {max_len} positions (max_len), "
                             f"but it would see positions up to {start + length}"
                             + (f" ({src})" if src else "")
                             + (f" (the stream is at position {start})" if offsets else ""))


class Act(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.fn = ACTS[kind]

    def forward(self, x):
        return self.fn(x)


def _dense(x):
    """x made contiguous once. A strided input (a conv's or an RNN's
    channels-last view) sends every nn.Linear on it down matmul: a copy of the
    input per linear and a separate bias add (two outputs alive at once). One
    copy up front keeps each projection a single addmm, as the cost model counts."""
    return x if x.is_contiguous() else x.contiguous()


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
    def __init__(self, c, hidden, out, act, dropout):
        super().__init__()
        self.fc1 = nn.Linear(c, hidden)
        self.fc2 = nn.Linear(hidden, out)
        self.act = ACTS[act]
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.fc2(self.dropout(self.act(self.fc1(_dense(x)))))


class Swiglu(nn.Module):
    def __init__(self, c, hidden, out):
        super().__init__()
        self.w1 = nn.Linear(c, hidden, bias=False)
        self.w2 = nn.Linear(hidden, out, bias=False)
        self.w3 = nn.Linear(c, hidden, bias=False)

    def forward(self, x):
        x = _dense(x)
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class BatchNorm(nn.BatchNorm1d):
    def forward(self, x):
        c = x.shape[-1]
        return super().forward(x.reshape(-1, c)).reshape(x.shape)  # (B*T*.., C) -> x.shape


def sinusoid(n: int | torch.Tensor, c: int, device=None, dtype=torch.float32, start=0):
    pos = torch.arange(start, start + n, device=device, dtype=dtype)[:, None]
    inv = torch.exp(torch.arange(0, c, 2, device=device, dtype=dtype) * (-math.log(10000.0) / c))
    pe = torch.zeros(pos.shape[0], c, device=device, dtype=dtype)
    pe[:, 0::2] = torch.sin(pos * inv)
    pe[:, 1::2] = torch.cos(pos * inv)
    return pe


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


# ------------------------------------------------------------------ convolution
class Conv(nn.Module):
    def __init__(self, ndim, c, out, kernel, stride, padding, groups, bias):
        super().__init__()
        self.ndim, self.kernel, self.stride, self.padding = ndim, tuple(kernel), tuple(stride), padding
        cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[ndim]
        self.conv = cls(c, out, self.kernel, self.stride, padding=0, groups=groups, bias=bias)

    def _pads(self, sizes):
        pads = []
        for n, k, s in zip(sizes, self.kernel, self.stride):
            if self.padding == "valid":
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

    def forward(self, x, state=None):
        nd = self.ndim
        lead = x.shape[:x.dim() - 1 - nd]          # B and folded axes
        conv_sizes = list(x.shape[x.dim() - 1 - nd:-1])
        c = x.shape[-1]
        y = x.reshape(math.prod(lead), *conv_sizes, c)   # (B*folded, *conv, C)
        y = y.movedim(-1, 1)                       # (N, C, *conv)
        if state is not None and self.padding == "causal" and x.dim() == 3:
            y = self._stream(y, state)             # conv1d over time: a chunk of the stream
        else:
            y = self.conv(F.pad(y, self._pads(conv_sizes)))   # (N, out, *conv')
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


# ------------------------------------------------------------------ attention helpers
def split_heads(x, h):
    b, t, c = x.shape
    return x.view(b, t, h, c // h).transpose(1, 2)    # (B, T, H, dh) -> (B, H, T, dh)


def merge_heads(x):
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)  # (B, H, T, dh) -> (B, T, C)


def rope(x, start: int):
    """Rotate-half RoPE (NeoX layout), base 10000; x (B, H, T, dh)."""
    t, d = x.shape[-2], x.shape[-1]
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d))
    pos = torch.arange(start, start + t, device=x.device, dtype=torch.float32)
    ang = torch.outer(pos, inv)
    ang = torch.cat([ang, ang], dim=-1).to(x.dtype)   # (T, dh)
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    rot = torch.cat([-x2, x1], dim=-1)
    return x * cos + rot * sin


def elu1(x):
    return F.elu(x) + 1


def linear_attention(q, k, v, causal: bool, chunk: int = 64):
    """q, k feature-mapped (B, H, T, m); v (B, H, T, d). Denominator rides in V' = [V, 1]."""
    ones = v.new_ones(*v.shape[:-1], 1)
    vp = torch.cat([v, ones], dim=-1)                        # (B, H, T, d+1)
    if not causal:
        kv = k.transpose(-2, -1) @ vp                          # (B, H, m, d+1)
        out = q @ kv
    else:
        b, h, t, m = q.shape
        nc = -(-t // chunk)
        pad = nc * chunk - t
        if pad:
            q, k, vp = (F.pad(z, (0, 0, 0, pad)) for z in (q, k, vp))
        qc = q.view(b, h, nc, chunk, m)                        # (B, H, nc, c, m)
        kc = k.view(b, h, nc, chunk, m)
        vc = vp.view(b, h, nc, chunk, vp.shape[-1])
        scores = (qc @ kc.transpose(-2, -1)).tril()           # (B, H, nc, c, c)
        intra = scores @ vc
        kv = kc.transpose(-2, -1) @ vc                         # (B, H, nc, m, d+1)
        s = kv.cumsum(2) - kv                                  # exclusive prefix over chunks
        out = (intra + qc @ s).reshape(b, h, nc * chunk, -1)[:, :, :t]
    return out[..., :-1] / out[..., -1:]


def alibi_slopes(h):
    return torch.tensor([2 ** (-8 * (i + 1) / h) for i in range(h)])


def rel_shift(x):
    """Transformer-XL shift: x (B, H, Tq, Tk) scored against positions Tk-1..0."""
    b, h, q, k = x.shape
    x = F.pad(x, (1, 0))                                       # (B, H, Tq, Tk+1)
    x = x.view(b, h, k + 1, q)                                 # reinterpret
    return x[:, :, 1:].reshape(b, h, q, k)                     # (B, H, Tq, Tk)


class Attention(nn.Module):
    def __init__(self, c, heads, kv_heads, causal, window, pos, kind, features, proj, max_len,
                 dropout, bias, memory=None):
        super().__init__()
        self.c, self.h, self.kvh = c, heads, kv_heads
        self.dh = c // heads
        self.causal, self.window, self.pos, self.kind = causal, window, pos, kind
        self.dropout = dropout
        self.memory = memory          # None: not in segments; else M (>= 0)
        kvd = kv_heads * self.dh
        self.q = nn.Linear(c, c, bias=bias)
        self.k = nn.Linear(c, kvd, bias=bias)
        self.v = nn.Linear(c, kvd, bias=bias)
        self.o = nn.Linear(c, c, bias=bias)
        if pos == "relative":
            self.r_proj = nn.Linear(c, c, bias=False)
            self.u = nn.Parameter(torch.zeros(heads, self.dh))
            self.v_bias = nn.Parameter(torch.zeros(heads, self.dh))
        if pos == "alibi":
            self.register_buffer("slopes", alibi_slopes(heads), persistent=False)
        if kind == "performer":
            m = features
            g = torch.Generator().manual_seed(0)
            blocks = []
            for _ in range(-(-m // self.dh)):
                a = torch.randn(self.dh, self.dh, generator=g)
                qm, _ = torch.linalg.qr(a)
                blocks.append(qm.T)
            w = torch.cat(blocks)[:m]
            norms = torch.randn(m, self.dh, generator=g).norm(dim=1, keepdim=True)
            self.register_buffer("features", w * norms)
        if kind == "linformer":
            self.E = nn.Parameter(torch.randn(proj, max_len) / math.sqrt(proj))
            self.F = nn.Parameter(torch.randn(proj, max_len) / math.sqrt(proj))
            self.max_len = max_len

    # -------------------------------------------------------------- feature maps
    def _performer(self, x, is_query):
        d = self.dh
        proj = x @ self.features.T.to(x.dtype) / d ** 0.25                    # (B, H, T, m)
        sq = (x * x).sum(-1, keepdim=True) / (2 * math.sqrt(d))
        z = proj - sq
        if is_query:
            # per-query shift: cancels between numerator and denominator
            z = z - z.amax(dim=-1, keepdim=True).detach()
        # keys are not shifted: the same map in every chunk, so streaming equals forward
        return torch.exp(z) / math.sqrt(self.features.shape[0])

    def forward(self, x, state=None):
        b, t, _ = x.shape
        x = _dense(x)
        q = split_heads(self.q(x), self.h)
        k = split_heads(self.k(x), self.kvh)
        v = split_heads(self.v(x), self.kvh)
        drop = self.dropout if self.training else 0.0
        if self.memory is not None:
            return self._segment(x, q, k, v, state)
        start = 0
        if state is not None:
            start = state.get("pos", 0)
            state["pos"] = start + t
        if self.pos == "rope":
            q, k = rope(q, start), rope(k, start)
        if self.kind in ("linear", "performer"):
            return self._linear_kind(q, k, v, state)
        if self.kind == "linformer":
            if t > self.max_len:
                raise ValueError(f"linformer attention has max_len={self.max_len}, got T={t}")
            k = torch.einsum("pt,bhtd->bhpd", self.E[:, :t], k)
            v = torch.einsum("pt,bhtd->bhpd", self.F[:, :t], v)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
            return self.o(merge_heads(y))
        if state is not None:
            return self._stream_softmax(q, k, v, state, start)
        if self.pos == "relative":
            y = self._relative(q, k, v, None)
        elif self.window is not None and t > self.window:
            y = self._windowed(q, k, v)
        elif self.pos == "alibi":
            i = torch.arange(t, device=x.device)
            dist = (i[:, None] - i[None, :]).to(q.dtype)
            bias = -self.slopes.to(q.dtype)[:, None, None] * (dist if self.causal else dist.abs())
            if self.causal:
                bias = bias.masked_fill(dist < 0, float("-inf"))
            # (1, H, T, T): a 4-D bias keeps the CPU on the fused kernel (3-D falls to math)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None], dropout_p=drop,
                                               enable_gqa=self.kvh != self.h)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, dropout_p=drop,
                                               enable_gqa=self.kvh != self.h)
        return self.o(merge_heads(y))

    def _linear_kind(self, q, k, v, state):
        if self.kind == "linear":
            fq, fk = elu1(q), elu1(k)
        else:
            fq, fk = self._performer(q, True), self._performer(k, False)
        if state is None:
            return self.o(merge_heads(linear_attention(fq, fk, v, self.causal)))
        # streaming (causal): carry S = sum phi(k)^T [v, 1]
        vp = torch.cat([v, v.new_ones(*v.shape[:-1], 1)], -1)
        s = state.get("S")
        if s is None:
            s = fk.new_zeros(*fk.shape[:2], fk.shape[-1], vp.shape[-1])
        intra = (fq @ fk.transpose(-2, -1)).tril() @ vp
        out = intra + fq @ s
        state["S"] = s + fk.transpose(-2, -1) @ vp
        return self.o(merge_heads(out[..., :-1] / out[..., -1:]))

    def _drop(self) -> float:
        """Dropout on the attention probabilities: training only."""
        return self.dropout if self.training else 0.0

    def _windowed(self, q, k, v):
        """Blocked sliding window: O(T·W)."""
        b, h, t, d = q.shape
        w = self.window
        nb = -(-t // w)
        pad = nb * w - t
        if self.kvh != self.h:
            k = k.repeat_interleave(self.h // self.kvh, dim=1)
            v = v.repeat_interleave(self.h // self.kvh, dim=1)
        q, k, v = (F.pad(z, (0, 0, 0, pad)) for z in (q, k, v))
        qb = q.view(b, h, nb, w, d)                                   # (B, H, nb, W, dh)
        kb = F.pad(k, (0, 0, w, w)).view(b, h, nb + 2, w, d)         # block -1 .. nb
        vb = F.pad(v, (0, 0, w, w)).view(b, h, nb + 2, w, d)
        nk = 2 if self.causal else 3
        kk = torch.cat([kb[:, :, i:i + nb] for i in range(nk)], dim=3)  # (B, H, nb, nk·W, dh)
        vv = torch.cat([vb[:, :, i:i + nb] for i in range(nk)], dim=3)
        qpos = torch.arange(nb * w, device=q.device).view(nb, w, 1)
        kpos = (torch.arange(nb, device=q.device).view(nb, 1) * w - w
                + torch.arange(nk * w, device=q.device).view(1, -1)).view(nb, 1, nk * w)
        if self.causal:
            mask = (kpos <= qpos) & (kpos >= qpos - w)
        else:
            mask = (kpos - qpos).abs() <= w
        mask = mask & (kpos >= 0) & (kpos < t)                           # (nb, W, nk·W)
        y = F.scaled_dot_product_attention(qb, kk, vv, attn_mask=mask, dropout_p=self._drop())
        return y.reshape(b, h, nb * w, d)[:, :, :t]

    def _relative(self, q, k, v, mask):
        """Transformer-XL: q (B,H,Tq,dh), k/v (B,H,Tk,dh) with the memory first."""
        tq, tk = q.shape[2], k.shape[2]
        r = self.r_proj(sinusoid(tk, self.c, q.device, q.dtype).flip(0))   # positions tk-1 .. 0
        r = r.view(tk, self.h, self.dh).transpose(0, 1)                     # (H, Tk, dh)
        ac = (q + self.u[:, None].to(q.dtype)) @ k.transpose(-2, -1)
        bd = rel_shift((q + self.v_bias[:, None].to(q.dtype)) @ r.transpose(-2, -1))
        scores = (ac + bd) / math.sqrt(self.dh)
        if mask is None:
            mask = _seg_mask(tq, tk - tq, True, q.device) if self.causal else None
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        probs = scores.softmax(-1)
        if self._drop():
            probs = F.dropout(probs, self._drop())
        return probs @ v

    def _segment(self, x, q, k, v, state):
        """One (piece of a) segment with per-layer memory: `mem` holds the last M
        inputs of earlier segments, `cur` this segment's earlier inputs (both detached)."""
        mem, cur = state.get("mem"), state.get("cur")
        prev = [z for z in (mem, cur) if z is not None]
        m = sum(z.shape[1] for z in prev)
        if m:
            xm = torch.cat(prev, 1) if len(prev) > 1 else prev[0]
            km = split_heads(self.k(xm), self.kvh)
            vm = split_heads(self.v(xm), self.kvh)
            k, v = torch.cat([km, k], 2), torch.cat([vm, v], 2)
        t = q.shape[2]
        mask = _seg_mask(t, m, self.causal, x.device)
        if self.pos == "relative":
            y = self._relative(q, k, v, mask)
        else:
            if self.pos == "rope":
                q, k = rope(q, m), rope(k, 0)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self._drop(),
                                               enable_gqa=self.kvh != self.h)
        state["cur"] = x.detach() if cur is None else torch.cat([cur, x.detach()], 1)
        return self.o(merge_heads(y))

    def end_segment(self, state):
        """After a segment: mem = cat(mem, segment)[-M:] (no gradient)."""
        mem, cur = state.get("mem"), state.get("cur")
        full = cur if mem is None else torch.cat([mem, cur], 1)
        # a compact copy: a view would keep all of `full` alive (and saved) for backward
        state["mem"] = full[:, max(full.shape[1] - self.memory, 0):].clone() if self.memory else None
        state["cur"] = None

    def _stream_softmax(self, q, k, v, state, start):
        """Causal streaming: a growing (or window-bounded) key/value cache."""
        kc, vc = state.get("k"), state.get("v")
        if kc is not None:
            k, v = torch.cat([kc, k], 2), torch.cat([vc, v], 2)
        t, tk = q.shape[2], k.shape[2]
        past = tk - t
        qpos = torch.arange(past, tk, device=q.device)[:, None]
        kpos = torch.arange(tk, device=q.device)[None, :]
        mask = kpos <= qpos
        if self.window is not None:
            mask = mask & (kpos >= qpos - self.window)
        if self.pos == "relative":
            y = self._relative(q, k, v, mask)
        elif self.pos == "alibi":
            dist = (qpos - kpos).to(q.dtype)
            bias = (-self.slopes.to(q.dtype)[:, None, None] * dist).masked_fill(~mask, float("-inf"))
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, enable_gqa=self.kvh != self.h)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.kvh != self.h)
        keep = tk if self.window is None else min(tk, self.window)
        state["k"], state["v"] = k[:, :, tk - keep:], v[:, :, tk - keep:]
        return self.o(merge_heads(y))


def _seg_mask(t, m, causal, device):
    qpos = torch.arange(m, m + t, device=device)[:, None]
    kpos = torch.arange(m + t, device=device)[None, :]
    if causal:
        return kpos <= qpos
    return torch.ones(t, m + t, dtype=torch.bool, device=device)


class CrossAttention(nn.Module):
    def __init__(self, c, cc, heads, kv_heads, bias):
        super().__init__()
        self.h, self.kvh, self.dh = heads, kv_heads, c // heads
        kvd = kv_heads * self.dh
        self.q = nn.Linear(c, c, bias=bias)
        self.k = nn.Linear(cc, kvd, bias=bias)
        self.v = nn.Linear(cc, kvd, bias=bias)
        self.o = nn.Linear(c, c, bias=bias)

    def forward(self, x, context, state=None):
        q = split_heads(self.q(x), self.h)
        k = split_heads(self.k(context), self.kvh)
        v = split_heads(self.v(context), self.kvh)
        y = F.scaled_dot_product_attention(q, k, v, enable_gqa=self.kvh != self.h)
        return self.o(merge_heads(y))


# ------------------------------------------------------------------ recurrent
class Recurrent(nn.Module):
    def __init__(self, kind, c, hidden, layers, bidirectional, dropout, nonlinearity="tanh"):
        super().__init__()
        kw = dict(num_layers=layers, batch_first=True, dropout=dropout, bidirectional=bidirectional)
        if kind == "rnn":
            kw["nonlinearity"] = nonlinearity
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind](c, hidden, **kw)

    def forward(self, x, state=None):
        if state is None:
            return self.rnn(x)[0]
        if x.shape[1] == 0:   # an empty chunk (a strided conv upstream is mid-stride): nothing to step
            r = self.rnn
            return x.new_zeros(x.shape[0], 0, r.hidden_size * (2 if r.bidirectional else 1))
        y, h = self.rnn(x, state.get("h"))
        state["h"] = h
        return y


# ------------------------------------------------------------------ shape ops
class Unsqueeze(nn.Module):
    def forward(self, x):
        return x.unsqueeze(-1)


class Flatten(nn.Module):
    def forward(self, x):
        return x.flatten(2)


class SpatialPool(nn.Module):
    def __init__(self, reduce):
        super().__init__()
        self.reduce = reduce

    def forward(self, x):
        dims = tuple(range(2, x.dim() - 1))
        if not dims:
            return x
        return x.mean(dims) if self.reduce == "mean" else x.amax(dims)


class TimePool(nn.Module):
    def __init__(self, reduce):
        super().__init__()
        self.reduce = reduce

    def forward(self, x):
        return x.mean(1) if self.reduce == "mean" else x[:, -1]
