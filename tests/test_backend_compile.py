"""Backend: torch.compile with dynamic sequence dims (backend=eager/aot_eager in
the suite; one real inductor smoke test)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import seqdsl  # noqa: E402

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


def test_compiled_graph_breaks_around_rnn_but_matches():
    import torch._dynamo
    torch._dynamo.reset()
    text = """
model m {
    input x: float[B, T, 8]
    y = x -> conv1d(16, 3, padding=causal) -> lstm(16) -> attention(2, causal=true, window=4) -> linear(4)
    output y
}"""
    torch.manual_seed(0)
    eager = seqdsl.build(seqdsl.parse(text).model()).eval()
    compiled = seqdsl.compile_model(seqdsl.parse(text).model(), backend="eager")
    compiled.load_state_dict(eager.state_dict())
    compiled.eval()
    with torch.no_grad():
        for t in (7, 13, 21):
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
