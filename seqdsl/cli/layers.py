"""`seqdsl layers [NAME] [--markdown]`: the layer reference, from the registry.

Everything printed comes from `seqdsl.layers.LAYERS`: argument names, types
and defaults from each kind's pydantic `Args`, and the words (`summary`,
`shape_rule`, `params_rule`, `causal_rule`, `arg_docs`, `notes`) from the
kind's class beside its rules. `--markdown` prints the section of
docs/language.md between its `layers:begin` / `layers:end` markers, which
tests/test_language_doc.py keeps equal to this output. A kind that does not
give its words yet prints "(undocumented)" here and fails that test.
"""
from __future__ import annotations

import re
import types
import typing

from ..errors import UsageError, suggest
from ..layers import LAYERS, Layer
from ..limits import MAX_DIM

BEGIN = "<!-- layers:begin -->"
END = "<!-- layers:end -->"
UNDOCUMENTED = "(undocumented)"
#: What every kind must say about itself (class attributes of its Layer class).
REQUIRED = ("summary", "shape_rule", "params_rule")
#: The language's combinators (docs/language.md), which a user may ask about by name.
COMBINATORS = ("repeat", "residual", "segments")


# ------------------------------------------------------------------ the data
def missing(layer: Layer) -> list[str]:
    """The reference attributes `layer` does not give yet."""
    gaps = [a for a in REQUIRED if not getattr(layer, a, None)]
    if causality(layer) is None:
        gaps.append("causal_rule")
    return gaps


def causality(layer: Layer) -> str | None:
    """Whether the kind streams, in words; None when that depends on its
    arguments (it overrides `is_causal`) and it gives no `causal_rule`."""
    if getattr(layer, "causal_rule", None):
        return layer.causal_rule
    if type(layer).is_causal is not Layer.is_causal:
        return None
    return "yes" if layer.causal_by_default else "no: it needs the whole sequence"


def arguments(layer: Layer) -> list[tuple[str, str, str, str]]:
    """(name, type, default, meaning) of each argument, in positional order."""
    docs = getattr(layer, "arg_docs", None) or {}
    rows = []
    for name, field in layer.Args.model_fields.items():
        kind = type_text(field.annotation, field.metadata)
        if field.is_required():
            default = "required"
        else:
            value = field.get_default(call_default_factory=True)
            default = value_text(value)
        rows.append((name, kind, default, docs.get(name, "")))
    return rows


def signature(kind: str, layer: Layer) -> str:
    """How a call is written: `attention(heads, kv_heads=none, ...)`; a bare
    name when the kind takes no arguments."""
    args = [name if default == "required" else f"{name}={default}"
            for name, _, default, _ in arguments(layer)]
    return f"{kind}({', '.join(args)})" if args else kind


def type_text(annotation, metadata=()) -> str:
    """Words for an argument's type: `int > 0`, `float in [0, 1)`, `one of a, b`."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        constraints = list(metadata)
        for e in extra:
            constraints += list(getattr(e, "metadata", None) or [e])
        return type_text(base, constraints)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{v}`" for v in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        parts = [type_text(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(parts)
    if origin is list:
        (item,) = typing.get_args(annotation) or (int,)
        return f"list of {type_text(item)}"
    if annotation is bool:
        return "`true` or `false`"
    if annotation is str:
        return "name"
    if getattr(annotation, "__name__", "") == "Ref":
        return "bound value"
    name = getattr(annotation, "__name__", str(annotation))
    bounds = _bounds(metadata)
    if annotation is float and bounds == {"ge": 0, "lt": 1}:
        return "float in [0, 1)"
    words = [f"{op} {value_text(v)}" for key, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
             if (v := bounds.get(key)) is not None and not (key == "le" and v == MAX_DIM)]
    return f"{name} {' and '.join(words)}" if words else name


def _bounds(metadata) -> dict:
    out = {}
    for m in metadata:
        for key in ("gt", "ge", "lt", "le"):
            if getattr(m, key, None) is not None:
                out[key] = getattr(m, key)
    return out


def value_text(value) -> str:
    """A value as a spec writes it: `true`, `none`, `1e-5`, `same`, `[3, 3]`."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), f"{value:g}")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return str(value)


def _plain(text: str) -> str:
    return text.replace("`", "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


# ------------------------------------------------------------------ the views
def table() -> str:
    """Every kind with its one-line summary."""
    width = max(len(k) for k in LAYERS)
    lines = [f"{'layer'.ljust(width)}  summary", f"{'-' * width}  -------"]
    lines += [f"{kind.ljust(width)}  {_plain(layer.summary or UNDOCUMENTED)}" for kind, layer in LAYERS.items()]
    lines.append(f"\n{len(LAYERS)} layer kinds. `seqdsl layers NAME` shows one; docs/language.md is the language reference.")
    return "\n".join(lines)


def detail(kind: str) -> str:
    """One kind: its call, arguments (type, default, meaning), shape,
    parameters, causality and notes."""
    layer = LAYERS[kind]
    rows = arguments(layer)
    lines = [f"{kind}: {_plain(layer.summary or UNDOCUMENTED)}", "", f"usage:       {signature(kind, layer)}"]
    if rows:
        lines.append("arguments (in positional order):")
        w = [max(len(_plain(r[i])) for r in rows) for i in range(3)]
        for name, kind_text, default, meaning in rows:
            line = f"  {name.ljust(w[0])}  {_plain(kind_text).ljust(w[1])}  {default.ljust(w[2])}  {_plain(meaning)}"
            lines.append(line.rstrip())
    else:
        lines.append("arguments:   none")
    lines += [f"shape:       {_plain(layer.shape_rule or UNDOCUMENTED)}",
              f"parameters:  {_plain(layer.params_rule or UNDOCUMENTED)}",
              f"causal:      {_plain(causality(layer) or UNDOCUMENTED)}"]
    if getattr(layer, "notes", None):
        lines.append(f"notes:       {_plain(layer.notes)}")
    return "\n".join(lines)


def markdown_section(kind: str) -> str:
    layer = LAYERS[kind]
    out = [f"### `{kind}`", "", f"{layer.summary or UNDOCUMENTED}", "", f"`{signature(kind, layer)}`", ""]
    rows = arguments(layer)
    if rows:
        out += ["| argument | type | default | meaning |", "|---|---|---|---|"]
        out += [f"| `{name}` | {_cell(t)} | {_cell(d if d == 'required' else f'`{d}`')} | {_cell(m)} |"
                for name, t, d, m in rows]
    else:
        out.append("No arguments.")
    out += ["", f"- **shape**: {layer.shape_rule or UNDOCUMENTED}",
            f"- **parameters**: {layer.params_rule or UNDOCUMENTED}",
            f"- **causal**: {causality(layer) or UNDOCUMENTED}"]
    if getattr(layer, "notes", None):
        out += ["", layer.notes]
    return "\n".join(out)


def markdown() -> str:
    """The generated section of docs/language.md, markers included."""
    out = [BEGIN, "<!-- generated from seqdsl/layers by `seqdsl layers --markdown`; do not edit by hand -->", "",
           "| layer | what it does |", "|---|---|"]
    out += [f"| [`{kind}`](#{kind}) | {_cell(layer.summary or UNDOCUMENTED)} |" for kind, layer in LAYERS.items()]
    for kind in LAYERS:
        out += ["", markdown_section(kind)]
    out.append(END)
    return "\n".join(out)


# ------------------------------------------------------------------ the command
def add_layers_parser(sub) -> None:
    p = sub.add_parser("layers", help="the layer library: every kind, or one kind's arguments, shape and parameters")
    p.add_argument("name", nargs="?", metavar="NAME", help="a layer kind (attention, conv1d, ...)")
    p.add_argument("--markdown", action="store_true",
                   help="print the reference as markdown (docs/language.md's generated section)")


def run_layers(args) -> int:
    if args.name is None:
        print(markdown() if args.markdown else table())
        return 0
    if args.name in COMBINATORS:
        raise UsageError(f"'{args.name}' is a combinator, not a layer kind: docs/language.md describes it")
    if args.name == "add":
        raise UsageError("'add' is not a layer kind: `y = a -> add(b)` is the graph's own add node "
                         "(docs/language.md, \"Combining values\")")
    if args.name not in LAYERS:
        hint = suggest(args.name, LAYERS)
        raise UsageError(f"unknown layer '{args.name}'; " + (hint or "`seqdsl layers` lists them"))
    print(markdown_section(args.name) if args.markdown else detail(args.name))
    return 0
