"""What lengths_overhead.py and step_lengths_overhead.py share: variants timed
in turn (so each sees the same load), their ratio table and the machine line."""
from __future__ import annotations

import os
import platform
import statistics
import time

import torch


def time_interleaved(runs: dict, reps: int) -> dict:
    """name -> its `reps` wall times (s): every variant once to warm up, then
    `reps` rounds of all of them in turn, without gradients."""
    times = {k: [] for k in runs}
    with torch.no_grad():
        for fn in runs.values():         # warm-up
            fn()
        for _ in range(reps):
            for k, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    return times


def ratio_rows(what: str, times: dict, base: str, digits: int) -> list:
    """A Markdown table: each variant's median, min and max (ms, `digits`
    decimals) and its median's ratio to `base`'s."""
    ref = statistics.median(times[base])
    rows = [f"| {what} | median ms | min ms | max ms | ratio to no lengths= |", "|---|---:|---:|---:|---:|"]
    for k, ts in times.items():
        med = statistics.median(ts)
        rows.append(f"| {k} | {med * 1e3:.{digits}f} | {min(ts) * 1e3:.{digits}f} | "
                    f"{max(ts) * 1e3:.{digits}f} | {med / ref:.2f} |")
    return rows


def machine_line(threads: int) -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{threads} thread(s), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"load average {os.getloadavg()[0]:.1f} (a shared machine: read the ratios, not the times).")
