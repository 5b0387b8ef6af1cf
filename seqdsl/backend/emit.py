"""Standalone PyTorch source for a model: `seqdsl compile SPEC -o model.py`.

The file imports only torch. It carries the kernel modules of
seqdsl/layers/torch_modules.py verbatim (docs/lowering.md), then one class per model
whose __init__ builds the same nested ModuleDicts as `seqdsl.build` and whose
forward is straight-line code over the spec's graph. Nothing from the spec
reaches the source unescaped: module paths and enum words are emitted with
repr() of validated Python values, numbers as ints/floats/bools, and every
identifier (class and local names) is generated or checked against
[A-Za-z_][A-Za-z0-9_]* and Python's keywords.

One naming scheme keeps spec names and the file's own names apart, so no
spec name can shadow a kernel, a helper, a builtin or another model:

* an input `x` is the argument `v_x` of forward; every other local of
  forward (`h1`, `states`, `pieces`, ...) is the emitter's and never starts
  with `v_`;
* a model's class is its name in CamelCase (`lstm_lm` -> `LstmLm`) unless
  that is not an identifier, is a keyword, a builtin or a name of the file
  (`Linear`, `F`, `ACTS`, `SpecModule`, `MODELS`), or is shared by two models
  of the file (`foo_bar`, `fooBar`): then it is `M_<name>`, which no CamelCase
  name can be (CamelCase has no `_`);
* `MODELS` maps each model's spec name to its class.
"""
from __future__ import annotations

import ast as pyast
import builtins
import functools
import keyword
import re
from collections import Counter
from pathlib import Path

from ..graph.ir import ModelGraph
from ..graph.lengths import length_code
from ..graph.symbolic import fmt_dim
from ..layers import LAYERS
from ..layers.module_spec import LOWERING_NAME, Tied
from .checks import input_checks
from .lengths import lengths_plan

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def safe_ident(name: str, prefix: str = "v") -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not name or not _IDENT.match(name) or keyword.iskeyword(name) or name[0].isdigit():
        name = f"{prefix}_{name}"
    if not _IDENT.match(name) or keyword.iskeyword(name):
        raise ValueError(f"cannot make an identifier from {name!r}")
    return name


@functools.lru_cache(maxsize=None)
def file_names() -> frozenset[str]:
    """Every global name an emitted file may define or use: the kernels'
    names (classes, helpers, imports) of torch_modules.py and of every
    per-family lowering file, whether or not a file's models use it (so a
    model's class name does not depend on its layers), SpecModule, MODELS,
    and Python's builtins."""
    names = {"SpecModule", "MODELS"} | set(dir(builtins))
    every = [p.stem for p in (Path(__file__).parent.parent / "layers").glob("*_torch.py")]
    for node in pyast.parse(_prelude(every)).body:
        if isinstance(node, (pyast.ClassDef, pyast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, (pyast.Import, pyast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (pyast.Assign, pyast.AnnAssign)):
            targets = node.targets if isinstance(node, pyast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, pyast.Name))
    assert not any(n.startswith("M_") for n in names)
    return frozenset(names)


def _camel(model: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", model) if p)


def class_names(models) -> dict[str, str]:
    """Spec model name -> class name, for the models of one file (see the
    module docstring): CamelCase, else `M_<name>`. Distinct for distinct names."""
    models = list(models)
    camel = {m: _camel(m) for m in models}
    shared = Counter(camel.values())
    out = {}
    for m in models:
        c = camel[m]
        if not (_IDENT.match(c) and not keyword.iskeyword(c) and shared[c] == 1 and c not in file_names()):
            c = f"M_{m}"
            if not _IDENT.match(c):
                raise ValueError(f"model name {m!r} is not an identifier")
        out[m] = c
    return out


def class_name(model: str, others=()) -> str:
    """The class of `model` in a file that also holds the models `others`."""
    return class_names(dict.fromkeys([model, *others]))[model]


def input_name(name: str) -> str:
    """forward's argument for the spec input `name`."""
    if not _IDENT.match(name):
        raise ValueError(f"input name {name!r} is not an identifier")
    return f"v_{name}"


def _add_expr(node, a: str, b: str) -> str:
    """A residual's add in emitted source: `a + b`, or one torch.add with
    alpha for `residual(scale=...)`."""
    if node.args is None:
        return f"{a} + {b}"
    return f"torch.add({a}, {b}, alpha={_lit(float(node.args.scale))})"


def _lit(v):
    """A Python literal for a validated value: only None, bool, int, float, str, tuples."""
    if v is None or isinstance(v, (bool, int)):
        return repr(v)
    if isinstance(v, float):
        return repr(v) if v == v and v not in (float("inf"), float("-inf")) else f"float({str(v)!r})"
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, (tuple, list)):
        return "(" + "".join(_lit(x) + ", " for x in v) + ")"
    raise TypeError(f"cannot emit a {type(v).__name__} literal")


def _prelude(lowerings=()) -> str:
    """The kernels the file needs, verbatim: seqdsl/layers/torch_modules.py,
    then each other lowering file the models use, less its imports (torch,
    math and torch_modules' names, all already in scope)."""
    layers = Path(__file__).parent.parent / "layers"
    src = (layers / "torch_modules.py").read_text()
    src = src.replace('"""One small nn.Module per layer concept', '"""Kernels (from seqdsl.layers.torch_modules): one small nn.Module per layer concept', 1)
    names, todo = set(lowerings) - {"torch_modules"}, sorted(set(lowerings) - {"torch_modules"})
    while todo:       # a lowering file may import the kernels its family shares (`from .x_torch import`)
        name = todo.pop()
        if LOWERING_NAME.match(name):
            deps = set(re.findall(r"^from \.([a-z][a-z0-9_]*_torch) import", (layers / f"{name}.py").read_text(), re.M))
            todo += sorted(deps - names)
            names |= deps
    for name in sorted(names):
        if not LOWERING_NAME.match(name):
            raise ValueError(f"not a lowering file name: {name!r}")
        body = [ln for ln in (layers / f"{name}.py").read_text().splitlines()
                if not ln.startswith(("import ", "from "))]
        src += f"\n\n# ---- from seqdsl.layers.{name}\n" + "\n".join(body) + "\n"
    return src


def _lowerings(graphs) -> set[str]:
    return {LAYERS[n.kind].module(n, None).lowering
            for g in graphs for n in g.nodes if n.kind not in ("input", "add")}


def _ctor(node, memory, aliases: dict[str, str]) -> str:
    """Constructor expression of node's module: its layer's ModuleSpec (the one
    `lower` instantiates) printed; a tied weight is the aliased module's path."""
    spec = LAYERS[node.kind].module(node, memory)
    if not _IDENT.match(spec.cls.removeprefix("nn.")):
        raise ValueError(f"cannot emit module class {spec.cls!r}")
    args = [aliases[a.alias] if isinstance(a, Tied) else _lit(a) for a in spec.args]
    args += [f"{safe_ident(k)}={_lit(v)}" for k, v in spec.kwargs.items()]
    return f"{spec.cls}({', '.join(args)})"


def _path_expr(name: str) -> str:
    return "self.layers" + "".join(f"[{_lit(p)}]" for p in name.split("."))


def _check_data(graph: ModelGraph) -> list[str]:
    """Class attributes check_inputs reads, as seqdsl.build's SeqModel has
    them: the spec's inputs, and its learned posencs whose length is a plain
    symbol (an expression length is checked by seqdsl.build only)."""
    input_specs, position_limits = input_checks(graph)
    specs = "".join(f"\n        {_lit(k)}: {_lit(v)}," for k, v in input_specs.items())
    limits = "".join(f"\n        ({_lit(layer)}, {_lit(symbols)}, None, {_lit(max_len)}, {_lit(line)}),"
                     for layer, symbols, fn, max_len, line in position_limits if fn is None)
    return ["    # what check_inputs holds the inputs to: name -> (dtype, dims, declaration, line);",
            "    # learned posencs: (layer, length symbol, None, max_len, line)",
            f"    spec_name = {_lit(graph.name)}",
            f"    input_specs = {{{specs}\n    }}",
            f"    position_limits = ({limits}\n    )"]


def emit_model(graph: ModelGraph, cls: str | None = None) -> str:
    """The class of one model; `cls` is its name (class_names), by default the
    name it has alone in a file."""
    cls = cls or class_name(graph.name)
    if not _IDENT.match(cls) or keyword.iskeyword(cls):
        raise ValueError(f"cannot emit class name {cls!r}")
    init, fwd, methods = [], [], []
    var: dict[str, str] = {}
    args = []
    for name in graph.inputs:
        args.append(input_name(name))
        var[name] = args[-1]
    aliases: dict[str, str] = {}
    nodes = [n for n in graph.nodes if n.kind != "input"]
    counter = [0]

    def new_var():
        counter[0] += 1
        return f"h{counter[0]}"

    for n in nodes:
        if n.kind == "add":
            continue
        seg = n.segments_scope()
        memory = int(dict(seg.args).get("memory", 0)) if seg is not None else None
        ctor = _ctor(n, memory, aliases)
        init.append(f"self._put({_lit(n.name)}, {ctor})")
        if n.alias is not None:
            aliases[n.alias] = _path_expr(n.name)

    # per-sequence lengths: one local per input (L0, ...) and per distinct formula (n1, ...)
    len_lines, len_var = [], {}
    if graph.lengths:
        in_var = {name: f"L{k}" for k, name in enumerate(graph.lengths)}
        values, len_calls = lengths_plan(graph)
        by_code = {v: v for v in in_var.values()}          # code -> its local
        for name, (origin, tree) in values.items():
            code = length_code(tree, in_var[origin])
            if code not in by_code:
                by_code[code] = f"n{len(by_code) - len(in_var) + 1}"
            len_var[name] = by_code[code]
        len_lines += ["if lengths is None:",
                      "    " + " = ".join(list(by_code.values()) + ["None"]),
                      "else:",
                      f"    lens = check_lengths(self, lengths, {{{''.join(f'{_lit(n)}: {var[n]}, ' for n in graph.inputs)}}})"]
        len_lines += [f"    {v} = lens[{_lit(n)}]" for n, v in in_var.items()]
        len_lines += [f"    {v} = {code}" for code, v in by_code.items() if v not in in_var.values()]
    else:
        len_calls = {}

    def len_kwargs(n) -> str:
        return "".join(f", {key}={len_var[src]}" for key, src in len_calls.get(n.name, ()))

    i = 0
    seg_count = 0
    while i < len(nodes):
        n = nodes[i]
        seg = n.segments_scope()
        if seg is None:
            v = new_var()
            if n.kind == "add":
                fwd.append(f"{v} = {_add_expr(n, var[n.sources[0]], var[n.sources[1]])}")
            else:
                fwd.append(f"{v} = {_path_expr(n.name)}({', '.join(var[s] for s in n.sources)}{len_kwargs(n)})"
                           f"  # {n.kind} -> {n.output}")
            var[n.name] = v
            i += 1
            continue
        j = i
        while j < len(nodes) and nodes[j].segments_scope() is not None and nodes[j].segments_scope().path == seg.path:
            j += 1
        group = nodes[i:j]
        names = {g.name for g in group}
        entry = next(s for s in group[0].sources if s not in names)
        # values a stage reads by name (a cross_attention context), the entry
        # too: whole tensors, passed in as e0, e1, ...; only a stage's pipeline
        # input (its first source, a residual add's both) is the sliced piece
        outer = list(dict.fromkeys(s for g in group if g.kind != "add" for s in g.sources[1:] if s not in names))
        consumed_outside = {s for m in nodes[j:] for s in m.sources} | set(graph.values[o] for o in graph.outputs)
        exported = [g.name for g in group if g.name in consumed_outside]
        sa = dict(seg.args)
        length, mem = int(sa["length"]), int(sa.get("memory", 0))
        attn = [g for g in group if g.kind == "attention"]
        mname = f"_segments{seg_count}"
        seg_count += 1
        # per-sequence lengths: n, each sequence's valid steps in the piece (the body keeps
        # the time axis); a value read whole, its own lengths (m0, m1, ...)
        piece_n = entry in len_var
        outer_n = list(dict.fromkeys(src for g in group for _, src in len_calls.get(g.name, ()) if src not in names
                                     and src != entry))
        body = [f"    def {mname}(self, x, states{', n' if piece_n else ''}"
                f"{''.join(f', e{q}' for q in range(len(outer)))}{''.join(f', m{q}' for q in range(len(outer_n)))}):",
                f"        \"\"\"One piece of segments(length={length}, memory={mem}); states: per attention layer.\"\"\""]
        local = {entry: "x"}
        whole = {s: f"e{q}" for q, s in enumerate(outer)}
        seg_len = {s: f"m{q}" for q, s in enumerate(outer_n)}
        k = 0
        for g in group:
            v = f"s{k}"
            k += 1
            if g.kind == "add":
                body.append(f"        {v} = {_add_expr(g, local[g.sources[0]], local[g.sources[1]])}")
                local[g.name] = v
                continue
            srcs = ", ".join([local[g.sources[0]]] + [local[s] if s in names else whole[s] for s in g.sources[1:]])
            srcs += "".join(f", {key}={seg_len.get(src, 'n')}" for key, src in len_calls.get(g.name, ()))
            if g.kind == "attention":
                body.append(f"        {v} = {_path_expr(g.name)}({srcs}, state=states[{attn.index(g)}])")
            else:
                body.append(f"        {v} = {_path_expr(g.name)}({srcs})")
            local[g.name] = v
        body.append(f"        return ({''.join(local[e] + ', ' for e in exported)})")
        methods.append("\n".join(body))
        outs = [new_var() for _ in exported]
        fwd.append(f"states = [{{}} for _ in range({len(attn)})]")
        fwd.append("pieces = []")
        fwd.append(f"for start in range(0, {var[entry]}.shape[1], {length}):")
        piece_arg = (f", None if {len_var[entry]} is None else ({len_var[entry]} - start).clamp(0, {length})"
                     if piece_n else "")
        fwd.append(f"    pieces.append(self.{mname}({var[entry]}[:, start:start + {length}], states{piece_arg}"
                   f"{''.join(', ' + var[s] for s in outer)}{''.join(', ' + len_var[s] for s in outer_n)}))")
        fwd.append(f"    for layer, st in zip(({''.join(_path_expr(a.name) + ', ' for a in attn)}), states):")
        fwd.append("        layer.end_segment(st)")
        for idx, (e, o) in enumerate(zip(exported, outs)):
            fwd.append(f"{o} = torch.cat([p[{idx}] for p in pieces], dim=1)")
            var[e] = o
        i = j
    outs = [var[graph.values[o]] for o in graph.outputs]
    ret = outs[0] if len(outs) == 1 else "(" + ", ".join(outs) + ")"
    ret_lengths = []
    if graph.lengths:
        # forward(..., lengths=None) -> (outputs, output_lengths), as seqdsl.build's SeqModel
        out_lens = [len_var.get(graph.values[o]) for o in graph.outputs]
        ys = [y if n is None else f"zero_padded({y}, {n})" for y, n in zip(outs, out_lens)]
        ns = [n or "None" for n in out_lens]
        pair = (f"{ys[0]}, {ns[0]}" if len(ys) == 1 else
                f"({''.join(y + ', ' for y in ys)}), ({''.join(n + ', ' for n in ns)})")
        ret_lengths = ["if lengths is None:", f"    return {ret}", f"return {pair}"]
    lines = [f"class {cls}(SpecModule):",
             f"    \"\"\"Model {graph.name!r}: inputs {', '.join(args)}; params {graph.params:,}.\"\"\"",
             "",
             *_check_data(graph),
             "",
             "    def __init__(self):",
             "        super().__init__()"]
    lines += ["        " + s for s in init]
    if graph.lengths:
        lines.insert(lines.index("    def __init__(self):") - 1,
                     f"    lengths_inputs = {_lit(tuple(graph.lengths))}    # inputs declared `lengths`")
    lines += ["", f"    def forward(self, {', '.join(args + (['lengths=None'] if graph.lengths else []))}):"]
    lines += [f"        check_inputs(self, ({''.join(f'({_lit(n)}, {v}), ' for n, v in zip(graph.inputs, args))}))"]
    lines += ["        " + s for s in len_lines + fwd]
    lines += ["        " + s for s in ret_lengths] if ret_lengths else [f"        return {ret}"]
    lines += [""]
    for m in methods:
        lines += [m, ""]
    return "\n".join(lines)


SPEC_MODULE = '''

class SpecModule(nn.Module):
    """Nested Scopes (ModuleDicts that take any spec name) keyed by the spec's
    hierarchical names; the state_dict keys read like the spec (no container
    prefix), as in seqdsl.build."""

    def __init__(self):
        super().__init__()
        self.layers = Scope()

    def _put(self, name, module):
        d = self.layers
        parts = name.split(".")
        for p in parts[:-1]:
            if p not in d:
                d[p] = Scope()
            d = d[p]
        d[parts[-1]] = module

    def state_dict(self, *args, **kwargs):
        sd = super().state_dict(*args, **kwargs)
        return type(sd)((k[len("layers."):] if k.startswith("layers.") else k, v) for k, v in sd.items())

    def load_state_dict(self, state_dict, strict=True, assign=False):
        sd = {"layers." + k: v for k, v in state_dict.items()}
        return super().load_state_dict(sd, strict=strict, assign=assign)

'''


def _usage(graphs, classes: dict[str, str]) -> str:
    """The file's opening comment: each model's class, its inputs' and outputs'
    shapes (names are spec identifiers, so nothing here needs escaping)."""
    lines = ["#", "# Usage (a class per model; load_state_dict takes seqdsl.build's state_dict):"]
    for g in graphs:
        cls = classes[g.name]
        ins = ", ".join(g.inputs)
        outs = ", ".join(g.outputs)
        lines.append(f"#   model = {cls}()    # spec model '{g.name}'")
        lines.append(f"#   {outs} = model({ins})")
        for name, ty in list(g.inputs.items()) + list(g.outputs.items()):
            dtype = "int64" if ty.dtype == "int" else "float"
            lines.append(f"#       {name}: {dtype}[{', '.join(fmt_dim(d) for d in ty.dims)}]")
    return "\n".join(lines) + "\n"


def emit_program(graphs: list[ModelGraph], source_name: str = "") -> str:
    head = (f"# Generated by seqdsl from {source_name!r}. Standalone: imports only torch.\n"
            if source_name else "# Generated by seqdsl. Standalone: imports only torch.\n")
    parts = [head, _prelude(_lowerings(graphs)), SPEC_MODULE]
    if len({g.name for g in graphs}) != len(graphs):
        raise ValueError("two models of the same name")
    classes = class_names(g.name for g in graphs)
    parts.insert(1, _usage(graphs, classes))
    for g in graphs:
        parts.append("\n" + emit_model(g, classes[g.name]) + "\n")
    parts.append("\n# spec model name -> class\nMODELS = {"
                 + "".join(f"{_lit(g.name)}: {classes[g.name]}, " for g in graphs) + "}\n")
    return "".join(parts)
