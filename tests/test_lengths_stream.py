"""Streams that end at different steps (docs/language.md, "Variable
lengths"): `step(chunk, state=..., lengths=n)`, n each sequence's valid steps
in the chunk. Streaming a padded batch in chunks of 1, 3 and 17 equals
streaming each sequence alone: its valid outputs, their count, zeros past
them, and its final state (each layer's fixed-size state rows: carried
unchanged past its last valid step)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import seqdsl  # noqa: E402
from seqdsl.check.elaborate import parse  # noqa: E402
from seqdsl.errors import SpecError  # noqa: E402

from test_backend_build import one_thread  # noqa: E402,F401

# a strided causal conv frontend, causal attention (a KV cache with RoPE
# positions), LSTM and GRU (torch's (layers, B, H) states), and the v0.2
# recurrences mamba2, gla, rglru and mlstm (whose stabiliser starts at -inf)
STREAM = """
model s {
    input x: float[B, T, 6] lengths
    y = x
        -> conv1d(8, 3, stride=2, padding=causal)
        -> residual { attention(2, causal=true, pos=rope) }
        -> lstm(8)
        -> gru(8, layers=2)
        -> mamba2(state=4, head_dim=4, chunk=4)
        -> gla(2, chunk=4)
        -> rglru(2)
        -> mlstm(2)
    z = x -> residual { attention(2, causal=true, window=3, pos=alibi) } -> linear(4)
    output y, z
}
"""

LENGTHS = [23, 9, 1, 16]
# layers whose stream state is the batch's, not a sequence's: the strided
# conv's phase in its stride and its buffer after it; attention's growing KV
# cache and RoPE position (an ended stream never reads them again)
SHARED = ("conv1d", "attention")


def _stream(model, x, lengths, chunk):
    """Outputs and output lengths over the whole stream, and the last state."""
    state, ys, ns = model.init_state(x.shape[0]), [], []
    for i in range(0, x.shape[1], chunk):
        c = x[:, i:i + chunk]
        if lengths is None:
            y, state = model.step(c, state=state)
        else:
            (y, n), state = model.step(c, state=state, lengths=(torch.tensor(lengths) - i).clamp(0, c.shape[1]))
            ns.append(n if isinstance(n, tuple) else (n,))
        ys.append(y if isinstance(y, tuple) else (y,))
    outs = tuple(torch.cat(parts, 1) for parts in zip(*ys))
    return outs, (tuple(sum(parts) for parts in zip(*ns)) if ns else None), state


def _rows(value, b, dim):
    """Row b of a state entry (a tensor or a tuple of them) along its batch axis."""
    if isinstance(value, (tuple, list)):
        return [_rows(v, b, dim) for v in value]
    return value.select(dim, b) if isinstance(value, torch.Tensor) else value


@pytest.fixture(scope="module")
def built():
    graph = parse(STREAM).model()
    return seqdsl.build(graph, seed=0).eval()


@pytest.mark.parametrize("chunk", [1, 3, 17])
def test_each_stream_equals_streaming_it_alone(built, chunk):
    model = built
    x = torch.randn(len(LENGTHS), max(LENGTHS), 6, generator=torch.Generator().manual_seed(chunk))
    with torch.no_grad():
        outs, lens, state = _stream(model, x, LENGTHS, chunk)
        carried = 0
        for b, length in enumerate(LENGTHS):
            alone, _, alone_state = _stream(model, x[b:b + 1, :length], None, chunk)
            for name, y, n, ya in zip(("y", "z"), outs, lens, alone):
                k = ya.shape[1]
                assert int(n[b]) == k, (name, b, int(n[b]), k)
                torch.testing.assert_close(y[b, :k], ya[0], atol=1e-5, rtol=1e-5, msg=f"{name}, sequence {b}")
                assert not y[b, k:].any(), f"{name}: sequence {b} past its valid steps is not zero"
            for layer, st in alone_state.items():
                if layer.startswith("__") or not isinstance(st, dict) or layer.split(".")[-1] in SHARED:
                    continue
                dim = getattr(model.named_layer(layer), "state_batch_dim", 0) if "." in layer else 0
                for key, value in st.items():
                    if not isinstance(value, (torch.Tensor, tuple)):
                        continue            # a position counter: the batch's
                    mine = state[layer][key]
                    if isinstance(value, torch.Tensor) and mine.shape[:dim] + mine.shape[dim + 1:] != \
                            value.shape[:dim] + value.shape[dim + 1:]:
                        continue            # a growing cache: the batch's is as long as its longest stream
                    torch.testing.assert_close(_rows(mine, b, dim), _rows(value, 0, dim), atol=1e-5, rtol=1e-5,
                                               msg=f"state {layer}[{key!r}], sequence {b}")
                    carried += 1
        assert carried > 20          # every recurrent layer's state was compared


def test_the_carry_matters(built):
    """Without lengths= the ended streams' states run on through the padding."""
    x = torch.randn(2, 12, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, _, padded = _stream(built, x, None, 4)
        _, _, alone = _stream(built, x[1:, :5], None, 4)
    h, h_alone = padded["y.lstm"]["h"][0][:, 1], alone["y.lstm"]["h"][0][:, 0]
    assert not torch.allclose(h, h_alone, atol=1e-3)


def test_bad_step_lengths_are_clear(built):
    state = built.init_state(2)
    x = torch.randn(2, 4, 6)
    for bad, kind, words in [(torch.tensor([4.0, 2.0]), TypeError, "integer tensor"),
                             (torch.tensor([4, 2, 1]), ValueError, "one count per sequence"),
                             (torch.tensor([5, 2]), ValueError, "0..4")]:
        with pytest.raises(kind, match=words):
            built.step(x, state=state, lengths=bad)
    with torch.no_grad():
        built.step(x, state=state, lengths=torch.tensor([4, 2]))
        with pytest.raises(ValueError, match=r"sequence\(s\) \[1\] ended in an earlier chunk"):
            built.step(x, state=state, lengths=torch.tensor([4, 1]))
        (_, n), _ = built.step(x, state=state, lengths=torch.tensor([3, 0]))
    assert [t.tolist() for t in n] == [[2, 0], [3, 0]]


def test_emformer_refuses_step_lengths():
    model = seqdsl.build(parse("""
model e {
    input x: float[B, T, 8]
    y = x -> emformer(2, segment=4, left=4, right=1, ffn=16)
    output y
}
""").model(), seed=0).eval()
    with pytest.raises(SpecError, match="holds frames back"):
        model.step(torch.randn(2, 4, 8), state=model.init_state(2), lengths=torch.tensor([4, 2]))


def test_segments_stream_with_lengths():
    """A causal segments body streams piece by piece too: each stream's
    outputs and its GRU state after the segments equal streaming it alone."""
    model = seqdsl.build(parse("""
model s {
    input x: float[B, T, 6] lengths
    y = x
        -> linear(8)
        -> segments(length=4, memory=3) {
            residual { attention(2, causal=true, pos=relative) }
            residual { attention(2, causal=true) }
        }
        -> gru(8)
    output y
}
""").model(), seed=0).eval()
    lengths = [13, 6, 1]
    x = torch.randn(3, 13, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for chunk in (1, 3, 5):
            (y,), (n,), state = _stream(model, x, lengths, chunk)
            for b, length in enumerate(lengths):
                (ya,), _, alone = _stream(model, x[b:b + 1, :length], None, chunk)
                assert int(n[b]) == ya.shape[1] == length
                torch.testing.assert_close(y[b, :length], ya[0], atol=1e-5, rtol=1e-5)
                assert not y[b, length:].any()
                torch.testing.assert_close(state["y.gru"]["h"][:, b], alone["y.gru"]["h"][:, 0], atol=1e-5, rtol=1e-5)
