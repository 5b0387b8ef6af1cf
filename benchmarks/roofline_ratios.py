"""Roofline-predicted over measured latency on this CPU, with its spread: the
README's "Roofline vs measured latency" table.

    .venv/bin/python benchmarks/roofline_ratios.py [--rounds 5] [--reps 7] [--threads 2]

Each round times every spec in turn as `seqdsl bench SPEC --seq 256 --batch 8
--hw cpu --reps R` does (seqdsl.backend.bench: an inference forward and an
Adam training step with the spec's declared loss, each the median of R calls
after a warm-up call; bench's peak-memory passes are left out, they are not
timed), so a change in the machine's load falls on all of them alike; a round
gives one ratio per spec and figure (predicted / measured).
The table gives the median ratio over the rounds with its min-max and
interquartile range, and the load average before and after each round is
recorded, since on a shared machine the load moves the measured side only.
Writes benchmarks/results/roofline_ratios.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch   # noqa: E402

import seqdsl   # noqa: E402
from seqdsl.backend import measure   # noqa: E402
from seqdsl.backend.bench import _default_loss   # noqa: E402
from seqdsl.cost.roofline import predictor   # noqa: E402

SPECS = [("examples/lm_sizes.seq", "gpt_small", "`examples/lm_sizes.seq:gpt_small`"),
         ("specs/speech_recognizer.seq", None, "`specs/speech_recognizer.seq`"),
         ("specs/lstm_lm.seq", None, "`specs/lstm_lm.seq`"),
         ("specs/keyword_spotter.seq", None, "`specs/keyword_spotter.seq` (GRU + RNN)")]


def quartiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return q[0], q[2]


def env_of(graph) -> dict:
    env = {s: 256 for s in graph.seq_symbols}
    if graph.batch_symbol is not None:
        env[graph.batch_symbol] = 8
    return env


def timed_calls(fn, reps: int) -> list[float]:
    """Seconds of `reps` calls after one warm-up call (as bench times them)."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def time_spec(graph, reps: int) -> tuple[list[float], list[float]]:
    """Seconds of each timed inference forward and Adam training step, as
    seqdsl.backend.bench.bench_point runs them."""
    module = seqdsl.build(graph, seed=0)
    env = env_of(graph)
    xs = measure.example_inputs(graph, env)
    ys = measure.example_targets(graph, env)
    module.eval()

    def forward():
        with torch.no_grad():
            module(*xs)

    fwd = timed_calls(forward, reps)
    module.train()
    opt = torch.optim.Adam(module.parameters(), lr=1e-4)

    def train_step():
        opt.zero_grad(set_to_none=True)
        out = module(*xs)
        value = _default_loss(out) if ys is None else module.loss(out, ys)
        del out
        value.backward()
        opt.step()

    return fwd, timed_calls(train_step, reps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    graphs = [(seqdsl.load(ROOT / path).model(model), label) for path, model, label in SPECS]
    ratios = {label: {"forward": [], "train": []} for _, label in graphs}
    loads = []
    started = time.time()
    for r in range(a.rounds):
        before = os.getloadavg()[0]
        for graph, label in graphs:
            fwd, train = time_spec(graph, a.reps)
            pred_fwd, pred_train = predictor(graph, "cpu", "float32")(env_of(graph))
            ratios[label]["forward"] += [pred_fwd / t for t in fwd]
            ratios[label]["train"] += [pred_train / t for t in train]
            print(f"  {label}: measured {statistics.median(fwd):.3f} s / {statistics.median(train):.3f} s",
                  flush=True)
        loads.append((before, os.getloadavg()[0]))
        write(a, ratios, loads, started, r + 1)
        print(f"round {r + 1}/{a.rounds} ({time.time() - started:.0f} s, load {before:.1f} -> {loads[-1][1]:.1f}): "
              + ", ".join(f"{label.split('`')[1]} {v['forward'][-1]:.2f}/{v['train'][-1]:.2f}"
                          for label, v in ratios.items()), flush=True)



def write(a, ratios, loads, started, done) -> None:
    """The results so far (after every round, so a run cut short leaves them)."""
    def cell(values):
        lo, hi = quartiles(values)
        return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f}; IQR {lo:.2f}–{hi:.2f})"

    lines = [
        "# Roofline vs measured latency on this CPU",
        "",
        f"`python benchmarks/roofline_ratios.py --rounds {a.rounds} --reps {a.reps} --threads {a.threads}`; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, {done} of {a.rounds} rounds in "
        f"{time.time() - started:.0f} s, "
        f"torch {torch.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs.",
        "",
        "Predicted (bundled `cpu` profile) / measured, batch 8, every sequence dim 256; per spec and figure "
        f"the median ratio over every timed call ({a.reps} a round, after a warm-up call), then (min–max; "
        "interquartile range). A round times every spec in turn.",
        "",
        "| spec | forward | training step |",
        "|---|---|---|",
    ]
    for label, v in ratios.items():
        lines.append(f"| {label} | {cell(v['forward'])} | {cell(v['train'])} |")
    lines += ["", "Load average (1 min) before and after each round: "
              + "; ".join(f"{b:.1f} → {e:.1f}" for b, e in loads) + "."]
    out = ROOT / "benchmarks" / "results" / "roofline_ratios.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out.relative_to(ROOT)}", flush=True)


if __name__ == "__main__":
    main()
