"""Backend: every bundled and conformance spec builds, counts its parameters
exactly as the ModelGraph does, and runs to the symbolically inferred shapes."""
from __future__ import annotations

import functools
import glob
import os

import pytest

torch = pytest.importorskip("torch")

import seqdsl  # noqa: E402
from seqdsl.graph.symbolic import evaluate  # noqa: E402

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


@pytest.fixture(autouse=True)
def one_thread():
    """These models are small and the 2-core machine is shared: intra-op threads
    only add contention (10x slower streaming steps under load), so run on one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _chunks(xs, n):
    t = xs[0].shape[1]
    for s in range(0, t, n):
        yield [x[:, s:s + n] for x in xs]


def check_stream(model, inputs, context=None, tol=1e-5):
    """step() over chunks of 1, 3 and 17 positions reproduces forward()."""
    context = context or {}
    names = [n for n in model.input_names if n not in context]
    stream_inputs = [x for n, x in zip(model.input_names, inputs) if n in names]
    with torch.no_grad():
        full = model(*inputs)
        for n in (1, 3, 17):
            state = model.init_state(inputs[0].shape[0], **context)
            outs = []
            chunks = list(_chunks(stream_inputs, n))
            for i, chunk in enumerate(chunks):
                # final: a layer holding frames back for its lookahead (emformer) runs them
                y, state = model.step(*chunk, state=state, final=i == len(chunks) - 1)
                outs.append(y)
            got = torch.cat(outs, 1)
            # absolute error scales with the outputs' size: a 24-layer LM's logits reach ±50,
            # where fp32 resolves 4e-6 and 1e-4 absolute is a few ulps of rounding
            atol = tol * max(1.0, full.abs().max().item())
            assert torch.allclose(got, full, atol=atol, rtol=tol), (n, (got - full).abs().max())


def stream_context(model, graph):
    """Input names given once to init_state so the rest can stream (the
    encoder-decoder specs stream the last input), or None when it cannot."""
    from seqdsl.errors import SpecError
    names = list(graph.inputs)
    for context_names in ((), tuple(names[:-1])):
        try:
            model.check_streamable(context_names)
            return context_names
        except SpecError:
            continue
    return None


@functools.lru_cache(maxsize=None)
def built_models(path):
    """{model name: (graph, seqdsl.build(graph) in eval mode, seed 0)}, built once
    per session: the emit tests compare against the same modules."""
    out = {}
    for name, graph in seqdsl.load(path).models.items():
        torch.manual_seed(0)
        out[name] = (graph, seqdsl.build(graph).eval())
    return out


@pytest.mark.parametrize("path", SPECS, ids=os.path.basename)
def test_spec_builds_params_shapes_and_streams(path):
    """One build per model (the bundled LM has 100M parameters): parameter count,
    output shapes at B=2, T=37, and, when the cost model says it streams, step()
    over chunks reproducing forward (float32 to 1e-4, B=1, T=19)."""
    from seqdsl.cost.model import model_cost
    for graph, model in built_models(path).values():
        assert sum(p.numel() for p in model.parameters()) == graph.params
        env = sizes(graph, seq=5 if "video" in path else 37)
        with torch.no_grad():
            out = model(*make_inputs(graph, env))
        outs = out if isinstance(out, tuple) else (out,)
        assert len(outs) == len(graph.outputs)
        for y, t in zip(outs, graph.outputs.values()):
            assert tuple(y.shape) == tuple(int(evaluate(d, env)) for d in t.dims)
            assert torch.isfinite(y).all()
        context_names = stream_context(model, graph)
        # the backend streams exactly what the cost model says streams, with the same inputs given once
        cost = model_cost(graph)
        assert context_names == (cost.stream_context if cost.streaming_blocker is None else None)
        if context_names is None:
            continue
        env = {s: (1 if s == graph.batch_symbol else 19) for s in graph.symbols}
        inputs = make_inputs(graph, env)
        context = {n: x for n, x in zip(graph.inputs, inputs) if n in context_names}
        check_stream(model, inputs, context=context, tol=1e-4)


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


def test_every_layer_kind_lowers_beside_its_rules():
    """Each layer class declares its own module (the lowering `lower` builds and
    `compile -o` prints) next to its shape and cost rules."""
    from seqdsl.layers import LAYERS, Layer
    missing = [kind for kind, rule in LAYERS.items() if type(rule).module is Layer.module]
    assert not missing, missing


def test_check_and_estimate_do_not_import_torch():
    import subprocess
    import sys
    code = ("import sys\n"
            "from seqdsl.cli import main\n"
            "for argv in (['check', 'specs/transformer_lm.seq'], ['compile', 'specs/transformer_lm.seq', '--estimate']):\n"
            "    try:\n"
            "        rc = main(argv)\n"
            "    except SystemExit as e:\n"
            "        rc = e.code\n"
            "    assert not rc, (argv, rc)\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=120, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
