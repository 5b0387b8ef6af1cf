"""One model elaborated: `let`s evaluated, inputs declared with symbolic
dims, blocks, repeats, residuals and segments expanded, every layer's
arguments validated against its schema and its output type inferred, the
graph built (nodes and edges)."""
from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from functools import lru_cache

import pydantic
import sympy

from ..errors import Span, SpecError, absent_concept, error, suggest
from ..graph.ir import ModelGraph, Node, Ref, Scope, TensorType
from ..graph.symbolic import dim_symbol, dims_equal, fmt_dim, rounding_depth
from ..lang import ast
from ..layers import LAYERS, LayerError
from ..layers.base import ResidualArgs
from ..limits import MAX_DIAGNOSTICS, MAX_DIM, MAX_DIM_DEPTH, MAX_LIST, MAX_NESTING, MAX_NODES, MAX_REPEAT
from .values import COMBINATORS, FUNCTIONS, Word, _binop, _check_magnitude, _describe, _number

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
        """The model's graph, or a SpecError with every error found in it:
        a refused statement does not stop the check of the ones after it,
        except for errors that only repeat it (a name it failed to bind)."""
        output_stmt = None
        found = []           # diagnostics of refused statements, in order
        failed = set()       # names of refused statements
        for st in self.model.statements:
            try:
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
            except SpecError as exc:
                if not found or not _follows_from(exc, failed):
                    _add_new(found, exc.diagnostics)
                if hasattr(st, "name"):
                    failed.add(st.name)
                if len(found) >= MAX_DIAGNOSTICS or self.built_before + len(self.node_map) >= MAX_NODES:
                    break
        else:
            try:
                self._check_outputs(output_stmt)
            except SpecError as exc:
                if not found or not _follows_from(exc, failed):
                    found.extend(exc.diagnostics)
        if found:
            raise SpecError(found[:MAX_DIAGNOSTICS])
        return ModelGraph(self.model.name, self.node_map, self.edges, self.inputs, self.outputs,
                          {k: v[0] for k, v in self.values.items()}, tuple(self.symbols),
                          self.model.span)

    def _check_outputs(self, output_stmt) -> None:
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
                        help=_PYTHON_WORDS.get(e.name) or suggest(e.name, env)
                        or "a let may use numbers and earlier lets")
        if isinstance(e, ast.BinOp):
            left, right = self.eval(e.left, env, mode), self.eval(e.right, env, mode)
            for operand, side in ((left, e.left), (right, e.right)):
                if isinstance(operand, Word):     # `linear(dd * 2)`: not a word, a misspelt name
                    raise self._unknown_word(operand, side.span, env)
            return _binop(e.op, left, right, e.span)
        if isinstance(e, ast.Neg):
            operand = self.eval(e.operand, env, mode)
            if isinstance(operand, Word):
                raise self._unknown_word(operand, e.operand.span, env)
            return -_number(operand, e.span)
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

    def _unknown_word(self, word: str, span: Span, env: dict | None = None) -> SpecError:
        """A bare word where a number goes: an undefined name."""
        names = list(self.lets if env is None else env)
        if word in _PYTHON_WORDS:
            return error(f"unknown name '{word}'", span, help=_PYTHON_WORDS[word])
        if word in self.symbols:
            return error(f"'{word}' is a symbolic dim of an input, not a number", span,
                         help="layer arguments need numbers: bind the size with `let`")
        return error(f"unknown name '{word}'", span,
                     help=suggest(word, names) or "a number may use numbers, lets and block parameters")

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
                                help=absent_concept(stage.name) or suggest(stage.name, candidates)
                                or "`seqdsl layers` lists the layer kinds (docs/language.md describes them), or define a block")
            elif isinstance(stage, ast.Repeat):
                x = self._repeat(stage, x, name, scope, env, depth, stack)
            elif isinstance(stage, ast.Residual):
                x = self._residual(stage, x, name, scope, env, depth, stack)
            else:
                x = self._segments(stage, x, name, scope, env, depth, stack)
        return x

    def _combinator_args(self, stage, env, schema: list[tuple[str, bool]], numbers: tuple = ()) -> dict:
        """Bind a combinator's args to `schema` [(name, required)]: ints, or
        any number for the names in `numbers`."""
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
            if key in numbers:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise error(f"{kind} argument '{key}' must be a number, got {_describe(value)}", arg.span)
            elif isinstance(value, bool) or not isinstance(value, int):
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
        scale = 1.0
        if stage.args:
            scale, sspan = self._combinator_args(stage, env, [("scale", False)], numbers=("scale",))["scale"]
            if not (math.isfinite(scale) and scale != 0):
                raise error(f"residual scale must be a finite, non-zero number, got {scale}", sspan,
                            help="residual(scale=0.5) adds half the body's output (the Conformer's macaron halves)")
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
        args = ResidualArgs(scale=float(scale)) if scale != 1 else None
        add = Node(f"{name}.add", "add", args, (tx, ty), tx, 0, stage.span, inner, None, (x[0], y[0]))
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
                args = self._validate(call, rule, raw, spans, env)
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
        alias = call.alias
        if alias:
            # inside repeat(N) each copy has its own name: in_proj[0], in_proj[1], ...
            alias += "".join(f"[{s.index}]" for s in scope if s.kind == "repeat")
            if alias in self.aliases:
                raise error(f"layer name '{alias}' is already used", call.span,
                            help="`as NAME` names one layer instance (inside repeat, one per copy: NAME[i])")
            self.aliases[alias] = name
        node = Node(name, call.name, args, tuple(inputs), out, params, call.span, scope, alias,
                    tuple(sources))
        self._add_node(node, sources)
        return (name, out)

    def _validate(self, call, rule, raw, spans, env=None):
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
            if isinstance(value, Word) and any(w in expected for w in ("int", "number")) and "one of" not in expected:
                # `linear(dd)`: a word where only a number goes is most likely a misspelt let
                # (where words are allowed too, `dt_rank=fast`, the words are the better help)
                raise self._unknown_word(value, spans.get(field, call.span), env) from None
            raise error(f"argument '{field}' of {call.name} expects {expected}, got {_describe(value)}",
                        spans.get(field, call.span),
                        help=_PYTHON_WORDS.get(value) if isinstance(value, Word) else None) from None

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


def _add_new(found: list, diagnostics) -> None:
    """Add the diagnostics not already in `found` (an error inside a block
    called twice is one error, reported at the first call)."""
    seen = {(d.message, str(d.span)) for d in found}
    found.extend(d for d in diagnostics if (d.message, str(d.span)) not in seen)


def _follows_from(exc: SpecError, failed: set) -> bool:
    """Whether an error only repeats an earlier one: it names a value whose
    statement was refused (`'y' is not bound` after y's pipeline failed)."""
    return any(f"'{name}'" in d.message for d in exc.diagnostics for name in failed)


# Python's spellings, which a newcomer writes first
_PYTHON_WORDS = {"True": "write true (lowercase)", "False": "write false (lowercase)",
                 "None": "write none (lowercase)"}


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
    if field in schema.model_fields:       # list[Literal[...]]: the words the list may hold
        for arg in typing.get_args(schema.model_fields[field].annotation):
            inner = typing.get_args(arg) if typing.get_origin(arg) is list else ()
            if inner and typing.get_origin(inner[0]) is typing.Literal:
                if "bool" in annotation:
                    words.append("true or false")
                return " or ".join(words + ["a list of " + ", ".join(map(str, typing.get_args(inner[0])))])
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
