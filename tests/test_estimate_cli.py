"""`seqdsl compile SPEC --estimate` and `seqdsl.estimate`: flags, exit codes,
JSON keys, exact big integers, no torch import, speed."""
import json
import subprocess
import sys
from fractions import Fraction

import pytest

import seqdsl
from seqdsl.errors import UsageError
from small_specs import GPT, run_compile, write_spec


SEQ2SEQ = """model s2s {
    input src: int[B, S]
    input tgt: int[B, T]
    memory = src -> embed(100, 32) -> attention(4)
    out = tgt -> embed(100, 32) -> attention(4, causal=true) -> cross_attention(4, context=memory)
    output out
}
"""

KEYS = {"seq", "batch", "dtype", "flops_forward", "flops_train", "flops_per_token", "weights_bytes",
        "grads_bytes", "optimizer_bytes", "activation_bytes", "inference_peak_bytes", "state_bytes",
        "sequential_depth"}


@pytest.fixture
def gpt(tmp_path):
    return write_spec(tmp_path, GPT, "gpt.seq")


@pytest.fixture
def s2s(tmp_path):
    return write_spec(tmp_path, SEQ2SEQ, "s2s.seq")


def test_json_has_exactly_the_promised_keys_as_ints(capsys, gpt):
    code, out, _ = run_compile(capsys, gpt, "--estimate", "--json", "--seq", "64,1024", "--batch", "4")
    assert code == 0
    obj = json.loads(out)
    assert obj["model"] == "gpt" and obj["params"] == seqdsl.load(gpt).model().params
    assert [p["seq"] for p in obj["points"]] == [{"T": 64}, {"T": 1024}]
    for p in obj["points"]:
        assert KEYS <= set(p)
        for k in KEYS - {"seq", "dtype"}:
            assert type(p[k]) is int, k
        assert p["batch"] == 4 and p["dtype"] == "float32"
        assert p["weights_bytes"] == p["grads_bytes"] == 4 * obj["params"]
        assert p["optimizer_bytes"] == 8 * obj["params"]


def test_default_lengths_are_powers_of_two_64_to_16384(capsys, gpt):
    code, out, _ = run_compile(capsys, gpt, "--estimate", "--json")
    assert [p["seq"]["T"] for p in json.loads(out)["points"]] == [2 ** k for k in range(6, 15)]
    assert all(p["batch"] == 1 for p in json.loads(out)["points"])


def test_seq_ranges_and_named_dims(capsys, gpt, s2s):
    _, out, _ = run_compile(capsys, gpt, "--estimate", "--json", "--seq", "64..65536")
    assert [p["seq"]["T"] for p in json.loads(out)["points"]] == [2 ** k for k in range(6, 17)]
    _, out, _ = run_compile(capsys, gpt, "--estimate", "--json", "--seq", "100..300")
    assert [p["seq"]["T"] for p in json.loads(out)["points"]] == [128, 256]
    _, out, _ = run_compile(capsys, s2s, "--estimate", "--json", "--seq", "T=1024,S=256")
    (point,) = json.loads(out)["points"]
    assert point["seq"] == {"S": 256, "T": 1024}
    _, out, _ = run_compile(capsys, s2s, "--estimate", "--json", "--seq", "512")
    assert json.loads(out)["points"][0]["seq"] == {"S": 512, "T": 512}


def test_seq_sweeps_one_dim_with_the_others_fixed(capsys, s2s):
    # `T=LO..HI,S=N`: a sweep over T at a fixed source length, each point the
    # same as asking for it alone
    _, out, _ = run_compile(capsys, s2s, "--estimate", "--json", "--seq", "T=128..512,S=3000")
    points = json.loads(out)["points"]
    assert [p["seq"] for p in points] == [{"S": 3000, "T": t} for t in (128, 256, 512)]
    for p in points:
        alone = seqdsl.estimate(s2s, seq=p["seq"]).points[0]
        assert p["flops_train"] == alone.flops_train and p["training_bytes"] == alone.training_bytes
    # ranges on both dims: every combination; log-spaced ranges too
    _, out, _ = run_compile(capsys, s2s, "--estimate", "--json", "--seq", "T=100..1000:3,S=16..32")
    seqs = [(p["seq"]["S"], p["seq"]["T"]) for p in json.loads(out)["points"]]
    assert sorted(seqs) == sorted((s, t) for s in (16, 32) for t in (100, 316, 1000))


@pytest.mark.parametrize("seq, message", [
    ("T=128..512", "gives no length for dim 'S'"),
    ("T=512..128,S=4", "the range is empty"),
    ("T=3..3,S=4", "contains no power of two"),
    ("T=1..1000000:1000,S=1..1000:1000", "past the limit"),
    ("T=,S=4", "is not DIM=LENGTH or DIM=LO..HI"),
])
def test_bad_sweeps_name_the_fix(capsys, s2s, seq, message):
    code, _, err = run_compile(capsys, s2s, "--estimate", "--seq", seq)
    assert code == 2 and message in err and "Traceback" not in err


def test_cross_attention_cost_follows_each_length(capsys, s2s):
    def fwd(t, s):
        return seqdsl.estimate(s2s, seq={"T": t, "S": s}).points[0].flops_forward
    def by_hand(t, s):   # COST_MODEL.md: projections as linears, 4·B·C·pairs per attention core
        encoder = 4 * 2 * s * 32 * 32 + 4 * 32 * s * s
        decoder = 4 * 2 * t * 32 * 32 + 4 * 32 * t * t
        cross = 2 * 2 * t * 32 * 32 + 2 * 2 * s * 32 * 32 + 4 * 32 * t * s
        return encoder + decoder + cross
    for t, s in ((64, 64), (64, 200), (300, 7)):
        assert fwd(t, s) == by_hand(t, s)


@pytest.mark.parametrize("argv,words", [
    (["--seq", "0"], "at least 1"),
    (["--seq", "abc"], "not a positive integer"),
    (["--seq", "64,,128"], "not a positive integer"),
    (["--seq", "X=64"], "dim 'X', which the model does not have"),
    (["--dtype", "int3"], "dtype"),
    (["--optimizer", "lion"], "optimizer"),
    (["--batch", "0"], "at least 1"),
    (["--batch", "two"], "not a positive integer"),
    (["--seq", "512..64"], "empty"),
    (["--hw", "nosuch"], "unknown hardware profile"),
])
def test_bad_flags_are_one_line_usage_errors(capsys, gpt, argv, words):
    code, out, err = run_compile(capsys, gpt, "--estimate", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and words.lower() in err.lower(), err
    assert "Traceback" not in err


def test_bad_arguments_to_the_api_raise_usage_errors(gpt):
    for kw in (dict(seq=0), dict(seq=[64, "x"]), dict(seq={"Q": 3}), dict(batch=0), dict(dtype="int8"),
               dict(optimizer="adagrad")):
        with pytest.raises(UsageError):
            seqdsl.estimate(gpt, **kw)


def test_table_per_layer_and_formulas(capsys, gpt):
    code, out, _ = run_compile(capsys, gpt, "--estimate", "--seq", "64,1024", "--per-layer", "--formula")
    assert code == 0
    assert "FLOPs fwd" in out and "1,024" in out and "MiB" in out
    assert "per layer at 1,024" in out and "logits.repeat[1].residual[0].attention" in out
    assert "%" in out and "line" in out
    assert "flops_forward" in out and "T²" in out
    code, out, _ = run_compile(capsys, gpt, "--estimate", "--seq", "64", "--json", "--per-layer", "--formula")
    obj = json.loads(out)
    assert {r["name"] for r in obj["layers"]} >= {"logits.wte", "logits.linear"}
    assert "T²" in obj["formulas"]["flops_forward"]["leading"]


def test_non_streaming_spec_says_which_layer_and_line(capsys, tmp_path):
    # the decoder's own attention looks ahead: nothing can stream
    bidi = write_spec(tmp_path, SEQ2SEQ.replace("attention(4, causal=true)", "attention(4)"), "bidi.seq")
    code, out, _ = run_compile(capsys, bidi, "--estimate", "--seq", "64")
    assert code == 0 and "no generation figures" in out and "line 5" in out
    _, out, _ = run_compile(capsys, bidi, "--estimate", "--seq", "64", "--json")
    p = json.loads(out)["points"][0]
    assert p["flops_per_token"] is None and p["state_bytes"] is None


def test_encoder_decoder_streams_its_decoder_and_says_so(capsys, s2s):
    code, out, _ = run_compile(capsys, s2s, "--estimate", "--seq", "64")
    assert code == 0 and "generation figures: src given once" in out
    _, out, _ = run_compile(capsys, s2s, "--estimate", "--seq", "64", "--json")
    obj = json.loads(out)
    assert obj["streaming"] and obj["stream_context"] == ["src"]
    assert obj["points"][0]["flops_per_token"] > 0 and obj["points"][0]["state_bytes"] > 0


def test_huge_lengths_stay_exact_integers(gpt):
    """The forward FLOPs are a quadratic in T (batch fixed): its exact value at
    10**9 follows from three small points by Lagrange interpolation."""
    f = {t: seqdsl.estimate(gpt, seq=t, batch=3).points[0].flops_forward for t in (1, 2, 3)}
    big = seqdsl.estimate(gpt, seq=10 ** 9, batch=3).points[0]
    x = 10 ** 9
    lagrange = sum(Fraction(f[a]) * Fraction((x - b) * (x - c), (a - b) * (a - c))
                   for a, b, c in ((1, 2, 3), (2, 1, 3), (3, 1, 2)))
    assert big.flops_forward == lagrange and type(big.flops_forward) is int
    assert big.flops_forward > 2 ** 64
    assert type(big.activation_bytes) is int and big.state_bytes == 3 * 2 * 2 * 64 * 10 ** 9 * 4


def test_optimizer_and_dtype_memory(gpt):
    p = seqdsl.estimate(gpt, seq=64, dtype="bfloat16", optimizer="adam").points[0]
    n = seqdsl.load(gpt).model().params
    assert p.weights_bytes == 2 * n and p.optimizer_bytes == 12 * n     # two fp32 moments + master
    assert seqdsl.estimate(gpt, seq=64, optimizer="sgd").points[0].optimizer_bytes == 0
    q = seqdsl.estimate(gpt, seq=64, optimizer="none").points[0]
    assert q.training_bytes == 2 * q.weights_bytes + q.activation_bytes


def test_estimating_does_not_import_torch(gpt):
    code = ("import sys, json; from seqdsl.cli import main; "
            f"rc = main(['compile', {gpt!r}, '--estimate', '--json', '--per-layer', '--formula']); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch imported'; "
            "import seqdsl; seqdsl.estimate(" + repr(gpt) + ", seq=[64]); assert 'torch' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_api_accepts_program_and_graph(gpt):
    program = seqdsl.load(gpt)
    a = seqdsl.estimate(program, seq=[64, 128], batch=2)
    b = seqdsl.estimate(program.model(), seq=[64, 128], batch=2)
    assert a == b and a.points[1].flops_forward > a.points[0].flops_forward
    from seqdsl.cost.estimate import Estimate
    assert isinstance(a, Estimate)


def test_inference_peak_frees_each_tensor_after_its_last_consumer():
    text = "model m {\n  input x: float[B, T, 16]\n  y = x -> linear(64) -> relu -> linear(8)\n  output y\n}\n"
    model = seqdsl.parse(text).model()
    p = seqdsl.estimate(model, seq=10, batch=3).points[0]
    rows = 3 * 10 * 4
    x, h, y = rows * 16, rows * 64, rows * 8
    # the caller holds x throughout; linear1: x + h live; relu: x + h + relu(h);
    # linear2: x + relu(h) + y (h freed)
    assert p.inference_peak_bytes == 4 * model.params + max(x + h, x + h + h, x + h + y)
    # training: relu saves its output, which linear2 saves too: counted once; x is the caller's
    assert p.activation_bytes == h


def test_model_flag_and_refused_specs(capsys, tmp_path):
    two = tmp_path / "two.seq"
    two.write_text(GPT + SEQ2SEQ)
    code, out, _ = run_compile(capsys, str(two), "--estimate", "--model", "s2s", "--json", "--seq", "64")
    assert code == 0 and json.loads(out)["model"] == "s2s"
    code, _, err = run_compile(capsys, str(two), "--estimate", "--seq", "64")
    assert code == 1 and "choose one" in err
    bad = tmp_path / "bad.seq"
    bad.write_text("model m {\n  input x: float[B, T, 30]\n  y = x -> attention(7)\n  output y\n}\n")
    code, _, err = run_compile(capsys, str(bad), "--estimate")
    assert code == 1 and "bad.seq:3:" in err and "Traceback" not in err


def test_lengths_past_max_len_are_flagged(capsys, tmp_path):
    spec = tmp_path / "pos.seq"
    spec.write_text("model m {\n  input tokens: int[B, T]\n  y = tokens -> embed(10, 8) -> posenc(learned, max_len=100)\n"
                    "  output y\n}\n")
    est = seqdsl.estimate(str(spec), seq=[100, 101])
    assert est.points[0].warnings == []
    assert "max_len=100" in est.points[1].warnings[0] and "line 3" in est.points[1].warnings[0]
    code, out, _ = run_compile(capsys, str(spec), "--estimate", "--seq", "64..256")
    assert code == 0 and "from 128 on" in out and "refuses" in out


def test_the_estimate_path_asks_the_cost_model_once(capsys, gpt, monkeypatch):
    """`compile --estimate` builds one Report and renders it: the table, the
    per-layer rows and the closed forms never ask the estimator again."""
    from seqdsl.cost import report as report_module
    calls = []
    real = report_module.estimate
    monkeypatch.setattr(report_module, "estimate", lambda *a, **k: calls.append(1) or real(*a, **k))
    for extra in ((), ("--json",)):
        code, out, _ = run_compile(capsys, gpt, "--estimate", "--seq", "64,1024", "--per-layer", "--formula",
                                   "--hw", "cpu", *extra)
        assert code == 0 and "flops_forward" in out
    assert len(calls) == 2


def test_seq_log_spaced_points():
    """`LO..HI:N`: N lengths from LO to HI evenly spaced on a log scale, ends included."""
    from seqdsl.cost.lengths import parse_seq
    pts = parse_seq("16..10000000:50", ("T",))
    assert len(pts) == 50 and pts[0] == 16 and pts[-1] == 10_000_000 and pts == sorted(set(pts))
    ratios = [b / a for a, b in zip(pts[20:], pts[21:])]
    assert max(ratios) / min(ratios) < 1.01
    assert parse_seq("1..3:10", ("T",)) == [1, 2, 3]


def test_file_colon_model_wherever_a_spec_is_taken(capsys):
    from seqdsl.cli import main
    assert main(["check", "examples/lm_sizes.seq:gpt_small"]) == 0
    assert "model gpt_small" in capsys.readouterr().out
    assert main(["compile", "examples/lm_sizes.seq:gpt_tiny", "--estimate", "--seq", "64"]) == 0
    assert "model gpt_tiny" in capsys.readouterr().out
    assert main(["check", "examples/lm_sizes.seq:gpt_small", "--model", "gpt_tiny"]) == 2
    assert "--model says 'gpt_tiny'" in capsys.readouterr().err
