"""Per-sequence lengths through a built model (docs/language.md, "Variable
lengths"): which values carry lengths and how each is computed from its
input's, and which lengths each module is given. seqdsl.build and `seqdsl
compile -o` both read this plan, so the two lowerings cannot disagree."""
from __future__ import annotations

from ..graph.ir import ModelGraph
from ..graph.lengths import length_tree
from ..layers import LAYERS


def lengths_plan(graph: ModelGraph) -> tuple[dict, dict]:
    """(values, calls). values: node name -> (input name, tree) for every
    value that carries lengths, tree its lengths as a function of the
    input's (seqdsl.graph.lengths), clamped at 0 (a valid convolution may
    leave a short sequence no steps); calls: layer node name -> ((keyword,
    node name), ...), the lengths its module takes (`lengths=` of its input,
    `context_lengths=` of its context)."""
    values, calls = {}, {}
    for n in graph.nodes:
        if n.lengths is not None:
            tree = length_tree(n.output.dims[1], str(graph.inputs[n.lengths].dims[1]))
            values[n.name] = (n.lengths, tree if tree == ("len",) else ("max", tree, ("int", 0)))
        if n.kind in ("input", "add"):
            continue
        rule = LAYERS[n.kind]
        given = []
        if rule.takes_lengths and graph.node(n.sources[0]).lengths is not None:
            given.append(("lengths", n.sources[0]))
        if rule.masks_context:
            given += [("context_lengths", s) for s in n.sources[1:] if graph.node(s).lengths is not None]
        if given:
            calls[n.name] = tuple(given)
    return values, calls
