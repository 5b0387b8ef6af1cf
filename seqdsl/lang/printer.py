"""AST -> canonical .seq text (used by `seqdsl fmt` and the builder's `to_seq`).

Canonical form: four-space indents; one top-level item per paragraph; a
pipeline that fits on one line stays there, otherwise each stage goes on its
own line led by `->`; a body that fits stays inline `{ a -> b }`, otherwise
one stage per line (a newline separates stages inside braces). Expressions get the fewest parentheses their precedence
needs. Comments (from `collect_comments`) are kept: a comment on its own line
is printed before the next item, statement or stage; a comment after code is
printed after the element that ends on its line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import ast

WIDTH = 88
INDENT = "    "
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2, "%": 2, "**": 4}


@dataclass
class Comments:
    """Comments of one file by line, consumed as the printer passes them."""

    own_line: dict[int, str] = field(default_factory=dict)    # line -> text
    trailing: dict[int, str] = field(default_factory=dict)    # line -> text
    used: set = field(default_factory=set)

    def leading(self, before_line: int | None) -> list[str]:
        """Own-line comments above `before_line` not yet printed."""
        if before_line is None:
            return []
        out = []
        for line in sorted(self.own_line):
            if line < before_line and line not in self.used:
                self.used.add(line)
                out.append(self.own_line[line])
        return out

    def after(self, line: int | None) -> str | None:
        if line is None or line not in self.trailing or ("t", line) in self.used:
            return None
        self.used.add(("t", line))
        return self.trailing[line]

    def rest(self) -> list[str]:
        return self.leading(10 ** 12)


def collect_comments(text: str) -> Comments:
    """Find comments with the grammar's own lexer (so `#` in strings is safe)."""
    from .syntax import _parser
    comments = Comments()
    code_lines = set()
    found = []
    for tok in _parser().lex(text, dont_ignore=True):
        if tok.type == "COMMENT":
            found.append(tok)
        elif tok.type not in ("WS", "_NL"):
            code_lines.add(tok.line)
    for tok in found:
        target = comments.trailing if tok.line in code_lines else comments.own_line
        target[tok.line] = str(tok).rstrip()
    return comments


def _line(node) -> int | None:
    span = getattr(node, "span", None)
    return span.line if span is not None else None


def _end_line(node) -> int | None:
    span = getattr(node, "span", None)
    return span.end_line if span is not None else None


# ---------------------------------------------------------------- expressions
def expr_text(e, parent: int = 0) -> str:
    if isinstance(e, ast.Literal):
        v = e.value
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, float):
            text = repr(v)
            return text if any(c in text for c in ".en") else text + ".0"
        return str(v)
    if isinstance(e, ast.Name):
        return e.name
    if isinstance(e, ast.Neg):
        inner = expr_text(e.operand, 3)
        return f"-{inner}" if parent <= 3 else f"(-{inner})"
    if isinstance(e, ast.BinOp):
        p = _PRECEDENCE[e.op]
        if e.op == "**":  # right-associative, binds tighter than unary minus
            text = f"{expr_text(e.left, 5)} ** {expr_text(e.right, 3)}"
        else:
            text = f"{expr_text(e.left, p)} {e.op} {expr_text(e.right, p + 1)}"
        return f"({text})" if p < parent else text
    if isinstance(e, ast.FuncCall):
        return f"{e.func}({', '.join(expr_text(a) for a in e.args)})"
    if isinstance(e, ast.ListExpr):
        return "[" + ", ".join(expr_text(i) for i in e.items) + "]"
    raise TypeError(f"not an expression: {e!r}")


def args_text(args) -> str:
    return ", ".join(expr_text(a.value) if a.key is None else f"{a.key}={expr_text(a.value)}"
                     for a in args)


# ---------------------------------------------------------------- stages
def _alias(stage) -> str:
    return f" as {stage.alias}" if stage.alias else ""


def _stage_head(stage) -> str:
    if isinstance(stage, ast.Call):
        return stage.name + (f"({args_text(stage.args)})" if stage.args else "")
    if isinstance(stage, ast.Repeat):
        return f"repeat({args_text(stage.args)})"
    if isinstance(stage, ast.Residual):
        return "residual"
    return f"segments({args_text(stage.args)})"


def _has_comments(node, comments: Comments | None) -> bool:
    if comments is None or getattr(node, "span", None) is None:
        return False
    # Own-line comments inside, or trailing comments on any but the last line
    # (that one is printed after the element however it is laid out).
    lo, hi = node.span.line, node.span.end_line
    return any(lo <= line <= hi and line not in comments.used for line in comments.own_line) or any(
        lo <= line < hi and ("t", line) not in comments.used for line in comments.trailing)


def stage_inline(stage) -> str:
    """The stage on one line (bodies inline)."""
    head = _stage_head(stage)
    if isinstance(stage, ast.Call):
        return head + _alias(stage)
    body = " -> ".join(stage_inline(s) for s in stage.body)
    return f"{head} {{ {body} }}{_alias(stage)}"


class _Printer:
    def __init__(self, comments: Comments | None):
        self.comments = comments
        self.out: list[str] = []

    def emit(self, indent: int, text: str, node=None) -> None:
        trailing = self.comments.after(_end_line(node)) if (self.comments and node is not None) else None
        self.out.append(INDENT * indent + text + (f"  {trailing}" if trailing else ""))

    def leading(self, indent: int, node) -> None:
        if self.comments:
            for c in self.comments.leading(_line(node)):
                self.out.append(INDENT * indent + c)

    def header(self, text: str, item) -> None:
        trailing = self.comments.after(_line(item)) if self.comments else None
        self.out.append(text + (f"  {trailing}" if trailing else ""))

    def fits(self, indent: int, text: str) -> bool:
        return len(INDENT * indent) + len(text) <= WIDTH

    # A stage printed on lines of its own, starting with `prefix`. A comment
    # after code belongs to the last stage that ends on its line.
    def stage(self, indent: int, stage, prefix: str = "", last_on_line: bool = True) -> None:
        self.leading(indent, stage)
        owner = stage if last_on_line else None
        inline = prefix + stage_inline(stage)
        if self.fits(indent, inline) and not _has_comments(stage, self.comments):
            self.emit(indent, inline, owner)
            return
        if isinstance(stage, ast.Call):
            self.emit(indent, inline, owner)
            return
        trailing = self.comments.after(_line(stage)) if self.comments and _line(stage) != _end_line(stage) else None
        self.out.append(INDENT * indent + prefix + _stage_head(stage) + " {" + (f"  {trailing}" if trailing else ""))
        self.body(indent + 1, stage.body)
        self.emit(indent, "}" + _alias(stage), owner)

    def stages(self, indent: int, stages, prefix: str = "") -> None:
        for i, s in enumerate(stages):
            following = stages[i + 1] if i + 1 < len(stages) else None
            last_on_line = following is None or _line(following) is None or _line(following) != _end_line(s)
            self.stage(indent, s, prefix, last_on_line)

    def body(self, indent: int, stages) -> None:
        # Inside braces a newline separates stages: no arrows needed.
        self.stages(indent, stages)

    def statement(self, indent: int, st) -> None:
        self.leading(indent, st)
        if isinstance(st, ast.Let):
            self.emit(indent, f"let {st.name} = {expr_text(st.value)}", st)
        elif isinstance(st, ast.Input):
            dims = ", ".join(expr_text(d) for d in st.dims)
            self.emit(indent, f"input {st.name}: {st.dtype}[{dims}]", st)
        elif isinstance(st, ast.Output):
            self.emit(indent, "output " + ", ".join(n.name for n in st.names), st)
        else:
            head = f"{st.name} = {st.source.name}"
            line = " -> ".join([head] + [stage_inline(s) for s in st.stages])
            if self.fits(indent, line) and not _has_comments(st, self.comments):
                self.emit(indent, line, st)
                return
            self.emit(indent, head)
            self.stages(indent + 1, st.stages, "-> ")

    def module(self, module: ast.Module) -> str:
        items = sorted(list(module.imports) + list(module.blocks) + list(module.models),
                       key=lambda i: (_line(i) or 0))
        if any(_line(i) is None for i in items):  # built in Python: keep the natural order
            items = list(module.imports) + list(module.blocks) + list(module.models)
        previous = None
        for item in items:
            if previous is not None and not (isinstance(item, ast.Import) and isinstance(previous, ast.Import)):
                self.out.append("")
            self.leading(0, item)
            if isinstance(item, ast.Import):
                self.emit(0, f'import {expr_text(ast.Literal(item.path, None))}', item)
            elif isinstance(item, ast.BlockDef):
                params = ", ".join(p.name if p.default is None else f"{p.name}={expr_text(p.default)}"
                                   for p in item.params)
                self.header(f"block {item.name}({params}) {{", item)
                self.body(1, item.body)
                self.emit(0, "}", item)
            else:
                self.header(f"model {item.name} {{", item)
                prev_kind = None
                for st in item.statements:
                    kind = type(st)
                    if prev_kind is not None and kind is not prev_kind and (
                            kind in (ast.Input, ast.Output) or prev_kind in (ast.Let, ast.Input)):
                        self.out.append("")
                    self.statement(1, st)
                    prev_kind = kind
                if self.comments:  # comments left before the closing brace
                    for c in self.comments.leading(item.span.end_line if item.span else None):
                        self.out.append(INDENT + c)
                self.emit(0, "}", item)
            previous = item
        if self.comments:
            rest = self.comments.rest()
            if rest:
                self.out.append("")
                self.out.extend(rest)
        return "\n".join(self.out) + "\n"


def to_seq(module: ast.Module, comments: Comments | None = None) -> str:
    """Canonical text of a module (with `comments` re-inserted if given)."""
    return _Printer(comments).module(module)


def format_text(text: str, path: str = "<string>") -> str:
    """Parse `text` and print it canonically, comments kept."""
    from ..errors import SourceFile
    from .syntax import parse_module
    module = parse_module(SourceFile(path, text))
    return to_seq(module, collect_comments(text))


def is_identifier(name: str) -> bool:
    from .syntax import KEYWORDS
    return bool(_IDENT.match(name)) and name not in KEYWORDS
