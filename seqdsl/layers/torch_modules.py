"""The kernels every lowering file shares: the activations table, dense
copies, sinusoids, the module scope keyed by spec names and the input checks.
Each layer family's modules live in its own `<family>_torch.py` (docs/lowering.md).

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


def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


def squared_relu(x):
    return torch.square(F.relu(x))


def hardtanh(x, lo, hi):
    return F.hardtanh(x, lo, hi)


def log_softmax(x):
    return F.log_softmax(x, dim=-1)


def softcap(x, cap):
    return torch.tanh(x / cap) * cap


def glu(x):
    return F.glu(x, dim=-1)


# Element-wise (and channel-wise) activations by spec name; `Act` and `mlp` call
# them with the layer's numeric arguments after the tensor.
ACTS = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": gelu_tanh, "silu": F.silu, "tanh": torch.tanh,
        "sigmoid": torch.sigmoid, "squared_relu": squared_relu, "hardtanh": hardtanh,
        "log_softmax": log_softmax, "softcap": softcap, "glu": glu}


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


def check_lengths(model, lengths, inputs: dict) -> dict:
    """forward's `lengths=` (docs/language.md, "Variable lengths"): one
    tensor when one input declares `lengths`, else a dict {input name:
    tensor}; each an integer tensor [B] of lengths 1..T of that input's axis
    1. Returns {input name: int64 tensor on the input's device}. `model` has
    spec_name and lengths_inputs (the inputs declared `lengths`)."""
    spec, names = model.spec_name, tuple(model.lengths_inputs)
    if not names:
        raise TypeError(f"{spec}: no input declares `lengths`, so forward takes no lengths=; "
                        "declare them in the spec: input x: float[B, T, C] lengths")
    if isinstance(lengths, dict):
        unknown = [k for k in lengths if k not in names]
        missing = [k for k in names if k not in lengths]
        if unknown or missing:
            raise TypeError(f"{spec}: lengths= names {sorted(map(str, lengths))}, but the inputs declared "
                            f"`lengths` are {list(names)}: give one tensor for each")
        given = dict(lengths)
    elif len(names) == 1:
        given = {names[0]: lengths}
    else:
        raise TypeError(f"{spec}: inputs {list(names)} declare `lengths`: pass a dict, "
                        f"lengths={{{', '.join(repr(n) + ': ...' for n in names)}}}")
    out = {}
    for name, n in given.items():
        x = inputs[name]
        if not isinstance(n, torch.Tensor) or n.is_floating_point() or n.is_complex() or n.dtype == torch.bool:
            raise TypeError(f"{spec}: lengths of input '{name}' must be an integer tensor [B], "
                            f"not {n.dtype if isinstance(n, torch.Tensor) else type(n).__name__}")
        if n.dim() != 1 or n.shape[0] != x.shape[0]:
            raise ValueError(f"{spec}: lengths of input '{name}' has shape {tuple(n.shape)}, but the input "
                             f"has batch {x.shape[0]}: one length per sequence, shape ({x.shape[0]},)")
        if not torch.compiler.is_compiling() and n.numel() and (int(n.min()) < 1 or int(n.max()) > x.shape[1]):
            raise ValueError(f"{spec}: lengths of input '{name}' must be 1..{x.shape[1]} (its axis 1), "
                             f"got {n.tolist()}")
        out[name] = n.to(device=x.device, dtype=torch.long)
    return out


def time_mask(lengths, t: int):
    """[B, t] bool: position j of sequence b is within its length."""
    return torch.arange(t, device=lengths.device) < lengths[:, None]


def zero_padded(x, lengths):
    """x [B, T, ...] with each sequence's positions at or past its length set to 0."""
    mask = time_mask(lengths, x.shape[1]).view(x.shape[0], x.shape[1], *([1] * (x.dim() - 2)))
    return x.masked_fill(~mask, 0)


def _dense(x):
    """x made contiguous once. A strided input (a conv's or an RNN's
    channels-last view) sends every nn.Linear on it down matmul: a copy of the
    input per linear and a separate bias add (two outputs alive at once). One
    copy up front keeps each projection a single addmm, as the cost model counts."""
    return x if x.is_contiguous() else x.contiguous()


def sinusoid(n: int | torch.Tensor, c: int, device=None, dtype=torch.float32, start=0):
    pos = torch.arange(start, start + n, device=device, dtype=dtype)[:, None]
    inv = torch.exp(torch.arange(0, c, 2, device=device, dtype=dtype) * (-math.log(10000.0) / c))
    pe = torch.zeros(pos.shape[0], c, device=device, dtype=dtype)
    pe[:, 0::2] = torch.sin(pos * inv)
    pe[:, 1::2] = torch.cos(pos * inv)
    return pe


def causal_depthwise_conv(conv, x, state, window: int):
    """A depthwise causal conv (an nn.Conv1d with groups = channels) over exactly
    T outputs of x (B, C, T): left padding only. Streaming keeps the last
    `window` inputs in state["conv"] as the layer's reference caches them
    (transformers' Mamba keeps K, RecurrentGemma K - 1)."""
    k = conv.kernel_size[0]
    if state is None:
        xp = F.pad(x, (k - 1, 0))
    else:
        win = state.get("conv")
        if win is None:
            win = x.new_zeros(x.shape[0], x.shape[1], window)
        xp = torch.cat([win[..., window - (k - 1):], x], -1)
        n = xp.shape[-1]
        state["conv"] = xp[..., n - window:] if n >= window else F.pad(xp, (window - n, 0))
    return depthwise_conv1d(xp, conv.weight, conv.bias)


def depthwise_conv1d(xp, weight, bias):
    """F.conv1d(xp, weight, bias, groups=C): a depthwise weight (C, 1, K) over
    xp (B, C, T + K - 1), already padded, -> (B, C, T). Eagerly F.conv1d (what
    the cost model counts). Under torch.compile K shifted products
    (`_ShiftedConv`): inductor's lowering of convolution_backward turns the
    input gradient's strides into ints (torch 2.13, _inductor/kernel/conv.py:
    guard_int_seq), which fixes T, one graph per length, in every training
    graph with a conv over the sequence."""
    if not torch.compiler.is_compiling():
        return F.conv1d(xp, weight, bias, groups=weight.shape[0])
    return _ShiftedConv.apply(xp, weight, bias)


class _ShiftedConv(torch.autograd.Function):
    """depthwise_conv1d as K shifted products, y = sum_i xp[..., i:i+T]·w_i (+ b),
    with its own backward so that the whole xp is kept for it (the products'
    autograd would keep slices of xp, views that inductor may store with other
    strides: see `unpadded`)."""

    @staticmethod
    def forward(ctx, xp, weight, bias):
        k = weight.shape[-1]
        t = xp.shape[-1] - (k - 1)
        y = xp[..., :t] * weight[:, :, 0]
        for i in range(1, k):
            y = y + xp[..., i:i + t] * weight[:, :, i]
        ctx.save_for_backward(xp, weight)
        ctx.has_bias = bias is not None
        return y + bias[:, None] if bias is not None else y

    @staticmethod
    def backward(ctx, gy):
        xp, weight = ctx.saved_tensors
        k, t = weight.shape[-1], gy.shape[-1]
        gx = F.pad(gy * weight[:, :, 0], (0, k - 1))
        for i in range(1, k):
            gx = gx + F.pad(gy * weight[:, :, i], (i, k - 1 - i))
        gw = torch.stack([(gy * xp[..., i:i + t]).sum((0, 2)) for i in range(k)], -1).unsqueeze(1)   # (C, 1, K)
        return gx, gw, gy.sum((0, 2)) if ctx.has_bias else None


# ---- optional CUDA kernels (the `cuda` extra: mamba-ssm, causal-conv1d,
# flash-linear-attention). A layer asks for one by name; on the CPU, or when the
# package does not import, it gets None and runs its pure-torch path. The
# kernels compute the same function (docs/recurrent_layers.md, "CUDA kernels").
_CUDA_KERNELS: dict = {}


def cuda_kernel(name: str, on_cuda: bool):
    """The fused kernel `name` when the tensors are on a GPU (`on_cuda`, the
    caller's x.is_cuda) and its package imports; else None. The import is tried
    once, and never for CPU tensors."""
    if not on_cuda:
        return None
    if name not in _CUDA_KERNELS:
        _CUDA_KERNELS[name] = _import_cuda_kernel(name)
    return _CUDA_KERNELS[name]


def _import_cuda_kernel(name: str):
    try:
        if name == "selective_scan":
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as fn  # lazy: optional cuda extra
        elif name == "ssd_chunk_scan":
            from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined as fn  # lazy: optional cuda extra
        elif name == "causal_conv1d":
            from causal_conv1d import causal_conv1d_fn as fn  # lazy: optional cuda extra
        elif name == "chunk_gla":
            from fla.ops.gla import chunk_gla as fn  # lazy: optional cuda extra
        elif name == "chunk_gated_delta_rule":
            from fla.ops.gated_delta_rule import chunk_gated_delta_rule as fn  # lazy: optional cuda extra
        else:
            raise ValueError(f"unknown CUDA kernel {name!r}")
    except ImportError:      # not installed (or its Triton/CUDA build does not load): the pure path
        return None
    return fn


def causal_conv_silu(conv, x, state, window: int):
    """silu(causal_depthwise_conv(conv, x, state, window)), x (B, C, T); on a GPU
    with causal-conv1d installed, its fused kernel (whole sequences only: it
    keeps no stream state; kernel widths 2-4, as it supports)."""
    fused = cuda_kernel("causal_conv1d", x.is_cuda) if state is None and 2 <= conv.kernel_size[0] <= 4 else None
    if fused is not None:
        return fused(x, conv.weight[:, 0], conv.bias, activation="silu")      # weight (C, 1, K) -> (C, K)
    return F.silu(causal_depthwise_conv(conv, x, state, window))


def softplus_inverse_dt(n: int):
    """Mamba's time-step bias: dt drawn log-uniform in [0.001, 0.1] (at least
    1e-4), stored as softplus^-1(dt), as the references initialise it."""
    dt = torch.exp(torch.rand(n) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).clamp(min=1e-4)
    return dt + torch.log(-torch.expm1(-dt))


def unpadded(x, t, dim: int):
    """The first t positions of x along `dim`: a chunked lowering's output, its
    padding to a whole number of chunks cut off. Eagerly the view (what the
    cost model counts). Under torch.compile a new tensor (index_select), never
    a view: inductor computes such a slice compact, and when a tensor kept for
    backward has other strides in the trace than in inductor's forward,
    AOTAutograd (torch 2.13) restrides the backward's input to the first
    call's concrete strides, which fixes the length: one graph per T
    (pytorch#194420). A contiguous() copy is not enough: the partitioner may
    keep the view it copies and redo the copy in backward."""
    if not torch.compiler.is_compiling():
        return x.narrow(dim, 0, t)
    return x.index_select(dim, torch.arange(t, device=x.device))


SOLVE_MAX_CHUNKS = 32    # the solve's (n+1)² matrix per channel: at most 1,089 entries


def carry_by_solve(n) -> bool:
    """Whether a chunked lowering hands its states chunk to chunk by
    `chunk_states_solve` (gated_deltanet, whose transition is a matrix: by its
    loop padded to SOLVE_MAX_CHUNKS steps): under torch.compile, up to
    SOLVE_MAX_CHUNKS chunks (one graph for every such length; a guard on n).
    Past that the matrix grows as n² per channel (Mamba's di·N channels: 0.4 GB
    a sequence at 64 chunks), so longer inputs take the loop, traced once per
    chunk count."""
    return torch.compiler.is_compiling() and n <= SOLVE_MAX_CHUNKS


def chunk_states_solve(h0, decay, u):
    """The state entering every chunk, and the last, of h_i = decay_i·h_{i-1} +
    u_i handed chunk to chunk (elementwise per channel), as one lower-bidiagonal
    unit-triangular solve per channel: h0 (*batch, K, R), decay (*batch, n, K),
    u (*batch, n, K, R) -> (*batch, n + 1, K, R), row i the state entering
    chunk i (row 0 is h0, row n the last state).

    The chunked lowerings' form under torch.compile (`torch.compiler.is_compiling()`):
    a Python loop over the chunks would be unrolled, one graph per chunk count,
    and torch's scan op is wrong in backward under inductor on CPU (torch 2.13),
    while the solve takes any n in one graph. It holds an (n+1)² matrix per
    channel where the loop holds n states, so the eager forward (whose saved
    tensors and FLOPs the cost model counts) keeps the loop."""
    x = torch.cat([h0.unsqueeze(-3), u], -3).transpose(-3, -2)          # (*batch, K, n+1, R)
    i = torch.arange(x.shape[-2], device=x.device)
    below = i[:, None] == i[None, :] + 1                                # the subdiagonal (diag_embed's
    d = F.pad(-decay.transpose(-1, -2), (0, 1)).unsqueeze(-2)           # strides break inductor at a
    m = torch.where(below, d, torch.zeros((), dtype=d.dtype, device=d.device))   # symbolic n)
    return torch.linalg.solve_triangular(m, x, upper=False, unitriangular=True).transpose(-3, -2)
