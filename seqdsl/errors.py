"""Errors every stage may raise: source spans, compiler-style diagnostics
(`SpecError`), and `UsageError`. The leaf of the package: imports nothing of seqdsl.

Every error a user can cause is reported as::

    specs/lm.seq:4:14: error: unknown layer 'atention'
        y = x -> atention(4)
                 ^~~~~~~~~~~
    help: did you mean 'attention'?

`SpecError` carries one or more `Diagnostic`s; the CLI prints them and exits 1,
the Python API lets the exception propagate.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field


@dataclass(frozen=True, eq=False)
class SourceFile:
    """A spec's text and the path it is reported under."""

    path: str
    text: str

    def line(self, number: int) -> str:
        lines = self.text.splitlines()
        return lines[number - 1] if 1 <= number <= len(lines) else ""


@dataclass(frozen=True)
class Span:
    """A 1-based, inclusive-start / exclusive-end region of a source file."""

    source: SourceFile = field(compare=False, repr=False)
    line: int
    column: int
    end_line: int
    end_column: int

    @property
    def path(self) -> str:
        return self.source.path

    def __str__(self) -> str:
        return f"{self.source.path}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    message: str
    span: Span | None = None
    help: str | None = None
    notes: tuple[str, ...] = ()

    def render(self) -> str:
        """`PATH:LINE:COL: error: MESSAGE`, the source line, a caret, help."""
        if self.span is None:
            out = [f"error: {self.message}"]
        else:
            sp = self.span
            out = [f"{sp.path}:{sp.line}:{sp.column}: error: {self.message}"]
            text = sp.source.line(sp.line)
            if text:
                gutter = f"{sp.line:>4} | "
                out.append(gutter + text.expandtabs(4).rstrip())
                end = sp.end_column if sp.end_line == sp.line else len(text) + 1
                width = max(1, end - sp.column)
                lead = len(text[: sp.column - 1].expandtabs(4))
                out.append(" " * (len(gutter) - 2) + "| " + " " * lead + "^" + "~" * (width - 1))
        for note in self.notes:
            out.append(f"note: {note}")
        if self.help:
            out.append(f"help: {self.help}")
        return "\n".join(out)


class SpecError(Exception):
    """A spec was refused. `diagnostics` says where and why."""

    def __init__(self, diagnostics: Diagnostic | list[Diagnostic]):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        super().__init__(self.render())

    @property
    def span(self) -> Span | None:
        return self.diagnostics[0].span

    @property
    def message(self) -> str:
        return self.diagnostics[0].message

    def render(self) -> str:
        return "\n".join(d.render() for d in self.diagnostics)


class UsageError(Exception):
    """A bad flag or argument value outside any spec: one line on stderr, exit 2."""


def error(message: str, span: Span | None = None, help: str | None = None,
          notes: tuple[str, ...] = ()) -> SpecError:
    """Build a SpecError with a single diagnostic (for `raise error(...)`)."""
    return SpecError(Diagnostic(message, span, help, notes))


def suggest(name: str, candidates) -> str | None:
    """`did you mean 'x'?` for the nearest candidate, or None."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    if not close and len(name) > 2:
        # Prefix/containment catches e.g. `attn` -> `attention`.
        close = [c for c in sorted(set(candidates)) if c.startswith(name) or name in c][:1]
    return f"did you mean '{close[0]}'?" if close else None
