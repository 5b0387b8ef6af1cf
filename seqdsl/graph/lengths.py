"""Per-sequence lengths through a value's shape: its axis-1 size (a sympy dim
of the input's length symbol, `floor((T - 3)/2) + 1`) at each sequence's own
length, in exact integer arithmetic (floor division, never floats).

`length_tree` reduces the dim to a small tree of integer operations once;
`length_fn` evaluates that tree over a tensor of lengths (seqdsl.build) and
`length_code` prints it as Python source (`seqdsl compile -o`), so the two
lowerings compute the same thing (docs/language.md, "Variable lengths").
Neither execs anything.
"""
from __future__ import annotations

import sympy

# A tree node: ("int", k) | ("len",) | ("floor" | "ceil", node, divisor) |
# ("add" | "mul", (node, ...)) | ("max" | "min", node, node)


def length_tree(expr, symbol: str) -> tuple:
    """The tree of `expr`, a dim of the one symbol `symbol`; ValueError for a
    form it cannot write in integer arithmetic (the elaborator then refuses)."""
    if not isinstance(expr, sympy.Basic):
        return ("int", int(expr))
    if expr.is_Integer:
        return ("int", int(expr))
    if expr.is_Symbol:
        if str(expr) != symbol:
            raise ValueError(f"the length involves {expr} besides {symbol}")
        return ("len",)
    if isinstance(expr, (sympy.floor, sympy.ceiling)):
        num, den = sympy.fraction(sympy.together(expr.args[0]))
        if not den.is_Integer or int(den) < 1:
            raise ValueError(f"cannot write {expr} in integer arithmetic")
        inner = length_tree(sympy.expand(num), symbol)
        return inner if int(den) == 1 else ("floor" if isinstance(expr, sympy.floor) else "ceil", inner, int(den))
    if isinstance(expr, (sympy.Add, sympy.Mul)):
        return ("add" if isinstance(expr, sympy.Add) else "mul", tuple(length_tree(a, symbol) for a in expr.args))
    if isinstance(expr, (sympy.Max, sympy.Min)) and len(expr.args) == 2:
        a, b = (length_tree(x, symbol) for x in expr.args)
        if a[0] == "int":                  # the integer bound second (clamp's)
            a, b = b, a
        return ("max" if isinstance(expr, sympy.Max) else "min", a, b)
    raise ValueError(f"cannot write {expr} in integer arithmetic")


def length_fn(tree):
    """The tree as a function of a lengths tensor (int64: `//` floors)."""
    kind = tree[0]
    if kind == "int":
        k = tree[1]
        return lambda n: k
    if kind == "len":
        return lambda n: n
    if kind in ("floor", "ceil"):
        f, d = length_fn(tree[1]), tree[2]
        return (lambda n: f(n) // d) if kind == "floor" else (lambda n: -(-f(n) // d))
    if kind in ("add", "mul"):
        fs = [length_fn(t) for t in tree[1]]
        if kind == "add":
            return lambda n: _fold(fs, n, lambda a, b: a + b)
        return lambda n: _fold(fs, n, lambda a, b: a * b)
    f, bound = length_fn(tree[1]), tree[2]
    if bound[0] == "int":
        k = bound[1]
        return (lambda n: f(n).clamp(min=k)) if kind == "max" else (lambda n: f(n).clamp(max=k))
    g = length_fn(bound)
    return (lambda n: f(n).maximum(g(n))) if kind == "max" else (lambda n: f(n).minimum(g(n)))


def _fold(fs, n, op):
    out = fs[0](n)
    for f in fs[1:]:
        out = op(out, f(n))
    return out


def length_code(tree, var: str) -> str:
    """The tree as a Python expression over the lengths tensor named `var`."""
    kind = tree[0]
    if kind == "int":
        return str(tree[1])
    if kind == "len":
        return var
    if kind == "floor":
        return f"({length_code(tree[1], var)}) // {tree[2]}"
    if kind == "ceil":
        return f"-(-({length_code(tree[1], var)}) // {tree[2]})"
    if kind in ("add", "mul"):
        return "(" + (" + " if kind == "add" else " * ").join(length_code(t, var) for t in tree[1]) + ")"
    a, bound = length_code(tree[1], var), tree[2]
    if bound[0] == "int":
        return f"({a}).clamp({'min' if kind == 'max' else 'max'}={bound[1]})"
    return f"({a}).{'maximum' if kind == 'max' else 'minimum'}({length_code(bound, var)})"
