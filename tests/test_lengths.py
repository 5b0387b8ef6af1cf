"""Variable lengths (`input x: float[B, T, C] lengths`, docs/language.md,
"Variable lengths"): for a padded batch of sequences of different lengths,
each sequence's valid outputs equal running that sequence alone, unpadded;
the output lengths are the lengths it has alone; padded positions are zero;
the standalone source agrees with seqdsl.build; the syntax round-trips;
refusals name the layer and the fix."""
from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")

import seqdsl  # noqa: E402
import seqdsl.builder as sb  # noqa: E402
from seqdsl.backend.emit import class_name, emit_program  # noqa: E402
from seqdsl.errors import SpecError  # noqa: E402
from seqdsl.lang.printer import to_seq  # noqa: E402
from seqdsl.check.elaborate import parse  # noqa: E402

from test_backend_build import one_thread  # noqa: E402,F401

# conv1d with a stride and explicit padding -> non-causal attention (a key
# mask) -> bidirectional LSTM (packed) -> time_mean over each sequence's steps
CORE = """
model core {
    input x: float[B, T, 6] lengths
    h = x
        -> conv1d(16, 5, stride=2, padding=2)
        -> relu
        -> residual { layernorm -> attention(4) }
        -> lstm(8, bidirectional=true)
    pooled = h -> time_mean
    output h, pooled
}
"""

# torchaudio's Conformer layer at small sizes (macaron halves, the
# convolution module's depthwise conv and batchnorm, a final layernorm)
CONFORMER = """
model conformer {
    let d = 16
    input features: float[B, T, d] lengths
    encoded = features
        -> repeat(2) {
            residual(scale=0.5) { layernorm -> mlp(32, act=silu) }
            residual { layernorm -> attention(4) }
            residual {
                layernorm
                conv1d(2 * d, 1, padding=0)
                glu
                conv1d(d, 7, padding=3, groups=d)
                batchnorm
                silu
                conv1d(d, 1, padding=0)
            }
            residual(scale=0.5) { layernorm -> mlp(32, act=silu) }
            layernorm
        }
    output encoded
}
"""

# a speech encoder: a 2-D convolution subsampling (time / 4, frequency / 4),
# flattened, ALiBi and windowed self-attention, max pooling over time, a
# bidirectional GRU, a CTC head; and an utterance vector of the last step
SPEECH = """
model speech {
    input feats: float[B, T, 12] lengths
    frames = feats
        -> unsqueeze
        -> conv2d(4, 3, stride=2, padding=1)
        -> relu
        -> conv2d(4, 3, stride=2, padding=[1, 1])
        -> relu
        -> flatten
        -> linear(16)
    encoded = frames
        -> residual { layernorm -> attention(2, pos=alibi) }
        -> residual { layernorm -> attention(2, window=2, pos=rope) }
        -> maxpool1d(3, stride=1, padding=1)
        -> gru(8, bidirectional=true, layers=2)
    ctc = encoded -> linear(10) -> log_softmax
    last = encoded -> time_last
    output ctc, last
}
"""

# every other kind with its own rule, and causal layers that need none
KINDS = """
model kinds {
    input x: float[B, T, 8] lengths
    a = x -> avgpool1d(3, stride=2, padding=1) -> attention(2, kind=linear)
    b = x -> conv1d(8, 3, padding=valid) -> attention(2, kind=performer, features=8)
    c = x -> attention(2, kind=linformer, proj=4, max_len=32) -> maxpool1d(2)
    d = x -> conv1d(8, 4, stride=3, padding=causal) -> mamba(state=4) -> rnn(8, bidirectional=true)
    e = x -> attention(2, causal=true, pos=rope) -> lstm(8) -> time_last
    output a, b, c, d, e
}
"""

# two inputs with their own lengths: cross-attention masks the context's padding
CROSS = """
model cross {
    input src: float[B, S, 8] lengths
    input tgt: float[B, T, 8] lengths
    memory = src -> conv1d(8, 3, stride=2, padding=1) -> attention(2)
    y = tgt -> attention(2, causal=true) -> cross_attention(2, context=memory) -> time_mean
    z = tgt -> cross_attention(2, context=memory)
    output y, z
}
"""

# token ids with lengths: an encoder over an embedding, a learned posenc
TOKENS = """
model text_encoder {
    input tokens: int[B, T] lengths
    h = tokens
        -> embed(50, 16)
        -> posenc(learned, max_len=64)
        -> repeat(2) { residual { layernorm -> attention(4, pos=rope) } -> residual { layernorm -> swiglu(32) } }
    sentence = h -> time_mean
    first = h -> time_first
    output h, sentence, first
}
"""

# segments with lengths: a sequence is cut where it would be alone, so only its
# last valid segment is short; non-causal attention masks that segment's
# padded keys (the memory holds only valid steps before it); a conv in the body
# reads each piece's padding as its own; a context read whole masks its own
SEGMENTS = """
model seg {
    input x: float[B, T, 8] lengths
    input c: float[B, S, 8] lengths
    h = x
        -> linear(8)
        -> segments(length=4, memory=3) {
            residual { layernorm -> attention(2) }
            residual { attention(2, causal=true, pos=rope) }
            residual { cross_attention(2, context=c) }
        }
        -> segments(length=5, memory=0) { residual { attention(2) } -> conv1d(8, 3, padding=1) }
    pooled = h -> time_mean
    output h, pooled
}
"""

# non-causal Transformer-XL relative attention: a key padding mask on scores
# that depend only on the distance |i - j| (not on the padded length), alone
# and inside segments
RELATIVE = """
model rel {
    input x: float[B, T, 8] lengths
    h = x
        -> residual { layernorm -> attention(2, pos=relative) }
        -> segments(length=4, memory=3) { residual { attention(2, pos=relative) } }
    output h
}
"""

LENGTHS = [19, 11, 4, 1]      # B = 4, the longest fills the batch


def _model(text, seed=0):
    graph = parse(text).model()
    return graph, seqdsl.build(graph, seed=seed).eval()


def _inputs(graph, lengths: dict, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = []
    for name, ty in graph.inputs.items():
        shape = (len(lengths[name]), max(lengths[name]), *[int(d) for d in ty.dims[2:]])
        xs.append(torch.randint(0, 50, shape, generator=g) if ty.dtype == "int" else torch.randn(*shape, generator=g))
    return xs


def _check_alone(model, graph, xs, lengths: dict):
    """Each sequence run alone (unpadded) against its row of the padded batch."""
    given = {k: torch.tensor(v) for k, v in lengths.items()}
    arg = given if len(given) > 1 else next(iter(given.values()))
    with torch.no_grad():
        outs, out_lens = model(*xs, lengths=arg)
    many = len(graph.outputs) > 1
    outs, out_lens = (outs, out_lens) if many else ((outs,), (out_lens,))
    for b in range(len(next(iter(lengths.values())))):
        alone_in = [x[b:b + 1, :lengths[name][b]] for name, x in zip(graph.inputs, xs)]
        with torch.no_grad():
            alone = model(*alone_in)
        alone = alone if many else (alone,)
        for name, y, n, ya in zip(graph.outputs, outs, out_lens, alone):
            if n is None:                       # no time axis: the whole row
                assert y[b].shape == ya[0].shape
                torch.testing.assert_close(y[b], ya[0], atol=1e-5, rtol=1e-5, msg=f"{name}, sequence {b}")
                continue
            k = ya.shape[1]
            assert int(n[b]) == k, (name, b, int(n[b]), k)
            torch.testing.assert_close(y[b, :k], ya[0], atol=1e-5, rtol=1e-5, msg=f"{name}, sequence {b}")
            assert not y[b, k:].any(), f"{name}: padded positions of sequence {b} are not zero"
    return outs, out_lens


@pytest.mark.parametrize("text, lengths", [(CORE, LENGTHS), (CONFORMER, LENGTHS), (SPEECH, LENGTHS),
                                           (KINDS, [19, 11, 5, 3]),      # conv1d(valid) needs 3 steps alone
                                           (TOKENS, LENGTHS), (RELATIVE, LENGTHS)],
                         ids=["core", "conformer", "speech", "kinds", "tokens", "relative"])
def test_each_sequence_equals_running_it_alone(text, lengths):
    graph, model = _model(text)
    name = next(iter(graph.inputs))
    lengths = {name: lengths}
    _check_alone(model, graph, _inputs(graph, lengths), lengths)


def test_cross_attention_masks_the_contexts_padding():
    graph, model = _model(CROSS)
    lengths = {"src": [17, 9, 6, 3], "tgt": [5, 12, 1, 7]}
    _check_alone(model, graph, _inputs(graph, lengths), lengths)


def test_segments_equal_each_sequence_alone():
    """Each sequence's segments are cut as alone: 19 steps in segments of 4 end
    with a short one of 3, 11 with one of 3, 4 fills one, 1 is one short one."""
    graph, model = _model(SEGMENTS)
    lengths = {"x": [19, 11, 4, 1], "c": [6, 2, 9, 3]}
    outs, _ = _check_alone(model, graph, _inputs(graph, lengths), lengths)
    (h_plain, _) = model(*_inputs(graph, lengths))
    assert not torch.allclose(outs[0][1, :11], h_plain[1, :11], atol=1e-3)     # the masks matter


def test_non_causal_relative_scores_by_distance():
    """Non-causal pos=relative: BD for query i and key j is (q_i + v)·r_|i-j|,
    r = r_proj(sinusoid(position)), on both sides of the query (written out
    here by hand), so a sequence's scores do not depend on the padded length."""
    from seqdsl.layers.torch_modules import sinusoid
    graph, model = _model("model m {\n input x: float[B, T, 8]\n y = x -> attention(2, pos=relative)\n output y\n}")
    att = model.named_layer("y.attention")
    with torch.no_grad():
        att.u.normal_(), att.v_bias.normal_()
        x = torch.randn(2, 7, 8)
        q, k, v = (att_proj(x).view(2, 7, 2, 4).transpose(1, 2) for att_proj in (att.q, att.k, att.v))
        r = att.r_proj(sinusoid(7, 8)).view(7, 2, 4)                        # positions 0..6
        dist = (torch.arange(7)[:, None] - torch.arange(7)[None]).abs()
        ac = (q + att.u[:, None]) @ k.transpose(-1, -2)
        bd = torch.einsum("bhid,ijhd->bhij", q + att.v_bias[:, None], r[dist])
        y = ((ac + bd) / 2).softmax(-1) @ v                                 # sqrt(d_head) = 2
        want = att.o(y.transpose(1, 2).reshape(2, 7, 8))
        torch.testing.assert_close(model(x), want, atol=1e-5, rtol=1e-5)


def test_the_lengths_do_change_the_outputs():
    """Without lengths= the padding leaks in (the tests above are not vacuous)."""
    graph, model = _model(CORE)
    (x,) = _inputs(graph, {"x": LENGTHS})
    with torch.no_grad():
        (h, pooled), _ = model(x, lengths=torch.tensor(LENGTHS))
        h_full, pooled_full = model(x)
    assert not torch.allclose(pooled[1:], pooled_full[1:], atol=1e-3)
    assert torch.allclose(pooled[0], pooled_full[0], atol=1e-5)      # the full-length row is the same


def test_full_lengths_equal_no_lengths():
    graph, model = _model(SPEECH)
    (x,) = _inputs(graph, {"feats": [16, 16]})
    with torch.no_grad():
        (ctc, last), (n, none) = model(x, lengths=torch.tensor([16, 16]))
        ctc0, last0 = model(x)
    assert none is None and n.tolist() == [4, 4] == [ctc0.shape[1]] * 2
    torch.testing.assert_close(ctc, ctc0)
    torch.testing.assert_close(last, last0)


@pytest.mark.parametrize("text", [CORE, SPEECH, CROSS, SEGMENTS], ids=["core", "speech", "cross", "segments"])
def test_emitted_source_agrees(text, tmp_path):
    graph, model = _model(text)
    path = tmp_path / "gen_lengths.py"
    path.write_text(emit_program([graph]))
    spec = importlib.util.spec_from_file_location("gen_lengths", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    emitted = getattr(mod, class_name(graph.name))().eval()
    emitted.load_state_dict(model.state_dict())
    lengths = {n: [9, 3, 5] for n in graph.inputs}
    xs = _inputs(graph, lengths)
    given = {k: torch.tensor(v) for k, v in lengths.items()}
    arg = given if len(given) > 1 else next(iter(given.values()))
    with torch.no_grad():
        a, b = model(*xs, lengths=arg), emitted(*xs, lengths=arg)
        plain_a, plain_b = model(*xs), emitted(*xs)
    flat = lambda v: [t for t in (v if isinstance(v, tuple) else (v,)) for t in (t if isinstance(t, tuple) else (t,))]  # noqa: E731
    assert len(flat(a)) == len(flat(b))
    for p, q in zip(flat(a) + flat(plain_a), flat(b) + flat(plain_b)):
        assert (p is None and q is None) or torch.equal(p, q)


def test_training_forward_and_backward_with_lengths():
    """Training runs each repeat copy as a Block (and may recompute it): the lengths reach it."""
    graph, model = _model(CONFORMER)
    model.train()
    for block in model.blocks():
        block.recompute = True
    (x,) = _inputs(graph, {"features": [7, 3]})
    y, n = model(x, lengths=torch.tensor([7, 3]))
    y.sum().backward()
    assert n.tolist() == [7, 3]
    assert not y[1, 3:].any()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_streaming_is_unaffected_by_the_marker():
    """A causal spec with `lengths` streams as before without step's lengths=
    (tests/test_lengths_stream.py streams with them)."""
    text = """
model kws {
    input mfcc: float[B, T, 8] lengths
    y = mfcc
        -> conv1d(16, 3, stride=2, padding=causal)
        -> residual { attention(2, causal=true, pos=alibi) }
        -> gru(8)
    output y
}
"""
    graph, model = _model(text)
    x = torch.randn(2, 12, 8)
    with torch.no_grad():
        full = model(x)
        state = model.init_state(2)
        steps = [model.step(x[:, i:i + 3], state=state)[0] for i in range(0, 12, 3)]
        (masked, n) = model(x, lengths=torch.tensor([12, 12]))
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masked, full)
    assert n.tolist() == [6, 6]


def test_syntax_round_trips_and_the_builder_writes_it():
    text = "model m {\n    input x: float[B, T, 4] lengths\n\n    y = x -> relu\n\n    output y\n}\n"
    assert to_seq(_ast(text)) == text
    assert _ast(text).models[0].statements[0].lengths
    m = sb.model("m")
    x = m.input("x", "float", ["B", "T", 4], lengths=True)
    m.output(m.bind("y", x, sb.relu()))
    assert m.to_seq() == text
    assert m.check().lengths == ("x",)
    with pytest.raises(TypeError):
        sb.model("n").input("x", "float", ["B", "T", 4], lengths="yes")


def _ast(text):
    from seqdsl.lang.syntax import parse_module
    from seqdsl.errors import SourceFile
    return parse_module(SourceFile("<t>", text))


def test_graph_records_which_values_carry_lengths():
    graph = parse(CORE).model()
    carried = {n.name: n.lengths for n in graph.nodes}
    assert carried["x"] == carried["h.conv1d"] == carried["h.lstm"] == "x"
    assert carried["pooled.time_mean"] is None
    assert graph.lengths == ("x",)
    assert parse(CORE.replace(" lengths\n", "\n")).model().lengths == ()


@pytest.mark.parametrize("body, words", [
    ("input x: float[B, 16, 4] lengths\n y = x -> relu", "symbolic sequence length"),
    ("input x: float[B] lengths\n y = x -> relu", "no time axis"),
    ("input x: float[B, T, 4] lenghts\n y = x -> relu", "unknown input marker"),
    ("input x: float[B, T, 4] lengths\n y = x -> conv1d(4, 3, stride=2)", "padding=same with stride 2"),
    ("input x: float[B, T, 4] lengths\n y = x -> segments(length=4, memory=2) { conv1d(4, 3, stride=2, padding=1) }",
     "inside segments(...) a layer on a value with per-sequence lengths must keep the time axis"),
    ("input x: float[B, T, 4] lengths\n input z: float[B, T, 4]\n y = z -> mul(x)", "its input carries none"),
    ("input x: float[B, T, 4] lengths\n input z: float[B, T, 4] lengths\n y = x -> add(z)",
     "different per-sequence lengths"),
])
def test_refusals(body, words):
    with pytest.raises(SpecError) as exc:
        parse("model m {\n " + body + "\n output y\n}").model()
    assert words in str(exc.value), str(exc.value)


def test_bad_lengths_arguments_are_clear():
    graph, model = _model(CORE)
    x = torch.randn(2, 8, 6)
    for bad, kind, words in [(torch.tensor([8.0, 3.0]), TypeError, "integer tensor"),
                             (torch.tensor([8, 3, 1]), ValueError, "one length per sequence"),
                             (torch.tensor([9, 3]), ValueError, "1..8"),
                             (torch.tensor([0, 3]), ValueError, "1..8"),
                             ({"y": torch.tensor([8, 3])}, TypeError, "inputs declared")]:
        with pytest.raises(kind, match=words):
            model(x, lengths=bad)
    _, plain = _model(CORE.replace(" lengths\n", "\n"))
    with pytest.raises(TypeError, match="no input declares"):
        plain(x, lengths=torch.tensor([8, 3]))
    _, two = _model(CROSS)
    with pytest.raises(TypeError, match="pass a dict"):
        two(torch.randn(2, 8, 8), torch.randn(2, 5, 8), lengths=torch.tensor([8, 3]))


VERIFIED = """
model small {
    input x: float[B, T, 8] lengths
    h = x -> conv1d(16, 5, stride=2, padding=2) -> relu -> residual { layernorm -> attention(4) } -> gru(8)
    pooled = h -> time_mean
    output h, pooled
}
"""


def test_estimate_counts_the_padded_batch_and_verify_passes():
    """The marker changes no cost (the module computes the padded batch), and
    verify, which runs without lengths=, still agrees with the estimate."""
    from seqdsl.backend.verify import verify
    graph = parse(VERIFIED).model()
    plain = parse(VERIFIED.replace(" lengths\n", "\n")).model()
    a, b = seqdsl.estimate(graph, seq=[64, 1000]), seqdsl.estimate(plain, seq=[64, 1000])
    assert a.model_dump() == b.model_dump()
    report = verify(graph, seq=[24])
    assert report.ok, [r for r in report.failed]


def test_length_formulas_are_exact_integer_arithmetic():
    """Every output-length form a layer makes, evaluated per sequence (build)
    and printed (compile -o), equals the shape rule at that length."""
    import sympy
    from seqdsl.graph.lengths import length_code, length_fn, length_tree
    from seqdsl.graph.symbolic import ceil_div, dim_symbol, floor_div
    t = dim_symbol("T")
    forms = [t, floor_div(t + 4 - 5, 3) + 1, ceil_div(t, 4), ceil_div(floor_div(t - 3, 2) + 1, 2),
             floor_div(ceil_div(t, 2) + 2 - 3, 3) + 1, sympy.Max(t - 4, 0), sympy.Min(t, 7), 2 * t + 1]
    n = torch.arange(1, 200)
    for form in forms:
        tree = length_tree(form, "T")
        want = [int(form.subs(t, int(k))) for k in n]
        assert length_fn(tree)(n).tolist() == want, form
        assert eval(length_code(tree, "n"), {"n": n}).tolist() == want, form   # noqa: S307 - the printed source
    with pytest.raises(ValueError, match="besides T"):
        length_tree(t + dim_symbol("S"), "T")


@pytest.mark.parametrize("loss", ["ctc(y, target_len=3)", "cross_entropy(y)", "mse(y)"])
def test_the_loss_counts_only_valid_positions(loss):
    """model.loss(..., output_lengths=n) on the padded batch equals the
    per-sequence losses combined as the loss's mean does (ctc: per sequence;
    cross_entropy and mse: per position)."""
    text = f"""
model m {{
    input x: float[B, T, 6] lengths
    y = x -> conv1d(8, 3, stride=2, padding=1) -> residual {{ attention(2) }} -> linear(5)
    output y
    loss {loss}
}}
"""
    graph, model = _model(text)
    lengths = [14, 9, 5]
    (x,) = _inputs(graph, {"x": lengths})
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        y, n = model(x, lengths=torch.tensor(lengths))
        if loss.startswith("ctc"):
            targets, target_lengths = torch.randint(1, 5, (3, 3), generator=g), torch.tensor([3, 2, 1])
        elif loss.startswith("cross"):
            targets, target_lengths = torch.randint(0, 5, y.shape[:2], generator=g), None
        else:
            targets, target_lengths = torch.randn(y.shape, generator=g), None
        batched = model.loss(y, targets, target_lengths, output_lengths=n)
        alone, weights = [], []
        for b, k in enumerate(lengths):
            ya = model(x[b:b + 1, :k])
            steps = ya.shape[1]
            if loss.startswith("ctc"):
                alone.append(model.loss(ya, targets[b:b + 1, :int(target_lengths[b])]))
                weights.append(1)
            else:
                alone.append(model.loss(ya, targets[b:b + 1, :steps]))
                weights.append(steps * (ya.shape[-1] if loss.startswith("mse") else 1))
        want = sum(a * w for a, w in zip(alone, weights)) / sum(weights)
        padded = model.loss(y, targets, target_lengths)      # without output_lengths: every position counts
    torch.testing.assert_close(batched, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(padded, want, atol=1e-4)


def test_compiled_model_takes_lengths():
    """compile=True (stage by stage; aot_eager, which traces as inductor does
    without its code generation) gives the eager model's outputs and lengths,
    and still runs without lengths=."""
    graph = parse(CORE).model()
    eager = seqdsl.build(graph, seed=0).eval()
    compiled = seqdsl.build(graph, seed=0, compile=True, backend="aot_eager").eval()
    (x,) = _inputs(graph, {"x": LENGTHS})
    n = torch.tensor(LENGTHS)
    with torch.no_grad():
        (h, pooled), (hn, none) = compiled(x, lengths=n)
        (h0, pooled0), (hn0, _) = eager(x, lengths=n)
        plain, plain0 = compiled(x), eager(x)
    assert none is None and torch.equal(hn, hn0)
    torch.testing.assert_close(h, h0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, pooled0, atol=1e-5, rtol=1e-5)
    for a, b in zip(plain, plain0):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


EXPORT_SCRIPT = r"""
import sys, torch, seqdsl
torch.set_num_threads(1)
from seqdsl.backend.seqmodel import SeqModel
from seqdsl.backend.export import export_model
texts = ['''
model enc {
    input x: float[B, T, 6] lengths
    h = x -> conv1d(8, 3, padding=1) -> residual { layernorm -> attention(2, pos=alibi) }
        -> residual { attention(2, pos=relative) } -> attention(2, kind=linear)
    pooled = h -> time_mean
    output h, pooled
}''', '''
model cross {
    input src: float[B, S, 8] lengths
    input tgt: float[B, T, 8] lengths
    memory = src -> attention(2)
    y = tgt -> attention(2, causal=true) -> cross_attention(2, context=memory)
    output y
}''']
for i, text in enumerate(texts):
    g = seqdsl.parse(text).model()
    path = sys.argv[1] + f".{i}.pt2"
    torch.manual_seed(0)
    export_model(g, path, None)
    torch.manual_seed(0)
    model = SeqModel(g).eval()          # export_model builds the same weights from the same seed
    program = torch.export.load(path).module()
    flat = lambda v: [t for t in (v if isinstance(v, tuple) else (v,)) for t in (t if isinstance(t, tuple) else (t,))]
    for t, lens in ((64, [64, 7]), (13, [5, 13]), (40, [1, 33])):
        xs = [torch.randn(2, t, int(ty.dims[2])) for ty in g.inputs.values()]
        ns = [torch.tensor(lens if k == 0 else lens[::-1]) for k in range(len(xs))]
        given = ns[0] if len(ns) == 1 else dict(zip(g.inputs, ns))
        with torch.no_grad():
            want = model(*xs, lengths=given)
        got = program(*xs, *ns)
        pairs = list(zip(flat(got), flat(want)))
        assert len(flat(got)) == len(flat(want)) > 1
        for a, b in pairs:
            assert (a is None and b is None) or torch.allclose(a, b, atol=1e-5), (i, t, lens)
print("export-lengths-ok")
"""


def test_export_takes_the_lengths_as_inputs(tmp_path):
    """seqdsl export of a spec with `lengths`: the program takes each
    declared input's lengths after the inputs (T dynamic as without) and
    returns (outputs, output_lengths) as the module with lengths= does."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "-c", EXPORT_SCRIPT, str(tmp_path / "m")], capture_output=True, text=True,
                       cwd=root, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "export-lengths-ok" in r.stdout


def test_compiled_model_runs_segments_with_lengths():
    """compile=True runs a segments group eagerly between compiled stages; it
    gets the lengths too (dynamo's eager backend: the stage split is the point)."""
    graph = parse(SEGMENTS).model()
    eager = seqdsl.build(graph, seed=0).eval()
    compiled = seqdsl.build(graph, seed=0, compile=True, backend="eager").eval()
    assert "segments" in compiled.stage_modes
    lengths = {"x": [9, 4, 1], "c": [3, 5, 2]}
    xs = _inputs(graph, lengths)
    given = {k: torch.tensor(v) for k, v in lengths.items()}
    with torch.no_grad():
        (h, pooled), _ = compiled(*xs, lengths=given)
        (h0, pooled0), _ = eager(*xs, lengths=given)
    torch.testing.assert_close(h, h0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, pooled0, atol=1e-5, rtol=1e-5)
