"""`seqdsl compare`: several specs side by side on one cost, and the exact
lengths where their ranking changes.

    seqdsl compare specs/transformer_lm.seq specs/lstm_lm.seq --metric flops_train
    seqdsl compare examples/lm_sizes.seq specs/lstm_lm.seq --seq 64..65536 --json
    seqdsl compare specs/lstm_lm.seq examples/lm_sizes.seq:gpt_small --plot cost.png
    seqdsl compare a.seq b.seq --metric latency --hw h100 --dtype bfloat16

    from seqdsl.cost.compare import compare, plot
    c = compare(["specs/lstm_lm.seq", "examples/lm_sizes.seq:gpt_small"], metric="flops_train")
    c.crossovers[0].seq                       # {'T': 12598}

Specs: `FILE.seq` is every model in the file; `FILE.seq:MODEL` picks one. A
spec is shown by its model name, prefixed with the file stem (`stem:model`)
where two names collide. At least two models in all.

Metrics (closed forms from seqdsl.cost, exact integers, rounded up where
seqdsl.estimate rounds): flops_forward, flops_train, flops_per_token (one
generation step at position T), train_memory (weights + gradients + optimizer
+ saved activations, as `compile --estimate`'s training_bytes),
inference_peak, state_bytes (generation state at T), sequential_depth
(steps on the critical path: the parallelism a length allows); with `--hw PROFILE`, the
roofline latencies in seconds latency_forward, latency_train,
latency_per_token (`latency` means latency_train). flops_per_token,
state_bytes and latency_per_token are undefined for a model that cannot
stream: it shows "—" (JSON null), is left out of the crossovers, and a note
names the layer that blocks streaming.

Lengths (--seq): a bare list or range (`64,1024`, `64..1048576`, the default:
powers of two) is one length applied to every sequence dim of every model, so
models that name their dims differently (T, S) are compared at equal lengths.
Named dims (`T=64..65536,S=512`: at most one ranged dim, swept; the others
held) are accepted only when every model has exactly those sequence dims.

Crossovers are solved from the closed forms by seqdsl.cost.crossover (exact
integers, not a grid guess) within the swept [min, max]: `seq` is the first
length at which the pair's strict order differs from the one below it;
`between[0]` is the spec that costs more from there on. Torch is never
imported; matplotlib only by `plot`.
"""
from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction
from pathlib import Path

import sympy
from pydantic import BaseModel

from ..errors import UsageError
from ..limits import MAX_LENGTH
from ..graph.ir import ModelGraph
from ..check.elaborate import load, split_model_path
from ..graph.symbolic import compile_expr, dim_symbol
from ..layers.costs import DTYPE_BYTES
from .crossover import crossings
from .estimate import compiled, estimate, optimizer_bytes, parallel_cost
from .hardware import HardwareProfile, load_profile
from .lengths import parse_seq
from .parallel import parse_parallel
from .roofline import latency_exprs

COUNT_METRICS = ("flops_forward", "flops_train", "flops_per_token", "train_memory",
                 "inference_peak", "state_bytes", "sequential_depth")
LATENCY_METRICS = {"latency_forward": "forward", "latency_train": "train", "latency_per_token": "per_token"}
ALIASES = {"latency": "latency_train"}
METRICS = COUNT_METRICS + tuple(LATENCY_METRICS)
STREAMING_METRICS = ("flops_per_token", "state_bytes", "latency_per_token")
DEFAULT_SEQ = "64..1048576"
SWEEP = "_len"       # the one symbol every swept sequence dim becomes (no spec can name a dim `_len`)


# ------------------------------------------------------------------ results
class ComparePoint(BaseModel):
    seq: dict[str, int]
    values: dict[str, int | float | None]     # spec -> cost; None where the metric is undefined


class Crossover(BaseModel):
    """between[0] costs strictly more than between[1] at `seq`, and did not
    at the length below it (`before`: the values there; `at`: at `seq`)."""

    between: list[str]
    seq: dict[str, int]
    before: dict[str, int | float]
    at: dict[str, int | float]


class Comparison(BaseModel):
    metric: str
    specs: list[str]
    points: list[ComparePoint]
    crossovers: list[Crossover]
    notes: list[str] = []
    swept: list[str] = []          # the sequence dims set to each length
    fixed: dict[str, int] = {}     # dims held at one length (named --seq)
    batch: int = 1
    dtype: str = "float32"
    optimizer: str = "adam"
    hw: str | None = None
    parallel: str | None = None    # train_memory per device under this layout
    recompute: str = "none"

    def to_json(self) -> str:
        """The `--json` object: exactly metric, specs, points, crossovers."""
        obj = {"metric": self.metric, "specs": self.specs,
               "points": [p.model_dump() for p in self.points],
               "crossovers": [{"between": c.between, "seq": c.seq} for c in self.crossovers]}
        return json.dumps(obj, separators=(",", ":"))


# ------------------------------------------------------------------ API
def compare(specs, metric: str = "flops_train", seq=None, batch: int = 1, dtype: str = "float32",
            optimizer: str = "adam", hw=None, parallel=None, recompute: str = "none") -> Comparison:
    """Compare models on one metric over a sweep of lengths.

    specs: paths (`FILE.seq`: all its models, `FILE.seq:MODEL`: one) or
    ModelGraphs. seq: None (64..2**20, powers of two), an int or a list of
    ints (every sequence dim), or {dim: int | [ints]} with at most one list
    (the swept dim). hw: a profile name or file, or a HardwareProfile; needed
    by (and only by) the latency metrics. parallel: a layout
    ("dp=8,tp=2,...", seqdsl.cost.parallel) makes train_memory the training
    peak of the most loaded device (batch: one micro-batch), with recompute."""
    metric = _metric_name(metric)
    if parallel is not None and metric != "train_memory":
        raise UsageError(f"--parallel applies to --metric train_memory (the per-device training peak), "
                         f"not to {metric}")
    if recompute != "none" and parallel is None:
        raise UsageError(f"--recompute {recompute} applies to the per-device figures: add --parallel")
    profile = _profile(metric, hw)
    named = _load_specs(specs)
    if len(named) < 2:
        raise UsageError(f"compare needs at least two models, got {len(named)}"
                         + (f" ({named[0][0]})" if named else ""))
    swept, lengths, fixed = _sweep(seq, [g for _, g in named])
    ests = {name: estimate(graph, seq=[_point(graph, swept, fixed, n) for n in lengths], batch=batch,
                           dtype=dtype, optimizer=optimizer, parallel=parallel, recompute=recompute)
            for name, graph in named}  # validates the args
    raw: dict[str, object] = {}     # latency: the roofline's expressions, before substitution
    if metric in LATENCY_METRICS:
        raw = {name: latency_exprs(graph, profile, dtype)[LATENCY_METRICS[metric]] for name, graph in named}
    scale = _latency_scale(e for e in raw.values() if e is not None)
    notes: list[str] = []
    exprs: dict[str, object] = {}
    for name, graph in named:
        est = ests[name]
        exprs[name] = _metric_expr(graph, metric, batch, dtype, optimizer, swept, fixed, raw.get(name), scale,
                                   None if parallel is None else parallel_cost(compiled(graph, dtype), parallel,
                                                                               optimizer, recompute))
        if exprs[name] is None:
            notes.append(f"{name}: no {metric}, it cannot stream: {est.streaming_blocker}")
        for n, p in zip(lengths, est.points):
            if p.warnings:
                notes.append(f"{name}: from {seq_text(_label(swept, fixed, n))} on, " + "; ".join(p.warnings))
                break
    names = [n for n, _ in named]
    evals = {n: (None if e is None else _evaluator(e)) for n, e in exprs.items()}
    points = [ComparePoint(seq=_label(swept, fixed, n),
                           values={s: (None if evals[s] is None else _reported(evals[s](n), scale))
                                   for s in names})
              for n in lengths]
    crossovers = _crossovers(names, exprs, evals, swept, fixed, min(lengths), max(lengths), scale)
    return Comparison(metric=metric, specs=names, points=points, crossovers=crossovers, notes=notes,
                      swept=list(swept), fixed=fixed, batch=batch, dtype=dtype, optimizer=optimizer,
                      hw=None if profile is None else profile.name,
                      parallel=None if parallel is None else str(parse_parallel(parallel)), recompute=recompute)


def _metric_name(metric: str) -> str:
    metric = ALIASES.get(metric, metric)
    if metric not in METRICS:
        raise UsageError(f"unknown metric '{metric}': use {', '.join(METRICS)} (latency = latency_train)")
    return metric


def _profile(metric: str, hw):
    if metric in LATENCY_METRICS:
        if hw is None:
            raise UsageError(f"--metric {metric} needs a hardware profile: pass --hw h100 | h200 | a100 | cpu | FILE")
        return hw if isinstance(hw, HardwareProfile) else load_profile(str(hw))
    if hw is not None:
        raise UsageError(f"--hw applies to the latency metrics only, not to {metric}")
    return None


def _load_specs(specs) -> list[tuple[str, ModelGraph]]:
    """(display name, model) for each model named. `FILE.seq` means all its
    models, `FILE.seq:MODEL` one of them; names collide -> `stem:model`."""
    if isinstance(specs, (str, Path, ModelGraph)):
        specs = [specs]
    found: list[tuple[str, ModelGraph]] = []   # (file stem or "", model)
    for spec in specs:
        if isinstance(spec, ModelGraph):
            found.append(("", spec))
            continue
        path, model = split_model_path(str(spec))
        program = load(path)
        stem = Path(path).stem
        graphs = [program.model(model)] if model else list(program.models.values())
        found.extend((stem, g) for g in graphs)
    out, used = [], set()
    counts = {}
    for _, g in found:
        counts[g.name] = counts.get(g.name, 0) + 1
    for stem, g in found:
        name = g.name if counts[g.name] == 1 else f"{stem}:{g.name}"
        if name in used:
            raise UsageError(f"model '{name}' is given twice")
        used.add(name)
        out.append((name, g))
    return out


def _sweep(seq, graphs: list[ModelGraph]) -> tuple[tuple[str, ...], list[int], dict[str, int]]:
    """(swept dims, lengths, fixed dims) from the `seq` argument (see compare)."""
    all_dims = tuple(dict.fromkeys(d for g in graphs for d in g.seq_symbols))
    if not all_dims:
        raise UsageError("none of the models has a sequence dim to sweep")
    if seq is None:
        seq = parse_seq(DEFAULT_SEQ, ())
    if isinstance(seq, int) and not isinstance(seq, bool):
        seq = [seq]
    if isinstance(seq, dict):
        for g in graphs:
            if set(g.seq_symbols) != set(seq):
                have = "; ".join(f"{g.name}: {', '.join(g.seq_symbols) or 'none'}" for g in graphs)
                raise UsageError(f"--seq names dims {', '.join(seq)}, but the models' sequence dims differ "
                                 f"({have}): name exactly the dims they all have, or give bare lengths, "
                                 "which apply to every sequence dim")
        ranged = [d for d, v in seq.items() if isinstance(v, list)]
        if len(ranged) > 1:
            raise UsageError(f"--seq sweeps {' and '.join(ranged)}: sweep one dim, hold the others")
        swept = ranged[0] if ranged else next(iter(seq))
        lengths = seq[swept] if ranged else [seq[swept]]
        fixed = {d: v for d, v in seq.items() if d != swept}
        for d, v in fixed.items():
            _check_length(v, d)
        out = (swept,), list(lengths), fixed
    elif isinstance(seq, list):
        out = all_dims, list(seq), {}
    else:
        raise UsageError(f"seq must be a length, a list of lengths or {{dim: length}}, got {seq!r}")
    if not out[1]:
        raise UsageError("--seq gives no lengths")
    for v in out[1]:
        _check_length(v, "length")
    out[1].sort()
    return out[0], list(dict.fromkeys(out[1])), out[2]


def _check_length(v, what: str) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_LENGTH:
        raise UsageError(f"{what} {v!r} must be an integer from 1 to {MAX_LENGTH:.0e}")


def _point(graph: ModelGraph, swept, fixed, n: int) -> dict[str, int]:
    """The model's {dim: length} at sweep length n."""
    return {d: (n if d in swept else fixed[d]) for d in graph.seq_symbols}


def _label(swept, fixed, n: int) -> dict[str, int]:
    """A point's `seq` as reported: every swept dim at n, the held dims."""
    return {**{d: n for d in swept}, **fixed}


# ------------------------------------------------------------------ closed forms
def _metric_expr(graph: ModelGraph, metric: str, batch: int, dtype: str, optimizer: str, swept, fixed,
                 latency=None, scale: int = 1, per_device=None):
    """The metric as an expression of SWEEP alone (batch and held dims
    substituted), or None where it is undefined (the model cannot stream).
    Counts are rounded up as seqdsl.estimate rounds them (amortised strided
    steps); a latency (`latency`: the roofline expression) is in seconds·scale."""
    c = compiled(graph, dtype).cost
    env = {dim_symbol(d): (dim_symbol(SWEEP) if d in swept else sympy.Integer(fixed[d]))
           for d in graph.seq_symbols}
    if graph.batch_symbol:
        env[dim_symbol(graph.batch_symbol)] = sympy.Integer(batch)
    if metric in LATENCY_METRICS:
        expr = None if latency is None else _substitute(sympy.sympify(latency), env, scale)
    elif metric == "train_memory" and per_device is not None:
        stages = [p.xreplace(env) for p in per_device.peak_exprs()]
        expr = stages[0] if len(stages) == 1 else sympy.Max(*stages, evaluate=False)
    elif metric == "train_memory":
        weights = graph.params * DTYPE_BYTES[dtype]
        expr = sympy.ceiling(2 * weights + optimizer_bytes(graph.params, dtype, optimizer)
                             + c.activation_bytes.xreplace(env))
    elif metric == "inference_peak":
        # Max built unevaluated from substituted candidates: sympy's pairwise
        # comparison of the candidates costs seconds and decides nothing we need
        expr = sympy.ceiling(sympy.Max(*[p.xreplace(env) for p in c.inference_peak], evaluate=False))
    else:
        expr = getattr(c, metric)
        expr = None if expr is None else sympy.ceiling(sympy.sympify(expr).xreplace(env))
    if expr is None:
        return None
    left = {s.name for s in expr.free_symbols} - {SWEEP}
    if left:
        raise UsageError(f"model '{graph.name}': {metric} depends on {', '.join(sorted(left))}, "
                         "which is neither a sequence dim nor the batch")
    return expr


def _latency_scale(exprs) -> int:
    """The least K that makes K·(every float constant) an integer: latency
    expressions carry float constants (1/peak, 1/bandwidth, step latency);
    scaled by K and made exact, they evaluate in Python ints, fast and exactly.
    A common positive factor changes no ranking."""
    k = 1
    for e in exprs:
        for f in sympy.sympify(e).atoms(sympy.Float):
            k = math.lcm(k, int(sympy.Rational(f).q))
    return k


def _substitute(e, env: dict, scale: int):
    """scale·e with env substituted and floats made exact rationals, rebuilt
    without re-evaluating Max/Min (sympy's argument comparison is slow)."""
    if not e.has(sympy.Max, sympy.Min, sympy.Piecewise):
        e = e.xreplace({**env, **{f: sympy.Rational(f) for f in e.atoms(sympy.Float)}})
        return scale * e
    if e.is_Add:
        return sympy.Add(*[_substitute(a, env, scale) for a in e.args])
    if isinstance(e, (sympy.Max, sympy.Min)):
        return type(e)(*[_substitute(a, env, scale) for a in e.args], evaluate=False)
    if e.is_Mul:
        coeff, rest = e.as_coeff_Mul()
        return sympy.Rational(coeff) * scale * sympy.Mul(*[_substitute(a, env, 1) for a in sympy.Mul.make_args(rest)])
    if isinstance(e, sympy.Piecewise):
        return sympy.Piecewise(*[(_substitute(v, env, scale), c.xreplace(env)) for v, c in e.args])
    raise UsageError(f"cannot evaluate {type(e).__name__} in a latency expression")


def _evaluator(expr):
    """n -> the exact value at sweep length n (an int or a Fraction)."""
    fn = compile_expr(expr)
    return lambda n: fn({SWEEP: n})


def _reported(v, scale: int):
    """An exact value as reported: an int, or float seconds for a latency
    (whose expression is scaled by `scale`)."""
    if scale != 1:
        return float(Fraction(v) / scale)
    if isinstance(v, Fraction):
        return v.numerator if v.denominator == 1 else float(v)
    return v


def _crossovers(names, exprs, evals, swept, fixed, lo: int, hi: int, scale: int) -> list[Crossover]:
    out = []
    for a, b in itertools.combinations(names, 2):
        if exprs[a] is None or exprs[b] is None or lo == hi:
            continue
        for n in crossings(exprs[a], exprs[b], SWEEP, lo, hi):
            va, vb = evals[a](n), evals[b](n)
            hi_name, lo_name = (a, b) if va > vb else (b, a)
            out.append(Crossover(between=[hi_name, lo_name], seq=_label(swept, fixed, n),
                                 before={s: _reported(evals[s](n - 1), scale) for s in (hi_name, lo_name)},
                                 at={s: _reported(evals[s](n), scale) for s in (hi_name, lo_name)}))
    order = {n: i for i, n in enumerate(names)}
    out.sort(key=lambda c: (c.seq[swept[0]], sorted(order[s] for s in c.between)))
    return out


def seq_text(seq: dict[str, int]) -> str:
    """`T = 1,024`, `S = T = 1,024`, `T = 1,024 (S = 512)`: equal lengths share one `=`."""
    by_value: dict[int, list[str]] = {}
    for d, v in seq.items():
        by_value.setdefault(v, []).append(d)
    parts = [" = ".join(dims) + f" = {v:,}" for v, dims in by_value.items()]
    return parts[0] + (f" ({', '.join(parts[1:])})" if len(parts) > 1 else "")
