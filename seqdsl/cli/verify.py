"""`seqdsl verify SPEC`: the built module measured against the estimate
(seqdsl.backend.verify does the work; torch loads only when it runs)."""
from __future__ import annotations

import json
import sys

from ..check.elaborate import load
from ..cost.hardware import load_profile
from ..cost.lengths import parse_int, parse_seq
from ..errors import UsageError
from ..backend.verify import DEFAULT_SEQ, TOLERANCES, Row, VerifyReport, _check_device, _torch_dtype, verify
from ..units import human_bytes, human_flops
from .format import grid, seq_label


def add_parser(sub) -> None:
    p = sub.add_parser("verify", help="build the module, measure params/FLOPs/memory, compare with the estimate")
    p.add_argument("spec", help="path to a .seq file")
    p.add_argument("--model", help="which model, when the file defines several")
    p.add_argument("--seq", help="lengths, as for compile --estimate (default 48,64,96)")
    p.add_argument("--batch", default="2", help="batch size (default 2)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")
    p.add_argument("--tolerance", action="append", default=[], metavar="FIGURE=FRACTION",
                   help=f"override a tolerance, e.g. activation_bytes=0.2 (figures: {', '.join(TOLERANCES)})")
    p.add_argument("--hw", help="hardware profile for the predicted latency on cuda (default: from the device name)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--force", action="store_true",
                   help="measure even when the estimated memory is past half of what is available")


def parse_tolerances(items) -> dict[str, float]:
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or name not in TOLERANCES:
            raise UsageError(f"--tolerance '{item}' is not FIGURE=FRACTION with FIGURE one of {', '.join(TOLERANCES)}")
        try:
            out[name] = float(value)
        except ValueError:
            raise UsageError(f"--tolerance {name}: '{value}' is not a number") from None
        if not 0 <= out[name] < 10:
            raise UsageError(f"--tolerance {name}: {out[name]} must be a fraction from 0 to 10")
    return out


def run(args) -> int:
    """Entry point of `seqdsl verify`: exit 0 when every figure is within
    tolerance, 1 otherwise (the failing figures are named on stderr)."""
    batch = parse_int(args.batch, "--batch")
    tolerances = parse_tolerances(args.tolerance)
    _check_device(args.device)
    _torch_dtype(args.dtype)
    if args.hw:
        load_profile(args.hw)            # an unknown name or a bad file: UsageError
    graph = load(args.spec).model(args.model)
    seq = parse_seq(args.seq, graph.seq_symbols) or list(DEFAULT_SEQ)
    report = verify(graph, seq=seq, batch=batch, device=args.device, dtype=args.dtype, tolerances=tolerances,
                    hw=args.hw, force=args.force)     # refuses a run past the available memory first
    if args.json:
        print(json.dumps({**report.model_dump(), "ok": report.ok}, separators=(",", ":")))
    else:
        print(table(report))
    for r in report.failed:
        where = "" if r.seq is None else " at " + ",".join(f"{k}={v}" for k, v in r.seq.items())
        print(f"seqdsl verify: {r.figure}{where}: estimate {r.estimate:,} vs measured {r.measured:,} "
              f"(ratio {_ratio(r)}), outside the {100 * r.tolerance:g}% tolerance", file=sys.stderr)
    return 0 if report.ok else 1


def _ratio(r: Row) -> str:
    return "-" if r.ratio is None else f"{r.ratio:.4f}"


def _value(figure: str, v) -> str:
    if v is None:
        return "-"
    if figure.endswith("_bytes"):
        return f"{human_bytes(v)} ({v:,})"
    if figure.startswith("flops"):
        return f"{human_flops(v)} ({v:,})"
    if figure == "latency_s":
        return f"{v * 1e3:.3f} ms"
    return f"{v:,}"


def table(report: VerifyReport) -> str:
    head = ["figure", "seq", "estimate", "measured", "ratio", "tolerance", "result"]
    body = [[r.figure, "-" if r.seq is None else seq_label(r.seq), _value(r.figure, r.estimate),
             _value(r.figure, r.measured), _ratio(r),
             "info" if r.tolerance is None else f"{100 * r.tolerance:g}%", "ok" if r.ok else "FAIL"]
            for r in report.rows]
    verdict = "all figures within tolerance" if report.ok else f"{len(report.failed)} figure(s) outside tolerance"
    title = f"verify {report.model} on {report.device}, batch {report.batch}, {report.dtype}: {verdict}"
    return title + "\n" + grid(head, body)
