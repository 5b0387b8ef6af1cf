"""Does `seqdsl compile --estimate` stay linear in the layer count when every
layer's arguments differ (so no two layers have the same closed form)?

For each size and kind below, in a fresh process each: load (parse + check)
and estimate (derive the closed forms, compile them, evaluate one length),
wall and CPU seconds, and the process's peak RSS. Each estimate is printed
with its ratio to the previous size (2.0 = linear), and for the smaller
sizes beside the same estimate with shared costs off (every layer derived
at its own values, as before seqdsl.cost.model's shared costs:
`model_cost(share=False)`), with the ratio old / new. Then the CLI,
`seqdsl compile SPEC --estimate --seq 1024`, as a cold process on the
largest size; with --before DIR, seqdsl.estimate of an older checkout
beside this tree's. Kinds:

* window:   attention(4, window=i, causal=true), i = 1..N
* segments: segments(length=i, memory=i % 7) { attention(4, causal=true) }
* conv:     conv1d(64, kernel=1 + i % 97, padding=causal)

Usage: python benchmarks/estimate_scaling.py [--sizes 250,500,1000,2000]
           [--old-sizes 125,250,500] [--kinds window,segments,conv] [--out FILE.md]
           [--before DIR [--before-sizes 2000]]   (DIR: an older checkout, timed beside this one)
Results: benchmarks/results/estimate_scaling.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def spec(n: int, kind: str) -> str:
    lines = ["model scaling {", "    input x: float[B, T, 64]", "    y = x"]
    for i in range(1, n + 1):
        if kind == "window":
            lines.append(f"        -> attention(4, window={i}, causal=true)")
        elif kind == "segments":
            lines.append(f"        -> segments(length={i}, memory={i % 7}) {{ attention(4, causal=true) }}")
        elif kind == "conv":
            lines.append(f"        -> conv1d(64, kernel={1 + i % 97}, padding=causal)")
        else:
            raise SystemExit(f"unknown kind {kind}")
    lines += ["    output y", "}"]
    return "\n".join(lines) + "\n"


def time_one(n: int, kind: str, share: bool = True) -> tuple[float, float]:
    """(load s, estimate s), wall, in this process."""
    return tuple(measure(n, kind, share)[k] for k in ("load_s", "estimate_s"))


def measure(n: int, kind: str, share: bool = True, api: bool = False) -> dict:
    """api=True: time seqdsl.estimate itself (what an older tree also has)."""
    from seqdsl.check.elaborate import parse
    from seqdsl.cost.estimate import CompiledCost, estimate, evaluate_points, resolve_points
    from seqdsl.cost.model import model_cost
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    model = parse(spec(n, kind), f"<{kind}{n}>").model()
    t1, c1 = time.perf_counter(), time.process_time()
    if api:
        estimate(model, seq=[1024])
    else:   # what seqdsl.estimate(model, seq=[1024]) runs, with shared costs on or off
        cc = CompiledCost(model_cost(model, "float32", share=share))
        evaluate_points(model, cc, resolve_points(model, [1024]), 1, "float32", "adam")
    t2, c2 = time.perf_counter(), time.process_time()
    return {"load_s": t1 - t0, "estimate_s": t2 - t1, "estimate_cpu_s": c2 - c1,
            "rss_before_mib": rss0 / 1024, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def in_child(n: int, kind: str, share: bool, tree: str = "") -> dict:
    """measure() in a fresh interpreter, so each peak RSS is its own; with
    `tree`, seqdsl.estimate of the seqdsl in that directory."""
    out = subprocess.run([sys.executable, __file__, "--child", f"{kind},{n},{int(share)},{tree}"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def cli_run(n: int, kind: str) -> dict:
    """`seqdsl compile SPEC --estimate --seq 1024` as a cold process: wall, CPU, peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{kind}{n}.seq"
        path.write_text(spec(n, kind))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "seqdsl", "compile", str(path), "--estimate", "--seq", "1024"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"seqdsl compile failed on {kind}{n}: {p.stderr.read().decode()}")
        return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="250,500,1000,2000")
    ap.add_argument("--old-sizes", default="125,250,500",
                    help="sizes also run with shared costs off (slow: seconds to minutes)")
    ap.add_argument("--kinds", default="window,segments,conv")
    ap.add_argument("--before", metavar="DIR",
                    help="an older checkout (git archive COMMIT | tar -x -C DIR): its seqdsl.estimate beside this one's")
    ap.add_argument("--before-sizes", default="2000", help="sizes for --before (the old derivation takes minutes)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "estimate_scaling.md"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, n, share, tree = a.child.split(",", 3)
        if tree:
            sys.path.insert(0, tree)    # before seqdsl is first imported (in measure)
        print(json.dumps(measure(int(n), kind, share == "1", api=bool(tree))))
        return
    sizes = [int(s) for s in a.sizes.split(",")]
    old = {int(s) for s in a.old_sizes.split(",") if s}
    head = ("| kind | layers | load s | estimate s (CPU s) | ratio to previous | peak RSS MiB (before load) "
            "| shared off: estimate s (CPU s) | old / new |")
    rows = [head, "|" + "---|" * 8]
    print(head, flush=True)
    for kind in a.kinds.split(","):
        prev = None
        for n in sorted(set(sizes) | old):
            new = in_child(n, kind, True)
            ratio = f"{new['estimate_s'] / prev:.2f}" if prev and n in sizes else "-"
            if n in sizes:
                prev = new["estimate_s"]
            off, vs = "-", "-"
            if n in old:
                o = in_child(n, kind, False)
                off = f"{o['estimate_s']:.3f} ({o['estimate_cpu_s']:.3f})"
                vs = f"{o['estimate_cpu_s'] / new['estimate_cpu_s']:.0f}x"
            row = (f"| {kind} | {n:,} | {new['load_s']:.3f} | {new['estimate_s']:.3f} ({new['estimate_cpu_s']:.3f}) "
                   f"| {ratio} | {new['peak_rss_mib']:.0f} ({new['rss_before_mib']:.0f}) | {off} | {vs} |")
            rows.append(row)
            print(row, flush=True)
    big = max(sizes)
    cli_rows = ["| kind | layers | wall s | CPU s | peak RSS MiB |", "|---|---|---|---|---|"]
    for kind in a.kinds.split(","):
        r = cli_run(big, kind)
        cli_rows.append(f"| {kind} | {big:,} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['peak_rss_mib']:.0f} |")
        print(cli_rows[-1], flush=True)
    before_rows = []
    if a.before:
        before_rows = ["| kind | layers | before: wall s | CPU s | peak RSS MiB | now: wall s | CPU s | peak RSS MiB "
                       "| CPU before / now |", "|" + "---|" * 9]
        for kind in a.kinds.split(","):
            for n in [int(s) for s in a.before_sizes.split(",")]:
                b, c = in_child(n, kind, True, str(Path(a.before).resolve())), in_child(n, kind, True, str(ROOT))
                before_rows.append(
                    f"| {kind} | {n:,} | {b['estimate_s']:.2f} | {b['estimate_cpu_s']:.2f} | {b['peak_rss_mib']:.0f} "
                    f"| {c['estimate_s']:.2f} | {c['estimate_cpu_s']:.2f} | {c['peak_rss_mib']:.0f} "
                    f"| {b['estimate_cpu_s'] / c['estimate_cpu_s']:.0f}x |")
                print(before_rows[-1], flush=True)
    cmd = "python benchmarks/estimate_scaling.py " + " ".join(sys.argv[1:])
    text = "\n".join([
        "# Estimate scaling: thousands of distinct layers",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs: wall seconds "
        f"vary with the load, CPU seconds less), Python {platform.python_version()}.",
        f"Command: `{cmd.strip()}` ({time.strftime('%Y-%m-%d', time.gmtime())}).",
        "",
        "In-process, one fresh interpreter per row: load = parse + check; estimate = derive the closed forms,",
        "compile them and evaluate T = 1,024 (what `seqdsl.estimate(model, seq=[1024])` runs). Ratio: this",
        "size's estimate over the previous size's (2.0 = linear). Shared costs off = every layer's cost",
        "derived at its own values (`model_cost(share=False)`, the derivation before shared costs);",
        "old / new compares CPU seconds.",
        "",
        *rows,
        "",
        f"`seqdsl compile SPEC --estimate --seq 1024`, cold process (Python start and imports included), {big:,} layers:",
        "",
        *cli_rows,
        ""] + ([f"`seqdsl.estimate(model, seq=[1024])` of the tree in `{a.before}` (before) and of this one (now),",
               "one fresh process each, back to back:", "", *before_rows, ""] if before_rows else []))
    Path(a.out).write_text(text)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
