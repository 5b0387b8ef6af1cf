"""`seqdsl bench SPEC --seq ...`: real latency and memory of the built module.

Per length: the median seconds of an inference forward (eval, no_grad) and of
a training step (forward, backward of sum(outputs), Adam step), each after a
warm-up call (which also compiles, with --compile), and the peak bytes of
both: on the CPU the live-tensor tracker of seqdsl.measure plus the resident
weights, buffers, inputs and optimizer state; on CUDA
torch.cuda.max_memory_allocated. With `--hw PROFILE`, the roofline's
predicted seconds (seqdsl.roofline) and the ratio predicted / measured sit
beside them, so predictions can be checked.

Torch is imported only inside `run` and the measuring functions.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from .cli import UsageError

BACKENDS = ("inductor", "eager", "aot_eager")


MAX_REPS = 1000


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure forward / training-step latency and peak memory of the module")
    p.add_argument("spec", help="path to a .seq file")
    p.add_argument("--model", help="which model, when the file defines several")
    p.add_argument("--seq", required=True, help="lengths: 64,1024 | 64..4096 (powers of two) | T=1024,S=256")
    p.add_argument("--batch", default="1", help="batch size (default 1)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile the module first (--no-compile: eager, the default)")
    p.add_argument("--backend", default="inductor", help="torch.compile backend: inductor | eager | aot_eager")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")
    p.add_argument("--reps", default="5", help="timed repetitions per figure, median reported (default 5)")
    p.add_argument("--hw", help="hardware profile for predicted latency (needs seqdsl.roofline): h100 | ... | FILE")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--force", action="store_true",
                   help="run even when the estimated memory is past half of what is available")


# ------------------------------------------------------------------ measuring
def _sync(device: str) -> None:
    if device == "cuda":
        import torch
        torch.cuda.synchronize()


def _median_seconds(fn, reps: int, device: str) -> float:
    """Median of `reps` timed calls after one warm-up call (compilation,
    allocator and oneDNN primitive caches)."""
    fn()
    _sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def _default_loss(out):
    outs = out if isinstance(out, tuple) else (out,)
    return sum(o.float().sum() for o in outs)


def bench_point(module, inputs, reps: int, device: str) -> dict:
    """forward_s, train_s, peak_bytes (training step), inference_peak_bytes at one length."""
    import torch

    from . import measure
    params = list(module.parameters())
    resident = params + list(module.buffers()) + list(inputs)

    module.eval()

    def forward():
        with torch.no_grad():
            module(*inputs)

    forward_s = _median_seconds(forward, reps, device)
    inference_peak = measure.allocation_peak(forward, resident, device) + measure.storage_bytes(resident)

    module.train()
    opt = torch.optim.Adam(params, lr=1e-4)

    def train_step():
        opt.zero_grad(set_to_none=True)
        _default_loss(module(*inputs)).backward()
        opt.step()

    train_s = _median_seconds(train_step, reps, device)
    # after the warm-up the Adam moments exist: they are resident, the gradients are not
    state = [t for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    peak = measure.allocation_peak(train_step, resident + state, device) + measure.storage_bytes(resident + state)
    opt.zero_grad(set_to_none=True)
    return {"forward_s": forward_s, "train_s": train_s, "peak_bytes": peak, "inference_peak_bytes": inference_peak}


def _predictions(graph, hw: str, dtype: str):
    """A function env -> (forward_s, train_s): the roofline's closed forms
    (seqdsl.roofline), evaluated at the env's dims and batch."""
    from .hardware import load_profile
    from .roofline import latency
    profile = load_profile(hw)
    dims = list(graph.seq_symbols)

    def predict(env: dict):
        batch = env.get(graph.batch_symbol, 1) if graph.batch_symbol else 1
        (r,) = latency(graph, profile, dtype, [{d: env[d] for d in dims}], batch)
        return r["forward"], r["train"]
    return predict


def _progress(done: int, total: int, label: str) -> None:
    """A one-line progress bar on stderr, redrawn in place."""
    width = 24
    filled = width * done // total
    end = "\n" if done == total else ""
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label:<24}{end}")
    sys.stderr.flush()


def run(args) -> int:
    """Entry point of `seqdsl bench`."""
    from .estimate_cli import parse_int, parse_seq
    from .verify import _check_device, _torch_dtype
    batch = parse_int(args.batch, "--batch")
    reps = parse_int(args.reps, "--reps")
    if reps > MAX_REPS:
        raise UsageError(f"--reps {reps:,} is past the limit of {MAX_REPS:,}")
    if args.backend not in BACKENDS:
        raise UsageError(f"unknown --backend '{args.backend}': use {', '.join(BACKENDS)}")
    _check_device(args.device)
    torch_dtype = _torch_dtype(args.dtype)
    if args.hw:
        from .hardware import load_profile
        load_profile(args.hw)            # an unknown name or a bad file: UsageError
    from .elaborate import load
    graph = load(args.spec).model(args.model)
    from .estimate import resolve_points
    points = resolve_points(graph, parse_seq(args.seq, graph.seq_symbols))
    from .verify import check_memory
    check_memory(graph, points, batch, args.dtype, args.device, args.force, "bench")
    predict = _predictions(graph, args.hw, args.dtype) if args.hw else None

    from . import measure
    from .backend import build
    module = build(graph, compile=args.compile, backend=args.backend, device=args.device, dtype=torch_dtype,
                   seed=0)
    rows = []
    for i, point in enumerate(points):
        env = measure.input_env(graph, point, batch)
        _progress(i, len(points), _label(point))
        xs = measure.example_inputs(graph, env, device=args.device, dtype=torch_dtype)
        row = {"seq": point, "batch": batch, **bench_point(module, xs, reps, args.device)}
        if predict is not None:
            fwd, train = predict(env)
            row.update(forward_pred_s=fwd, train_pred_s=train, forward_ratio=fwd / row["forward_s"],
                       train_ratio=train / row["train_s"])
        rows.append(row)
    _progress(len(points), len(points), "done")
    result = {"model": graph.name, "device": args.device, "dtype": args.dtype, "compile": args.compile,
              "backend": args.backend if args.compile else None, "points": rows}
    print(json.dumps(result, separators=(",", ":")) if args.json else table(result))
    return 0


def _label(seq: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in seq.items())


def table(result: dict) -> str:
    from .estimate_cli import _grid, human_bytes, human_seconds
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
    return f"bench {result['model']} on {result['device']}, {result['dtype']}, {how}\n" + _grid(head, body)
