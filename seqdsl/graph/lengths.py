"""Per-sequence lengths as code: a value's axis-1 size (a sympy dim of the
input's length symbol, `floor((T - 3)/2) + 1`) written as a Python
expression over an int64 tensor of lengths, in exact integer arithmetic
(`torch.div(..., rounding_mode="floor")`, never through floats).

One writer for both lowerings: seqdsl.build evaluates the text, `seqdsl
compile -o` prints it, so the two cannot disagree (docs/language.md,
"Variable lengths").
"""
from __future__ import annotations

import sympy


def length_code(expr, symbol: str, var: str) -> str:
    """The source of `expr` with the symbol `symbol` read from the tensor
    `var`; ValueError for a form it does not write (then the elaborator
    refuses the layer)."""
    if expr.free_symbols - {sympy.Symbol(symbol, integer=True, positive=True)}:
        names = ", ".join(sorted(str(s) for s in expr.free_symbols if str(s) != symbol))
        raise ValueError(f"the length involves {names} besides {symbol}")
    return _code(expr, symbol, var)


def _code(e, symbol: str, var: str) -> str:
    if e.is_Integer:
        return str(int(e))
    if e.is_Symbol:
        if str(e) != symbol:
            raise ValueError(f"the length involves {e} besides {symbol}")
        return var
    if isinstance(e, (sympy.floor, sympy.ceiling)):
        num, den = sympy.fraction(sympy.together(e.args[0]))
        if not den.is_Integer or int(den) < 1:
            raise ValueError(f"cannot write {e} in integer arithmetic")
        n = _code(sympy.expand(num), symbol, var)
        if int(den) == 1:
            return n
        if isinstance(e, sympy.floor):
            return f"torch.div({n}, {int(den)}, rounding_mode='floor')"
        return f"(-torch.div(-({n}), {int(den)}, rounding_mode='floor'))"
    if isinstance(e, sympy.Add):
        return "(" + " + ".join(_code(a, symbol, var) for a in e.args) + ")"
    if isinstance(e, sympy.Mul):
        factors = [_code(a, symbol, var) for a in e.args]
        return "(" + " * ".join(factors) + ")"
    if isinstance(e, (sympy.Max, sympy.Min)) and len(e.args) == 2:
        ints = [a for a in e.args if a.is_Integer]
        rest = [_code(a, symbol, var) for a in e.args if not a.is_Integer]
        bound = "min" if isinstance(e, sympy.Max) else "max"
        if len(ints) == 1:
            return f"({rest[0]}).clamp({bound}={int(ints[0])})"
        return f"torch.{'maximum' if isinstance(e, sympy.Max) else 'minimum'}({rest[0]}, {rest[1]})"
    raise ValueError(f"cannot write {e} in integer arithmetic")
