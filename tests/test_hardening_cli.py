"""Hostile inputs to the CLI: one line, the right exit code, no traceback,
nothing written over what a command reads (issue 9, CLI / estimate part)."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seqdsl.cli.app import main

from small_specs import GPT, write_spec

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, want=2):
    assert code == want, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cli(*argv, timeout=120, **kw):
    kw.setdefault("capture_output", "stdout" not in kw)
    return subprocess.run([sys.executable, "-m", "seqdsl", *argv], text=True, timeout=timeout, env=ENV, **kw)


# ------------------------------------------------------------------ 8: never write over an input
def test_plot_refuses_to_overwrite_a_spec_and_checks_the_suffix(capsys, tmp_path):
    a = write_spec(tmp_path, GPT, "a.seq")
    b = write_spec(tmp_path, GPT.replace("model gpt", "model gpt2"), "b.seq")
    before = digest(a)
    for target, words in ((a, "must end in"), (str(tmp_path / "plot.txt"), "must end in"),
                          (str(tmp_path), "must end in")):
        code, _, err = run(capsys, "compare", a, b, "--plot", target)
        one_line_error(code, err)
        assert words in err
    assert digest(a) == before
    # a spec whose own name ends in .png is still never overwritten (samefile, not the name)
    png = tmp_path / "spec.png"
    png.write_text(GPT.replace("model gpt", "model gpt3"))
    code, _, err = run(capsys, "compare", a, str(png), "--plot", str(tmp_path / "." / "spec.png"))
    one_line_error(code, err)
    assert "would overwrite" in err
    assert png.read_text().startswith("# a small GPT")


def test_plot_writes_the_format_its_suffix_names(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    a = write_spec(tmp_path, GPT, "a.seq")
    b = write_spec(tmp_path, GPT.replace("model gpt", "model gpt2"), "b.seq")
    code, _, err = run(capsys, "compare", a, b, "--seq", "64,128", "--plot", str(tmp_path / "c.svg"))
    assert code == 0, err
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")


def test_compile_and_export_refuse_to_overwrite_the_spec_or_an_import(capsys, tmp_path):
    spec = write_spec(tmp_path, GPT, "s.py")          # a spec may have any name
    before = digest(spec)
    code, _, err = run(capsys, "compile", spec, "-o", spec)
    one_line_error(code, err)
    assert "would overwrite" in err and digest(spec) == before
    link = tmp_path / "link.py"
    link.symlink_to(spec)
    code, _, err = run(capsys, "compile", spec, "-o", str(link))
    one_line_error(code, err)
    assert digest(spec) == before
    # an imported file
    (tmp_path / "lib.py").write_text("block ffn(d) { mlp(4 * d) }\n")
    main_spec = write_spec(tmp_path, 'import "lib.py"\nmodel m {\n    input x: float[B, T, 8]\n'
                                     '    y = x -> ffn(8)\n    output y\n}\n', "main.seq")
    lib_before = digest(tmp_path / "lib.py")
    code, _, err = run(capsys, "compile", main_spec, "-o", str(tmp_path / "lib.py"))
    one_line_error(code, err)
    assert digest(tmp_path / "lib.py") == lib_before
    (tmp_path / "x.pt2").write_text("block ffn2(d) { mlp(4 * d) }\n")
    spec2 = write_spec(tmp_path, 'import "x.pt2"\nmodel m {\n    input x: float[B, T, 8]\n'
                                 '    y = x -> ffn2(8)\n    output y\n}\n', "m2.seq")
    code, _, err = run(capsys, "export", spec2, "-o", str(tmp_path / "x.pt2"))
    one_line_error(code, err)
    code, _, err = run(capsys, "compile", spec, "-o", str(tmp_path))
    one_line_error(code, err)
    code, _, err = run(capsys, "compile", spec, "-o", str(tmp_path / "nodir" / "m.py"))
    one_line_error(code, err)


def test_calibrate_output_is_checked_before_measuring(capsys, tmp_path):
    code, _, err = run(capsys, "calibrate", "-o", str(tmp_path))
    one_line_error(code, err)
    code, _, err = run(capsys, "calibrate", "-o", str(tmp_path / "cpu.txt"))
    one_line_error(code, err)


# ------------------------------------------------------------------ 15: linear in layers
def test_estimate_of_2000_distinct_window_layers_finishes(tmp_path):
    lines = ["model m {", "    input x: float[B, T, 16]", "    y = x"]
    lines += [f"        -> attention(2, window={i}, causal=true)" for i in range(1, 2001)]
    lines += ["    output y", "}"]
    spec = write_spec(tmp_path, "\n".join(lines) + "\n")
    r = cli("compile", spec, "--estimate", "--seq", "1024", timeout=180)
    assert r.returncode == 0, r.stderr


# Item 15 (distinct windows and segment lengths scale linearly) is held by
# tests/test_cost_shared.py, which counts rule calls and sympy constructions
# rather than timing them (a timed ratio here failed once on a loaded CI run);
# the speed itself is benchmarks/estimate_scaling.py's.


def test_shared_subexpressions_give_the_same_figures(gpt_like_specs=None):
    from seqdsl.check.elaborate import parse
    from seqdsl.cost.estimate import estimate
    text = """model m {
    input x: float[B, T, 16]
    y = x -> attention(2, window=8, causal=true)
          -> segments(length=16, memory=8) { attention(2, causal=true) }
          -> attention(2, window=8, causal=true)
    output y
}
"""
    est = estimate(parse(text).model(), seq=[1, 7, 8, 9, 16, 17, 100, 1000])
    ref = [estimate(parse(text).model(), seq=[t]).points[0] for t in (1, 7, 8, 9, 16, 17, 100, 1000)]
    for p, q in zip(est.points, ref):
        assert p == q


# ------------------------------------------------------------------ 17: memory before measuring
@pytest.mark.parametrize("argv", [["verify", "--seq", "1000000"], ["bench", "--seq", "64", "--batch", "100000"]])
def test_verify_and_bench_refuse_runs_past_the_available_memory(capsys, tmp_path, argv):
    spec = write_spec(tmp_path, GPT)
    code, _, err = run(capsys, argv[0], spec, *argv[1:])
    one_line_error(code, err)
    assert "bytes" in err and "available" in err and "--force" in err


# ------------------------------------------------------------------ 19: hardware profiles
@pytest.mark.parametrize("text, words", [
    ("[" * 100_000 + "]" * 100_000, "nested"),
    ('{"a":' * 5000 + "1" + "}" * 5000, "nested"),
    ('{"name":"x","peak_flops":{"float32":NaN},"bandwidth":1,"step_latency":0}', "NaN"),
    ('{"name":"x","peak_flops":{"float32":1e999},"bandwidth":1,"step_latency":0}', "peak_flops.float32"),
    ('{"name":"x","peak_flops":{"float32":-1},"bandwidth":1,"step_latency":0}', "peak_flops.float32"),
    ('{"name":"x","peak_flops":{"float32":"fast"},"bandwidth":1,"step_latency":0}', "peak_flops.float32"),
    ('{"name":"x","peak_flops":{},"bandwidth":1,"step_latency":0}', "peak_flops"),
    ('{"name":"x","peak_flops":{"float32":1},"bandwidth":1,"step_latency":Infinity}', "Infinity"),
    ("[1, 2", "invalid JSON"),
    ("[1, 2]", "JSON object"),
    ("\xff\xfe", "UTF-8"),
])
def test_bad_hardware_profiles_are_usage_errors_naming_file_and_field(capsys, tmp_path, text, words):
    spec = write_spec(tmp_path, GPT)
    hw = tmp_path / "hw.json"
    hw.write_bytes(text.encode("latin-1"))
    for argv in (["compile", spec, "--estimate", "--seq", "64", "--hw", str(hw)],
                 ["compare", spec, spec.replace("m.seq", "n.seq"), "--metric", "latency", "--hw", str(hw)]):
        if argv[0] == "compare":
            write_spec(tmp_path, GPT.replace("model gpt", "model gpt2"), "n.seq")
        code, _, err = run(capsys, *argv)
        one_line_error(code, err)
        assert str(hw) in err and words in err


def test_huge_profile_is_refused_without_reading_it(capsys, tmp_path):
    spec = write_spec(tmp_path, GPT)
    hw = tmp_path / "hw.json"
    with open(hw, "wb") as f:
        f.truncate(50 * 1024 * 1024)
    code, _, err = run(capsys, "compile", spec, "--estimate", "--hw", str(hw))
    one_line_error(code, err)
    assert "limit" in err


# ------------------------------------------------------------------ 20: output errors
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("argv", [["check"], ["graph"], ["graph", "--format", "json"],
                                  ["compile", "--estimate", "--seq", "1..1000000", "--json"]])
def test_writing_to_a_full_device_is_one_line(tmp_path, argv):
    spec = write_spec(tmp_path, GPT)
    with open("/dev/full", "w") as full:
        r = cli(argv[0], spec, *argv[1:], stdout=full, stderr=subprocess.PIPE)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "No space left" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_closed_pipe_exits_quietly_with_141(tmp_path):
    spec = write_spec(tmp_path, GPT)
    p = subprocess.Popen([sys.executable, "-m", "seqdsl", "compile", spec, "--estimate", "--seq",
                          ",".join(str(i) for i in range(1, 20001))],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    p.stdout.read(10)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141
    assert err == ""


# ------------------------------------------------------------------ 21: Ctrl-C
def test_sigint_at_any_point_exits_130_in_one_line(tmp_path):
    spec = write_spec(tmp_path, GPT)
    handled = 0
    for delay in (0.15, 0.25, 0.35, 0.5, 0.7, 1.0):
        p = subprocess.Popen([sys.executable, "-m", "seqdsl", "compile", spec, "--estimate", "--seq", "1..1000000"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
        err = err.decode()
        if p.returncode == 0 or ("Traceback" in err and "_on_sigint" not in err):
            # already done, or Python's own handler raised: still in the interpreter's startup
            # (site, runpy finding the module) before seqdsl's first lines install its own
            # handler, which no package can catch
            continue
        assert p.returncode == 130, (delay, err)
        assert "Traceback" not in err and err.strip() == "seqdsl: interrupted", (delay, err)
        handled += 1
    assert handled >= 3


# ------------------------------------------------------------------ 22: --seq / --batch
@pytest.mark.parametrize("seq, words", [("T=-5", "positive"), ("T=100000000000", "65,536"), ("Q=5", "dims: T"),
                                        ("T=5,T=6", "twice"), ("T=0", "at least 1"), ("B=2", "dims: T")])
def test_export_seq_is_validated(capsys, tmp_path, seq, words):
    spec = write_spec(tmp_path, GPT)
    code, _, err = run(capsys, "export", spec, "-o", str(tmp_path / "m.pt2"), "--seq", seq)
    one_line_error(code, err)
    assert words in err
    assert not (tmp_path / "m.pt2").exists()


@pytest.mark.parametrize("cmd", [["compile", "--estimate"], ["verify"], ["bench"]])
@pytest.mark.parametrize("flag, value", [("--seq", "Q=5"), ("--seq", "T=5,T=6"), ("--seq", "0"),
                                         ("--seq", "1e400"), ("--seq", "1..1e300"), ("--seq", "99999999999999999"),
                                         ("--batch", "0"), ("--batch", "-3"), ("--batch", "1e99")])
def test_seq_and_batch_are_validated_everywhere(capsys, tmp_path, cmd, flag, value):
    spec = write_spec(tmp_path, GPT)
    extra = ["--seq", "64"] if cmd[0] == "bench" and flag != "--seq" else []
    code, _, err = run(capsys, cmd[0], spec, *cmd[1:], *extra, flag, value)
    one_line_error(code, err)


def test_compare_seq_is_validated(capsys, tmp_path):
    a = write_spec(tmp_path, GPT, "a.seq")
    b = write_spec(tmp_path, GPT.replace("model gpt", "model gpt2"), "b.seq")
    for seq in ("Q=5", "T=5,T=5", "1e400", "T=0..8"):
        code, _, err = run(capsys, "compare", a, b, "--seq", seq)
        one_line_error(code, err)


# ------------------------------------------------------------------ 23: dims below 1
CONV = """model c {
    input x: float[B, T, 4]
    y = x -> conv1d(8, 100, padding=valid)
    output y
}
"""


@pytest.mark.parametrize("cmd", [["compile", "--estimate", "--seq", "64"], ["verify", "--seq", "64"],
                                 ["bench", "--seq", "64"], ["compile", "--estimate", "--seq", "64,128", "--json"]])
def test_length_shorter_than_a_valid_conv_is_refused(capsys, tmp_path, cmd):
    spec = write_spec(tmp_path, CONV)
    code, out, err = run(capsys, cmd[0], spec, *cmd[1:])
    one_line_error(code, err)
    assert "conv1d" in err and "line 3" in err and "T=100" in err
    assert out == ""


def test_length_at_the_conv_kernel_is_fine(capsys, tmp_path):
    spec = write_spec(tmp_path, CONV)
    code, out, err = run(capsys, "compile", spec, "--estimate", "--seq", "100", "--json")
    assert code == 0, err
    assert '"flops_forward":' in out and "-" not in out.split('"flops_forward":')[1][:2]
