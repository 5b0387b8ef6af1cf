"""`seqdsl compile SPEC --estimate`: the cost table, JSON, per-layer and formulas.

Rendering and the cached path (`run_cached`: the closed forms from the
per-user cache, seqdsl/cli/cache.py) import neither sympy, lark nor
pydantic; deriving the forms (`run`) imports the front end, sympy and
pydantic: never torch.
"""
from __future__ import annotations

import json
import os

from ..cost.cached import OPTIMIZERS, forms_entry, profile_entry
from ..cost.lengths import parse_int, parse_seq
from ..errors import UsageError
from ..graph.exprdata import Unsupported
from ..units import human_bytes, human_flops, human_seconds
from . import cache
from .format import grid, seq_label

JSON_KEYS = ("seq", "batch", "dtype", "flops_forward", "flops_train", "flops_per_token",
             "weights_bytes", "grads_bytes", "optimizer_bytes", "activation_bytes",
             "training_bytes", "inference_peak_bytes", "state_bytes", "sequential_depth", "warnings")
LATENCY_KEYS = ("latency_forward_s", "latency_train_s", "latency_per_token_s")   # with --hw


def run_cached(argv: list[str]) -> int | None:
    """`seqdsl compile SPEC --estimate ...` answered from the cache: print and
    return 0; None (nothing printed) when it must be derived (`run`)."""
    hit = cache.cached_report(argv)
    if hit is None:
        return None
    rep, as_json = hit
    print(to_json(rep) if as_json else render(rep))
    return 0


def run(args) -> int:
    """Entry point of `seqdsl compile SPEC --estimate`: one Report, rendered
    once, and its closed forms kept in the cache for the next run."""
    from ..check.elaborate import load   # lazy: lark, sympy, pydantic (run_cached needs none)
    from ..cost.hardware import load_profile   # lazy: pydantic
    from ..cost.parallel import check_recompute, parse_bytes, parse_parallel   # lazy: sympy
    from ..cost.report import report   # lazy: sympy
    from ..layers.costs import DTYPE_BYTES   # lazy: sympy
    if args.output:
        raise UsageError("--estimate and -o are separate commands: run them one at a time")
    if args.dtype not in DTYPE_BYTES:
        raise UsageError(f"unknown --dtype '{args.dtype}': use float32, bfloat16 or float16")
    if args.optimizer not in OPTIMIZERS:
        raise UsageError(f"unknown --optimizer '{args.optimizer}': use adam, sgd or none")
    batch = parse_int(args.batch, "--batch")
    profile = load_profile(args.hw) if args.hw else None
    layout = parse_parallel(args.parallel) if args.parallel is not None else None
    if args.recompute != "none" and layout is None:
        raise UsageError(f"--recompute {args.recompute} applies to the per-device figures: add --parallel "
                         f"(e.g. --parallel dp=8)")
    check_recompute(args.recompute)
    budget = parse_bytes(args.fit) if args.fit is not None else None
    slot, imports = _slot(args)
    model = load(args.spec).model(args.model)
    seq = parse_seq(args.seq, model.seq_symbols)
    rep = report(model, seq, batch=batch, dtype=args.dtype, optimizer=args.optimizer, hw=profile,
                 per_layer=args.per_layer, formulas=args.formula, parallel=layout,
                 recompute=args.recompute, fit=budget)
    print(to_json(rep) if args.json else render(rep))
    if slot is not None and imports is not None:
        _remember(slot, imports, args, model, rep, profile)
    return 0


def _slot(args):
    """The cache slot of this run and the hashes of the files the spec
    imports, read before the spec is loaded (None, None: no caching)."""
    if cache.disabled(args.no_cache):
        return None, None
    from ..check.elaborate import spec_files   # lazy: lark
    slot = cache.Slot(args.spec, args.model, args.dtype)
    if not slot.ok:
        return None, None
    # only a spec with an import statement has files to follow (parsing a large spec twice is not free)
    imports = spec_files(args.spec)[1:] if b"import" in slot.data else []
    return slot, cache.file_hashes(imports)


def _remember(slot, imports, args, model, rep, profile) -> None:
    """Keep this run's closed forms, with the parts an earlier entry of the
    same key holds (another profile, the formulas). Never fails the command."""
    from ..cost.estimate import compiled   # lazy: sympy
    from ..cost.roofline import compiled_ops   # lazy: sympy
    try:
        old = slot.load() or {"profiles": {}, "forms": {"roofline": None, "formulas": None}}
        formulas = rep.formulas if rep.formulas is not None else old["forms"]["formulas"]
        ops = compiled_ops(model, args.dtype) if profile is not None or old["forms"]["roofline"] else None
        forms = forms_entry(model, compiled(model, args.dtype).cost, rep.estimate.streaming_blocker,
                            ops, formulas)
        profiles = dict(old["profiles"])
        if profile is not None:
            digest = cache.profile_digest(args.hw)
            if digest is not None:
                profiles[digest] = profile_entry(profile, args.dtype, forms["roofline"]["floors"])
        slot.save(forms, imports, profiles)
    except Unsupported:
        pass
    except Exception:  # noqa: BLE001 - the estimate is printed; a cache that cannot keep it is no error
        if os.environ.get("SEQDSL_DEBUG"):
            raise


# ------------------------------------------------------------------ rendering
def render(rep) -> str:
    """The text tables: the estimate, then the per-layer table and closed forms when present."""
    parts = [table(rep.estimate)]
    if rep.estimate.parallel is not None:
        parts.append(per_device_table(rep.estimate))
    if rep.fit is not None:
        parts.append(fit_text(rep.fit))
    if rep.layers is not None:
        parts.append(per_layer_table(rep.model, rep.layers, rep.estimate.points[-1]))
    if rep.formulas is not None:
        parts.append(formulas(rep.model, rep.formulas))
    return "\n\n".join(parts)


def to_json(rep) -> str:
    est = rep.estimate
    keys = JSON_KEYS + (LATENCY_KEYS if est.hw is not None else ())
    obj = {"model": est.model, "params": est.params, "dtype": est.dtype, "optimizer": est.optimizer,
           "streaming": est.streaming, "streaming_blocker": est.streaming_blocker,
           "stream_context": list(est.stream_context),
           "points": [{k: getattr(p, k) for k in keys} for p in est.points]}
    if est.hw is not None:
        obj["hw"] = est.hw
    if est.parallel is not None:
        obj["parallel"], obj["recompute"] = est.parallel, est.recompute
        for p, q in zip(obj["points"], est.points):
            p["per_device"] = q.per_device.model_dump()
    if rep.fit is not None:
        f = rep.fit
        obj["fit"] = {"budget_bytes": f.budget, "seq": f.seq, "batch": f.batch, "at_seq": f.at_seq,
                      "binding": f.binding, "per_device": f.per_device.model_dump()}
    if rep.layers is not None:
        obj["layers"] = rep.layers
    if rep.formulas is not None:
        obj["formulas"] = rep.formulas
    return json.dumps(obj, separators=(",", ":"))


def table(est) -> str:
    head = ["seq", "FLOPs fwd", "FLOPs train", "FLOPs/token", "weights", "train mem",
            "infer peak", "gen state", "depth"]
    rows = [[seq_label(p.seq), human_flops(p.flops_forward), human_flops(p.flops_train),
             human_flops(p.flops_per_token), human_bytes(p.weights_bytes), human_bytes(p.training_bytes),
             human_bytes(p.inference_peak_bytes), human_bytes(p.state_bytes), f"{p.sequential_depth:,}"]
            for p in est.points]
    if est.hw is not None:
        head += ["time fwd", "time train", "time/token"]
        for row, p in zip(rows, est.points):
            row += [human_seconds(p.latency_forward_s), human_seconds(p.latency_train_s),
                    human_seconds(p.latency_per_token_s)]
    p0 = est.points[0]
    title = (f"model {est.model}: {est.params:,} parameters, batch {p0.batch}, {est.dtype}, "
             f"optimizer {est.optimizer}")
    if est.hw is not None:
        title += f", roofline on {est.hw} (train = forward + backward, no optimizer step)"
    lines = [title, grid(head, rows)]
    for p in est.points:
        if p.warnings:
            lines.append(f"note: from {seq_label(p.seq)} on, " + "; ".join(p.warnings))
            break
    if not est.streaming:
        lines.append(f"no generation figures: {est.streaming_blocker}")
    elif est.stream_context:
        lines.append(f"generation figures: {', '.join(est.stream_context)} given once (its layers run at "
                     f"init_state, what the streamed layers read of them kept in the state); the rest streamed")
    return "\n".join(lines)


def per_layer_table(model, rows: list[dict], point) -> str:
    head = ["layer", "kind", "line", "output shape", "params", "FLOPs fwd", "share"]
    body = [[r["name"], r["kind"], str(r["line"] or ""), r["output"], f"{r['params']:,}",
             human_flops(r["flops"]), f"{100 * r['share']:.1f}%"] for r in rows]
    body.append(["total", "", "", "", f"{model.params:,}", human_flops(point.flops_forward), "100.0%"])
    if rows and "latency_forward_s" in rows[0]:
        head += ["time fwd", "bound"]
        for line, r in zip(body, rows):
            line += [human_seconds(r["latency_forward_s"]), r["bound"]]
        body[-1] += [human_seconds(point.latency_forward_s), ""]
    return f"per layer at {seq_label(point.seq)} (batch {point.batch}):\n" + grid(head, body)


def formulas(model, fm: dict) -> str:
    lines = [f"closed forms of model {model.name} (dims: {', '.join(model.symbols)}; "
             f"weights {model.params:,} parameters):"]
    width = max(len(k) for k in fm)
    for k, v in fm.items():
        lines.append(f"  {k:<{width}}  " + ("-  (cannot stream)" if v is None else v["leading"]))
    return "\n".join(lines)


def per_device_table(est) -> str:
    """The most loaded device at each length: memory by term, communication, time."""
    head = ["seq", "stage", "weights", "grads", "optimizer", "gathered", "activations", "peak", "comm/step",
            "gen state"]
    timed = est.hw is not None
    if timed:
        head += ["compute", "comm", "step"]
    rows = []
    for p in est.points:
        d = p.per_device
        row = [seq_label(p.seq), str(d.stage), human_bytes(d.weights_bytes), human_bytes(d.grads_bytes),
               human_bytes(d.optimizer_bytes), human_bytes(d.gathered_bytes), human_bytes(d.activation_bytes),
               human_bytes(d.peak_bytes),
               human_bytes(d.comm_bytes), human_bytes(d.state_bytes)]
        if timed:
            row += [human_seconds(d.compute_time_s), human_seconds(d.comm_time_s), human_seconds(d.step_time_s)]
        rows.append(row)
    title = (f"per device, the most loaded of {est.parallel} (micro-batch {est.points[0].batch}, "
             f"recompute {est.recompute})")
    if timed:
        title += f"; step time on {est.hw}: compute with the pipeline bubble + communication, not overlapped"
    last = est.points[-1].per_device
    by = ", ".join(f"{k} {human_bytes(v)}" for k, v in last.comm.items()) or "none"
    return title + "\n" + grid(head, rows) + f"\ncommunication per step at {seq_label(est.points[-1].seq)}: {by}"


def fit_text(f) -> str:
    budget = human_bytes(f.budget)
    if f.seq is None and f.batch is None:
        return (f"fit {budget}: nothing fits, not even length 1 at batch 1: the {f.binding} alone take "
                f"{human_bytes(getattr(f.per_device, f.binding.replace('activations', 'activation') + '_bytes'))}")
    seq = "no length fits at this batch" if f.seq is None else f"largest length {f.seq:,}"
    batch = "no batch fits" if f.batch is None else f"largest micro-batch {f.batch:,} at {seq_label(f.at_seq)}"
    return f"fit {budget} per device: {seq}; {batch}; the binding term is {f.binding}"
