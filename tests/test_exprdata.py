"""Closed forms as plain data (seqdsl/graph/exprdata.py) evaluate to exactly
what sympy's column evaluator gives, values and types, and a table of any
other shape is refused."""
from __future__ import annotations

import json
from fractions import Fraction

import pytest
import sympy

from seqdsl.graph.exprdata import Columns, Encoder, Unavailable, Unsupported, check_nodes
from seqdsl.graph.symbolic import compile_columns, dim_symbol

T, S, B = dim_symbol("T"), dim_symbol("S"), dim_symbol("B")
EXPRS = [
    3 * B * T ** 2 + 7 * T - 5,
    sympy.ceiling(T / 3) * sympy.floor((T + 1) / 2) + sympy.Rational(1, 3) * T,
    sympy.Min(T, 128) * S + sympy.Max(T - 64, 0),
    sympy.Piecewise((T ** 2, T < 100), (100 * T, sympy.And(T >= 100, T <= S)), (S * T, True)),
    sympy.Mod(T, 7) + T / S,
    (T + 1) ** -2 * T ** 3,
    sympy.ceiling(sympy.ceiling(T / 2) / 2) * B + sympy.ceiling(T / 2) * 3,
    sympy.Piecewise((T / 4, sympy.Eq(sympy.Mod(T, 4), 0)), (sympy.ceiling(T / 4), sympy.Ne(T, 3)), (1, True)),
    sympy.Integer(42),
]
POINTS = {"T": [1, 3, 4, 64, 99, 100, 1000, 10 ** 9], "S": [5, 5, 4, 64, 99, 2000, 1000, 7],
          "B": [1, 2, 3, 1, 8, 1, 16, 1]}


def _through_json(exprs):
    enc = Encoder()
    rows = [enc.add(e) for e in exprs]
    nodes = json.loads(json.dumps(enc.nodes))
    check_nodes(nodes)
    return nodes, rows


def test_values_and_types_equal_sympys_evaluator():
    nodes, rows = _through_json(EXPRS)
    at = Columns(nodes, {k: list(v) for k, v in POINTS.items()}, 8)
    for e, row in zip(EXPRS, rows):
        want = compile_columns(e)[0]({k: list(v) for k, v in POINTS.items()}, 8)
        want = [w.numerator if isinstance(w, Fraction) and w.denominator == 1 else w for w in want]
        got = at.values(row)
        assert got == want and [type(g) for g in got] == [type(w) for w in want], e


def test_shared_subexpressions_are_stored_once():
    nodes, _ = _through_json([sympy.ceiling(T / 2) * B, sympy.ceiling(T / 2) + 1])
    assert sum(1 for n in nodes if n[0] == "ceil") == 1


def test_a_value_that_cannot_be_computed_is_unavailable_only_where_used():
    nodes, (bad, fine) = _through_json([1 / (T - 4), sympy.Piecewise((1 / (T - 4), T > 4), (T, True))])
    at = Columns(nodes, {"T": [1, 4, 9]}, 3)
    with pytest.raises(Unavailable):
        at.values(bad)
    assert at.values(fine) == [1, 4, Fraction(1, 5)]         # the branch at T=4 is not taken
    with pytest.raises(Unavailable):
        Columns(nodes, {}, 1).values(fine)                    # no value for T


def test_expressions_outside_the_vocabulary_are_not_stored():
    for e in (sympy.Float(1.5) * T, sympy.sqrt(T), T ** T, sympy.log(T)):
        with pytest.raises(Unsupported):
            Encoder().add(e)


@pytest.mark.parametrize("nodes", [
    [["exec", "print(1)"]], [["int", True]], [["int", 1.0]], [["sym", "a b"]], [["add", [0]]],
    [["int", 1], ["add", [1]]], [["int", 1], ["add", []]], [["int", 1], ["pow", 0, 10 ** 6]],
    [["frac", 1, 1]], [["int", 1], ["pw", [[0]]]], {"nodes": []}, [["int", 2 ** 10000]], [[]], [["lt", 0, 0]],
])
def test_malformed_tables_are_refused(nodes):
    with pytest.raises(ValueError):
        check_nodes(nodes)
