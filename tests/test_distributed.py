"""The distributed engine (issue 14): blocks, checkpointing and the TP plan in
one process; DDP, FSDP2 and tensor parallelism on 2 gloo processes in one
combined launch (each spawn costs ~15 s of startup on the shared CPUs), and
`seqdsl bench --nproc 2` once end to end."""
from __future__ import annotations

import json
import re

import pytest
import torch

import seqdsl
from seqdsl.backend import distributed, measure
from seqdsl.backend.seqmodel import Block, build
from seqdsl.check.elaborate import load
from seqdsl.cli import main
from seqdsl.cost.parallel import ParallelError, parse_parallel

from small_specs import write_spec

torch.set_num_threads(1)

GPT = """model gpt {
    let d = 32
    input tokens: int[B, T]
    logits = tokens
        -> embed(64, d) as wte
        -> repeat(2) {
               residual { layernorm -> attention(4, causal=true) }
               residual { layernorm -> mlp(4 * d) }
           }
        -> layernorm
        -> linear(64, bias=false, tie=wte)
    output logits
}
"""

LSTM = """model lstm_lm {
    input tokens: int[B, T]
    logits = tokens
        -> embed(64, 32)
        -> repeat(2) { residual { layernorm -> lstm(32) } }
        -> layernorm
        -> linear(64)
    output logits
}
"""

HYBRID = """model hybrid {
    input tokens: int[B, T]
    logits = tokens
        -> embed(64, 32)
        -> repeat(2) {
               residual { rmsnorm -> mamba(state=8) }
               residual { rmsnorm -> attention(4, causal=true) }
               residual { rmsnorm -> swiglu(64) }
               residual { rmsnorm -> geglu(48, bias=true) }
           }
        -> rmsnorm
        -> linear(64)
    output logits
}
"""

SEQ, BATCH = {"T": 16}, 2


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    return {name: write_spec(d, text, f"{name}.seq") for name, text in
            (("gpt", GPT), ("lstm", LSTM), ("hybrid", HYBRID))}


def _estimate(path, parallel, recompute="none"):
    return seqdsl.estimate(path, seq=SEQ, batch=BATCH, parallel=parallel, recompute=recompute).points[0].per_device


# ------------------------------------------------------------------ one process
def test_blocks_are_the_repeat_copies_and_each_is_called_once(specs):
    model = build(specs["gpt"], seed=0)
    bl = distributed.blocks(model)
    assert [type(b) for b in bl] == [Block, Block]
    assert bl[0] is model.layers["logits"]["repeat[0]"] and bl[1] is model.layers["logits"]["repeat[1]"]
    calls = []
    for i, b in enumerate(bl):
        b.register_forward_pre_hook(lambda m, a, i=i: calls.append(i))
    x = measure.example_inputs(model._graph, {"B": 2, "T": 8})[0]
    model(x)
    assert calls == [0, 1]
    # streaming steps run layer by layer (no block call), with the same result
    state = model.init_state(2)
    out, _ = model.step(x, state=state)
    assert calls == [0, 1] and torch.allclose(out, model(x), atol=1e-5)
    # inference runs layer by layer unless a hook waits on a block (FSDP2): a block call
    # holds its input to its end, which the estimate's inference live set does not count
    plain = build(specs["gpt"], seed=0)
    live = measure.inference_live_bytes(plain, x)
    plain.blocks()[0].register_forward_pre_hook(lambda m, a: calls.append("inference"))
    assert measure.inference_live_bytes(plain, x) > live and calls[-1] == "inference"


def test_full_recompute_gives_the_same_gradients_and_saves_less(specs):
    graph = load(specs["gpt"]).model(None)
    x = measure.example_inputs(graph, {"B": 2, "T": 16})[0]
    grads, saved = [], []
    for mode in ("none", "full"):
        model = build(graph, seed=0)
        distributed.apply_checkpointing(model, mode)
        saved.append(measure.saved_bytes(model, x))
        model(x).square().mean().backward()
        grads.append([p.grad for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))
    # only what is saved outside the checkpointed blocks is left (the hooks see none inside)
    assert 0 < saved[1] < saved[0] / 4


def test_tp_plan_names_the_projections_and_the_replicated_layers(specs):
    model = build(specs["gpt"], seed=0)
    plan = model.tp_plan()
    styles = {k: type(v).__name__ for k, v in plan.items()}
    assert styles["layers.logits.repeat[[]0].residual[[]0].attention.q"] == "ColwiseParallel"
    assert styles["layers.logits.repeat[[]1].residual[[]0].attention.o"] == "RowwiseParallel"
    assert styles["layers.logits.repeat[[]0].residual[[]1].mlp.fc2"] == "RowwiseParallel"
    assert len(plan) == 2 * (4 + 2)
    replicated = {(name, kind) for name, kind, _ in distributed.tp_layout(model).replicated}
    assert replicated == {("logits.wte", "embed"), ("logits.linear", "linear")}
    hybrid = distributed.tp_layout(build(specs["hybrid"], seed=0))
    assert {k for _, k, _ in hybrid.replicated} == {"mamba", "linear", "embed"}


@pytest.mark.parametrize("layout, nproc, words", [
    ("dp=2,pp=2", 4, "pipeline and context"),
    ("dp=2,zero=1", 2, "zero=0 (DDP) and zero=3"),
    ("dp=4", 2, "--nproc 2"),
    ("dp=2,tp=2", 4, "not both"),
])
def test_layouts_the_engine_does_not_run_are_refused(layout, nproc, words):
    with pytest.raises(ParallelError, match=re.escape(words)):
        distributed.engine_mode(parse_parallel(layout), nproc)
    with pytest.raises(ParallelError, match="selective"):
        distributed.check_engine_recompute("selective")


def test_a_stuck_run_is_stopped_at_the_timeout(specs):
    job = {"spec": specs["gpt"], "seq": SEQ, "batch": BATCH, "parallel": "dp=2"}
    with pytest.raises(distributed.DistributedError, match="timeout of 1 s"):
        distributed.launch([job], 2, timeout=1)


def test_a_failing_worker_writes_its_reason(specs, tmp_path, monkeypatch):
    # one rank in-process (world 1): the launcher reads rank<r>.error
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(distributed.free_port()))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    job = {"spec": specs["gpt"], "seq": SEQ, "batch": BATCH, "parallel": "dp=2"}
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"jobs": [job], "out": str(tmp_path), "timeout": 30}))
    assert distributed.worker(str(cfg)) == 1
    assert (tmp_path / "rank0.error").read_text().startswith("ParallelError: --parallel dp=2 spans 2 devices, "
                                                              "but --nproc 1")


# ------------------------------------------------------------------ 2 processes, gloo
@pytest.fixture(scope="module")
def runs(specs):
    """Every distributed case in one launch: {(spec, parallel, recompute): [rank 0, rank 1]}."""
    cases = [(s, p, "none") for s in ("gpt", "lstm", "hybrid") for p in ("dp=2", "dp=2,zero=3")]
    cases += [("gpt", "tp=2", "none"), ("hybrid", "tp=2", "none"), ("gpt", "dp=2,zero=3", "full"),
              ("hybrid", "dp=2", "full")]
    jobs = [{"spec": specs[s], "seq": SEQ, "batch": BATCH, "parallel": p, "recompute": r, "steps": 2,
             "check": r == "none"} for s, p, r in cases]
    ranks = distributed.launch(jobs, 2, timeout=240)
    return {case: [ranks[0][i], ranks[1][i]] for i, case in enumerate(cases)}


def _same_as_one_process(r):
    assert r["grads_compared"] > 0
    assert r["grad_max_diff"] <= 1e-5 * max(1.0, r["grad_max"])
    for a, b in zip(r["losses"], r["ref_losses"], strict=True):
        assert abs(a - b) <= 1e-5 * max(1.0, abs(b))


@pytest.mark.parametrize("spec", ["gpt", "lstm", "hybrid"])
def test_ddp_and_fsdp_train_as_one_process_and_hold_what_the_estimate_says(runs, specs, spec):
    ddp, fsdp = runs[(spec, "dp=2", "none")], runs[(spec, "dp=2,zero=3", "none")]
    for r in ddp + fsdp:
        _same_as_one_process(r)
    est0 = _estimate(specs[spec], "dp=2")
    est3 = _estimate(specs[spec], "dp=2,zero=3")
    for r in ddp:
        assert (r["params_bytes"], r["grads_bytes"], r["optimizer_bytes"]) == (
            est0.weights_bytes, est0.grads_bytes, est0.optimizer_bytes)
    # DDP saves what one process saves at the same micro-batch
    graph = load(specs[spec]).model(None)
    one = measure.saved_bytes(build(graph, seed=0), *measure.example_inputs(graph, {"B": BATCH, **SEQ}))
    assert [r["saved_bytes"] for r in ddp] == [one, one]
    for r in fsdp:
        # the resident shards, half of everything, are the estimate's per-device state; the
        # largest layer gathered whole with its gradient is its own transient term
        assert (r["params_bytes"], r["grads_bytes"], r["optimizer_bytes"]) == (
            est3.weights_bytes, est3.grads_bytes, est3.optimizer_bytes)
        assert (r["params_bytes"], r["grads_bytes"]) == (est0.weights_bytes // 2, est0.grads_bytes // 2)
    assert est3.gathered_bytes > 0 and est0.gathered_bytes == 0


def test_full_recompute_saved_activations_are_within_ten_percent(runs, specs):
    for (spec, par) in (("gpt", "dp=2,zero=3"), ("hybrid", "dp=2")):
        est = _estimate(specs[spec], par, "full").activation_bytes
        for r in runs[(spec, par, "full")]:
            assert abs(r["saved_bytes"] / est - 1) <= 0.10, (spec, r["saved_bytes"], est)
            assert r["kept_block_inputs_bytes"] > 0 and r["block_saved_bytes"] > 0
            # recomputing changes no number: the same losses as the run that keeps everything
            assert r["losses"] == pytest.approx(runs[(spec, par, "none")][0]["losses"], rel=1e-6)


def test_tensor_parallel_equals_one_process(runs, specs):
    for spec in ("gpt", "hybrid"):
        for r in runs[(spec, "tp=2", "none")]:
            _same_as_one_process(r)
        a, b = runs[(spec, "tp=2", "none")]
        assert a["params_bytes"] == b["params_bytes"]
    gpt = runs[("gpt", "tp=2", "none")][0]
    # attention and mlp weights split in two; embed (tied head) and norms whole
    assert gpt["params_bytes"] < _estimate(specs["gpt"], "dp=2").weights_bytes * 0.6
    assert any("logits.wte (embed) replicated" in n for n in gpt["notes"])


# ------------------------------------------------------------------ the CLI
def test_bench_nproc_prints_each_rank_beside_the_estimate(specs, capsys):
    code = main(["bench", specs["gpt"], "--nproc", "2", "--parallel", "dp=2", "--seq", "16", "--batch", "2",
                 "--steps", "2", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert [r["rank"] for r in result["ranks"]] == [0, 1]
    est = result["estimate"]
    for r in result["ranks"]:
        assert (r["params_bytes"], r["grads_bytes"], r["optimizer_bytes"], r["saved_bytes"]) == (
            est["weights_bytes"], est["grads_bytes"], est["optimizer_bytes"], est["activation_bytes"])
        assert r["step_s"] > 0
    assert "2/2" in err      # the progress bar


@pytest.mark.parametrize("argv, words", [
    (["--parallel", "dp=2"], "add --nproc N"),
    (["--nproc", "2", "--parallel", "dp=2,pp=2"], "spans 4 devices"),
    (["--nproc", "2", "--recompute", "selective"], "selective"),
    (["--nproc", "2", "--seq", "16,32"], "give one value"),
    (["--nproc", "2", "--steps", "1"], "--steps 1"),
    (["--nproc", "2", "--dtype", "bfloat16"], "float32"),
])
def test_bench_nproc_flag_errors(specs, capsys, argv, words):
    base = ["bench", specs["gpt"], "--seq", "16"]
    if "--seq" in argv:
        base = base[:2]
    code = main(base + argv)
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err, err
