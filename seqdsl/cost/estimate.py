"""`seqdsl.estimate`: closed-form costs of a model at given lengths (issue 3).

    est = seqdsl.estimate("specs/transformer_lm.seq", seq=[1024, 4096], batch=8)
    est.points[0].flops_train, est.points[0].inference_peak_bytes

The closed forms are derived once per (model, dtype) by `seqdsl.cost` and
compiled to column evaluators over Python ints (`seqdsl.graph.symbolic.compile_columns`:
every point of a sweep at once), so a sweep costs microseconds a point and stays
exact at T = 10**9.
Torch is never imported.
"""
from __future__ import annotations

from pathlib import Path

import sympy
from pydantic import BaseModel, ConfigDict

from ..layers.costs import DTYPE_BYTES, ZERO, is_cost_symbol
from .cached import (DEFAULT_SEQ, OPTIMIZERS, layer_where, max_len_warning, optimizer_bytes, peak_of_training,
                     whole as _int)
from .model import Figure, ModelCost, model_cost
from ..graph.ir import ModelGraph, Program
from ..graph.symbolic import compile_columns, compile_expr, compile_shared, fmt_dim, point_columns
from ..check.elaborate import load
from ..errors import UsageError
from ..limits import MAX_LENGTH
from .hardware import HardwareProfile, load_profile
from .parallel import ParallelCost, PerDevice, check_recompute, parse_parallel
from .roofline import latency

class Point(BaseModel):
    """Every figure at one (lengths, batch, dtype). Bytes and FLOPs are exact ints."""

    model_config = ConfigDict(frozen=True)

    seq: dict[str, int]
    batch: int
    dtype: str
    flops_forward: int
    flops_train: int
    flops_per_token: int | None          # None: the spec cannot stream
    weights_bytes: int
    grads_bytes: int
    optimizer_bytes: int
    activation_bytes: int                # saved for backward
    loss_bytes: int                      # the declared loss's working set (0 without a `loss` statement)
    # the peak of a training step (optimizer state resident, gradients set to
    # None before it): weights + optimizer + the larger of the two phases,
    # activations + loss (where backward starts) and gradients (where it ends,
    # tied weights' extra copies included); `training_peak` says why
    training_bytes: int
    inference_peak_bytes: int
    state_bytes: int | None              # generation state at this length; None if it cannot stream
    sequential_depth: int
    warnings: list[str] = []             # e.g. a length past a layer's max_len (the module refuses it)
    # roofline latency in seconds (seqdsl.cost.roofline), only with hw=...; per token None if it cannot stream
    latency_forward_s: float | None = None
    latency_train_s: float | None = None
    latency_per_token_s: float | None = None
    # the most loaded device under parallel=... (seqdsl.cost.parallel); None without a layout
    per_device: PerDevice | None = None


class Estimate(BaseModel):
    model: str
    params: int
    dtype: str
    optimizer: str
    streaming: bool
    streaming_blocker: str | None        # which layer at which line prevents generation
    stream_context: list[str] = []       # inputs given once when generating (an encoder's source)
    points: list[Point]
    hw: str | None = None                # the hardware profile of the latency figures
    parallel: str | None = None          # the layout of the per_device figures (batch: one micro-batch)
    recompute: str = "none"


# ------------------------------------------------------------------ compiled forms
class CompiledCost:
    """A ModelCost with every figure compiled to exact column evaluators
    (`seqdsl.graph.symbolic.compile_columns`: all points of a sweep at once).
    Each figure is a Figure (seqdsl.cost.model): its base, whose shared
    subexpressions (ceil(T/2), segment counts, ...) are evaluated once a sweep
    (`bind`), plus its bound terms: each distinct expression compiled once and
    evaluated at every (binding, point) pair in one pass (`BoundTerms`)."""

    def __init__(self, cost: ModelCost):
        self.cost = cost
        none = Figure(ZERO)
        figures = [cost.forward, cost.train, cost.activation, cost.depth,
                   cost.per_token if cost.per_token is not None else none,
                   cost.state if cost.state is not None else none, Figure(cost.loss_bytes), *cost.peaks]
        self.shared, f = compile_shared([fig.base for fig in figures], "_cse")
        self.bound = BoundTerms([fig.bound for fig in figures])
        self.fwd, self.train, self.act, self.depth, token, state, self.loss = range(7)
        self.bases = f
        self.token = None if cost.per_token is None else token
        self.state = None if cost.state is None else state
        self.peaks = range(7, len(figures))
        self.limits = [(compile_columns(length)[0], max_len, node) for length, max_len, node in cost.limits]

    def warnings(self, cols: dict, n: int) -> list[list[str]]:
        """For each point, the layers whose max_len it passes."""
        out = [[] for _ in range(n)]
        for length, max_len, node in self.limits:
            for i, steps in enumerate(length(cols, n)):
                if steps > max_len:
                    out[i].append(max_len_warning(layer_where(node), max_len, steps))
        return out

    def bind(self, cols: dict, n: int) -> dict:
        """cols with the shared subexpressions evaluated at every point."""
        for name, fn in self.shared:
            cols[name] = fn(cols, n)
        return cols

    def values(self, cols: dict, n: int) -> list[list]:
        """Every figure's exact values at the n points of `cols` (after `bind`)."""
        bound = self.bound.evaluate(cols, n)
        return [fn(cols, n) if not extra else [a + b for a, b in zip(fn(cols, n), extra)]
                for fn, extra in zip(self.bases, bound)]


class BoundTerms:
    """The bound terms of several figures: each distinct expression is
    compiled once and evaluated at all its bindings and all points in one
    column pass (the points repeated once per binding), and each figure sums
    its terms' values per point."""

    def __init__(self, per_figure: list[tuple]):
        index: dict = {}                      # expression -> its slot in self.groups
        self.groups: list[tuple] = []         # (shared, fn, model dims it reads, cost symbol names, bindings)
        bindings: list[dict] = []             # per group: binding -> its position
        self.figures = []                     # per figure: [(group, position), ...]
        for terms in per_figure:
            refs = []
            for expr, binding in terms:
                g = index.get(expr)
                if g is None:
                    g = index[expr] = len(self.groups)
                    # its repeated subexpressions (ceil(T/@length), ...) once per (binding, point)
                    shared, (fn,) = compile_shared([expr], f"_b{g}_")
                    names = tuple(s.name for s, _ in binding)
                    dims = tuple(s.name for s in expr.free_symbols if not is_cost_symbol(s))
                    self.groups.append((shared, fn, dims, names, []))
                    bindings.append({})
                pos = bindings[g].get(binding)
                if pos is None:
                    pos = bindings[g][binding] = len(self.groups[g][4])
                    self.groups[g][4].append(tuple(v for _, v in binding))
                refs.append((g, pos))
            self.figures.append(refs)

    def evaluate(self, cols: dict, n: int) -> list:
        """Per figure, the sum of its bound terms at each point (None: none)."""
        values = []
        for shared, fn, dims, names, rows in self.groups:
            k = len(rows)
            tiled = {d: cols[d] * k for d in dims}
            for j, name in enumerate(names):
                tiled[name] = [row[j] for row in rows for _ in range(n)]
            for name, sub in shared:
                tiled[name] = sub(tiled, k * n)
            values.append(fn(tiled, k * n))
        out = []
        for refs in self.figures:
            if not refs:
                out.append(None)
                continue
            acc = [0] * n
            for g, pos in refs:
                v = values[g]
                base = pos * n
                acc = [a + v[base + i] for i, a in enumerate(acc)]
            out.append(acc)
        return out


_CACHE: dict[tuple[int, str], tuple[ModelGraph, CompiledCost]] = {}


def compiled(model: ModelGraph, dtype: str) -> CompiledCost:
    """The compiled closed forms of `model` at `dtype`, derived once per model."""
    key = (id(model), dtype)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is model:
        return hit[1]
    c = CompiledCost(model_cost(model, dtype))
    _CACHE[key] = (model, c)
    return c


# ------------------------------------------------------------------ arguments
class EstimateArgumentError(UsageError, ValueError):
    """A bad argument: a UsageError to the CLI (exit 2), a ValueError to Python callers."""


def _usage(message: str):
    return EstimateArgumentError(message)


def resolve_points(model: ModelGraph, seq) -> list[dict[str, int]]:
    """seq: an int or list of ints (every sequence dim), a {dim: int} dict, or a
    list of such dicts. Returns one {dim: value} per point."""
    dims = list(model.seq_symbols)
    if seq is None:
        seq = DEFAULT_SEQ
    if isinstance(seq, (int, dict)):
        seq = [seq]
    if isinstance(seq, (str, bytes)) or not isinstance(seq, (list, tuple, range)):
        raise _usage(f"seq must be a length, a {{dim: length}} dict or a list of them, not {type(seq).__name__}")
    if not seq:
        raise _usage("seq=[] gives no length to estimate at; pass a length (seq=1024) or leave seq out")
    points = []
    for item in seq:
        if isinstance(item, bool):
            raise _usage(f"a length must be an integer, got {item!r}")
        if isinstance(item, int):
            point = {d: item for d in dims}
        elif isinstance(item, dict):
            unknown = [k for k in item if k not in dims]
            if unknown:
                have = ", ".join(dims) or "none"
                raise _usage(f"model '{model.name}' has no sequence dim '{unknown[0]}' (its dims: {have})")
            missing = [d for d in dims if d not in item]
            if missing:
                raise _usage(f"no length given for dim '{missing[0]}' of model '{model.name}'")
            point = dict(item)
        else:
            raise _usage(f"a length must be an integer or {{dim: int}}, got {item!r}")
        for d, v in point.items():
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_LENGTH:
                raise _usage(f"length {d}={v!r} must be an integer from 1 to {MAX_LENGTH:.0e}")
        points.append(point)
    check_lengths(model, points)
    return points


def _dims_below_one(model: ModelGraph, points: list[dict[str, int]]):
    """(node, dim expr, index of the first point where it is < 1) for the first
    layer whose output has a dim below 1 at some point (a valid conv shorter
    than its kernel, ...), else None. Each distinct dim expression is
    evaluated once over all the points (columns)."""
    if not points:
        return None
    cols, n = point_columns(points, {model.batch_symbol: 1} if model.batch_symbol else None)
    seen: dict = {}
    for node in model.nodes:
        for d in node.output.dims:
            if isinstance(d, int) or getattr(d, "is_Integer", False) or getattr(d, "is_Symbol", False):
                continue
            bad = seen.get(d)
            if bad is None:
                try:
                    values = compile_columns(d)[0](cols, n)
                except (ValueError, KeyError, ZeroDivisionError):
                    values = [1] * n
                bad = seen[d] = next((i for i, v in enumerate(values) if v < 1), -1)
            if bad >= 0:
                return node, d, bad
    return None


def check_lengths(model: ModelGraph, points: list[dict[str, int]]) -> None:
    """Refuse a length at which a layer's output would have a dim below 1
    (conv1d(8, 100, padding=valid) at T=64), naming the layer, its line and
    the smallest length that works (UsageError: the spec is fine, the length
    is not)."""
    hit = _dims_below_one(model, points)
    if hit is None:
        return
    node, dim, i = hit
    point = points[i]
    value = compile_expr(dim)({**point, **({model.batch_symbol: 1} if model.batch_symbol else {})})
    at = ", ".join(f"{k}={v:,}" for k, v in point.items())
    # the smallest length that works: binary search on the dims this one reads
    # (output lengths grow with the input length), the other dims held
    names = [s.name for s in dim.free_symbols if s.name in point]
    hint = ""
    if names:
        lo, hi = 1, MAX_LENGTH
        scale = lambda v: {**point, **{k: v for k in names}}  # noqa: E731
        if _dims_below_one(model, [scale(hi)]) is None:
            while lo < hi:
                mid = (lo + hi) // 2
                if _dims_below_one(model, [scale(mid)]) is None:
                    hi = mid
                else:
                    lo = mid + 1
            hint = f"; the smallest length that works is {'='.join(names)}={lo:,}"
        else:
            hint = "; no length makes it positive"
    raise _usage(f"at {at}, {node.kind} '{node.alias or node.name}' (line {node.line}) would output a dim "
                 f"{fmt_dim(dim)} = {value} < 1{hint}")


def estimate(program_or_path, seq=None, batch: int = 1, dtype: str = "float32",
             optimizer: str = "adam", model: str | None = None, hw=None, parallel=None,
             recompute: str = "none") -> Estimate:
    """Closed-form costs of one model (a path, a Program or a ModelGraph) at
    each requested length. See COST_MODEL.md for what every figure counts.
    hw: a hardware profile (name, JSON path or HardwareProfile) adds roofline
    latencies to each point (seqdsl.cost.roofline).
    parallel: a layout ("dp=8,tp=2,pp=2,zero=1,sp,microbatches=8" or a
    seqdsl.cost.parallel.Parallel) adds each point's `per_device` figures for
    the most loaded device, batch being one data-parallel micro-batch;
    recompute: none, selective or full (activation recomputation)."""
    graph = _model_of(program_or_path, model)
    if dtype not in DTYPE_BYTES:
        raise _usage(f"unknown dtype '{dtype}': use float32, bfloat16 or float16")
    if optimizer not in OPTIMIZERS:
        raise _usage(f"unknown optimizer '{optimizer}': use adam, sgd or none")
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_LENGTH:
        raise _usage(f"batch must be a positive integer, got {batch!r}")
    profile = None
    if hw is not None:
        profile = hw if isinstance(hw, HardwareProfile) else load_profile(str(hw))
    check_recompute(recompute)
    layout = parse_parallel(parallel) if parallel is not None else None
    points = resolve_points(graph, seq)
    cc = compiled(graph, dtype)
    est = evaluate_points(graph, cc, points, batch, dtype, optimizer, profile)
    if layout is None:
        return est
    pc = parallel_cost(cc, layout, optimizer, recompute)
    est.points = [p.model_copy(update={"per_device": pc.at(p.seq, batch, p.sequential_depth, p.latency_train_s,
                                                           profile)}) for p in est.points]
    est.parallel, est.recompute = str(layout), recompute
    return est


_PARALLEL_CACHE: dict[tuple, tuple[CompiledCost, ParallelCost]] = {}


def parallel_cost(cc: CompiledCost, layout, optimizer: str, recompute: str = "none") -> ParallelCost:
    """The per-device closed forms of a compiled model under `layout`, built once per
    (model, dtype, layout, optimizer, recompute)."""
    layout = parse_parallel(layout)
    key = (id(cc), layout, optimizer, check_recompute(recompute))
    hit = _PARALLEL_CACHE.get(key)
    if hit is not None and hit[0] is cc:
        return hit[1]
    pc = ParallelCost(cc.cost, layout, optimizer_bytes(1, cc.cost.dtype, optimizer), recompute)
    _PARALLEL_CACHE[key] = (cc, pc)
    return pc


def evaluate_points(graph: ModelGraph, cc: CompiledCost, points, batch: int, dtype: str,
                    optimizer: str, profile=None) -> Estimate:
    params = graph.params
    elem = DTYPE_BYTES[dtype]
    weights = params * elem
    opt = optimizer_bytes(params, dtype, optimizer)
    batch_sym = graph.batch_symbol
    out = []
    make = Point.model_construct
    # every field given, so model_construct looks up no defaults (1,000 points: -3 ms)
    times = [{"latency_forward_s": None, "latency_train_s": None, "latency_per_token_s": None}] * len(points)
    if profile is not None:
        times = [{"latency_forward_s": t["forward"], "latency_train_s": t["train"],
                  "latency_per_token_s": t["per_token"]}
                 for t in latency(graph, profile, dtype, points, batch, cc.cost)]
    cols, n = point_columns(points, {batch_sym: batch} if batch_sym is not None else None)
    cc.bind(cols, n)
    figures = cc.values(cols, n)

    def ints(i):
        return [v if v.__class__ is int else _int(v) for v in figures[i]]
    fwd, train, act, depth, loss = ints(cc.fwd), ints(cc.train), ints(cc.act), ints(cc.depth), ints(cc.loss)
    token = ints(cc.token) if cc.token is not None else [None] * n
    state = ints(cc.state) if cc.state is not None else [None] * n
    peak = [max(values) for values in zip(*(ints(p) for p in cc.peaks))]
    warns = cc.warnings(cols, n)
    for i, (point, time) in enumerate(zip(points, times)):
        out.append(make(
            seq=point, batch=batch, dtype=dtype,
            flops_forward=fwd[i], flops_train=train[i], flops_per_token=token[i],
            weights_bytes=weights, grads_bytes=weights, optimizer_bytes=opt,
            activation_bytes=act[i], loss_bytes=loss[i],
            training_bytes=training_peak(weights, opt, act[i] + loss[i], weights + cc.cost.tied_grad_bytes),
            inference_peak_bytes=peak[i], state_bytes=state[i],
            sequential_depth=depth[i], warnings=warns[i], **time))
    blocker = cc.cost.streaming_blocker
    why = None
    if blocker is not None:
        why = f"{blocker.kind} '{blocker.alias or blocker.name}' at line {blocker.line} is not causal"
    return Estimate.model_construct(model=graph.name, params=params, dtype=dtype, optimizer=optimizer,
                                    streaming=blocker is None, streaming_blocker=why, points=out,
                                    hw=None if profile is None else profile.name,
                                    stream_context=list(cc.cost.stream_context), parallel=None, recompute="none")


def training_peak(weights, optimizer, forward_phase, gradients):
    """The most bytes a training step holds at once (measured against HF GPT-2
    in tests/test_loss.py): the weights and optimizer state throughout, plus
    either what backward starts from (`forward_phase`: saved activations and
    the loss's working set) or what it ends with (`gradients`: every
    parameter's, tied weights' extra copies included), whichever is larger —
    the activations are freed as the gradients are made. Works on ints and on
    sympy expressions (seqdsl.cost.compare)."""
    if isinstance(forward_phase, int) and isinstance(gradients, int):
        return peak_of_training(weights, optimizer, forward_phase, gradients)
    return weights + optimizer + sympy.Max(forward_phase, gradients, evaluate=False)


def _model_of(program_or_path, name: str | None) -> ModelGraph:
    if isinstance(program_or_path, ModelGraph):
        return program_or_path
    if isinstance(program_or_path, (str, Path)):
        program_or_path = load(program_or_path)
    if isinstance(program_or_path, Program):
        return program_or_path.model(name)
    raise TypeError(f"estimate() takes a path, Program or ModelGraph, not {type(program_or_path).__name__}")
