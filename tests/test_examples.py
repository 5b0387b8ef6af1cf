"""The examples/ scripts, run as a user runs them (`--smoke`, in a subprocess,
into a temporary directory), checked against seqdsl itself: crossovers flip
exactly at T (direct evaluation at T - 1 and T), the regime winners are the
cheapest models, and each pipeline's winner respects its budget and rules,
with a written .seq that parses back to the estimated model."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import seqdsl

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CONTENDERS = ("transformer", "lstm", "mamba2", "gated_deltanet", "hybrid")


def run_example(name: str, out: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--smoke", "--out", str(out), *args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r


@pytest.fixture(scope="module")
def regimes(tmp_path_factory):
    out = tmp_path_factory.mktemp("transformer_vs_rnn")
    r = run_example("transformer_vs_rnn", out)
    return r, out, json.loads((out / "transformer_vs_rnn.json").read_text())


def models():
    return {n: seqdsl.load(EXAMPLES / "transformer_vs_rnn" / f"{n}.seq").model(n)
            for n in CONTENDERS}


def direct(graph, field: str, T: int, batch: int) -> int:
    return getattr(seqdsl.estimate(graph, seq=T, batch=batch).points[0], field)


def test_the_five_language_models_are_comparable_in_size(regimes):
    _, _, data = regimes
    params = {n: g.params for n, g in models().items()}
    assert data["params"] == params and list(params) == list(CONTENDERS)
    assert all(10e6 <= p <= 20e6 for p in params.values())
    assert max(params.values()) / min(params.values()) < 1.1


def test_crossovers_flip_exactly_at_T(regimes):
    _, _, data = regimes
    graphs = models()
    assert set(data["crossovers"]) >= {"flops_train", "sequential_depth", "train_memory", "state_bytes",
                                       "flops_per_token"}
    n = 0
    for metric, found in data["crossovers"].items():
        field, batch = data["metrics"][metric]["field"], data["metrics"][metric]["batch"]
        for x in found:
            hi, lo = x["between"]
            T = x["T"]
            at = {s: direct(graphs[s], field, T, batch) for s in (hi, lo)}
            before = {s: direct(graphs[s], field, T - 1, batch) for s in (hi, lo)}
            assert at[hi] > at[lo], (metric, x)            # the costlier one from T on
            assert before[hi] <= before[lo], (metric, x)   # ... and not at T - 1
            assert x["at"] == at and x["before"] == before
            n += 1
    assert n >= 5
    # the LSTM's T steps per layer overtake the transformer's constant depth at one exact length
    depth = [x for x in data["crossovers"]["sequential_depth"] if set(x["between"]) == {"lstm", "transformer"}]
    assert len(depth) == 1 and depth[0]["between"][0] == "lstm"


def test_regime_winners_are_the_cheapest_models(regimes):
    r, out, data = regimes
    graphs = models()
    assert {row["regime"] for row in data["regimes"]} == {"short", "medium", "long"}
    for row in data["regimes"]:
        field = data["metrics"][row["metric"]]["field"]
        values = {n: direct(g, field, row["at"], row["batch"]) for n, g in graphs.items()}
        assert row["values"] == values
        for piece in row["pieces"]:          # each piece's winners are the minimum where it starts
            vals = {n: direct(g, field, piece["from"], row["batch"]) for n, g in graphs.items()}
            assert piece["winners"] == [n for n in vals if vals[n] == min(vals.values())]
        last = row["pieces"][-1]["winners"]
        if row["at"] >= row["pieces"][-1]["from"]:
            assert [n for n in values if values[n] == min(values.values())] == last
    long_state = next(row for row in data["regimes"] if row["regime"] == "long" and row["metric"] == "state_bytes")
    v = long_state["values"]
    assert v["transformer"] > v["hybrid"] > v["mamba2"] > v["gated_deltanet"] > v["lstm"]
    md = (out / "transformer_vs_rnn.md").read_text()
    assert "| regime | metric | winner |" in md and md in r.stdout
    assert not (out / "transformer_vs_rnn.png").exists()      # --smoke draws no plot


def test_generation_state_parts_add_up_to_the_estimate(regimes):
    """The state figure's parts: each model's per-kind parts sum to the
    estimate's state_bytes; the hybrid's KV cache is its 3 attention layers'
    keys and values (6 heads x 64, float32) over min(T, 512) positions, its
    Mamba-2 states a constant; the pure recurrent models have no KV cache."""
    _, _, data = regimes
    graphs = models()
    ts, parts = data["state_T"], data["state_parts"]
    for name, g in graphs.items():
        totals = [p.state_bytes for p in seqdsl.estimate(g, seq=ts, batch=data["gen_batch"]).points]
        assert [sum(col) for col in zip(*parts[name].values())] == totals, name
    hybrid = parts["hybrid"]
    assert set(hybrid) == {"KV cache (attention)", "mamba2 state"}
    assert hybrid["KV cache (attention)"] == [3 * 2 * 384 * min(T, 512) * 4 for T in ts]
    assert len(set(hybrid["mamba2 state"])) == 1 and hybrid["mamba2 state"][0] > 0
    assert parts["transformer"] == {"KV cache (attention)": [6 * 2 * 384 * T * 4 for T in ts]}
    for name in ("lstm", "mamba2", "gated_deltanet"):
        assert list(parts[name]) == [f"{name} state"] and len(set(parts[name][f"{name} state"])) == 1
    # 3 of the pure Mamba-2 model's 11 layers: the hybrid's recurrent part is 3/11 of its state
    assert hybrid["mamba2 state"][0] * 11 == parts["mamba2"]["mamba2 state"][0] * 3


def check_pipeline(out: Path, stem: str) -> dict:
    """The winner respects every rule; nothing that also passes them is cheaper;
    its .seq parses back to the model that was estimated."""
    data = json.loads((out / f"{stem}.json").read_text())
    rows = {r["name"]: r for r in data["candidates"]}
    win = rows[data["winner"]]
    assert win["training_bytes"] <= data["budget_bytes"] and win["params"] >= data["min_params"]
    fits = [r for r in rows.values() if data["verdicts"][r["name"]] == "fits"]
    assert win in fits and win["flops_train"] == min(r["flops_train"] for r in fits)
    for r in rows.values():   # each verdict is true of its figures
        v = data["verdicts"][r["name"]]
        if v == "fits":
            assert r["training_bytes"] <= data["budget_bytes"] and r["params"] >= data["min_params"]
        elif v == "over the memory budget":
            assert r["training_bytes"] > data["budget_bytes"]
        elif v == "too small":
            assert r["params"] < data["min_params"]
    graph = seqdsl.load(out / f"{stem}_winner.seq").model()
    assert graph.name == win["name"] and graph.params == win["params"]
    p = seqdsl.estimate(graph, seq=data["frames"], batch=data["batch"]).points[0]
    assert (p.flops_train, p.training_bytes) == (win["flops_train"], win["training_bytes"])
    assert not (out / f"{stem}.png").exists()
    return data


def test_speech_pipeline_picks_under_the_budget(tmp_path):
    # 0.75 GiB: the windowed recogniser is cheaper in FLOPs but its banded
    # kernel saves the probabilities, so it misses the budget
    r = run_example("speech_pipeline", tmp_path, "--budget-gib", "0.75")
    data = check_pipeline(tmp_path, "speech_pipeline")
    rows = {x["name"]: x for x in data["candidates"]}
    win = rows[data["winner"]]
    assert win["ctc_frames"] >= data["chars"] and "_full_" in win["name"]
    cheaper = [x for x in rows.values() if x["flops_train"] < win["flops_train"]]
    assert any(data["verdicts"][x["name"]] == "over the memory budget" for x in cheaper)
    assert any(data["verdicts"][x["name"]].startswith("too few CTC frames") for x in cheaper)
    for x in rows.values():   # CTC length from the symbolic shape: ceil(frames / subsampling)
        factor = int(x["name"].split("_")[1][1:])
        assert x["ctc_frames"] == -(-data["frames"] // factor)
    assert f"winner: {win['name']}" in r.stdout


def test_speech_pipeline_with_nothing_under_the_budget_writes_no_winner(tmp_path):
    (tmp_path / "speech_pipeline_winner.seq").write_text("stale")
    r = run_example("speech_pipeline", tmp_path, "--budget-gib", "0.1")
    data = json.loads((tmp_path / "speech_pipeline.json").read_text())
    assert data["winner"] is None and "no candidate fits" in r.stdout
    assert not (tmp_path / "speech_pipeline_winner.seq").exists()


def test_video_pipeline_picks_under_the_budget(tmp_path):
    run_example("video_pipeline", tmp_path, "--budget-gib", "4")
    data = check_pipeline(tmp_path, "video_pipeline")
    assert any(v == "over the memory budget" for v in data["verdicts"].values())
    graph = seqdsl.load(tmp_path / "video_pipeline_winner.seq").model()
    assert [str(d) for d in graph.inputs["clip"].dims] == ["B", "T", "128", "128", "3"]


def test_streaming_speech_streams_what_the_estimate_says(tmp_path):
    """The streaming example's own checks, re-derived from its JSON and seqdsl:
    the chunked step() output equals the full forward, the state after every
    chunk is exactly seqdsl.estimate's state_bytes (the conv windows and the
    RG-LRU states), frame by frame it never exceeds it, and FlopCounterMode's
    count of one stride period of single-frame steps is the estimate's
    per-frame cost times the stride."""
    r = run_example("streaming_speech", tmp_path)
    data = json.loads((tmp_path / "streaming_speech.json").read_text())
    graph = seqdsl.load(EXAMPLES / "streaming_speech.seq").model()
    p = seqdsl.estimate(graph, seq=data["frames"], batch=1).points[0]
    assert data["params"] == graph.params and data["stride"] == 4
    assert data["chunks"] * data["chunk_frames"] == data["frames"] and data["out_frames"] == data["frames"] // 4
    assert data["streamed_equals_full"] and data["max_abs_diff"] <= 1e-4
    assert data["state_bytes_estimate"] == p.state_bytes > 0
    assert data["state_bytes_measured"] == [p.state_bytes] * data["chunks"] and data["state_agrees"]
    # mid-stride a conv window holds fewer frames: smaller, never larger
    assert data["frame_state_min"] < data["frame_state_max"] == p.state_bytes
    assert data["flops_per_frame_estimate"] == p.flops_per_token
    assert data["flops_period_measured"] == 4 * p.flops_per_token and data["flops_agree"]
    assert len(data["latency_ms"]) == data["chunks"] and all(t > 0 for t in data["latency_ms"])
    md = (tmp_path / "streaming_speech.md").read_text()
    assert md in r.stdout and "| NO" not in md


@pytest.mark.parametrize("name,args", [("speech_pipeline", ["--budget-gib", "-1"]),
                                       ("streaming_speech", ["--chunk-ms", "30"]),
                                       ("video_pipeline", ["--frames", "many"]),
                                       ("transformer_vs_rnn", ["--bogus"])])
def test_bad_flags_exit_2_with_one_line(tmp_path, name, args):
    r = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--smoke", "--out", str(tmp_path), *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "error" in r.stderr
    assert not list(tmp_path.iterdir())
