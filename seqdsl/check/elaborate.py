"""AST -> checked graph (`seqdsl.graph.ir`).

Loads a spec and its imports, checks blocks for recursion, then elaborates
each model: evaluates `let`s, declares inputs with symbolic dims, expands
blocks and repeats, validates every layer's arguments against its pydantic
schema, infers every tensor type, and builds the graph (nodes and edges;
`ModelGraph.graph` gives the networkx view). Every
refusal is a `SpecError` at the exact span.
"""
from __future__ import annotations

import gc
import math
import os
import stat
import typing
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pydantic
import sympy

from ..errors import SourceFile, Span, SpecError, error, suggest
from ..graph.ir import ModelGraph, Node, Program, Ref, Scope, TensorType
from ..graph.symbolic import dim_symbol, dims_equal, fmt_dim, rounding_depth
from ..lang import ast
from ..lang.syntax import parse_module
from ..layers import LAYERS, LayerError
from ..limits import (MAX_DIM, MAX_DIM_DEPTH, MAX_FILE_BYTES, MAX_IMPORTS, MAX_LIST, MAX_NESTING, MAX_NODES,
                      MAX_REPEAT, MAX_VALUE)

COMBINATORS = ("repeat", "residual", "segments")
FUNCTIONS = ("min", "max", "ceil", "floor")


class Word(str):
    """A bare identifier used as a value that is not a bound name (`act=gelu`)."""


# ====================================================================== loading
def read_source(path: str | Path, display: str | None = None, span: Span | None = None) -> SourceFile:
    p = Path(path)
    try:
        # One open, then fstat on it: a FIFO or device (even one swapped in
        # after a check by name) is refused instead of blocking the read, and
        # a file growing meanwhile is read no further than the limit.
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise error(f"'{path}' is not a file", span)
            if info.st_size > MAX_FILE_BYTES:
                raise error(f"'{path}' is {info.st_size} bytes, past the limit of {MAX_FILE_BYTES}", span,
                            help="split the spec into files joined with import")
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) > MAX_FILE_BYTES:
            raise error(f"'{path}' is past the limit of {MAX_FILE_BYTES} bytes", span,
                        help="split the spec into files joined with import")
        text = _without_bom(data.decode("utf-8"))
    except FileNotFoundError:
        raise error(f"cannot find '{path}'", span) from None
    except UnicodeDecodeError as exc:
        # Point at the offending byte: line and column (in characters) of the decoded prefix.
        line = data.count(b"\n", 0, exc.start) + 1
        start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[start:exc.start].decode("utf-8", "replace")) + 1
        shown = SourceFile(display or str(path), data.decode("utf-8", "replace"))
        raise error(f"'{path}' is not UTF-8 text ({exc.reason} at byte {exc.start})",
                    Span(shown, line, column, line, column + 1),
                    help="save the spec as UTF-8") from None
    except OSError as exc:
        raise error(f"cannot read '{path}': {exc.strerror}", span) from None
    return SourceFile(display or str(path), text)


def spec_files(spec) -> list[str]:
    """The files a spec reads: itself and every file its imports reach (as
    the elaborator resolves them). Unreadable ones are skipped: loading the
    spec reports them."""
    first = Path(spec)
    out, seen = [str(first)], set()
    pending = [(first, first.resolve().parent)]
    while pending and len(seen) < 1000:
        path, here = pending.pop()
        try:
            module = parse_module(read_source(path))
        except Exception:  # noqa: BLE001 - a bad file is reported when the spec is loaded
            continue
        for imp in module.imports:
            target = (here / imp.path).resolve()
            if target not in seen:
                seen.add(target)
                out.append(str(target))
                pending.append((target, target.parent))
    return out


def _without_bom(text: str) -> str:
    """Drop a leading byte order mark (editors on Windows write one); kept,
    it would be an unexpected character at 1:1."""
    return text[1:] if text.startswith("\ufeff") else text


def load(path: str | Path) -> Program:
    """Read, parse and check a .seq file and the files it imports."""
    if not isinstance(path, (str, Path)):
        raise TypeError(f"load() takes a path (str or Path), not {type(path).__name__}"
                        + ("; seqdsl.parse(text) reads spec text" if path is None else ""))
    source = read_source(path)
    file = Path(path).resolve()
    return check_source(source, file.parent, file)


def parse(text: str, path: str = "<string>", base_dir: str | Path | None = None) -> Program:
    """Parse and check spec text; imports resolve against base_dir (default: cwd)."""
    if not isinstance(text, str):
        raise TypeError(f"parse() takes the spec's text (a str), not {type(text).__name__}"
                        + ("; seqdsl.load(path) reads a file" if isinstance(text, (Path, bytes)) else ""))
    if not isinstance(path, str):
        raise TypeError(f"parse(path=...) is the name the spec is reported under (a str), not {type(path).__name__}")
    if len(text.encode("utf-8")) > MAX_FILE_BYTES:
        raise error(f"spec text is past the limit of {MAX_FILE_BYTES} bytes")
    root = Path(base_dir).resolve() if base_dir else Path.cwd().resolve()
    return check_source(SourceFile(path, _without_bom(text)), root)


@contextmanager
def _fewer_gc_passes():
    """Parsing and elaboration allocate many small, acyclic objects; the
    default gen-0 threshold (700) makes the cyclic GC rescan them hundreds of
    times (a third of the time on a 10,000-line spec). Raise it meanwhile."""
    old = gc.get_threshold()
    gc.set_threshold(max(old[0], 100_000), old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def check_source(source: SourceFile, root_dir: Path, root_file: Path | None = None) -> Program:
    """Check a spec's text; `root_file` is its file, if it has one (for import cycles)."""
    with _fewer_gc_passes():
        return _check_source(source, root_dir, root_file)


def _check_source(source: SourceFile, root_dir: Path, root_file: Path | None = None) -> Program:
    module = parse_module(source)
    blocks = _collect_blocks(module, root_dir, root_file)
    _check_block_recursion(blocks)
    _check_program_size(module.models, blocks)
    models: dict[str, ModelGraph] = {}
    built = 0  # layers of the models built so far: MAX_NODES bounds the whole file
    for model in module.models:
        if model.name in models:
            raise error(f"model '{model.name}' is defined twice", model.name_span,
                        help=f"first defined at line {models[model.name].span.line}")
        models[model.name] = graph = _ModelBuilder(model, blocks, built).build()
        built += len(graph.nodes)
    if not models:
        raise error(f"{source.path} defines no model", Span(source, 1, 1, 1, 2),
                    help="add `model NAME { input ... output ... }`")
    return Program(source.path, models)


def _collect_blocks(root: ast.Module, root_dir: Path, root_file: Path | None = None) -> dict[str, ast.BlockDef]:
    blocks: dict[str, ast.BlockDef] = {}
    seen: set[Path] = set()
    imports: dict[Path | None, list[tuple[Path, ast.Import]]] = {}  # file -> the files it imports
    pending = [(root, root_dir, root_file)]
    while pending:
        module, here, file = pending.pop(0)
        for block in module.blocks:
            if block.name in LAYERS or block.name in COMBINATORS:
                raise error(f"block '{block.name}' has the name of a built-in layer", block.name_span,
                            help="rename the block")
            if block.name in blocks:
                first = blocks[block.name].span
                raise error(f"block '{block.name}' is defined twice", block.name_span,
                            help=f"first defined at {first.path}:{first.line}")
            blocks[block.name] = block
        for imp in module.imports:
            target = (here / imp.path).resolve()
            if not target.is_relative_to(root_dir):
                raise error(f"import of '{imp.path}' leaves the spec's folder {root_dir}", imp.span,
                            help="imports must name files inside the importing spec's folder")
            imports.setdefault(file, []).append((target, imp))
            if target in seen or target == root_file:
                continue
            seen.add(target)
            if len(seen) > MAX_IMPORTS:
                raise error(f"more than {MAX_IMPORTS} imported files", imp.span)
            src = read_source(target, display=imp.path, span=imp.span)
            pending.append((parse_module(src), target.parent, target))
    _check_import_cycles(imports, root_file, root_dir, root.source.path if root.source else "<string>")
    return blocks


def _check_import_cycles(imports, root_file, root_dir: Path, root_shown: str) -> None:
    """Refuse a file that imports itself, directly or through other files,
    naming the cycle at the import that closes it (iterative depth-first search)."""
    def shown(file):
        if file is None:
            return root_shown
        return str(file.relative_to(root_dir)) if file.is_relative_to(root_dir) else str(file)

    state: dict = {root_file: 1}  # 1 = on the path, 2 = done
    path = [root_file]
    pending = [iter(imports.get(root_file, ()))]
    while pending:
        step = next(pending[-1], None)
        if step is None:
            state[path.pop()] = 2
            pending.pop()
            continue
        target, imp = step
        if state.get(target) == 1:
            cycle = path[path.index(target):] + [target]
            raise error("import cycle: " + " -> ".join(shown(f) for f in cycle), imp.span,
                        help="a file cannot import itself, directly or through other files; "
                             "move the blocks both need into a file that imports neither")
        if target not in state:
            state[target] = 1
            path.append(target)
            pending.append(iter(imports.get(target, ())))


def _check_program_size(models, blocks) -> None:
    """Refuse, before building anything, a file whose models together expand
    past MAX_NODES layers (one block of 200,000 layers used by 30 models took
    a minute and gigabytes when the limit counted per model)."""
    total = 0
    for model in models:
        size = _ModelBuilder(model, blocks).projected_size()
        if size > MAX_NODES:
            return  # past the limit alone: building it stops at the stage that goes past
        total += size
        if total > MAX_NODES:
            raise error(f"the models of this file expand to more than {MAX_NODES} layers "
                        f"({total} up to model '{model.name}')", model.name_span,
                        help=f"the limit of {MAX_NODES} layers counts every model in the file; "
                             "put some models in another file")


def _called_blocks(stages, blocks):
    for stage in stages:
        if isinstance(stage, ast.Call):
            if stage.name in blocks:
                yield stage
        else:
            yield from _called_blocks(stage.body, blocks)


def _check_block_recursion(blocks: dict[str, ast.BlockDef]) -> None:
    """Refuse a block that calls itself, directly or through other blocks.

    Iterative depth-first search, so a chain of thousands of blocks cannot
    exhaust Python's recursion limit (the elaborator refuses deep chains later)."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for root in blocks:
        if root in state:
            continue
        state[root] = 1
        path = [root]
        pending = [iter(list(_called_blocks(blocks[root].body, blocks)))]
        while pending:
            call = next(pending[-1], None)
            if call is None:
                state[path.pop()] = 2
                pending.pop()
                continue
            if state.get(call.name) == 1:
                cycle = path[path.index(call.name):] + [call.name]
                via = "" if len(cycle) == 2 else " through " + " -> ".join(cycle[1:-1])
                raise error(f"block '{call.name}' calls itself recursively{via}", call.span,
                            help="a block cannot contain itself; use repeat(N) { ... } to stack copies")
            if call.name not in state:
                state[call.name] = 1
                path.append(call.name)
                pending.append(iter(list(_called_blocks(blocks[call.name].body, blocks))))


# ====================================================================== values
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


@dataclass
class _LayerContext:
    """What a layer's infer_shape may ask of its surroundings."""

    builder: "_ModelBuilder"
    in_segments: bool

    def lookup_alias(self, name: str, arg: str | None = None) -> Node:
        if name in self.builder.aliases:
            return self.builder.node_map[self.builder.aliases[name]]
        raise LayerError(f"unknown layer name '{name}'", arg=arg,
                         help=suggest(name, self.builder.aliases) or "name a layer earlier in the model with `as NAME`")


# ====================================================================== models
class _ModelBuilder:
    def __init__(self, model: ast.ModelDef, blocks: dict[str, ast.BlockDef], built_before: int = 0):
        self.model = model
        self.blocks = blocks
        self.built_before = built_before  # layers of the file's other models, for MAX_NODES
        self.node_map: dict[str, Node] = {}
        self.edges: list[tuple[str, str, int]] = []
        self.lets: dict[str, object] = {}
        self.values: dict[str, tuple[str, TensorType]] = {}
        self.bound_at: dict[str, Span] = {}
        self.inputs: dict[str, TensorType] = {}
        self.symbols: list[str] = []
        self.aliases: dict[str, str] = {}
        self.outputs: dict[str, TensorType] = {}
        self._rule_cache: dict = {}
        self._size_cache: dict = {}  # (block, its frozen arguments) -> layers it expands to

    # ------------------------------------------------------------ statements
    def projected_size(self) -> int:
        """The layers (and inputs) this model expands to, counted without
        expanding; best effort: a statement that does not evaluate stops the
        count (`build` reports it)."""
        env: dict[str, object] = {}
        total = 0
        try:
            for st in self.model.statements:
                if isinstance(st, ast.Let):
                    env[st.name] = self.eval(st.value, env, "let")
                elif isinstance(st, ast.Input):
                    total += 1
                elif isinstance(st, ast.Bind):
                    total += self._size(st.stages, env, ())
                if total > MAX_NODES:
                    break
        except SpecError:
            pass
        return total

    def build(self) -> ModelGraph:
        output_stmt = None
        for st in self.model.statements:
            if isinstance(st, ast.Let):
                self._claim(st.name, st.span)
                self.lets[st.name] = self.eval(st.value, self.lets, "let")
            elif isinstance(st, ast.Input):
                self._declare_input(st)
            elif isinstance(st, ast.Bind):
                self._bind(st)
            elif isinstance(st, ast.Output):
                if output_stmt is not None:
                    raise error("a model has one output statement", st.span,
                                help=f"list every output in the one at line {output_stmt.span.line}")
                output_stmt = st
        if output_stmt is None:
            raise error(f"model '{self.model.name}' has no output statement", self.model.name_span,
                        help="add `output NAME` naming the value the model returns")
        for name in output_stmt.names:
            if name.name not in self.values:
                raise error(f"output '{name.name}' is never bound", name.span,
                            help=suggest(name.name, self.values) or "bind it with `NAME = SOURCE -> ...`")
            if name.name in self.outputs:
                raise error(f"output '{name.name}' is listed twice", name.span)
            self.outputs[name.name] = self.values[name.name][1]
        return ModelGraph(self.model.name, self.node_map, self.edges, self.inputs, self.outputs,
                          {k: v[0] for k, v in self.values.items()}, tuple(self.symbols),
                          self.model.span)

    def _claim(self, name: str, span: Span) -> None:
        if name in self.bound_at:
            raise error(f"name '{name}' is already bound (at line {self.bound_at[name].line})", span,
                        help="a name is bound once; choose a new name")
        if name in self.symbols:
            raise error(f"name '{name}' is already a symbolic dim of an input", span)
        self.bound_at[name] = span

    def _declare_input(self, st: ast.Input) -> None:
        self._claim(st.name, st.span)
        if st.dtype not in ("float", "int"):
            raise error(f"unknown input dtype '{st.dtype}'", st.dtype_span,
                        help=suggest(st.dtype, ("float", "int")) or "use float or int (token ids)")
        dims = []
        for expr in st.dims:
            if isinstance(expr, ast.Name) and expr.name not in self.lets:
                if expr.name in self.bound_at:
                    raise error(f"'{expr.name}' is a bound value, not a dim", expr.span)
                if expr.name not in self.symbols:
                    self.symbols.append(expr.name)
                dims.append(dim_symbol(expr.name))
                continue
            value = self.eval(expr, self.lets, "let")
            if isinstance(value, bool) or not isinstance(value, int):
                raise error(f"a dim must be an integer or a symbolic name, got {_describe(value)}", expr.span)
            if not 1 <= value <= MAX_DIM:
                raise error(f"dim {value} is out of range (1 to {MAX_DIM})", expr.span,
                            help="sizes past 2**40 cannot be allocated; use a symbolic name for lengths")
            dims.append(sympy.Integer(value))
        if st.dtype == "int" and len(dims) < 1:
            raise error("an input needs at least one dim", st.span)
        if not dims:
            raise error("an input needs at least one dim", st.span)
        t = TensorType(st.dtype, tuple(dims))
        self.inputs[st.name] = t
        self._add_node(Node(st.name, "input", None, (), t, 0, st.span), ())
        self.values[st.name] = (st.name, t)

    def _bind(self, st: ast.Bind) -> None:
        self._claim(st.name, st.span)
        if st.source.name not in self.values:
            hint = suggest(st.source.name, self.values)
            what = "a let constant, not a tensor" if st.source.name in self.lets else "not bound"
            raise error(f"'{st.source.name}' is {what}", st.source.span,
                        help=hint or "a pipeline starts from an input or an earlier bound value")
        x = self.values[st.source.name]
        if st.stages:
            self._check_expansion(st.stages)
            x = self.run_stages(st.stages, x, st.name, (), self.lets, 0, ())
        self.values[st.name] = x

    # ------------------------------------------------------------ expressions
    def eval(self, e, env: dict, mode: str):
        """Evaluate an expression. mode 'let': names must be constants; 'arg':
        bound values become Refs and other bare names enum Words."""
        if isinstance(e, ast.Literal):
            return _check_magnitude(e.value, e.span)
        if isinstance(e, ast.Name):
            if e.name in env:
                return env[e.name]
            if mode == "arg":
                if e.name in self.values:
                    return Ref(e.name, e.span)
                return Word(e.name)
            raise error(f"unknown name '{e.name}'", e.span,
                        help=suggest(e.name, env) or "a let may use numbers and earlier lets")
        if isinstance(e, ast.BinOp):
            return _binop(e.op, self.eval(e.left, env, mode), self.eval(e.right, env, mode), e.span)
        if isinstance(e, ast.Neg):
            return -_number(self.eval(e.operand, env, mode), e.span)
        if isinstance(e, ast.FuncCall):
            if e.func not in FUNCTIONS:
                raise error(f"unknown function '{e.func}'", e.span,
                            help=suggest(e.func, FUNCTIONS) or "functions: " + ", ".join(FUNCTIONS))
            args = [_number(self.eval(a, env, mode), a.span, "argument") for a in e.args]
            if e.func in ("ceil", "floor"):
                if len(args) != 1:
                    raise error(f"{e.func} takes one argument, got {len(args)}", e.span)
                return (math.ceil if e.func == "ceil" else math.floor)(args[0])
            if not args:
                raise error(f"{e.func} needs at least one argument", e.span)
            return (min if e.func == "min" else max)(args)
        if isinstance(e, ast.ListExpr):
            if len(e.items) > MAX_LIST:
                raise error(f"list of {len(e.items)} items is past the limit of {MAX_LIST}", e.span)
            return [self.eval(i, env, mode) for i in e.items]
        raise error("unsupported expression", getattr(e, "span", None))  # pragma: no cover

    # ------------------------------------------------------------ stages
    @staticmethod
    def stage_keys(stages) -> list[str]:
        kinds = []
        for s in stages:
            kinds.append(s.name if isinstance(s, ast.Call) else type(s).__name__.lower())
        counts: dict[str, int] = {}
        for k in kinds:
            counts[k] = counts.get(k, 0) + 1
        seen: dict[str, int] = {}
        keys = []
        for s, k in zip(stages, kinds):
            if s.alias:
                keys.append(s.alias)
                continue
            if counts[k] > 1:
                keys.append(f"{k}[{seen.get(k, 0)}]")
                seen[k] = seen.get(k, 0) + 1
            else:
                keys.append(k)
        return keys

    def run_stages(self, stages, x, prefix: str, scope: tuple, env: dict, depth: int, stack: tuple):
        if depth > MAX_NESTING:
            raise error(f"combinators and blocks nested more than {MAX_NESTING} deep", stages[0].span)
        for stage, key in zip(stages, self.stage_keys(stages)):
            name = f"{prefix}.{key}"
            if isinstance(stage, ast.Call):
                if stage.name in LAYERS:
                    x = self._layer(stage, x, name, scope, env)
                elif stage.name in self.blocks:
                    x = self._block(stage, x, name, scope, env, depth, stack)
                else:
                    candidates = list(LAYERS) + list(self.blocks) + list(COMBINATORS)
                    raise error(f"unknown layer '{stage.name}'", stage.name_span,
                                help=suggest(stage.name, candidates)
                                or "`seqdsl layers` lists the layer kinds (docs/language.md describes them), or define a block")
            elif isinstance(stage, ast.Repeat):
                x = self._repeat(stage, x, name, scope, env, depth, stack)
            elif isinstance(stage, ast.Residual):
                x = self._residual(stage, x, name, scope, env, depth, stack)
            else:
                x = self._segments(stage, x, name, scope, env, depth, stack)
        return x

    def _combinator_args(self, stage, env, schema: list[tuple[str, bool]]) -> dict:
        """Bind a combinator's args to `schema` [(name, required)], all ints."""
        kind = type(stage).__name__.lower()
        names = [n for n, _ in schema]
        bound: dict[str, object] = {}
        for i, arg in enumerate(stage.args):
            key = arg.key if arg.key is not None else (names[i] if i < len(names) else None)
            if key is None:
                raise error(f"{kind} takes at most {len(names)} positional argument(s)", arg.span)
            if key not in names:
                raise error(f"unknown argument '{key}' for {kind}", arg.span,
                            help=suggest(key, names) or f"{kind} takes " + ", ".join(names))
            if key in bound:
                raise error(f"argument '{key}' given twice", arg.span)
            value = self.eval(arg.value, env, "arg")
            if isinstance(value, bool) or not isinstance(value, int):
                raise error(f"{kind} argument '{key}' must be an int, got {_describe(value)}", arg.span)
            bound[key] = (value, arg.span)
        for n, required in schema:
            if required and n not in bound:
                raise error(f"{kind} needs the argument '{n}'", stage.span)
        return bound

    def _repeat_count(self, stage: ast.Repeat, env) -> int:
        count, span = self._combinator_args(stage, env, [("count", True)])["count"]
        if not 1 <= count <= MAX_REPEAT:
            raise error(f"repeat count {count} is out of range (1 to {MAX_REPEAT})", stage.span,
                        help=f"the limit of {MAX_REPEAT} copies keeps the compiler's memory bounded")
        return count

    def _repeat(self, stage: ast.Repeat, x, name, scope, env, depth, stack):
        count = self._repeat_count(stage, env)
        if not stage.body:
            raise error("repeat body is empty", stage.span)
        projected = self.built_before + len(self.node_map) + count * self._size(stage.body, env, stack)
        if projected > MAX_NODES:
            raise error(f"repeat({count}) would expand the model to {projected} layers, "
                        f"past the limit of {MAX_NODES}", stage.span)
        for i in range(count):
            inner = f"{name}[{i}]"
            x = self.run_stages(stage.body, x, inner, scope + (Scope("repeat", inner, stage.span, i),),
                                env, depth + 1, stack)
        return x

    def _size(self, stages, env, stack) -> int:
        """Layers the stages expand to, computed without expanding them."""
        if len(stack) > MAX_NESTING:  # blocks nested too deep: building them reports it
            return 1
        total = 0
        for s in stages:
            if isinstance(s, ast.Call):
                if s.name in self.blocks and s.name not in stack:
                    total += self._block_size(s, env, stack)
                else:
                    total += 1
            elif isinstance(s, ast.Repeat):
                total += self._repeat_count(s, env) * self._size(s.body, env, stack)
            else:
                total += self._size(s.body, env, stack) + (1 if isinstance(s, ast.Residual) else 0)
            if total > MAX_NODES:
                return total
        return total

    def _check_expansion(self, stages) -> None:
        """Refuse a pipeline that would take the file past MAX_NODES layers
        before expanding any of it, at the stage that goes past."""
        total = self.built_before + len(self.node_map)
        for stage in stages:
            total += self._size([stage], self.lets, ())
            if total > MAX_NODES:
                what = (f"repeat({self._repeat_count(stage, self.lets)})" if isinstance(stage, ast.Repeat)
                        else f"'{stage.name}'" if isinstance(stage, ast.Call) else "this stage")
                raise error(f"{what} would expand the model to {total} layers, past the limit of {MAX_NODES}",
                            stage.span, help="the limit keeps the compiler's memory bounded")

    def _block_size(self, call: ast.Call, env, stack) -> int:
        """`_size` of a block call, once per block and arguments (a block
        calling another twice, 30 deep, must not take 2**30 steps); an empty
        block counts as one: its calls are work too."""
        block = self.blocks[call.name]
        body_env = self._block_env(block, call, env)
        try:
            key = (call.name, _freeze(body_env))
            hash(key)
        except TypeError:
            key = None
        size = self._size_cache.get(key) if key is not None else None
        if size is None:
            size = max(1, self._size(block.body, body_env, stack + (call.name,)))
            if key is not None:
                self._size_cache[key] = size
        return size

    def _residual(self, stage: ast.Residual, x, name, scope, env, depth, stack):
        if not stage.body:
            raise error("residual body is empty", stage.span)
        inner = scope + (Scope("residual", name, stage.span),)
        y = self.run_stages(stage.body, x, name, inner, env, depth + 1, stack)
        tx, ty = x[1], y[1]
        if tx.dtype != ty.dtype or tx.rank != ty.rank or not all(
                dims_equal(a, b) for a, b in zip(tx.dims, ty.dims)):
            raise error(f"residual body changes the shape from {tx} to {ty}", stage.span,
                        help="x + body(x) needs the body to keep the shape; "
                             f"end the body with a layer back to {fmt_dim(tx.dims[-1])} channels")
        add = Node(f"{name}.add", "add", None, (tx, ty), tx, 0, stage.span, inner, None, (x[0], y[0]))
        self._add_node(add, (x[0], y[0]))
        return (add.name, tx)

    def _segments(self, stage: ast.Segments, x, name, scope, env, depth, stack):
        if any(s.kind == "segments" for s in scope):
            raise error("segments cannot be nested", stage.span)
        args = self._combinator_args(stage, env, [("length", True), ("memory", True)])
        length, lspan = args["length"]
        memory, mspan = args["memory"]
        if not 1 <= length <= MAX_DIM:
            raise error(f"segment length must be positive, got {length}", lspan)
        if not 0 <= memory <= MAX_DIM:
            raise error(f"segment memory must be 0 or more, got {memory}", mspan)
        tx = x[1]
        if tx.dtype != "float" or tx.rank != 3:
            raise error(f"segments expects a float [B, T, C] input, got {tx}", stage.span)
        if not stage.body:
            raise error("segments body is empty", stage.span)
        inner = scope + (Scope("segments", name, stage.span, None, (("length", length), ("memory", memory))),)
        y = self.run_stages(stage.body, x, name, inner, env, depth + 1, stack)
        ty = y[1]
        if ty.rank != 3 or not dims_equal(ty.dims[1], tx.dims[1]):
            raise error(f"segments body must keep the time axis, but it maps {tx} to {ty}", stage.span)
        return y

    def _block_env(self, block: ast.BlockDef, call: ast.Call, env: dict) -> dict:
        params = [p.name for p in block.params]
        values: dict[str, object] = {}
        for i, arg in enumerate(call.args):
            key = arg.key if arg.key is not None else (params[i] if i < len(params) else None)
            if key is None:
                raise error(f"block '{block.name}' takes {len(params)} argument(s), got more", arg.span)
            if key not in params:
                raise error(f"unknown argument '{key}' for block '{block.name}'", arg.span,
                            help=suggest(key, params) or "parameters: " + ", ".join(params))
            if key in values:
                raise error(f"argument '{key}' given twice", arg.span)
            values[key] = self.eval(arg.value, env, "arg")
        for p in block.params:
            if p.name not in values:
                if p.default is None:
                    raise error(f"block '{block.name}' needs the argument '{p.name}'", call.span,
                                help=f"defined at {block.span.path}:{block.span.line}")
                values[p.name] = self.eval(p.default, dict(values), "arg")
        return values

    def _block(self, stage: ast.Call, x, name, scope, env, depth, stack):
        block = self.blocks[stage.name]
        if stage.name in stack:  # also caught statically; kept as a guard
            raise error(f"block '{stage.name}' calls itself recursively", stage.span)
        body_env = self._block_env(block, stage, env)
        if not block.body:
            return x
        inner = scope + (Scope("block", name, stage.span),)
        try:
            return self.run_stages(block.body, x, name, inner, body_env, depth + 1, stack + (stage.name,))
        except SpecError as exc:
            d = exc.diagnostics[0]
            inside = (d.span is not None and d.span.source is block.span.source
                      and block.span.line <= d.span.line <= block.span.end_line)
            if inside and not d.notes:
                exc.diagnostics[0] = type(d)(d.message, d.span, d.help,
                                             (f"in block '{block.name}' called at {stage.span}",))
            raise

    # ------------------------------------------------------------ layers
    def _layer(self, call: ast.Call, x, name, scope, env):
        rule = LAYERS[call.name]
        fields = _arg_names(rule)
        raw: dict[str, object] = {}
        spans: dict[str, Span] = {}
        for i, arg in enumerate(call.args):
            if arg.key is None:
                if i >= len(fields):
                    raise error(f"{call.name} takes at most {len(fields)} positional argument(s), got {i + 1}",
                                arg.span, help="order: " + ", ".join(fields) if fields else f"{call.name} takes no arguments")
                key = fields[i]
            else:
                key = arg.key
                if key not in fields:
                    raise error(f"unknown argument '{key}' for {call.name}", arg.span,
                                help=suggest(key, fields) or ("arguments: " + ", ".join(fields) if fields
                                                              else f"{call.name} takes no arguments"))
            if key in raw:
                raise error(f"argument '{key}' of {call.name} is given twice", arg.span)
            raw[key] = self.eval(arg.value, env, "arg")
            spans[key] = arg.span
        sources = [x[0]]
        inputs = [x[1]]
        for key in rule.context_args():
            value = raw.get(key)
            if value is None:
                continue
            if not isinstance(value, Ref):
                shown = value if isinstance(value, str) else _describe(value)
                raise error(f"unknown name '{shown}': {key}= must name a value bound earlier in the model",
                            spans[key], help=suggest(str(value), self.values) if isinstance(value, str) else None)
            sources.append(self.values[value.name][0])
            inputs.append(self.values[value.name][1])
        in_segments = any(s.kind == "segments" for s in scope)
        # Repeats and blocks produce many identical layers: validate and infer
        # each distinct (kind, args, input types) once per model.
        key = (call.name, _freeze(raw), tuple(inputs), in_segments)
        cached = self._rule_cache.get(key)
        try:
            if cached is None:
                args = self._validate(call, rule, raw, spans)
                try:
                    out = rule.infer_shape(args, inputs, _LayerContext(self, in_segments))
                    _check_dim_depth(out, call)
                    params = rule.count_params(args, inputs, out)
                except RecursionError:
                    raise error(f"{call.name}: its shape is too deeply nested to analyse", call.span,
                                help="give the input a concrete length, or use fewer "
                                     "length-changing layers in a row") from None
                self._rule_cache[key] = cached = (args, out, params)
            args, out, params = cached
        except LayerError as exc:
            where = spans.get(exc.arg, call.span) if exc.arg else call.span
            message = exc.message if exc.message.startswith(call.name) else f"{call.name}: {exc.message}"
            raise error(message, where, help=exc.help) from None
        if call.alias:
            if call.alias in self.aliases:
                raise error(f"layer name '{call.alias}' is already used", call.span,
                            help="`as NAME` names one layer instance")
            self.aliases[call.alias] = name
        node = Node(name, call.name, args, tuple(inputs), out, params, call.span, scope, call.alias,
                    tuple(sources))
        self._add_node(node, sources)
        return (name, out)

    def _validate(self, call, rule, raw, spans):
        clean = {k: (None if isinstance(v, Word) and v == "none" else
                     str(v) if isinstance(v, Word) else v) for k, v in raw.items()}
        try:
            return rule.Args.model_validate(clean)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else None
            if first["type"] == "missing":
                raise error(f"{call.name} needs the argument '{field}'", call.span,
                            help=f"{call.name}({', '.join(f for f, i in rule.Args.model_fields.items() if i.is_required())})") from None
            value = raw.get(field)
            expected = _expected(rule.Args, field, first)
            raise error(f"argument '{field}' of {call.name} expects {expected}, got {_describe(value)}",
                        spans.get(field, call.span)) from None

    def _add_node(self, node: Node, sources) -> None:
        if node.name in self.node_map:
            raise error(f"layer name '{node.name}' is used twice", node.span,
                        help="give one of them another name with `as NAME`")
        if self.built_before + len(self.node_map) >= MAX_NODES:
            raise error(f"the model expands to more than {MAX_NODES} layers", node.span)
        self.node_map[node.name] = node
        for port, src in enumerate(sources):
            self.edges.append((src, node.name, port))


def _check_dim_depth(out: TensorType, call: ast.Call) -> None:
    for dim in out.dims:
        if not dim.is_Integer and rounding_depth(dim) > MAX_DIM_DEPTH:
            raise error(f"{call.name}: the output length nests more than {MAX_DIM_DEPTH} floor/ceil "
                        "(too many strided or valid convolutions in a row over a symbolic length)",
                        call.span, help="give the input a concrete length, or downsample in fewer, "
                                        "larger strides")


@lru_cache(maxsize=None)
def _arg_names(rule) -> tuple[str, ...]:
    """A layer's argument names in positional order."""
    return tuple(rule.Args.model_fields)


def _freeze(value):
    """A hashable key for argument values (type-tagged: Word('x') != "x")."""
    if isinstance(value, dict):
        return tuple((k, _freeze(v)) for k, v in value.items())
    if isinstance(value, list):
        return ("list",) + tuple(_freeze(v) for v in value)
    return (type(value).__name__, value)


def _expected(schema, field: str, err: dict) -> str:
    """Words for what a field accepts, from the pydantic error."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bounds = {"greater_than": "> {gt}", "greater_than_equal": ">= {ge}",
                  "less_than": "< {lt}", "less_than_equal": "<= {le}"}[kind].format(**ctx)
        return f"a value {bounds}"
    if kind == "literal_error":
        return "one of " + str(ctx.get("expected", "")).replace("'", "")
    annotation = str(schema.model_fields[field].annotation) if field in schema.model_fields else ""
    words = []
    for token, word in (("int", "an int"), ("float", "a number"), ("bool", "true or false"),
                        ("list", "a list of ints"), ("Literal", "a word"), ("str", "a name"),
                        ("Ref", "a bound value")):
        if token in annotation and word not in words:
            words.append(word)
    if "Literal" in annotation:
        opts = []
        ann = schema.model_fields[field].annotation
        for arg in (ann,) if typing.get_origin(ann) is typing.Literal else typing.get_args(ann):
            if typing.get_origin(arg) is typing.Literal:     # Union[int, Literal["auto"]]: the words
                opts += list(typing.get_args(arg))
        if opts:
            words = [w for w in words if w not in ("a word", "a name")]
            return " or ".join(words + ["one of " + ", ".join(str(o) for o in opts if o is not None)])
    return " or ".join(words) or err.get("msg", "another value")
