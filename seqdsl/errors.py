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
import unicodedata
from dataclasses import dataclass, field


@dataclass(frozen=True, eq=False)
class SourceFile:
    """A spec's text and the path it is reported under."""

    path: str
    text: str

    def lines(self) -> list[str]:
        """The text's lines as the lexer counts them: only `\\n` ends a line
        (a `\\r` before it is dropped). Not `str.splitlines`, which also
        breaks at form feeds, lone `\\r`, `\\v`, `\\x1c`, U+2028 and others the
        lexer takes as whitespace or comment text, and would quote the wrong
        line under a position the lexer reported."""
        lines = self.text.split("\n")
        if len(lines) > 1 and lines[-1] == "":
            lines.pop()  # the newline ending the last line does not start another
        return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]

    def line(self, number: int) -> str:
        if number < 1:
            return ""
        start = 0
        for _ in range(number - 1):
            start = self.text.find("\n", start) + 1
            if start == 0:
                return ""
        end = self.text.find("\n", start)
        text = self.text[start:] if end < 0 else self.text[start:end]
        return text[:-1] if text.endswith("\r") else text


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
    """One compiler-style message: where (span), what, and the fix (help)."""

    message: str
    span: Span | None = None
    help: str | None = None
    notes: tuple[str, ...] = ()
    severity: str = "error"    # or "warning": the spec checks, but likely not as meant (Program.warnings)

    def render(self) -> str:
        """`PATH:LINE:COL: error: MESSAGE`, the source line, a caret, help."""
        message = printable(self.message)
        if self.span is None:
            out = [f"{self.severity}: {message}"]
        else:
            sp = self.span
            out = [f"{printable(sp.path)}:{sp.line}:{sp.column}: {self.severity}: {message}"]
            text = sp.source.line(sp.line)
            if text:
                gutter = f"{sp.line:>4} | "
                end = sp.end_column if sp.end_line == sp.line else len(text) + 1
                first = min(max(sp.column, 1), len(text) + 1)
                last = min(max(end, first + 1), len(text) + 1)
                # a long line is quoted around the spot, not whole
                lo, hi = 0, len(text)
                if hi > QUOTE_CHARS:
                    lo = max(0, min(first - 1 - QUOTE_CHARS // 4, hi - QUOTE_CHARS))
                    hi = lo + QUOTE_CHARS
                before, after = ("..." if lo else ""), ("..." if hi < len(text) else "")
                shown, starts = _quote(text[lo:hi])
                out.append(gutter + (before + shown + after).rstrip())
                lead = len(before) + starts[first - 1 - lo]
                width = max(1, starts[min(last - 1, hi) - lo] - starts[first - 1 - lo])
                out.append(" " * (len(gutter) - 2) + "| " + " " * lead + "^" + "~" * (width - 1))
        for note in self.notes:
            out.append(f"note: {printable(note)}")
        if self.help:
            out.append(f"help: {printable(self.help)}")
        return "\n".join(out)


QUOTE_CHARS = 200      # the most of a source line a diagnostic quotes
MESSAGE_CHARS = 1000   # the most of a message, note or help it prints


def _escape(ch: str) -> str:
    return ch.encode("unicode_escape").decode("ascii")


def printable(text: str) -> str:
    """`text` with every character a terminal would act on or hide (escape
    sequences, bidi overrides, line and page breaks) written as its Python
    escape, so a spec's or a path's text cannot drive the user's terminal;
    very long text is cut in the middle."""
    if len(text) > MESSAGE_CHARS:  # a message quoting a huge name or path
        text = text[:MESSAGE_CHARS // 2] + "..." + text[-MESSAGE_CHARS // 4:]
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _quote(text: str) -> tuple[str, list[int]]:
    """A source line as the diagnostic shows it, and the display column at
    which each character (and the end of the line) starts, for the caret:
    tabs expand to 4-column stops, control and other unprintable characters
    show as escapes (`\\x1b`), wide characters take two columns, combining
    marks none."""
    pieces = []
    starts = []
    col = 0
    for ch in text:
        starts.append(col)
        if ch == "\t":
            piece = " " * (4 - col % 4)
            width = len(piece)
        elif ch.isprintable():
            piece = ch
            width = (2 if unicodedata.east_asian_width(ch) in "WF"
                     else 0 if unicodedata.combining(ch) else 1)
        else:
            piece = _escape(ch)
            width = len(piece)
        pieces.append(piece)
        col += width
    starts.append(col)
    return "".join(pieces), starts


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
    """`did you mean 'x'?` for a candidate close to `name`, or None.

    Only close ones (difflib ratio >= 0.75: `atention` -> `attention`, not
    `reshape` -> `repeat` nor `layout` -> `out`), a candidate that starts with
    `name` (`lay` -> `layernorm`), or a common abbreviation (`attn` ->
    `attention`); never for a word that names a concept the language lacks
    (`prelu` is not a misspelt `relu`: see `absent_concept`)."""
    names = sorted(set(candidates))
    if name.lower() in ABSENT_CONCEPTS and name not in names:
        return None
    close = difflib.get_close_matches(name, names, n=1, cutoff=SUGGEST_CUTOFF)
    if not close and len(name) >= 2:   # one typo in a short name: `dd` -> `d`, `scr` -> `src`
        close = [c for c in names if c[:1] == name[:1] and _one_edit(name, c)][:1]
    if not close and name.lower() in ABBREVIATIONS and ABBREVIATIONS[name.lower()] in names:
        close = [ABBREVIATIONS[name.lower()]]
    if not close and len(name) > 2:
        close = [c for c in names if c.startswith(name)][:1]
    return f"did you mean '{close[0]}'?" if close else None


SUGGEST_CUTOFF = 0.75


def _one_edit(a: str, b: str) -> bool:
    """Whether `a` and `b` differ by one insertion, deletion, substitution
    or swap of two neighbouring characters."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        return a[i + 1:] == b[i + 1:] or (a[i:i + 2] == b[i:i + 2][::-1] and a[i + 2:] == b[i + 2:])
    return a[i + 1:] == b[i:] if len(a) > len(b) else a[i:] == b[i + 1:]

# Short forms people write for names the language spells out.
ABBREVIATIONS = {
    "attn": "attention", "mha": "attention", "self_attention": "attention",
    "ln": "layernorm", "layer_norm": "layernorm", "rms_norm": "rmsnorm", "batch_norm": "batchnorm",
    "bn": "batchnorm", "emb": "embed", "embedding": "embed", "ffn": "mlp", "feedforward": "mlp",
    "fc": "linear", "dense": "linear", "swish": "silu", "conv": "conv1d",
    "pos_enc": "posenc", "positional_encoding": "posenc",
    "cat": "concat", "chunk": "split", "multiply": "mul", "prod": "mul", "plus": "add", "sum": "add",
}

# Layers and operations people know from other frameworks that the language
# does not have, and what to write instead (None: nothing equivalent).
ABSENT_CONCEPTS = {
    "reshape": "flatten merges the axes after T into the channel axis, unsqueeze adds a channel axis",
    "view": "flatten merges the axes after T into the channel axis, unsqueeze adds a channel axis",
    "transpose": "permute reorders the axes after T (layers act on the channel axis, the last)",
    "squeeze": "flatten merges the axes after T into the channel axis",
    "prelu": "its rectifiers are relu, squared_relu and hardtanh (clipped)",
    "leaky_relu": "its rectifiers are relu, squared_relu and hardtanh (clipped)",
    "stack": None, "matmul": None, "einsum": None,
    "maxpool": "maxpool1d, maxpool2d and maxpool3d pool windows (as conv1d/2d/3d convolve); spatial_max whole axes",
    "avgpool": "avgpool1d, avgpool2d and avgpool3d pool windows (as conv1d/2d/3d convolve); spatial_mean and "
               "time_mean whole axes",
    "pool": "spatial_mean or spatial_max pool the axes between T and C, time_mean the time axis",
    "softmax": "attention applies its own softmax",
    "upsample": None, "interpolate": None,
    "identity": "leave the stage out",
}


def absent_concept(name: str) -> str | None:
    """The help for a word that names a layer the language does not have
    (`reshape`, `prelu`, `maxpool`), or None when it names no such concept."""
    key = name.lower()
    if key not in ABSENT_CONCEPTS:
        return None
    instead = ABSENT_CONCEPTS[key]
    return (f"the language has no {key} layer" + (f": {instead}" if instead else "")
            + "; `seqdsl layers` lists the layers it has")
