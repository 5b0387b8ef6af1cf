"""The bundled specs (specs/*.seq, examples/) and the conformance specs against
their hand-written PyTorch twins (tests/twins.py).

Expected parameter counts are derived in the comments from LANGUAGE.md's
conventions and are independently confirmed by the twins' sum(p.numel())."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import seqdsl
import twins

ROOT = Path(__file__).resolve().parent.parent

# spec stem -> (output shapes as printed, parameter count)
EXPECTED = {
    # embed 32000*768 = 24,576,000; per layer: 2 rmsnorm 1,536 + attention q,o 768^2 each,
    # k,v 768*256 each (4 kv heads of 64) = 1,572,864 + swiglu 3*768*2048 = 4,718,592;
    # 12 layers = 75,515,904; final rmsnorm 768; tied head 0.
    "transformer_lm": ({"logits": "float[B, T, 32000]"}, 100_092_672),
    # embed 13,311,200; lstm 4*1150*(400+1150+2) = 7,139,200; 4*1150*(2*1150+2) = 10,589,200;
    # 4*400*(1150+400+2) = 2,483,200; tied decoder's bias 33,278.
    "lstm_lm": ({"logits": "float[B, T, 33278]"}, 33_556_078),
    "speech_recognizer": ({"ctc": "float[B, ceil(ceil(T/2)/2), 32]", "utterance": "float[B, 192]"},
                          11_328_544),
    "video_classifier": ({"label": "float[B, 174]"}, 2_455_470),
    "translation": ({"logits": "float[B, T, 24000]"}, 53_325_056),
    "long_document": ({"next_token": "float[B, T, 16384]", "topic": "float[B, 20]"}, 34_133_012),
    # conv1d 40*128*5+128 = 25,728; grouped conv1d 128*32*3+128 = 12,416; 2 layernorm 512;
    # attention 4*(128^2+128) = 66,048; mlp 128*256+256 + 256*128+128 = 65,920;
    # gru 2 layers 3*128*(128+128+2)*2 = 198,144; rnn 64*(128+64+2) = 12,416; linear 64*12+12 = 780.
    "keyword_spotter": ({"x": "float[B, 12]"}, 381_964),
    # embed 50,288*768 = 38,621,184; per layer rmsnorm 768 + mamba2 (di 1,536, 24 heads, N 128):
    # 768*(3*1,536 + 256 + 24) = 3,753,984, conv 1,792*4 + 1,792 = 8,960, dt_bias/A_log/D 72,
    # norm 1,536: 3,765,320; 24 layers 90,367,680; final rmsnorm 768; tied head 0.
    # transformers' Mamba2ForCausalLM at mamba2-130m's config counts the same.
    "mamba2_lm": ({"logits": "float[B, T, 50288]"}, 128_989_632),
    # embed 32,768,000; rglru(8) 3*1024^2 + 2*1024^2/8 + 1024*10 + 1024 = 3,419,136;
    # swiglu 3*1024*3072 = 9,437,184; MQA attention 2*1024^2 + 2*1024*128 = 2,359,296; 2 rmsnorms
    # a layer; 4 x (2*12,858,368 + 11,798,528) = 150,061,056; final rmsnorm 1,024.
    "griffin_like": ({"logits": "float[B, T, 32000]"}, 182_830_080),
    # embed 32,768,000; a layer: 2 rmsnorms 2,048, GQA attention 2*1024^2 + 2*1024*512 = 3,145,728,
    # swiglu 3*1024*3072 = 9,437,184: 12,584,960; 12 layers 151,019,520; final rmsnorm 1,024.
    "transformer_183m": ({"logits": "float[B, T, 32000]"}, 183_788_544),
}


def test_every_bundled_spec_is_listed_and_has_a_twin():
    stems = {p.stem for p in (ROOT / "specs").glob("*.seq")}
    assert stems == set(EXPECTED)
    assert len(stems) >= 6
    assert stems <= set(twins.TWINS)
    conformance = {p.stem for p in twins.CONFORMANCE.glob("*.seq")}
    assert {f"conformance/{s}" for s in conformance} <= set(twins.TWINS)


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_bundled_spec_shapes_and_params(stem):
    model = seqdsl.load(ROOT / "specs" / f"{stem}.seq").model()
    outputs, params = EXPECTED[stem]
    assert {k: str(v) for k, v in model.outputs.items()} == outputs
    assert model.params == params


def test_hand_derived_counts_of_the_small_specs():
    """Re-derive two counts from the formulas (not from seqdsl), so the
    literal numbers above are not just our own output copied."""
    d, vocab, emb, hid = 768, 32_000, 400, 1_150
    layer = 2 * d + 2 * d * d + 2 * d * 256 + 3 * d * 2048
    assert vocab * d + 12 * layer + d == EXPECTED["transformer_lm"][1]
    lstm = lambda i, h: 4 * h * (i + h + 2)  # noqa: E731 - torch.nn.LSTM, two biases
    assert (33_278 * emb + lstm(emb, hid) + lstm(hid, hid) + lstm(hid, emb) + 33_278
            == EXPECTED["lstm_lm"][1])


def _needs_spec(key):
    if not twins.TWINS[key].path.exists():  # ../shared is absent on a fresh machine
        pytest.skip(f"{twins.TWINS[key].path} is not here")


def _numel(module):
    return sum(p.numel() for p in module.parameters())  # shared (tied) parameters once


@pytest.mark.parametrize("key", sorted(twins.TWINS))
def test_twin_parameter_count_equals_spec(key):
    _needs_spec(key)
    torch.manual_seed(0)
    assert _numel(twins.TWINS[key]()) == twins.load_model(key).params


# sizes small enough for CPU, big enough to cross windows, chunks and segments
SMALL = {"conformance/long_context": 70, "long_document": 300, "conformance/speech_hybrid": 300,
         "video_classifier": 20, "conformance/video_hybrid": 40}


@pytest.mark.parametrize("key", sorted(twins.TWINS))
def test_twin_output_shapes_equal_symbolic_shapes(key):
    _needs_spec(key)
    torch.manual_seed(0)
    module = twins.TWINS[key]().eval()
    seq = SMALL.get(key, 13)
    if key.endswith("translation") or key.endswith("translator"):
        seq = {"S": 11, "T": 7}
    xs = twins.example_inputs(key, batch=2, seq=seq)
    with torch.no_grad():
        ys = module(*xs)
    ys = ys if isinstance(ys, tuple) else (ys,)
    assert [tuple(y.shape) for y in ys] == twins.output_sizes(key, batch=2, seq=seq)
    assert all(torch.isfinite(y).all() for y in ys)


def test_tied_heads_share_the_embedding_object():
    m = twins.TWINS["transformer_lm"]()
    assert m.lm_head.weight is m.wte.weight


# ----------------------------------------------------------------- twin kernels
def _dense(att, x, allowed):
    """Reference: dense attention with an explicit boolean mask."""
    B, T, C = x.shape
    q = att.heads_of(att.q(x), att.h)
    k = att.heads_of(att.k(x), att.kvh).repeat_interleave(att.h // att.kvh, 1)
    v = att.heads_of(att.v(x), att.kvh).repeat_interleave(att.h // att.kvh, 1)
    if att.pos == "rope":
        q, k = twins.apply_rope(q), twins.apply_rope(k)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    return att.o(y.transpose(1, 2).reshape(B, T, C))


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T", [5, 8, 21])
def test_blocked_sliding_window_equals_dense_band(causal, T):
    torch.manual_seed(0)
    att = twins.Attention(32, 4, kv_heads=2, causal=causal, window=4, pos="rope")
    x = torch.randn(2, T, 32)
    i, j = torch.arange(T)[:, None], torch.arange(T)[None]
    band = (j >= i - 4) & ((j <= i) if causal else (j <= i + 4))
    torch.testing.assert_close(att(x), _dense(att, x, band), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["linear", "performer"])
def test_causal_chunked_linear_attention_equals_quadratic_form(kind):
    torch.manual_seed(0)
    att = twins.Attention(32, 4, causal=True, kind=kind, features=16)
    x = torch.randn(2, 150, 32)                      # 3 chunks of 64, the last partial
    B, T, C = x.shape
    q, k, v = (att.heads_of(p(x), 4) for p in (att.q, att.k, att.v))
    pq = att.phi(q, True)
    pk = att.phi(k, False)
    w = (pq @ pk.transpose(-1, -2)).tril()
    ref = (w @ v) / w.sum(-1, keepdim=True)
    ref = att.o(ref.transpose(1, 2).reshape(B, T, C))
    torch.testing.assert_close(att(x), ref, atol=1e-4, rtol=1e-3)


def test_causal_twins_do_not_see_the_future():
    torch.manual_seed(0)
    for att in (twins.Attention(16, 2, causal=True, window=3),
                twins.Attention(16, 2, causal=True, kind="linear"),
                twins.Attention(16, 2, causal=True, pos="alibi")):
        x = torch.randn(1, 10, 16)
        y = att(x)
        x2 = x.clone()
        x2[:, 6:] += 1.0
        torch.testing.assert_close(att(x2)[:, :6], y[:, :6])


def test_segments_memory_zero_is_independent_chunks_and_memory_carries_over():
    torch.manual_seed(0)
    att = twins.Attention(16, 2, causal=True)
    seg = twins.Segments(att, length=4, memory=0)
    x = torch.randn(1, 10, 16)
    chunks = torch.cat([seg(x[:, s:s + 4]) for s in range(0, 10, 4)], 1)
    torch.testing.assert_close(seg(x), chunks)
    seg_mem = twins.Segments(twins.Attention(16, 2, causal=True), length=4, memory=4)
    seg_mem.body.load_state_dict(att.state_dict())
    y = seg_mem(x)
    torch.testing.assert_close(y[:, :4], chunks[:, :4])            # first segment: no memory yet
    assert not torch.allclose(y[:, 4:], chunks[:, 4:])
    # causal with memory >= everything seen: the same as full causal attention
    full = twins.Segments(twins.Attention(16, 2, causal=True), length=4, memory=100)
    full.body.load_state_dict(att.state_dict())
    torch.testing.assert_close(full(x), att(x), atol=1e-5, rtol=1e-4)


def test_conv_padding_rules_match_the_language():
    for padding, n, k, s, expect in [("same", 10, 3, 2, 5), ("same", 11, 4, 3, 4), ("valid", 10, 3, 2, 4),
                                     ("causal", 10, 3, 2, 5), ("causal", 7, 5, 1, 7)]:
        conv = twins.Conv(1, 2, 3, k, s, padding)
        assert conv(torch.randn(1, n, 2)).shape == (1, expect, 3)
    # causal: output t depends on inputs <= t only
    conv = twins.Conv(1, 2, 2, 3, 1, "causal")
    x = torch.randn(1, 8, 2)
    x2 = x.clone()
    x2[:, 5:] += 1
    torch.testing.assert_close(conv(x)[:, :5], conv(x2)[:, :5])


@pytest.mark.parametrize("key,t", [("transformer_lm", 12), ("long_document", 300),
                                   ("conformance/speech_hybrid", 300)])
def test_causal_twins_outputs_do_not_depend_on_later_inputs(key, t):
    """The causal specs' twins really are causal (the benchmarks stream them)."""
    _needs_spec(key)
    torch.manual_seed(0)
    module = twins.TWINS[key]().eval()
    (x,) = twins.example_inputs(key, batch=1, seq=t)
    x2 = x.clone()
    cut = t - t // 3
    x2[:, cut:] = x2[:, cut:].flip(1)                      # change only the last third
    with torch.no_grad():
        y, y2 = module(x), module(x2)
    y, y2 = (y[0], y2[0]) if isinstance(y, tuple) else (y, y2)
    keep = cut if key != "conformance/speech_hybrid" else (cut - 3) // 4   # frames before the cut (T/4)
    torch.testing.assert_close(y[:, :keep], y2[:, :keep], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(y[:, keep + 2:], y2[:, keep + 2:])


@pytest.mark.parametrize("pos", [None, "rope"])
def test_segments_with_unbounded_memory_equal_full_causal_attention_with_gqa(pos):
    torch.manual_seed(0)
    att = twins.Attention(32, 4, kv_heads=2, causal=True, pos=pos)
    seg = twins.Segments(twins.Attention(32, 4, kv_heads=2, causal=True, pos=pos), length=5, memory=1000)
    seg.body.load_state_dict(att.state_dict())
    x = torch.randn(2, 17, 32)
    torch.testing.assert_close(seg(x), att(x), atol=1e-5, rtol=1e-4)
