"""Closed-form costs of a checked model (conventions: COST_MODEL.md).

Each layer kind's `cost(args, inputs, out, ctx)` (in seqdsl/layers/) returns a
`LayerCost` of sympy expressions in the model's symbolic dims, describing the
kernels of docs/lowering.md. This module adds what is not a layer (inputs,
residual adds, `segments` memory via `CostContext`) and walks the graph once
for the model totals: FLOP sums with the backward counted op by op (an input
gradient only where the input needs one), the bytes autograd saves (each
storage once), the inference live set, generation step cost and state, and
sequential depth. Nothing here imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy

from ..graph.ir import ModelGraph, Node, TensorType
from ..graph.symbolic import ceil_div
from ..layers import LAYERS
from ..layers.costs import DTYPE_BYTES, ONE, ZERO, CostContext, LayerCost, tensor_bytes

# ------------------------------------------------------------------ per node
@dataclass
class NodeCost:
    node: Node
    cost: LayerCost
    needs_grad: bool             # the output carries a gradient
    in_backward: bool            # the layer takes part in the backward pass
    train_flops: object          # forward + backward, as counted for this instance
    rate: object = ONE           # steps of this layer per model input step (strided convs upstream)


def _input_cost(node: Node, ctx: CostContext) -> LayerCost:
    # the caller's tensor: never saved (COST_MODEL.md excludes inputs), no gradient
    return LayerCost(depth=ZERO)


def _add_cost(node: Node, ctx: CostContext) -> LayerCost:
    # x + body(x): elementwise (not in FLOPs, COST_MODEL.md); aten.add saves nothing.
    return LayerCost(depth=ZERO, saves_inputs=(False, False), step_flops=ZERO)


def layer_cost(node: Node, elem: int) -> LayerCost:
    """The node's LayerCost (inputs and residual adds handled here)."""
    seg = node.segments_scope()
    ctx = CostContext(elem, tuple(v for _, v in seg.args) if seg else None)
    if node.kind == "input":
        return _input_cost(node, ctx)
    if node.kind == "add":
        return _add_cost(node, ctx)
    return LAYERS[node.kind].cost(node.args, list(node.inputs), node.output, ctx)


def _time_len(t: TensorType):
    return t.dims[1] if t.rank >= 3 else None


# ------------------------------------------------------------------ model totals
@dataclass
class ModelCost:
    """Closed forms for one model at one dtype. Peak memory is a max over
    candidate expressions (kept as a list: evaluating the max is cheaper than
    asking sympy to compare them)."""

    model: ModelGraph
    dtype: str
    elem: int
    nodes: list[NodeCost]
    params: int
    flops_forward: object
    flops_train: object
    activation_bytes: object
    inference_peak: list             # candidates; the peak is their max (weights included)
    flops_per_token: object | None   # None when the model cannot stream
    state_bytes: object | None
    sequential_depth: object
    streaming_blocker: Node | None
    input_bytes: object = ZERO
    limits: tuple = ()               # (length expr, max_len, layer node): lengths the module refuses
    activation_parts: tuple = ()     # (node name, "internal" | "tensor", bytes): activation_bytes by owner
    stream_context: tuple = ()       # inputs given once when generating (an encoder–decoder's source)


def model_cost(model: ModelGraph, dtype: str = "float32") -> ModelCost:
    """Derive every closed form of `model` once (COST_MODEL.md)."""
    elem = DTYPE_BYTES[dtype]
    nodes: list[NodeCost] = []
    by_name: dict[str, NodeCost] = {}
    cache: dict = {}
    for node in model.nodes:
        # repeats share one validated args object (the elaborator's rule cache)
        key = (node.kind, id(node.args), node.inputs, tuple(s.args for s in node.scope if s.kind == "segments"))
        c = cache.get(key)
        if c is None:
            c = cache[key] = layer_cost(node, elem)
        srcs = [by_name[s] for s in node.sources]
        in_grads = [s.needs_grad for s in srcs]
        has_weights = node.params > 0 or c.has_weights
        in_backward = node.kind != "input" and (has_weights or any(in_grads))
        needs_grad = in_backward
        train = c.flops
        if in_backward:
            train = train + c.backward_flops
            for port, g in enumerate(in_grads):
                if g and port < len(c.input_grad_flops):
                    train = train + c.input_grad_flops[port]
        # steps of this layer per model step: a time-strided conv upstream slows it down
        rate = srcs[0].rate / srcs[0].cost.time_stride if srcs else ONE
        nc = NodeCost(node, c, needs_grad, in_backward, train, rate)
        nodes.append(nc)
        by_name[node.name] = nc

    # Totals are sums of per-layer terms expanded one at a time (each distinct
    # term once: `_expanded`); expanding a whole total rebuilds, and so
    # re-evaluates, every Piecewise and Min in it, which on 2,000 layers with
    # distinct windows or segment lengths took minutes.
    memo: dict = {}
    flops_forward = _expanded([n.cost.flops for n in nodes], memo)
    train_terms = []
    for n in nodes:
        train_terms.append(n.cost.flops)
        if n.in_backward:
            train_terms.append(n.cost.backward_flops)
            for port, src in enumerate(n.node.sources):
                if by_name[src].needs_grad and port < len(n.cost.input_grad_flops):
                    train_terms.append(n.cost.input_grad_flops[port])
    flops_train = _expanded(train_terms, memo)

    # ---- storages: a view's storage is its source's (unsqueeze, flatten, time_last, p=0 dropout)
    root: dict[str, str] = {}
    for n in nodes:
        root[n.node.name] = root[n.node.sources[0]] if n.cost.output_is_view else n.node.name
    size = {n.node.name: tensor_bytes(n.node.output, elem) for n in nodes}

    # ---- training: tensors autograd saves, each storage once; model inputs excluded
    saved_roots: set[str] = set()
    internal = []
    entry_saved: set = set()
    entries, nodes_by_seg = _segments_entries(nodes)
    for n in nodes:
        if not n.in_backward:
            continue
        internal.append(n.cost.saved_bytes)
        for port, src in enumerate(n.node.sources):
            if port < len(n.cost.saved_if_input_grad) and by_name[src].needs_grad:
                internal.append(n.cost.saved_if_input_grad[port])
        if n.cost.saves_output and not n.cost.output_is_view:
            saved_roots.add(root[n.node.name])
        for port, src in enumerate(n.node.sources):
            saves = (port < len(n.cost.saves_inputs) and n.cost.saves_inputs[port]) or \
                (port < len(n.cost.saves_inputs_if_grad) and n.cost.saves_inputs_if_grad[port]
                 and by_name[src].needs_grad)
            if not saves:
                continue
            entry = _segments_entry(n.node, entries)
            if entry is not None and entry[1] == src:
                entry_saved.add((entry, root[src]))
            else:
                saved_roots.add(root[src])
    inputs = {n.node.name for n in nodes if n.node.kind == "input"}
    # A segments group over several pieces runs on a copy of each piece of its
    # entry value (docs/lowering.md): the layers save those copies (the value's
    # bytes in all), and the value itself only when one piece is the whole of it.
    for (seg, _), r in sorted(entry_saved, key=str):
        several = _several_pieces(seg, nodes_by_seg[seg.path])
        internal.append(size[r] * several)
        if r not in inputs and r not in saved_roots:
            internal.append(size[r] * (1 - several))
    saved_roots -= inputs
    activation_bytes = _expanded([*internal, *[size[r] for r in sorted(saved_roots)]], memo)
    # the same terms by owner, for the per-device split (seqdsl.cost.parallel)
    activation_parts = tuple([(n.node.name, "internal", n.cost.saved_bytes) for n in nodes if n.in_backward]
                             + [(r, "tensor", size[r]) for r in sorted(saved_roots)])

    # ---- inference: live storages along the graph (free after the last consumer)
    iroot: dict[str, str] = {}
    for n in nodes:
        view = n.cost.output_is_view or n.cost.inference_view
        iroot[n.node.name] = iroot[n.node.sources[0]] if view else n.node.name
    root = iroot
    last_use: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for src in n.node.sources:
            last_use[root[src]] = i
    # model outputs are kept; so are the inputs, which the caller holds all along
    keep = {root[model.values[o]] for o in model.outputs} | {n.node.name for n in nodes if n.node.kind == "input"}
    live: dict[str, object] = {}
    peaks = []
    for i, n in enumerate(nodes):
        r = root[n.node.name]
        if r == n.node.name:
            live[r] = size[r]
        work = n.cost.workspace_bytes if n.cost.live_workspace_bytes is None else n.cost.live_workspace_bytes
        peaks.append([*live.values(), work])
        for src in set(n.node.sources):
            rs = root[src]
            if last_use.get(rs) == i and rs not in keep and rs in live:
                del live[rs]
        if last_use.get(r) is None and r not in keep and r in live:
            del live[r]
    weights_bytes = model.params * elem
    inference_peak = _dedupe([_expanded([*p, weights_bytes], memo) for p in peaks])

    # ---- generation: every input streamed, or (an encoder–decoder) the last
    # input streamed with the others given once, their layers run at init_state
    blocker, static = _stream_plan(model, nodes)
    flops_per_token = state_bytes = None
    stream_context: tuple = ()
    if blocker is None:
        stream_context = tuple(n for n in model.inputs if n in static)
        steps, states = [], []
        by_name = {n.node.name: n for n in nodes}
        kept = set()
        for n in nodes:
            c = n.cost
            if n.node.kind in ("input", "add") or n.node.name in static:
                continue
            # what the streamed layers read of the context, kept in the state (inputs are the caller's)
            kept |= {s for s in n.node.sources if s in static and by_name[s].node.kind != "input"}
            step = c.step_flops
            if step is None:
                tl = _time_len(n.node.inputs[0])
                step = c.flops / tl if tl is not None else c.flops
            steps.append(n.rate * step)
            states.append(c.state_bytes)
        states += [size[r] for r in sorted(kept)]
        flops_per_token = _expanded(steps, memo)
        state_bytes = _expanded(states, memo)

    # ---- sequential depth: longest path; segments with memory run one after another
    depth = _sequential_depth(model, nodes)
    input_bytes = sympy.Add(*[tensor_bytes(t, elem) for t in model.inputs.values()])
    # learned positions and linformer projections exist for max_len steps only
    limits = tuple((n.node.inputs[0].dims[1], n.node.args.max_len, n.node) for n in nodes
                   if n.node.kind in ("posenc", "attention") and getattr(n.node.args, "max_len", None))
    return ModelCost(model, dtype, elem, nodes, model.params, flops_forward, flops_train,
                     activation_bytes, inference_peak, flops_per_token, state_bytes,
                     depth, blocker, input_bytes, limits, activation_parts, stream_context)


def _stream_plan(model: ModelGraph, nodes: list[NodeCost]):
    """(blocker, static): the first layer that stops generation (None: it
    streams), and the nodes computed once from inputs given up front. Every
    input streams when every layer is causal; otherwise the last input streams
    and the others are context (an encoder–decoder: the decoder streams, the
    encoder runs once), as SeqModel.init_state(batch, **context) does, when
    every layer downstream of the streamed input is causal and reads its
    context (cross_attention's, join's) from the context side only. A layer
    that reads a context whole cannot have it streamed, so a model with one
    takes the second plan even when every layer is causal (an RNN-T: the
    audio streams, the predictor's labels are given)."""
    first = _first_non_causal(nodes, set())
    reads_context = any(n.node.kind not in ("input", "add") and LAYERS[n.node.kind].context_args() for n in nodes)
    if (first is None and not reads_context) or len(model.inputs) < 2:
        return first, set()
    static = set(list(model.inputs)[:-1])
    for n in nodes:
        if n.node.kind != "input" and n.node.sources and all(s in static for s in n.node.sources):
            static.add(n.node.name)
    for n in nodes:
        if n.node.kind in ("input", "add") or n.node.name in static:
            continue
        if LAYERS[n.node.kind].context_args() and any(s not in static for s in n.node.sources[1:]):
            return first, set()
    blocker = _first_non_causal(nodes, static)     # on the streamed side: the layer to change
    return (None, static) if blocker is None else (blocker, set())


def _first_non_causal(nodes: list[NodeCost], static: set):
    for n in nodes:
        if n.node.kind in ("input", "add") or n.node.name in static:
            continue
        if not LAYERS[n.node.kind].is_causal(n.node.args, list(n.node.inputs)):
            return n.node
    return None


def _segments_entries(nodes: list[NodeCost]) -> tuple[dict, dict]:
    """Per segments group (by path): (scope, entry value) — the first source of
    its first node that is not in the group, the value the emitted module cuts
    into pieces (backend/seqmodel.py) — and its first node."""
    members: dict[str, set] = {}
    first: dict[str, Node] = {}
    for n in nodes:
        seg = n.node.segments_scope()
        if seg is not None:
            members.setdefault(seg.path, set()).add(n.node.name)
            first.setdefault(seg.path, n.node)
    entries = {}
    for path, node in first.items():
        seg = node.segments_scope()
        entries[path] = (seg, next(s for s in node.sources if s not in members[path]))
    return entries, first


def _segments_entry(node: Node, entries: dict):
    """(scope, entry value) of the segments group `node` runs in, or None."""
    seg = node.segments_scope()
    return None if seg is None else entries[seg.path]


def _several_pieces(seg, first: Node):
    """1 when the group's input of T steps is cut into more than one piece
    (T > length), else 0: Min(1, ceil(T/length) - 1)."""
    t = first.inputs[0].dims[1]
    return sympy.Min(ONE, ceil_div(t, dict(seg.args)["length"]) - 1)


def _expanded(terms, memo: dict):
    """sympy.expand(Add(*terms)), expanding each distinct term once (memo is
    shared across the totals, which repeat the same per-layer terms)."""
    out = []
    for t in terms:
        e = memo.get(t)
        if e is None:
            e = memo[t] = sympy.expand(t)
        out.append(e)
    return sympy.Add(*out)


def _dedupe(exprs):
    seen, out = set(), []
    for e in exprs:
        if e not in seen:
            seen.add(e)
            out.append(e)
    return out


def _sequential_depth(model: ModelGraph, nodes: list[NodeCost]):
    """Dependent steps of one training forward (COST_MODEL.md): recurrent
    layers add T each, attention/conv/position-wise layers 1. A `segments`
    body with memory runs its segments in order; as a wavefront (layer l of
    segment s waits for layer l of s - 1 and layer l - 1 of s) its critical
    path is depth(body) + ceil(T/L) - 1. Without memory the chunks are
    independent: depth(body)."""
    depth: dict[str, object] = {}
    seg_info: dict[str, tuple] = {}
    for n in nodes:
        node = n.node
        base = [depth[s] for s in node.sources]
        start = base[0] if len(base) == 1 else (sympy.Max(*base) if base else ZERO)
        seg = node.segments_scope()
        if seg is not None and seg.path not in seg_info:
            seg_info[seg.path] = (dict(seg.args), node.inputs[0].dims[1])
        depth[node.name] = start + n.cost.depth
    # add the segment wavefront once, after each segments block
    # one Add of all the terms: adding them one at a time re-flattens the
    # growing sum each time (quadratic in the number of segments blocks)
    extra = sympy.Add(*[ceil_div(T, args["length"]) - 1 for args, T in seg_info.values()
                        if args.get("memory", 0) > 0])
    outs = [depth[model.values[o]] for o in model.outputs]
    total = outs[0] if len(outs) == 1 else sympy.Max(*outs)
    return sympy.expand(total + extra)


def leading_terms(expr, symbols, keep: int = 3) -> str:
    """`4.7e5·T² + 1.2e8·T`: the expression's monomials by degree, 2 significant digits."""
    expr = sympy.expand(expr)
    if expr.has(sympy.Piecewise) or expr.has(sympy.ceiling) or expr.has(sympy.floor) or expr.has(sympy.Max):
        smooth = expr.replace(sympy.ceiling, lambda a: a).replace(sympy.floor, lambda a: a)
        smooth = _last_branch(smooth)
        approx = "≈ "
    else:
        smooth, approx = expr, ""
    order = list(symbols)
    syms = sorted((s for s in getattr(smooth, "free_symbols", ()) if s.name in symbols),
                  key=lambda s: order.index(s.name))
    try:
        poly = sympy.Poly(sympy.expand(smooth), *syms) if syms else None
    except sympy.PolynomialError:
        poly = None
    if poly is None:
        try:
            return approx + _num(float(smooth))
        except TypeError:
            return approx + str(smooth)
    terms = sorted(poly.terms(), key=lambda t: (sum(t[0]), t[0]), reverse=True)
    parts = []
    for monom, coeff in terms[:keep]:
        factors = [_num(float(coeff))] if (float(coeff) != 1 or not any(monom)) else []
        for s, p in zip(syms, monom):
            if p:
                factors.append(s.name + ("" if p == 1 else _superscript(p)))
        parts.append("·".join(factors))
    more = " + …" if len(terms) > keep else ""
    return approx + " + ".join(parts).replace("+ -", "- ") + more


def _last_branch(expr):
    """The Piecewise branch that holds for large lengths (the `True` one)."""
    return expr.replace(lambda e: isinstance(e, sympy.Piecewise), lambda e: e.args[-1][0]) \
        .replace(lambda e: isinstance(e, sympy.Max), lambda e: sympy.Add(*e.args)) \
        .replace(lambda e: isinstance(e, sympy.Min), lambda e: e.args[0])


def _num(v: float) -> str:
    if v == int(v) and abs(v) < 1e4:
        return str(int(v))
    if 1e-2 <= abs(v) < 1e4:
        return f"{v:.3g}"
    m, e = f"{v:.1e}".split("e")
    return f"{m}e{int(e)}"


def _superscript(p: int) -> str:
    return str(p).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))


__all__ = ["ModelCost", "NodeCost", "model_cost", "layer_cost", "leading_terms"]
