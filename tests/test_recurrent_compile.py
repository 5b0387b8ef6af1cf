"""The chunked recurrent layers under torch.compile with a dynamic length: one
graph for every length (the chunk count included), no graph break, the
eager function and gradients. Dynamo's graphs are counted with the `eager`
backend (the graphs and their guards are dynamo's whatever the backend; an
aot_eager run of the same cases took 380 s on the loaded 2-core machine);
one real inductor compile, of gla with its convolution at a tiny width, holds
what only inductor adds: guards from its lowering that fixed the length
(torch_modules.depthwise_conv1d and unpadded)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import seqdsl  # noqa: E402

from test_backend_build import one_thread  # noqa: E402,F401  (autouse)

# (layer, lengths): each list spans several chunk counts, with ragged last chunks
# (rglru, mamba and mlstm chunk by 64, the others by the chunk given; one chunk,
# T <= chunk, is a graph of its own: dynamo specialises sizes of 1)
CASES = [
    ("rglru(2)", (70, 130, 200)),
    ("mamba(state=4)", (70, 130, 200)),
    ("gla(2, chunk=16)", (20, 37, 50)),
    ("retention(2, chunk=16)", (20, 37, 50)),
    ("mamba2(state=8, head_dim=16, chunk=16)", (20, 37, 50)),
    ("mlstm(2)", (70, 130, 200)),
    ("mingru", (20, 37, 50)),
    ("gated_deltanet(2, head_dim=8, chunk=8)", (20, 37, 50)),
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


def test_inductor_compiles_one_graph_for_every_length():
    """A real inductor compile (forward and backward: AOTAutograd compiles the
    backward with the forward when the length is symbolic) over three lengths
    of 3, 5 and 7 chunks: one graph, the eager outputs and gradients. Two
    guards of inductor's own once fixed the length (a graph per T): its
    convolution backward turned the input gradient's strides into ints
    (torch_modules.depthwise_conv1d), and the un-padded output, a view of the
    padded result kept for backward, was stored compact while AOTAutograd
    restrided the backward's input to the first call's concrete strides
    (torch_modules.unpadded; pytorch#194420). gla with its short convolution
    has both; the other cases use the eager backend (this one compile takes
    minutes on the loaded 2-core machine)."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    eager, compiled = _models("gla(1, conv=4, chunk=8)", "inductor", width=8)
    for t in (20, 37, 50):
        x = torch.randn(1, t, 8, generator=torch.Generator().manual_seed(t))
        (y, grads), (ye, grads_e) = _step(compiled, x), _step(eager, x)
        torch.testing.assert_close(y, ye, rtol=1e-4, atol=1e-5)
        for g, ge in zip(grads, grads_e):
            torch.testing.assert_close(g, ge, rtol=1e-3, atol=1e-5)
    assert _counts() == (1, 0), (dict(counters["stats"]), dict(counters["graph_break"]))
