"""The `loss` statement: syntax, check, fmt, builder, cost and lowering, and the
training-memory estimate against a measured transformers GPT-2 step."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import seqdsl
import seqdsl.builder as sb
from seqdsl.backend import measure
from seqdsl.backend.seqmodel import build
from seqdsl.check.elaborate import parse
from seqdsl.errors import SourceFile, SpecError
from seqdsl.lang import ast
from seqdsl.lang.printer import format_text
from seqdsl.lang.syntax import parse_module

from hf_gpt2 import spec_text, training_step_peak

torch.set_num_threads(1)

LM = """model lm {
    input tokens: int[B, T]

    logits = tokens -> embed(96, 16) as wte -> linear(96, bias=false, tie=wte)

    output logits
    loss cross_entropy(logits)
}
"""


def _errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as exc:
        parse(text, "bad.seq").model()
    return [f"{d.span.line}:{d.span.column}: {d.message}" for d in exc.value.diagnostics]


def _model(body: str, out="y: float[B, T, 8]") -> str:
    return f"model m {{\n    input x: float[B, T, 8]\n    y = x -> linear(8)\n    output y\n    {body}\n}}\n"


# ------------------------------------------------------------------ syntax and check
def test_loss_statement_is_checked_and_printed_canonically():
    m = parse(LM, "lm.seq").model()
    assert (m.loss.kind, m.loss.output, m.loss.options) == ("cross_entropy", "logits", ())
    assert format_text(LM) == LM


def test_loss_stays_a_name_everywhere_else():
    # a value named `loss`, fed on and output: the statement keyword is contextual
    text = ("model m {\n    input x: float[B, T, 8]\n\n    loss = x -> linear(4)\n    y = loss -> linear(3)\n\n"
            "    output y, loss\n    loss mse(loss)\n}\n")
    for fast in (True, False):
        module = parse_module(SourceFile("m.seq", text), fast=fast)
        kinds = [type(s).__name__ for s in module.models[0].statements]
        assert kinds == ["Input", "Bind", "Bind", "Output", "Loss"]
    m = parse(text, "m.seq").model()
    assert (m.loss.kind, m.loss.output, m.values["loss"]) == ("mse", "loss", "loss.linear")
    assert format_text(text) == text


def test_the_only_output_is_the_default_and_options_get_defaults():
    m = parse(_model("loss ctc(target_len=5)"), "m.seq").model()
    assert (m.loss.output, dict(m.loss.options)) == ("y", {"blank": 0, "target_len": 5})


@pytest.mark.parametrize("body, expected", [
    ("loss cross_entrpy", "5:10: unknown loss 'cross_entrpy'"),
    ("loss mse(z)", "5:14: 'z' is not an output of model 'm'"),
    ("loss mse(y, y)", "5:17: mse takes one positional argument, the output it is computed on"),
    ("loss mse(y, scale=2)", "5:17: mse takes no option 'scale'"),
    ("loss ctc(y)", "5:10: ctc needs target_len="),
    ("loss ctc(y, target_len=4, blank=8)", "5:31: blank=8 is not one of the 8 classes"),
    ("loss ctc(y, target_len=0)", "5:17: target_len must be at least 1"),
    ("loss mse\n    loss mse", "6:5: a model has one loss statement"),
])
def test_bad_loss_statements_are_refused_at_the_spot(body, expected):
    assert _errors(_model(body)) == [expected]


def test_loss_needs_a_named_output_when_there_are_two():
    text = ("model m {\n    input x: float[B, T, 8]\n    y = x -> linear(8)\n    z = x -> linear(2)\n"
            "    output y, z\n    loss mse\n}\n")
    assert _errors(text) == ["6:10: model 'm' has 2 outputs: name the one the loss is on"]


def test_cross_entropy_needs_float_classes():
    text = "model m {\n    input x: int[B, T]\n    output x\n    loss cross_entropy\n}\n"
    assert _errors(text) == ["4:10: cross_entropy needs a float output, got int[B, T]"]


def test_cli_refuses_a_bad_loss_without_a_traceback(tmp_path, capsys):
    from seqdsl.cli import main
    path = tmp_path / "bad.seq"
    path.write_text(_model("loss mse(z)"))
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:5:14: error: 'z' is not an output of model 'm'" in err and "Traceback" not in err


def test_builder_writes_the_statement():
    m = sb.model("asr")
    x = m.input("x", "float", ["B", "T", 8])
    y = m.bind("y", x, sb.linear(6))
    m.output(y)
    m.loss("ctc", y, target_len=3, blank=5)
    assert "    loss ctc(y, target_len=3, blank=5)\n" in m.to_seq()
    assert dict(m.check().loss.options) == {"blank": 5, "target_len": 3}
    with pytest.raises(SpecError, match="unknown loss 'mae'"):
        m.loss("mae", y)
    assert isinstance(m.statements[-1], ast.Loss)


# ------------------------------------------------------------------ cost
def test_loss_bytes_and_training_figure():
    est = seqdsl.estimate(parse(LM, "lm.seq"), seq=[100], batch=2).points[0]
    assert est.loss_bytes == 3 * 2 * 100 * 96 * 4
    assert est.flops_train == seqdsl.estimate(parse(LM.replace("    loss cross_entropy(logits)\n", ""),
                                                    "lm.seq"), seq=[100], batch=2).points[0].flops_train
    forward_phase = est.activation_bytes + est.loss_bytes
    gradients = est.grads_bytes + 2 * 96 * 16 * 4          # the tied weight's two extra copies
    assert est.training_bytes == est.weights_bytes + est.optimizer_bytes + max(forward_phase, gradients)


@pytest.mark.parametrize("body, shape", [
    ("loss cross_entropy", (3, 40, 8)),
    ("loss mse", (3, 40, 8)),
    ("loss ctc(target_len=6, blank=2)", (3, 40, 8)),
])
def test_loss_working_set_and_flops_as_measured(body, shape):
    """The rule's bytes are what the emitted loss allocates above its input (the
    output, held by the caller) in forward and backward, and FlopCounterMode
    counts no FLOP in it."""
    graph = parse(_model(body), "m.seq").model()
    env = {"B": shape[0], "T": shape[1]}
    model = build(graph)
    out = torch.randn(shape, requires_grad=True)
    targets = measure.example_targets(graph, env)

    def step():
        model.loss(out, targets).backward()

    with measure.counter() as c:
        step()
    assert c.get_total_flops() == 0
    out.grad = None
    peak = measure.allocation_peak(step, [out, targets])
    expected = seqdsl.estimate(graph, seq=[{"T": shape[1]}], batch=shape[0]).points[0].loss_bytes
    assert expected - 64 <= peak <= expected + 64 * shape[0] * 8   # + the loss's few scalars per row


def test_model_loss_is_the_declared_objective():
    graph = parse(LM, "lm.seq").model()
    model = build(graph, seed=0)
    tokens = torch.randint(0, 96, (2, 7))
    logits = model(tokens)
    assert torch.equal(model.loss(logits, tokens), F.cross_entropy(logits.reshape(-1, 96), tokens.reshape(-1)))
    with pytest.raises(ValueError, match="targets must have shape"):
        model.loss(logits, tokens[:, :3])
    bare = build(parse(LM.replace("    loss cross_entropy(logits)\n", ""), "lm.seq").model())
    with pytest.raises(ValueError, match="declares no loss"):
        bare.loss(logits, tokens)


def test_bench_trains_with_the_declared_loss():
    from seqdsl.backend.bench import bench
    graph = parse(LM, "lm.seq").model()
    row = bench(graph, [{"T": 64}], batch=4, reps=1)["points"][0]
    est = seqdsl.estimate(graph, seq=[64], batch=4).points[0]
    assert abs(row["peak_bytes"] / est.training_bytes - 1) < 0.05


# ------------------------------------------------------------------ against transformers' GPT-2
SMALL = {"layers": 2, "d": 64, "heads": 4, "vocab": 4096, "max_len": 256}


def test_gpt2_training_step_memory_matches_transformers():
    """A small GPT-2 config, where the logits' cross-entropy is most of a
    step's memory: the estimate with the loss is within 5% of the measured
    Adam step of transformers' GPT2LMHeadModel; without it, far below."""
    pytest.importorskip("transformers")
    measured = training_step_peak(**SMALL, seq=256, batch=2)
    with_loss = seqdsl.estimate(parse(spec_text(**SMALL), "gpt2.seq"), seq=[256], batch=2).points[0]
    without = seqdsl.estimate(parse(spec_text(**SMALL, loss=False), "gpt2.seq"), seq=[256], batch=2).points[0]
    assert abs(with_loss.training_bytes / measured - 1) < 0.05, (with_loss.training_bytes, measured)
    assert without.training_bytes / measured < 0.8
