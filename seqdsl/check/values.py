"""The values a spec computes with: `let` numbers and expressions, bare
words, and the arithmetic on them, each refused at its span when it goes
past the limits or is not a number."""
from __future__ import annotations

import math

from ..errors import error
from ..graph.ir import Ref
from ..limits import MAX_VALUE

COMBINATORS = ("repeat", "residual", "segments")
#: Stages that are graph nodes, not layer kinds: `add(b)` (docs/language.md, "Combining values").
VALUE_STAGES = ("add",)
FUNCTIONS = ("min", "max", "ceil", "floor")


class Word(str):
    """A bare identifier used as a value that is not a bound name (`act=gelu`)."""


def _check_magnitude(value, span):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise error("value is not finite", span)
        if abs(value) > MAX_VALUE:
            raise error(f"value {value:.3g} is past the limit of {MAX_VALUE:.0e}", span)
    return value


def _number(value, span, what="operand"):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{what} must be a number, got {_describe(value)}", span)
    return value


def _describe(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Word):
        return f"the word '{value}'"
    if isinstance(value, Ref):
        return f"the value '{value.name}'"
    if isinstance(value, str):
        return f'string "{value}"'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, float):
        return f"float {value:g}"
    return f"int {value}"


def _binop(op, a, b, span):
    a, b = _number(a, span), _number(b, span)
    if op == "+":
        r = a + b
    elif op == "-":
        r = a - b
    elif op == "*":
        r = a * b
    elif op in ("/", "//", "%"):
        if b == 0:
            raise error("division by zero", span)
        if op == "/":
            r = a // b if isinstance(a, int) and isinstance(b, int) and a % b == 0 else a / b
        elif op == "//":
            r = a // b
        else:
            r = a % b
    elif op == "**":
        if isinstance(b, int) and b < 0 or abs(b) > 256:
            raise error(f"exponent {b} is out of range (0..256)", span)
        if abs(a) > 1 and b * math.log2(abs(a)) > 110:
            raise error(f"{a} ** {b} is past the limit of {MAX_VALUE:.0e}", span)
        r = a ** b
    else:  # pragma: no cover - the grammar has no other operators
        raise error(f"unknown operator {op}", span)
    return _check_magnitude(r, span)



