"""How much does the per-device estimate (issue 14) add, and how fast is --fit?

Times, on this machine, once each spec is loaded (best of 7, in one run):

1. `seqdsl.estimate` of a 100-length sweep, single device;
2. the same with `parallel="dp=8,tp=2,pp=2,zero=1,sp,microbatches=8"`
   (the per-device closed forms built and evaluated at every point);
3. `--fit 80GiB` on that layout (bisection over the length and the batch);

and the ratios 2/1 and 3/1, side by side. Usage:

    python benchmarks/parallel_speed.py

writes benchmarks/results/parallel_speed.md.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import seqdsl                                                     # noqa: E402
from seqdsl.cost.estimate import compiled, parallel_cost          # noqa: E402
from seqdsl.cost.parallel import fit                              # noqa: E402

SPECS = ["specs/transformer_lm.seq", "specs/griffin_like.seq"]
LAYOUT = "dp=8,tp=2,pp=2,zero=1,sp,microbatches=8"
SWEEP = [int(64 * 1.1 ** k) for k in range(100)]


def best(fn, n: int = 7) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    rows = []
    for spec in SPECS:
        model = seqdsl.load(ROOT / spec).model()
        layout = LAYOUT if spec != "specs/griffin_like.seq" else LAYOUT.replace("tp=2,", "").replace(",sp", "")
        seqdsl.estimate(model, seq=SWEEP, dtype="bfloat16", parallel=layout)     # derive once (cached)
        single = best(lambda: seqdsl.estimate(model, seq=SWEEP, dtype="bfloat16"))
        per = best(lambda: seqdsl.estimate(model, seq=SWEEP, dtype="bfloat16", parallel=layout))
        pc = parallel_cost(compiled(model, "bfloat16"), layout, "adam")
        fitting = best(lambda: fit(pc, 80 * 2 ** 30, {"T": 4096}, 1), 3)
        rows.append((spec, layout, single, per, fitting))
    lines = ["# Per-device estimate: cost over the single-device sweep", "",
             f"`python benchmarks/parallel_speed.py` on {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} CPUs (shared), Python {platform.python_version()}; best of 7 (fit: of 3), "
             f"100-length sweep, bfloat16.", "",
             "| spec | layout | estimate, 100 lengths | with --parallel | ratio | --fit 80GiB | ratio |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for spec, layout, single, per, fitting in rows:
        lines.append(f"| `{spec}` | `{layout}` | {single * 1e3:.1f} ms | {per * 1e3:.1f} ms | {per / single:.1f}x "
                     f"| {fitting * 1e3:.1f} ms | {fitting / single:.1f}x |")
    out = ROOT / "benchmarks" / "results" / "parallel_speed.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
