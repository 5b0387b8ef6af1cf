"""Symbolic dimensions (sympy) and exact, fast evaluation of dim expressions.

Dims are sympy expressions of positive integer symbols (`B`, `T`, `S`, ...).
Evaluation never goes through floats or `lambdify` (which execs generated
source): `compile_columns` turns an expression into a tree of closures that
evaluate it at every point of a sweep at once, over Python integers and
`Fraction`s, so `T = 10**9` is exact and a 1,000-point sweep is a few list
comprehensions per node; `compile_expr` is the same at one point.
"""
from __future__ import annotations

import math
import operator
from fractions import Fraction
from functools import lru_cache
from typing import Callable, NamedTuple

import sympy
from sympy.printing.str import StrPrinter

Expr = sympy.Expr


@lru_cache(maxsize=None)
def dim_symbol(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, integer=True, positive=True)


def as_int(expr) -> int | None:
    """The expression's value if it is a concrete integer, else None."""
    if isinstance(expr, int):
        return expr
    if isinstance(expr, sympy.Integer):
        return int(expr)
    return None


def ceil_div(n, d):
    """ceil(n / d) for a concrete or symbolic n and a positive integer d (or a
    positive integer symbol: seqdsl.layers.costs.cost_symbol)."""
    if isinstance(d, sympy.Basic) and not d.is_Integer:
        return sympy.ceiling(n / d)
    d = int(d)
    if isinstance(n, (int, sympy.Integer)):
        return sympy.Integer(-(-int(n) // d))
    if d != 1 and n.is_Symbol:
        # ceiling(T/d) of a bare dim symbol is already in canonical form;
        # evaluating it asks the assumptions system afresh for each distinct d
        # (milliseconds each: 2,000 layers with distinct windows took seconds)
        return sympy.ceiling(n / d, evaluate=False)
    return sympy.ceiling(n / d) if d != 1 else n


def min_dim(t, k: int):
    """Min(t, k) for a dim t and a positive integer k; unevaluated (the same
    expression, without the assumption queries) when t is a bare dim symbol."""
    if t.is_Symbol if isinstance(t, sympy.Basic) else False:
        return sympy.Min(t, k, evaluate=False)
    return sympy.Min(t, k)


def smin(*args):
    """min of dims and cost expressions: a plain int when every argument is
    concrete, else an unevaluated sympy Min. Evaluating one asks sympy's
    assumptions to compare every pair of arguments (milliseconds each, on
    every segments or windowed layer of a spec); its value at a length is the
    same either way."""
    return _extreme(sympy.Min, min, args)


def smax(*args):
    """max, as smin."""
    return _extreme(sympy.Max, max, args)


def _extreme(cls, pick, args):
    ints = [as_int(a) for a in args]
    if None not in ints:
        return sympy.Integer(pick(ints))
    return cls(*args, evaluate=False)


def floor_div(n, d: int):
    if isinstance(n, (int, sympy.Integer)):
        return sympy.Integer(int(n) // d)
    return sympy.floor(n / d) if d != 1 else n


def rounding_depth(expr) -> int:
    """How many floor/ceil a symbolic dim nests (`ceil(ceil(T/2)/2)`: 2).

    Each strided or valid convolution over a symbolic length wraps it in one
    more; sympy's work on such a dim grows faster than its depth, and its
    recursion ends in RecursionError, so the elaborator bounds it. Iterative,
    each distinct subexpression once."""
    if not isinstance(expr, sympy.Basic) or not expr.args:
        return 0
    depth: dict = {}
    pending = [expr]
    while pending:
        e = pending[-1]
        if e in depth:
            pending.pop()
            continue
        todo = [a for a in e.args if a.args and a not in depth]
        if todo:
            pending.extend(todo)
            continue
        pending.pop()
        inner = max((depth.get(a, 0) for a in e.args), default=0)
        depth[e] = inner + (1 if isinstance(e, (sympy.floor, sympy.ceiling)) else 0)
    return depth[expr]


def dims_equal(a, b) -> bool:
    if a == b:
        return True
    try:
        return sympy.simplify(a - b) == 0
    except Exception:  # noqa: BLE001 - sympy may refuse odd expressions; treat as unequal
        return False


class _DimPrinter(StrPrinter):
    """sympy's str, with ceiling(..) written ceil(..) as the language writes it
    (printer-level, so a dim *named* `ceiling` is left alone)."""

    def _print_ceiling(self, e):
        return f"ceil({self._print(e.args[0])})"


_DIM_PRINTER = _DimPrinter()


def fmt_dim(expr) -> str:
    return _DIM_PRINTER.doprint(expr)


# ------------------------------------------------------------------ evaluation
# A closed form is evaluated at every point of a sweep at once: each node
# becomes a function (cols, n) -> list of its n values, where cols maps each
# symbol to its n values, so the per-point work is list comprehensions rather
# than one Python call per node and point. Constants stay scalars, folded into
# the node that uses them. Arithmetic is on Python ints and Fractions, so it
# is exact at any size (T = 10**9); a Fraction that comes out integral is
# collapsed to an int where one can arise, to keep the rest of the work on ints.

class _Node(NamedTuple):
    fn: Callable | None   # (cols, n) -> list of n values; None for a constant
    const: object         # the value of a constant node
    frac: bool            # whether a value may be a Fraction


def _exact(v):
    """Collapse an integral Fraction to int so results stay plain ints."""
    if type(v) is Fraction and v.denominator == 1:  # type(), not isinstance: Fraction's ABC check is slow
        return v.numerator
    return v


def _exact_all(values: list) -> list:
    return [v.numerator if v.__class__ is Fraction and v.denominator == 1 else v for v in values]


def _column(node: _Node, cols: dict, n: int) -> list:
    return node.fn(cols, n) if node.fn is not None else [node.const] * n


def _compile(e, fractional: frozenset, shared: dict) -> _Node:
    """`e` as a column node; `fractional` names the symbols whose values may
    be Fractions (shared subexpressions such as T/2)."""
    if shared and e in shared:       # evaluated once into its own column (compile_shared)
        name = shared[e]
        return _Node(lambda cols, n: cols[name], None, name in fractional)
    if e.is_Integer:
        return _Node(None, int(e), False)
    if e.is_Rational:
        return _Node(None, Fraction(int(e.p), int(e.q)), True)
    if e.is_Symbol:
        name = e.name
        return _Node(lambda cols, n: cols[name], None, name in fractional)
    if e.is_Add or e.is_Mul:
        return _sum_or_product(e, fractional, shared)
    if e.is_Pow:
        base, exp = _compile(e.args[0], fractional, shared), e.args[1]
        if not exp.is_Integer:
            raise ValueError(f"cannot evaluate non-integer power in {e}")
        k = int(exp)
        if k >= 0:
            if base.fn is None:
                return _Node(None, base.const ** k, base.frac)
            f = base.fn
            return _Node(lambda cols, n: [b ** k for b in f(cols, n)], None, base.frac)
        return _Node(lambda cols, n: _exact_all([Fraction(1) / Fraction(b) ** (-k)
                                                 for b in _column(base, cols, n)]), None, True)
    if isinstance(e, (sympy.ceiling, sympy.floor)):
        inner = _compile(e.args[0], fractional, shared)
        rnd = math.ceil if isinstance(e, sympy.ceiling) else math.floor
        if inner.fn is None:
            return _Node(None, rnd(inner.const), False)
        f = inner.fn
        return _Node(lambda cols, n: [rnd(x) for x in f(cols, n)], None, False)
    if isinstance(e, (sympy.Min, sympy.Max)):
        parts = [_compile(a, fractional, shared) for a in e.args]
        pick = min if isinstance(e, sympy.Min) else max
        return _Node(lambda cols, n: [pick(t) for t in zip(*(_column(p, cols, n) for p in parts))],
                     None, any(p.frac for p in parts))
    if isinstance(e, sympy.Mod):
        a, b = _compile(e.args[0], fractional, shared), _compile(e.args[1], fractional, shared)
        return _Node(lambda cols, n: _exact_all([Fraction(x) % Fraction(y) for x, y in
                                                 zip(_column(a, cols, n), _column(b, cols, n))]), None, True)
    if isinstance(e, sympy.Piecewise):
        return _piecewise(e, fractional, shared)
    if isinstance(e, (sympy.core.relational.Relational, sympy.And, sympy.Or)):
        return _compile_cond(e, fractional, shared)   # a condition shared by several Piecewise (sympy.cse)
    raise ValueError(f"cannot evaluate {type(e).__name__} in {e}")


def _sum_or_product(e, fractional: frozenset, shared: dict) -> _Node:
    add = e.is_Add
    parts = [_compile(a, fractional, shared) for a in e.args]
    const = 0 if add else 1
    for p in parts:
        if p.fn is None:
            const = const + p.const if add else const * p.const
    const = _exact(const)
    fns = [p.fn for p in parts if p.fn is not None]
    frac = any(p.frac for p in parts)
    if not fns:
        return _Node(None, const, frac)
    first, rest = fns[0], fns[1:]
    scale = const != (0 if add else 1)

    def run(cols, n):
        acc = first(cols, n)
        for f in rest:
            acc = ([a + b for a, b in zip(acc, f(cols, n))] if add
                   else [a * b for a, b in zip(acc, f(cols, n))])
        if scale:
            acc = [const + a for a in acc] if add else [const * a for a in acc]
        return _exact_all(acc) if frac else acc
    return _Node(run, None, frac)


def _piecewise(e, fractional: frozenset, shared: dict) -> _Node:
    """Each point takes the first branch whose condition holds; a branch's
    value is evaluated only at the points that take it (as a scalar
    evaluation would), on just the symbols it reads."""
    branches = [(_compile(v, fractional, shared), _compile_cond(c, fractional, shared),
                 sorted(_reads(v, shared))) for v, c in e.args]

    def run(cols, n):
        out = [None] * n
        remaining = range(n)
        for value, cond, names in branches:
            holds = _column(cond, cols, n)
            taken = [i for i in remaining if holds[i]]
            remaining = [i for i in remaining if not holds[i]]
            if taken:
                if value.fn is None:
                    for i in taken:
                        out[i] = value.const
                else:
                    sub = {name: [cols[name][i] for i in taken] for name in names}
                    for i, v in zip(taken, value.fn(sub, len(taken))):
                        out[i] = v
            if not remaining:
                return out
        raise ValueError(f"no branch of {e} holds")
    return _Node(run, None, any(v.frac for v, _, _ in branches))


def _compile_cond(c, fractional: frozenset, shared: dict) -> _Node:
    """A condition as a node of booleans."""
    if shared and c in shared:
        name = shared[c]
        return _Node(lambda cols, n: cols[name], None, False)
    if c is sympy.true or c == True:  # noqa: E712 - sympy's true
        return _Node(None, True, False)
    if c is sympy.false or c == False:  # noqa: E712 - sympy's false
        return _Node(None, False, False)
    if isinstance(c, sympy.Symbol):   # a condition evaluated earlier (sympy.cse)
        name = c.name
        return _Node(lambda cols, n: cols[name], None, False)
    if isinstance(c, (sympy.StrictLessThan, sympy.LessThan, sympy.StrictGreaterThan,
                      sympy.GreaterThan, sympy.Equality, sympy.Unequality)):
        a, b = _compile(c.lhs, fractional, shared), _compile(c.rhs, fractional, shared)
        op = {sympy.StrictLessThan: operator.lt, sympy.LessThan: operator.le,
              sympy.StrictGreaterThan: operator.gt, sympy.GreaterThan: operator.ge,
              sympy.Equality: operator.eq, sympy.Unequality: operator.ne}[type(c)]
        return _Node(lambda cols, n: [op(x, y) for x, y in zip(_column(a, cols, n), _column(b, cols, n))],
                     None, False)
    if isinstance(c, (sympy.And, sympy.Or)):
        parts = [_compile_cond(a, fractional, shared) for a in c.args]
        pick = all if isinstance(c, sympy.And) else any
        return _Node(lambda cols, n: [pick(t) for t in zip(*(_column(p, cols, n) for p in parts))], None, False)
    raise ValueError(f"cannot evaluate condition {c}")


def _reads(e, shared: dict) -> set[str]:
    """The columns evaluating `e` reads: its symbols, and the shared
    subexpressions (compile_shared) it contains, by name."""
    out, stack = set(), [e]
    while stack:
        x = stack.pop()
        if shared and x in shared:
            out.add(shared[x])
        elif x.is_Symbol:
            out.add(x.name)
        elif not x.is_Atom:
            stack.extend(x.args)
    return out


def compile_columns(expr, fractional=frozenset(), shared=None) -> tuple[Callable[[dict, int], list], bool]:
    """(fn, frac): fn(cols, n) evaluates `expr` at n points at once, cols
    mapping each of its symbols to a list of n values; frac says whether a
    value may come out a (non-integral) Fraction. `fractional` names the
    symbols whose own values may be Fractions; `shared` maps subexpressions
    already evaluated into columns to those columns' names."""
    node = _compile(sympy.sympify(expr), fractional if isinstance(fractional, (set, frozenset)) else frozenset(fractional),
                    shared or {})
    if node.fn is None:
        value = node.const
        return (lambda cols, n: [value] * n), node.frac
    return node.fn, node.frac


def point_columns(points: list[dict], fixed: dict | None = None) -> tuple[dict[str, list], int]:
    """(cols, n): the points of a sweep ({dim: value} each, all with the same
    dims) as one list per dim, plus `fixed` values (the batch) at every point."""
    n = len(points)
    cols = {d: [p[d] for p in points] for d in (points[0] if points else {})}
    for name, value in (fixed or {}).items():
        cols[name] = [value] * n
    return cols, n


_PAIR = sympy.functions.elementary.piecewise.ExprCondPair


def compile_shared(exprs, prefix: str) -> tuple[list[tuple[str, Callable]], list[Callable]]:
    """Column evaluators for several closed forms at once, with what they
    share (ceil(T/2), segment counts, ...) evaluated once. Returns (shared,
    fns): evaluate each shared (name, fn) in order into cols, then the fns,
    one per expression, read them. A shared value that may be a Fraction is
    known as such to the nodes that read it.

    The sharing is found by hash-consing, not sympy.cse: one walk counts each
    distinct subexpression, and every compound one met twice or more is
    evaluated once into its own column. This is linear in the size of the
    expressions; sympy.cse's argument matching and rebuild (which re-evaluates
    every Min, Piecewise and relation) grew superlinearly and took minutes
    on 2,000 attention layers with distinct windows."""
    roots = [sympy.sympify(e) for e in exprs]
    counts: dict = {}
    order: list = []           # compound subexpressions, children before parents

    def visit(e):
        stack = [(e, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if node.is_Atom or isinstance(node, _PAIR):   # a Piecewise branch is compiled with its Piecewise
                if not node.is_Atom:
                    stack.extend((a, False) for a in reversed(node.args))
                continue
            c = counts.get(node)
            counts[node] = 1 if c is None else c + 1
            if c is None:
                stack.append((node, True))
                stack.extend((a, False) for a in reversed(node.args))
    for r in roots:
        visit(r)
    names: dict = {}
    fractional: set[str] = set()
    compiled = []
    for i, e in enumerate(x for x in order if counts[x] > 1):
        name = f"{prefix}{i}"
        fn, frac = compile_columns(e, fractional, names)
        names[e] = name
        if frac:
            fractional.add(name)
        compiled.append((name, fn))
    return compiled, [compile_columns(e, fractional, names)[0] for e in roots]


def compile_expr(expr):
    """A function env -> exact value (int, or Fraction if not integral), for
    evaluating at one point; sweeps use `compile_columns`."""
    if isinstance(expr, int):
        return lambda env: expr
    fn, _ = compile_columns(expr)
    return lambda env: _exact(fn({k: [v] for k, v in env.items()}, 1)[0])


def evaluate(expr, env: dict[str, int]):
    """Evaluate a dim expression at integer values of its symbols."""
    return compile_expr(expr)(env)
