"""`seqdsl bench`: real latency and peak memory of the built module, per length."""
from __future__ import annotations

import importlib.util
import json

import pytest

pytest.importorskip("torch")

from seqdsl.cli import main  # noqa: E402
from small_specs import write_spec  # noqa: E402

SPEC = """model tiny {
    input x: float[B, T, 16]
    y = x -> linear(32)
        -> residual { layernorm -> attention(2, causal=true) }
        -> mlp(64)
    output y
}
"""
PARAMS = 16 * 32 + 32 + 2 * 32 + 4 * (32 * 32 + 32) + 32 * 64 + 64 + 64 * 32 + 32


@pytest.fixture
def spec(tmp_path):
    return write_spec(tmp_path, SPEC, "tiny.seq")


def _bench(capsys, *argv):
    assert main(["bench", *argv]) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


@pytest.mark.parametrize("compile_args", [[], ["--compile", "--backend", "eager"]], ids=["eager", "compiled"])
def test_bench_json_times_and_peaks(spec, capsys, compile_args):
    out, err = _bench(capsys, spec, "--seq", "8,32", "--batch", "2", "--reps", "2", "--json", *compile_args)
    obj = json.loads(out)
    assert obj["model"] == "tiny" and obj["device"] == "cpu" and obj["compile"] is bool(compile_args)
    assert [p["seq"] for p in obj["points"]] == [{"T": 8}, {"T": 32}]
    weights = 4 * PARAMS
    for p in obj["points"]:
        assert p["batch"] == 2
        assert p["forward_s"] > 0 and p["train_s"] > 0
        inputs = 4 * 2 * p["seq"]["T"] * 16
        # inference: weights, inputs and at least the output are live; training adds
        # gradients and Adam's two moments (a third and fourth copy of the weights)
        assert p["inference_peak_bytes"] >= weights + inputs + 4 * 2 * p["seq"]["T"] * 32
        assert p["peak_bytes"] >= 4 * weights + inputs
    a, b = obj["points"]
    assert b["inference_peak_bytes"] > a["inference_peak_bytes"] and b["peak_bytes"] > a["peak_bytes"]
    assert "2/2" in err                                 # the progress bar ran to the end


def test_bench_table(spec, capsys):
    out, _ = _bench(capsys, spec, "--seq", "8", "--reps", "1")
    assert out.startswith("bench tiny on cpu, float32, eager")
    assert "train step" in out and "infer peak" in out and "T=8" in out


def test_bench_hw_adds_predictions(spec, capsys):
    out, err = _bench(capsys, spec, "--seq", "8", "--reps", "1", "--json", "--hw", "cpu")
    p = json.loads(out)["points"][0]
    if importlib.util.find_spec("seqdsl.cost.roofline") is None:
        assert "forward_pred_s" not in p and "no roofline model" in err
        return
    assert p["forward_pred_s"] > 0 and p["train_pred_s"] > p["forward_pred_s"]
    assert p["forward_ratio"] == pytest.approx(p["forward_pred_s"] / p["forward_s"])


@pytest.mark.parametrize("argv,message", [
    (["--seq", "8", "--backend", "tvm"], "unknown --backend 'tvm'"),
    (["--seq", "8", "--reps", "0"], "--reps must be at least 1"),
    (["--seq", "8,x"], "not a positive integer"),
    (["--seq", "8", "--device", "cuda"], "no CUDA device"),
    (["--seq", "8", "--hw", "nope"], "unknown hardware profile"),
])
def test_bench_usage_errors(spec, capsys, argv, message):
    import torch
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["bench", spec, *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_bench_needs_seq(spec, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", spec])
    assert exc.value.code == 2 and "--seq" in capsys.readouterr().err
