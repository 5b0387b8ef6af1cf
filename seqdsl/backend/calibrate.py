"""`seqdsl calibrate`: measure this machine with torch and write a hardware
profile (seqdsl.cost.hardware) of the same shape as the bundled ones."""
from __future__ import annotations

import os
import platform
import time

import torch

from ..cost.hardware import HardwareProfile


def calibrate(quick: bool = False) -> HardwareProfile:
    """Measure this machine (CPU) with torch: GEMM FLOP/s per dtype, copy
    bandwidth, and the per-step floor of a tiny recurrent loop."""
    def best(fn, repeat):
        fn()  # warm up
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    n = 512 if quick else 1024
    peaks = {}
    for dtype in ("float32", "bfloat16"):
        a = torch.randn(n, n, dtype=getattr(torch, dtype))
        b = torch.randn(n, n, dtype=getattr(torch, dtype))
        t = best(lambda: a @ b, 3 if quick else 10)
        peaks[dtype] = 2 * n ** 3 / t
    peaks["float16"] = peaks["bfloat16"]

    size = (16 if quick else 64) * 2 ** 20 // 4  # floats
    src = torch.ones(size)
    dst = torch.empty_like(src)
    t = best(lambda: dst.copy_(src), 3 if quick else 10)
    bandwidth = 2 * src.numel() * 4 / t  # read + write

    # Per-step floors of each recurrent kind, forward and backward through
    # time, at a size where the step's arithmetic is negligible.
    steps = 200 if quick else 1000
    x = torch.randn(1, steps, 8)
    floors = {}
    for kind, cls in (("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU), ("rnn", torch.nn.RNN)):
        rnn = cls(8, 8, batch_first=True)
        with torch.no_grad():
            fwd = best(lambda: rnn(x), 3)
        xg = x.clone().requires_grad_()
        train = best(lambda: rnn(xg)[0].sum().backward(), 3)
        floors[kind] = fwd / steps
        floors[f"{kind}.backward"] = max(train - fwd, 0.0) / steps
    step_latency = floors["lstm"]

    return HardwareProfile(
        name="cpu",
        description=f"measured by `seqdsl calibrate` on {os.cpu_count()} cores of {_cpu_name()}, "
                    f"torch {torch.__version__}",
        peak_flops=peaks, bandwidth=bandwidth,
        compute_efficiency=1.0, memory_efficiency=1.0,  # measured, not vendor peaks
        step_latency=step_latency, step_latencies=floors)


def _cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; else platform's guess)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "an unknown CPU"
