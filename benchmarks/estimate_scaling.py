"""Does `seqdsl compile --estimate` stay linear in the layer count when every
layer's arguments differ (so no layer's closed form is shared with another)?

For 250, 500, 1,000 and 2,000 layers of each kind below, times in-process:
load (parse + check) and estimate (derive the closed forms, compile them,
evaluate one length), and prints each time with its ratio to the previous
size (2.0 = linear). Kinds:

* window:   attention(4, window=i, causal=true), i = 1..N
* segments: segments(length=i, memory=i % 7) { attention(4, causal=true) }
* conv:     conv1d(64, kernel=k, stride=s, padding=causal) with distinct k, s

Usage: python benchmarks/estimate_scaling.py [--sizes 250,500,1000,2000] [--kinds window,segments]
"""
from __future__ import annotations

import argparse
import sys
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


def time_one(n: int, kind: str) -> tuple[float, float]:
    from seqdsl.check.elaborate import parse
    from seqdsl.cost.estimate import estimate
    t0 = time.perf_counter()
    model = parse(spec(n, kind), f"<{kind}{n}>").model()
    t1 = time.perf_counter()
    estimate(model, seq=[1024])
    return t1 - t0, time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="250,500,1000,2000")
    ap.add_argument("--kinds", default="window,segments,conv")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    print(f"{'kind':<9} {'layers':>6} {'load s':>8} {'estimate s':>10} {'ratio':>6}")
    for kind in a.kinds.split(","):
        prev = None
        for n in sizes:
            load_s, est_s = time_one(n, kind)
            ratio = f"{est_s / prev:.2f}" if prev else "-"
            print(f"{kind:<9} {n:>6} {load_s:>8.3f} {est_s:>10.3f} {ratio:>6}", flush=True)
            prev = est_s


if __name__ == "__main__":
    main()
