"""gla, gated_deltanet, retention, mlstm (LANGUAGE.md "Modern recurrent
layers"): the contract's argument defaults and parameter counts; the lowering's
three forms (step-by-step reference, chunked parallel form, recurrent step)
held equal; equality with the reference implementations
(flash-linear-attention, xlstm) on the same weights; streaming; costs."""
import pytest
import torch

import seqdsl
from seqdsl.layers import LAYERS


def layer(call, dims="B, T, 128", dtype="float"):
    text = f"model m {{\n    input x: {dtype}[{dims}]\n    y = x -> {call}\n    output y\n}}\n"
    return seqdsl.parse(text).model().layers[0]


def refused(call, dims="B, T, 128", dtype="float"):
    with pytest.raises(seqdsl.SpecError) as exc:
        layer(call, dims, dtype)
    return exc.value


# ------------------------------------------------------------------ check: the contract's counts
@pytest.mark.parametrize("call, dims, params", [
    ("gla(4)", "B, T, 128", 68_704),
    ("gated_deltanet(3, head_dim=32)", "B, T, 128", 100_678),
    ("retention(4)", "B, T, 128", 131_136),
    ("mlstm(4)", "B, T, 64", 30_088),
])
def test_contract_param_counts(call, dims, params):
    n = layer(call, dims)
    assert n.params == params
    assert str(n.output) == str(n.inputs[0])
    assert LAYERS[n.kind].is_causal(n.args, list(n.inputs))


def test_contract_defaults():
    assert layer("gla(4)").args.model_dump() == dict(heads=4, expand_k=0.5, expand_v=1.0, gate_rank=16,
                                                      conv=0, conv_bias=False, chunk=64)
    assert layer("gated_deltanet(2, head_dim=32)").args.model_dump() == dict(
        heads=2, head_dim=32, expand_v=2.0, conv=4, conv_bias=False, gate=True, chunk=64)
    assert layer("gated_deltanet(2)").args.head_dim == 256
    assert layer("retention(4)").args.model_dump() == dict(heads=4, expand_k=1.0, expand_v=2.0, chunk=64)
    assert layer("mlstm(4)").args.model_dump() == dict(heads=4, proj=2.0, qkv_block=4, conv=4, bias=False)


def test_options_change_counts_as_the_formulas_say():
    # gla: short convs over q, k, v (2dk + dv channels), with bias
    assert layer("gla(4, conv=4, conv_bias=true)").params == 68_704 + (2 * 64 + 128) * 5
    # gated_deltanet without the output gate: no g_proj
    assert layer("gated_deltanet(3, head_dim=32, gate=false)").params == 100_678 - 128 * 192
    assert layer("gated_deltanet(3, head_dim=32, conv=0)").params == 100_678 - (2 * 96 + 192) * 4
    # mlstm: inner width rounds up to 64 (proj·d = 96 -> 128), biases 5di + d
    assert layer("mlstm(4, proj=1.5)", "B, T, 64").params == 30_088
    assert layer("mlstm(4, bias=true)", "B, T, 64").params == 30_088 + 5 * 128 + 64


def test_errors():
    assert "divide" in refused("gla(3)").message                       # dk = 64
    assert "expand_k" in refused("gla(4, expand_k=0.33)", "B, T, 10").message
    assert "divide" in refused("retention(3)").message
    assert "even" in refused("retention(4, expand_k=0.5)", "B, T, 40").message   # dkh = 5
    assert "expand_v" in refused("gated_deltanet(2, head_dim=3, expand_v=0.5)").message
    assert "qkv_block" in refused("mlstm(4, qkv_block=3)", "B, T, 64").message
    assert "divide" in refused("mlstm(5)", "B, T, 64").message
    refused("mlstm(4, conv=0)", "B, T, 64")
    refused("gla(4)", "B, T", "int")
    refused("retention(4)", "B, T, 4, 128")
    refused("gated_deltanet(0)")


# ------------------------------------------------------------------ the lowering: modules built from the spec
def module_of(call, dims="B, T, 32"):
    from seqdsl.layers.lowering import instantiate
    node = layer(call, dims)
    return instantiate(LAYERS[node.kind].module(node, None), {})


SPECS = {   # small instances of each layer, every option that changes the function on
    "gla": "gla(2, conv=4, conv_bias=true)",
    "gla_noconv": "gla(2, chunk=16)",
    "gated_deltanet": "gated_deltanet(2, head_dim=8)",
    "gated_deltanet_plain": "gated_deltanet(2, head_dim=8, gate=false, conv=0, expand_v=1.5, chunk=16)",
    "retention": "retention(2)",
    "mlstm": "mlstm(2)",
    "mlstm_bias": "mlstm(2, bias=true)",
}
REF_T = (1, 63, 64, 65, 200)


@pytest.fixture(scope="module")
def fla():
    pytest.importorskip("einops")
    import rec2_refs
    if rec2_refs.fla_root() is None:
        pytest.skip("flash-linear-attention is not installed (pip install -e .[reference])")
    with rec2_refs.fla_layers() as (layers, naive):
        yield layers, naive


def _fla_reference(layers, key):
    """The fla layer matching SPECS[key], on hidden size 32."""
    import rec2_refs
    kind = key.split("_")[0] if not key.startswith("gated") else "gated_deltanet"
    kw = {"gla": dict(num_heads=2, use_short_conv=True, conv_size=4, conv_bias=True),
          "gla_noconv": dict(num_heads=2),
          "gated_deltanet": dict(num_heads=2, head_dim=8),
          "gated_deltanet_plain": dict(num_heads=2, head_dim=8, use_gate=False, use_short_conv=False, expand_v=1.5),
          "retention": dict(num_heads=2)}[key]
    return rec2_refs.randomize(layers[kind](hidden_size=32, **kw))


@pytest.mark.parametrize("key", ["gla", "gla_noconv", "gated_deltanet", "gated_deltanet_plain", "retention"])
def test_equals_flash_linear_attention(fla, key):
    """Same weights (loaded strictly from the reference's state_dict), same
    outputs, across chunk boundaries (T = 1, 63, 64, 65, 200; chunk 64 or 16)."""
    layers, _ = fla
    torch.manual_seed(0)
    ref = _fla_reference(layers, key)
    mine = module_of(SPECS[key])
    mine.load_state_dict(ref.state_dict(), strict=True)
    worst = 0.0
    for t in REF_T:
        x = torch.randn(2, t, 32)
        with torch.no_grad():
            want, got = ref(x)[0], mine(x)
        worst = max(worst, (want - got).abs().max().item())
    assert worst < 1e-4, worst


@pytest.mark.parametrize("key", ["mlstm", "mlstm_bias"])
def test_equals_xlstm(key):
    xlstm = pytest.importorskip("xlstm.blocks.mlstm.layer")
    import rec2_refs
    torch.manual_seed(0)
    cfg = xlstm.mLSTMLayerConfig(embedding_dim=32, num_heads=2, context_length=256, bias=key == "mlstm_bias")
    ref = rec2_refs.randomize(xlstm.mLSTMLayer(cfg), scale=0.2)
    mine = module_of(SPECS[key])
    mine.load_state_dict(ref.state_dict(), strict=True)
    worst = 0.0
    for t in REF_T:
        x = torch.randn(2, t, 32)
        with torch.no_grad():
            want, got = ref(x), mine(x)
        worst = max(worst, (want - got).abs().max().item())
    assert worst < 1e-4, worst


def test_gradients_equal_the_reference(fla):
    """Training runs the chunked form: its gradients are the reference's."""
    layers, _ = fla
    torch.manual_seed(0)
    for key in ("gla", "gated_deltanet", "retention"):
        ref = _fla_reference(layers, key)
        mine = module_of(SPECS[key])
        mine.load_state_dict(ref.state_dict(), strict=True)
        x = torch.randn(2, 70, 32)
        ref(x)[0].square().mean().backward()
        mine(x).square().mean().backward()
        got = dict(mine.named_parameters())
        for name, p in ref.named_parameters():
            assert torch.allclose(got[name].grad, p.grad, atol=1e-5, rtol=1e-4), (key, name)


# ------------------------------------------------------------------ three forms of each recurrence
def _qkv(b=2, h=3, t=37, dk=8, dv=6, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    return r(b, h, t, dk), r(b, h, t, dk), r(b, h, t, dv), r


@pytest.mark.parametrize("t, chunk", [(1, 16), (37, 16), (64, 16), (37, 64)])
def test_gla_forms_agree(t, chunk):
    from seqdsl.layers.linear_rnn_torch import chunk_gla, gla_step, naive_gla
    q, k, v, r = _qkv(t=t)
    g = -torch.nn.functional.softplus(r(2, 3, t, 8)) * 0.2
    s0 = r(2, 3, 8, 6)
    want, s_want = naive_gla(q, k, v, g, 0.35, s0)
    got, s_got = chunk_gla(q, k, v, g, 0.35, chunk, s0)
    assert torch.allclose(got, want, atol=1e-10) and torch.allclose(s_got, s_want, atol=1e-10)
    o, s = gla_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], g[:, :, 0], 0.35, s0)
    assert torch.allclose(o, want[:, :, 0], atol=1e-10)
    # retention's decay: one per head, broadcast over the keys
    gh = g[..., :1]
    assert torch.allclose(chunk_gla(q, k, v, gh, 1.0, chunk)[0], naive_gla(q, k, v, gh, 1.0)[0], atol=1e-10)


@pytest.mark.parametrize("t, chunk", [(1, 16), (37, 16), (64, 16), (37, 64)])
def test_delta_rule_forms_agree(t, chunk):
    from seqdsl.layers.gated_deltanet_torch import chunk_delta_rule, naive_delta_rule
    q, k, v, r = _qkv(t=t)
    k = k / k.norm(dim=-1, keepdim=True)
    beta, g = torch.sigmoid(r(2, 3, t)), -torch.nn.functional.softplus(r(2, 3, t))
    s0 = r(2, 3, 8, 6)
    want, s_want = naive_delta_rule(q, k, v, beta, g, 0.35, s0)
    got, s_got = chunk_delta_rule(q, k, v, beta, g, 0.35, chunk, s0)
    assert torch.allclose(got, want, atol=1e-10) and torch.allclose(s_got, s_want, atol=1e-10)


def test_delta_rule_equals_fla_naive(fla):
    """Our step-by-step and chunked forms against fla's own naive references."""
    from seqdsl.layers.gated_deltanet_torch import chunk_delta_rule
    _, naive = fla
    q, k, v, r = _qkv(t=70, dtype=torch.float32)
    k = k / k.norm(dim=-1, keepdim=True)
    beta, g = torch.sigmoid(r(2, 3, 70)), -torch.nn.functional.softplus(r(2, 3, 70))
    got = chunk_delta_rule(q, k, v, beta, g, 8 ** -0.5, 16)[0]
    t_ = lambda x: x.transpose(1, 2)
    want = naive["gated_delta_rule"].naive_recurrent_gated_delta_rule(t_(q), t_(k), t_(v), t_(beta), t_(g))[0]
    want_chunk = naive["gated_delta_rule"].naive_chunk_gated_delta_rule(t_(q), t_(k), t_(v), t_(g), t_(beta), 16)[0]
    assert torch.allclose(t_(got), want, atol=1e-4) and torch.allclose(t_(got), want_chunk, atol=1e-4)


@pytest.mark.parametrize("t, chunk", [(1, 16), (37, 16), (64, 16), (37, 64)])
def test_mlstm_forms_agree(t, chunk):
    from seqdsl.layers.mlstm_torch import chunk_mlstm, naive_mlstm
    q, k, v, r = _qkv(t=t, dv=8)
    i, f = r(2, 3, t) * 2, r(2, 3, t) + 2
    want, (c1, n1, m1) = naive_mlstm(q, k, v, i, f)
    got, (c2, n2, m2) = chunk_mlstm(q, k, v, i, f, chunk)
    assert torch.allclose(got, want, atol=1e-10)
    assert torch.allclose(m1, m2) and torch.allclose(c1, c2) and torch.allclose(n1, n2)
    # and against xlstm's parallel form (what mLSTMLayer.forward runs)
    backends = pytest.importorskip("xlstm.blocks.mlstm.backends")
    ref = backends.parallel_stabilized_simple(q, k, v, i.unsqueeze(-1), f.unsqueeze(-1))
    assert torch.allclose(got, ref, atol=1e-10)


# ------------------------------------------------------------------ streaming through SeqModel
STREAM_SPEC = """model m {
    input x: float[B, T, 32]
    y = x -> residual { gla(2, conv=4, chunk=16) } -> residual { gated_deltanet(2, head_dim=8, chunk=16) }
        -> residual { retention(2, chunk=16) } -> residual { mlstm(2) }
    output y
}
"""


def _stream(model, x, size):
    state = model.init_state(x.shape[0])
    outs = []
    for i in range(0, x.shape[1], size):
        y, state = model.step(x[:, i:i + size], state=state)
        outs.append(y)
    return torch.cat(outs, 1), state


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_step_over_chunks_equals_forward(dtype, tol):
    """init_state/step over chunks of 1, 3 and 17 reproduces the full forward
    (chunk 16: streaming crosses chunk boundaries of the chunked form); the
    layers sit in residual blocks so that each one's error shows at the output.
    float64 runs every recurrence in float64: equal to rounding."""
    from seqdsl.backend.seqmodel import build
    model = build(seqdsl.parse(STREAM_SPEC), seed=0, dtype=dtype).eval()
    x = torch.randn(2, 36, 32, dtype=dtype)
    with torch.no_grad():
        full = model(x)
        for size in (1, 3, 17):
            got, _ = _stream(model, x, size)
            assert (got - full).abs().max().item() <= tol, size


@pytest.mark.parametrize("dtype, name", [(torch.float32, "float32"), (torch.bfloat16, "bfloat16")])
def test_state_is_what_the_estimate_says(dtype, name):
    """The tensors a layer keeps between steps are exactly the estimate's
    state_bytes: fp32 recurrent state for the fla layers at any model dtype,
    xlstm's C, n, m at the model dtype, plus the short-convolution windows."""
    from seqdsl.backend.seqmodel import build
    from seqdsl.cost.estimate import estimate
    prog = seqdsl.parse(STREAM_SPEC)
    model = build(prog, seed=0, dtype=dtype).eval()
    with torch.no_grad():
        _, state = _stream(model, torch.randn(3, 20, 32, dtype=dtype), 7)
    kept = sum(v.nbytes for k, st in state.items() if not k.startswith("__") for v in st.values()
               if isinstance(v, torch.Tensor))
    for t in (1, 20, 10 ** 6):
        assert estimate(prog, seq=t, batch=3, dtype=name).points[0].state_bytes == kept


def test_emitted_source_runs_and_matches(tmp_path):
    """compile -o pastes gla_torch etc. and the shared linear_rnn_torch kernels;
    the file imports only torch and math, and computes what build() does."""
    import importlib.util
    from seqdsl.backend.emit import emit_program
    from seqdsl.backend.seqmodel import build
    graph = seqdsl.parse(STREAM_SPEC).model()
    out = tmp_path / "rec2_model.py"
    out.write_text(emit_program([graph]))
    src = out.read_text()
    assert "def chunk_gla" in src and "class GatedDeltaNet" in src and "class MLstm" in src
    imports = {line.split()[1] for line in src.splitlines() if line.startswith(("import ", "from "))}
    assert imports <= {"torch", "torch.nn.functional", "__future__", "math"}, imports
    spec = importlib.util.spec_from_file_location("rec2_model", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = build(graph, seed=0).eval()
    twin = mod.M().eval()
    twin.load_state_dict(model.state_dict())
    x = torch.randn(2, 20, 32)
    with torch.no_grad():
        assert torch.equal(twin(x), model(x))


# ------------------------------------------------------------------ costs against the lowering
@pytest.mark.parametrize("call", ["gla(2, conv=4, chunk=16)", "gla(2)", "gated_deltanet(2, head_dim=8, chunk=16)",
                                  "gated_deltanet(2, head_dim=8, gate=false, conv=0)", "retention(2, chunk=16)",
                                  "mlstm(2)"])
def test_costs_match_the_module(call):
    """FlopCounterMode on the built module equals the closed form, forward and
    training, at one chunk, exact multiples and a ragged last chunk; saved
    bytes (saved_tensors_hooks) and the inference peak within verify's
    tolerances (the saved figure is exact; the hook's storage bookkeeping can
    merge a freed temporary's address at short lengths)."""
    from seqdsl.backend import measure
    from seqdsl.backend.seqmodel import build
    from seqdsl.cost.estimate import estimate
    text = f"model m {{\n    input x: float[B, T, 32]\n    y = x -> {call}\n    output y\n}}\n"
    prog = seqdsl.parse(text)
    model = build(prog, seed=0)
    for t in (5, 16, 64, 70):
        p = estimate(prog, seq=t, batch=2).points[0]
        x = torch.randn(2, t, 32)
        fwd, train, saved = measure.training_pass(model, x)
        assert (p.flops_forward, p.flops_train) == (fwd, train), t
        assert abs(p.activation_bytes / saved - 1) <= 0.10, (t, p.activation_bytes, saved)
        live = measure.inference_live_bytes(model, x)
        assert abs((p.inference_peak_bytes - p.weights_bytes) / live - 1) <= 0.15, (t, live)


def test_cost_shape():
    """Depth ceil(T/Q) + 1; state constant in T; FLOPs grow with the padded length."""
    from seqdsl.cost.estimate import estimate
    prog = seqdsl.parse("model m {\n    input x: float[B, T, 64]\n    y = x -> gated_deltanet(2, head_dim=16)\n"
                        "    output y\n}\n")
    pts = estimate(prog, seq=[64, 65, 127, 128, 1000], batch=1).points
    assert [p.sequential_depth for p in pts] == [2, 3, 3, 3, 17]
    assert len({p.state_bytes for p in pts}) == 1
    f = [p.flops_forward for p in pts]
    assert f[1] - f[0] > f[3] - f[2]        # one more step opens a chunk: its whole padded core


@pytest.mark.parametrize("call", ["gla(2, conv=4, chunk=16)", "gated_deltanet(2, head_dim=8, gate=false, conv=0)",
                                  "gated_deltanet(2, head_dim=8)", "retention(2, chunk=16)", "mlstm(2, bias=true)"])
def test_step_flops_are_exact(call):
    """One generation step (a one-token chunk after five) costs the estimate's flops_per_token."""
    from seqdsl.backend import measure
    from seqdsl.backend.seqmodel import build
    from seqdsl.cost.estimate import estimate
    prog = seqdsl.parse(f"model m {{\n    input x: float[B, T, 32]\n    y = x -> {call}\n    output y\n}}\n")
    model = build(prog, seed=0).eval()
    state = model.init_state(2)
    with torch.no_grad():
        _, state = model.step(torch.randn(2, 5, 32), state=state)
        with measure.counter() as c:
            model.step(torch.randn(2, 1, 32), state=state)
    assert estimate(prog, seq=6, batch=2).points[0].flops_per_token == c.get_total_flops()


def test_lowering_files_define_distinct_names():
    """compile -o pastes the lowering files into one namespace: a top-level
    name defined in two of them would silently shadow the other."""
    import ast
    from pathlib import Path
    seen = {}
    for path in sorted(Path(seqdsl.__file__).parent.joinpath("layers").glob("*.py")):
        if path.stem != "torch_modules" and not path.stem.endswith("_torch"):
            continue
        for node in ast.parse(path.read_text()).body:
            names = [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else \
                [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
            for name in names:
                assert name not in seen, f"{name} in both {seen[name]} and {path.name}"
                seen[name] = path.name
