"""`seqdsl compare`: crossovers checked by direct evaluation (seqdsl.estimate)
at T - 1 and T, table values equal to the estimate's, the exact JSON schema,
the plot, errors, and no torch on the path."""
import itertools
import json
import subprocess
import sys

import pytest

import seqdsl
from seqdsl.errors import UsageError
from seqdsl.cli import main
from seqdsl.cli.compare import parse_compare_seq, render
from seqdsl.cost.compare import compare

LSTM, TLM, TRANSLATION = "specs/lstm_lm.seq", "specs/transformer_lm.seq", "specs/translation.seq"
SIZES, VIDEO, SPOTTER = "examples/lm_sizes.seq", "specs/video_classifier.seq", "specs/keyword_spotter.seq"
SPEECH = "specs/speech_recognizer.seq"

# compare's metric -> the seqdsl.estimate Point field it must agree with
FIELD = {"flops_forward": "flops_forward", "flops_train": "flops_train", "flops_per_token": "flops_per_token",
         "train_memory": "training_bytes", "inference_peak": "inference_peak_bytes",
         "state_bytes": "state_bytes", "sequential_depth": "sequential_depth"}

# Two streaming models whose generation state crosses: an LSTM's state is
# constant, a causal attention layer's KV cache grows with T.
STATE = """model wide_lstm {
    input x: float[B, T, 16]
    y = x -> lstm(4096)
    output y
}
model tiny_attention {
    input x: float[B, T, 16]
    y = x -> linear(64) -> attention(2, causal=true)
    output y
}
"""


def graphs(spec):
    path, _, name = spec.partition(":")
    program = seqdsl.load(path)
    return [program.model(name)] if name else list(program.models.values())


def direct(spec_graphs, name, metric, seq, batch=1, dtype="float32", optimizer="adam"):
    """The metric of spec `name` at `seq` ({dim: n}), straight from seqdsl.estimate."""
    g = spec_graphs[name]
    point = {d: seq[d] for d in g.seq_symbols}
    est = seqdsl.estimate(g, seq=point, batch=batch, dtype=dtype, optimizer=optimizer)
    return getattr(est.points[0], FIELD[metric])


def check_exact(c, batch=1, dtype="float32", optimizer="adam", **named):
    """Every crossover flips the order exactly at T (strictly) and not at T - 1;
    every table value equals the estimate's; no flip between table rows is missed."""
    by_name = dict(zip(c.specs, named.get("graphs") or []))
    kw = dict(batch=batch, dtype=dtype, optimizer=optimizer)
    for x in c.crossovers:
        hi, lo = x.between
        n = x.seq[c.swept[0]]
        below = {**x.seq, **{d: n - 1 for d in c.swept}}
        at_hi, at_lo = direct(by_name, hi, c.metric, x.seq, **kw), direct(by_name, lo, c.metric, x.seq, **kw)
        b_hi, b_lo = direct(by_name, hi, c.metric, below, **kw), direct(by_name, lo, c.metric, below, **kw)
        assert at_hi > at_lo and b_hi <= b_lo, (x, at_hi, at_lo, b_hi, b_lo)
        assert x.at == {hi: at_hi, lo: at_lo} and x.before == {hi: b_hi, lo: b_lo}
    for p in c.points:
        for s, v in p.values.items():
            assert v == direct(by_name, s, c.metric, p.seq, **kw)
    # completeness between table rows: an order change between two rows means a crossover in between
    for a, b in itertools.combinations(c.specs, 2):
        for p, q in zip(c.points, c.points[1:]):
            if None in (p.values[a], p.values[b]) or p.values[a] == p.values[b] or q.values[a] == q.values[b]:
                continue
            flips = [x for x in c.crossovers if set(x.between) == {a, b}
                     and p.seq[c.swept[0]] < x.seq[c.swept[0]] <= q.seq[c.swept[0]]]
            changed = (p.values[a] > p.values[b]) != (q.values[a] > q.values[b])
            assert len(flips) % 2 == changed, (a, b, p.seq, q.seq)


def run_compare(capsys, *argv):
    code = main(["compare", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ exactness on bundled specs
@pytest.mark.parametrize("specs, metric, seq, expect", [
    ((LSTM, f"{SIZES}:gpt_small"), "flops_train", None, 1),
    ((LSTM, f"{SIZES}:gpt_small"), "flops_per_token", None, 1),
    ((TLM, VIDEO), "flops_forward", None, 1),
    ((TLM, VIDEO), "train_memory", None, 1),
    ((LSTM, TLM), "inference_peak", None, 1),
    ((LSTM, TRANSLATION), "inference_peak", [64, 1024, 4096], 1),   # dims T vs S, T: one length for all
    ((LSTM, SPOTTER), "train_memory", None, 1),                       # short: both peak at their gradients
    ((LSTM, TLM), "sequential_depth", [2 ** k for k in range(13)], 1),                  # T steps against a fixed depth
])
def test_crossovers_are_exact_against_direct_evaluation(specs, metric, seq, expect):
    gs = [g for s in specs for g in graphs(s)]
    c = compare(list(specs), metric=metric, seq=seq)
    assert len(c.crossovers) == expect
    check_exact(c, graphs=gs)


def test_all_models_of_a_file_and_lstm_on_flops_train():
    gs = graphs(LSTM) + graphs(SIZES)
    c = compare([LSTM, SIZES], metric="flops_train")
    assert c.specs == ["lstm_lm", "gpt_tiny", "gpt_small"]
    assert [x.between for x in c.crossovers] == [["gpt_small", "lstm_lm"], ["gpt_tiny", "lstm_lm"]]
    check_exact(c, graphs=gs)
    # gpt_tiny's learned positions stop at 256: the note says where the module refuses the length
    assert any(n.startswith("gpt_tiny: from T = 512 on") and "max_len=256" in n for n in c.notes)


def test_batch_dtype_and_optimizer_reach_the_closed_forms():
    gs = graphs(TLM) + graphs(VIDEO)
    kw = dict(batch=4, dtype="bfloat16", optimizer="sgd")
    c = compare([TLM, VIDEO], metric="train_memory", seq=[64, 256, 1024, 4096], **kw)
    assert c.crossovers
    check_exact(c, graphs=gs, **kw)
    base = compare([TLM, VIDEO], metric="train_memory", seq=[64, 256, 1024, 4096])
    assert base.points[0].values != c.points[0].values


def test_state_bytes_crossover(tmp_path):
    p = tmp_path / "state.seq"
    p.write_text(STATE)
    c = compare([str(p)], metric="state_bytes", seq=[16, 32, 64, 128, 256])
    # LSTM state 2·4096·4 bytes; KV cache 2·64·T·4 bytes: equal at T = 64, larger from 65
    assert [(x.between, x.seq) for x in c.crossovers] == [(["tiny_attention", "wide_lstm"], {"T": 65})]
    check_exact(c, graphs=graphs(str(p)))


def test_named_seq_parses_one_ranged_dim():
    assert parse_compare_seq("T=64..4096,S=512") == {"T": [64, 128, 256, 512, 1024, 2048, 4096], "S": 512}
    assert parse_compare_seq("T=1000,S=512") == {"T": 1000, "S": 512}
    assert parse_compare_seq("64,1_000") == [64, 1000] and parse_compare_seq(None) is None


def test_named_dims_against_a_second_s2s_model(tmp_path):
    p = tmp_path / "s2s.seq"
    p.write_text("""model small_s2s {
    input src: int[B, S]
    input tgt: int[B, T]
    memory = src -> embed(100, 32) -> attention(4)
    out = tgt -> embed(100, 32) -> attention(4, causal=true) -> cross_attention(4, context=memory)
           -> linear(50_000)
    output out
}
""")
    gs = graphs(TRANSLATION) + graphs(str(p))
    c = compare([TRANSLATION, str(p)], metric="flops_forward", seq=parse_compare_seq("T=64..1048576,S=512"))
    assert c.swept == ["T"] and c.fixed == {"S": 512}
    assert all(pt.seq["S"] == 512 for pt in c.points)
    check_exact(c, graphs=gs)


# ------------------------------------------------------------------ CLI output
def test_json_schema_is_exact(capsys):
    code, out, _ = run_compare(capsys, LSTM, f"{SIZES}:gpt_small", "--json", "--seq", "1024..65536")
    assert code == 0
    obj = json.loads(out)
    assert set(obj) == {"metric", "specs", "points", "crossovers"}
    assert obj["metric"] == "flops_train" and obj["specs"] == ["lstm_lm", "gpt_small"]
    assert [p["seq"] for p in obj["points"]] == [{"T": 2 ** k} for k in range(10, 17)]
    for p in obj["points"]:
        assert set(p) == {"seq", "values"} and set(p["values"]) == {"lstm_lm", "gpt_small"}
        assert all(type(v) is int for v in p["values"].values())
    assert obj["crossovers"] == [{"between": ["gpt_small", "lstm_lm"], "seq": {"T": 12598}}]


def test_json_null_for_a_spec_that_cannot_stream(capsys):
    code, out, _ = run_compare(capsys, LSTM, SPEECH, f"{SIZES}:gpt_small", "--metric", "flops_per_token",
                               "--json", "--seq", "64..65536")
    assert code == 0
    obj = json.loads(out)
    assert all(p["values"]["speech_recognizer"] is None for p in obj["points"])
    assert all(p["values"]["lstm_lm"] == 67_002_400 for p in obj["points"])   # a recurrent step is constant
    assert [c["between"] for c in obj["crossovers"]] == [["gpt_small", "lstm_lm"]]


def test_human_table_crossovers_and_blocker_note(capsys):
    code, out, _ = run_compare(capsys, LSTM, SPEECH, f"{SIZES}:gpt_small", "--metric", "flops_per_token",
                               "--seq", "8192..32768")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("flops_per_token at batch 1, float32")
    assert lines[1].split() == ["T", "lstm_lm", "speech_recognizer", "gpt_small"]
    rows = {ln.split()[0]: ln for ln in lines[3:6]}
    assert "—" in rows["8,192"] and rows["8,192"].rstrip().endswith("*")        # gpt_small cheaper
    assert rows["16,384"].split()[3] == "*"                                      # lstm_lm cheaper
    gs = {g.name: g for g in graphs(LSTM) + graphs(SIZES)}
    v = {(s, n): direct(gs, s, "flops_per_token", {"T": n}) for s in ("gpt_small", "lstm_lm") for n in (14697, 14698)}
    assert v[("gpt_small", 14697)] <= v[("lstm_lm", 14697)] and v[("gpt_small", 14698)] > v[("lstm_lm", 14698)]
    assert (f"  gpt_small overtakes lstm_lm at T = 14,698 (flops_per_token: {v[('gpt_small', 14697)]:,} vs "
            f"{v[('lstm_lm', 14697)]:,} at T = 14,697; {v[('gpt_small', 14698)]:,} vs {v[('lstm_lm', 14698)]:,} "
            "at T = 14,698)") in lines
    assert any(ln.startswith("note: speech_recognizer: no flops_per_token, it cannot stream: conv1d")
               and "line 13" in ln for ln in lines)


def test_no_crossover_line_names_the_range(capsys):
    code, out, _ = run_compare(capsys, LSTM, TLM, "--seq", "64,4096")
    assert code == 0 and "Crossovers: none for T in [64, 4,096]" in out


def test_colliding_names_get_the_file_stem(tmp_path):
    copy = tmp_path / "other.seq"
    copy.write_text(open(SIZES).read())
    c = compare([f"{SIZES}:gpt_tiny", f"{copy}:gpt_tiny", f"{SIZES}:gpt_small"], seq=[64, 128])
    assert c.specs == ["lm_sizes:gpt_tiny", "other:gpt_tiny", "gpt_small"]


def test_render_marks_the_lowest_in_each_row():
    c = compare([LSTM, TLM], metric="flops_forward", seq=[64])
    text = render(c)
    row = text.splitlines()[3]
    assert row.split()[0] == "64" and row.split().index("*") == 3    # lstm_lm is cheaper


# ------------------------------------------------------------------ plot
def test_plot_writes_a_png(capsys, tmp_path):
    png = tmp_path / "cost.png"
    code, _, err = run_compare(capsys, LSTM, SIZES, "--plot", str(png), "--seq", "64..131072")
    assert code == 0
    assert f"wrote {png}" in err    # says where the plot went
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert [p.name for p in tmp_path.iterdir()] == ["cost.png"]   # no temporary left


def test_plot_writes_nothing_when_it_fails(capsys, tmp_path, monkeypatch):
    bad_dir = tmp_path / "missing" / "cost.png"
    code, out, err = run_compare(capsys, LSTM, TLM, "--plot", str(bad_dir))
    assert code == 2 and out == "" and "cannot write" in err and not bad_dir.parent.exists()
    png = tmp_path / "cost.png"
    code, _, err = run_compare(capsys, LSTM, TLM, "--metric", "nope", "--plot", str(png))
    assert code == 2 and not png.exists()
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # matplotlib not installed
    code, out, err = run_compare(capsys, LSTM, TLM, "--plot", str(png))
    assert code == 2 and "needs matplotlib" in err and out == "" and list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("argv, code, message", [
    ([LSTM], 2, "at least two models, got 1"),
    ([f"{SIZES}:gpt_tiny"], 2, "at least two models"),
    ([LSTM, TLM, "--metric", "speed"], 2, "unknown metric 'speed'"),
    ([LSTM, TLM, "--seq", "abc"], 2, "is not a positive integer"),
    ([LSTM, TLM, "--seq", "4096..64"], 2, "the range is empty"),
    ([LSTM, TLM, "--seq", "T=0"], 2, "must be at least 1"),
    ([LSTM, TLM, "--seq", "T=64..128,T=4"], 2, "twice"),
    ([LSTM, TRANSLATION, "--seq", "T=64..128,S=4"], 2, "sequence dims differ"),
    ([TRANSLATION, f"{SIZES}:gpt_tiny", "--seq", "T=64..128,S=4..8"], 2, "sequence dims differ"),
    ([LSTM, TLM, "--batch", "0"], 2, "--batch must be at least 1"),
    ([LSTM, TLM, "--dtype", "int8"], 2, "unknown dtype 'int8'"),
    ([LSTM, TLM, "--optimizer", "lion"], 2, "unknown optimizer 'lion'"),
    ([LSTM, TLM, "--metric", "latency"], 2, "needs a hardware profile"),
    ([LSTM, TLM, "--hw", "h100"], 2, "--hw applies to the latency metrics only"),
    ([LSTM, "specs/nope.seq"], 1, "cannot find 'specs/nope.seq'"),
    ([LSTM, f"{SIZES}:gpt_huge"], 1, "no model named 'gpt_huge'"),
    ([LSTM, LSTM], 2, "is given twice"),
])
def test_errors_are_one_line_with_exit_codes(capsys, argv, code, message):
    got, out, err = run_compare(capsys, *argv)
    assert got == code and out == "" and message in err, err
    if code == 2:
        assert len(err.strip().splitlines()) == 1


def test_sweeping_two_named_dims_is_refused():
    with pytest.raises(UsageError, match="sweep one dim"):
        compare([TRANSLATION, _s2s_copy()], seq={"T": [64, 128], "S": [64, 128]})


def _s2s_copy():
    # translation under another name: same dims, so only the double sweep is wrong
    return seqdsl.parse(open(TRANSLATION).read().replace("model translation", "model translation2"),
                        base_dir="specs").model()


def test_unstreamable_metric_is_none_and_left_out_of_crossovers():
    c = compare([SPEECH, LSTM], metric="state_bytes", seq=[64, 128])
    assert all(p.values["speech_recognizer"] is None for p in c.points) and c.crossovers == []
    assert any(n.startswith("speech_recognizer: no state_bytes") for n in c.notes)


# ------------------------------------------------------------------ no torch
def test_compare_never_imports_torch_or_matplotlib_without_plot():
    code = (
        "import sys\n"
        "from seqdsl.cli import main\n"
        "assert main(['compare', 'specs/lstm_lm.seq', 'examples/lm_sizes.seq', '--seq', '64..1024']) == 0\n"
        "from seqdsl.cost.compare import compare\n"
        "compare(['specs/lstm_lm.seq', 'specs/transformer_lm.seq'], metric='inference_peak', seq=[64])\n"
        "bad = [m for m in ('torch', 'matplotlib') if m in sys.modules]\n"
        "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "gpt_small overtakes lstm_lm" not in r.stdout     # the range stops at 1,024
    assert "Crossovers: none for T in [64, 1,024]" in r.stdout


# ------------------------------------------------------------------ latency (roofline)
# A fixed CPU-like profile (the bundled cpu.json is re-measured by `seqdsl calibrate`).
SLOW = dict(name="slow", peak_flops={"float32": 1e11}, bandwidth=5e10, compute_efficiency=1.0,
            memory_efficiency=1.0, step_latency=1e-6)


@pytest.mark.parametrize("metric, hw, figure", [
    ("latency", SLOW, "train"),               # latency means latency_train
    ("latency_forward", SLOW, "forward"),
    ("latency_per_token", "h100", "per_token"),
])
def test_latency_crossovers_are_exact_against_the_roofline(metric, hw, figure):
    from seqdsl.cost.hardware import HardwareProfile, load_profile
    from seqdsl.cost.roofline import latency
    profile = HardwareProfile(**hw) if isinstance(hw, dict) else load_profile(hw)
    gs = {g.name: g for g in graphs(LSTM) + graphs(f"{SIZES}:gpt_small")}
    c = compare([LSTM, f"{SIZES}:gpt_small"], metric=metric, hw=profile)
    assert c.metric == f"latency_{figure}" and c.hw == profile.name

    def direct_s(name, n):
        return latency(gs[name], profile, "float32", [{"T": n}], batch=1)[0][figure]

    # the LSTM's cost is linear in T, gpt_small's attention quadratic: it overtakes once
    assert [x.between for x in c.crossovers] == [["gpt_small", "lstm_lm"]]
    for x in c.crossovers:
        hi, lo = x.between
        n = x.seq["T"]
        assert 64 < n <= 2 ** 20
        assert direct_s(hi, n) > direct_s(lo, n) and direct_s(hi, n - 1) <= direct_s(lo, n - 1)
        assert x.at[hi] == pytest.approx(direct_s(hi, n), rel=1e-12)
    for p in c.points:
        for s, v in p.values.items():
            assert type(v) is float and v == pytest.approx(direct_s(s, p.seq["T"]), rel=1e-12)


def test_latency_per_token_is_none_for_a_spec_that_cannot_stream():
    c = compare([SPEECH, LSTM], metric="latency_per_token", seq=[64, 128], hw="h100")
    assert all(p.values["speech_recognizer"] is None for p in c.points) and c.crossovers == []
    assert all(p.values["lstm_lm"] > 0 for p in c.points)
    assert any(n.startswith("speech_recognizer: no latency_per_token, it cannot stream") for n in c.notes)


def test_api_seq_forms_and_profile_object():
    from seqdsl.cost.hardware import load_profile
    one = compare([LSTM, TLM], seq=1000)
    assert [p.seq for p in one.points] == [{"T": 1000}] and one.crossovers == []
    listed = compare([LSTM, TLM], seq=[4096, 64, 64])               # sorted, duplicates dropped
    assert [p.seq["T"] for p in listed.points] == [64, 4096]
    assert listed.points[0].values == compare([LSTM, TLM], seq=64).points[0].values
    c = compare([LSTM, f"{SIZES}:gpt_small"], metric="latency_forward", seq=[64], hw=load_profile("h100"))
    assert c.hw == "h100" and all(type(v) is float for v in c.points[0].values.values())
    with pytest.raises(UsageError, match="must be an integer"):
        compare([LSTM, TLM], seq=[0])
    with pytest.raises(UsageError, match="unknown metric"):
        compare([LSTM, TLM], metric="flops")
