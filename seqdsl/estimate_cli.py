"""`seqdsl compile SPEC --estimate`: the cost table, JSON, per-layer and formulas.

Imports only the front end, sympy and pydantic: never torch.
"""
from __future__ import annotations

import json
import re

from .cli import UsageError

JSON_KEYS = ("seq", "batch", "dtype", "flops_forward", "flops_train", "flops_per_token",
             "weights_bytes", "grads_bytes", "optimizer_bytes", "activation_bytes",
             "training_bytes", "inference_peak_bytes", "state_bytes", "sequential_depth", "warnings")
LATENCY_KEYS = ("latency_forward_s", "latency_train_s", "latency_per_token_s")   # with --hw
_INT = re.compile(r"^[0-9][0-9_]*$")
MAX_POINTS = 100_000
MAX_INT = 10 ** 15           # a length or batch (seqdsl.estimate.MAX_LENGTH)


def parse_int(text: str, what: str) -> int:
    t = text.strip()
    if not _INT.match(t) and not re.match(r"^[0-9]+e[0-9]+$", t):
        raise UsageError(f"{what} '{text}' is not a positive integer")
    if len(t) > 40:
        raise UsageError(f"{what} '{text[:20]}...' is too long to be a length")
    if "e" in t:
        mantissa, _, exp = t.partition("e")
        if int(exp) > 15:
            raise UsageError(f"{what} '{text}' is past the largest length, {MAX_INT:.0e}")
        value = int(mantissa) * 10 ** int(exp)
    else:
        value = int(t.replace("_", ""))
    if value < 1:
        raise UsageError(f"{what} must be at least 1, got {value}")
    if value > MAX_INT:
        raise UsageError(f"{what} {value:,} is past the largest length, {MAX_INT:.0e}")
    return value


def parse_seq(text: str | None, dims: tuple[str, ...]):
    """`64,1024` (every sequence dim), `64..65536` (powers of two), `T=1024,S=256`.
    Returns a list of ints or of {dim: int}."""
    if text is None:
        return None
    text = text.strip()
    if not text:
        raise UsageError("--seq is empty")
    if "=" in text:
        point = {}
        for part in text.split(","):
            name, _, value = part.partition("=")
            name = name.strip()
            if not name.isidentifier():
                raise UsageError(f"--seq '{part}' is not DIM=LENGTH")
            if name not in dims:
                raise UsageError(f"--seq names dim '{name}', which the model does not have "
                                 f"(its sequence dims: {', '.join(dims) or 'none'})")
            if name in point:
                raise UsageError(f"--seq gives dim '{name}' twice")
            point[name] = parse_int(value, f"--seq {name}")
        missing = [d for d in dims if d not in point]
        if missing:
            raise UsageError(f"--seq gives no length for dim '{missing[0]}'")
        return [point]
    if ".." in text:
        lo_s, _, hi_s = text.partition("..")
        lo, hi = parse_int(lo_s, "--seq"), parse_int(hi_s, "--seq")
        if lo > hi:
            raise UsageError(f"--seq {text}: the range is empty")
        out, p = [], 1
        while p <= hi:
            if p >= lo:
                out.append(p)
            p *= 2
        if not out:
            raise UsageError(f"--seq {text} contains no power of two")
        return out
    parts = text.split(",")
    if len(parts) > MAX_POINTS:
        raise UsageError(f"--seq lists {len(parts)} lengths, past the limit of {MAX_POINTS}")
    return [parse_int(p, "--seq length") for p in parts]


def run(args) -> int:
    """Entry point of `seqdsl compile SPEC --estimate`."""
    if args.output:
        raise UsageError("--estimate and -o are separate commands: run them one at a time")
    from .cost import DTYPE_BYTES
    from .estimate import OPTIMIZERS
    if args.dtype not in DTYPE_BYTES:
        raise UsageError(f"unknown --dtype '{args.dtype}': use float32, bfloat16 or float16")
    if args.optimizer not in OPTIMIZERS:
        raise UsageError(f"unknown --optimizer '{args.optimizer}': use adam, sgd or none")
    batch = parse_int(args.batch, "--batch")
    profile = None
    if args.hw:
        from .hardware import load_profile
        profile = load_profile(args.hw)
    from .elaborate import load
    model = load(args.spec).model(args.model)
    seq = parse_seq(args.seq, model.seq_symbols)
    from .estimate import compiled, estimate
    est = estimate(model, seq=seq, batch=batch, dtype=args.dtype, optimizer=args.optimizer,
                   hw=profile)
    if args.json:
        print(to_json(est, model, compiled(model, args.dtype), args, profile))
        return 0
    print(table(est))
    if args.per_layer:
        print()
        print(per_layer_table(model, compiled(model, args.dtype), est.points[-1], batch, profile))
    if args.formula:
        print()
        print(formulas(model, compiled(model, args.dtype), args.optimizer))
    return 0


# ------------------------------------------------------------------ rendering
def to_json(est, model, cc, args, profile=None) -> str:
    keys = JSON_KEYS + (LATENCY_KEYS if est.hw is not None else ())
    obj = {"model": est.model, "params": est.params, "dtype": est.dtype, "optimizer": est.optimizer,
           "streaming": est.streaming, "streaming_blocker": est.streaming_blocker,
           "points": [{k: getattr(p, k) for k in keys} for p in est.points]}
    if est.hw is not None:
        obj["hw"] = est.hw
    if args.per_layer:
        obj["layers"] = per_layer_rows(model, cc, est.points[-1], est.points[-1].batch, profile)
    if args.formula:
        obj["formulas"] = formula_map(model, cc, args.optimizer)
    return json.dumps(obj, separators=(",", ":"))


def human_flops(v) -> str:
    if v is None:
        return "-"
    for unit, scale in (("E", 10 ** 18), ("P", 10 ** 15), ("T", 10 ** 12), ("G", 10 ** 9), ("M", 10 ** 6),
                        ("k", 10 ** 3)):
        if v >= scale:
            return f"{v / scale:.3g} {unit}"
    return str(v)


def human_bytes(v) -> str:
    if v is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if v < 1024 or unit == "PiB":
            if unit == "B":
                return f"{v:.0f} B"
            # 3 significant digits, but never "1.01e+03": 1000-1023 print whole
            return f"{v:.0f} {unit}" if v >= 999.5 else f"{v:.3g} {unit}"
        v /= 1024
    return str(v)  # pragma: no cover


def human_seconds(v) -> str:
    """Seconds in the unit that keeps 1-3 digits before the point: ns, µs, ms, s."""
    if v is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if v >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v / 1e-9:.3g} ns"


def _seq_label(seq: dict) -> str:
    values = set(seq.values())
    if len(values) == 1:
        return f"{next(iter(values)):,}"
    return ",".join(f"{k}={v}" for k, v in seq.items())


def table(est) -> str:
    head = ["seq", "FLOPs fwd", "FLOPs train", "FLOPs/token", "weights", "train mem",
            "infer peak", "gen state", "depth"]
    rows = [[_seq_label(p.seq), human_flops(p.flops_forward), human_flops(p.flops_train),
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
    lines = [title, _grid(head, rows)]
    for p in est.points:
        if p.warnings:
            lines.append(f"note: from {_seq_label(p.seq)} on, " + "; ".join(p.warnings))
            break
    if not est.streaming:
        lines.append(f"no generation figures: {est.streaming_blocker}")
    return "\n".join(lines)


def _grid(head, rows) -> str:
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    fmt = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])


def per_layer_rows(model, cc, point, batch, profile=None) -> list[dict]:
    """One row per layer at `point`; with a hardware profile each row gains its
    roofline forward seconds and what bounds it (seqdsl.roofline.node_latency)."""
    from .symbolic import compile_expr, fmt_dim
    env = dict(point.seq)
    if model.batch_symbol:
        env[model.batch_symbol] = batch
    from .estimate import _int
    rows = []
    total = point.flops_forward or 1
    for n in cc.cost.nodes:
        if n.node.kind in ("input", "add"):
            continue
        f = _int(compile_expr(n.cost.flops)(env))
        shape = "[" + ", ".join(str(_int(compile_expr(d)(env))) for d in n.node.output.dims) + "]"
        rows.append({"name": n.node.name, "kind": n.node.kind, "line": n.node.line, "output": shape,
                     "output_symbolic": ", ".join(fmt_dim(d) for d in n.node.output.dims),
                     "params": n.node.params, "flops": f, "share": f / total})
    if profile is not None:
        from .roofline import node_latency
        times = node_latency(model, profile, cc.cost.dtype, point.seq, batch)
        for r in rows:
            r["latency_forward_s"], r["bound"] = times.get(r["name"], (0.0, "-"))
    return rows


def per_layer_table(model, cc, point, batch, profile=None) -> str:
    rows = per_layer_rows(model, cc, point, batch, profile)
    head = ["layer", "kind", "line", "output shape", "params", "FLOPs fwd", "share"]
    body = [[r["name"], r["kind"], str(r["line"] or ""), r["output"], f"{r['params']:,}",
             human_flops(r["flops"]), f"{100 * r['share']:.1f}%"] for r in rows]
    body.append(["total", "", "", "", f"{model.params:,}", human_flops(point.flops_forward), "100.0%"])
    if profile is not None:
        head += ["time fwd", "bound"]
        for line, r in zip(body, rows):
            line += [human_seconds(r["latency_forward_s"]), r["bound"]]
        body[-1] += [human_seconds(point.latency_forward_s), ""]
    return f"per layer at {_seq_label(point.seq)} (batch {batch}):\n" + _grid(head, body)


def formula_map(model, cc, optimizer) -> dict:
    from .cost import leading_terms
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
    from .cost import leading_terms
    probe = {s: 4096 for s in syms}
    from .symbolic import compile_expr
    best = max(c.inference_peak, key=lambda p: compile_expr(p)(probe))
    return leading_terms(best, syms)


def formulas(model, cc, optimizer) -> str:
    fm = formula_map(model, cc, optimizer)
    lines = [f"closed forms of model {model.name} (dims: {', '.join(model.symbols)}; "
             f"weights {model.params:,} parameters):"]
    width = max(len(k) for k in fm)
    for k, v in fm.items():
        lines.append(f"  {k:<{width}}  " + ("-  (cannot stream)" if v is None else v["leading"]))
    return "\n".join(lines)
