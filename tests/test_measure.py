"""tests/measure.py itself: the formulas fill the CPU kernels' zeros, scoped
(no global change) unless register() is called, which is idempotent."""
import torch
import torch.nn.functional as F
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

import measure


def test_cpu_flash_attention_and_lstm_count_only_with_the_formulas():
    q = torch.randn(2, 4, 16, 8, requires_grad=True)
    lstm = torch.nn.LSTM(8, 6, batch_first=True)
    x = torch.randn(3, 10, 8)
    sdpa = lambda: F.scaled_dot_product_attention(q, q, q, is_causal=True).sum().backward()  # noqa: E731
    rnn = lambda: lstm(x)[0].sum().backward()  # noqa: E731
    already = measure.FORMULAS.keys() <= flop_counter.flop_registry.keys()
    if not already:  # plain FlopCounterMode sees zero on this CPU (ENVIRONMENT.md)
        with FlopCounterMode(display=False) as plain:
            sdpa()
            rnn()
        assert plain.get_total_flops() == 0
    assert measure.count_flops(sdpa) == 4 * 2 * 4 * 8 * 16 * 16 * 7 // 2   # fwd + 2.5x fwd
    assert measure.count_flops(rnn) == 3 * 2 * 3 * 10 * 24 * (8 + 6)       # fwd + 2x fwd


def test_register_is_idempotent_and_scoped():
    before = set(flop_counter.flop_registry)
    with measure.registered():
        assert measure.register() == []               # already there: nothing added twice
        for op in measure.FORMULAS:
            assert op in flop_counter.flop_registry
        q = torch.randn(1, 2, 8, 4)
        with FlopCounterMode(display=False) as plain:  # a plain counter now sees the kernel
            F.scaled_dot_product_attention(q, q, q)
        assert plain.get_total_flops() == 4 * 2 * 4 * 8 * 8
    assert set(flop_counter.flop_registry) == before


def test_saved_bytes_skip_parameters_and_inputs():
    lin = torch.nn.Linear(8, 4)
    x = torch.randn(5, 8)
    assert measure.saved_bytes(lin, x) == 0           # addmm saves only x (an input) and W
    seq = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    assert measure.saved_bytes(seq, x) == 5 * 16 * 4  # relu's output, shared with the second linear
