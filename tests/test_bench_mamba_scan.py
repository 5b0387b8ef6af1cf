"""Smoke test of benchmarks/mamba_scan.py at a short length: the results files
have their rows, the two lowerings compute the same layer, and the bytes each
scan keeps for backward are as docs/recurrent_layers.md says (the loop its
states and decays, a read-out after it the states twice, the chunked scan
many times more). Timings are not asserted (speed lives in benchmarks/)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from test_backend_build import one_thread  # noqa: E402,F401  (autouse)

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def test_mamba_scan_benchmark_runs_and_compares_like_with_like(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))            # the script imports interleaved.py beside it
    spec = importlib.util.spec_from_file_location("bench_mamba_scan", BENCH / "mamba_scan.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--lengths", "40", "--reps", "1", "--out", str(tmp_path)])
    res = json.loads((tmp_path / "mamba_scan.json").read_text())
    layer, scan = res["layer"]["40"], res["scan"]["40"]
    assert layer["max_abs_diff"] < 1e-5
    assert all(layer[k]["median_ms"] > 0 for k in ("loop", "chunked", "attention"))
    saved = {k: v["saved_bytes"] for k, v in scan.items()}
    state, t = 512 * 16 * 4, 40
    assert saved["loop, read-out in it"] == (2 * t + 1) * state + t * 16 * 4   # T + 1 states, the decays, C
    assert saved["loop, read-out after"] == 3 * t * state + t * 16 * 4         # h_0..h_{T-1}, the decays,
                                                                               # the states' stack, C
    assert saved["chunked"] > 10 * t * state
    md = (tmp_path / "mamba_scan.md").read_text()
    assert "| 40 | loop, read-out in it |" in md and md.count("\n| 40 |") == 4
