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
the generated text). Names are validated as they are given.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .lang import ast
from .errors import error, suggest
from .lang.printer import expr_text, is_identifier, to_seq
from .check.elaborate import parse
from .layers import LAYERS


def _name(name: str, what: str) -> str:
    if not isinstance(name, str) or not is_identifier(name):
        raise error(f"{what} name {name!r} is not a valid identifier",
                    help="use letters, digits and _, not starting with a digit, and no keyword")
    return name


# ------------------------------------------------------------------ expressions
class Expr:
    """An expression of lets / block parameters: supports + - * / // % **."""

    def __init__(self, node):
        self.node = node

    def _bin(self, op, other, swap=False):
        a, b = self.node, _expr(other)
        return Expr(ast.BinOp(op, b, a, None) if swap else ast.BinOp(op, a, b, None))

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
    def __neg__(self): return Expr(ast.Neg(self.node, None))

    def __repr__(self):
        return f"Expr({expr_text(self.node)})"


def ref(name: str) -> Expr:
    """A reference to a let, a block parameter or a bound value by name."""
    return Expr(ast.Name(_name(name, "reference"), None))


def func(name: str, *args) -> Expr:
    """min / max / ceil / floor of expressions."""
    if name not in ("min", "max", "ceil", "floor"):
        raise error(f"unknown function '{name}'", help=suggest(name, ("min", "max", "ceil", "floor")))
    return Expr(ast.FuncCall(name, tuple(_expr(a) for a in args), None))


@dataclass(frozen=True)
class Value:
    """A bound tensor value of a model (an input or a binding)."""

    name: str


def _expr(value):
    """Python value -> AST expression. Identifier strings are enum words."""
    if isinstance(value, Expr):
        return value.node
    if isinstance(value, Value):
        return ast.Name(value.name, None)
    if value is None:
        return ast.Name("none", None)
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return ast.Literal(value, None)
    if isinstance(value, str):
        return ast.Name(value, None) if is_identifier(value) else ast.Literal(value, None)
    if isinstance(value, (list, tuple)):
        return ast.ListExpr(tuple(_expr(v) for v in value), None)
    raise error(f"cannot use {type(value).__name__} {value!r} in a spec",
                help="use numbers, booleans, words (str), lists, lets or values")


def _args(args, kwargs):
    out = [ast.Arg(None, _expr(a), None) for a in args]
    out += [ast.Arg(_name(k, "argument"), _expr(v), None) for k, v in kwargs.items()]
    return tuple(out)


# ------------------------------------------------------------------ stages
def _alias(stage, name):
    return replace(stage, alias=_name(name, "layer") if name else None)


def layer(kind: str, *args, as_: str | None = None, **kwargs) -> ast.Call:
    """A layer call: `layer("attention", 8, causal=True)`."""
    if kind not in LAYERS:
        raise error(f"unknown layer '{kind}'", help=suggest(kind, LAYERS))
    return _alias(ast.Call(kind, _args(args, kwargs), None, None), as_)


def call(block: str, *args, as_: str | None = None, **kwargs) -> ast.Call:
    """A block call: `call("frame_stem", 384)`."""
    return _alias(ast.Call(_name(block, "block"), _args(args, kwargs), None, None), as_)


def repeat(count, *body, as_: str | None = None) -> ast.Repeat:
    return _alias(ast.Repeat(_args((count,), {}), _stages(body), None), as_)


def residual(*body, as_: str | None = None) -> ast.Residual:
    return _alias(ast.Residual(_stages(body), None), as_)


def segments(length, memory, *body, as_: str | None = None) -> ast.Segments:
    return _alias(ast.Segments(_args((), {"length": length, "memory": memory}), _stages(body), None), as_)


def _stages(stages) -> tuple:
    out = []
    for s in stages:
        if isinstance(s, (list, tuple)):
            out.extend(_stages(s))
        elif isinstance(s, (ast.Call, ast.Repeat, ast.Residual, ast.Segments)):
            out.append(s)
        else:
            raise error(f"{s!r} is not a stage", help="use sb.layer(...), sb.call(...), sb.repeat(...), ...")
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
    name: str
    statements: list = field(default_factory=list)
    _bound: set = field(default_factory=set)

    def let(self, name: str, value) -> Expr:
        self.statements.append(ast.Let(_name(name, "let"), _expr(value), None))
        return ref(name)

    def input(self, name: str, dtype: str, dims) -> Value:
        dims = tuple(ast.Name(d, None) if isinstance(d, str) else _expr(d) for d in dims)
        self.statements.append(ast.Input(_name(name, "input"), dtype, None, dims, None))
        return Value(name)

    def bind(self, name: str, source: Value | str, *stages) -> Value:
        src = source.name if isinstance(source, Value) else source
        self.statements.append(ast.Bind(_name(name, "value"), ast.Name(_name(src, "value"), None),
                                        _stages(stages), None))
        return Value(name)

    def output(self, *values) -> None:
        names = tuple(ast.Name(v.name if isinstance(v, Value) else _name(v, "output"), None) for v in values)
        self.statements.append(ast.Output(names, None))

    def to_ast(self) -> ast.ModelDef:
        return ast.ModelDef(_name(self.name, "model"), tuple(self.statements), None, None)

    def to_seq(self) -> str:
        return Program([self]).to_seq()

    def check(self, base_dir=None):
        """Check it as the text form would be; returns the ModelGraph."""
        return Program([self]).check(base_dir).model(self.name)


@dataclass
class BlockBuilder:
    name: str
    params: tuple
    body: tuple

    def to_ast(self) -> ast.BlockDef:
        params = []
        for p in self.params:
            name, default = (p, None) if isinstance(p, str) else p
            params.append(ast.Param(_name(name, "parameter"),
                                    None if default is None else _expr(default), None))
        return ast.BlockDef(_name(self.name, "block"), tuple(params), self.body, None, None)


def model(name: str) -> ModelBuilder:
    return ModelBuilder(_name(name, "model"))


def block(name: str, params, *body) -> BlockBuilder:
    """`block("ffn", ["d", ("mult", 4)], sb.layernorm(), sb.mlp(ref("mult") * ref("d")))`."""
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
        blocks = tuple(i.to_ast() for i in self.items if isinstance(i, BlockBuilder))
        models = tuple(i.to_ast() for i in self.items if isinstance(i, ModelBuilder))
        imports = tuple(ast.Import(p, None) for p in self.imports)
        return ast.Module(imports, blocks, models, None)

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
