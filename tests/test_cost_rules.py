"""Unit tests of the closed forms themselves: segment sums against a brute
loop, the window band's switch at T = W, exact evaluation."""
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import seqdsl
from seqdsl.cost.model import leading_terms
from seqdsl.layers.costs import segment_sums
from seqdsl.graph.symbolic import compile_expr, dim_symbol

T = dim_symbol("T")


def brute_segments(t, length, memory):
    sq = cross = mem_sum = 0
    seen = 0
    n = 0
    for start in range(0, t, length):
        ls = min(length, t - start)
        mem = min(memory, seen)
        sq, cross, mem_sum = sq + ls * ls, cross + ls * mem, mem_sum + mem
        seen += ls
        n += 1
    return n, sq, cross, mem_sum


@settings(max_examples=200, deadline=None)
@given(t=st.integers(1, 5000), length=st.integers(1, 300), memory=st.integers(0, 700))
def test_segment_sums_match_a_loop(t, length, memory):
    symbolic = [compile_expr(e)({"T": t}) for e in segment_sums(T, length, memory)]
    assert symbolic == list(brute_segments(t, length, memory))
    concrete = [compile_expr(e)({}) for e in segment_sums(sympy.Integer(t), length, memory)]
    assert concrete == symbolic


def test_window_switches_to_the_band_after_w():
    text = "model m {\n  input x: float[B, T, 32]\n  y = x -> attention(4, window=16, causal=true)\n  output y\n}\n"
    est = seqdsl.estimate(seqdsl.parse(text), seq=[16, 17, 32, 33], batch=1)
    f = [p.flops_forward for p in est.points]
    proj = 4 * 2 * 32 * 32
    assert f[0] == 16 * proj + 4 * 32 * 16 * 16                       # plain SDPA, T x T pairs
    assert f[1] == 17 * proj + 4 * 32 * 2 * 16 * 32                   # 2 blocks of 16 x 32 keys
    assert f[2] == 32 * proj + 4 * 32 * 2 * 16 * 32
    assert f[3] == 33 * proj + 4 * 32 * 3 * 16 * 32


def test_leading_terms_print_largest_first():
    b = dim_symbol("B")
    assert leading_terms(470000 * b * T ** 2 + 120000000 * b * T + 5, ["B", "T"]) == \
        "4.7e5·B·T² + 1.2e8·B·T + 5"
    assert leading_terms(sympy.Integer(52), ["T"]) == "52"
    assert leading_terms(2 * sympy.ceiling(T / 4) + 1, ["T"]).startswith("≈ 0.5·T")
