"""Diagnostics (every error LANGUAGE.md lists: PATH:LINE:COL, source line,
caret, suggestions), the CLI (exit codes, summary, graph formats, no torch on
the check path) and hostile input (limits refused at once)."""
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import seqdsl

ROOT = Path(__file__).resolve().parent.parent
SEQDSL = [sys.executable, "-m", "seqdsl.cli"]
DIAG = re.compile(r"^(?P<path>[^\n:]+):(?P<line>\d+):(?P<col>\d+): error: (?P<msg>.*)$", re.M)


def M(body, dims="B, T, 8", lets="", dtype="float"):
    """A one-pipeline model; the pipeline `y = x -> BODY` is on line 3 + lets."""
    return f"model m {{\n{lets}    input x: {dtype}[{dims}]\n    y = x -> {body}\n    output y\n}}\n"


def refusal(text, **kw):
    with pytest.raises(seqdsl.SpecError) as exc:
        seqdsl.parse(text, **kw)
    return exc.value


def assert_rendered(err, line, cols, *words):
    """The compiler-style rendering: header, the source line, a caret at the column."""
    out = err.render()
    lines = out.splitlines()
    m = DIAG.match(lines[0])
    assert m, out
    assert int(m["line"]) == line and cols[0] <= int(m["col"]) <= cols[1], out
    for w in words:
        assert w.lower() in out.lower(), (w, out)
    col = int(m["col"])
    assert lines[1].rstrip().endswith(err.span.source.line(line).rstrip()), out
    bar = lines[1].index("| ") + 2
    assert lines[2].index("^") == bar + col - 1, out
    assert "Traceback" not in out


# (spec, line, (col_lo, col_hi), words) -- one per error kind in LANGUAGE.md
ERRORS = {
    "syntax": (M("linear(8,)"), 3, (21, 26), ["unexpected", "expected"]),
    "syntax_unclosed": (M("repeat(2) { linear(8)"), 4, (5, 10), ["expected", "}"]),
    "syntax_bad_char": (M("linear(8) $"), 3, (24, 24), ["unexpected", "$"]),
    "unknown_layer": (M("lienar(8)"), 3, (14, 22), ["unknown layer", "lienar", "did you mean 'linear'"]),
    "unknown_block_or_layer": ("block prenorm_ffn(d) { linear(d) }\n" + M("prenorm_fnn(8)"), 4, (14, 27),
                               ["prenorm_fnn", "did you mean 'prenorm_ffn'"]),
    "unknown_argument": (M("linear(8, baias=false)"), 3, (24, 35), ["baias", "did you mean 'bias'"]),
    "unknown_name": (M("linear(8)").replace("y = x", "y = xx"), 3, (9, 10), ["xx", "'x'"]),
    "unknown_context": ("model m {\n    input src: float[B, S, 8]\n    input x: float[B, T, 8]\n"
                        "    y = x -> cross_attention(2, context=scr)\n    output y\n}\n",
                        4, (14, 44), ["scr", "src"]),
    "unknown_output": (M("linear(8)").replace("output y", "output yy"), 4, (5, 13), ["yy", "'y'"]),
    "unknown_tie": ("model m {\n    input x: int[B, T]\n    y = x -> embed(10, 8) as wte -> linear(10, tie=wtf)\n"
                    "    output y\n}\n", 3, (14, 60), ["wtf", "wte"]),
    "wrong_type": (M('lstm(hidden="big")'), 3, (14, 30), ["hidden", "int"]),
    "wrong_value": (M("dropout(1.5)"), 3, (14, 25), ["p", "1.5"]),
    "wrong_enum": (M("mlp(16, act=gelu2)"), 3, (14, 30), ["act", "gelu"]),
    "heads": (M("attention(3)", dims="B, T, 64"), 3, (14, 25), ["heads", "64", "divide"]),
    "kv_heads": (M("attention(8, kv_heads=3)", dims="B, T, 64"), 3, (14, 36), ["kv_heads", "3"]),
    "residual_shape": (M("residual { linear(16) }"), 3, (14, 36), ["residual", "8", "16"]),
    "wrong_dtype": (M("linear(8)", dims="B, T", dtype="int"), 3, (14, 22), ["int", "embed"]),
    "wrong_dtype_embed": (M("embed(10, 8)"), 3, (14, 25), ["embed", "int", "float"]),
    "wrong_rank": (M("lstm(8)", dims="B, T, 4, 8"), 3, (14, 20), ["rank", "lstm"]),
    "recursive_block": ("block a(d) { b(d) }\nblock b(d) { a(d) }\n" + M("a(8)"), 2, (14, 17), ["recurs"]),
    "bound_twice": (M("linear(8)").replace("    output y", "    y = x -> relu\n    output y"), 4, (5, 20),
                    ["y", "already bound", "3"]),
    "input_twice": ("model m {\n    input x: float[B, T, 8]\n    input x: int[B, T]\n    output x\n}\n", 3, (5, 20),
                    ["x", "bound"]),
    "unbound_output": (M("linear(8)").replace("output y", "output logits"), 4, (5, 17), ["logits"]),
    "repeat_limit": (M("repeat(10**9) { linear(8) }"), 3, (14, 40), ["repeat", "1000000000"]),
    "nested_repeat_limit": (M("repeat(5000) { repeat(5000) { linear(8) } }"), 3, (14, 60), ["limit"]),
    "dim_limit": (M("linear(8)", dims="B, T, 10**20"), 2, (14, 40), ["100000000000000000000"]),
    "arg_limit": (M("linear(10**20)"), 3, (14, 30), ["100000000000000000000"]),
    "linformer_causal": (M("attention(2, kind=linformer, proj=4, max_len=64, causal=true)"), 3, (14, 80),
                         ["linformer", "causal"]),
    "segments_lstm": (M("segments(length=4, memory=4) { lstm(8) }"), 3, (14, 60), ["lstm", "segments"]),
    "missing_arg": (M("linear"), 3, (14, 20), ["out"]),
    "positional_after_keyword": (M("linear(bias=false, 8)"), 3, (14, 35), ["positional"]),
}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_semantic_errors_are_rendered_at_the_spot(name):
    text, line, cols, words = ERRORS[name]
    assert_rendered(refusal(text, path="spec.seq"), line, cols, *words)


def test_help_lines_carry_the_suggestion():
    err = refusal(M("atention(4)", dims="B, T, 64"))
    assert err.diagnostics[0].help and "attention" in err.diagnostics[0].help
    assert err.render().splitlines()[-1].startswith("help: ")


# ----------------------------------------------------------------- CLI
def run(*args, cwd=None, timeout=60):
    return subprocess.run(SEQDSL + list(args), capture_output=True, text=True, timeout=timeout, cwd=cwd)


def test_cli_refused_spec_exits_1_with_a_diagnostic(tmp_path):
    for name in ("unknown_layer", "residual_shape", "syntax_unclosed", "repeat_limit"):
        text, line, cols, words = ERRORS[name]
        path = tmp_path / f"{name}.seq"
        path.write_text(text)
        proc = run("check", str(path))
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        m = DIAG.search(proc.stderr)
        assert m and m["path"] == str(path) and int(m["line"]) == line, proc.stderr
        assert "^" in proc.stderr


def test_cli_usage_errors_exit_2():
    spec = str(ROOT / "specs" / "lstm_lm.seq")
    for args in (["check", "--bogus", spec], ["frobnicate"], ["check"], [],
                 ["graph", spec, "--format", "svg"]):
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_python_dash_m_seqdsl_is_the_command(tmp_path):
    """`python -m seqdsl` runs the same entry point, exit codes included."""
    spec = str(ROOT / "specs" / "lstm_lm.seq")
    ok = subprocess.run([sys.executable, "-m", "seqdsl", "check", spec], capture_output=True, text=True)
    assert ok.returncode == 0 and "lstm_lm" in ok.stdout, ok.stderr
    bad = tmp_path / "bad.seq"
    bad.write_text(ERRORS["unknown_layer"][0])
    refused = subprocess.run([sys.executable, "-m", "seqdsl", "check", str(bad)], capture_output=True, text=True)
    assert refused.returncode == 1 and DIAG.search(refused.stderr), refused.stderr
    usage = subprocess.run([sys.executable, "-m", "seqdsl", "check"], capture_output=True, text=True)
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_cli_missing_directory_and_non_utf8_files_are_refused(tmp_path):
    proc = run("check", str(tmp_path / "nothere.seq"))
    assert proc.returncode == 1 and "nothere.seq" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("check", str(tmp_path))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    bad = tmp_path / "latin1.seq"
    bad.write_bytes(M("linear(8) # caf\xe9").encode("latin-1"))
    proc = run("check", str(bad))
    assert proc.returncode == 1 and "UTF-8" in proc.stderr and "Traceback" not in proc.stderr
    m = DIAG.search(proc.stderr)
    assert m and (int(m["line"]), int(m["col"])) == (3, 29), proc.stderr


def test_cli_help_version_and_summary():
    proc = run("--help")
    assert proc.returncode == 0 and "check" in proc.stdout and "graph" in proc.stdout
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"seqdsl {seqdsl.__version__}"
    proc = run("check", str(ROOT / "specs" / "transformer_lm.seq"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for piece in ("transformer_lm", "tokens", "int[B, T]", "logits", "float[B, T, 32000]",
                  "layers: 51", "100,092,672"):
        assert piece in out, (piece, out)


def test_cli_model_selection():
    spec = str(ROOT / "examples" / "lm_sizes.seq")
    proc = run("check", spec, "--model", "gpt_small")
    assert proc.returncode == 0 and "gpt_small" in proc.stdout and "gpt_tiny" not in proc.stdout
    assert "3,546,624" in proc.stdout
    proc = run("check", spec)                       # check shows every model
    assert proc.returncode == 0 and "gpt_tiny" in proc.stdout and "gpt_small" in proc.stdout
    proc = run("check", spec, "--model", "gpt_smal")
    assert proc.returncode == 1 and "gpt_small" in proc.stderr
    proc = run("graph", spec, "--format", "json")  # graph needs one model
    assert proc.returncode == 1 and "--model" in proc.stderr


def test_cli_graph_formats():
    spec = str(ROOT / "specs" / "keyword_spotter.seq")
    model = seqdsl.load(spec).model()
    obj = json.loads(run("graph", spec, "--format", "json").stdout)
    assert obj["params"] == model.params == 381_964
    assert [n["name"] for n in obj["nodes"]] == [n.name for n in model.nodes]
    assert obj["outputs"] == {"x": "float[B, 12]"}
    dot = run("graph", spec, "--format", "dot").stdout
    assert dot.startswith("digraph") and dot.count("{") == dot.count("}")
    assert dot.count("->") == model.graph.number_of_edges()
    mermaid = run("graph", spec, "--format", "mermaid").stdout
    assert mermaid.splitlines()[0].startswith(("flowchart", "graph"))
    assert mermaid.count("-->") + mermaid.count("-.->") == model.graph.number_of_edges()


def test_check_does_not_import_torch():
    specs = [str(p) for p in sorted((ROOT / "specs").glob("*.seq"))]
    code = ("import sys\nfrom seqdsl.cli import main\n"
            f"for s in {specs!r}:\n    assert main(['check', s]) == 0\n"
            f"    assert main(['graph', s, '--format', 'json']) == 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\nprint('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


# ----------------------------------------------------------------- hostile input
def timed_refusal(text, budget=5.0, **kw):
    t0 = time.perf_counter()
    err = refusal(text, **kw)
    assert time.perf_counter() - t0 < budget
    assert err.span is None or err.span.line >= 1
    return err


HOSTILE = {
    "parens": M("linear(" + "(" * 10_000 + "8" + ")" * 10_000 + ")"),
    "brackets": M("conv1d(8, " + "[" * 10_000 + "3" + "]" * 10_000 + ")"),
    "bodies": M("residual { " * 10_000 + "linear(8)" + " }" * 10_000),
    "unbalanced_open": M("linear(" + "(" * 10_000),
    "repeat_1e9": M("repeat(10**9) { linear(8) }"),
    "nested_repeats": M("repeat(10000) { repeat(10000) { repeat(10000) { linear(8) } } }"),
    "dims_1e20": M("linear(8)", dims="B, T, 10**20"),
    "huge_literal": M("linear(" + "9" * 100_000 + ")"),
    "pow_tower": M("linear(2 ** 10 ** 10)"),
    "pow_lets": M("linear(8)", lets="    let a = 10 ** 200\n    let b = a * a * a\n"),
    "float_overflow": M("dropout(1e999)"),
    "import_dunder": M('__import__("os")'),
    "dunder_kwarg": M("linear(8, __class__=1)"),
    "dunder_enum": M("mlp(8, act=__subclasses__)"),
    "nul": M("linear(8)\x00"),
    "flatten_overflow": M("flatten -> linear(8)", dims="B, T, 2**30, 2**30, 2**30, 8"),
    "long_sum": M("linear(" + "+".join(["1"] * 50_000) + ")"),
    "long_product": M("linear(8)", lets="    let a = " + "*".join(["1"] * 50_000) + "\n"),
    "negation_chain": M("linear(" + "- " * 20_000 + "8)"),
    "power_chain": M("linear(" + "**".join(["1"] * 20_000) + ")"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_specs_end_in_a_diagnostic_quickly(name):
    timed_refusal(HOSTILE[name])


def test_block_call_nesting_is_bounded():
    blocks = "".join(f"block b{i}(d) {{ b{i + 1}(d) }}\n" for i in range(5000)) + "block b5000(d) { linear(d) }\n"
    err = timed_refusal(blocks + M("b0(8)"))
    assert "nested" in err.message


def test_big_text_is_refused_before_parsing(tmp_path):
    text = M("linear(8)") + "# " + "x" * (5 * 1024 * 1024) + "\n"
    assert "limit" in timed_refusal(text).message
    path = tmp_path / "big.seq"
    path.write_text(text)
    t0 = time.perf_counter()
    with pytest.raises(seqdsl.SpecError) as exc:
        seqdsl.load(path)
    assert "limit" in exc.value.message and time.perf_counter() - t0 < 2


def test_long_lines_and_many_statements_stay_fast():
    t0 = time.perf_counter()
    m = seqdsl.parse(M(" -> ".join(["relu"] * 20_000))).model()
    assert len(m.layers) == 20_000
    lines = "".join(f"    h{i} = h{i - 1} -> linear(8)\n" for i in range(1, 5000))
    m = seqdsl.parse(f"model m {{\n    input h0: float[B, T, 8]\n{lines}    output h4999\n}}\n").model()
    assert m.params == 4999 * 72
    assert time.perf_counter() - t0 < 10


def test_reasonable_expressions_are_not_limited():
    m = seqdsl.parse(M("linear(" + "+".join(["1"] * 90) + ")")).model()
    assert str(m.outputs["y"]) == "float[B, T, 90]"


def test_dunder_names_are_plain_data():
    """Identifiers are data: dunder names work as names and run nothing."""
    m = seqdsl.parse("model __init__ {\n    let __dict__ = 8\n    input __class__: float[B, T, __dict__]\n"
                     "    y = __class__ -> linear(__dict__) as __globals__\n    output y\n}\n").model()
    assert m.params == 72 and m.name == "__init__"


def test_no_eval_or_exec_in_the_front_end():
    for path in (ROOT / "seqdsl").glob("*.py"):
        src = path.read_text()
        assert not re.search(r"(?<![\w.])(?<!def )(eval|exec)\(", src), path
