"""Exact crossover lengths between two closed-form costs.

Given two cost expressions of one length symbol, find every integer n in
(lo, hi] at which the ranking of the two changes: sign(f(n) - g(n)) differs
from sign(f(n-1) - g(n-1)). The answer is exact — every reported n is checked
by direct integer evaluation at n - 1 and n — and complete where the smooth
trends cross. (Where ceil steps make the order flip periodically, e.g. a
blocked window cost against a linear one with nearly equal slopes, the
first flips of each run are reported, not every one.) How:

1. The smooth part of the difference (ceil/floor dropped) is a polynomial in
   n; its real roots are where crossings can be, so the integers around each
   root are scanned one by one (ceil/floor make the difference step, and it
   can flip more than once next to a root).
2. A geometric grid over [lo, hi] catches anything else (Min/Max kinks,
   non-polynomial pieces); each sign change between grid points is narrowed
   to the exact integer by bisection.
"""
from __future__ import annotations

import math

import sympy

from ..graph.symbolic import compile_expr

SCAN = 2048          # integers scanned on each side of a root of the smooth part
GRID = 4096          # geometric grid points over [lo, hi]


def _sign(v) -> int:
    return (v > 0) - (v < 0)


def _smooth(expr):
    """expr with ceiling/floor replaced by their argument (a polynomial in n, usually)."""
    return expr.replace(sympy.ceiling, lambda a: a).replace(sympy.floor, lambda a: a)


def _root_candidates(diff, symbol, lo: int, hi: int) -> list[int]:
    smooth = sympy.together(_smooth(diff))
    numer = sympy.fraction(smooth)[0]
    try:
        poly = sympy.Poly(sympy.expand(numer), symbol)
    except sympy.PolynomialError:
        return []
    if poly.degree() <= 0:
        return []
    out = []
    for root in poly.nroots(n=30, maxsteps=200):
        if abs(sympy.im(root)) > 1e-6 * max(1.0, abs(sympy.re(root))):
            continue
        r = float(sympy.re(root))
        if lo - SCAN <= r <= hi + SCAN:
            out.append(int(math.floor(r)))
    return out


def crossings(f, g, symbol: str, lo: int, hi: int, fixed: dict | None = None) -> list[int]:
    """Sorted integers n in (lo, hi] where the strict order of f and g flips
    (a tie keeps the order from below it).

    `f`, `g`: sympy expressions (or ints); `symbol`: the swept dim's name;
    `fixed`: values of the other symbols (batch, other lengths)."""
    fixed = dict(fixed or {})
    sym = sympy.Symbol(symbol, integer=True, positive=True)
    diff = sympy.sympify(f) - sympy.sympify(g)
    if fixed:
        diff = diff.subs({sympy.Symbol(k, integer=True, positive=True): v for k, v in fixed.items()})
    ev = compile_expr(diff)
    cache: dict[int, int] = {}

    def s(n: int) -> int:
        if n not in cache:
            cache[n] = _sign(ev({**fixed, symbol: n}))
        return cache[n]

    found: set[int] = set()
    # 1. exact scans around the smooth part's real roots
    for r in _root_candidates(diff, sym, lo, hi):
        a, b = max(lo, r - SCAN), min(hi, r + SCAN)
        for n in range(a + 1, b + 1):
            if s(n) != s(n - 1):
                found.add(n)
    # 2. a geometric grid, narrowed by bisection
    points = sorted({lo, hi} | {int(round(lo * (hi / lo) ** (i / GRID))) for i in range(GRID + 1)}
                    if lo > 0 else {lo, hi} | set(range(lo, hi + 1, max(1, (hi - lo) // GRID))))
    points = [p for p in points if lo <= p <= hi]
    for a, b in zip(points, points[1:]):
        if s(a) != s(b) and not any(a < n <= b for n in found):
            while b - a > 1:  # invariant: s(a) != s(b)
                mid = (a + b) // 2
                if s(mid) != s(a):
                    b = mid
                else:
                    a = mid
            found.add(b)
    # Ties keep the previous ranking: a crossover is where the strict order flips.
    out = []
    before = None  # strict sign in force below the current candidate
    for n in sorted(n for n in found if lo < n <= hi and s(n) != s(n - 1)):
        prev = s(n - 1) if s(n - 1) != 0 else before
        if s(n) != 0 and prev is not None and s(n) != prev:
            out.append(n)
        before = s(n) if s(n) != 0 else prev
    return out
