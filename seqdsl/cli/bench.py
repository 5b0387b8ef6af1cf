"""`seqdsl bench SPEC --seq ...`: real latency and memory of the built module
beside the roofline's predictions (seqdsl.backend.bench does the work);
`--nproc N --parallel ...`: a real multi-process training run, per-rank memory
and step time beside the per-device estimate (seqdsl.backend.distributed)."""
from __future__ import annotations

import argparse
import json
import sys

from ..backend.bench import bench, check_bench_args
from ..backend.verify import check_memory
from ..check.elaborate import load
from ..cost.estimate import estimate, resolve_points
from ..cost.hardware import load_profile
from ..cost.lengths import parse_int, parse_seq
from ..cost.parallel import ParallelError, parse_parallel
from ..errors import UsageError
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
    p.add_argument("--nproc", help="train on N processes through torch.distributed.run (gloo on the CPU, "
                                   "NCCL on CUDA) and print per-rank memory beside the estimate")
    p.add_argument("--parallel", help="with --nproc: dp=N (DDP), dp=N,zero=3 (FSDP2, per block) or tp=N "
                                      "(default dp=NPROC)")
    p.add_argument("--recompute", default="none", help="with --nproc: none | full (each repeat copy recomputed)")
    p.add_argument("--steps", default="5", help="with --nproc: training steps (default 5; the first is not timed)")
    p.add_argument("--timeout", default="300", help="with --nproc: seconds before the workers are stopped "
                                                    "(default 300)")


def _progress(done: int, total: int, label: str) -> None:
    """A one-line progress bar on stderr, redrawn in place."""
    width = 24
    filled = width * done // total
    end = "\n" if done == total else ""
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label:<24}{end}")
    sys.stderr.flush()


def run(args) -> int:
    """Entry point of `seqdsl bench`."""
    if args.nproc is not None or args.parallel is not None or args.recompute != "none":
        return run_distributed(args)
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


# ------------------------------------------------------------------ --nproc
MODES = {"ddp": "DDP", "fsdp": "FSDP2 (fully_shard per block)", "tp": "tensor parallel (DTensor)"}
MAX_STEPS = 1000


def run_distributed(args) -> int:
    """`seqdsl bench SPEC --nproc N [--parallel ...] [--recompute ...]`."""
    from ..backend import distributed   # lazy: torch.distributed
    if args.nproc is None:
        raise UsageError("--parallel and --recompute need a multi-process run: add --nproc N (e.g. --nproc 2)")
    nproc = parse_int(args.nproc, "--nproc")
    batch = parse_int(args.batch, "--batch")
    steps = parse_int(args.steps, "--steps")
    timeout = parse_int(args.timeout, "--timeout")
    if not 2 <= steps <= MAX_STEPS:
        raise UsageError(f"--steps {steps}: give 2 to {MAX_STEPS} (the first step is a warm-up)")
    if args.compile:
        raise UsageError("--compile with --nproc: the multi-process run is eager; drop --compile")
    if args.dtype != "float32":
        raise UsageError(f"--dtype {args.dtype} with --nproc: the multi-process run is float32 (no mixed-precision "
                         f"policy yet); drop --dtype")
    if args.device not in ("cpu", "cuda"):
        raise UsageError(f"--device {args.device} with --nproc: use cpu (gloo) or cuda (NCCL)")
    if args.device == "cuda":
        import torch   # lazy: torch
        gpus = torch.cuda.device_count()
        if gpus < nproc:
            use = f"--nproc {gpus} or --device cpu" if gpus >= 2 else "--device cpu (gloo)"
            raise UsageError(f"--nproc {nproc} --device cuda: NCCL needs a GPU a process, and {gpus} "
                             f"{'is' if gpus == 1 else 'are'} visible: use {use}")
    layout = parse_parallel(args.parallel or f"dp={nproc}")
    mode = distributed.engine_mode(layout, nproc)
    recompute = distributed.check_engine_recompute(args.recompute)
    graph = load(args.spec).model(args.model)
    points = resolve_points(graph, parse_seq(args.seq, graph.seq_symbols))
    if len(points) != 1:
        raise UsageError(f"--seq {args.seq} gives {len(points)} lengths; --nproc runs one: give one value")
    est = estimate(graph, seq=points[0], batch=batch, dtype=args.dtype, parallel=layout,
                   recompute=recompute).points[0].per_device
    step_est, step_basis = _estimated_step(graph, points[0], batch, layout, recompute, args.hw)
    job = {"spec": args.spec, "model": graph.name if args.model else None, "seq": points[0], "batch": batch,
           "parallel": str(layout), "recompute": recompute, "steps": steps}
    try:
        ranks = distributed.launch([job], nproc, device=args.device, timeout=timeout,
                                   progress=lambda i, n, label: _progress(i, n, f"step {i}/{n}"))
    except distributed.DistributedError as exc:
        print(f"seqdsl bench: error: {exc}", file=sys.stderr)
        return 1
    result = {"model": graph.name, "nproc": nproc, "device": args.device, "parallel": str(layout), "mode": mode,
              "recompute": recompute, "seq": points[0], "batch": batch, "steps": steps,
              "ranks": [r[0] for r in ranks],
              "estimate": {k: getattr(est, k) for k in ("weights_bytes", "grads_bytes", "optimizer_bytes",
                                                        "activation_bytes", "peak_bytes", "comm_bytes")}}
    result["estimate"].update(step_time_s=step_est, step_basis=step_basis, hw=args.hw)
    print(json.dumps(result, separators=(",", ":")) if args.json else distributed_table(result))
    return 0


def _estimated_step(graph, point, batch, layout, recompute, hw):
    """(seconds, what they count) of the estimated training step with --hw:
    the per-device step (roofline compute plus communication); compute alone,
    the one-device roofline step over tp, when the profile has no
    interconnect figures (cpu.json). (None, None) without --hw."""
    if hw is None:
        return None, None
    load_profile(hw)      # an unknown name or a bad file: UsageError
    try:
        d = estimate(graph, seq=point, batch=batch, parallel=layout, recompute=recompute, hw=hw).points[0]
        return d.per_device.step_time_s, "compute + communication"
    except ParallelError:     # the profile has no interconnect figures to time the collectives
        p = estimate(graph, seq=point, batch=batch, hw=hw).points[0]
        return p.latency_train_s / layout.tp, f"compute only ({hw} has no interconnect figures)"


def distributed_table(result: dict) -> str:
    head = ["", "params", "grads", "optimizer", "saved act.", "step"]
    body = [[f"rank {r['rank']}", human_bytes(r["params_bytes"]), human_bytes(r["grads_bytes"]),
             human_bytes(r["optimizer_bytes"]), human_bytes(r["saved_bytes"]), human_seconds(r["step_s"])]
            for r in result["ranks"]]
    e = result["estimate"]
    body.append(["estimate", human_bytes(e["weights_bytes"]), human_bytes(e["grads_bytes"]),
                 human_bytes(e["optimizer_bytes"]), human_bytes(e["activation_bytes"]),
                 human_seconds(e["step_time_s"])])
    backend = "NCCL" if result["device"] == "cuda" else "gloo"
    lines = [f"bench {result['model']} on {result['nproc']} x {result['device']} ({backend}): {result['parallel']} "
             f"as {MODES[result['mode']]}, recompute {result['recompute']}, float32, {_label(result['seq'])}, "
             f"micro-batch {result['batch']}, {result['steps']} steps (median step after the first)",
             grid(head, body)]
    if e["step_time_s"] is not None:
        lines.append(f"estimated step on {e['hw']}: {e['step_basis']}")
    if result["mode"] == "fsdp":
        lines.append("zero=3: params, grads and optimizer are the resident shards; the largest layer "
                     "gathered whole with its gradient is the estimate's own term, in its peak")
    if result["mode"] == "tp":
        lines.append("tp: the estimate splits every layer its rule splits; the engine's plan splits "
                     "attention, mlp and swiglu only:")
    lines += [f"  {n}" for n in result["ranks"][0]["notes"]]
    return "\n".join(lines)
