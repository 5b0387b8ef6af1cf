"""Text -> AST. The grammar is grammars/seq.lark; this module only drives Lark.

* `_Newlines` is a post-lexer that drops the newlines that do not end a
  statement or stage (continuation rules of LANGUAGE.md, "Lexical").
* `_ToAst` turns parse-tree rules into frozen `seqdsl.ast` nodes as the LALR
  parser reduces them (no intermediate tree is built).
* Lark's exceptions become `SpecError`s with the position and what was expected.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import ast
from .diagnostics import SourceFile, Span, SpecError, error
from .limits import MAX_LITERAL_DIGITS, MAX_NESTING

_GRAMMAR_CANDIDATES = (
    Path(__file__).resolve().parent / "grammars" / "seq.lark",          # installed wheel
    Path(__file__).resolve().parent.parent / "grammars" / "seq.lark",   # source checkout
)

KEYWORDS = ("model", "block", "let", "input", "output", "repeat", "residual",
            "segments", "as", "import", "true", "false")
_STATEMENT_KEYWORDS = {"OUTPUT", "LET", "INPUT", "MODEL", "BLOCK", "IMPORT", "$END"}

_TERMINAL_WORDS = {
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "STRING": "a string",
    "_NL": "a new line", "_ARROW": "'->'", "LBRACE": "'{'", "RBRACE": "'}'",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','",
    "EQUAL": "'='", "COLON": "':'", "$END": "end of file", "PLUS": "'+'",
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
    at the start of the file, and collapse runs of them."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
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
            if kind in ("LPAR", "LSQB"):
                depth += 1
            elif kind in ("RPAR", "RSQB") and depth:
                depth -= 1
            yield tok
            prev = kind
        if pending is not None:
            yield pending


class _ToAst(Transformer):
    """Parse-tree rules -> ast nodes, applied inline by the LALR parser."""

    def __init__(self, source: SourceFile):
        super().__init__(visit_tokens=False)
        self.source = source

    # -- helpers
    def _span(self, meta) -> Span:
        return Span(self.source, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok_span(self, tok: Token) -> Span:
        return Span(self.source, tok.line, tok.column, tok.end_line, tok.end_column)

    @staticmethod
    def _present(items):
        return tuple(i for i in items if i is not None)

    # -- top level
    @v_args(meta=True)
    def start(self, meta, items):
        imports = tuple(i for i in items if isinstance(i, ast.Import))
        blocks = tuple(i for i in items if isinstance(i, ast.BlockDef))
        models = tuple(i for i in items if isinstance(i, ast.ModelDef))
        return ast.Module(imports, blocks, models, self.source)

    @v_args(meta=True, inline=True)
    def import_stmt(self, meta, path):
        return ast.Import(_unquote(path), self._span(meta))

    @v_args(meta=True, inline=True)
    def block_def(self, meta, name, *rest):
        *params, body = rest
        return ast.BlockDef(str(name), self._present(params), body, self._span(meta),
                            self._tok_span(name))

    @v_args(meta=True, inline=True)
    def param(self, meta, name, default=None):
        return ast.Param(str(name), default, self._span(meta))

    @v_args(meta=True, inline=True)
    def model_def(self, meta, name, *statements):
        return ast.ModelDef(str(name), tuple(statements), self._span(meta), self._tok_span(name))

    # -- statements
    @v_args(meta=True, inline=True)
    def let_stmt(self, meta, name, value):
        return ast.Let(str(name), value, self._span(meta))

    @v_args(meta=True, inline=True)
    def input_stmt(self, meta, name, dtype, *dims):
        return ast.Input(str(name), str(dtype), self._tok_span(dtype), tuple(dims), self._span(meta))

    @v_args(meta=True, inline=True)
    def bind_stmt(self, meta, name, source, *stages):
        return ast.Bind(str(name), ast.Name(str(source), self._tok_span(source)), tuple(stages),
                        self._span(meta))

    @v_args(meta=True, inline=True)
    def output_stmt(self, meta, *names):
        return ast.Output(tuple(ast.Name(str(n), self._tok_span(n)) for n in names), self._span(meta))

    # -- stages
    @v_args(meta=True, inline=True)
    def body(self, meta, *stages):
        return tuple(stages)

    @v_args(meta=True, inline=True)
    def stage(self, meta, core, alias=None):
        if alias is None:
            return core
        return _with_alias(core, str(alias))

    @v_args(meta=True, inline=True)
    def call(self, meta, name, *args):
        return ast.Call(str(name), self._present(args), self._span(meta), self._tok_span(name))

    @v_args(meta=True, inline=True)
    def repeat(self, meta, *rest):
        *args, body = rest
        return ast.Repeat(self._present(args), body, self._span(meta))

    @v_args(meta=True, inline=True)
    def residual(self, meta, body):
        return ast.Residual(body, self._span(meta))

    @v_args(meta=True, inline=True)
    def segments(self, meta, *rest):
        *args, body = rest
        return ast.Segments(self._present(args), body, self._span(meta))

    @v_args(meta=True, inline=True)
    def positional_arg(self, meta, value):
        return ast.Arg(None, value, self._span(meta))

    @v_args(meta=True, inline=True)
    def keyword_arg(self, meta, key, value):
        return ast.Arg(str(key), value, self._span(meta))

    # -- expressions
    def _binop(self, op, meta, left, right):
        return ast.BinOp(op, left, right, self._span(meta))

    @v_args(meta=True, inline=True)
    def add(self, meta, a, b):
        return self._binop("+", meta, a, b)

    @v_args(meta=True, inline=True)
    def sub(self, meta, a, b):
        return self._binop("-", meta, a, b)

    @v_args(meta=True, inline=True)
    def mul(self, meta, a, b):
        return self._binop("*", meta, a, b)

    @v_args(meta=True, inline=True)
    def div(self, meta, a, b):
        return self._binop("/", meta, a, b)

    @v_args(meta=True, inline=True)
    def floordiv(self, meta, a, b):
        return self._binop("//", meta, a, b)

    @v_args(meta=True, inline=True)
    def mod(self, meta, a, b):
        return self._binop("%", meta, a, b)

    @v_args(meta=True, inline=True)
    def pow(self, meta, a, b):
        return self._binop("**", meta, a, b)

    @v_args(meta=True, inline=True)
    def neg(self, meta, operand):
        return ast.Neg(operand, self._span(meta))

    @v_args(meta=True, inline=True)
    def int_lit(self, meta, tok):
        digits = str(tok).replace("_", "")
        if len(digits) > MAX_LITERAL_DIGITS:
            raise error(f"integer literal with {len(digits)} digits is too large",
                        self._tok_span(tok), help=f"literals are limited to {MAX_LITERAL_DIGITS} digits")
        return ast.Literal(int(digits), self._span(meta))

    @v_args(meta=True, inline=True)
    def float_lit(self, meta, tok):
        text = str(tok).replace("_", "")
        if len(text) > 2 * MAX_LITERAL_DIGITS:
            raise error("number literal is too long", self._tok_span(tok))
        return ast.Literal(float(text), self._span(meta))

    @v_args(meta=True, inline=True)
    def string_lit(self, meta, tok):
        return ast.Literal(_unquote(tok), self._span(meta))

    @v_args(meta=True, inline=True)
    def true_lit(self, meta):
        return ast.Literal(True, self._span(meta))

    @v_args(meta=True, inline=True)
    def false_lit(self, meta):
        return ast.Literal(False, self._span(meta))

    @v_args(meta=True, inline=True)
    def name_ref(self, meta, tok):
        return ast.Name(str(tok), self._span(meta))

    @v_args(meta=True, inline=True)
    def func_call(self, meta, name, *args):
        return ast.FuncCall(str(name), self._present(args), self._span(meta))

    @v_args(meta=True, inline=True)
    def list_lit(self, meta, *items):
        return ast.ListExpr(self._present(items), self._span(meta))


def _with_alias(stage, alias):
    from dataclasses import replace
    return replace(stage, alias=alias)


def _unquote(tok) -> str:
    body = str(tok)[1:-1]
    return body.replace('\\"', '"').replace("\\\\", "\\")


@lru_cache(maxsize=1)
def _parser() -> Lark:
    for path in _GRAMMAR_CANDIDATES:
        if path.is_file():
            grammar = path.read_text()
            break
    else:  # pragma: no cover - a broken install
        raise RuntimeError("grammars/seq.lark not found next to the seqdsl package")
    # The transformer is bound per call (it carries the SourceFile), so the
    # parser is built without one and `parse` wraps it in a ParserState.
    return Lark(grammar, parser="lalr", lexer="basic", postlex=_Newlines(),
                propagate_positions=True, maybe_placeholders=True, cache=_cache_path())


def _cache_path():
    import os
    import tempfile
    return os.path.join(tempfile.gettempdir(), f"seqdsl-lark-{os.getuid()}.cache") if hasattr(os, "getuid") else True


def parse_module(source: SourceFile) -> ast.Module:
    """Parse one file's text into an `ast.Module`, or raise SpecError."""
    _check_nesting(source)
    parser = _parser()
    try:
        tree = parser.parse(source.text)
        return _ToAst(source).transform(tree)
    except UnexpectedInput as exc:
        raise _syntax_error(source, exc) from None


def _check_nesting(source: SourceFile) -> None:
    """Refuse absurd bracket nesting before the parser recurses into it."""
    depth = 0
    line, col = 1, 0
    for ch in source.text:
        col += 1
        if ch == "\n":
            line, col = line + 1, 0
        elif ch in "({[":
            depth += 1
            if depth > MAX_NESTING:
                raise error(f"brackets nested more than {MAX_NESTING} deep",
                            Span(source, line, col, line, col + 1),
                            help="flatten the expression or split the model into blocks")
        elif ch in ")}]" and depth:
            depth -= 1


def _syntax_error(source: SourceFile, exc: UnexpectedInput) -> SpecError:
    line = getattr(exc, "line", None) or 1
    column = getattr(exc, "column", None) or 1
    if isinstance(exc, UnexpectedCharacters):
        char = source.text[exc.pos_in_stream] if exc.pos_in_stream < len(source.text) else ""
        return error(f"unexpected character {char!r}", Span(source, line, column, line, column + 1))
    token = getattr(exc, "token", None)
    expected = sorted(getattr(exc, "expected", None) or getattr(exc, "accepts", None) or ())
    words = [_describe_terminal(t) for t in expected if t != "_NL"] or [_describe_terminal(t) for t in expected]
    if isinstance(exc, UnexpectedEOF) or token is None or token.type == "$END":
        lines = source.text.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
        found, width = "end of file", 1
        kind = "$END"
    else:
        line, column = token.line, token.column
        found = "a new line" if token.type == "_NL" else repr(str(token))
        width = max(1, len(str(token))) if token.type != "_NL" else 1
        kind = token.type
    span = Span(source, line, column, line, column + width)
    open_brace = _unclosed_brace(source, line, column)
    if open_brace is not None and kind in _STATEMENT_KEYWORDS:
        return error(f"expected '}}' to close the '{{' opened at line {open_brace[0]}, found {found}",
                     span, help=f"add '}}' to close the '{{' at {source.path}:{open_brace[0]}:{open_brace[1]}")
    message = f"unexpected {found}"
    if words:
        shown = words if len(words) <= 6 else words[:6] + ["..."]
        message += "; expected " + ", ".join(shown)
    hint = None
    if token is not None and str(token).lower() in {"input", "output", "let"} and kind == "NAME":
        hint = f"'{token}' is a keyword"
    return error(message, span, help=hint)


def _unclosed_brace(source: SourceFile, line: int, column: int):
    """Position of the innermost '{' still open before (line, column), if any."""
    stack = []
    for lineno, text in enumerate(source.text.splitlines()[:line], start=1):
        code = text.split("#", 1)[0]
        if lineno == line:
            code = code[: column - 1]
        for col, ch in enumerate(code, start=1):
            if ch == "{":
                stack.append((lineno, col))
            elif ch == "}" and stack:
                stack.pop()
    return stack[-1] if stack else None
