"""The column evaluator (seqdsl.graph.symbolic.compile_columns) against sympy's own
exact evaluation, on every closed form of every bundled spec, at lengths that
straddle each Piecewise boundary and reach 10**9 in one sweep."""
from fractions import Fraction
from pathlib import Path

import pytest
import sympy

import seqdsl
from seqdsl.cost.model import model_cost
from seqdsl.graph.symbolic import compile_columns, compile_expr, dim_symbol

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.seq"))
LENGTHS = [1, 2, 7, 15, 16, 17, 64, 127, 128, 129, 255, 256, 257, 1000, 4097, 65_537, 10 ** 9]


def figures(cost):
    out = [cost.flops_forward, cost.flops_train, cost.activation_bytes, cost.sequential_depth,
           *cost.inference_peak]
    out += [f for f in (cost.flops_per_token, cost.state_bytes) if f is not None]
    return [sympy.sympify(f) for f in out]


def exact(v):
    return sympy.Rational(v.numerator, v.denominator) if isinstance(v, Fraction) else sympy.Integer(v)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_columns_equal_sympy_at_every_point(path):
    model = seqdsl.load(path).model()
    dims = list(model.seq_symbols)
    points = [{d: t for d in dims} for t in LENGTHS]
    batch = model.batch_symbol
    cols = {d: [p[d] for p in points] for d in dims}
    if batch is not None:
        cols[batch] = [3] * len(points)
    for expr in figures(model_cost(model, "float32")):
        fn, _ = compile_columns(expr)
        got = fn(dict(cols), len(points))
        for i, point in enumerate(points):
            env = dict(point, **({batch: 3} if batch is not None else {}))
            want = expr.subs({dim_symbol(k): v for k, v in env.items()})
            assert exact(got[i]) == want, (path.stem, expr, env)
            assert compile_expr(expr)(env) == got[i]


def test_piecewise_branches_are_evaluated_only_where_taken():
    """A branch that cannot be evaluated at some points (1/(T-4) at T = 4) is
    not evaluated there, exactly as one point at a time would not."""
    T = dim_symbol("T")
    expr = sympy.Piecewise((T, sympy.Eq(T, 4)), (1 / (T - 4), True))
    fn, frac = compile_columns(expr)
    assert fn({"T": [3, 4, 6]}, 3) == [-1, 4, Fraction(1, 2)]
    assert frac


def test_shared_fractional_values_collapse_to_ints():
    T = dim_symbol("T")
    half, _ = compile_columns(T / 2)
    values = half({"T": [4, 5]}, 2)
    assert values == [2, Fraction(5, 2)] and type(values[0]) is int
    total, _ = compile_columns(2 * sympy.Symbol("h") + 1, {"h"})
    assert total({"h": values}, 2) == [5, 6] and all(type(v) is int for v in total({"h": values}, 2))
