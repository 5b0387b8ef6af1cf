"""Training-step memory of transformers' GPT-2 small, measured, beside seqdsl's
estimate for tests/gpt2_small.seq with and without its `loss cross_entropy`.

    .venv/bin/python benchmarks/gpt2_training_memory.py [--seq 512,1024] [--batch 1]

One Adam step (`loss = model(x, labels=x).loss; loss.backward(); opt.step()`,
gradients set to None before it) of GPT2LMHeadModel with random weights,
measured after a warm-up step as tests/hf_gpt2.py describes (LiveTensorTracker
plus the resident weights, buffers, input and Adam state). Writes
benchmarks/results/gpt2_training_memory.md. About 2 minutes a length on this
2-core CPU.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import torch   # noqa: E402

import seqdsl   # noqa: E402
from seqdsl.check.elaborate import parse   # noqa: E402

from hf_gpt2 import FULL, spec_text, training_step_peak   # noqa: E402

MIB = 2 ** 20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq", default="512,1024")
    p.add_argument("--batch", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(2)
    lengths = [int(x) for x in args.seq.split(",")]
    with_loss = parse(spec_text(**FULL), "gpt2_small.seq")
    without = parse(spec_text(**FULL, loss=False), "gpt2_small.seq")
    rows = []
    for seq in lengths:
        t0 = time.perf_counter()
        measured = training_step_peak(**FULL, seq=seq, batch=args.batch)
        took = time.perf_counter() - t0
        est = seqdsl.estimate(with_loss, seq=[seq], batch=args.batch).points[0]
        bare = seqdsl.estimate(without, seq=[seq], batch=args.batch).points[0]
        rows.append((seq, measured, est, bare, took))
        print(f"T={seq}: measured {measured / MIB:,.0f} MiB, estimate {est.training_bytes / MIB:,.0f} MiB "
              f"({est.training_bytes / measured:.3f}), without the loss {bare.training_bytes / MIB:,.0f} MiB "
              f"({bare.training_bytes / measured:.3f}); {took:.0f} s", flush=True)
    lines = [
        "# GPT-2 small training-step memory: transformers measured vs seqdsl estimated",
        "",
        f"`python benchmarks/gpt2_training_memory.py --seq {args.seq} --batch {args.batch}`; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}.",
        "",
        "GPT2LMHeadModel (124,439,808 parameters, random weights, dropout 0, activation "
        "`gelu_pytorch_tanh`), float32, Adam; one step after a warm-up step. Measured: the most bytes "
        "alive at once (seqdsl's LiveTensorTracker) plus the resident weights, input and Adam "
        "moments. Estimate: `training_bytes` of tests/gpt2_small.seq (weights + optimizer + the larger of "
        "saved activations + loss and gradients).",
        "",
        "| T | batch | measured | estimate (with `loss cross_entropy`) | ratio | without the loss | ratio | "
        "activations | loss | gradients + tied copies |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for seq, measured, est, bare, _ in rows:
        grads = est.training_bytes - est.weights_bytes - est.optimizer_bytes \
            if est.activation_bytes + est.loss_bytes < est.training_bytes - est.weights_bytes - est.optimizer_bytes \
            else None
        lines.append(
            f"| {seq:,} | {args.batch} | {measured / MIB:,.1f} MiB | {est.training_bytes / MIB:,.1f} MiB | "
            f"{est.training_bytes / measured:.3f} | {bare.training_bytes / MIB:,.1f} MiB | "
            f"{bare.training_bytes / measured:.3f} | {est.activation_bytes / MIB:,.1f} MiB | "
            f"{est.loss_bytes / MIB:,.1f} MiB | "
            f"{'sets the peak' if grads is not None else 'below'} |")
    out = ROOT / "benchmarks" / "results" / "gpt2_training_memory.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
