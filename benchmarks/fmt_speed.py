"""Does `seqdsl fmt` take time linear in the number of comments?

Generates specs of N statements, each after a comment line (N = 1k, 5k,
20k, 40k comments), and times `format_text` in-process (parse,
comment collection, printing; best of a few runs), then prints the time per
1,000 comments and each size's time relative to the smallest: linear growth
shows as a flat time per comment (the old printer rescanned every comment for
each element: 8,000 took 10.7 s, 30,000 did not finish in 120 s). The growth left above linear is Python's cyclic
garbage collector walking a heap that grows with the file (run with
`--no-gc` to see it go).

Usage:  python benchmarks/fmt_speed.py [--no-gc] [N ...]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def commented_spec(n: int) -> str:
    body = "".join(f"    # note {i}\n    let a{i} = {i}\n" for i in range(n))
    return "model m {\n" + body + "\n    input x: float[B, T, 8]\n\n    y = x -> linear(8)\n\n    output y\n}\n"


def time_fmt(text: str, repeat: int = 3) -> float:
    from seqdsl.lang.printer import format_text
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        format_text(text)
        best = min(best, time.perf_counter() - start)
    return best


def main(sizes: list[int]) -> None:
    from seqdsl.lang.printer import format_text
    format_text(commented_spec(10))  # build the parser (and its cache) outside the timings
    rows = []
    for n in sizes:
        seconds = time_fmt(commented_spec(n), repeat=3 if n <= 20_000 else 1)
        rows.append((n, seconds))
    n0, t0 = rows[0]
    print(f"{'comments':>9} {'seconds':>8} {'ms/1k comments':>15} {'time ratio':>10} {'size ratio':>10}")
    for n, seconds in rows:
        print(f"{n:>9,} {seconds:>8.2f} {seconds / n * 1e6:>15.1f} "
              f"{seconds / t0:>10.1f} {n / n0:>10.1f}")


if __name__ == "__main__":
    if "--no-gc" in sys.argv:
        import gc
        gc.disable()
    main([int(a) for a in sys.argv[1:] if a != "--no-gc"] or [1_000, 5_000, 20_000, 40_000])
