"""Build .seq programs from Python — for pipelines that make families of models.

    import seqdsl.builder as sb

    m = sb.model("asr")
    d = m.let("d", 256)
    feats = m.input("feats", "float", ["B", "T", 80])
    enc = m.bind("enc", feats,
                 sb.conv1d(d, kernel=3, stride=2, padding="causal"), sb.gelu(),
                 sb.repeat(4, sb.residual(sb.layernorm(), sb.attention(4, causal=True)),
                              sb.residual(sb.layernorm(), sb.mlp(4 * d))))
    m.output(enc)
    text = m.to_seq()          # canonical .seq text
    program = m.check()        # the same checks and diagnostics as the text form

Every layer of the library is a function here (`sb.attention(...)`,
`sb.lstm(...)`); `sb.call("block_name", ...)` calls a block. Builders make
`seqdsl.ast` nodes; `check()` prints them and parses the text, so a mistake
gets exactly the diagnostic the same spec would get as a file (pointing into
the generated text). Names are validated as they are given, and the whole
tree once more before it is printed (`to_ast`), so no name, dim, dtype or
string can carry text that the printer would turn into other syntax (a dim
`"T]\n}\nmodel evil {..."`): a bad argument is a `BuilderError` (a SpecError
and a ValueError) or a `BuilderTypeError` (a SpecError and a TypeError) that
names the argument.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, replace

from .errors import Diagnostic, SpecError, suggest
from .lang import ast
from .check.elaborate import parse
from .lang.printer import expr_text, is_identifier, to_seq
from .layers import LAYERS
from .layers.loss import LOSSES
from .limits import MAX_EXPR_DEPTH, MAX_NESTING


class BuilderError(SpecError, ValueError):
    """A builder argument the language cannot hold."""

    def __init__(self, message: str, help: str | None = None):
        super().__init__(Diagnostic(message, None, help))


class BuilderTypeError(SpecError, TypeError):
    """A builder argument of the wrong Python type."""

    def __init__(self, message: str, help: str | None = None):
        super().__init__(Diagnostic(message, None, help))


_IDENT_HELP = "use letters, digits and _ (ASCII), not starting with a digit, and no keyword"
DTYPES = ("float", "int")
FUNCS = ("min", "max", "ceil", "floor")


def _name(name: str, what: str) -> str:
    if not isinstance(name, str):
        raise BuilderTypeError(f"{what} name must be a str, not {type(name).__name__} {name!r}")
    if not is_identifier(name):
        raise BuilderError(f"{what} name {name!r} is not a valid identifier", help=_IDENT_HELP)
    return name


def _string(text: str, what: str) -> str:
    """A string literal: one line of printable text (the grammar's STRING)."""
    if any(c in text for c in "\n\r") or not text.isprintable():
        raise BuilderError(f"{what} {text!r} has a line break or control character; "
                           "a .seq string is one line of printable text")
    return text


def check_tree(node, what: str = "spec") -> None:
    """Every name, alias, key, dtype, function, string and number in an AST
    (ast.Module or any node) checked, iteratively: one the printer could not
    print as itself raises BuilderError; a tree deeper than the language's
    limits (MAX_EXPR_DEPTH chained operators, MAX_NESTING bodies) too, before
    the printer's recursion could overflow."""
    stack = [(node, 0, 0)]
    while stack:
        n, nest, depth = stack.pop()
        if isinstance(n, (list, tuple)):
            stack.extend((x, nest, depth) for x in n)
            continue
        if not dataclasses.is_dataclass(n) or isinstance(n, type):
            continue
        if isinstance(n, (ast.BinOp, ast.Neg, ast.FuncCall, ast.ListExpr)):
            depth += 1
            if depth > MAX_EXPR_DEPTH:
                raise BuilderError(f"{what}: an expression nests deeper than {MAX_EXPR_DEPTH} operators "
                                   "(limits.MAX_EXPR_DEPTH)", help="use a let for a part of it")
        if isinstance(n, (ast.Repeat, ast.Residual, ast.Segments, ast.ModelDef, ast.BlockDef)):
            nest += 1
            if nest > MAX_NESTING:
                raise BuilderError(f"{what}: bodies nest deeper than {MAX_NESTING} (limits.MAX_NESTING)")
        if isinstance(n, ast.Literal):
            _literal(n.value, "literal")
        elif isinstance(n, ast.FuncCall) and n.func not in FUNCS:
            raise BuilderError(f"unknown function {n.func!r}", help=f"use one of {', '.join(FUNCS)}")
        elif isinstance(n, ast.Input) and n.dtype not in DTYPES:
            raise BuilderError(f"input {n.name!r}: dtype {n.dtype!r} is not float or int")
        elif isinstance(n, ast.Import):
            if not isinstance(n.path, str):
                raise BuilderTypeError(f"import path must be a str, not {type(n.path).__name__}")
            _string(n.path, "import path")
        for f in ("name", "alias", "key"):
            v = getattr(n, f, None)
            if v is not None and not isinstance(n, ast.Import):
                _name(v, f"{type(n).__name__.lower()} {f}" if f != "name" else type(n).__name__.lower())
        for f in dataclasses.fields(n):
            v = getattr(n, f.name)
            if isinstance(v, (list, tuple)) or (dataclasses.is_dataclass(v) and not isinstance(v, type)):
                stack.append((v, nest, depth))


def _literal(value, what: str):
    if isinstance(value, bool) or isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BuilderError(f"{what} {value!r} is not a finite number")
        return value
    if isinstance(value, str):
        return _string(value, what)
    raise BuilderTypeError(f"{what} must be a number, a bool or a str, not {type(value).__name__}")


# ------------------------------------------------------------------ expressions
class Expr:
    """An expression of lets / block parameters: supports + - * / // % **."""

    def __init__(self, node, depth: int = 0):
        self.node = node
        self.depth = depth        # operators nested in it, bounded by MAX_EXPR_DEPTH

    def _bin(self, op, other, swap=False):
        a, b = self.node, _expr(other)
        depth = 1 + max(self.depth, other.depth if isinstance(other, Expr) else 0)
        if depth > MAX_EXPR_DEPTH:
            raise BuilderError(f"expression {op!r}: more than {MAX_EXPR_DEPTH} operators nested "
                               "(limits.MAX_EXPR_DEPTH)", help="use a let for a part of it")
        return Expr(ast.BinOp(op, b, a, None) if swap else ast.BinOp(op, a, b, None), depth)

    def __add__(self, o): return self._bin("+", o)
    def __radd__(self, o): return self._bin("+", o, True)
    def __sub__(self, o): return self._bin("-", o)
    def __rsub__(self, o): return self._bin("-", o, True)
    def __mul__(self, o): return self._bin("*", o)
    def __rmul__(self, o): return self._bin("*", o, True)
    def __truediv__(self, o): return self._bin("/", o)
    def __rtruediv__(self, o): return self._bin("/", o, True)
    def __floordiv__(self, o): return self._bin("//", o)
    def __rfloordiv__(self, o): return self._bin("//", o, True)
    def __mod__(self, o): return self._bin("%", o)
    def __rmod__(self, o): return self._bin("%", o, True)
    def __pow__(self, o): return self._bin("**", o)
    def __rpow__(self, o): return self._bin("**", o, True)
    def __neg__(self): return Expr(ast.Neg(self.node, None), self.depth)._bump()

    def _bump(self):
        if self.depth + 1 > MAX_EXPR_DEPTH:
            raise BuilderError(f"expression: more than {MAX_EXPR_DEPTH} operators nested (limits.MAX_EXPR_DEPTH)")
        self.depth += 1
        return self

    def __repr__(self):
        return f"Expr({expr_text(self.node)})"


def ref(name: str) -> Expr:
    """A reference to a let, a block parameter or a bound value by name."""
    return Expr(ast.Name(_name(name, "reference"), None))


def func(name: str, *args) -> Expr:
    """min / max / ceil / floor of expressions."""
    if name not in FUNCS:
        raise BuilderError(f"unknown function '{name}'", help=suggest(str(name), FUNCS))
    depth = max((a.depth for a in args if isinstance(a, Expr)), default=0)
    return Expr(ast.FuncCall(name, tuple(_expr(a) for a in args), None), depth)._bump()


@dataclass(frozen=True)
class Value:
    """A bound tensor value of a model (an input or a binding)."""

    name: str


def _expr(value):
    """Python value -> AST expression. Identifier strings are enum words."""
    if isinstance(value, Expr):
        return value.node
    if isinstance(value, Value):
        return ast.Name(_name(value.name, "value"), None)
    if value is None:
        return ast.Name("none", None)
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return ast.Literal(_literal(value, "number"), None)
    if isinstance(value, str):
        return ast.Name(value, None) if is_identifier(value) else ast.Literal(_string(value, "string"), None)
    if isinstance(value, (list, tuple)):
        return ast.ListExpr(tuple(_expr(v) for v in value), None)
    raise BuilderTypeError(f"cannot use {type(value).__name__} {value!r} in a spec",
                           help="use numbers, booleans, words (str), lists, lets or values")


def _args(args, kwargs):
    out = [ast.Arg(None, _expr(a), None) for a in args]
    out += [ast.Arg(_name(k, "argument"), _expr(v), None) for k, v in kwargs.items()]
    return tuple(out)


def _dim(d, input_name: str):
    """A dim of `input`: a symbolic name (`"T"`), a positive int, or an Expr."""
    if isinstance(d, str):
        return ast.Name(_name(d, f"input {input_name!r} dim"), None)
    if isinstance(d, bool) or not isinstance(d, (int, Expr)):
        raise BuilderTypeError(f"input {input_name!r}: dim {d!r} is not a name, a positive int or an expression")
    if isinstance(d, int) and d <= 0:
        raise BuilderError(f"input {input_name!r}: dim {d} is not positive")
    return _expr(d)


# ------------------------------------------------------------------ stages
def _alias(stage, name):
    return replace(stage, alias=_name(name, "layer") if name else None)


def layer(kind: str, *args, as_: str | None = None, **kwargs) -> ast.Call:
    """A layer call: `layer("attention", 8, causal=True)`."""
    if _name(kind, "layer kind") not in LAYERS:
        raise BuilderError(f"unknown layer '{kind}'", help=suggest(kind, LAYERS))
    return _alias(ast.Call(kind, _args(args, kwargs), None, None), as_)


def add(other: Value | str) -> ast.Call:
    """`add(b)`: the input plus the bound value `other`, of the same shape
    (not a layer kind: the graph's own add node, docs/language.md)."""
    if not isinstance(other, (Value, str)):
        raise BuilderTypeError(f"add takes a Value or a value's name, not {type(other).__name__}")
    name = other.name if isinstance(other, Value) else other
    return ast.Call("add", (ast.Arg(None, ast.Name(_name(name, "value"), None), None),), None, None)


def call(block: str, *args, as_: str | None = None, **kwargs) -> ast.Call:
    """A block call: `call("frame_stem", 384)`."""
    return _alias(ast.Call(_name(block, "block"), _args(args, kwargs), None, None), as_)


def repeat(count, *body, as_: str | None = None) -> ast.Repeat:
    return _alias(ast.Repeat(_args((count,), {}), _stages(body), None), as_)


def residual(*body, scale=None, as_: str | None = None) -> ast.Residual:
    """`residual { body }`, or with `scale=`: x + scale · body(x)."""
    args = _args((), {"scale": scale}) if scale is not None else ()
    return _alias(ast.Residual(_stages(body), None, args=args), as_)


def segments(length, memory, *body, as_: str | None = None) -> ast.Segments:
    return _alias(ast.Segments(_args((), {"length": length, "memory": memory}), _stages(body), None), as_)


def bind(names: str | tuple | list, *stages, source: Value | str | None = None) -> ast.Line:
    """A body line that binds names (docs/language.md, "Names in bodies"):
    `sb.bind("g", sb.linear(d), sb.sigmoid())` is `g = linear(d) -> sigmoid`,
    read from the body's current value, which it leaves as it was;
    `sb.bind(("x", "z"), sb.linear(2 * d), sb.split(2))` binds a split's parts;
    with `source=`, the stages start from that name bound earlier in the body
    (`sb.bind("g", sb.silu(), source="z")` is `g = z -> silu`). Use the names
    in later stages of the body: `sb.mul("g")`, `sb.line("x", ...)`."""
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, (list, tuple)) or not names:
        raise BuilderTypeError(f"bind: names must be a name or a list of names, not {names!r}")
    src = _source(source, "bind")
    if src is None and not stages:
        raise BuilderError(f"bind {names[0]!r}: give the stages that make the value, or source=")
    return ast.Line(tuple(ast.Name(_name(n, "value"), None) for n in names), src,
                    _stages(stages, body=False), None)


def line(source: Value | str, *stages) -> ast.Line:
    """A body line that starts from a name bound earlier in the body and makes
    its result the body's current value: `sb.line("x", sb.conv1d(64, 4), sb.mul("g"))`
    is `x -> conv1d(64, 4) -> mul(g)`."""
    return ast.Line((), _source(source, "line"), _stages(stages, body=False), None)


def _source(source, what: str) -> ast.Name | None:
    if source is None:
        if what == "line":
            raise BuilderTypeError("line: source must be a Value or a name bound in the body")
        return None
    if not isinstance(source, (Value, str)):
        raise BuilderTypeError(f"{what}: source must be a Value or a name, not {type(source).__name__}")
    return ast.Name(_name(source.name if isinstance(source, Value) else source, "value"), None)


def _stages(stages, body: bool = True) -> tuple:
    """Stages (of a pipeline), or a body's items (stages and sb.bind/sb.line lines) when `body`."""
    out = []
    for s in stages:
        if isinstance(s, (list, tuple)):
            out.extend(_stages(s, body))
        elif isinstance(s, (ast.Call, ast.Repeat, ast.Residual, ast.Segments)):
            out.append(s)
        elif isinstance(s, ast.Line) and body:
            out.append(s)
        elif isinstance(s, ast.Line):
            raise BuilderTypeError("sb.bind(...) and sb.line(...) are lines of a body, not stages of a pipeline",
                                   help="put them in sb.repeat(...), sb.residual(...), sb.segments(...) or "
                                        "sb.block(...); a model's own binds are m.bind(...)")
        else:
            raise BuilderTypeError(f"{s!r} is not a stage", help="use sb.layer(...), sb.call(...), sb.repeat(...), ...")
    return tuple(out)


def __getattr__(kind: str):
    """`sb.attention(8, causal=True)` == `sb.layer("attention", 8, causal=True)`."""
    if kind in LAYERS:
        return lambda *args, as_=None, **kwargs: layer(kind, *args, as_=as_, **kwargs)
    raise AttributeError(f"seqdsl.builder has no layer '{kind}'"
                         + (f"; {suggest(kind, LAYERS)}" if suggest(kind, LAYERS) else ""))


# ------------------------------------------------------------------ models
@dataclass
class ModelBuilder:
    """A model written from Python (seqdsl.builder)."""

    name: str
    statements: list = field(default_factory=list)
    _bound: set = field(default_factory=set)

    def let(self, name: str, value) -> Expr:
        self.statements.append(ast.Let(_name(name, "let"), _expr(value), None))
        return ref(name)

    def input(self, name: str, dtype: str, dims, lengths: bool = False) -> Value:
        """`input NAME: DTYPE[DIMS]`; lengths=True adds the `lengths` marker
        (each sequence of the batch has its own length along axis 1)."""
        _name(name, "input")
        if not isinstance(lengths, bool):
            raise BuilderTypeError(f"input {name!r}: lengths must be True or False, not {lengths!r}")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise BuilderError(f"input {name!r}: dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        if isinstance(dims, (str, bytes)) or not isinstance(dims, (list, tuple)) or not dims:
            raise BuilderTypeError(f"input {name!r}: dims must be a non-empty list of dims, not {dims!r}")
        self.statements.append(ast.Input(name, dtype, None, tuple(_dim(d, name) for d in dims), None, lengths))
        return Value(name)

    def bind(self, name: str | tuple | list, source: Value | str, *stages):
        """`name = source -> stages`; with several names, `a, b = source ->
        ... -> split(2)`, which returns one Value per name."""
        names = [name] if isinstance(name, str) else name
        if not isinstance(names, (list, tuple)) or not names:
            raise BuilderTypeError(f"bind: name must be a name or a list of names, not {name!r}")
        if not isinstance(source, (Value, str)):
            raise BuilderTypeError(f"value {name!r}: source must be a Value or a name, not {type(source).__name__}")
        src = source.name if isinstance(source, Value) else source
        self.statements.append(ast.Bind(_name(names[0], "value"), ast.Name(_name(src, "value"), None),
                                        _stages(stages, body=False), None,
                                        tuple(ast.Name(_name(n, "value"), None) for n in names[1:])))
        return Value(name) if isinstance(name, str) else tuple(Value(n) for n in names)

    def output(self, *values) -> None:
        names = tuple(ast.Name(_name(v.name if isinstance(v, Value) else v, "output"), None) for v in values)
        self.statements.append(ast.Output(names, None))

    def loss(self, kind: str, of: Value | str | None = None, **options) -> None:
        """`loss KIND(OF, option=N)`: how the model is trained (`m.loss("cross_entropy",
        logits)`, `m.loss("ctc", logits, target_len=200)`); `of` may be left out
        when the model has one output (seqdsl.layers.loss)."""
        if _name(kind, "loss kind") not in LOSSES:
            raise BuilderError(f"unknown loss '{kind}'", help=suggest(kind, LOSSES) or "losses: " + ", ".join(LOSSES))
        args = () if of is None else (ast.Name(_name(of.name if isinstance(of, Value) else of, "output"), None),)
        call = ast.Call(kind, tuple(ast.Arg(None, a, None) for a in args) + _args((), options), None, None)
        self.statements.append(ast.Loss(call, None))

    def to_ast(self) -> ast.ModelDef:
        model = ast.ModelDef(_name(self.name, "model"), tuple(self.statements), None, None)
        check_tree(model, f"model {self.name}")
        return model

    def to_seq(self) -> str:
        return Program([self]).to_seq()

    def check(self, base_dir=None):
        """Check it as the text form would be; returns the ModelGraph."""
        return Program([self]).check(base_dir).model(self.name)


@dataclass
class BlockBuilder:
    """A block written from Python (seqdsl.builder)."""

    name: str
    params: tuple
    body: tuple

    def to_ast(self) -> ast.BlockDef:
        params = []
        for p in self.params:
            if not isinstance(p, str) and not (isinstance(p, tuple) and len(p) == 2):
                raise BuilderTypeError(f"block {self.name!r}: a parameter is a name or a (name, default) "
                                       f"pair, not {p!r}")
            name, default = (p, None) if isinstance(p, str) else p
            params.append(ast.Param(_name(name, "parameter"),
                                    None if default is None else _expr(default), None))
        return ast.BlockDef(_name(self.name, "block"), tuple(params), self.body, None, None)


def model(name: str) -> ModelBuilder:
    return ModelBuilder(_name(name, "model"))


def block(name: str, params, *body) -> BlockBuilder:
    """`block("ffn", ["d", ("mult", 4)], sb.layernorm(), sb.mlp(ref("mult") * ref("d")))`."""
    if isinstance(params, str) or not isinstance(params, (list, tuple)):
        raise BuilderTypeError(f"block {name!r}: params must be a list of names or (name, default) pairs, "
                               f"not {params!r}")
    return BlockBuilder(_name(name, "block"), tuple(params), _stages(body))


@dataclass
class Program:
    """Several blocks and models (and imports) printed as one .seq file."""

    items: list = field(default_factory=list)
    imports: list = field(default_factory=list)

    def add(self, item):
        self.items.append(item)
        return item

    def to_ast(self) -> ast.Module:
        bad = [i for i in self.items if not isinstance(i, (BlockBuilder, ModelBuilder))]
        if bad:
            raise BuilderTypeError(f"a Program holds blocks and models, not {type(bad[0]).__name__}")
        blocks = tuple(i.to_ast() for i in self.items if isinstance(i, BlockBuilder))
        models = tuple(i.to_ast() for i in self.items if isinstance(i, ModelBuilder))
        imports = tuple(ast.Import(p, None) for p in self.imports)
        module = ast.Module(imports, blocks, models, None)
        check_tree(module)
        return module

    def to_seq(self) -> str:
        return to_seq(self.to_ast())

    def check(self, base_dir=None, path: str = "<builder>"):
        return parse(self.to_seq(), path=path, base_dir=base_dir)


# ------------------------------------------------------------------ from text
def from_ast(module: ast.Module) -> Program:
    """The builder equivalent of a parsed module (for round trips and edits)."""
    prog = Program(imports=[i.path for i in module.imports])
    for b in module.blocks:
        prog.add(BlockBuilder(b.name, tuple(p.name if p.default is None else (p.name, Expr(p.default))
                                            for p in b.params), b.body))
    for m in module.models:
        prog.add(ModelBuilder(m.name, list(m.statements)))
    return prog
