"""calibrate's trust flags, on synthetic timings (no torch timing here)."""
from __future__ import annotations

from seqdsl.backend.calibrate import BACKWARD_RATIO, MIN_CALL_SECONDS, SPREAD_LIMIT, Timing, flag_timings

RES = 1e-9   # a nanosecond clock


def _flags(**timings) -> dict[str, list[str]]:
    named = {name.replace("_", "."): t for name, t in timings.items()}
    for name, t in named.items():
        t.name = name
    return {name: t.flags for name, t in flag_timings(named, resolution=RES).items()}


def test_steady_timings_are_trusted():
    flags = _flags(lstm=Timing("", [1.0e-3, 1.01e-3, 0.99e-3, 1.0e-3, 1.02e-3], per=1000),
                   lstm_backward=Timing("", [2.0e-3, 2.1e-3, 2.0e-3, 1.9e-3, 2.0e-3], per=1000),
                   copy=Timing("", [0.01] * 7))
    assert flags == {"lstm": [], "lstm.backward": [], "copy": []}


def test_high_spread_is_flagged_and_one_outlier_is_not():
    noisy = Timing("", [1e-3, 3e-3, 1e-3, 4e-3, 2e-3, 5e-3, 1e-3])
    one_spike = Timing("", [1e-3, 1e-3, 1.05e-3, 40e-3, 1e-3, 0.98e-3, 1e-3])
    assert noisy.spread > SPREAD_LIMIT and one_spike.spread < SPREAD_LIMIT
    flags = _flags(copy=noisy, gemm=one_spike)
    assert len(flags["copy"]) == 1 and flags["copy"][0].startswith("spread ")
    assert flags["gemm"] == []


def test_calls_too_short_to_time_are_flagged():
    short = MIN_CALL_SECONDS / 4
    flags = _flags(rnn=Timing("", [short] * 5, per=200))
    assert len(flags["rnn"]) == 1 and "under the" in flags["rnn"][0]
    # a coarse clock raises the bar: a 1 ms call on a 10 µs clock is too short too
    coarse = flag_timings({"copy": Timing("copy", [1e-3] * 5)}, resolution=1e-5)
    assert "under the 10000 µs" in coarse["copy"].flags[0]


def test_implausible_backward_forward_ratio_is_flagged():
    # the figure the issue reported: 8,884 µs a step backward against 3.1 µs forward
    forward = Timing("", [3.1e-6 * 1000] * 5, per=1000)
    backward = Timing("", [8884e-6 * 1000] * 5, per=1000)
    flags = _flags(lstm=forward, lstm_backward=backward)
    assert flags["lstm"] == []
    assert flags["lstm.backward"] == [f"backward step 2.87e+03x its forward step "
                                      f"(plausible: {BACKWARD_RATIO[0]:g}x to {BACKWARD_RATIO[1]:g}x)"]
    # and a backward that costs nothing is no more plausible
    free = Timing("", [0.0001e-3 * 1000] * 5, per=1000)
    assert "its forward step" in _flags(gru=Timing("", [1e-3] * 5, per=1000), gru_backward=free)["gru.backward"][-1]


def test_flags_are_recomputed_not_accumulated():
    t = {"copy": Timing("copy", [1e-3, 5e-3, 1e-3, 5e-3, 3e-3])}
    flag_timings(t, resolution=RES)
    flag_timings(t, resolution=RES)
    assert len(t["copy"].flags) == 1


def test_median_is_per_unit():
    t = Timing("lstm", [2e-3, 4e-3, 3e-3], per=1000)
    assert abs(t.median - 3e-6) < 1e-15 and abs(t.spread - 2 / 3) < 1e-12
