"""Per-device estimates under parallelism (issue 14) against their anchors, on
their own ground: Megatron-LM's theoretical memory (GPT configs under TP, PP,
SP, the distributed optimizer and selective recompute), DeepSpeed's ZeRO-2
and ZeRO-3 model-state estimators, and the Korthikanti et al. (2022)
activation table. The reference formulas are written out here from their
sources; where seqdsl differs on purpose, the difference is a named, exact
term (docs/cost_model.md, "Per device, under parallelism")."""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import pytest

import seqdsl
from seqdsl.cli.app import main
from seqdsl.cost.parallel import Parallel, ParallelError, parse_bytes, parse_parallel
from seqdsl.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
GPT_TEXT = (ROOT / "tests" / "gpt_megatron.seq").read_text()
V, H, A = 51200, 1024, 16          # tests/gpt_megatron.seq
S, B = 2048, 1
E = 2                               # bfloat16


def gpt(layers: int):
    return seqdsl.parse(GPT_TEXT.replace("let layers = 8", f"let layers = {layers}"), "gpt_megatron.seq").model()


def device(layers: int, layout: str, recompute: str = "none", seq: int = S, batch: int = B, optimizer="adam"):
    est = seqdsl.estimate(gpt(layers), seq=seq, batch=batch, dtype="bfloat16", optimizer=optimizer,
                          parallel=layout, recompute=recompute)
    return est.points[0].per_device


def per_layer(layout: str, recompute: str = "none") -> int:
    """One layer's activation bytes on a device: the model with 2 layers less the one with 1."""
    return device(2, layout, recompute).activation_bytes - device(1, layout, recompute).activation_bytes


# ------------------------------------------------------------------ Korthikanti et al. 2022, Table 2
def korthikanti(s, b, h, a, t=1, sp=False, recompute="none") -> Fraction:
    """Activation bytes of one GPT layer at 16 bits (Korthikanti et al. 2022, Table 2)."""
    sbh = s * b * h
    if recompute == "full":
        return Fraction(2 * sbh, t if sp else 1)
    if recompute == "selective":
        assert sp
        return Fraction(34 * sbh, t)
    if sp:
        return Fraction(sbh * (34 * h + 5 * a * s), h * t)
    return sbh * (10 + Fraction(24, t) + Fraction(5 * a * s, h * t))


def ours_minus_korthikanti(s, b, h, a, t=1, sp=False, recompute="none") -> Fraction:
    """The deliberate differences, exact: the two dropout masks after attention and
    the feed-forward, and attention's dropout mask, are kept at the compute dtype
    (2 bytes: the float mask PyTorch's dropout saves on the CPU, as the
    single-device estimate counts it) where the paper counts 1 byte; each
    LayerNorm keeps its mean and rstd per row (2 x 2 bytes a position at bf16,
    as aten saves them), which the paper omits;
    under selective recompute the kept flash-style attention keeps its fp32
    log-sum-exp (4 bytes per head and position). Replicated tensors split by
    t only under SP."""
    sbh, sb = s * b * h, s * b
    masks = 2 * sbh                      # two sbh masks at 2 bytes instead of 1
    ln_stats = 2 * 4 * sb
    if recompute == "full":
        return Fraction(0)
    if recompute == "selective":
        return Fraction(masks + 4 * a * sb + ln_stats, t)
    scores_mask = a * s * s * b          # attention's mask: as²b more
    if sp:
        return Fraction(masks + scores_mask + ln_stats, t)
    return masks + Fraction(scores_mask, t) + ln_stats


@pytest.mark.parametrize("t,sp,recompute", [
    (1, False, "none"), (2, False, "none"), (4, False, "none"),
    (2, True, "none"), (4, True, "none"),
    (2, True, "selective"), (4, True, "selective"),
    (1, False, "full"), (4, True, "full")])
def test_korthikanti_activation_table(t, sp, recompute):
    layout = f"tp={t}" + (",sp" if sp else "")
    ours = per_layer(layout, recompute)
    want = korthikanti(S, B, H, A, t, sp, recompute) + ours_minus_korthikanti(S, B, H, A, t, sp, recompute)
    assert ours == want, (ours, float(want), float(korthikanti(S, B, H, A, t, sp, recompute)))


def test_korthikanti_structure_without_the_differences():
    """What the table says, held without any correction: TP+SP divides the
    whole layer by t; full recompute keeps 2sbh a layer; selective recompute
    removes the s² term."""
    assert per_layer("tp=4,sp") * 4 == per_layer("tp=1")
    assert per_layer("tp=1", "full") == 2 * S * B * H
    sel = [per_layer("tp=2,sp", "selective") for _ in range(1)][0]
    long_sel = device(2, "tp=2,sp", "selective", seq=2 * S).activation_bytes \
        - device(1, "tp=2,sp", "selective", seq=2 * S).activation_bytes
    assert long_sel == 2 * sel           # linear in s: no as²b term left


# ------------------------------------------------------------------ Megatron-LM theoretical memory
def megatron_weight_and_optimizer(L, h, v, tp, pp, dp, distributed_optimizer):
    """megatron/training/theoretical_memory_usage.py, compute_weight_and_optimizer_memory,
    for a GPT with LayerNorm, no GQA, no MoE, tied embeddings."""
    norm_size = 2
    layer = 2 * h * h * 2 + 2 * h * (4 * h + norm_size)      # attention (1 + 1)·1, MLP ffn=4h, two norms
    block = layer * L + norm_size * h                         # + final layernorm
    embedding = h * v
    most_loaded = (Fraction(block, pp) + embedding) / tp
    per_param = 18 if not distributed_optimizer else 6 + Fraction(12, dp)
    return most_loaded, most_loaded * per_param


@pytest.mark.parametrize("L,tp,pp,dp,dist", [
    (8, 1, 1, 1, False), (8, 2, 1, 4, False), (8, 4, 2, 8, False),
    (8, 2, 2, 8, True), (8, 1, 4, 16, True), (8, 8, 1, 2, True)])
def test_megatron_weights_and_optimizer(L, tp, pp, dp, dist):
    layout = f"dp={dp},tp={tp},pp={pp}" + (",zero=1" if dist else "")
    d = device(L, layout)
    meg_params, meg_bytes = megatron_weight_and_optimizer(L, H, V, tp, pp, dp, dist)
    # the device's parameters: first stage (the most loaded by activations) holds the embedding
    # and L/pp layers. Deliberate difference: norms are replicated over tp (Megatron's formula
    # divides them by tp) and the final norm sits on the last stage (Megatron spreads it over pp).
    ours_params = Fraction(d.weights_bytes, E)
    norms = Fraction(2 * 2 * H * L, pp)
    final = 2 * H
    assert ours_params - meg_params == norms - norms / tp - (Fraction(final, pp * tp) if pp > 1 else final / tp - final)
    # bytes a parameter: Megatron keeps fp32 gradients (main_grad, 4 bytes); seqdsl counts the
    # gradients autograd leaves in the compute dtype (2 bytes). Adam: fp32 master + two moments = 12.
    per_param = Fraction(d.weights_bytes + d.grads_bytes + d.optimizer_bytes, 1) / ours_params
    megatron_per_param = meg_bytes / meg_params
    assert float(megatron_per_param - per_param) == pytest.approx(2, abs=1e-6)


@pytest.mark.parametrize("tp,pp,m", [(2, 1, 1), (4, 2, 8), (2, 4, 2), (8, 2, 1)])
def test_megatron_activations_sp_selective(tp, pp, m):
    """compute_activation_memory (SP + selective recompute): 34sbh per layer
    times L, scaled by min(1, m/pp) in flight, over tp — the transformer-layer
    term. seqdsl's first stage holds L/pp layers times min(m, pp) micro-batches:
    the same scaling, per layer 34sbh/t plus the Korthikanti differences."""
    L = 2 * pp
    layout = f"tp={tp},pp={pp},sp,microbatches={m}"
    meg_layers = Fraction(S * B * H * 34 * L, tp) * min(1, Fraction(m, pp))
    ours_layers = (device(L, layout, "selective").activation_bytes
                   - device(pp, layout, "selective").activation_bytes) * 2   # L/pp - 1 per stage: half of L
    extra = ours_minus_korthikanti(S, B, H, A, tp, True, "selective") * L * min(1, Fraction(m, pp))
    assert ours_layers == meg_layers + extra


# ------------------------------------------------------------------ DeepSpeed ZeRO estimators
def deepspeed_zero2(total_params, gpus):
    """deepspeed.runtime.zero.stage_1_and_2.estimate_zero2_model_states_mem_needs, no offload."""
    return 4 * total_params + int(16 * total_params / gpus)


def deepspeed_zero3(total_params, largest_layer_params, gpus):
    """deepspeed.runtime.zero.stage3.estimate_zero3_model_states_mem_needs, no offload."""
    return 4 * largest_layer_params + int(18 * total_params / gpus)


@pytest.mark.parametrize("n", [1, 2, 8, 64])
def test_deepspeed_zero2(n):
    d = device(8, f"dp={n},zero=2")
    P = gpt(8).params
    ours = d.weights_bytes + d.grads_bytes + d.optimizer_bytes
    # DeepSpeed budgets fp16 weights and a whole fp16 gradient buffer (4P) plus, sharded,
    # fp32 master, moments and an fp32 gradient partition (16P/n). seqdsl shards the
    # gradients (the point of stage 2) and keeps none in fp32: 2P + (2 + 12)P/n.
    assert ours == 2 * P + Fraction(14 * P, n)
    assert deepspeed_zero2(P, n) - ours == 2 * P + Fraction(2 * P, n)


@pytest.mark.parametrize("n", [1, 2, 8, 64])
def test_deepspeed_zero3(n):
    d = device(8, f"dp={n},zero=3")
    model = gpt(8)
    P = model.params
    largest = max(node.params for node in model.nodes)       # the embedding, as DeepSpeed's module walk finds
    ours = d.weights_bytes + d.grads_bytes + d.optimizer_bytes + d.gathered_bytes
    assert d.gathered_bytes == 2 * largest * 2 and d.weights_bytes == math.ceil(Fraction(2 * P, n))
    # the largest layer gathered whole with its gradient (4 bytes a parameter, as DeepSpeed), the
    # rest sharded; the one difference is DeepSpeed's fp32 gradient partition (2 bytes more).
    assert deepspeed_zero3(P, largest, n) - ours == Fraction(2 * P, n)


# ------------------------------------------------------------------ pipeline, context parallel, comm
def test_pipeline_first_stage_keeps_pp_microbatches():
    one = device(8, "pp=4,microbatches=1").activation_bytes
    many = device(8, "pp=4,microbatches=8").activation_bytes
    assert device(8, "pp=4,microbatches=8").stage == 0
    assert many > 3 * one                       # 4 in flight vs 1 (the embedding's own tensors included)
    assert device(8, "pp=4,microbatches=8").weights_bytes < device(8, "pp=1").weights_bytes


def test_context_parallel_divides_activations_and_rings_keys_and_values():
    base, cp = device(8, "dp=1"), device(8, "cp=4")
    assert cp.activation_bytes * 4 == pytest.approx(base.activation_bytes, rel=1e-9, abs=4)
    kv = 8 * 2 * S * B * H * E                   # keys and values of every layer
    assert cp.comm == {"cp_kv_ring": 2 * kv * 3 // 4}
    assert cp.weights_bytes == base.weights_bytes


def test_recurrent_layers_hand_on_their_state_under_context_parallelism():
    est = seqdsl.estimate(ROOT / "specs" / "griffin_like.seq", seq=32768, dtype="bfloat16", parallel="cp=4")
    p = est.points[0]
    d = p.per_device
    assert set(d.comm) == {"cp_kv_ring", "cp_state"}
    # 4 local-attention layers (window 1,024, one kv head of 128) need only the window before
    # their block, forward and backward: not (cp-1)/cp of the whole sequence
    assert d.comm["cp_kv_ring"] == 4 * 2 * (2 * 1024 * 128 * 2)
    assert d.sequential_depth == p.sequential_depth + 3 * 8     # 8 RG-LRU layers, 3 hand-offs each


def test_data_parallel_comm_by_zero_stage():
    P = gpt(8).params
    ring = Fraction(7, 8)
    assert device(8, "dp=8").comm == {"dp_all_reduce": 2 * ring * P * E}
    assert device(8, "dp=8,zero=2").comm == {"dp_reduce_scatter": ring * P * E, "dp_all_gather": ring * P * E}
    z3 = device(8, "dp=8,zero=3").comm
    assert z3["dp_all_gather"] == 2 * ring * P * E and z3["dp_reduce_scatter"] == ring * P * E


def test_tensor_parallel_all_reduces_two_per_layer_each_way():
    d = device(8, "tp=2")
    per_layer_bytes = 2 * S * B * H * E           # attention and feed-forward outputs
    embed = S * B * H * E
    assert d.comm["tp_all_reduce"] == 2 * (8 * per_layer_bytes + embed) * Fraction(1, 2) * 2


def test_no_parallelism_is_the_single_device_estimate():
    est = seqdsl.estimate(gpt(8), seq=S, dtype="bfloat16", parallel="dp=1")
    p = est.points[0]
    assert p.per_device.peak_bytes == p.training_bytes
    assert p.per_device.comm_bytes == 0


def test_step_time_adds_communication_on_the_interconnect():
    est = seqdsl.estimate(gpt(8), seq=S, dtype="bfloat16", parallel="dp=16", hw="h100")
    d = est.points[0].per_device
    assert d.comm_time_s == pytest.approx(d.comm["dp_all_reduce"] / 50e9)      # 16 GPUs span two nodes: InfiniBand
    assert d.step_time_s == pytest.approx(d.compute_time_s + d.comm_time_s)
    assert d.compute_time_s == pytest.approx(est.points[0].latency_train_s)


# ------------------------------------------------------------------ validation and the CLI
@pytest.mark.parametrize("text,needle", [
    ("dp=8,tpp=2", "did you mean 'tp'"), ("dp=0", "from 1"), ("zero=4", "ZeRO stages"),
    ("dp=2,world=8", "product is 8"), ("sp", "tp=1"), ("dp=x", "positive integer"), ("", "empty"),
    ("dp=2,dp=4", "twice"), ("sp=maybe", "on or off"), ("dp=8,", "empty entry")])
def test_parse_parallel_errors(text, needle):
    with pytest.raises(ParallelError, match=needle):
        parse_parallel(text)


def test_parse_parallel():
    assert parse_parallel("dp=8,tp=2,pp=2,zero=1,sp,microbatches=8,world=32") == Parallel(
        dp=8, tp=2, pp=2, zero=1, sp=True, microbatches=8)
    assert parse_bytes("80GiB") == 80 * 2 ** 30 and parse_bytes("141GB") == 141 * 10 ** 9


@pytest.mark.parametrize("layout,needle", [("tp=5", "12 heads, which tp=5 does not divide"),
                                           ("pp=5", "12 repeated layers, which pp=5")])
def test_layout_must_fit_the_model(layout, needle):
    with pytest.raises(ParallelError, match=needle):
        seqdsl.estimate(ROOT / "specs" / "transformer_lm.seq", seq=64, parallel=layout)


@pytest.mark.parametrize("argv,needle", [
    (["--parallel", "dp=8,tpp=2"], "did you mean 'tp'"), (["--parallel", "tp=5"], "tp=5 does not divide"),
    (["--recompute", "full"], "add --parallel"), (["--parallel", "dp=2", "--recompute", "some"], "unknown recompute"),
    (["--fit", "80GiB"], "add --parallel"), (["--parallel", "dp=2", "--fit", "lots"], "not a memory size"),
    (["--parallel", "dp=2", "--hw", "cpu"], "no interconnect figures")])
def test_cli_refuses_bad_flags(capsys, argv, needle):
    code = main(["compile", "specs/transformer_lm.seq", "--estimate", "--seq", "64", *argv])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_json_and_fit(capsys):
    import json
    code = main(["compile", "specs/transformer_lm.seq", "--estimate", "--seq", "4096", "--dtype", "bfloat16",
                 "--parallel", "dp=8,zero=1", "--fit", "80GiB", "--json"])
    obj = json.loads(capsys.readouterr().out)
    assert code == 0
    d = obj["points"][0]["per_device"]
    for key in ("weights_bytes", "grads_bytes", "optimizer_bytes", "activation_bytes", "peak_bytes", "comm_bytes"):
        assert isinstance(d[key], int)
    fit = obj["fit"]
    assert fit["binding"] == "activations"
    # the largest length fits, one more does not
    at = seqdsl.estimate(ROOT / "specs" / "transformer_lm.seq", seq=[fit["seq"], fit["seq"] + 1],
                         dtype="bfloat16", parallel="dp=8,zero=1")
    assert at.points[0].per_device.peak_bytes <= 80 * 2 ** 30 < at.points[1].per_device.peak_bytes


# ------------------------------------------------------------------ every layer kind has a rule
MODERN = ("mamba", "mamba2", "rglru", "mingru", "gla", "gated_deltanet", "retention", "mlstm")


@pytest.mark.parametrize("kind", MODERN + ("lstm", "gru", "rnn", "attention"))
def test_each_sequence_layer_splits_and_behaves_under_context_parallelism(kind):
    """The modern recurrent layers split over tp (heads or inner width) and hand
    on their state under cp; the classic recurrences are replicated; softmax
    attention gathers keys and values."""
    from seqdsl.layers import LAYERS
    body = LAYERS[kind].examples()[0]
    graph = seqdsl.parse(f"model m {{\n{body}\n}}", "example.seq").model()
    node = next(n for n in graph.nodes if n.kind == kind)
    rule = LAYERS[kind].parallel(node.args, list(node.inputs), 2)
    classic = kind in ("lstm", "gru", "rnn")
    assert rule.tp == ("replicate" if classic else "split")
    comm = seqdsl.estimate(graph, seq=256, parallel="cp=2").points[0].per_device.comm
    assert set(comm) == ({"cp_kv_ring"} if kind == "attention" else {"cp_state"})
    if not classic:
        assert rule.all_reduces == 1 and rule.divides
        width = max(count for _, count in rule.divides)
        tp = next((t for t in (2, 3, 4) if all(c % t == 0 for _, c in rule.divides)), None)
        if tp is not None and graph.params:
            one = seqdsl.estimate(graph, seq=64, parallel="dp=1").points[0].per_device.weights_bytes
            split = seqdsl.estimate(graph, seq=64, parallel=f"tp={tp}").points[0].per_device.weights_bytes
            assert split < one, (kind, width)


# ------------------------------------------------------------------ compare
def test_compare_train_memory_per_device_is_the_estimates_peak():
    from seqdsl.cost.compare import compare
    specs = [str(ROOT / "specs" / "transformer_183m.seq"), str(ROOT / "specs" / "griffin_like.seq")]
    c = compare(specs, metric="train_memory", seq=[1024, 32768], dtype="bfloat16", parallel="dp=8,pp=2,zero=1,"
                "microbatches=4")
    for spec, name in zip(specs, c.specs):
        est = seqdsl.estimate(spec, seq=[1024, 32768], dtype="bfloat16", parallel="dp=8,pp=2,zero=1,microbatches=4")
        assert [p.values[name] for p in c.points] == [p.per_device.peak_bytes for p in est.points]
    with pytest.raises(UsageError, match="train_memory"):
        compare(specs, metric="flops_train", parallel="dp=8")


@pytest.mark.parametrize("spec", sorted(p.name for p in (ROOT / "specs").glob("*.seq")))
def test_every_bundled_spec_takes_a_layout_or_says_why(spec):
    """Each bundled spec either gets integer per-device figures or a ParallelError
    naming what does not divide (conv stacks once returned floats here)."""
    for layout in ("tp=2,sp", "dp=2,pp=2,cp=2,zero=3,microbatches=4"):
        try:
            d = seqdsl.estimate(ROOT / "specs" / spec, seq=4096, dtype="bfloat16", parallel=layout,
                                recompute="full").points[0].per_device
        except ParallelError as exc:
            assert "does not divide" in str(exc) or "no repeat" in str(exc)
            continue
        assert all(isinstance(v, int) and v >= 0 for v in (d.weights_bytes, d.activation_bytes, d.peak_bytes,
                                                             d.comm_bytes))
