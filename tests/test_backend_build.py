"""Backend: every bundled and conformance spec builds, counts its parameters
exactly as the ModelGraph does, and runs to the symbolically inferred shapes."""
from __future__ import annotations

import glob
import os

import pytest

torch = pytest.importorskip("torch")

import seqdsl  # noqa: E402
from seqdsl.symbolic import evaluate  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECS = sorted(glob.glob(os.path.join(ROOT, "specs", "*.seq"))) + \
    sorted(glob.glob(os.path.join(ROOT, "..", "shared", "conformance", "specs", "*.seq")))


def make_inputs(graph, env, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in graph.inputs.values():
        shape = [int(evaluate(d, env)) for d in t.dims]
        if t.dtype == "int":
            out.append(torch.randint(0, 50, shape, generator=g))
        else:
            out.append(torch.randn(shape, generator=g))
    return out


def sizes(graph, seq=9):
    env = {}
    for s in graph.symbols:
        env[s] = 2 if s == graph.batch_symbol else seq
    return env


@pytest.mark.parametrize("path", SPECS, ids=os.path.basename)
def test_spec_builds_params_and_shapes(path):
    prog = seqdsl.load(path)
    for graph in prog.models.values():
        torch.manual_seed(0)
        model = seqdsl.build(graph).eval()
        assert sum(p.numel() for p in model.parameters()) == graph.params
        env = sizes(graph, seq=5 if "video" in path else 37)
        with torch.no_grad():
            out = model(*make_inputs(graph, env))
        outs = out if isinstance(out, tuple) else (out,)
        assert len(outs) == len(graph.outputs)
        for y, t in zip(outs, graph.outputs.values()):
            assert tuple(y.shape) == tuple(int(evaluate(d, env)) for d in t.dims)
            assert torch.isfinite(y).all()


def test_state_dict_names_follow_spec():
    graph = seqdsl.parse("""
model m {
    input tokens: int[B, T]
    logits = tokens -> embed(50, 16) as wte
        -> repeat(2) { residual { layernorm -> attention(2, causal=true) } }
        -> linear(50, bias=false, tie=wte) as head
    output logits
}""").model()
    model = seqdsl.build(graph)
    keys = set(model.state_dict())
    assert "logits.repeat[0].residual.attention.q.weight" in keys
    assert "logits.repeat[1].residual.layernorm.weight" in keys
    assert "logits.wte.weight" in keys
    assert not any(k.startswith("logits.head.weight") for k in keys)   # tied, not a new weight
    head = model.named_layer("logits.head")
    assert head.__dict__["tied"].weight is model.named_layer("logits.wte").weight
    x = torch.randint(0, 50, (2, 7))
    assert model(x).shape == (2, 7, 50)
    # round trip
    other = seqdsl.build(graph)
    other.load_state_dict(model.state_dict())
    assert torch.equal(other(x), model(x))


def test_import_seqdsl_does_not_import_torch():
    import subprocess
    import sys
    code = "import sys, seqdsl; seqdsl.load; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
