"""Symbolic dimensions (sympy) and exact, fast evaluation of dim expressions.

Dims are sympy expressions of positive integer symbols (`B`, `T`, `S`, ...).
Evaluation never goes through floats or `lambdify` (which execs generated
source): `compile_expr` turns an expression into a tree of closures over
Python integers and `Fraction`s, so `T = 10**9` is exact and fast.
"""
from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

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


def ceil_div(n, d: int):
    """ceil(n / d) for a concrete or symbolic n."""
    if isinstance(n, (int, sympy.Integer)):
        return sympy.Integer(-(-int(n) // d))
    return sympy.ceiling(n / d) if d != 1 else n


def floor_div(n, d: int):
    if isinstance(n, (int, sympy.Integer)):
        return sympy.Integer(int(n) // d)
    return sympy.floor(n / d) if d != 1 else n


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
def _exact(v):
    """Collapse an integral Fraction to int so results stay plain ints."""
    if type(v) is Fraction and v.denominator == 1:  # type(), not isinstance: Fraction's ABC check is slow
        return v.numerator
    return v


def _compile(e):
    if e.is_Integer:
        value = int(e)
        return lambda env: value
    if e.is_Rational:
        value = Fraction(int(e.p), int(e.q))
        return lambda env: value
    if e.is_Symbol:
        name = e.name
        return lambda env: env[name]
    if e.is_Add:
        parts = [_compile(a) for a in e.args]
        if len(parts) == 2:
            p, q = parts
            return lambda env: _exact(p(env) + q(env))

        def add(env):
            out = 0
            for p in parts:
                out = out + p(env)
            return _exact(out)
        return add
    if e.is_Mul:
        parts = [_compile(a) for a in e.args]
        if len(parts) == 2:
            p, q = parts
            return lambda env: _exact(p(env) * q(env))

        def mul(env):
            out = 1
            for p in parts:
                out = out * p(env)
            return _exact(out)
        return mul
    if e.is_Pow:
        base, exp = _compile(e.args[0]), e.args[1]
        if not exp.is_Integer:
            raise ValueError(f"cannot evaluate non-integer power in {e}")
        k = int(exp)
        if k >= 0:
            return lambda env: base(env) ** k
        return lambda env: _exact(Fraction(1) / Fraction(base(env)) ** (-k))
    if isinstance(e, sympy.ceiling):
        inner = _compile(e.args[0])
        return lambda env: math.ceil(inner(env))
    if isinstance(e, sympy.floor):
        inner = _compile(e.args[0])
        return lambda env: math.floor(inner(env))
    if isinstance(e, (sympy.Min, sympy.Max)):
        parts = [_compile(a) for a in e.args]
        pick = min if isinstance(e, sympy.Min) else max
        return lambda env: pick(p(env) for p in parts)
    if isinstance(e, sympy.Mod):
        a, b = _compile(e.args[0]), _compile(e.args[1])
        return lambda env: _exact(Fraction(a(env)) % Fraction(b(env)))
    if isinstance(e, sympy.Piecewise):
        branches = [(_compile(v), _compile_cond(c)) for v, c in e.args]

        def piecewise(env):
            for value, cond in branches:
                if cond(env):
                    return value(env)
            raise ValueError(f"no branch of {e} holds")
        return piecewise
    if isinstance(e, (sympy.core.relational.Relational, sympy.And, sympy.Or)):
        return _compile_cond(e)   # a condition shared by several Piecewise (sympy.cse)
    raise ValueError(f"cannot evaluate {type(e).__name__} in {e}")


def _compile_cond(c):
    if c is sympy.true or c == True:  # noqa: E712 - sympy's true
        return lambda env: True
    if c is sympy.false or c == False:  # noqa: E712 - sympy's false
        return lambda env: False
    if isinstance(c, sympy.Symbol):   # a condition evaluated earlier (sympy.cse)
        name = c.name
        return lambda env: env[name]
    if isinstance(c, (sympy.StrictLessThan, sympy.LessThan, sympy.StrictGreaterThan,
                      sympy.GreaterThan, sympy.Equality, sympy.Unequality)):
        a, b = _compile(c.lhs), _compile(c.rhs)
        import operator
        op = {sympy.StrictLessThan: operator.lt, sympy.LessThan: operator.le,
              sympy.StrictGreaterThan: operator.gt, sympy.GreaterThan: operator.ge,
              sympy.Equality: operator.eq, sympy.Unequality: operator.ne}[type(c)]
        return lambda env: op(a(env), b(env))
    if isinstance(c, sympy.And):
        parts = [_compile_cond(a) for a in c.args]
        return lambda env: all(p(env) for p in parts)
    if isinstance(c, sympy.Or):
        parts = [_compile_cond(a) for a in c.args]
        return lambda env: any(p(env) for p in parts)
    raise ValueError(f"cannot evaluate condition {c}")


def compile_expr(expr):
    """A function env -> exact value (int, or Fraction if not integral)."""
    if isinstance(expr, int):
        return lambda env: expr
    return _compile(sympy.sympify(expr))


def evaluate(expr, env: dict[str, int]):
    """Evaluate a dim expression at integer values of its symbols."""
    return _exact(compile_expr(expr)(env))
