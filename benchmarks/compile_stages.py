"""An LSTM LM compiled stage by stage: first-call time and graph count before
(every stage between the RNN calls compiled) and after (one-kernel stages run
eagerly), beside its compiled hand-written twin and the eager module, in one run.

    .venv/bin/python benchmarks/compile_stages.py [--reps 7] [--threads 1]

The spec and twin are benchmarks/backend_speed.py's LSTM LM (embed 2000 x 256,
a 2-layer LSTM of 512, a linear head), batch 4, T = 64 then 96 (the second
length shows whether the compiled graphs serve it without recompiling).
Inductor, forward in eval mode. Writes benchmarks/results/compile_stages.md.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch   # noqa: E402
import torch._dynamo   # noqa: E402
from torch._dynamo.utils import counters   # noqa: E402

import seqdsl   # noqa: E402
from seqdsl.backend.seqmodel import CompiledSeqModel   # noqa: E402

from backend_speed import LSTM, TwinLstm, V   # noqa: E402


def first_and_steady(make, reps: int) -> dict:
    """Fresh dynamo state; build with make(); the first call at T=64 (compiles),
    the first at T=96, then the median of `reps` calls at T=96."""
    torch._dynamo.reset()
    counters.clear()
    model = make()
    x64 = torch.randint(0, V, (4, 64), generator=torch.Generator().manual_seed(0))
    x96 = torch.randint(0, V, (4, 96), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        t0 = time.perf_counter()
        model(x64)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        model(x96)
        second = time.perf_counter() - t0
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            model(x96)
            times.append(time.perf_counter() - t0)
    return {"first": first, "second": second, "steady": statistics.median(times),
            "low": min(times), "high": max(times), "graphs": counters["stats"].get("unique_graphs", 0),
            "modes": getattr(model, "stage_modes", None)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    graph = seqdsl.parse(LSTM).model()

    def seqdsl_model():
        torch.manual_seed(0)
        return seqdsl.build(graph).eval()

    rows = [
        ("seqdsl, eager", seqdsl_model),
        ("seqdsl compiled, every stage (before)",
         lambda: CompiledSeqModel(seqdsl_model(), backend="inductor", compile_every_stage=True).eval()),
        ("seqdsl compiled, one-kernel stages eager (after)",
         lambda: CompiledSeqModel(seqdsl_model(), backend="inductor").eval()),
        ("twin, torch.compile", lambda: torch.compile(TwinLstm().eval())),
    ]
    results = []
    for label, make in rows:
        r = first_and_steady(make, a.reps)
        results.append((label, r))
        print(f"{label}: first call {r['first']:.2f} s, graphs {r['graphs']}, steady {r['steady'] * 1e3:.1f} ms "
              f"({r['low'] * 1e3:.1f}-{r['high'] * 1e3:.1f})", flush=True)
    lines = [
        "# An LSTM LM under torch.compile: which stages to compile",
        "",
        f"`python benchmarks/compile_stages.py --reps {a.reps} --threads {a.threads}`; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}.",
        "",
        "benchmarks/backend_speed.py's LSTM LM (embed, 2-layer LSTM, linear head), batch 4, inductor, eval, "
        "no_grad. First call: T = 64 (compiles); then T = 96 once, then the median (min-max) of "
        f"{a.reps} calls at T = 96. Graphs: dynamo's unique graphs after all calls.",
        "",
        "| model | stages | first call | first call at a new length | graphs | steady forward |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, r in results:
        modes = ", ".join(r["modes"]) if r["modes"] else ""
        lines.append(f"| {label} | {modes} | {r['first']:.2f} s | {r['second']:.2f} s | {r['graphs']} | "
                     f"{r['steady'] * 1e3:.1f} ms ({r['low'] * 1e3:.1f}-{r['high'] * 1e3:.1f}) |")
    out = ROOT / "benchmarks" / "results" / "compile_stages.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
