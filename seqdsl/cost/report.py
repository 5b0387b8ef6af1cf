"""What `seqdsl compile --estimate` reports, computed once: the estimate at
each length, and on request the per-layer breakdown at the last length and
the closed forms. The CLI renders a `Report` as a table or JSON; it never
asks the cost model again."""
from __future__ import annotations

from dataclasses import dataclass

from ..graph.ir import ModelGraph
from ..graph.symbolic import compile_expr, fmt_dim
from .cached import layer_row
from .estimate import Estimate, _int, compiled, estimate, parallel_cost
from .hardware import HardwareProfile
from .model import leading_terms
from .parallel import Fit, ParallelError, fit as fit_memory
from .roofline import node_latency


@dataclass(frozen=True)
class Report:
    """What `compile --estimate` prints: the estimate and its optional parts."""

    model: ModelGraph
    estimate: Estimate
    layers: list[dict] | None = None      # per layer at the last length (per_layer=True)
    formulas: dict | None = None          # closed forms per figure (formulas=True)
    fit: Fit | None = None                # the largest length and batch that fit (fit=bytes, with parallel)


def report(model: ModelGraph, seq, batch: int = 1, dtype: str = "float32", optimizer: str = "adam",
           hw: HardwareProfile | None = None, per_layer: bool = False, formulas: bool = False,
           parallel=None, recompute: str = "none", fit: int | None = None) -> Report:
    """The estimate of `model` at `seq`, with the per-layer rows and closed
    forms when asked, from one compiled set of closed forms; with `parallel`
    the per-device figures, and with `fit` (bytes) the largest length and
    micro-batch that fit on the most loaded device."""
    if fit is not None and parallel is None:
        raise ParallelError("--fit answers for a layout: add --parallel (e.g. --parallel dp=8 for data "
                            "parallel only, or dp=1 for one device)")
    est = estimate(model, seq=seq, batch=batch, dtype=dtype, optimizer=optimizer, hw=hw, parallel=parallel,
                   recompute=recompute)
    cc = compiled(model, dtype)
    last = est.points[-1]
    answer = None
    if fit is not None:
        answer = fit_memory(parallel_cost(cc, parallel, optimizer, recompute), fit, est.points[0].seq, batch)
    return Report(model, est,
                  layers=per_layer_rows(model, cc, last, last.batch, hw) if per_layer else None,
                  formulas=formula_map(model, cc) if formulas else None, fit=answer)


def per_layer_rows(model, cc, point, batch, profile=None) -> list[dict]:
    """One row per layer at `point`; with a hardware profile each row gains its
    roofline forward seconds and what bounds it (seqdsl.cost.roofline.node_latency)."""
    env = dict(point.seq)
    if model.batch_symbol:
        env[model.batch_symbol] = batch
    rows = []
    total = point.flops_forward or 1
    for n in cc.cost.nodes:
        if n.node.kind in ("input", "add"):
            continue
        rows.append(layer_row(n.node.name, n.node.kind, n.node.line,
                              [compile_expr(d)(env) for d in n.node.output.dims],
                              ", ".join(fmt_dim(d) for d in n.node.output.dims), n.node.params,
                              _int(n.value("flops", env)), total))
    if profile is not None:
        times = node_latency(model, profile, cc.cost.dtype, point.seq, batch)
        for r in rows:
            r["latency_forward_s"], r["bound"] = times.get(r["name"], (0.0, "-"))
    return rows


def formula_map(model, cc) -> dict:
    syms = list(model.symbols)
    c = cc.cost
    out = {"flops_forward": c.flops_forward, "flops_train": c.flops_train,
           "flops_per_token": c.flops_per_token, "activation_bytes": c.activation_bytes,
           "state_bytes": c.state_bytes, "sequential_depth": c.sequential_depth}
    res = {}
    for k, v in out.items():
        if v is None:
            res[k] = None
            continue
        res[k] = {"leading": leading_terms(v, syms), "exact": str(v).replace("ceiling", "ceil")}
    peaks = [leading_terms(p, syms) for p in c.inference_peak]
    res["inference_peak_bytes"] = {"leading": "max over the live sets; largest: " + _largest(c, syms),
                                   "exact": f"Max of {len(peaks)} live-set sums"}
    return res


def _largest(c, syms) -> str:
    probe = {s: 4096 for s in syms}
    best = max(c.inference_peak, key=lambda p: compile_expr(p)(probe))
    return leading_terms(best, syms)
