"""The language pieces RecurrentGemma (specs/zoo/recurrentgemma_2b.seq) needs,
each against transformers' own module: the gated MLP with biases on all
three projections (`geglu(hidden, act=gelu_tanh, bias=true)`), the embedding
scaled by sqrt(d) as a bfloat16 buffer holds it (`scale(d ** 0.5,
round=bfloat16)`), and Gemma's RMSNorm, x · (1 + w) in float32
(`rmsnorm(offset=1)`). Parameters, FLOPs (FlopCounterMode) and outputs
after loading the reference's weights; bad arguments refused at their span;
fmt and the emitted source keep them."""
import math

import pytest

import seqdsl
from seqdsl.errors import SpecError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from seqdsl.backend import measure  # noqa: E402
from transformers.models.recurrent_gemma import modeling_recurrent_gemma as rg  # noqa: E402


def graph(stage, c=16, dtype="float"):
    text = f"model m {{\n    let d = {c}\n    input x: {dtype}[B, T, {c}]\n    y = x -> {stage}\n    output y\n}}\n"
    return seqdsl.parse(text, "m.seq").model()


def count(module):
    return sum(p.numel() for p in module.parameters())


from test_backend_build import one_thread  # noqa: E402,F401  (autouse: one intra-op thread)


def test_geglu_with_biases_is_recurrentgemma_mlp():
    cfg = transformers.RecurrentGemmaConfig(hidden_size=24, intermediate_size=2 * 40)
    torch.manual_seed(0)
    ref = rg.RecurrentGemmaMlp(cfg).eval()
    with torch.no_grad():                      # transformers starts the biases at zero: draw them
        for p in ref.parameters():
            p.normal_()
    g = graph("geglu(40, act=gelu_tanh, bias=true)", 24)
    assert g.params == count(ref) == 2 * 24 * 40 + 40 * 24 + 2 * 40 + 24
    ours = seqdsl.build(g).eval()
    sd = ref.state_dict()
    ours.load_state_dict({f"y.geglu.{o}.{w}": sd[f"{r}.{w}"] for o, r in
                          (("w1", "gate_proj"), ("w3", "up_proj"), ("w2", "down_proj")) for w in ("weight", "bias")},
                         strict=True)
    x = torch.randn(2, 9, 24, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), measure.counter() as c:
        expected = ref(x)
    assert seqdsl.estimate(g, seq={"T": 9}, batch=2).points[0].flops_forward == c.get_total_flops()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stage", ["swiglu(32, bias=true)", "swiglu(32, out=8, bias=true)", "geglu(32, bias=true)"])
def test_gated_mlp_bias_counts_three_biases(stage):
    g = graph(stage)
    biased, plain = seqdsl.build(g), seqdsl.build(graph(stage.replace(", bias=true", "")))
    out = 8 if "out=8" in stage else 16
    assert g.params == count(biased) == count(plain) + 2 * 32 + out
    assert {k.split(".")[-2] for k in biased.state_dict() if k.endswith(".bias")} == {"w1", "w2", "w3"}
    assert not any(k.endswith(".bias") for k in plain.state_dict())
    x = torch.randn(1, 5, 16)
    one, two = (seqdsl.estimate(m, seq=5).points[0] for m in (g, graph(stage.replace(", bias=true", ""))))
    assert one.flops_forward == two.flops_forward    # addmm: the bias add is element-wise
    assert biased(x).shape == (1, 5, out)


def test_scale_rounds_the_factor_as_recurrentgemmas_bfloat16_normalizer():
    """transformers keeps sqrt(hidden) as a bfloat16 buffer: sqrt(2560) =
    50.596 multiplies as 50.5; the unrounded factor is sqrt(2560) itself."""
    x = torch.randn(1, 7, 2560, generator=torch.Generator().manual_seed(0))
    normalizer = torch.tensor(2560 ** 0.5, dtype=torch.bfloat16)
    assert normalizer.item() == 50.5
    rounded = seqdsl.build(graph("scale(d ** 0.5, round=bfloat16)", 2560))
    exact = seqdsl.build(graph("scale(d ** 0.5)", 2560))
    assert torch.equal(rounded(x), x * normalizer.type(x.dtype))   # the reference's own expression
    assert torch.equal(exact(x), x * math.sqrt(2560))
    assert not torch.equal(rounded(x), exact(x))
    half = seqdsl.build(graph("scale(0.1, round=float16)"))
    y = torch.randn(2, 3, 16)
    assert torch.equal(half(y), y * torch.tensor(0.1, dtype=torch.float16).item())


def test_scale_costs_nothing_and_streams():
    g = graph("scale(-3)")
    p = seqdsl.estimate(g, seq=64).points[0]
    assert g.params == 0 and p.flops_forward == 0 and p.flops_train == 0 and p.activation_bytes == 0
    m = seqdsl.build(g).eval()
    x = torch.randn(2, 6, 16)
    state = m.init_state(2)
    assert torch.equal(torch.cat([m.step(x[:, i:i + 2], state=state)[0] for i in range(0, 6, 2)], 1), x * -3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rmsnorm_offset_is_gemmas_rmsnorm(dtype):
    ref = rg.RecurrentGemmaRMSNorm(24, eps=1e-6)
    with torch.no_grad():
        ref.weight.normal_(generator=torch.Generator().manual_seed(2))
    g = graph("rmsnorm(eps=1e-6, offset=1)", 24)
    assert g.params == count(ref) == 24
    ours = seqdsl.build(g).eval()
    ours.load_state_dict({"y.rmsnorm.weight": ref.weight.detach()}, strict=True)
    x = torch.randn(3, 5, 24, generator=torch.Generator().manual_seed(3)).to(dtype)
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))
        assert ours(x).dtype == dtype


def test_rmsnorm_offset_starts_as_plain_rmsnorm():
    """A fresh rmsnorm(offset=1) holds w = 0, so multiplies by 1 + 0: the same
    function as a fresh rmsnorm (w = 1); a non-zero w moves it by x̂ · w."""
    gemma, plain = (seqdsl.build(graph(s)).eval() for s in ("rmsnorm(offset=1)", "rmsnorm"))
    assert torch.equal(gemma.state_dict()["y.rmsnorm.weight"], torch.zeros(16))
    x = torch.randn(2, 4, 16)
    with torch.no_grad():
        torch.testing.assert_close(gemma(x), plain(x), rtol=1e-6, atol=1e-6)
        gemma.state_dict()["y.rmsnorm.weight"].fill_(0.5)
        torch.testing.assert_close(gemma(x), 1.5 * plain(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_rmsnorm_offset_memory_is_the_measured(dtype):
    """Saved activations and the inference live set equal the module's
    (verify); the offset keeps (1 + w), C float32 numbers, only when the
    input needs a gradient (after a linear, not on the model's input)."""
    from seqdsl.backend.verify import verify
    est = {}
    for stages in ("rmsnorm(offset=1)", "rmsnorm", "linear(8) -> rmsnorm(offset=1)", "linear(8) -> rmsnorm"):
        g = seqdsl.parse(f"model m {{\n    input x: float[B, T, 8]\n    y = x -> {stages}\n    output y\n}}\n",
                         "m.seq").model()
        if "offset" in stages:
            report = verify(g, seq=[{"T": 33}, {"T": 64}], batch=2, dtype=dtype)
            assert report.ok, [(r.figure, r.seq, r.estimate, r.measured) for r in report.failed]
        est[stages] = seqdsl.estimate(g, seq=64, batch=2, dtype=dtype).points[0].activation_bytes
    assert est["rmsnorm(offset=1)"] == est["rmsnorm"]
    assert est["linear(8) -> rmsnorm(offset=1)"] == est["linear(8) -> rmsnorm"] + 8 * 4


@pytest.mark.parametrize("stage, message", [
    ("scale(0)", "scale(0) would zero its input"),
    ("scale(2, round=bf16)", "round"),
    ("scale(true)", "factor"),
    ("scale", "factor"),
    ("rmsnorm(offset=one)", "offset"),
    ("geglu(8, bias=1)", "bias"),
])
def test_bad_arguments_name_the_argument(stage, message):
    with pytest.raises(SpecError) as e:
        graph(stage)
    assert message in str(e.value) and "m.seq:4:" in str(e.value)


def test_bad_argument_on_the_command_line_exits_1_without_traceback(tmp_path):
    import subprocess
    import sys
    spec = tmp_path / "bad.seq"
    spec.write_text("model m {\n    input x: float[B, T, 8]\n    y = x -> scale(0)\n    output y\n}\n")
    r = subprocess.run([sys.executable, "-m", "seqdsl", "check", str(spec)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{spec}:3:" in r.stderr and "would zero its input" in r.stderr


def test_fmt_and_emitted_source_keep_the_options():
    from seqdsl.lang.printer import format_text
    from test_hardening_emit import assert_emitted_equals_built
    text = ("model m {\n    input x: float[B, T, 16]\n"
            "    y = x -> scale(16 ** 0.5, round=bfloat16) -> rmsnorm(eps=1e-6, offset=1) "
            "-> geglu(32, act=gelu_tanh, bias=true)\n    output y\n}\n")
    once = format_text(text, "m.seq")
    assert "round=bfloat16" in once and "offset=1" in once and "bias=true" in once
    assert format_text(once, "m.seq") == once
    assert seqdsl.parse(once, "m.seq").model().params == seqdsl.parse(text, "m.seq").model().params
    assert_emitted_equals_built(text)
