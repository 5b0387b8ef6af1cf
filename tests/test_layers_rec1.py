"""The v0.2 recurrent mixers mamba, mamba2, rglru, mingru (LANGUAGE.md,
"Modern recurrent layers"): checking, parameter counts, lowering against the
reference implementations, streaming, and costs against the measured module."""
from __future__ import annotations

import pytest

from seqdsl.check.elaborate import parse as loads
from seqdsl.errors import SpecError


def spec(body: str, d: int = 64) -> str:
    return f"model m {{\n    input x: float[B, T, {d}]\n    y = x -> {body}\n    output y\n}}\n"


def graph(body: str, d: int = 64):
    return loads(spec(body, d)).model()


# ---------------------------------------------------------------- check
@pytest.mark.parametrize("body, d, params", [
    ("mamba", 64, 32_640),                                   # LANGUAGE.md's worked counts
    ("mamba2(state=16, head_dim=16)", 64, 28_088),
    ("rglru(4)", 64, 15_040),
    ("mingru(expand=1.5)", 96, 41_472),
    ("mingru", 64, 2 * 64 * 64),
    ("mamba(dt_rank=8, bias=true, conv_bias=false)", 64, 3 * 64 * 128 + 128 * (16 + 48 + 4 + 2) + 2 * 128 + 64),
    ("mamba2(state=16, head_dim=16, groups=2, bias=true)", 64,
     64 * (384 + 64 + 8) + 192 * 4 + 24 + 128 + 192 + (256 + 64 + 8 + 64)),
    ("rglru(2, width=32, conv=3)", 64, 3 * 64 * 32 + 2 * 32 * 32 // 2 + 32 * 9 + 64),
])
def test_params_and_shape(body, d, params):
    g = graph(body, d)
    (node,) = [n for n in g.nodes if n.kind not in ("input", "add")]
    assert node.params == params
    assert str(node.output) == f"float[B, T, {d}]"


def test_defaults():
    from seqdsl.layers import LAYERS
    a = LAYERS["mamba"].Args()
    assert (a.state, a.expand, a.conv, a.dt_rank, a.bias, a.conv_bias) == (16, 2, 4, "auto", False, True)
    assert LAYERS["mamba"].dims(a, 100)[3] == 7                  # ceil(100 / 16)
    a = LAYERS["mamba2"].Args()
    assert (a.state, a.expand, a.head_dim, a.groups, a.conv, a.chunk) == (128, 2, 64, 1, 4, 256)
    assert LAYERS["rglru"].Args(heads=4).conv == 4 and LAYERS["mingru"].Args().expand == 1
    assert all(LAYERS[k].is_causal(LAYERS[k].Args(**({"heads": 2} if k == "rglru" else {})))
               for k in ("mamba", "mamba2", "rglru", "mingru"))


@pytest.mark.parametrize("body, d, words", [
    ("mamba2(head_dim=48)", 64, "not a multiple of head_dim=48"),
    ("mamba2(state=16, head_dim=16, groups=3)", 64, "groups=3 does not divide its 8 heads"),
    ("rglru(5)", 64, "heads=5 does not divide its width 64"),
    ("rglru(3, width=64)", 96, "does not divide its width 64"),
    ("mamba(dt_rank=fast)", 64, "expects an int or one of auto"),
    ("mingru(expand=0)", 64, "expects a value > 0"),
    ("mingru(expand=0.001)", 64, "inner width"),
])
def test_errors(body, d, words):
    with pytest.raises(SpecError) as e:
        graph(body, d)
    assert words in str(e.value)


def test_rank_and_dtype_errors():
    for body in ("mamba", "mamba2", "rglru(2)", "mingru"):
        with pytest.raises(SpecError, match="rank-3"):
            loads(f"model m {{\n input x: float[B, 64]\n y = x -> {body}\n output y\n}}\n").model()
        with pytest.raises(SpecError, match="float input"):
            loads(f"model m {{\n input x: int[B, T]\n y = x -> {body}\n output y\n}}\n").model()


# ---------------------------------------------------------------- lowering vs the references
torch = pytest.importorskip("torch")
LENGTHS = (1, 63, 64, 65, 200)


def _layer(body: str, d: int):
    import seqdsl
    m = seqdsl.build(loads(spec(body, d)).model(), seed=0).eval()
    (name,) = m._mods
    return m.named_layer(name)


def _perturb(ref, scale=0.1):
    """Random weights around the reference's init (the init alone leaves D = 1, biases 0)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return ref.eval()


def _same(ref_fn, layer, d):
    g = torch.Generator().manual_seed(2)
    worst = 0.0
    for t in LENGTHS:
        x = torch.randn(2, t, d, generator=g)
        with torch.no_grad():
            worst = max(worst, (ref_fn(x) - layer(x)).abs().max().item())
    assert worst < 1e-4, worst
    return worst


@pytest.mark.parametrize("body", ["mamba(state=8)", "mamba(state=8, dt_rank=3, bias=true, conv_bias=false, conv=3)"])
def test_mamba_equals_transformers(body):
    pytest.importorskip("transformers")
    from transformers import MambaConfig
    from transformers.models.mamba.modeling_mamba import MambaMixer
    layer = _layer(body, 32)
    a = layer.dt_rank, layer.kernel, layer.out_proj.bias is not None, layer.conv1d.bias is not None
    cfg = MambaConfig(hidden_size=32, state_size=8, expand=2, conv_kernel=a[1], time_step_rank=a[0],
                      use_bias=a[2], use_conv_bias=a[3], num_hidden_layers=1)
    ref = _perturb(MambaMixer(cfg, 0))
    layer.load_state_dict(ref.state_dict(), strict=True)
    _same(ref, layer, 32)


@pytest.mark.parametrize("groups, chunk", [(1, 16), (2, 64)])
def test_mamba2_equals_transformers(groups, chunk):
    pytest.importorskip("transformers")
    from transformers import Mamba2Config
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer
    layer = _layer(f"mamba2(state=8, head_dim=8, groups={groups}, chunk={chunk})", 32)
    cfg = Mamba2Config(hidden_size=32, state_size=8, expand=2, head_dim=8, n_groups=groups, num_heads=8,
                       conv_kernel=4, chunk_size=chunk, num_hidden_layers=1)
    ref = _perturb(Mamba2Mixer(cfg, 0))
    layer.load_state_dict(ref.state_dict(), strict=True)
    _same(ref, layer, 32)


def test_rglru_equals_transformers():
    pytest.importorskip("transformers")
    from transformers import RecurrentGemmaConfig
    from transformers.models.recurrent_gemma.modeling_recurrent_gemma import RecurrentGemmaRecurrentBlock
    layer = _layer("rglru(4)", 32)
    cfg = RecurrentGemmaConfig(hidden_size=32, lru_width=32, num_attention_heads=4, conv1d_width=4,
                               num_hidden_layers=1)
    ref = RecurrentGemmaRecurrentBlock(cfg, 0)
    with torch.no_grad():                      # the block's own init leaves the gates at 0 (empty)
        for p in ref.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    ref.eval()
    layer.load_state_dict(ref.state_dict(), strict=True)

    def run(x):
        pos = torch.arange(x.shape[1])[None].expand(x.shape[0], -1)
        return ref(x, pos, None, use_cache=False)[0]
    _same(run, layer, 32)


@pytest.mark.parametrize("expand", [1, 1.5])
def test_mingru_equals_mingru_pytorch(expand):
    mg = pytest.importorskip("minGRU_pytorch")
    layer = _layer(f"mingru(expand={expand})", 32)
    ref = _perturb(mg.minGRU(32, expand), 0.0)
    layer.load_state_dict(ref.state_dict(), strict=True)
    _same(ref, layer, 32)


# ---------------------------------------------------------------- the three forms of each recurrence
def test_mamba_naive_chunked_step_agree():
    from seqdsl.layers.mamba_torch import mamba_chunk_scan, mamba_scan_naive, mamba_scan_step
    g = torch.Generator().manual_seed(3)
    da = torch.rand(2, 70, 6, 4, generator=g)
    dbx, c = torch.randn(2, 70, 6, 4, generator=g), torch.randn(2, 70, 4, generator=g)
    h0 = torch.randn(2, 6, 4, generator=g)
    y, h = mamba_scan_naive(da, dbx, c, h0)
    for q in (1, 5, 16, 64, 128):
        yc, hc = mamba_chunk_scan(da, dbx, c, h0, chunk=q)
        torch.testing.assert_close(yc, y, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(hc, h, rtol=1e-5, atol=1e-5)
    st = h0.clone()
    ys = [mamba_scan_step(st, da[:, t], dbx[:, t], c[:, t]) for t in range(70)]
    torch.testing.assert_close(torch.stack(ys, 1), y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(st, h, rtol=1e-5, atol=1e-5)


def test_mamba_loop_and_chunked_scans_agree_with_gradients():
    """The eager step loop (what the module runs, and what the cost rule
    counts) and the chunked doubling scan (what torch.compile runs): the same
    outputs and final state, and the same gradients for every input, the
    carried initial state included, at lengths on, off and past the chunk."""
    from seqdsl.layers.mamba_torch import mamba_chunk_scan, mamba_loop_scan
    g = torch.Generator().manual_seed(9)
    for t, h0_given in ((1, False), (63, True), (64, False), (130, True)):
        da = torch.rand(2, t, 6, 4, generator=g)
        dbx, c = torch.randn(2, t, 6, 4, generator=g), torch.randn(2, t, 4, generator=g)
        h0 = torch.randn(2, 6, 4, generator=g) if h0_given else None
        wy, wh = torch.randn(2, t, 6, generator=g), torch.randn(2, 6, 4, generator=g)
        got = []
        for scan in (mamba_loop_scan, mamba_chunk_scan):
            leaves = [v.clone().requires_grad_() for v in (da, dbx, c) + ((h0,) if h0_given else ())]
            y, h = scan(*leaves[:3], leaves[3] if h0_given else None)
            ((y * wy).sum() + (h * wh).sum()).backward()
            got.append([y, h] + [v.grad for v in leaves])
        for a, b in zip(*got):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_mamba_saves_what_its_loop_keeps():
    """The module's eager forward keeps exactly the loop's tensors for
    backward: T + 1 states (B·di·N fp32 each) beside the decays, where the
    chunked scan keeps 2·log2(64) + 1 tensors of the padded length; the
    estimate's saved bytes and live set are the measured ones exactly, at
    batch 1 (where x_proj's input is a view) and 3, below fp32 too."""
    from seqdsl.backend import verify
    for batch, dtype in ((1, "float32"), (3, "bfloat16")):
        report = verify.verify(graph("mamba(state=8)", 32), seq=[{"T": 1}, {"T": 63}, {"T": 65}], batch=batch,
                               dtype=dtype)
        for row in report.rows:
            if row.figure in ("activation_bytes", "inference_live_bytes"):
                assert row.estimate == row.measured, row


def test_ssd_naive_chunked_step_agree():
    from seqdsl.layers.mamba2_torch import ssd_chunk_scan, ssd_naive, ssd_step
    g = torch.Generator().manual_seed(4)
    x, dt = torch.randn(2, 70, 3, 4, generator=g), torch.rand(2, 70, 3, generator=g)
    a = -torch.rand(3, generator=g) * 2
    b, c = torch.randn(2, 70, 3, 5, generator=g), torch.randn(2, 70, 3, 5, generator=g)
    h0 = torch.randn(2, 3, 4, 5, generator=g)
    y, h = ssd_naive(x, dt, a, b, c, h0)
    for q in (1, 7, 64, 256):
        yc, hc = ssd_chunk_scan(x, dt, a, b, c, q, h0)
        torch.testing.assert_close(yc, y, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(hc, h, rtol=1e-4, atol=1e-4)
    st = h0.clone()
    ys = [ssd_step(st, x[:, t], dt[:, t], a, b[:, t], c[:, t]) for t in range(70)]
    torch.testing.assert_close(torch.stack(ys, 1), y, rtol=1e-4, atol=1e-4)


def _ssd_grads(fn, inputs, dtype, cotangents):
    vs = [v.to(dtype, copy=True).requires_grad_(True) for v in inputs]
    y, h = fn(*vs)
    ((y * cotangents[0].to(dtype)).sum() + (h * cotangents[1].to(dtype)).sum()).backward()
    return [v.grad for v in vs]


def test_ssd_chunked_gradients_equal_naive():
    """ssd_chunk_scan's backward (the decayed scores' own, B and C read per
    group) equals autograd through the step-by-step ssd_naive in fp64 (B and C
    repeated to each head there), for x, dt, A, B, C and the initial state, at
    chunks of 1, one that does not divide T, T itself and more than T."""
    from seqdsl.layers.mamba2_torch import ssd_chunk_scan, ssd_naive
    g = torch.Generator().manual_seed(9)
    x, dt = torch.randn(2, 37, 4, 3, generator=g), torch.rand(2, 37, 4, generator=g) * 2
    a = -torch.rand(4, generator=g) * 3 - 0.1
    b, c = torch.randn(2, 37, 2, 5, generator=g), torch.randn(2, 37, 2, 5, generator=g)
    h0 = torch.randn(2, 4, 3, 5, generator=g)
    cot = (torch.randn(2, 37, 4, 3, generator=g), torch.randn(2, 4, 3, 5, generator=g))
    rep = lambda v: v.repeat_interleave(2, dim=2)    # noqa: E731  (group -> its two heads)
    want = _ssd_grads(lambda x, dt, a, b, c, h0: ssd_naive(x, dt, a, rep(b), rep(c), h0),
                      (x, dt, a, b, c, h0), torch.float64, cot)
    for q in (1, 8, 37, 64):
        got = _ssd_grads(lambda x, dt, a, b, c, h0: ssd_chunk_scan(x, dt, a, b, c, q, h0),
                         (x, dt, a, b, c, h0), torch.float32, cot)
        for name, gv, wv in zip(("x", "dt", "A", "B", "C", "h0"), got, want):
            torch.testing.assert_close(gv.double(), wv, rtol=1e-4, atol=1e-4, msg=f"{name}, chunk {q}")


def test_ssd_chunk_scan_strong_decays_stay_finite_and_causal():
    """Segment sums far past exp's range (dt·A down to -400 a step: cumulative
    sums of -1e5 in a chunk) give finite outputs and gradients (the sums are
    clamped before exp, never -inf or overflowing above the diagonal), and a
    change to the last steps leaves every earlier output bit for bit equal."""
    from seqdsl.layers.mamba2_torch import ssd_chunk_scan
    g = torch.Generator().manual_seed(10)
    x, dt = torch.randn(1, 300, 2, 4, generator=g), torch.rand(1, 300, 2, generator=g) * 50
    a = torch.tensor([-8.0, -0.01])
    b, c = torch.randn(1, 300, 1, 3, generator=g), torch.randn(1, 300, 1, 3, generator=g)
    vs = [v.clone().requires_grad_(True) for v in (x, dt, b, c)]
    y, h = ssd_chunk_scan(vs[0], vs[1], a, vs[2], vs[3], 256)
    (y.sum() + h.sum()).backward()
    assert torch.isfinite(y).all() and torch.isfinite(h).all()
    assert all(torch.isfinite(v.grad).all() for v in vs)
    x2 = x.clone()
    x2[:, 290:] += 1.0
    with torch.no_grad():
        y2, _ = ssd_chunk_scan(x2, dt, a, b, c, 256)
    assert torch.equal(y2[:, :290], y.detach()[:, :290]) and not torch.equal(y2[:, 290:], y.detach()[:, 290:])


def test_rglru_naive_chunked_agree():
    from seqdsl.layers.rglru_torch import rglru_chunk_scan, rglru_scan_naive
    g = torch.Generator().manual_seed(5)
    a, x, h0 = torch.rand(2, 70, 8, generator=g), torch.randn(2, 70, 8, generator=g), torch.randn(2, 8, generator=g)
    ref = rglru_scan_naive(a, x, h0)
    for q in (1, 3, 64, 100):
        torch.testing.assert_close(rglru_chunk_scan(a, x, h0, chunk=q), ref, rtol=1e-5, atol=1e-5)


def test_mingru_naive_logscan_agree():
    from seqdsl.layers.mingru_torch import mingru_log_scan, mingru_naive
    g = torch.Generator().manual_seed(6)
    hid, gate = torch.randn(2, 70, 8, generator=g), torch.randn(2, 70, 8, generator=g)
    h0 = torch.rand(2, 1, 8, generator=g) + 0.1
    torch.testing.assert_close(mingru_log_scan(hid, gate, h0), mingru_naive(hid, gate, h0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mingru_log_scan(hid, gate), mingru_naive(hid, gate), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- streaming
STREAM_BODIES = ["mamba(state=8)", "mamba2(state=8, head_dim=8, chunk=16)", "mamba2(state=8, head_dim=16, groups=2)",
                 "rglru(4)", "mingru", "mingru(expand=1.5)"]


@pytest.mark.parametrize("body", STREAM_BODIES)
def test_streaming_equals_forward(body):
    import seqdsl
    m = seqdsl.build(loads(spec(body, 32)).model(), seed=0).eval()
    x = torch.randn(2, 40, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        full = m(x)
        for n in (1, 3, 17):
            st = m.init_state(2)
            out = torch.cat([m.step(x[:, i:i + n], state=st)[0] for i in range(0, 40, n)], 1)
            torch.testing.assert_close(out, full, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- costs against the module
COST_BODIES = ["mamba(state=8)", "mamba2(state=16, head_dim=8, chunk=32)", "mamba2(state=8, head_dim=8, groups=2, chunk=16)",
               "rglru(4)", "mingru", "mingru(expand=1.5)"]


@pytest.mark.parametrize("body", COST_BODIES)
def test_estimate_matches_measured(body):
    """FLOPs exact (FlopCounterMode, forward and training); saved bytes
    (saved_tensors_hooks) within 2% (exact but for Mamba-2 in a single chunk,
    where einsum makes one operand a view); the inference live set within 8%."""
    from seqdsl.backend import verify
    report = verify.verify(loads(spec(body, 32)).model(), seq=[{"T": 40}, {"T": 130}], batch=2)
    for row in report.rows:
        if row.figure in ("params", "flops_forward", "flops_train"):
            assert row.estimate == row.measured, row
        elif row.figure == "activation_bytes":
            assert abs(row.ratio - 1) < 0.02, row
        elif row.figure == "inference_live_bytes":
            assert abs(row.ratio - 1) < 0.08, row


def _state_nbytes(st):
    return sum(v.nbytes for k, s in st.items() if not k.startswith("__")
               for v in s.values() if isinstance(v, torch.Tensor))


@pytest.mark.parametrize("body", COST_BODIES)
def test_state_and_step_flops_are_the_estimates(body):
    """The streaming state holds exactly the estimate's state figure (the
    reference's cache: conv window and fp32 scan state), at any length, and
    one decoding step costs the estimate's per-token FLOPs."""
    import seqdsl
    from seqdsl.backend import measure
    g = loads(spec(body, 32)).model()
    m = seqdsl.build(g, seed=0).eval()
    st = m.init_state(3)
    with torch.no_grad():
        m.step(torch.randn(3, 5, 32), state=st)
        with measure.counter() as c:
            m.step(torch.randn(3, 1, 32), state=st)
    for t in (6, 10 ** 9):
        p = seqdsl.estimate(g, seq=t, batch=3).points[0]
        assert p.state_bytes == _state_nbytes(st)
        assert p.flops_per_token == c.get_total_flops()


def test_depth_is_chunks_not_steps():
    import seqdsl
    for body, q in (("mamba", 64), ("mamba2", 256), ("rglru(2)", 64)):
        p = seqdsl.estimate(loads(spec(body, 32)).model(), seq=4096, batch=1).points[0]
        assert p.sequential_depth == 4096 // q + 1


def test_bfloat16_state_keeps_the_scan_in_fp32():
    import seqdsl
    g = loads(spec("mamba(state=8)", 32)).model()
    p = seqdsl.estimate(g, seq=100, batch=1, dtype="bfloat16").points[0]
    assert p.state_bytes == 64 * 4 * 2 + 64 * 8 * 4           # conv window at bf16, scan state fp32


@pytest.mark.parametrize("body", ["mamba(state=8)", "mamba2(state=8, head_dim=8, chunk=16)", "rglru(4)", "mingru"])
def test_streaming_after_a_strided_conv(body):
    """A causal stride-2 conv upstream hands every other one-step chunk on empty."""
    import seqdsl
    src = f"model m {{\n input x: float[B, T, 16]\n y = x -> conv1d(32, kernel=3, stride=2, padding=causal) -> {body}\n output y\n}}\n"
    m = seqdsl.build(loads(src).model(), seed=0).eval()
    x = torch.randn(2, 23, 16, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        full = m(x)
        st = m.init_state(2)
        out = torch.cat([m.step(x[:, i:i + 1], state=st)[0] for i in range(23)], 1)
    torch.testing.assert_close(out, full, rtol=1e-5, atol=1e-5)
