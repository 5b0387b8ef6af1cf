"""`seqdsl bench SPEC --seq ...`: real latency and memory of the built module
beside the roofline's predictions (seqdsl.backend.bench does the work)."""
from __future__ import annotations

import argparse
import json
import sys

from ..backend.bench import bench, check_bench_args
from ..backend.verify import check_memory
from ..check.elaborate import load
from ..cost.estimate import resolve_points
from ..cost.hardware import load_profile
from ..cost.lengths import parse_int, parse_seq
from ..units import human_bytes, human_seconds
from .format import grid


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure forward / training-step latency and peak memory of the module")
    p.add_argument("spec", help="path to a .seq file")
    p.add_argument("--model", help="which model, when the file defines several")
    p.add_argument("--seq", required=True, help="lengths: 64,1024 | 64..4096 (powers of two) | T=1024,S=256 | T=64..1024,S=256")
    p.add_argument("--batch", default="1", help="batch size (default 1)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile the module first (--no-compile: eager, the default)")
    p.add_argument("--backend", default="inductor", help="torch.compile backend: inductor | eager | aot_eager")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")
    p.add_argument("--reps", default="5", help="timed repetitions per figure, median reported (default 5)")
    p.add_argument("--hw", help="hardware profile for predicted latency (needs seqdsl.cost.roofline): h100 | ... | FILE")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--force", action="store_true",
                   help="run even when the estimated memory is past half of what is available")


def _progress(done: int, total: int, label: str) -> None:
    """A one-line progress bar on stderr, redrawn in place."""
    width = 24
    filled = width * done // total
    end = "\n" if done == total else ""
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label:<24}{end}")
    sys.stderr.flush()


def run(args) -> int:
    """Entry point of `seqdsl bench`."""
    batch = parse_int(args.batch, "--batch")
    reps = parse_int(args.reps, "--reps")
    check_bench_args(reps, args.backend)     # before the spec is read
    if args.hw:
        load_profile(args.hw)            # an unknown name or a bad file: UsageError
    graph = load(args.spec).model(args.model)
    points = resolve_points(graph, parse_seq(args.seq, graph.seq_symbols))
    check_memory(graph, points, batch, args.dtype, args.device, args.force, "bench")
    result = bench(graph, points, batch=batch, reps=reps, device=args.device, dtype=args.dtype,
                   compile=args.compile, backend=args.backend, hw=args.hw,
                   progress=lambda i, n, point: _progress(i, n, "done" if point is None else _label(point)))
    print(json.dumps(result, separators=(",", ":")) if args.json else table(result))
    return 0


def _label(seq: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in seq.items())


def table(result: dict) -> str:
    predicted = any("forward_pred_s" in r for r in result["points"])
    head = ["seq", "batch", "forward", "train step", "train peak", "infer peak"]
    if predicted:
        head += ["fwd pred", "ratio", "train pred", "ratio"]
    body = []
    for r in result["points"]:
        row = [_label(r["seq"]), str(r["batch"]), human_seconds(r["forward_s"]), human_seconds(r["train_s"]),
               human_bytes(r["peak_bytes"]), human_bytes(r["inference_peak_bytes"])]
        if predicted:
            row += [human_seconds(r["forward_pred_s"]), f"{r['forward_ratio']:.2f}", human_seconds(r["train_pred_s"]),
                    f"{r['train_ratio']:.2f}"]
        body.append(row)
    how = f"compiled ({result['backend']})" if result["compile"] else "eager"
    return f"bench {result['model']} on {result['device']}, {result['dtype']}, {how}\n" + grid(head, body)
