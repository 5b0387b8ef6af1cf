"""Recurrent cost rules against nn.LSTM / GRU / RNN (oneDNN LSTM and the
decomposed GRU/RNN on the CPU): parameters, FLOPs within 0.5% (with the
mkldnn_rnn_layer formulas registered), saved bytes within 10%, state exact."""
import pytest
import torch
from torch import nn

import seqdsl
from cost_refs import check
from seqdsl.cost.estimate import estimate


class Rnn(nn.Module):
    def __init__(self, kind, c, hidden, **kw):
        super().__init__()
        self.inp = nn.Linear(c, c)
        self.rnn = getattr(nn, kind.upper())(c, hidden, batch_first=True, **kw)

    def forward(self, x):
        return self.rnn(self.inp(x))[0]


def spec(c, layer, first="linear"):
    body = f"linear({c}) -> {layer}" if first == "linear" else layer
    return f"model m {{\n  input x: float[B, T, {c}]\n  y = x -> {body}\n  output y\n}}\n"


CASES = [
    ("lstm", "lstm(64)", {}),
    ("lstm", "lstm(64, layers=2, dropout=0.5)", dict(num_layers=2, dropout=0.5)),
    ("lstm", "lstm(48, bidirectional=true)", dict(bidirectional=True)),
    ("gru", "gru(32)", {}),
    ("gru", "gru(32, layers=2, bidirectional=true)", dict(num_layers=2, bidirectional=True)),
    ("rnn", "rnn(32, layers=2)", dict(num_layers=2)),
    ("rnn", "rnn(32, nonlinearity=relu)", dict(nonlinearity="relu")),
]


@pytest.mark.parametrize("kind,layer,kw", CASES, ids=[c[1] for c in CASES])
def test_recurrent_matches_torch(kind, layer, kw):
    hidden = int(layer.split("(")[1].split(")")[0].split(",")[0])
    # oneDNN's workspace is page-rounded: its fit holds once B·T·h is ~16k or more
    lengths = [128, 200, 256] if kind == "lstm" else [16, 40, 64]
    check(spec(24, layer), lambda: Rnn(kind, 24, hidden, **kw), lengths, batch=2, channels=24)


def test_gru_on_a_data_input_skips_the_input_gradient():
    # the model's data input needs no gradient, so autograd skips the x-gradient mm
    import measure
    model = seqdsl.parse(spec(24, "gru(32)", first=None))
    gru = nn.GRU(24, 32, batch_first=True)
    for t in (16, 40):
        with measure.counter() as c:
            gru(torch.randn(2, t, 24))[0].sum().backward()
        p = estimate(model, seq=t, batch=2).points[0]
        assert p.flops_train == c.get_total_flops()
        assert p.flops_train < 3 * p.flops_forward


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_recurrent_state_bytes_are_exact(kind):
    layer = f"{kind}(32, layers=2)"
    model = seqdsl.parse(spec(16, layer, first=None))
    rnn = getattr(nn, kind.upper())(16, 32, num_layers=2, batch_first=True)
    out = rnn(torch.randn(3, 9, 16))
    state = out[1]
    nbytes = sum(s.nbytes for s in state) if isinstance(state, tuple) else state.nbytes
    for t in (1, 9, 10 ** 9):
        assert estimate(model, seq=t, batch=3).points[0].state_bytes == nbytes


def test_recurrent_depth_is_layers_times_t():
    model = seqdsl.parse(spec(16, "lstm(32, layers=3)", first=None))
    assert estimate(model, seq=[512], batch=1).points[0].sequential_depth == 3 * 512
