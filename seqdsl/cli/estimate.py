"""`seqdsl compile SPEC --estimate`: the cost table, JSON, per-layer and formulas.

Imports only the front end, sympy and pydantic: never torch.
"""
from __future__ import annotations

import json
import re

from ..check.elaborate import load
from ..cost.estimate import OPTIMIZERS
from ..cost.hardware import load_profile
from ..cost.report import Report, report
from ..errors import UsageError
from ..layers.costs import DTYPE_BYTES

JSON_KEYS = ("seq", "batch", "dtype", "flops_forward", "flops_train", "flops_per_token",
             "weights_bytes", "grads_bytes", "optimizer_bytes", "activation_bytes",
             "training_bytes", "inference_peak_bytes", "state_bytes", "sequential_depth", "warnings")
LATENCY_KEYS = ("latency_forward_s", "latency_train_s", "latency_per_token_s")   # with --hw
_INT = re.compile(r"^[0-9][0-9_]*$")
MAX_POINTS = 100_000


def parse_int(text: str, what: str) -> int:
    t = text.strip()
    if not _INT.match(t) and not re.match(r"^[0-9]+e[0-9]+$", t):
        raise UsageError(f"{what} '{text}' is not a positive integer")
    value = int(float(t)) if "e" in t else int(t.replace("_", ""))
    if value < 1:
        raise UsageError(f"{what} must be at least 1, got {value}")
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
    """Entry point of `seqdsl compile SPEC --estimate`: one Report, rendered once."""
    if args.output:
        raise UsageError("--estimate and -o are separate commands: run them one at a time")
    if args.dtype not in DTYPE_BYTES:
        raise UsageError(f"unknown --dtype '{args.dtype}': use float32, bfloat16 or float16")
    if args.optimizer not in OPTIMIZERS:
        raise UsageError(f"unknown --optimizer '{args.optimizer}': use adam, sgd or none")
    batch = parse_int(args.batch, "--batch")
    profile = load_profile(args.hw) if args.hw else None
    model = load(args.spec).model(args.model)
    seq = parse_seq(args.seq, model.seq_symbols)
    rep = report(model, seq, batch=batch, dtype=args.dtype, optimizer=args.optimizer, hw=profile,
                 per_layer=args.per_layer, formulas=args.formula)
    print(to_json(rep) if args.json else render(rep))
    return 0


def render(rep: Report) -> str:
    """The text tables: the estimate, then the per-layer table and closed forms when present."""
    parts = [table(rep.estimate)]
    if rep.layers is not None:
        parts.append(per_layer_table(rep.model, rep.layers, rep.estimate.points[-1]))
    if rep.formulas is not None:
        parts.append(formulas(rep.model, rep.formulas))
    return "\n\n".join(parts)


# ------------------------------------------------------------------ rendering
def to_json(rep: Report) -> str:
    est = rep.estimate
    keys = JSON_KEYS + (LATENCY_KEYS if est.hw is not None else ())
    obj = {"model": est.model, "params": est.params, "dtype": est.dtype, "optimizer": est.optimizer,
           "streaming": est.streaming, "streaming_blocker": est.streaming_blocker,
           "points": [{k: getattr(p, k) for k in keys} for p in est.points]}
    if est.hw is not None:
        obj["hw"] = est.hw
    if rep.layers is not None:
        obj["layers"] = rep.layers
    if rep.formulas is not None:
        obj["formulas"] = rep.formulas
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
    return f"per layer at {_seq_label(point.seq)} (batch {point.batch}):\n" + _grid(head, body)


def formulas(model, fm: dict) -> str:
    lines = [f"closed forms of model {model.name} (dims: {', '.join(model.symbols)}; "
             f"weights {model.params:,} parameters):"]
    width = max(len(k) for k in fm)
    for k, v in fm.items():
        lines.append(f"  {k:<{width}}  " + ("-  (cannot stream)" if v is None else v["leading"]))
    return "\n".join(lines)
