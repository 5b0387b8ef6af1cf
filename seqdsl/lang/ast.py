"""The syntax tree of a .seq file: frozen, plain data, every node with its span.

Produced by `seqdsl.lang.syntax`, read by `seqdsl.check.elaborate`; never mutated.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ..errors import Span


# ---------------------------------------------------------------- expressions
@dataclass(frozen=True)
class Literal:
    """A number, `true`/`false` or a quoted string."""

    value: object  # int | float | bool | str
    span: Span


@dataclass(frozen=True)
class Name:
    """A word: a `let`, a parameter, a dim or a bound value."""

    name: str
    span: Span


@dataclass(frozen=True)
class BinOp:
    """`left op right` in a size expression."""

    op: str  # + - * / // % **
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True)
class Neg:
    """`-operand`."""

    operand: "Expr"
    span: Span


@dataclass(frozen=True)
class FuncCall:
    """`min(...)`, `max(...)`, `ceil(...)` or `floor(...)` in a size expression."""

    func: str  # min max ceil floor
    args: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True)
class ListExpr:
    """`[a, b, ...]`: a list-valued argument."""

    items: tuple["Expr", ...]
    span: Span


Expr = Union[Literal, Name, BinOp, Neg, FuncCall, ListExpr]


# ---------------------------------------------------------------- stages
@dataclass(frozen=True)
class Arg:
    """One argument of a call: `value` or `key=value`."""

    key: str | None  # None for a positional argument
    value: Expr
    span: Span


@dataclass(frozen=True)
class Call:
    """`name(args)`: a layer or a block call."""

    name: str
    args: tuple[Arg, ...]
    span: Span
    name_span: Span
    alias: str | None = None


@dataclass(frozen=True)
class Repeat:
    """`repeat(n) { body }`: the body n times over."""

    args: tuple[Arg, ...]
    body: tuple["Stage", ...]
    span: Span
    alias: str | None = None


@dataclass(frozen=True)
class Residual:
    """`residual { body }`: x + body(x)."""

    body: tuple["Stage", ...]
    span: Span
    alias: str | None = None
    args: tuple[Arg, ...] = ()       # `residual(scale=0.5)`: x + 0.5 · body(x)


@dataclass(frozen=True)
class Segments:
    """`segments(length=L, memory=M) { body }`: the body over pieces of L steps."""

    args: tuple[Arg, ...]
    body: tuple["Stage", ...]
    span: Span
    alias: str | None = None


Stage = Union[Call, Repeat, Residual, Segments]


@dataclass(frozen=True)
class Line:
    """A line of a body that binds names or starts from one (docs/language.md,
    "Names in bodies"); a body's other lines are its stages, flattened.

    `g = linear(d) -> sigmoid` (source None): the stages read the body's
    current value and their result is bound to `g`, the current value left as
    it was. `y = x -> silu` / `x -> silu` (source `x`, a name bound earlier in
    this body or an enclosing one): the stages start from that value. Without
    names the line's result becomes the current value."""

    names: tuple[Name, ...]          # () for a line that binds nothing
    source: Name | None              # None: the body's current value
    stages: tuple[Stage, ...]
    span: Span

    @property
    def bound(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.names)


#: an item of a body: a stage, or a line that binds or starts from a name
BodyItem = Union[Call, Repeat, Residual, Segments, Line]


# ---------------------------------------------------------------- statements
@dataclass(frozen=True)
class Let:
    """`let name = value`."""

    name: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class Input:
    """`input name: dtype[dims]`."""

    name: str
    dtype: str
    dtype_span: Span
    dims: tuple[Expr, ...]
    span: Span
    #: `input x: float[B, T, 80] lengths`: each sequence of the batch has its
    #: own length along axis 1 (the module takes `lengths=`)
    lengths: bool = False


@dataclass(frozen=True)
class Bind:
    """`name = source -> stages` (or `a, b = ...`)."""

    name: str
    source: Name
    stages: tuple[Stage, ...]
    span: Span
    more: tuple[Name, ...] = ()      # `x, z = h -> split(2)`: the names after the first

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the statement binds, in order."""
        return (self.name,) + tuple(n.name for n in self.more)


@dataclass(frozen=True)
class Output:
    """`output a, b`."""

    names: tuple[Name, ...]
    span: Span


@dataclass(frozen=True)
class Loss:
    """`loss KIND(ARGS)`: the objective the model is trained with."""

    call: Call
    span: Span


Statement = Union[Let, Input, Bind, Output, Loss]


# ---------------------------------------------------------------- top level
@dataclass(frozen=True)
class Param:
    """A block parameter, with its default."""

    name: str
    default: Expr | None
    span: Span


@dataclass(frozen=True)
class BlockDef:
    """`block name(params) { body }`."""

    name: str
    params: tuple[Param, ...]
    body: tuple[Stage, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class ModelDef:
    """`model name { statements }`."""

    name: str
    statements: tuple[Statement, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Import:
    """`import "path.seq"`."""

    path: str
    span: Span


@dataclass(frozen=True)
class Module:
    """One parsed .seq file."""

    imports: tuple[Import, ...]
    blocks: tuple[BlockDef, ...]
    models: tuple[ModelDef, ...]
    source: object  # SourceFile
