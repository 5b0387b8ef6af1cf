"""What a model checks of its input tensors (backend.modules.check_inputs), as
plain data worked out from the graph: seqdsl.build's SeqModel holds it, and
`seqdsl compile -o` prints it into each class. No torch here."""
from __future__ import annotations

from ..graph.ir import ModelGraph
from ..graph.symbolic import as_int, compile_expr


def input_checks(graph: ModelGraph):
    """(input_specs, position_limits). input_specs: name -> (dtype, dims,
    declaration, line), each dim an int (channels), a symbol name (B, T) or
    None (an expression of symbols: not checked). position_limits: per learned
    posenc (layer, symbols of the length it sees, that length as a function
    of them or None when it is the symbol itself, max_len, line)."""
    specs = {}
    for name, t in graph.inputs.items():
        dims = tuple(as_int(d) if as_int(d) is not None else
                     (str(d) if getattr(d, "is_Symbol", False) else None) for d in t.dims)
        specs[name] = (t.dtype, dims, f"{name}: {t}", graph.node(name).line)
    limits = []
    for n in graph.layers:
        if n.kind == "posenc" and n.args.kind == "learned":
            length = n.inputs[0].dims[1]
            symbols = tuple(sorted(str(s) for s in getattr(length, "free_symbols", ())))
            fn = None if getattr(length, "is_Symbol", False) else compile_expr(length)
            limits.append((n.name, symbols, fn, n.args.max_len, n.line))
    return specs, tuple(limits)
