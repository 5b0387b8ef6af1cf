"""Backend: torch.compile with dynamic sequence dims (backend=eager/aot_eager in
the suite; one real inductor smoke test)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import seqdsl  # noqa: E402

from test_backend_build import one_thread  # noqa: E402,F401  (autouse)

SMALL = """
model small {
    input tokens: int[B, T]
    logits = tokens -> embed(64, 32) as wte
        -> repeat(2) {
            residual { rmsnorm -> attention(4, kv_heads=2, causal=true, pos=rope) }
            residual { rmsnorm -> swiglu(64) }
        }
        -> rmsnorm -> linear(64, bias=false, tie=wte)
    output logits
}"""


def test_compiled_matches_eager_and_compiles_at_most_twice():
    import torch._dynamo
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    graph = seqdsl.parse(SMALL).model()
    torch.manual_seed(0)
    eager = seqdsl.build(graph).eval()
    compiled = seqdsl.compile_model(graph, backend="aot_eager", fullgraph=True)
    compiled.load_state_dict(eager.state_dict())
    compiled.eval()
    with torch.no_grad():
        for t in (5, 9, 17, 33, 64):
            x = torch.randint(0, 64, (2, t))
            assert torch.allclose(compiled(x), eager(x), atol=1e-4, rtol=1e-4)
    assert counters["stats"]["unique_graphs"] <= 2, dict(counters["stats"])


def test_rnn_specs_compile_stage_by_stage():
    """The runs of nodes between RNN calls are separate full graphs (fullgraph=True
    would raise on a graph break), each compiled once for all lengths; the RNN
    runs eagerly in between, and so do the runs of one-kernel layers (the
    conv1d before the LSTM; the residual's add and the linear head at the
    end), which compiling could not speed up. Train mode adds one graph per
    compiled stage."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    text = """
model m {
    input x: float[B, T, 8]
    y = x -> conv1d(16, 3, padding=causal) -> lstm(16) -> attention(2, causal=true, window=4)
        -> residual { layernorm -> gru(16) } -> linear(4)
    output y
}"""
    graph = seqdsl.parse(text).model()
    torch.manual_seed(0)
    eager = seqdsl.build(graph).eval()
    compiled = seqdsl.compile_model(graph, backend="aot_eager", fullgraph=True)
    compiled.load_state_dict(eager.state_dict())
    compiled.eval()
    assert compiled.stage_modes == ["eager", "rnn", "compiled", "rnn", "eager"]
    with torch.no_grad():
        for t in (7, 13, 21, 30, 41):
            x = torch.randn(2, t, 8)
            assert torch.allclose(compiled(x), eager(x), atol=1e-4, rtol=1e-4)
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    compiled.train()
    eager.train()
    x = torch.randn(2, 9, 8, requires_grad=True)
    compiled(x).square().sum().backward()
    g = x.grad.clone()
    x.grad = None
    eager(x).square().sum().backward()
    assert torch.allclose(g, x.grad, atol=1e-4, rtol=1e-4)
    assert counters["stats"]["unique_graphs"] == 2, dict(counters["stats"])


LSTM_LM = """
model lstm_lm {
    input tokens: int[B, T]
    logits = tokens -> embed(50, 16) as enc -> dropout(0.2) -> lstm(24) -> dropout(0.2) -> lstm(16)
        -> dropout(0.2) -> linear(50, tie=enc)
    output logits
}"""


@pytest.mark.parametrize("every, modes, graphs", [
    (False, ["eager", "rnn", "eager", "rnn", "eager"], 0),
    (True, ["compiled", "rnn", "compiled", "rnn", "compiled"], 3),
])
def test_an_lstm_lm_compiles_nothing_that_gains_nothing(every, modes, graphs):
    """An LSTM LM is embed, RNN calls and a head: every stage between the RNNs
    is one kernel, so compiling it traces no graph at all (compile_every_stage
    restores the old plan, which benchmarks/compile_stages.py compares), in
    eval and in training, and computes what the eager module does."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    from seqdsl.backend.seqmodel import CompiledSeqModel
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    eager = seqdsl.build(seqdsl.parse(LSTM_LM).model())
    compiled = CompiledSeqModel(eager, backend="aot_eager", fullgraph=True, compile_every_stage=every)
    assert compiled.stage_modes == modes
    eager.eval()
    with torch.no_grad():
        for t in (5, 11, 23):
            x = torch.randint(0, 50, (2, t))
            assert torch.equal(compiled(x), eager(x)) or torch.allclose(compiled(x), eager(x), atol=1e-5)
    assert counters["stats"].get("unique_graphs", 0) == graphs, dict(counters["stats"])
    eager.train()
    x = torch.randint(0, 50, (2, 9))
    torch.manual_seed(1)
    compiled(x).sum().backward()
    assert all(p.grad is not None for p in eager.parameters())
    assert counters["stats"].get("unique_graphs", 0) == 2 * graphs, dict(counters["stats"])


def test_segments_run_eagerly_between_compiled_stages():
    import torch._dynamo
    torch._dynamo.reset()
    text = """
model m {
    input x: float[B, T, 8]
    y = x -> rmsnorm -> linear(16) -> segments(length=5, memory=3) { residual { attention(2, causal=true) } }
        -> rmsnorm -> linear(4)
    output y
}"""
    graph = seqdsl.parse(text).model()
    torch.manual_seed(0)
    eager = seqdsl.build(graph).eval()
    compiled = seqdsl.compile_model(graph, backend="eager", fullgraph=True)
    compiled.load_state_dict(eager.state_dict())
    compiled.eval()
    assert compiled.stage_modes == ["compiled", "segments", "compiled"]
    with torch.no_grad():
        for t in (7, 13):
            x = torch.randn(2, t, 8)
            assert torch.allclose(compiled(x), eager(x), atol=1e-4, rtol=1e-4)


def test_inductor_smoke():
    """The one real inductor compile of the suite."""
    import torch._dynamo
    torch._dynamo.reset()
    text = """
model tiny {
    input x: float[B, T, 8]
    y = x -> residual { layernorm -> attention(2, causal=true) } -> mlp(16)
    output y
}"""
    torch.manual_seed(0)
    eager = seqdsl.build(seqdsl.parse(text).model()).eval()
    compiled = seqdsl.build(seqdsl.parse(text).model(), compile=True)
    compiled.load_state_dict(eager.state_dict())
    compiled.eval()
    with torch.no_grad():
        x = torch.randn(2, 11, 8)
        assert torch.allclose(compiled(x), eager(x), atol=1e-4, rtol=1e-4)


def test_device_and_dtype():
    m = seqdsl.build(seqdsl.parse(SMALL).model(), device="cpu", dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in m.parameters())
    assert m(torch.randint(0, 64, (1, 6))).dtype == torch.float64


@pytest.mark.parametrize("spec", ["keyword_spotter", "speech_recognizer", "long_document"])
def test_stages_pass_on_and_drop_values_by_the_forwards_liveness(spec):
    """Each compiled-path stage hands on exactly the values read after it (or
    returned) and drops exactly the inputs nobody reads after it: the same
    liveness that frees values in the eager forward."""
    from pathlib import Path

    from seqdsl.backend.seqmodel import plan_stages
    model = seqdsl.build(Path(__file__).resolve().parent.parent / "specs" / f"{spec}.seq")
    stages = plan_stages(model, backend="eager")
    assert {s.mode for s in stages} >= {"compiled"}
    for i, stage in enumerate(stages):
        later = {src for s in stages[i + 1:] for e in s.entries for src in e[2]} | set(model._out_nodes)
        assert stage.gives == tuple(e[1] for e in stage.entries if e[1] in later)
        assert stage.frees == tuple(n for n in stage.needs if n not in later)


def test_compiled_model_leaves_the_callers_tensors_unmarked():
    """build(compile=True) marks its sequence dims dynamic on its own views,
    never on the tensor the caller passed (a mark there would make another
    compiled model fed that tensor compile dynamic too)."""
    g = seqdsl.parse("model m {\n input x: float[B, T, 8]\n y = x -> linear(8) -> relu\n output y\n}").model()
    model = seqdsl.build(g, compile=True, backend="eager")
    x = torch.randn(2, 9, 8)
    model(x)
    assert not getattr(x, "_dynamo_weak_dynamic_indices", None)
    assert not getattr(x, "_dynamo_dynamic_indices", None)
