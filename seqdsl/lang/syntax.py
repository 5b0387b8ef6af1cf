"""Text -> AST. The grammar is grammars/seq.lark; this module only drives Lark.

* `_Newlines` is a post-lexer that drops the newlines that do not end a
  statement or stage (continuation rules of docs/language.md, "Lexical rules").
* `_ToAst` turns parse-tree rules into frozen `seqdsl.ast` nodes as the LALR
  parser reduces them (no intermediate tree is built).
* Lark's exceptions become `SpecError`s with the position and what was expected.
"""
from __future__ import annotations

import re
import threading
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import lark
from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput
from lark.lexer import PatternRE, PatternStr
from lark.parsers.lalr_analysis import Shift

from . import ast, parse_table
from ..errors import SourceFile, Span, SpecError, error, suggest
from ..limits import MAX_DIAGNOSTICS, MAX_EXPR_DEPTH, MAX_ITEMS, MAX_LITERAL_DIGITS, MAX_NESTING, MAX_WRITTEN

_GRAMMAR_CANDIDATES = (
    Path(__file__).resolve().parent.parent / "grammars" / "seq.lark",         # installed wheel
    Path(__file__).resolve().parent.parent.parent / "grammars" / "seq.lark",  # source checkout
)

KEYWORDS = ("model", "block", "let", "input", "output", "repeat", "residual",
            "segments", "as", "import", "true", "false")
_STATEMENT_KEYWORDS = {"OUTPUT", "LET", "INPUT", "LOSS", "MODEL", "BLOCK", "IMPORT", "$END"}

_TERMINAL_WORDS = {
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "STRING": "a string",
    "_NL": "a new line", "_ARROW": "'->'", "LBRACE": "'{'", "RBRACE": "'}'",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','",
    "EQUAL": "'='", "COLON": "':'", "LOSS": "'loss'", "$END": "end of file", "PLUS": "'+'",
    "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'", "PERCENT": "'%'",
}


def _describe_terminal(name: str) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    if name.lower() in KEYWORDS:
        return f"'{name.lower()}'"
    return name.lower().replace("_", " ")


class _Newlines:
    """Drop newlines inside ( ) and [ ], around `->`, after `{`, before `}`,
    at the start of the file, and collapse runs of them.

    Also refuses brackets nested more than MAX_NESTING deep and more than
    MAX_ITEMS items in one ( ) or [ ], counted on tokens (so brackets in
    comments and strings do not count) before the parser builds them."""

    always_accept = ("_NL",)

    def process(self, stream):
        return _loss_keyword(self._settle(stream))

    def _settle(self, stream):
        depth = 0      # open ( and [: newlines inside do not end anything
        nesting = 0    # open ( [ {
        commas = [None]  # commas seen in each open ( and [, innermost last (None: outside, or a { })
        prev = None
        pending = None
        for tok in stream:
            kind = tok.type
            if kind == "_NL":
                if depth == 0 and prev not in (None, "_ARROW", "LBRACE") and pending is None:
                    pending = tok
                continue
            if pending is not None:
                if kind not in ("_ARROW", "RBRACE"):
                    yield pending
                pending = None
            if kind == "COMMA":
                if commas[-1] is not None:
                    commas[-1] += 1
                    if commas[-1] >= MAX_ITEMS:
                        raise _too_long(tok)
            elif kind in _OPENERS:
                nesting += 1
                if nesting > MAX_NESTING:
                    raise _too_deep(tok)
                if kind != "LBRACE":
                    depth += 1
                    commas.append(0)
                else:
                    commas.append(None)
            elif kind in _CLOSERS:
                if nesting:
                    nesting -= 1
                    commas.pop()
                if kind != "RBRACE" and depth:
                    depth -= 1
            yield tok
            prev = kind
        if pending is not None:
            yield pending


def _loss_keyword(tokens):
    """Retype `loss` as the LOSS keyword where it starts a statement and a
    name follows (`loss cross_entropy(logits)`). Anywhere else it stays a
    name, so specs that bind `loss = ...` or call a block `loss` mean what
    they meant before the statement existed."""
    prev = None
    held = None
    for tok in tokens:
        if held is not None:
            yield Token.new_borrow_pos("LOSS", str(held), held) if tok.type == "NAME" else held
            held = None
        if tok.type == "NAME" and tok == "loss" and prev in (None, "_NL", "LBRACE"):
            held = tok
        else:
            yield tok
        prev = tok.type
    if held is not None:
        yield held


_OPENERS = frozenset({"LPAR", "LSQB", "LBRACE"})
_CLOSERS = frozenset({"RPAR", "RSQB", "RBRACE"})


def _too_deep(tok: Token) -> SpecError:
    source = _TRANSFORMER.source or SourceFile("<string>", "")
    return error(f"brackets nested more than {MAX_NESTING} deep",
                 Span(source, tok.line, tok.column, tok.line, tok.column + 1),
                 help="flatten the expression or split the model into blocks")


def _too_long(tok: Token) -> SpecError:
    source = _TRANSFORMER.source or SourceFile("<string>", "")
    return error(f"more than {MAX_ITEMS} items between one pair of brackets",
                 Span(source, tok.line, tok.column, tok.line, tok.column + 1),
                 help="no layer takes that many arguments, nor a list that many values")


class _Seq:
    """A body's stages with the span of its braces (internal to the parser)."""

    __slots__ = ("items", "span")

    def __init__(self, items, span):
        self.items = items
        self.span = span


class _StageLine:
    """A body line of stages (internal to the parser: `body` flattens it, or
    keeps it for `_resolve_body` when its first stage may name a bound value)."""

    __slots__ = ("stages",)

    def __init__(self, stages):
        self.stages = stages


def _bare(stage) -> bool:
    """A call with no arguments and no `as`: a layer (`silu`) or a bound name (`x`)."""
    return isinstance(stage, ast.Call) and not stage.args and stage.alias is None


def _resolve_body(items, visible: frozenset) -> tuple:
    """A body's items with its lines settled: a line whose first stage is a
    bare name bound earlier (in this body, or a body around it: `visible`)
    starts from that value (`ast.Line` with a source); any other line of
    stages is flattened into the body's stages. Names are bound by the
    `ast.Line`s that carry names; which of them may be bound (not a layer, a
    block, a model value) is the checker's to say."""
    out = []
    for item in items:
        if isinstance(item, _StageLine):
            first, *rest = item.stages
            if first.name in visible:
                span = Span(first.span.source, first.span.line, first.span.column,
                            item.stages[-1].span.end_line, item.stages[-1].span.end_column)
                out.append(ast.Line((), ast.Name(first.name, first.name_span),
                                    _resolve_stages(rest, visible), span))
            else:
                out.extend(_resolve_stages(item.stages, visible))
        elif isinstance(item, ast.Line):
            stages, source = item.stages, item.source
            if source is None and stages and _bare(stages[0]) and stages[0].name in visible:
                source, stages = ast.Name(stages[0].name, stages[0].name_span), stages[1:]
            out.append(replace(item, source=source, stages=_resolve_stages(stages, visible)))
            visible = visible | set(item.bound)
        else:
            out.extend(_resolve_stages((item,), visible))
    return tuple(out)


def _resolve_stages(stages, visible: frozenset) -> tuple:
    """`_resolve_body` for the bodies of these stages' combinators."""
    out = []
    for stage in stages:
        body = getattr(stage, "body", None)
        if body and any(isinstance(i, (_StageLine, ast.Line)) or getattr(i, "body", None) for i in body):
            stage = replace(stage, body=_resolve_body(body, visible))
        out.append(stage)
    return tuple(out)


# Tokens the AST does not keep: punctuation and keywords (kept by the parser
# only so that every rule knows where it starts and ends).
_SKIP = frozenset({"LPAR", "RPAR", "LSQB", "RSQB", "LBRACE", "RBRACE", "COMMA", "EQUAL",
                   "COLON", "_NL", "_ARROW", "LOSS"} | {k.upper() for k in KEYWORDS})


class _ToAst(Transformer):
    """Parse-tree rules -> ast nodes, called by the LALR parser at each reduce.

    The parser keeps all tokens (keep_all_tokens), so each rule's span runs
    from its first child to its last; no Tree objects are ever built, which
    makes parsing about twice as fast as parse-then-transform.
    """

    def __init__(self):
        super().__init__(visit_tokens=False)
        self.source: SourceFile | None = None
        self.expr_depth: dict[int, int] = {}  # id(operator node) -> depth, for the current parse
        self.written = 0  # statements and stages built in the current parse
        #: a body bind was reduced in the current statement or block, whose
        #: bodies then go through _resolve_body
        self.body_binds = False

    # -- helpers
    def _count(self, node):
        """Count a statement or stage against MAX_WRITTEN (the AST's memory)."""
        self.written += 1
        if self.written > MAX_WRITTEN:
            raise error(f"more than {MAX_WRITTEN} statements and stages in one file", node.span,
                        help="use repeat(N) { ... } or blocks instead of writing every layer out")
        return node

    def _span(self, children) -> Span:
        first = last = None
        for c in children:
            if c is not None:
                if first is None:
                    first = c
                last = c
        a = first if isinstance(first, Token) else first.span
        b = last if isinstance(last, Token) else last.span
        return Span(self.source, a.line, a.column, b.end_line, b.end_column)

    def _tok_span(self, tok: Token) -> Span:
        return Span(self.source, tok.line, tok.column, tok.end_line, tok.end_column)

    @staticmethod
    def _nodes(children):
        """Children that are not punctuation, keywords or placeholders."""
        return [c for c in children if c is not None and (type(c) is not Token or c.type not in _SKIP)]

    # -- top level
    def start(self, children):
        items = self._nodes(children)
        imports = tuple(i for i in items if isinstance(i, ast.Import))
        blocks = tuple(i for i in items if isinstance(i, ast.BlockDef))
        models = tuple(i for i in items if isinstance(i, ast.ModelDef))
        return ast.Module(imports, blocks, models, self.source)

    def import_stmt(self, children):
        return ast.Import(_unquote(children[1]), self._span(children))

    def block_def(self, children):
        name, *params, body = self._nodes(children)
        items = body.items
        if self.body_binds:
            items = _resolve_body(items, frozenset())
            self.body_binds = False
        return ast.BlockDef(str(name), tuple(params), items, self._span(children),
                            self._tok_span(name))

    def param(self, children):
        name, *default = self._nodes(children)
        return ast.Param(str(name), default[0] if default else None, self._span(children))

    def model_def(self, children):
        name, *statements = self._nodes(children)
        return ast.ModelDef(str(name), tuple(statements), self._span(children), self._tok_span(name))

    # -- statements
    def let_stmt(self, children):
        name, value = self._nodes(children)
        return self._count(ast.Let(str(name), value, self._span(children)))

    def input_stmt(self, children):
        name, dtype, *dims = self._nodes(children)
        marker = dims.pop() if type(dims[-1]) is Token else None
        if marker is not None and str(marker) != "lengths":
            raise error(f"unknown input marker '{marker}' after the dims", self._tok_span(marker),
                        help="the one marker is `lengths` (per-sequence lengths along axis 1): "
                             f"input {name}: {dtype}[...] lengths")
        return self._count(ast.Input(str(name), str(dtype), self._tok_span(dtype), tuple(dims),
                                     self._span(children), marker is not None))

    def bind_stmt(self, children):
        nodes = self._nodes(children)
        names = [c for c in nodes if type(c) is Token]   # the targets, then the source; stages are nodes
        (name, *more), source = names[:-1], names[-1]
        stages = nodes[len(names):]
        if self.body_binds:
            stages = _resolve_stages(stages, frozenset())
            self.body_binds = False
        return self._count(ast.Bind(str(name), ast.Name(str(source), self._tok_span(source)), tuple(stages),
                                    self._span(children),
                                    tuple(ast.Name(str(n), self._tok_span(n)) for n in more)))

    def output_stmt(self, children):
        names = self._nodes(children)
        return ast.Output(tuple(ast.Name(str(n), self._tok_span(n)) for n in names), self._span(children))

    def loss_stmt(self, children):
        (call,) = self._nodes(children)
        return ast.Loss(call, self._span(children))

    # -- stages
    def body(self, children):
        items = []
        for line in self._nodes(children):
            if isinstance(line, _StageLine):
                if self.body_binds and _bare(line.stages[0]):
                    items.append(line)       # maybe a line from a bound name: _resolve_body decides
                else:
                    items.extend(line.stages)
            else:
                items.append(line)
        return _Seq(tuple(items), self._span(children))

    def stage_line(self, children):
        return _StageLine(tuple(self._nodes(children)))

    def body_bind(self, children):
        nodes = self._nodes(children)
        names = tuple(ast.Name(str(n), self._tok_span(n)) for n in nodes if type(n) is Token)
        stages = tuple(n for n in nodes if type(n) is not Token)
        self.body_binds = True
        return self._count(ast.Line(names, None, stages, self._span(children)))

    def aliased_stage(self, children):
        core, alias = self._nodes(children)
        return _with_alias(core, str(alias), self._span(children))

    def call(self, children):
        name, *args = self._nodes(children)
        _check_arg_order(args)
        return self._count(ast.Call(str(name), tuple(args), self._span(children), self._tok_span(name)))

    def repeat(self, children):
        *args, body = self._nodes(children)
        _check_arg_order(args)
        return self._count(ast.Repeat(tuple(args), body.items, self._span(children)))

    def residual(self, children):
        *args, body = self._nodes(children)
        _check_arg_order(args)
        return self._count(ast.Residual(body.items, self._span(children), args=tuple(args)))

    def segments(self, children):
        *args, body = self._nodes(children)
        _check_arg_order(args)
        return self._count(ast.Segments(tuple(args), body.items, self._span(children)))

    def positional_arg(self, children):
        return ast.Arg(None, children[0], self._span(children))

    def keyword_arg(self, children):
        key, value = self._nodes(children)
        return ast.Arg(str(key), value, self._span(children))

    # -- expressions
    def _deeper(self, node, *operands):
        """Record an operator node's depth; refuse chains the evaluator would
        have to recurse through (`1+1+...+1`, `- - - 8`)."""
        depth = 1 + max(self.expr_depth.get(id(o), 0) for o in operands)
        if depth > MAX_EXPR_DEPTH:
            raise error(f"expression nested more than {MAX_EXPR_DEPTH} operators deep", node.span,
                        help="split it into several `let`s")
        self.expr_depth[id(node)] = depth
        return node

    def _binop(self, children):
        left, op, right = children
        return self._deeper(ast.BinOp(str(op), left, right, self._span(children)), left, right)

    add = sub = mul = div = floordiv = mod = pow = _binop

    def neg(self, children):
        return self._deeper(ast.Neg(children[1], self._span(children)), children[1])

    def pos(self, children):
        return children[1]

    def paren(self, children):
        return children[1]

    def int_lit(self, children):
        (tok,) = children
        digits = str(tok).replace("_", "")
        if len(digits) > MAX_LITERAL_DIGITS:
            raise error(f"integer literal with {len(digits)} digits is too large",
                        self._tok_span(tok), help=f"literals are limited to {MAX_LITERAL_DIGITS} digits")
        _check_underscores(tok, self._tok_span(tok))
        return ast.Literal(int(digits), self._tok_span(tok))

    def float_lit(self, children):
        (tok,) = children
        if len(tok) > 2 * MAX_LITERAL_DIGITS:
            raise error("number literal is too long", self._tok_span(tok))
        _check_underscores(tok, self._tok_span(tok))
        text = str(tok).replace("_", "")
        value = float(text)
        # a literal means the number written: refuse one a float cannot hold
        # (`1e999` would become inf, `1e-400` zero), which no printer could give back
        if value == float("inf"):
            raise error(f"number literal {tok} is too large for a float (it would be infinity)",
                        self._tok_span(tok), help="floats go up to about 1.8e308")
        if value == 0.0 and any(c in "123456789" for c in text.lower().partition("e")[0]):
            raise error(f"number literal {tok} is too small for a float (it would be 0)",
                        self._tok_span(tok), help="the smallest float above 0 is about 5e-324; write 0.0 for zero")
        return ast.Literal(value, self._tok_span(tok))

    def string_lit(self, children):
        return ast.Literal(_unquote(children[0]), self._tok_span(children[0]))

    def true_lit(self, children):
        return ast.Literal(True, self._tok_span(children[0]))

    def false_lit(self, children):
        return ast.Literal(False, self._tok_span(children[0]))

    def name_ref(self, children):
        return ast.Name(str(children[0]), self._tok_span(children[0]))

    def func_call(self, children):
        name, *args = self._nodes(children)
        return ast.FuncCall(str(name), tuple(args), self._span(children))

    def list_lit(self, children):
        return ast.ListExpr(tuple(self._nodes(children)), self._span(children))


_STRAY_UNDERSCORE = re.compile(r"(?<![0-9])_|_(?![0-9])")


def _check_underscores(tok: Token, span: Span) -> None:
    """The grammar's number terminals take any `_` in a digit run (see
    seq.lark); as in Python, one may only stand between two digits."""
    if _STRAY_UNDERSCORE.search(tok):
        raise error("malformed number: '_' may only stand between two digits", span,
                    help="write 1_000 or 1000")


def _check_arg_order(args) -> None:
    """Positional arguments come first (docs/language.md), as in Python."""
    seen_keyword = False
    for arg in args:
        if arg.key is not None:
            seen_keyword = True
        elif seen_keyword:
            raise error("positional argument after keyword argument", arg.span,
                        help="put positional arguments first, or name this one: key=value")


def _with_alias(stage, alias, span):
    return replace(stage, alias=alias)


def _unquote(tok) -> str:
    body = str(tok)[1:-1]
    return body.replace('\\"', '"').replace("\\\\", "\\")


_TRANSFORMER = _ToAst()
_LOCK = threading.Lock()


def grammar_file() -> Path:
    for path in _GRAMMAR_CANDIDATES:
        if path.is_file():
            return path
    raise RuntimeError("grammars/seq.lark not found next to the seqdsl package")  # pragma: no cover - a broken install


def _build(grammar: str) -> Lark:
    # No `cache=`: Lark's cache is a pickle, and unpickling a file from a
    # shared place (it was $TMPDIR/seqdsl-lark-$UID.cache) runs whatever code
    # another local user planted there, and a FIFO there hangs every command.
    return Lark(grammar, parser="lalr", lexer="basic", postlex=_Newlines(),
                keep_all_tokens=True, maybe_placeholders=True, transformer=_TRANSFORMER)


@lru_cache(maxsize=1)
def _parser() -> Lark:
    """The LALR parser: from the table shipped beside the grammar (JSON,
    seqdsl.lang.parse_table) when it is this grammar's, else built."""
    path = grammar_file()
    grammar = path.read_text()
    return (parse_table.load(path, grammar, postlex=_Newlines(), transformer=_TRANSFORMER)
            or _build(grammar))


def parse_module(source: SourceFile, fast: bool = True) -> ast.Module:
    """Parse one file's text into an `ast.Module`, or raise SpecError.

    A valid file goes through `_FastDriver`; a file it cannot take (any syntax
    error) is parsed again by Lark's own parser, which reports the error.
    fast=False skips the fast driver (the tests compare the two).
    """
    parser = _parser()
    driver = _fast_driver() if fast else None
    runs = [parser.parse] if driver is None else [driver.parse, parser.parse]   # the driver declines with None
    with _LOCK:  # the in-parser transformer carries the current SourceFile
        try:
            for run in runs:
                # each run starts afresh: depths noted by a declined run belong
                # to nodes that are gone, whose ids new nodes may take
                _TRANSFORMER.source = source
                _TRANSFORMER.expr_depth = {}
                _TRANSFORMER.written = 0
                _TRANSFORMER.body_binds = False
                tree = run(source.text)
                if tree is not None:
                    return tree
        except UnexpectedInput as exc:
            first = _syntax_error(source, exc)
            raise SpecError(first.diagnostics + _later_syntax_errors(source, first)) from None
        finally:
            _TRANSFORMER.source = None
            _TRANSFORMER.expr_depth = {}


_RECOVER_CHARS = 200_000   # larger files report their first syntax error only
_ITEM_START = re.compile(r"(model|block|import)\b")


def _later_syntax_errors(source: SourceFile, first: SpecError) -> list:
    """The syntax errors after the first, each found by parsing again from
    the next line that starts a model, block or import (at column 1), with
    the lines before it blanked so positions stay those of the file; up to
    MAX_DIAGNOSTICS in all. Only syntax errors: a model after a broken one
    may use what the broken one would have defined."""
    if len(source.text) > _RECOVER_CHARS:   # each recovery parses the rest of the file again
        return []
    lines = source.text.split("\n")
    found = []
    err, start = first.diagnostics[0], 0
    while len(found) + 1 < MAX_DIAGNOSTICS and err.span is not None:
        at = err.span.line - 1
        if not (err.span.column == 1 and _ITEM_START.match(lines[at] if at < len(lines) else "")):
            at += 1        # the error is inside an item: skip to the next one
        at = max(at, start + 1)
        at = next((i for i in range(at, len(lines)) if _ITEM_START.match(lines[i])), None)
        if at is None:
            break
        start = at
        rest = SourceFile(source.path, "\n" * at + "\n".join(lines[at:]))
        _TRANSFORMER.source = rest
        _TRANSFORMER.expr_depth = {}
        _TRANSFORMER.written = 0
        _TRANSFORMER.body_binds = False
        try:
            _parser().parse(rest.text)
            break
        except UnexpectedInput as exc:
            err = _syntax_error(rest, exc).diagnostics[0]
        except SpecError as exc:   # a limit the parser checks (nesting, literal size)
            err = exc.diagnostics[0]
        found.append(err)
    return found


class _FastDriver:
    """Lark's LALR table and rule callbacks, run by one tight loop.

    Lark builds the parser (grammar, LALR table, the callbacks that call
    `_ToAst`); this only replaces the per-token machinery around it, which is
    most of the time on a large file: one compiled regex of the same
    terminals in the same order as Lark's basic lexer, keywords resolved the
    way Lark resolves them, the same `_Newlines` post-lexer, and the shift/reduce
    loop of `lark.parsers.lalr_parser_state.ParserState.feed_token` without
    a method call per token (benchmarks/check_speed.py measures both).

    It accepts exactly what Lark accepts and builds the same tree: on any
    input it cannot take (a character no terminal matches, a token the table
    has no action for) `parse` returns None and the caller parses the text
    with Lark itself, so every diagnostic still comes from Lark. The tests
    check both paths give equal ASTs on every spec in the repository, the
    conformance corpus and damaged specs (tests/test_syntax_fast.py).
    """

    def __init__(self, lark: Lark):
        terminals = sorted(lark.terminals, key=lambda t: (-t.priority, -t.pattern.max_width,
                                                          -len(t.pattern.value), t.name))
        # Lark's basic lexer drops a string terminal that a regex terminal of the
        # same priority matches whole (a keyword and NAME), and turns a regex
        # match that equals the string back into the keyword.
        keywords: dict[str, dict[str, str]] = {}
        dropped = set()
        for retok in terminals:
            if not isinstance(retok.pattern, PatternRE):
                continue
            regex = re.compile(retok.pattern.to_regexp())
            for strtok in terminals:
                if (isinstance(strtok.pattern, PatternStr) and strtok.priority == retok.priority
                        and regex.fullmatch(strtok.pattern.value)):
                    keywords.setdefault(retok.name, {})[strtok.pattern.value] = strtok.name
                    if strtok.pattern.flags <= retok.pattern.flags:
                        dropped.add(strtok.name)
        kept = [t for t in terminals if t.name not in dropped]
        if any(t.pattern.flags for t in kept) or any(not t.name.isidentifier() for t in kept):
            raise ValueError("terminal flags or names this driver does not handle")
        alternatives = "|".join(f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in kept)
        self.finditer = re.compile(alternatives + r"|(?P<_FAST_ERROR>[\s\S])").finditer
        self.keywords = keywords
        self.ignore = frozenset(lark.lexer_conf.ignore)
        self.newline_types = frozenset(t.name for t in kept if _may_match_newline(t.pattern.to_regexp()))
        core = lark.parser.parser.parser
        table = core.parse_table
        self.start_state = table.start_states["start"]
        self.end_state = table.end_states["start"]
        # Each rule once: (children to pop, goto symbol, callback), the callback
        # None for a `?rule` that hands its single child up unchanged.
        sentinel = object()
        reductions = {}
        for rule, callback in core.callbacks.items():
            if isinstance(rule, str):
                raise ValueError(f"terminal callback {rule}: not handled here")
            size = len(rule.expansion)
            identity = False
            if size == 1 and rule.options.expand1 and not rule.alias:
                try:
                    identity = callback([sentinel]) is sentinel
                except Exception:  # noqa: BLE001 - it does more than hand the child up
                    identity = False
            reductions[rule] = (size, rule.origin.name, None if identity else callback)
        # state -> symbol -> next state (an int: shift or goto) or a reduction
        # (a tuple), so the loop never hashes a Rule; a list, as Lark numbers
        # its states 0..n-1
        states = table.states
        if sorted(states) != list(range(len(states))):
            raise ValueError("parse states are not numbered 0..n-1")
        self.table = [{symbol: arg if action is Shift else reductions[arg]
                       for symbol, (action, arg) in states[state].items()}
                      for state in range(len(states))]

    def tokens(self, text: str):
        """The tokens Lark's lexer and `_Newlines` yield for `text`, then
        `$END`. Raises _Decline at a character no terminal matches."""
        last = None
        for last in _Newlines().process(self._lex(text)):
            yield last
        yield Token.new_borrow_pos("$END", "", last) if last is not None else Token("$END", "", 0, 1, 1)

    def _lex(self, text: str):
        """Lark's basic lexer: the same tokens with the same positions."""
        keywords, ignore, newline_types = self.keywords, self.ignore, self.newline_types
        make, Tok = str.__new__, Token
        line, line_start = 1, 0
        for m in self.finditer(text):
            kind = m.lastgroup
            if kind in ignore:        # skipped, but lines still counted, as Lark does
                if kind in newline_types:
                    value = m.group()
                    count = value.count("\n")
                    if count:
                        line += count
                        line_start = m.start() + value.rindex("\n") + 1
                continue
            if kind == "_FAST_ERROR":
                raise _Decline
            value = m.group()
            start = m.start()
            end = start + len(value)
            # a Token with the fields Lark's lexer gives it (set directly: 3x faster)
            tok = make(Tok, value)
            tok.value, tok.start_pos, tok.line, tok.column = value, start, line, start - line_start + 1
            if kind in newline_types:
                count = value.count("\n")
                if count:
                    line += count
                    line_start = start + value.rindex("\n") + 1
            tok.end_line, tok.end_column, tok.end_pos = line, end - line_start + 1, end
            tok.type = keywords[kind].get(value, kind) if kind in keywords else kind
            yield tok

    def parse(self, text: str):
        """The AST of `text`, or None when Lark must parse it (a syntax error)."""
        table, end_state = self.table, self.end_state
        state = self.start_state
        state_stack = [state]
        value_stack = []
        push_state, push_value = state_stack.append, value_stack.append
        try:
            for tok in self.tokens(text):
                kind = tok.type
                while True:  # ParserState.feed_token
                    entry = table[state].get(kind)
                    if entry is None:
                        return None
                    if entry.__class__ is int:
                        state = entry
                        push_state(state)
                        push_value(tok)
                        break
                    size, origin, callback = entry
                    if callback is None:   # a `?rule` handing its one child up: only the state changes
                        state = state_stack[-1] = table[state_stack[-2]][origin]
                        continue
                    if size:
                        children = value_stack[-size:]
                        del state_stack[-size:]
                        del value_stack[-size:]
                    else:
                        children = []
                    push_value(callback(children))
                    state = table[state_stack[-1]][origin]
                    push_state(state)
                    if state == end_state and kind == "$END":
                        return value_stack[-1]
        except _Decline:
            pass
        return None


class _Decline(Exception):
    """The fast driver leaves this text to Lark."""


def _may_match_newline(regexp: str) -> bool:
    """Lark's own test (lark.lexer._regexp_has_newline) for a terminal whose
    tokens may span lines."""
    return ("\n" in regexp or "\\n" in regexp or "\\s" in regexp or "[^" in regexp
            or ("(?s" in regexp and "." in regexp))


@lru_cache(maxsize=1)
def _fast_driver() -> _FastDriver | None:
    """The `_FastDriver` for `_parser()`, or None where this Lark's internals
    may differ from what it was written against (Lark 1.x; tested on 1.3):
    Lark alone is then used."""
    if not lark.__version__.startswith("1."):
        return None
    try:
        return _FastDriver(_parser())
    except Exception:  # noqa: BLE001 - any mismatch means: parse with Lark alone
        return None


def _syntax_error(source: SourceFile, exc: UnexpectedInput) -> SpecError:
    line = getattr(exc, "line", None) or 1
    column = getattr(exc, "column", None) or 1
    if isinstance(exc, UnexpectedCharacters):
        char = source.text[exc.pos_in_stream] if exc.pos_in_stream < len(source.text) else ""
        hint = ('a string closes with " on the same line and holds at most 256 escapes (\\" or \\\\)'
                if char == '"' else None)
        return error(f"unexpected character {char!r}", Span(source, line, column, line, column + 1),
                     help=hint)
    token = getattr(exc, "token", None)
    expected = sorted(getattr(exc, "expected", None) or getattr(exc, "accepts", None) or ())
    words = [_describe_terminal(t) for t in expected if t != "_NL"] or [_describe_terminal(t) for t in expected]
    if isinstance(exc, UnexpectedEOF) or token is None or token.type == "$END":
        lines = source.lines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
        found, width = "end of file", 1
        kind = "$END"
    else:
        line, column = token.line, token.column
        found = "a new line" if token.type == "_NL" else repr(str(token))
        width = max(1, len(str(token))) if token.type != "_NL" else 1
        kind = token.type
    span = Span(source, line, column, line, column + width)
    still_open, balanced, before = _open_brackets(source, line, column)
    open_bracket = still_open[-1] if still_open else None
    if before is not None and before.type == "_ARROW" and (kind in _STATEMENT_KEYWORDS or kind == "RBRACE"):
        return error(f"'->' with no stage after it (found {found})",
                     Span(source, before.line, before.column, before.line, before.column + 2),
                     help="write the next stage after the '->', or remove the '->'")
    if kind in _CLOSERS:
        inside_parens = open_bracket is not None and open_bracket[0] != "{"   # `linear(4]`
        if _OPENING[str(token)] not in (b for b, _ in still_open) and not inside_parens:
            # an extra `}`: point at it, not at what the parser wanted
            opener = _OPENING[str(token)]
            return error(f"unmatched '{token}': no '{opener}' is open here", span,
                         help=f"remove this '{token}', or add the '{opener}' it was meant to close")
        opener, (at_line, at_column) = open_bracket
        if _CLOSING[opener] != str(token):
            return error(f"'{token}' does not close the '{opener}' opened at line {at_line}", span,
                         help=f"this '{opener}' at {at_line}:{at_column} is closed by '{_CLOSING[opener]}'")
    # an unclosed bracket: the next statement (or, inside ( ) and [ ], where
    # newlines do not end anything, a later line) is where the parser notices
    if open_bracket is not None and not balanced and (kind in _STATEMENT_KEYWORDS
                                     or (open_bracket[0] != "{" and open_bracket[1][0] < line)):
        opener, (at_line, at_column) = open_bracket
        closer = _CLOSING[opener]
        return error(f"expected '{closer}' to close the '{opener}' opened at line {at_line}, found {found}",
                     span, help=f"this '{opener}' at {at_line}:{at_column} is never closed: "
                                f"add '{closer}' to close it ({source.path}:{at_line}:{at_column})")
    message = f"unexpected {found}"
    if words:
        shown = words if len(words) <= 6 else words[:6] + ["..."]
        message += "; expected " + ", ".join(shown)
    hint = None
    if token is not None and str(token).lower() in {"input", "output", "let"} and kind == "NAME":
        hint = f"'{token}' is a keyword"
    elif token is not None and str(token) == "//":
        hint = "comments start with '#', not '//'"
    elif token is not None and re.match(r"\s*input\b.*\]\s*\(\s*lengths\s*\)", source.line(line)):
        hint = "write the marker without parentheses, after the dims: input x: float[B, T, 80] lengths"
    elif token is not None and set(expected) in _BIND_HEAD and _bare_stage_line(source, line):
        text = source.line(line)
        start = len(text) - len(text.lstrip()) + 1
        word = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text.lstrip()).group()
        if word == "lengths" and line > 1 and source.line(line - 1).lstrip().startswith("input "):
            return error("`lengths` on a line of its own is not a statement",
                         Span(source, line, start, line, start + len(word)),
                         help="the marker ends the input's own line: input x: float[B, T, 80] lengths")
        return error(f"'{word}' on a line of its own is not a statement",
                     Span(source, line, start, line, start + len(word)),
                     help=f"to continue the pipeline above, write '-> {word}' "
                          "(a stage on a new line starts with '->')")
    elif token is not None and set(expected) in _BIND_HEAD and _keyword_hint(source.line(line)):
        word, start, hint = _keyword_hint(source.line(line))
        return error(f"'{word}' does not start a statement", Span(source, line, start, line, start + len(word)),
                     help=hint)
    return error(message, span, help=hint)


# what the parser expects after a statement's first word when it is a bind's
# first name: `=`, or `,` and another name (`a, b = h -> split(2)`)
_BIND_HEAD = ({"EQUAL"}, {"COMMA", "EQUAL"})

# words from other languages for a statement keyword
_KEYWORD_ALIASES = {"return": "output", "returns": "output", "var": "let", "const": "let",
                    "def": "block", "class": "model", "from": "import", "include": "import"}


def _keyword_hint(text: str):
    """For a statement whose first word should have been a keyword
    (`inupt x: float[...]`, `return y`): the word, its column, and the help
    naming the keyword; None when it is close to none."""
    match = re.match(r"(\s*)([A-Za-z_][A-Za-z0-9_]*)\s+[A-Za-z_]", text)
    if match is None:
        return None
    word = match.group(2)
    keyword = _KEYWORD_ALIASES.get(word.lower())
    hint = (f"did you mean '{keyword}'?" if keyword
            else suggest(word, ("input", "output", "let", "model", "block", "import")))
    if hint is None:
        return None
    return word, len(match.group(1)) + 1, "a statement starts with a keyword or `NAME =`; " + hint


def _bare_stage_line(source: SourceFile, line: int) -> bool:
    """Whether `line` holds only a stage (`relu`, `linear(4)`): a stage
    written on a new line without the `->` that would continue the pipeline."""
    text = source.line(line).split("#", 1)[0].strip()
    return bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\(.*\))?( as [A-Za-z_][A-Za-z0-9_]*)?", text))


_CLOSING = {"{": "}", "(": ")", "[": "]"}
_OPENING = {v: k for k, v in _CLOSING.items()}


def _open_brackets(source: SourceFile, line: int, column: int):
    """The brackets still open before (line, column), innermost last, each
    with its position (on tokens, so brackets in comments and strings do not
    count); whether the whole file's brackets balance; and the token before
    (line, column)."""
    stack = []
    before = None
    depth, balanced = 0, True
    try:
        for tok in _parser().lex(source.text):
            if (tok.line, tok.column) < (line, column):
                before = tok
                if tok.type in _OPENERS:
                    stack.append((str(tok), (tok.line, tok.column)))
                elif tok.type in _CLOSERS and stack:
                    stack.pop()
            if tok.type in _OPENERS:
                depth += 1
            elif tok.type in _CLOSERS:
                depth -= 1
                balanced = balanced and depth >= 0
    except (UnexpectedInput, SpecError):  # the brackets seen up to the first bad character
        balanced = False
    return stack, balanced and depth == 0, before
