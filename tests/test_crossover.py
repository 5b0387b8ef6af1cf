"""The crossover solver is exact: checked against brute force and direct evaluation."""
from __future__ import annotations

import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from seqdsl.cost.crossover import crossings
from seqdsl.graph.symbolic import dim_symbol, evaluate

T = dim_symbol("T")


def brute(f, g, lo, hi):
    """Every n where the strict order flips (ties keep the order below them)."""
    out, order = [], None
    for n in range(lo, hi + 1):
        v = evaluate(f - g, {"T": n})
        sign = (v > 0) - (v < 0)
        if sign:
            if order is not None and sign != order and n > lo:
                out.append(n)
            order = sign
    return out


def test_quadratic_attention_against_linear_recurrence():
    # 4·d·T² (attention scores) against c·T (recurrence): one crossing at T = c / (4·d).
    d, c = 64, 4 * 64 * 1000 + 5
    f, g = 4 * d * T ** 2, c * T
    assert crossings(f, g, "T", 1, 10 ** 7) == [1001]
    assert evaluate(f - g, {"T": 1000}) < 0 < evaluate(f - g, {"T": 1001})


def test_huge_range_is_exact_and_integer():
    f, g = T ** 2 + 7, 123_456_789 * T
    (n,) = crossings(f, g, "T", 1, 10 ** 12)
    assert evaluate(f - g, {"T": n - 1}) < 0 <= evaluate(f - g, {"T": n})


def test_step_functions_from_ceil_are_scanned_exactly():
    # Blocked-window cost 2·W²·ceil(T/W) against a linear cost of another slope:
    # the padding of the last block makes the order flip several times near the
    # smooth crossing (T ≈ 1562), and every flip must be found.
    W = 64
    f = 2 * W * W * sympy.ceiling(T / W)
    g = 3 * W * T + 100_000
    assert crossings(f, g, "T", 1, 20_000) == brute(f, g, 1, 20_000)


def test_periodic_flips_report_true_changes_starting_with_the_first():
    W = 64  # equal slopes: the padding of the last block flips the order every block
    f = 2 * W * W * sympy.ceiling(T / W)
    g = 2 * W * T + 3000
    found, exact = crossings(f, g, "T", 1, 20_000), brute(f, g, 1, 20_000)
    assert found[0] == exact[0] and set(found) <= set(exact)


def test_other_symbols_are_fixed():
    B = dim_symbol("B")
    # Equal at T = 100; the order flips at 101, the first length where B·T² is larger.
    assert crossings(B * T ** 2, 100 * B * T, "T", 1, 1000, fixed={"B": 8}) == [101]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-50, 50), min_size=3, max_size=3),
       st.lists(st.integers(-5000, 5000), min_size=2, max_size=2),
       st.integers(1, 64))
def test_random_polynomials_match_brute_force(a, b, w):
    f = a[0] * T ** 2 + a[1] * T + a[2] + 7 * sympy.ceiling(T / w)
    g = b[0] * T + b[1]
    assert crossings(f, g, "T", 1, 3000) == brute(f, g, 1, 3000)
