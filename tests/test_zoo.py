"""specs/zoo/: real published architectures, each against its reference
implementation (tests/zoo_refs.py) built from a config with random weights:
parameters exact at the published size (built on the meta device); forward
FLOPs exact against FlopCounterMode (with seqdsl.backend.measure's formulas
for the ops it lacks) at the published size on the meta device at one
length, and at a small config (fewer layers, a small vocabulary) at two
lengths, where the outputs must also equal the reference's after loading
its weights into the seqdsl build.

Where a reference spends FLOPs past the function (transformers' fallback
causal conv computes kernel - 1 outputs it then drops) or past our lowering
(its Mamba-2 SSD computes the scores C·Bᵀ per head, ours per group), zoo_refs
gives that overhang as a formula of the length (Entry.extra) and the check is
estimate + overhang == measured. The Mamba-1 lengths are multiples of 64: our scan pads T to whole
chunks of 64 and the estimate counts that padding, where the reference's
step loop runs exactly T steps."""
import pytest
import torch

import seqdsl
from seqdsl.backend import measure
from zoo_refs import ENTRIES, graph, published_flops

pytest.importorskip("transformers")
NAMES = sorted(ENTRIES)


from test_backend_build import one_thread  # noqa: E402,F401  (autouse: one intra-op thread)


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())   # shared (tied) weights once


@pytest.mark.parametrize("name", NAMES)
def test_published_size_params_exact(name):
    entry = ENTRIES[name]
    with torch.device("meta"):
        ref = entry.reference(False)
    assert graph(entry.spec).params == count(ref)


@pytest.mark.parametrize("name", NAMES)
def test_forward_flops_exact_and_outputs_equal(name):
    entry = ENTRIES[name]
    model = graph(entry.spec, entry.small)
    torch.manual_seed(0)
    ref = entry.reference(True).eval()
    assert model.params == count(ref)
    ours = seqdsl.build(model).eval()
    if entry.load is not None:
        entry.load(ours, ref)
    for t in entry.lengths:
        xs = entry.inputs(t)
        estimated = seqdsl.estimate(model, seq=entry.seq(t), batch=1).points[0].flops_forward
        with torch.no_grad(), measure.counter() as c:
            expected = entry.run(ref, *xs)
        assert estimated + entry.extra(True, t) == c.get_total_flops(), (t, estimated, entry.extra(True, t), c.get_total_flops())
        if entry.load is not None:
            with torch.no_grad():
                got = ours(*xs)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=5e-5)


# published size on the meta device; lengths short enough for Mamba's step loop
PUBLISHED_LENGTH = {"whisper_tiny": 16, "wav2letter": 16_000}


@pytest.mark.parametrize("name", NAMES)
def test_published_size_forward_flops_exact(name):
    t = PUBLISHED_LENGTH.get(name, 64)
    ours, theirs = published_flops(name, t)
    assert ours + ENTRIES[name].extra(False, t) == theirs, (t, ours, theirs)


# ---------------------------------------------------------------- RecurrentGemma: attention at the 2B sizes
# specs/zoo/recurrentgemma_2b.seq runs the tests above (its small config has
# d = 128); its local attention layer is checked here at the 2B sizes against
# transformers' own layer (its RG-LRU block is `rglru`, checked in
# tests/test_layers_rec1.py), and its window below, where the small config's
# 2,048 never bites.
RG_ATTENTION = """model rg_attention {
    input x: float[B, T, 2560]
    y = x -> attention(10, kv_heads=1, causal=true, window=2048, pos=rope, rope_dims=128, bias=[o])
    output y
}
"""


def test_recurrentgemma_2b_local_attention_exact():
    import transformers as tf
    from transformers.models.recurrent_gemma.modeling_recurrent_gemma import RecurrentGemmaAttention
    cfg = tf.RecurrentGemmaConfig(hidden_size=2560, num_attention_heads=10, num_key_value_heads=1,
                                  attention_window_size=2048, attn_implementation="sdpa")
    torch.manual_seed(0)
    ref = RecurrentGemmaAttention(cfg, 2).eval()
    model = seqdsl.parse(RG_ATTENTION).model()
    assert model.params == count(ref)
    ours = seqdsl.build(model).eval()
    sd = ref.state_dict()
    ours.load_state_dict({f"y.attention.{n}.{w}": sd[f"{'o' if n == 'o' else n}_proj.{w}"]
                          for n in "qkvo" for w in ("weight", "bias") if f"{n}_proj.{w}" in sd}, strict=True)
    x = torch.randn(1, 24, 2560, generator=torch.Generator().manual_seed(3))
    pos = torch.arange(24)[None]
    with torch.no_grad(), measure.counter() as c:
        expected = ref(x, position_ids=pos)[0]
    assert seqdsl.estimate(model, seq={"T": 24}, batch=1).points[0].flops_forward == c.get_total_flops()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=5e-5)


def test_recurrentgemma_window_counts_the_position_itself():
    """transformers' attention_window_size W lets a position see itself and
    the W - 1 before it: the spec's window=window - 1. At W = 8 and T = 40 the
    outputs equal the reference's; with the spec's window one larger (each
    position seeing one more) they do not."""
    from zoo_refs import RG_SMALL, recurrentgemma, recurrentgemma_load, tokens
    torch.manual_seed(0)
    ref = recurrentgemma(True, window=8)
    (x,) = tokens(RG_SMALL["vocab"])(40)
    with torch.no_grad():
        expected = ref(x).logits
    for window, equal in ((8, True), (9, False)):
        ours = seqdsl.build(graph("recurrentgemma_2b", {**RG_SMALL, "window": window})).eval()
        recurrentgemma_load(ours, ref)
        with torch.no_grad():
            error = (ours(x) - expected).abs().max().item()
        assert (error < 5e-5) == equal, (window, error)


def test_recurrentgemma_streams_like_its_forward():
    """Generation: step() over uneven chunks (RG-LRU and conv states, the
    attention's KV cache cut to its window of 8) gives forward()'s logits."""
    from zoo_refs import RG_SMALL, tokens
    model = seqdsl.build(graph("recurrentgemma_2b", {**RG_SMALL, "window": 8}), seed=0).eval()
    (x,) = tokens(RG_SMALL["vocab"])(40)
    with torch.no_grad():
        whole = model(x)
        state = model.init_state(1)
        parts = [model.step(x[:, i:i + 7], state=state)[0] for i in range(0, 40, 7)]
    torch.testing.assert_close(torch.cat(parts, 1), whole, rtol=1e-5, atol=5e-5)


def test_recurrentgemma_small_config_verifies():
    """`seqdsl verify` on the small config with a window of 8 (passed at
    T = 40 and 64): training FLOPs exact, saved activations and the inference
    live set within verify's tolerances (measured 1.03x and 1.01-1.02x)."""
    from seqdsl.backend.verify import verify
    from zoo_refs import RG_SMALL
    report = verify(graph("recurrentgemma_2b", {**RG_SMALL, "window": 8}), seq=[{"T": 40}, {"T": 64}], batch=1)
    assert report.ok, [(r.figure, r.seq, r.estimate, r.measured) for r in report.failed]
    assert all(r.estimate == r.measured for r in report.rows if r.figure.startswith("flops"))
