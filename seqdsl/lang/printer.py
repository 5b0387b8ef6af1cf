"""AST -> canonical .seq text (used by `seqdsl fmt` and the builder's `to_seq`).

Canonical form: four-space indents; one top-level item per paragraph; a
pipeline that fits on one line stays there, otherwise each stage goes on its
own line led by `->`; a body that fits stays inline `{ a -> b }`, otherwise
one stage per line (a newline separates stages inside braces). Expressions get the fewest parentheses their precedence
needs. Comments (from `collect_comments`) are all kept, in order: a comment on
its own line is printed before the next item, statement or stage; a comment
after code is printed after the element that ends on its line, or, when that
element is printed on one line and the comment sat inside it (a multi-line
argument or dim list), on its own line just above the element.
"""
from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field

from . import ast
from ..errors import SourceFile
from .syntax import KEYWORDS, parse_module

WIDTH = 88
INDENT = "    "
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2, "%": 2, "**": 4}


@dataclass
class Comments:
    """Comments of one file in source order, handed out front to back as the
    printer passes the code they sit among (each call is O(log n) at most, so
    a file with many comments formats in linear time).

    Every comment is printed exactly once and in source order: one the printer
    cannot keep where it was (after code inside an element printed on one
    line) goes on its own line just above that element. `rest` hands out
    whatever is left at the end of the file.
    """

    lines: list[int] = field(default_factory=list)     # source line of each comment, ascending
    texts: list[str] = field(default_factory=list)
    own: list[bool] = field(default_factory=list)      # alone on its line (else after code)
    next: int = 0                                      # first comment not printed yet

    def before(self, line: int | None) -> list[str]:
        """Comments not printed yet on lines before `line`."""
        if line is None:
            return []
        stop = bisect_left(self.lines, line, self.next)
        out = self.texts[self.next:stop]
        self.next = stop
        return out

    def after(self, line: int | None) -> str | None:
        """The comment after code on `line`, if it is the next one to print."""
        i = self.next
        if line is None or i >= len(self.lines) or self.lines[i] != line or self.own[i]:
            return None
        self.next = i + 1
        return self.texts[i]

    def within(self, first: int, last: int) -> bool:
        """Any comment not printed yet on lines first..last-1 (one on `last`
        can still follow the element printed on one line)."""
        i = bisect_left(self.lines, first, self.next)
        return i < len(self.lines) and self.lines[i] < last

    def rest(self) -> list[str]:
        out = self.texts[self.next:]
        self.next = len(self.texts)
        return out


# A string or a comment, scanned left to right: a `#` inside a string is part
# of the string. The grammar's STRING and COMMENT, the only tokens that may hold
# `"` or `#`, neither spanning lines (the text has been parsed first).
_STRING_OR_COMMENT = re.compile(r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"|#[^\n]*')


def collect_comments(text: str) -> Comments:
    """The comments of `text` (already parsed), in one linear scan."""
    comments = Comments()
    line, pos = 1, 0
    for m in _STRING_OR_COMMENT.finditer(text):
        start = m.start()
        if text[start] != "#":
            continue
        line += text.count("\n", pos, start)
        pos = start
        before = text[text.rfind("\n", 0, start) + 1:start]
        comments.lines.append(line)
        comments.texts.append(m.group().rstrip())
        comments.own.append(not before.strip(" \t\f\r"))
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
            if "\n" in v:  # a string literal cannot span lines
                raise ValueError(f"{v!r}: a .seq string cannot hold a line break")
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, float):
            # repr is the shortest text that reads back as the same float; inf
            # and nan have none in the language (`inf` would be a name)
            if v != v or v in (float("inf"), float("-inf")):
                raise ValueError(f"{v} has no .seq literal")
            text = repr(v).replace("e-0", "e-").replace("e+0", "e+")   # 1e-06 -> 1e-6: same value
            return text if any(c in text for c in ".e") else text + ".0"
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
        return "residual" + (f"({args_text(stage.args)})" if stage.args else "")
    return f"segments({args_text(stage.args)})"


def _head_end(stage) -> int | None:
    """Last source line of a stage's head (`repeat(...)` before its `{`)."""
    if _line(stage) is None:
        return None
    return max([_line(stage)] + [_end_line(a) for a in getattr(stage, "args", ())])


def inline_ok(stage) -> bool:
    """Whether a stage can be printed on one line: no body in it has a line
    that binds or starts from a name (such a line ends at a newline)."""
    if isinstance(stage, ast.Call):
        return True
    return all(not isinstance(s, ast.Line) and inline_ok(s) for s in stage.body)


def stage_inline(stage) -> str:
    """The stage on one line (bodies inline)."""
    head = _stage_head(stage)
    if isinstance(stage, ast.Call):
        return head + _alias(stage)
    body = " -> ".join(stage_inline(s) for s in stage.body)
    return f"{head} {{ {body} }}{_alias(stage)}"


class _Printer:
    """Prints in source order; `emit` hands each output line the comments its
    source lines carry (see `Comments`), so none is ever lost."""

    def __init__(self, comments: Comments | None, blank_lines: frozenset = frozenset()):
        self.comments = comments
        self.blank_lines = blank_lines     # source lines that are blank: a break the author made stays
        self.out: list[str] = []

    def flush(self, indent: int, line: int | None) -> None:
        """Comments before source line `line` not printed yet, each on its own line."""
        if self.comments:
            for c in self.comments.before(line):
                self.out.append(INDENT * indent + c)

    def emit(self, indent: int, text: str, last: int | None = None, trailing: bool = True) -> None:
        """One line of code whose source ends on line `last`. Comments before
        that line go above it; the comment after code on `last` goes after it
        when `trailing` (no code printed later comes from that line)."""
        self.flush(indent, last)
        comment = self.comments.after(last) if (self.comments and trailing) else None
        self.out.append(INDENT * indent + text + (f"  {comment}" if comment else ""))

    def has_comments(self, node) -> bool:
        """Comments inside `node` that printing it on one line would displace."""
        return bool(self.comments) and _line(node) is not None and self.comments.within(
            _line(node), _end_line(node))

    def fits(self, indent: int, text: str) -> bool:
        return len(INDENT * indent) + len(text) <= WIDTH

    # A stage printed on lines of its own, starting with `prefix`. A comment
    # after code belongs to the last stage that ends on its line (`trailing`).
    def stage(self, indent: int, stage, prefix: str = "", trailing: bool = True) -> None:
        inline = prefix + stage_inline(stage) if inline_ok(stage) else None
        last = _end_line(stage)
        head_last = _head_end(stage)
        # comments in the head (`repeat(  # c` ...) go above it either way: only
        # those from the head's last line on keep the body on lines of its own
        if isinstance(stage, ast.Call) or (inline is not None and self.fits(indent, inline) and not (
                self.comments and head_last is not None and self.comments.within(head_last, last))):
            self.emit(indent, inline, last, trailing)
            return
        body_first = _line(stage.body[0]) if stage.body else None
        self.emit(indent, prefix + _stage_head(stage) + " {", head_last,
                  trailing=body_first is None or head_last is None or body_first > head_last)
        self.stages(indent + 1, stage.body, "", trailing_last=trailing or last is None or any(
            _end_line(s) != last for s in stage.body[-1:]))
        self.flush(indent + 1, last)
        self.emit(indent, "}" + _alias(stage), last, trailing)

    def stages(self, indent: int, stages, prefix: str = "", trailing_last: bool = True) -> None:
        for i, s in enumerate(stages):
            following = stages[i + 1] if i + 1 < len(stages) else None
            if following is None:
                trailing = trailing_last
            else:
                trailing = _line(following) is None or _line(following) != _end_line(s)
            if isinstance(s, ast.Line):
                self.line(indent, s, trailing)
            else:
                self.stage(indent, s, prefix, trailing)

    def line(self, indent: int, item: ast.Line, trailing: bool = True) -> None:
        """A body line that binds (`g = linear(d) -> sigmoid`, `x, z = ... -> split(2)`)
        or starts from a bound name (`x -> conv1d(...)`): on one line when it
        fits, else its first part and then one `-> stage` per line."""
        head = ", ".join(item.bound) + " = " if item.names else ""
        ok = all(inline_ok(s) for s in item.stages)
        parts = ([item.source.name] if item.source is not None else []) + (
            [stage_inline(s) for s in item.stages] if ok else [])
        text = head + " -> ".join(parts)
        if ok and self.fits(indent, text) and not self.has_comments(item):
            self.emit(indent, text, _end_line(item), trailing)
            return
        if item.source is not None:
            head_last, rest = _line(item.source), item.stages
            first = _line(rest[0]) if rest else None
            self.emit(indent, head + item.source.name, head_last,
                      trailing=first is None or head_last is None or first > head_last)
        else:
            rest = item.stages[1:]
            following = _line(rest[0]) if rest else None
            self.stage(indent, item.stages[0], head, trailing=trailing if not rest else (
                following is None or following != _end_line(item.stages[0])))
        self.stages(indent + 1, rest, "-> ", trailing_last=trailing)

    def statement(self, indent: int, st) -> None:
        if isinstance(st, ast.Let):
            self.emit(indent, f"let {st.name} = {expr_text(st.value)}", _end_line(st))
        elif isinstance(st, ast.Input):
            dims = ", ".join(expr_text(d) for d in st.dims)
            marker = " lengths" if st.lengths else ""
            self.emit(indent, f"input {st.name}: {st.dtype}[{dims}]{marker}", _end_line(st))
        elif isinstance(st, ast.Output):
            self.emit(indent, "output " + ", ".join(n.name for n in st.names), _end_line(st))
        elif isinstance(st, ast.Loss):
            self.emit(indent, "loss " + stage_inline(st.call), _end_line(st))
        else:
            head = f"{', '.join(st.names)} = {st.source.name}"
            ok = all(inline_ok(s) for s in st.stages)
            line = " -> ".join([head] + [stage_inline(s) for s in st.stages]) if ok else ""
            if ok and self.fits(indent, line) and not self.has_comments(st):
                self.emit(indent, line, _end_line(st))
                return
            head_last = _line(st.source)
            first = _line(st.stages[0]) if st.stages else None
            self.emit(indent, head, head_last, trailing=first is None or head_last is None or first > head_last)
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
            if isinstance(item, ast.Import):
                self.emit(0, f'import {expr_text(ast.Literal(item.path, None))}', _end_line(item))
            elif isinstance(item, ast.BlockDef):
                params = ", ".join(p.name if p.default is None else f"{p.name}={expr_text(p.default)}"
                                   for p in item.params)
                head_last = None if item.span is None else max(
                    [item.name_span.line] + [_end_line(p) for p in item.params])
                first = _line(item.body[0]) if item.body else None
                self.emit(0, f"block {item.name}({params}) {{", head_last,
                          trailing=first is None or head_last is None or first > head_last)
                self.stages(1, item.body)
                self.flush(1, _end_line(item))
                self.emit(0, "}", _end_line(item))
            else:
                head_last = None if item.span is None else item.name_span.line
                first = _line(item.statements[0]) if item.statements else None
                self.emit(0, f"model {item.name} {{", head_last,
                          trailing=first is None or head_last is None or first > head_last)
                prev_kind, prev_end = None, None
                for st in item.statements:
                    kind = type(st)
                    authored = prev_end is not None and _line(st) is not None and any(
                        n in self.blank_lines for n in range(prev_end + 1, _line(st)))
                    if prev_kind is not None and (authored or kind is not prev_kind and (
                            kind in (ast.Input, ast.Output) or prev_kind in (ast.Let, ast.Input))):
                        self.out.append("")
                    self.statement(1, st)
                    prev_kind, prev_end = kind, _end_line(st)
                self.flush(1, _end_line(item))  # comments left before the closing brace
                self.emit(0, "}", _end_line(item))
            previous = item
        if self.comments:
            rest = self.comments.rest()
            if rest and self.out:
                self.out.append("")
            self.out.extend(rest)
        return "\n".join(self.out) + "\n" if self.out else ""  # nothing at all: an empty file


def to_seq(module: ast.Module, comments: Comments | None = None, blank_lines: frozenset = frozenset()) -> str:
    """Canonical text of a module (with `comments` re-inserted if given; a
    blank line between two statements of a model where `blank_lines` has one)."""
    return _Printer(comments, blank_lines).module(module)


def format_text(text: str, path: str = "<string>") -> str:
    """Parse `text` and print it canonically, comments kept. A file whose
    first line ends with CRLF keeps CRLF line endings (all of them)."""
    module = parse_module(SourceFile(path, text))
    blank = frozenset(i for i, line in enumerate(text.split("\n"), 1) if not line.strip())
    out = to_seq(module, collect_comments(text), blank)
    first = text.find("\n")
    if first > 0 and text[first - 1] == "\r":
        out = out.replace("\n", "\r\n")
    return out


def is_identifier(name: str) -> bool:
    return bool(_IDENT.match(name)) and name not in KEYWORDS
