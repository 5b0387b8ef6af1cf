"""How fast is a repeated `seqdsl compile --estimate`, answered from the cache?

Side by side in one run, each a separate process timed from outside (best
and median of --reps; the measurement of --measure-reps):

1. `python -c pass`: the floor of any Python command;
2. `python -m seqdsl compile SPEC --estimate` with an empty cache: deriving
   the closed forms (sympy, lark, pydantic loaded) and writing the entry;
3. the same with `--no-cache` (deriving, nothing written): what the entry costs;
4. the same command again: answered from the cache (seqdsl/cli/cache.py);
5. the same through the `seqdsl` console script;
6. one FlopCounterMode measurement of the same model
   (seqdsl.backend.measure.forward_and_train_flops at T = --length, batch 1):
   a process that imports torch, builds the module with seqdsl.build and counts.

Each process runs with bytecode written (as an installed package has it);
the cache lives in a temporary directory. Usage:

    python benchmarks/estimate_cache.py [--spec specs/transformer_lm.seq] [--reps 15]

writes benchmarks/results/estimate_cache.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MEASURE = """
import sys
import torch
torch.set_num_threads(1)
import seqdsl
from seqdsl.backend import measure
spec, t = sys.argv[1], int(sys.argv[2])
graph = seqdsl.load(spec).model()
module = seqdsl.build(spec)
inputs = measure.example_inputs(graph, measure.input_env(graph, {d: t for d in graph.seq_symbols}, 1))
fwd, train = measure.forward_and_train_flops(module, *inputs)
print(fwd, train)
"""


def timed(cmd: list[str], env: dict, reps: int, fresh_cache: str | None = None) -> tuple[float, float, str]:
    """(best, median, stdout of the last run) of `reps` runs; fresh_cache: a
    directory emptied before each run."""
    times, out = [], ""
    for _ in range(reps):
        if fresh_cache is not None:
            shutil.rmtree(fresh_cache, ignore_errors=True)
        t = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - t)
        out = done.stdout
    return min(times), statistics.median(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="specs/transformer_lm.seq")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--measure-reps", type=int, default=3)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "estimate_cache.md"))
    args = ap.parse_args()
    spec = str((ROOT / args.spec) if not os.path.isabs(args.spec) else args.spec)
    xdg = tempfile.mkdtemp(prefix="seqdsl-bench-cache-")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "SEQDSL_NO_CACHE")}
    env.update(PYTHONPATH=str(ROOT), XDG_CACHE_HOME=xdg, OMP_NUM_THREADS="1")
    py = sys.executable
    estimate = [py, "-m", "seqdsl", "compile", spec, "--estimate"]
    script = [py, str(Path(py).parent / "seqdsl"), "compile", spec, "--estimate"]
    subprocess.run(estimate, env=env, capture_output=True, check=True)     # writes the bytecode
    subprocess.run([py, "-c", "import sympy, lark, pydantic, torch"], env=env, check=True)

    rows = []
    rows.append(("`python -c pass`", *timed([py, "-c", "pass"], env, args.reps)[:2]))
    cold = timed(estimate, env, args.reps, fresh_cache=os.path.join(xdg, "seqdsl"))
    rows.append(("`python -m seqdsl compile SPEC --estimate`, empty cache (derive, write the entry)", *cold[:2]))
    nocache = timed(estimate + ["--no-cache"], env, args.reps)
    rows.append(("the same with `--no-cache` (derive, write nothing)", *nocache[:2]))
    subprocess.run(estimate, env=env, capture_output=True, check=True)
    hit = timed(estimate, env, args.reps)
    rows.append(("the same again: **from the cache**", *hit[:2]))
    if Path(script[1]).exists():
        rows.append(("the same through the `seqdsl` console script, from the cache", *timed(script, env, args.reps)[:2]))
    assert hit[2] == cold[2] == nocache[2], "the cached output differs from the derived one"
    measured = timed([py, "-c", MEASURE, spec, str(args.length)], env, args.measure_reps)
    rows.append((f"one FlopCounterMode measurement, T = {args.length:,} (import torch, seqdsl.build, count)",
                 *measured[:2]))
    shutil.rmtree(xdg, ignore_errors=True)

    floor, hit_best, hit_median = rows[0][1], rows[3][1], rows[3][2]
    lines = [
        "# A repeated `compile --estimate`, from the cache",
        "",
        f"`{Path(sys.executable).name} benchmarks/estimate_cache.py --spec {args.spec} --reps {args.reps} "
        f"--measure-reps {args.measure_reps} --length {args.length}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"processes timed from outside, best and median of {args.reps} "
        f"({args.measure_reps} for the measurement), bytecode written.",
        "",
        "| what | best | median |",
        "|---|---|---|",
    ]
    lines += [f"| {what} | {b * 1000:.0f} ms | {m * 1000:.0f} ms |" for what, b, m in rows]
    flops = measured[2].split()
    lines += [
        "",
        f"* cached estimate minus `python -c pass`: {(hit_best - floor) * 1000:.0f} ms (best), "
        f"{(hit_median - rows[0][2]) * 1000:.0f} ms (median)",
        f"* cold estimate / cached estimate: {cold[0] / hit_best:.1f}x (best), {cold[1] / hit_median:.1f}x (median)",
        f"* FlopCounterMode measurement / cached estimate: {measured[0] / hit_best:.0f}x (best), "
        f"{measured[1] / hit_median:.0f}x (median)",
        f"* the measurement counted {int(flops[1]):,} training FLOPs at T = {args.length:,}; "
        "the cached and derived outputs are identical (checked)",
    ]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
