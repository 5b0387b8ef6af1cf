"""Per-sequence lengths through a built model (docs/language.md, "Variable
lengths"): which values carry lengths and how each is computed from its
input's, and which lengths each module is given. seqdsl.build and `seqdsl
compile -o` both read this plan, so the two lowerings cannot disagree."""
from __future__ import annotations

from ..graph.ir import ModelGraph
from ..graph.lengths import length_code
from ..layers import LAYERS


def lengths_plan(graph: ModelGraph, var=lambda origin: "L") -> tuple[dict, dict]:
    """(values, calls). values: node name -> (input name, code) for every
    value that carries lengths, code the Python expression of its lengths
    over the variable `var(input name)` (the input's lengths tensor), clamped at 0 (a valid
    convolution may leave a short sequence no steps); calls: layer node name
    -> ((keyword, node name), ...), the lengths its module takes
    (`lengths=` of its input, `context_lengths=` of its context)."""
    values, calls = {}, {}
    for n in graph.nodes:
        if n.lengths is not None:
            name = var(n.lengths)
            code = length_code(n.output.dims[1], str(graph.inputs[n.lengths].dims[1]), name)
            values[n.name] = (n.lengths, code if code == name else f"({code}).clamp(min=0)")
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
