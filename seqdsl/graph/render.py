"""Human and machine renderings of a checked model: summary, dot, mermaid, json."""
from __future__ import annotations

import json
import re
from collections import Counter

from .ir import ModelGraph, Node


def summary(model: ModelGraph, path: str) -> str:
    """What `seqdsl check` prints for one model."""
    width = max([len(n) for n in list(model.inputs) + list(model.outputs)] + [4])
    lines = [f"model {model.name}  ({path})", "  inputs:"]
    lines += [f"    {n:<{width}}  {t}" + ("  lengths" if n in model.lengths else "")
              for n, t in model.inputs.items()]
    lines.append("  outputs:")
    carried = {o: model.node(model.values[o]).lengths for o in model.outputs}
    lines += [f"    {n:<{width}}  {t}" + (f"  lengths of {carried[n]}" if carried[n] else "")
              for n, t in model.outputs.items()]
    if model.loss is not None:
        options = "".join(f", {k}={v}" for k, v in model.loss.options)
        lines.append(f"  loss: {model.loss.kind}({model.loss.output}{options})")
    kinds = Counter(n.kind for n in model.layers)
    shown = ", ".join(f"{k} {c}" for k, c in kinds.items())
    lines.append(f"  layers: {len(model.layers)}  ({shown})")
    if model.symbols:
        lines.append("  symbolic dims: " + ", ".join(model.symbols))
    lines.append(f"  parameters: {model.params:,}")
    return "\n".join(lines)


def _label(node: Node) -> str:
    return f"{node.name}\\n{node.kind}  {node.output}"


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\\\\n", "\\n") + '"'


def to_dot(model: ModelGraph) -> str:
    out = [f"digraph {_dot_quote(model.name)} {{", "  rankdir=TB;", "  node [shape=box, fontname=monospace];"]
    for node in model.nodes:
        shape = ", shape=ellipse" if node.kind in ("input", "add") else ""
        out.append(f"  {_dot_quote(node.name)} [label={_dot_quote(_label(node))}{shape}];")
    for src, dst, data in model.graph.edges(data=True):
        style = " [style=dashed]" if data.get("port", 0) else ""
        out.append(f"  {_dot_quote(src)} -> {_dot_quote(dst)}{style};")
    out.append("}")
    return "\n".join(out)


def _mermaid_id(i: int) -> str:
    return f"n{i}"


def _mermaid_text(text: str) -> str:
    return re.sub(r'["<>]', "", text)


def to_mermaid(model: ModelGraph) -> str:
    ids = {n.name: _mermaid_id(i) for i, n in enumerate(model.nodes)}
    out = ["flowchart TD"]
    for node in model.nodes:
        label = _mermaid_text(f"{node.name}<br/>{node.kind} {node.output}").replace("br/", "<br/>")
        label = _mermaid_text(f"{node.name} · {node.kind} · {node.output}")
        out.append(f'  {ids[node.name]}["{label}"]')
    for src, dst, data in model.graph.edges(data=True):
        arrow = "-.->" if data.get("port", 0) else "-->"
        out.append(f"  {ids[src]} {arrow} {ids[dst]}")
    return "\n".join(out)


def node_json(node: Node) -> dict:
    return {
        "name": node.name,
        "kind": node.kind,
        "args": node.args.model_dump(mode="json") if node.args is not None else {},
        "inputs": [str(t) for t in node.inputs],
        "output": str(node.output),
        "params": node.params,
        "line": node.span.line if node.span else None,
        "column": node.span.column if node.span else None,
        "scope": [s.path for s in node.scope],
        "alias": node.alias,
        "sources": list(node.sources),
    }


def to_json(model: ModelGraph) -> str:
    out = {
        "model": model.name,
        "params": model.params,
        "inputs": {n: str(t) for n, t in model.inputs.items()},
        "outputs": {n: str(t) for n, t in model.outputs.items()},
        "symbols": list(model.symbols),
        "nodes": [node_json(n) for n in model.nodes],
        "edges": [{"from": s, "to": d, "port": data.get("port", 0)}
                  for s, d, data in model.graph.edges(data=True)],
    }
    if model.loss is not None:   # only when declared: older readers see the keys they knew
        out["loss"] = {"kind": model.loss.kind, "output": model.loss.output, **dict(model.loss.options)}
    return json.dumps(out, indent=2)
