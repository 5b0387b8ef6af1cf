"""The chunked recurrent layers under torch.compile with a dynamic length: one
graph for every length (the chunk count included), no graph break, the
eager function and gradients. Dynamo's graphs are counted with the `eager`
backend (the graphs and their guards are dynamo's whatever the backend; an
aot_eager run of the same cases took 380 s on the loaded 2-core machine);
one real inductor compile holds mamba2, whose saved views inductor could not
order over a symbolic length. gated_deltanet is not here: its chunk-to-chunk
carry (a dk x dk transition per chunk) still runs eagerly under compile, a
graph break."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import seqdsl  # noqa: E402

from test_backend_build import one_thread  # noqa: E402,F401  (autouse)

# (layer, lengths): each list spans several chunk counts, with ragged last chunks
# (rglru, mamba and mlstm chunk by 64, the others by the chunk given)
CASES = [
    ("rglru(2)", (70, 130, 200)),
    ("mamba(state=4)", (70, 130, 200)),
    ("gla(2, chunk=16)", (20, 37, 50)),
    ("retention(2, chunk=16)", (20, 37, 50)),
    ("mamba2(state=8, head_dim=16, chunk=16)", (20, 37, 50)),
    ("mlstm(2)", (70, 130, 200)),
    ("mingru", (20, 37, 50)),
]


def _models(call, backend, width=32):
    text = f"model m {{\n    input x: float[B, T, {width}]\n    y = x -> {call}\n    output y\n}}\n"
    graph = seqdsl.parse(text).model()
    eager = seqdsl.build(graph, seed=0).train()
    compiled = seqdsl.build(graph, seed=0, compile=True, backend=backend).train()
    compiled.load_state_dict(eager.state_dict())
    return eager, compiled


def _step(model, x):
    x = x.clone().requires_grad_()
    y = model(x)
    y.square().mean().backward()
    grads = [x.grad] + [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return y.detach(), grads


def _counts():
    from torch._dynamo.utils import counters
    return counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())


@pytest.mark.parametrize("call, lengths", CASES, ids=[c[0] for c in CASES])
def test_one_graph_for_every_length(call, lengths):
    import torch._dynamo
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    eager, compiled = _models(call, "eager")
    for t in lengths:
        x = torch.randn(2, t, 32, generator=torch.Generator().manual_seed(t))
        (y, grads), (ye, grads_e) = _step(compiled, x), _step(eager, x)
        torch.testing.assert_close(y, ye, rtol=1e-4, atol=1e-5)
        for g, ge in zip(grads, grads_e):
            torch.testing.assert_close(g, ge, rtol=1e-3, atol=1e-5)
    assert _counts() == (1, 0), (call, dict(counters["stats"]), dict(counters["graph_break"]))


def test_mamba2_compiles_with_inductor_at_a_dynamic_length():
    """Inductor's own lowering of the training forward (the graph that keeps
    tensors for backward; AOTAutograd compiles the backward at its first call,
    left out here for time: this one compile took 5 min on the loaded 2-core
    machine) with T marked dynamic: the layer once kept views (its x heads, its
    norm groups) whose strides inductor could not order with a symbolic length
    ('cannot determine truth value of Relational: 1 < s46'). Inductor still
    compiles a graph per length for mamba2 (benchmarks/results/recurrent_layers.md);
    dynamo alone makes one (test_one_graph_for_every_length)."""
    import torch._dynamo
    torch._dynamo.reset()
    eager, compiled = _models("mamba2(state=4, head_dim=8, chunk=8)", "inductor", width=16)
    x = torch.randn(1, 21, 16, generator=torch.Generator().manual_seed(21))
    y = compiled(x)
    assert y.requires_grad
    torch.testing.assert_close(y.detach(), eager(x).detach(), rtol=1e-4, atol=1e-5)
