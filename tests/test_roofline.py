"""Roofline latency (`--hw`, seqdsl.cost.roofline): compute- and memory-bound ops
from the profile's own numbers, recurrent step floors, training vs forward,
profiles from files, CLI flags and JSON, and one sanity check against a
module timed on this machine."""
import json
import subprocess
import sys
import time

import pytest
import sympy

import seqdsl
from seqdsl.errors import UsageError
from small_specs import GPT, run_compile, write_spec
from seqdsl.cost.hardware import HardwareProfile, load_profile
from seqdsl.cost.roofline import latency, latency_exprs

BIG = "model big {\n input x: float[B, T, 4096]\n y = x -> linear(4096, bias=false)\n output y\n}\n"
TINY = "model tiny {\n input x: float[B, T, 4]\n y = x -> linear(4)\n output y\n}\n"
LSTM = "model rec {\n input x: float[B, T, 16]\n y = x -> lstm(32, layers=2)\n output y\n}\n"
ENCODER = "model enc {\n input x: float[B, T, 32]\n y = x -> attention(4)\n output y\n}\n"
MLPS = """model mlps {
    input x: float[B, T, 512]
    y = x -> linear(1024) -> linear(1024) -> linear(1024) -> linear(512)
    output y
}
"""



def test_large_matmul_is_compute_bound(tmp_path):
    h100 = load_profile("h100")
    (p,) = seqdsl.estimate(write_spec(tmp_path, BIG), seq=[4096], batch=8, hw="h100").points
    assert p.latency_forward_s == p.flops_forward / (h100.compute_efficiency * h100.peak("float32"))
    # and the bytes (weights, input, output) would have taken less time than that
    moved = 4 * (4096 * 4096 + 2 * 8 * 4096 * 4096)
    assert moved / (h100.memory_efficiency * h100.bandwidth) < p.latency_forward_s


def test_tiny_matmul_is_memory_bound(tmp_path):
    h100 = load_profile("h100")
    (p,) = seqdsl.estimate(write_spec(tmp_path, TINY), seq=[64], batch=2, hw=h100).points
    params = 4 * 4 + 4
    moved = 4 * (params + 2 * 2 * 64 * 4)            # weights + input read + output written, fp32
    assert p.latency_forward_s == moved / (h100.memory_efficiency * h100.bandwidth)
    assert p.flops_forward / (h100.compute_efficiency * h100.peak("float32")) < p.latency_forward_s
    # one generation step reads the weights (no state) against one position's FLOPs
    assert p.latency_per_token_s == 4 * params / (h100.memory_efficiency * h100.bandwidth)


def test_lstm_pays_its_steps_times_the_step_floor(tmp_path):
    graph = seqdsl.load(write_spec(tmp_path, LSTM)).model()
    cpu = load_profile("cpu")
    no_floor = cpu.model_copy(update={"step_latency": 0.0, "step_latencies": {}})
    slow = cpu.model_copy(update={"step_latency": 1e-3, "step_latencies": {}})
    points = [{"T": 10}, {"T": 1000}]
    base = latency(graph, no_floor, "float32", points, 4)
    with_floor = latency(graph, slow, "float32", points, 4)
    for b, w, t in zip(base, with_floor, (10, 1000)):
        assert w["forward"] - b["forward"] == pytest.approx(2 * t * 1e-3)      # layers·T steps
        assert w["train"] - b["train"] == pytest.approx(2 * 2 * t * 1e-3)      # and back through time
        assert w["per_token"] - b["per_token"] == pytest.approx(2 * 1e-3)      # one step per layer
    # the floor dominates a long thin recurrence: latency grows linearly in T
    assert with_floor[1]["forward"] / with_floor[0]["forward"] == pytest.approx(100, rel=0.01)


def test_each_recurrent_kind_pays_its_own_floor_forward_and_backward(tmp_path):
    """A CPU runs GRU and RNN step by step but the LSTM fused: per-kind floors
    (forward and backward through time) replace the default for that kind only."""
    text = "model mix {\n input x: float[B, T, 16]\n y = x -> lstm(16) -> gru(16, layers=2)\n output y\n}\n"
    graph = seqdsl.load(write_spec(tmp_path, text)).model()
    base = load_profile("cpu").model_copy(update={"step_latency": 1e-6, "step_latencies": {}})
    kinds = base.model_copy(update={"step_latencies": {"gru": 5e-5, "gru.backward": 3e-4}})
    assert kinds.step_floor("gru") == 5e-5 and kinds.step_floor("gru.backward") == 3e-4
    assert kinds.step_floor("lstm.backward") == kinds.step_floor("") == 1e-6
    points = [{"T": 100}]
    (b,), (k,) = latency(graph, base, "float32", points, 2), latency(graph, kinds, "float32", points, 2)
    gru_steps = 2 * 100                                   # layers·T, the LSTM's steps unchanged
    assert k["forward"] - b["forward"] == pytest.approx(gru_steps * (5e-5 - 1e-6))
    assert k["train"] - b["train"] == pytest.approx(gru_steps * (5e-5 - 1e-6) + gru_steps * (3e-4 - 1e-6))
    assert k["per_token"] - b["per_token"] == pytest.approx(2 * (5e-5 - 1e-6))
    # the closed form agrees with the fast evaluator
    exprs = latency_exprs(graph, kinds, "float32")
    assert float(exprs["train"].subs({sympy.Symbol("T", integer=True, positive=True): 100,
                                      sympy.Symbol("B", integer=True, positive=True): 2})) == pytest.approx(k["train"])


def test_recurrent_steps_read_the_hidden_weights_each_step(tmp_path):
    """Batch 1, a wide hidden state: each of the T steps is bound by reading
    W_hh (4·h·h floats), so the forward is at least T·layers times that."""
    graph = seqdsl.load(write_spec(tmp_path, "model w {\n input x: float[B, T, 64]\n y = x -> lstm(1024)\n"
                                         " output y\n}\n")).model()
    h100 = load_profile("h100").model_copy(update={"step_latency": 0.0})
    (t,) = latency(graph, h100, "float32", [{"T": 512}], 1)
    per_step = 4 * 1024 * 1024 * 4 / (h100.memory_efficiency * h100.bandwidth)
    assert t["forward"] >= 512 * per_step
    assert t["forward"] < 512 * per_step * 1.1


def test_training_is_slower_than_forward_for_every_bundled_spec_and_profile():
    from pathlib import Path
    specs = sorted(Path(__file__).resolve().parent.parent.joinpath("specs").glob("*.seq"))
    assert specs
    for spec in specs:
        graph = seqdsl.load(spec).model()
        point = {d: 256 for d in graph.seq_symbols}
        for hw in ("h100", "h200", "a100", "cpu"):
            (t,) = latency(graph, load_profile(hw), "float32", [point], 2)
            assert t["train"] > t["forward"] > 0, (spec.name, hw)


def test_h100_beats_the_cpu_and_h200_bandwidth_helps_decoding(tmp_path):
    gpt = write_spec(tmp_path, GPT)
    fast = seqdsl.estimate(gpt, seq=[1024], batch=8, hw="h100").points[0]
    slow = seqdsl.estimate(gpt, seq=[1024], batch=8, hw="cpu").points[0]
    for key in ("latency_forward_s", "latency_train_s", "latency_per_token_s"):
        assert getattr(fast, key) < getattr(slow, key), key
    # decoding is memory bound: the H200's 4.8 TB/s beats the H100's 3.35 TB/s by that ratio
    h200 = seqdsl.estimate(gpt, seq=[1024], batch=1, hw="h200", dtype="bfloat16").points[0]
    h100 = seqdsl.estimate(gpt, seq=[1024], batch=1, hw="h100", dtype="bfloat16").points[0]
    assert h100.latency_per_token_s / h200.latency_per_token_s == pytest.approx(4.8 / 3.35)


def test_sympy_form_agrees_with_the_fast_evaluator(tmp_path):
    for text in (GPT, LSTM, ENCODER):
        graph = seqdsl.load(write_spec(tmp_path, text)).model()
        for hw in ("h100", "cpu"):
            profile = load_profile(hw)
            exprs = latency_exprs(graph, profile, "float32")
            assert set(exprs) == {"forward", "train", "per_token"}
            for t, b in ((1, 1), (100, 3), (5000, 16)):
                (fast,) = latency(graph, profile, "float32", [{"T": t}], b)
                subs = {sympy.Symbol("T", integer=True, positive=True): t,
                        sympy.Symbol("B", integer=True, positive=True): b}
                for key, expr in exprs.items():
                    if expr is None:
                        assert fast[key] is None and text is ENCODER
                        continue
                    assert float(expr.xreplace(subs)) == pytest.approx(fast[key], rel=1e-9), (key, t, b)


def test_bad_hw_exits_2_with_one_line(capsys, tmp_path):
    gpt = write_spec(tmp_path, GPT)
    code, out, err = run_compile(capsys, gpt, "--estimate", "--hw", "nosuch")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "nosuch" in err and "h100" in err and "Traceback" not in err
    with pytest.raises(UsageError):
        seqdsl.estimate(gpt, seq=[64], hw="nosuch")


@pytest.mark.parametrize("content", ["{not json", '{"name": "x"}', '{"name": "x", "peak_flops": {"float32": 1e12}, '
                                     '"bandwidth": -1, "step_latency": 0}', "[]"])
def test_invalid_profile_file_exits_2(capsys, tmp_path, content):
    gpt = write_spec(tmp_path, GPT)
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, out, err = run_compile(capsys, gpt, "--estimate", "--hw", str(bad))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "not a valid hardware profile" in err and "Traceback" not in err


def test_profile_from_a_json_file(capsys, tmp_path):
    big = write_spec(tmp_path, BIG)
    mine = {"name": "mine", "peak_flops": {"float32": 1e13}, "bandwidth": 1e11,
            "compute_efficiency": 0.5, "memory_efficiency": 0.25, "step_latency": 1e-6}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(mine))
    code, out, _ = run_compile(capsys, big, "--estimate", "--json", "--seq", "2048", "--hw", str(path))
    assert code == 0
    obj = json.loads(out)
    assert obj["hw"] == "mine"
    (p,) = obj["points"]
    flops, moved = p["flops_forward"], 4 * (4096 * 4096 + 2 * 2048 * 4096)
    assert p["latency_forward_s"] == max(flops / (0.5 * 1e13), moved / (0.25 * 1e11))
    # an unknown dtype falls back to the profile's slowest listed peak
    (q,) = seqdsl.estimate(big, seq=[2048], hw=str(path), dtype="bfloat16").points
    assert q.latency_forward_s == max(flops / (0.5 * 1e13), moved / 2 / (0.25 * 1e11))


def test_json_gains_latency_keys_only_with_hw(capsys, tmp_path):
    gpt, enc = write_spec(tmp_path, GPT, "gpt.seq"), write_spec(tmp_path, ENCODER, "enc.seq")
    keys = {"latency_forward_s", "latency_train_s", "latency_per_token_s"}
    code, out, _ = run_compile(capsys, gpt, "--estimate", "--json", "--seq", "64,1024", "--hw", "a100")
    obj = json.loads(out)
    assert code == 0 and obj["hw"] == "a100"
    for p in obj["points"]:
        assert keys <= set(p) and all(type(p[k]) is float and p[k] > 0 for k in keys)
    assert obj["points"][1]["latency_forward_s"] > obj["points"][0]["latency_forward_s"]
    _, out, _ = run_compile(capsys, enc, "--estimate", "--json", "--seq", "64", "--hw", "a100")
    (p,) = json.loads(out)["points"]
    assert p["latency_per_token_s"] is None and p["latency_forward_s"] > 0
    _, out, _ = run_compile(capsys, gpt, "--estimate", "--json", "--seq", "64")
    obj = json.loads(out)
    assert "hw" not in obj and not keys & set(obj["points"][0])


def test_table_gains_latency_columns_in_human_units(capsys, tmp_path):
    gpt, enc = write_spec(tmp_path, GPT, "gpt.seq"), write_spec(tmp_path, ENCODER, "enc.seq")
    code, out, _ = run_compile(capsys, gpt, "--estimate", "--seq", "64,65536", "--batch", "8", "--hw", "h100")
    assert code == 0 and "roofline on h100" in out
    head, _, first, last = out.splitlines()[1:5]
    assert head.split()[-5:] == ["time", "fwd", "time", "train", "time/token"]
    assert first.split()[-5] == "µs" and first.split()[-1] == "ns"       # forward, per token
    assert last.split()[-5] in ("ms", "s")
    _, plain, _ = run_compile(capsys, gpt, "--estimate", "--seq", "64")
    assert "time fwd" not in plain and "roofline" not in plain
    _, out, _ = run_compile(capsys, enc, "--estimate", "--seq", "64", "--hw", "cpu")
    assert out.splitlines()[3].rstrip().endswith("-")          # no per-token figure


def test_hw_does_not_import_torch(tmp_path):
    gpt = write_spec(tmp_path, GPT)
    code = ("import sys; from seqdsl.cli import main; "
            f"rc = main(['compile', {gpt!r}, '--estimate', '--json', '--hw', 'h100']); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_prediction_is_within_10x_of_a_timed_module(tmp_path):
    """Sanity, not a benchmark: a matmul-dominated stack, timed eagerly, against
    a profile calibrated in the same run (this machine's load changes both)."""
    torch = pytest.importorskip("torch")
    from seqdsl.backend.calibrate import calibrate
    spec = write_spec(tmp_path, MLPS)
    module = seqdsl.build(spec, seed=0).eval()
    x = torch.randn(8, 256, 512)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # a busy 2-core machine stalls multi-threaded kernels unevenly
    try:
        with torch.no_grad():
            module(x)
            measured = min(_timed(lambda: module(x)) for _ in range(5))
        profile = calibrate(quick=True)
    finally:
        torch.set_num_threads(threads)
    (t,) = latency(seqdsl.load(spec).model(), profile, "float32", [{"T": 256}], 8)
    assert 0.1 < measured / t["forward"] < 10, (measured, t["forward"])


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def test_hardware_profile_is_plain_json():
    # bundled profiles round-trip and name themselves
    for name in ("h100", "h200", "a100", "cpu"):
        p = load_profile(name)
        assert p.name == name and HardwareProfile.model_validate_json(p.model_dump_json()) == p


def test_per_layer_rows_split_the_forward_time_and_name_the_bound(capsys, tmp_path):
    spec = write_spec(tmp_path, "model kws {\n input x: float[B, T, 40]\n y = x -> conv1d(64, kernel=3, padding=causal)"
                            " -> relu -> gru(64) -> linear(4096) -> linear(4096)\n output y\n}\n")
    code, out, _ = run_compile(capsys, spec, "--estimate", "--json", "--per-layer", "--seq", "512", "--batch", "64",
                        "--hw", "h100")
    obj = json.loads(out)
    rows = {r["kind"]: r for r in obj["layers"]}
    assert rows["relu"]["bound"] == "memory" and rows["gru"]["bound"] == "steps"
    assert rows["linear"]["bound"] == "compute"      # the second 4096 x 4096 product (same kind, last row wins)
    total = sum(r["latency_forward_s"] for r in obj["layers"])
    assert total == pytest.approx(obj["points"][0]["latency_forward_s"], rel=1e-12)
    code, out, _ = run_compile(capsys, spec, "--estimate", "--per-layer", "--seq", "512", "--hw", "h100")
    assert code == 0 and "bound" in out and "steps" in out
    _, out, _ = run_compile(capsys, spec, "--estimate", "--per-layer", "--seq", "512")
    assert "bound" not in out
