"""Closed forms as plain data, and their exact evaluation without sympy.

The estimate cache (seqdsl/cli/cache.py) stores a model's derived closed
forms as JSON: one table of nodes, each a list whose first item names its
operation and whose operands are earlier rows (a DAG: a repeated layer's
expressions are stored once). The vocabulary is closed and small:

    ["int", v]              an integer            ["frac", p, q]   p/q, q > 1
    ["sym", name]           a dim (T, B, ...)     ["pow", i, k]    row i to the integer k
    ["add", [i, ...]]       a sum                 ["mul", [i, ...]] a product
    ["ceil", i] ["floor", i]                      ["mod", i, j]
    ["min", [i, ...]] ["max", [i, ...]]           ["pw", [[value, cond], ...]]  first branch that holds
    ["lt"|"le"|"gt"|"ge"|"eq"|"ne", i, j]         ["and", [...]] ["or", [...]] ["true"] ["false"]

`Encoder` writes sympy expressions into a table (read by their attributes,
so this module never imports sympy); `check_nodes` refuses a table that is
not exactly this shape; `Columns` evaluates rows at every point of a sweep
at once, over Python ints and Fractions, with the same exact values as
`seqdsl.graph.symbolic.compile_columns`. Nothing here is ever executed as code.
"""
from __future__ import annotations

import functools
import math
import operator
from fractions import Fraction

_COMPARE = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge,
            "eq": operator.eq, "ne": operator.ne}
_REL_OPS = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne"}
_LISTS = ("add", "mul", "min", "max", "and", "or")      # ["op", [i, ...]]
_ONE = ("ceil", "floor")                                # ["op", i]
_TWO = ("mod",) + tuple(_COMPARE)                       # ["op", i, j]
MAX_POW = 64                                            # largest |exponent| a row may hold
MAX_INT_BITS = 4096                                     # largest constant a row may hold


class Unsupported(ValueError):
    """An expression outside the vocabulary: the forms are then not cached."""


class Unavailable(Exception):
    """A value cannot be given here (a dim not bound, a division by zero, no
    Piecewise branch holding): the caller derives it the usual way instead."""


# ------------------------------------------------------------------ writing
class Encoder:
    """Appends sympy expressions (or ints) to one node table, each distinct
    subexpression once; `add` returns the row of an expression."""

    def __init__(self):
        self.nodes: list[list] = []
        self._rows: dict = {}

    def add(self, expr) -> int:
        stack = [(expr, False)]
        while stack:
            e, ready = stack.pop()
            key = _key(e)
            if key in self._rows:
                continue
            kids = _children(e)
            if ready or not kids:
                self._rows[key] = len(self.nodes)
                self.nodes.append(self._row(e))
            else:
                stack.append((e, True))
                stack.extend((k, False) for k in reversed(kids) if _key(k) not in self._rows)
        return self._rows[_key(expr)]

    def _row(self, e) -> list:
        at = lambda x: self._rows[_key(x)]  # noqa: E731
        if isinstance(e, bool):
            return ["true"] if e else ["false"]
        if isinstance(e, int):
            return ["int", e]
        name = type(e).__name__
        if name == "BooleanTrue":
            return ["true"]
        if name == "BooleanFalse":
            return ["false"]
        if getattr(e, "is_Integer", False):
            return ["int", int(e)]
        if getattr(e, "is_Rational", False):
            return ["frac", int(e.p), int(e.q)]
        if getattr(e, "is_Symbol", False):
            return ["sym", e.name]
        if getattr(e, "is_Add", False):
            return ["add", [at(a) for a in e.args]]
        if getattr(e, "is_Mul", False):
            return ["mul", [at(a) for a in e.args]]
        if getattr(e, "is_Pow", False):
            return ["pow", at(e.args[0]), int(e.args[1])]
        if name in ("ceiling", "floor"):
            return ["ceil" if name == "ceiling" else "floor", at(e.args[0])]
        if name in ("Min", "Max", "And", "Or"):
            return [name.lower(), [at(a) for a in e.args]]
        if name == "Mod":
            return ["mod", at(e.args[0]), at(e.args[1])]
        if name == "Piecewise":
            return ["pw", [[at(v), at(c)] for v, c in e.args]]
        rel = getattr(e, "rel_op", None)
        if rel in _REL_OPS:
            return [_REL_OPS[rel], at(e.lhs), at(e.rhs)]
        raise Unsupported(f"cannot store {name} in {e}")


def _key(e):
    # ints and sympy Integers of one value share a row; True and 1 must not
    return ("bool", e) if isinstance(e, bool) else e


def _children(e) -> list:
    if isinstance(e, int) or getattr(e, "is_Atom", True):
        return []
    name = type(e).__name__
    if getattr(e, "is_Pow", False):
        exp = e.args[1]
        if not getattr(exp, "is_Integer", False) or abs(int(exp)) > MAX_POW:
            raise Unsupported(f"cannot store the power {e}")
        return [e.args[0]]
    if name == "Piecewise":
        return [x for pair in e.args for x in pair.args]
    return list(e.args)


# ------------------------------------------------------------------ checking
def check_nodes(nodes) -> None:
    """Refuse (ValueError) a table that is not exactly the vocabulary above,
    or whose operands are not earlier rows (so it has no cycle)."""
    if not isinstance(nodes, list):
        raise ValueError("nodes: not a list")
    for at, row in enumerate(nodes):
        if not isinstance(row, list) or not row or not isinstance(row[0], str):
            raise ValueError(f"node {at}: not [op, ...]")
        op, args = row[0], row[1:]
        if op in ("true", "false"):
            ok = not args
        elif op == "int":
            ok = len(args) == 1 and _is_int(args[0])
        elif op == "frac":
            ok = len(args) == 2 and _is_int(args[0]) and _is_int(args[1]) and args[1] > 1
        elif op == "sym":
            ok = len(args) == 1 and isinstance(args[0], str) and args[0].isidentifier()
        elif op in _LISTS:
            ok = len(args) == 1 and isinstance(args[0], list) and bool(args[0]) and all(
                _is_row(i, at) for i in args[0])
        elif op in _ONE:
            ok = len(args) == 1 and _is_row(args[0], at)
        elif op in _TWO:
            ok = len(args) == 2 and _is_row(args[0], at) and _is_row(args[1], at)
        elif op == "pow":
            ok = len(args) == 2 and _is_row(args[0], at) and _is_int(args[1]) and abs(args[1]) <= MAX_POW
        elif op == "pw":
            ok = len(args) == 1 and isinstance(args[0], list) and bool(args[0]) and all(
                isinstance(b, list) and len(b) == 2 and _is_row(b[0], at) and _is_row(b[1], at) for b in args[0])
        else:
            ok = False
        if not ok:
            raise ValueError(f"node {at}: malformed {op!r}")


def _is_int(v) -> bool:
    return type(v) is int and v.bit_length() <= MAX_INT_BITS


def _is_row(i, below: int) -> bool:
    return type(i) is int and 0 <= i < below


def is_row(i, nodes: list) -> bool:
    """Whether `i` names a row of `nodes` (for the references around a table)."""
    return _is_row(i, len(nodes))


# ------------------------------------------------------------------ evaluating
class _Failed:
    """One point's value that could not be computed (a division by zero, no
    branch holding). It spreads to whatever uses it, and only a value asked
    for that depends on it fails, as a Piecewise branch not taken is never
    evaluated by sympy's evaluator."""

    __slots__ = ()
    __hash__ = None

    def __bool__(self):
        raise ValueError("no value")

    def __eq__(self, other):
        raise ValueError("no value")

    __ne__ = __eq__


FAILED = _Failed()
_ERRORS = (ArithmeticError, TypeError, ValueError)


def _exact(v):
    if v.__class__ is Fraction and v.denominator == 1:
        return v.numerator
    return v


def _map(fn, cols: list[list]) -> list:
    try:
        return [fn(*xs) for xs in zip(*cols)]
    except _ERRORS:
        out = []
        for xs in zip(*cols):
            try:
                out.append(fn(*xs))
            except _ERRORS:
                out.append(FAILED)
        return out


def _fold(op, cols: list[list]) -> list:
    """A sum or product of columns, exact: an integral Fraction becomes an int."""
    acc = cols[0]
    try:
        for col in cols[1:]:
            acc = [op(a, b) for a, b in zip(acc, col)]
    except _ERRORS:        # a FAILED value: point by point
        return _map(lambda *xs: _exact(functools.reduce(op, xs)), cols)
    if any(v.__class__ is Fraction for v in acc):
        acc = [_exact(v) for v in acc]
    return acc


def _piecewise(*xs):
    for i in range(0, len(xs), 2):
        if xs[i + 1]:
            return xs[i]
    raise ValueError("no branch holds")


class Columns:
    """The rows of a checked table evaluated at n points: `cols` maps each
    dim to its n values. Each row is evaluated once, when first needed."""

    def __init__(self, nodes: list, cols: dict[str, list], n: int):
        self.nodes, self.cols, self.n = nodes, cols, n
        self._done: dict[int, list] = {}

    def values(self, row: int) -> list:
        """The exact values (ints, or Fractions when not integral) of a row at
        every point; Unavailable if any of them cannot be computed."""
        if row not in self._done:
            self.evaluate([row])
        out = self._done[row]
        if any(v is FAILED for v in out):
            raise Unavailable(f"row {row} has no value at some point")
        return out

    def evaluate(self, rows) -> None:
        """Evaluate these rows and the rows they read, each once, in table
        order (operands come first): ask for every row needed at once."""
        nodes, done = self.nodes, self._done
        rows = [r for r in rows if r not in done]
        if not rows:
            return
        need = bytearray(max(rows) + 1)
        for r in rows:
            need[r] = 1
        for i in range(len(need) - 1, -1, -1):
            if need[i] and i not in done:
                for k in _operands(nodes[i]):
                    need[k] = 1
        for i, wanted in enumerate(need):
            if wanted and i not in done:
                done[i] = self._evaluate(nodes[i])

    def _evaluate(self, node: list) -> list:
        op, n, done = node[0], self.n, self._done
        if op == "int":
            return [node[1]] * n
        if op == "frac":
            return [Fraction(node[1], node[2])] * n
        if op in ("true", "false"):
            return [op == "true"] * n
        if op == "sym":
            if node[1] not in self.cols:
                raise Unavailable(f"no value for dim {node[1]}")
            return self.cols[node[1]]
        if op == "add" or op == "mul":
            return _fold(operator.add if op == "add" else operator.mul, [done[i] for i in node[1]])
        if op in _LISTS:
            fn = {"min": lambda *x: min(x), "max": lambda *x: max(x),
                  "and": lambda *x: all(x), "or": lambda *x: any(x)}[op]
            return _map(fn, [done[i] for i in node[1]])
        if op == "pow":
            k = node[2]
            if k >= 0:
                return _map(lambda b: b ** k, [done[node[1]]])
            return _map(lambda b: _exact(Fraction(1) / Fraction(b) ** (-k)), [done[node[1]]])
        if op in _ONE:
            return _map(math.ceil if op == "ceil" else math.floor, [done[node[1]]])
        if op == "mod":
            return _map(lambda x, y: _exact(Fraction(x) % Fraction(y)), [done[node[1]], done[node[2]]])
        if op in _COMPARE:
            return _map(_COMPARE[op], [done[node[1]], done[node[2]]])
        # "pw": the first branch whose condition holds
        return _map(_piecewise, [done[i] for pair in node[1] for i in pair])


def _operands(node: list) -> list[int]:
    op = node[0]
    if op in _LISTS:
        return node[1]
    if op in _ONE or op == "pow":
        return [node[1]]
    if op in _TWO:
        return [node[1], node[2]]
    if op == "pw":
        return [i for pair in node[1] for i in pair]
    return []
