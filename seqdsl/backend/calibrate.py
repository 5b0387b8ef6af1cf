"""`seqdsl calibrate`: measure this machine with torch and write a hardware
profile (seqdsl.cost.hardware) of the same shape as the bundled ones.

Every figure is the median of several timed calls after warm-up calls, and
each comes with its spread; a figure the measurement cannot vouch for is
flagged (`flag_timings`) and named in the profile's description and the
command's output:

* a spread (interquartile range over the median) past SPREAD_LIMIT: the
  machine's load changed under the measurement;
* a call shorter than MIN_CALL_SECONDS (or 1,000 ticks of the clock): timer
  resolution and Python's per-call overhead are then a large part of it;
* a recurrent kind's backward step outside BACKWARD_RATIO times its
  forward step: a backward that is a few times its forward is what autograd
  costs, anything else is a measurement fault.

Earlier versions took the best of 3 calls after a single warm-up, and the
backward step as the difference of two such minima, one of them measured
under no_grad: oneDNN's backward primitive and the allocator took 2-3 calls
to settle here (22, 23, then 1.7 µs a step), a loaded machine can slow all 3
calls, and gradients accumulated from call to call. Now the warm-up is
WARMUP calls, gradients are dropped between calls, the training call is a
forward with grad plus its backward, and every figure is a median.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field

import torch

from ..cost.hardware import HardwareProfile

WARMUP = 3
SPREAD_LIMIT = 0.5
MIN_CALL_SECONDS = 50e-6
BACKWARD_RATIO = (0.5, 10.0)


@dataclass
class Timing:
    """One figure's timed calls: seconds per call, each covering `per` units
    (steps of a recurrent loop; 1 for a GEMM or a copy)."""

    name: str
    seconds: list[float]
    per: int = 1
    flags: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        """Seconds per unit."""
        return statistics.median(self.seconds) / self.per

    @property
    def spread(self) -> float:
        """Interquartile range of the calls over their median (0 for one call)."""
        s = sorted(self.seconds)
        if len(s) < 2 or s[len(s) // 2] == 0:
            return 0.0
        q1, q3 = s[(len(s) - 1) // 4], s[(3 * (len(s) - 1) + 3) // 4]
        return (q3 - q1) / statistics.median(s)


def flag_timings(timings: dict[str, Timing], resolution: float | None = None) -> dict[str, Timing]:
    """Attach to each timing the reasons it cannot be trusted (its `flags`,
    cleared first); returns `timings`. A recurrent kind's backward is named
    `KIND.backward` beside its forward `KIND`."""
    if resolution is None:
        resolution = time.get_clock_info("perf_counter").resolution
    shortest = max(MIN_CALL_SECONDS, 1000 * resolution)
    for t in timings.values():
        t.flags = []
        if t.spread > SPREAD_LIMIT:
            t.flags.append(f"spread {t.spread:.0%} across {len(t.seconds)} calls (limit {SPREAD_LIMIT:.0%}): "
                           "the machine's load changed while it was measured")
        call = statistics.median(t.seconds)
        if call < shortest:
            t.flags.append(f"a call takes {call * 1e6:.1f} µs, under the {shortest * 1e6:.0f} µs that "
                           "timer resolution and per-call overhead allow to time")
    lo, hi = BACKWARD_RATIO
    for name, t in timings.items():
        forward = timings.get(name.removesuffix(".backward")) if name.endswith(".backward") else None
        if forward is None or forward.median <= 0:
            continue
        ratio = t.median / forward.median
        if not lo <= ratio <= hi:
            t.flags.append(f"backward step {ratio:.3g}x its forward step (plausible: {lo:g}x to {hi:g}x)")
    return timings


def _time_calls(fn, repeat: int, before=None) -> list[float]:
    """Seconds of `repeat` calls of fn after WARMUP untimed ones; `before`
    (untimed) runs ahead of every call."""
    for _ in range(WARMUP):
        if before is not None:
            before()
        fn()
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


@dataclass
class Calibration:
    """A measured profile and the raw figures it was fitted from."""

    profile: HardwareProfile
    timings: dict[str, Timing]

    @property
    def untrusted(self) -> dict[str, list[str]]:
        return {name: t.flags for name, t in self.timings.items() if t.flags}


def measure_machine(quick: bool = False) -> Calibration:
    """Measure this machine (CPU) with torch: GEMM FLOP/s per dtype, copy
    bandwidth, and the per-step floors of tiny recurrent loops, each the
    median of its calls, flagged where it cannot be trusted."""
    repeat = 5 if quick else 9
    timings: dict[str, Timing] = {}
    n = 512 if quick else 1024
    for dtype in ("float32", "bfloat16"):
        a = torch.randn(n, n, dtype=getattr(torch, dtype))
        b = torch.randn(n, n, dtype=getattr(torch, dtype))
        timings[f"gemm.{dtype}"] = Timing(f"gemm.{dtype}", _time_calls(lambda: a @ b, repeat))
    peaks = {dtype: 2 * n ** 3 / timings[f"gemm.{dtype}"].median for dtype in ("float32", "bfloat16")}
    peaks["float16"] = peaks["bfloat16"]

    size = (16 if quick else 64) * 2 ** 20 // 4  # floats
    src = torch.ones(size)
    dst = torch.empty_like(src)
    timings["copy"] = Timing("copy", _time_calls(lambda: dst.copy_(src), repeat))
    bandwidth = 2 * src.numel() * 4 / timings["copy"].median  # read + write

    # Per-step floors of each recurrent kind, forward (inference, no_grad)
    # and what training adds per step (forward with grad + backward, less the
    # inference forward), at a size where the step's arithmetic is negligible.
    steps = 200 if quick else 1000
    x = torch.randn(1, steps, 8)
    for kind, cls in (("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU), ("rnn", torch.nn.RNN)):
        rnn = cls(8, 8, batch_first=True)
        xg = x.clone().requires_grad_()

        def forward():
            with torch.no_grad():
                rnn(x)

        def drop_grads():
            rnn.zero_grad(set_to_none=True)
            xg.grad = None

        fwd = Timing(kind, _time_calls(forward, repeat), per=steps)
        train = _time_calls(lambda: rnn(xg)[0].sum().backward(), repeat, before=drop_grads)
        # the training call less the median inference forward, call by call
        base = statistics.median(fwd.seconds)
        timings[kind] = fwd
        timings[f"{kind}.backward"] = Timing(f"{kind}.backward", [max(t - base, 0.0) for t in train], per=steps)
    flag_timings(timings)
    floors = {k: t.median for k, t in timings.items() if k.split(".")[0] in ("lstm", "gru", "rnn")}
    untrusted = sorted(k for k, t in timings.items() if t.flags)
    note = f"; untrusted figures: {', '.join(untrusted)} (rerun on a quiet machine)" if untrusted else ""
    profile = HardwareProfile(
        name="cpu",
        description=f"measured by `seqdsl calibrate` on {os.cpu_count()} cores of {_cpu_name()}, "
                    f"torch {torch.__version__}, medians of {repeat} calls{note}",
        peak_flops=peaks, bandwidth=bandwidth,
        compute_efficiency=1.0, memory_efficiency=1.0,  # measured, not vendor peaks
        step_latency=floors["lstm"], step_latencies=floors)
    return Calibration(profile, timings)


def calibrate(quick: bool = False) -> HardwareProfile:
    """The profile of `measure_machine` (its timings and flags left out)."""
    return measure_machine(quick).profile


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
