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
from ..graph.lengths import length_tree
from ..graph.symbolic import dim_symbol, dims_equal, fmt_dim, rounding_depth
from ..lang import ast
from ..layers import LAYERS, LayerError
from ..layers.base import ResidualArgs
from ..layers.loss import LOSSES, LossSpec, check_loss
from ..limits import MAX_DIAGNOSTICS, MAX_DIM, MAX_DIM_DEPTH, MAX_LIST, MAX_NESTING, MAX_NODES, MAX_REPEAT
from .values import COMBINATORS, FUNCTIONS, VALUE_STAGES, Word, _binop, _check_magnitude, _describe, _number

@dataclass
class _LayerContext:
    """What a layer's infer_shape may ask of its surroundings."""

    builder: "_ModelBuilder"
    in_segments: bool
    #: inside segments(...), every value read by name was bound in the same
    #: segments body (so it runs segment by segment too)
    context_in_segments: bool = False

    def lookup_alias(self, name: str, arg: str | None = None) -> Node:
        if name in self.builder.aliases:
            return self.builder.node_map[self.builder.aliases[name]]
        raise LayerError(f"unknown layer name '{name}'", arg=arg,
                         help=suggest(name, self.builder.aliases) or "name a layer earlier in the model with `as NAME`")


@dataclass
class _Local:
    """A name bound in a body: its value, where it was bound, and the path of
    the segments body it was bound in (None outside segments)."""

    value: tuple          # (node name, TensorType)
    span: Span
    segments: str | None


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
        #: names bound inside the bodies being run (docs/language.md, "Names in
        #: bodies"), visible to the body and those nested in it; a block call
        #: hides its caller's
        self.locals: dict[str, _Local] = {}
        self.read: set[str] = set()     # nodes some node reads
        self._kept: set[str] = set()    # inputs of the residuals being run (their add reads them)
        self._alias_bases: set[str] = set()   # `as NAME` names (without a repeat copy's [i])
        self._ended: dict[str, Span] = {}     # names of bodies that ended, where they were bound
        self._hidden: list[dict] = []         # the callers' names, hidden by the block calls being run

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
                    total += self._size(st.stages, env, ()) + len(st.more)
                if total > MAX_NODES:
                    break
        except SpecError:
            pass
        return total

    def build(self) -> ModelGraph:
        """The model's graph, or a SpecError with every error found in it:
        a refused statement does not stop the check of the ones after it,
        except for errors that only repeat it (a name it failed to bind)."""
        output_stmt = loss_stmt = None
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
                elif isinstance(st, ast.Loss):
                    if loss_stmt is not None:
                        raise error("a model has one loss statement", st.span,
                                    help=f"keep the one at line {loss_stmt.span.line}")
                    loss_stmt = st
            except SpecError as exc:
                if not found or not _follows_from(exc, failed):
                    _add_new(found, exc.diagnostics)
                if hasattr(st, "name"):
                    failed.update(getattr(st, "names", (st.name,)))
                if len(found) >= MAX_DIAGNOSTICS or self.built_before + len(self.node_map) >= MAX_NODES:
                    break
        else:
            try:
                self._check_outputs(output_stmt)
                loss = self._check_loss(loss_stmt) if loss_stmt is not None else None
            except SpecError as exc:
                if not found or not _follows_from(exc, failed):
                    found.extend(exc.diagnostics)
        if found:
            raise SpecError(found[:MAX_DIAGNOSTICS])
        return ModelGraph(self.model.name, self.node_map, self.edges, self.inputs, self.outputs,
                          {k: v[0] for k, v in self.values.items()}, tuple(self.symbols),
                          self.model.span, loss,
                          lengths=tuple(n for n in self.inputs if self.node_map[n].lengths is not None))

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

    def _check_loss(self, st: ast.Loss) -> LossSpec:
        """`loss KIND(OUTPUT, option=N)`: which output, which options (seqdsl.layers.loss)."""
        call = st.call
        if call.name not in LOSSES:
            raise error(f"unknown loss '{call.name}'", call.name_span,
                        help=suggest(call.name, LOSSES) or "losses: " + ", ".join(LOSSES))
        positional = [a for a in call.args if a.key is None]
        if len(positional) > 1:
            raise error(f"{call.name} takes one positional argument, the output it is computed on",
                        positional[1].span, help="give options by name, e.g. target_len=200")
        if positional:
            named = positional[0].value
            if not isinstance(named, ast.Name) or named.name not in self.outputs:
                what = f"'{named.name}'" if isinstance(named, ast.Name) else "this"
                raise error(f"{what} is not an output of model '{self.model.name}'", positional[0].span,
                            help=(suggest(named.name, self.outputs) if isinstance(named, ast.Name) else None)
                            or "outputs: " + ", ".join(self.outputs))
            output = named.name
        elif len(self.outputs) == 1:
            output = next(iter(self.outputs))
        else:
            raise error(f"model '{self.model.name}' has {len(self.outputs)} outputs: name the one the loss is on",
                        call.span, help=f"write {call.name}({next(iter(self.outputs))})")
        options, spans = {}, {}
        for arg in call.args:
            if arg.key is None:
                continue
            if arg.key in options:
                raise error(f"argument '{arg.key}' of {call.name} is given twice", arg.span)
            options[arg.key] = self.eval(arg.value, self.lets, "let")
            spans[arg.key] = arg.span
        try:
            values = check_loss(call.name, self.outputs[output], options)
        except LayerError as exc:
            raise error(exc.message, spans.get(exc.arg, call.span), help=exc.help) from None
        return LossSpec(call.name, output, values, st.span)

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
        if st.lengths:
            self._check_lengths_input(st, t)
        self.inputs[st.name] = t
        self._add_node(Node(st.name, "input", None, (), t, 0, st.span,
                            lengths=st.name if st.lengths else None), ())
        self.values[st.name] = (st.name, t)

    def _check_lengths_input(self, st: ast.Input, t: TensorType) -> None:
        """`input x: float[B, T, 80] lengths`: axis 1 is a symbolic length, not the batch's."""
        where = f"input {st.name}: {st.dtype}[B, T, ...] lengths"
        if t.rank < 2:
            raise error(f"input '{st.name}' has no time axis for `lengths`: it has {t.rank} dim", st.span,
                        help=f"lengths run along axis 1, after the batch: {where}")
        time = t.dims[1]
        if time.is_Integer or time == t.dims[0]:
            what = f"the fixed size {time}" if time.is_Integer else f"the batch dim {fmt_dim(time)}"
            raise error(f"input '{st.name}': `lengths` needs a symbolic sequence length on axis 1, "
                        f"not {what}", st.dims[1].span if st.dims[1].span else st.span,
                        help=f"name the length with a symbol ({where}), or drop `lengths`")

    def _lengths_of(self, call: ast.Call, rule, args, sources, inputs, out, in_segments) -> str | None:
        """The input whose per-sequence lengths the layer's output carries (or
        None), after the layer's own rule says it can take them
        (seqdsl.layers.base.Layer.check_lengths; docs/language.md, "Variable lengths")."""
        carried = [self.node_map[s].lengths for s in sources]
        origin = carried[0]
        if not any(carried):
            return None
        if in_segments and origin is not None and (out.rank < 2 or out.dims[1] != inputs[0].dims[1]):
            # each segment's valid steps are cut from its input's lengths: one time axis through the body
            raise error(f"{call.name}: inside segments(...) a layer on a value with per-sequence lengths must "
                        f"keep the time axis ({inputs[0]} -> {out}; input '{origin}' declares `lengths`)",
                        call.span, help="move the layer out of the segments body, or drop `lengths` from "
                                        f"input '{origin}'")
        for key, src, ctx, ty in zip(rule.context_args(), sources[1:], carried[1:], inputs[1:]):
            if ctx is None or rule.masks_context:
                continue
            if ctx != origin or origin is None or ty.rank < 2 or inputs[0].dims[1] != ty.dims[1]:
                mine = f"input '{origin}'s" if origin else "none"
                raise error(f"{call.name}: {key}= carries input '{ctx}'s per-sequence lengths, "
                            f"but its input carries {mine}", call.span,
                            help="combine values that carry the same lengths (derived from one input "
                                 "declared `lengths`, the time axis unchanged)")
        if origin is None:
            return None
        try:
            rule.check_lengths(args, inputs, out)
        except LayerError as exc:
            message = exc.message if exc.message.startswith(call.name) else f"{call.name}: {exc.message}"
            raise error(f"{message} (input '{origin}' declares `lengths`)", call.span, help=exc.help) from None
        time = self.inputs[origin].dims[1]
        if out.rank < 2 or time not in out.dims[1].free_symbols:
            return None         # the time axis is consumed (time_mean, time_last)
        try:
            length_tree(out.dims[1], str(time))
        except ValueError as exc:
            raise error(f"{call.name}: cannot follow the per-sequence lengths of input '{origin}': {exc}",
                        call.span, help=f"drop `lengths` from input '{origin}'") from None
        return origin

    def _same_lengths(self, a: str, b: str, span) -> str | None:
        """An `add`'s lengths: both sides carry the same input's, or none."""
        la, lb = self.node_map[a].lengths, self.node_map[b].lengths
        if la != lb:
            which = " and ".join(f"input '{x}'s" if x else "no" for x in (la, lb))
            raise error(f"add: the two values carry different per-sequence lengths ({which})", span,
                        help="add values that carry the same lengths (derived from one input declared `lengths`)")
        return la

    def _bind(self, st: ast.Bind) -> None:
        self._claim(st.name, st.span)
        for more in st.more:
            if more.name in st.names[:st.more.index(more) + 1]:
                raise error(f"name '{more.name}' is bound twice in one statement", more.span,
                            help="each part of a split gets its own name")
            self._claim(more.name, more.span)
        if st.source.name not in self.values:
            hint = suggest(st.source.name, self.values)
            what = "a let constant, not a tensor" if st.source.name in self.lets else "not bound"
            raise error(f"'{st.source.name}' is {what}", st.source.span,
                        help=hint or "a pipeline starts from an input or an earlier bound value")
        x = self.values[st.source.name]
        if st.more:
            self._bind_parts(st, x)
            return
        if st.stages:
            self._check_expansion(st.stages)
            x = self.run_stages(st.stages, x, st.name, (), self.lets, 0, ())
        self.values[st.name] = x

    def _bind_parts(self, st: ast.Bind, x) -> None:
        """`a, b = h -> ... -> split(2)` as a model statement."""
        if len(st.stages) > 1:
            self._check_expansion(st.stages[:-1])
        values = self._split_parts(st.names, st.stages, x, "", (), self.lets, 0, (), st.span, st.source.name)
        self.values.update(zip(st.names, values))

    def _split_parts(self, names, stages, x, base, scope, env, depth, stack, span, source) -> list:
        """`a, b = h -> ... -> split(2)`: the stages before the split run once
        (their nodes named after the first name), then one `split` node per
        name, `part=i`, named `<base><name>.split`; the values, one per name."""
        last = stages[-1] if stages else None
        if not (isinstance(last, ast.Call) and last.name == "split"):
            raise error(f"binding {len(names)} names needs the pipeline to end with split({len(names)})",
                        last.span if last is not None else span,
                        help=f"{', '.join(names)} = {source} -> ... -> split({len(names)}): "
                             "one name per part of the channels")
        if any(a.key == "part" for a in last.args):
            raise error("split's part= is set by the names bound: one part each", last.span,
                        help=f"drop part=, or bind one name: {names[0]} = ... -> split(..., part=0)")
        if last.alias:
            raise error("a split that binds several names makes one layer per name: it cannot take `as`",
                        last.span, help="remove the `as NAME`")
        if len(stages) > 1:
            x = self.run_stages(stages[:-1], x, base + names[0], scope, env, depth, stack)
        key = self.stage_keys(stages)[-1]     # `split`, or `split[1]` after another split
        values = []
        for i, target in enumerate(names):
            part = ast.Call("split", last.args + (ast.Arg("part", ast.Literal(i, last.span), last.span),),
                            last.span, last.name_span)
            out = self._layer(part, x, f"{base}{target}.{key}", scope, env)
            parts = self.node_map[out[0]].args.parts
            count = parts if isinstance(parts, int) else len(parts)
            if count != len(names):
                raise error(f"split makes {count} parts, but {len(names)} names are bound",
                            last.span, help=f"bind {count} names, or split into {len(names)} parts")
            values.append(out)
        return values

    def _add_value(self, stage: ast.Call, x, name, scope, env):
        """`y = a -> add(b)`: the graph's `add` node (the one a residual
        makes), a + b, over two values of the same shape."""
        if stage.alias:
            raise error("add has no weights to name: it cannot take `as`", stage.span, help="remove the `as NAME`")
        if len(stage.args) != 1 or stage.args[0].key not in (None, "other"):
            raise error(f"add takes one value, the one to add, got {len(stage.args)} argument(s)", stage.span,
                        help="y = a -> add(b); for three values chain them: a -> add(b) -> add(c)")
        arg = stage.args[0]
        value = self.eval(arg.value, env, "arg")
        if not isinstance(value, Ref):
            message = (f"unknown name '{value}': add( ) must name a value bound earlier in the model"
                       if isinstance(value, str) else
                       f"add( ) must name a value bound earlier in the model, got {_describe(value)}")
            raise error(message, arg.span, help=(self._unbound_help(value) or suggest(str(value), self.values))
                        if isinstance(value, str) else None)
        other = self._ref_value(value)
        if any(s.kind == "segments" for s in scope) and not self._in_segments(other[0], scope):
            raise error("add cannot combine values inside segments(...): the body runs segment by segment, "
                        "the other value is whole", stage.span,
                        help="combine the values before or after the segments stage, or bind the other "
                             "value inside the segments body")
        tx, to = x[1], other[1]
        if tx.dtype != "float" or to.dtype != "float" or tx.rank != to.rank or not all(
                dims_equal(a, b) for a, b in zip(tx.dims, to.dims)):
            raise error(f"add needs the same shape: the input is {tx}, the other value is {to}", arg.span,
                        help="no broadcasting: bring both to one shape first (e.g. a linear to the "
                             "same channels, or embed token ids first)")
        node = Node(name, "add", None, (tx, to), tx, 0, stage.span, scope, None, (x[0], other[0]),
                    self._same_lengths(x[0], other[0], arg.span))
        self._add_node(node, (x[0], other[0]))
        return (name, tx)

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
                local = self.locals.get(e.name)
                if local is not None:
                    return Ref(e.name, e.span, local.value[0])
                if e.name in self.values:
                    return Ref(e.name, e.span, self.values[e.name][0])
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
        """Run a pipeline's stages, or a body's items (stages and `ast.Line`s), on x."""
        if depth > MAX_NESTING:
            raise error(f"combinators and blocks nested more than {MAX_NESTING} deep", stages[0].span)
        if any(isinstance(s, ast.Line) for s in stages):
            return self._run_body(stages, x, prefix, scope, env, depth, stack)
        for stage, key in zip(stages, self.stage_keys(stages)):
            x = self._stage(stage, x, f"{prefix}.{key}", scope, env, depth, stack)
        return x

    def _stage(self, stage, x, name, scope, env, depth, stack):
        if isinstance(stage, ast.Call):
            if stage.name in VALUE_STAGES:
                return self._add_value(stage, x, name, scope, env)
            if stage.name in LAYERS:
                return self._layer(stage, x, name, scope, env)
            if stage.name in self.blocks:
                return self._block(stage, x, name, scope, env, depth, stack)
            candidates = list(LAYERS) + list(self.blocks) + list(COMBINATORS) + list(VALUE_STAGES)
            help = absent_concept(stage.name) or suggest(stage.name, candidates)
            if not stage.args and (stage.name in self.values or isinstance(env.get(stage.name), Ref)):
                what = "a value of the model" if stage.name in self.values else "a block parameter"
                help = (f"'{stage.name}' is {what}: a line of a body starts from a name bound in the body; "
                        f"bring the value in with add({stage.name}) or mul({stage.name})")
            raise error(f"unknown layer '{stage.name}'", stage.name_span,
                        help=help or "`seqdsl layers` lists the layer kinds (docs/language.md describes them), "
                                     "or define a block")
        if isinstance(stage, ast.Repeat):
            return self._repeat(stage, x, name, scope, env, depth, stack)
        if isinstance(stage, ast.Residual):
            return self._residual(stage, x, name, scope, env, depth, stack)
        return self._segments(stage, x, name, scope, env, depth, stack)

    # ------------------------------------------------------------ names in bodies
    def _run_body(self, items, x, prefix, scope, env, depth, stack):
        """A body with lines that bind names or start from one (docs/language.md,
        "Names in bodies"). The body's current value starts as x; a line of
        stages, or a line starting from a bound name without `=`, replaces it;
        a bind line leaves it and binds its result. The stages that make the
        current value are named as a body's stages are (`prefix.linear`); a
        bind line's `prefix.NAME.linear`. The names are the body's own: gone
        when it ends (each repeat copy binds its own), and each must be read."""
        main = [s for i in items for s in ((i,) if not isinstance(i, ast.Line) else
                                           i.stages if not i.names else ())]
        keys = iter(self.stage_keys(main))
        taken = {s.alias for s in main if s.alias}
        bound: list[str] = []
        seg = next((s.path for s in scope if s.kind == "segments"), None)
        try:
            for item in items:
                if not isinstance(item, ast.Line):
                    x = self._stage(item, x, f"{prefix}.{next(keys)}", scope, env, depth, stack)
                    continue
                start = x
                if item.source is not None:
                    start = self._line_source(item.source, scope, seg)
                if not item.names:
                    if x[0] not in self.read and x[0] not in self._kept:
                        raise error("this line starts from a bound name, so the value before it is never used",
                                    item.source.span,
                                    help="use that value (bind it: `y = ...`, or combine it: mul(...)), "
                                         "or remove the stages that make it")
                    x = start
                    for stage in item.stages:
                        x = self._stage(stage, x, f"{prefix}.{next(keys)}", scope, env, depth, stack)
                    continue
                for n in item.names:
                    self._claim_local(n, env, stack, taken, item.names)
                if len(item.names) > 1:
                    source = item.source.name if item.source is not None else "..."
                    values = self._split_parts(item.bound, item.stages, start, prefix + ".", scope, env,
                                               depth, stack, item.span, source)
                elif item.stages:
                    values = [self.run_stages(item.stages, start, f"{prefix}.{item.bound[0]}", scope, env,
                                              depth, stack)]
                else:
                    values = [start]
                for n, value in zip(item.names, values):
                    self.locals[n.name] = _Local(value, n.span, seg)
                    bound.append(n.name)
            for name in bound:
                local = self.locals[name]
                if local.value[0] not in self.read and local.value[0] != x[0]:
                    raise error(f"'{name}' is bound but never used", local.span,
                                help=f"use it (e.g. mul({name}), add({name}), or a line `{name} -> ...`), "
                                     "or remove the bind")
        finally:
            for name in bound:
                self._ended[name] = self.locals.pop(name).span
        return x

    def _unbound_help(self, word) -> str | None:
        """Help for a name that is not a value here, when a body that ended bound it."""
        if any(str(word) in frame for frame in self._hidden):
            return (f"'{word}' is bound in the body that calls this block, and a block sees its parameters "
                    "only: pass the value as an argument (`block b(g) { mul(g) }`, called as `b(g)`)")
        span = self._ended.get(str(word))
        if span is None:
            return None
        return (f"'{word}' was bound in a body (line {span.line}), and a body's names are its own: "
                "use it inside that body (or a body nested in it), or pass it to a block as an argument")

    def _line_source(self, name: ast.Name, scope, seg):
        local = self.locals.get(name.name)
        if local is None:      # the parser saw it bound; a refused bind is reported already
            raise error(f"'{name.name}' is not bound", name.span,
                        help="a line of a body starts from a name bound earlier in it")
        if seg is not None and local.segments != seg:
            raise error(f"'{name.name}' is bound outside this segments body: a line inside it may start "
                        "only from a name bound inside it (the body runs one segment at a time)", name.span,
                        help=f"bind '{name.name}' inside the segments body, or use it before or after the "
                             "segments stage")
        return local.value

    def _claim_local(self, n: ast.Name, env, stack, taken, names) -> None:
        """Refuse a body-bound name that would shadow another name, at its span."""
        name, span = n.name, n.span
        if any(m.name == name for m in names[:names.index(n)]):
            raise error(f"name '{name}' is bound twice in one line", span,
                        help="each part of a split gets its own name")
        earlier = self.locals.get(name)
        if earlier is not None:
            raise error(f"name '{name}' is already bound in this body (at line {earlier.span.line})", span,
                        help="a name is bound once per body; choose a new name")
        what = None
        if name in env:
            what = (f"a parameter of block '{stack[-1]}'" if stack else
                    f"a let (at line {self.bound_at[name].line})" if name in self.bound_at else "a let")
        elif name in self.values and not stack:
            what = f"a value of the model (bound at line {self.bound_at[name].line})" \
                if name in self.bound_at else "a value of the model"
        elif name in LAYERS or name in VALUE_STAGES:
            what = "a layer kind"
        elif name in self.blocks:
            where = self.blocks[name].span
            what = f"a block (defined at {where.path}:{where.line})" if where is not None else "a block"
        elif name in self.symbols:
            what = "a symbolic dim of an input"
        elif name in taken or name in self._alias_bases:
            what = "a layer's `as` name"
        if what is not None:
            raise error(f"name '{name}' is already {what}: a name bound in a body may not shadow it", span,
                        help="choose a new name")

    def _ref_value(self, ref: Ref):
        """The (node, type) a Ref names: the node it stood for where it was written."""
        if ref.node is not None:
            return (ref.node, self.node_map[ref.node].output)
        return self.values[ref.name]

    def _in_segments(self, node: str, scope) -> bool:
        """Whether node was made inside the segments body enclosing `scope`."""
        seg = next((s.path for s in scope if s.kind == "segments"), None)
        mine = self.node_map[node].segments_scope()
        return seg is not None and mine is not None and mine.path == seg

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
            elif isinstance(s, ast.Line):     # a split binding n names makes n split layers
                total += self._size(s.stages, env, stack) + max(0, len(s.names) - 1)
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
        kept = x[0] not in self._kept
        self._kept.add(x[0])
        try:
            y = self.run_stages(stage.body, x, name, inner, env, depth + 1, stack)
        finally:
            if kept:
                self._kept.discard(x[0])
        tx, ty = x[1], y[1]
        if tx.dtype != ty.dtype or tx.rank != ty.rank or not all(
                dims_equal(a, b) for a, b in zip(tx.dims, ty.dims)):
            raise error(f"residual body changes the shape from {tx} to {ty}", stage.span,
                        help="x + body(x) needs the body to keep the shape; "
                             f"end the body with a layer back to {fmt_dim(tx.dims[-1])} channels")
        args = ResidualArgs(scale=float(scale)) if scale != 1 else None
        # `.add`, unless a stage of the body took it (`residual { ... -> add(h) }`)
        add_name = f"{name}.add" if f"{name}.add" not in self.node_map else f"{name}.residual_add"
        add = Node(add_name, "add", args, (tx, ty), tx, 0, stage.span, inner, None, (x[0], y[0]),
                   self._same_lengths(x[0], y[0], stage.span))
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
        caller, self.locals = self.locals, {}     # a block body sees its parameters, not the caller's names
        self._hidden.append(caller)
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
        finally:
            self.locals = caller
            self._hidden.pop()

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
                message = (f"unknown name '{value}': {key}= must name a value bound earlier in the model"
                           if isinstance(value, str) else
                           f"{key}= must name a value bound earlier in the model, got {_describe(value)}")
                raise error(message, spans[key], help=(self._unbound_help(value) or suggest(str(value), self.values))
                            if isinstance(value, str) else None)
            src, ty = self._ref_value(value)
            sources.append(src)
            inputs.append(ty)
        in_segments = any(s.kind == "segments" for s in scope)
        inside = in_segments and len(sources) > 1 and all(self._in_segments(s, scope) for s in sources[1:])
        if inside and not rule.aligned_context:
            raise error(f"{call.name} reads its {rule.context_args()[0]}= whole, but that value is bound inside "
                        "this segments body, one segment at a time", call.span,
                        help="bind the value before the segments stage")
        # Repeats and blocks produce many identical layers: validate and infer
        # each distinct (kind, args, input types) once per model.
        key = (call.name, _freeze(raw), tuple(inputs), in_segments, inside)
        cached = self._rule_cache.get(key)
        try:
            if cached is None:
                args = self._validate(call, rule, raw, spans, env)
                try:
                    out = rule.infer_shape(args, inputs, _LayerContext(self, in_segments, inside))
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
        lengths = self._lengths_of(call, rule, args, sources, inputs, out, in_segments)
        alias = call.alias
        if alias:
            # inside repeat(N) each copy has its own name: in_proj[0], in_proj[1], ...
            alias += "".join(f"[{s.index}]" for s in scope if s.kind == "repeat")
            if alias in self.aliases:
                raise error(f"layer name '{alias}' is already used", call.span,
                            help="`as NAME` names one layer instance (inside repeat, one per copy: NAME[i])")
            self.aliases[alias] = name
            self._alias_bases.add(call.alias)
        node = Node(name, call.name, args, tuple(inputs), out, params, call.span, scope, alias,
                    tuple(sources), lengths)
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
        self.read.update(sources)


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
