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

from dataclasses import dataclass, replace
from functools import cached_property, lru_cache

import sympy

from ..graph.ir import ModelGraph, Node, TensorType
from ..graph.symbolic import ceil_div, compile_expr, smin
from ..layers import LAYERS
from ..layers.costs import (DTYPE_BYTES, ONE, SEGMENT_LENGTH, SEGMENT_MEMORY, ZERO, CostContext, LayerCost,
                            cost_symbol, is_cost_symbol, tensor_bytes)
from ..layers.loss import loss_bytes as _loss_bytes

# ------------------------------------------------------------------ per node
@dataclass
class NodeCost:
    """A node with its cost rule's figures and the cost symbols they are bound at."""

    node: Node
    shared: LayerCost            # the cost with the node's shared arguments as cost symbols
    binding: tuple               # ((cost symbol, value), ...): the node's values; () when `shared` is its own
    needs_grad: bool             # the output carries a gradient
    in_backward: bool            # the layer takes part in the backward pass
    grad_ports: tuple = ()       # input ports whose input needs a gradient
    rate: object = ONE           # steps of this layer per model input step (strided convs upstream)
    elem: int = 4                # bytes per float element at the model dtype
    _own: LayerCost | None = None

    @property
    def cost(self) -> LayerCost:
        """The node's own LayerCost: `shared`, or derived at the node's values
        on first use (milliseconds: the estimate never asks; `value` is cheaper)."""
        if not self.binding:
            return self.shared
        if self._own is None:
            self._own = layer_cost(self.node, self.elem)
        return self._own

    def value(self, field: str, env: dict):
        """One LayerCost field of this node at env ({dim name: int}), exact,
        evaluated from `shared` at the node's values (nothing derived)."""
        expr = getattr(self.shared, field)
        if not self.binding:
            return _compiled(expr)(env)
        return _compiled(expr)({**env, **{s.name: v for s, v in self.binding}})

    @property
    def train_flops(self):
        """Forward + backward, as counted for this instance."""
        c = self.cost
        train = c.flops
        if self.in_backward:
            train = train + c.backward_flops
            for port in self.grad_ports:
                if port < len(c.input_grad_flops):
                    train = train + c.input_grad_flops[port]
        return train


@lru_cache(maxsize=4096)
def _compiled(expr):
    return compile_expr(expr)


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
    return _cost(node, node.args, ctx)


def _cost(node: Node, args, ctx: CostContext) -> LayerCost:
    if node.kind == "input":
        return _input_cost(node, ctx)
    if node.kind == "add":
        return _add_cost(node, ctx)
    c = LAYERS[node.kind].cost(args, list(node.inputs), node.output, ctx)
    if ctx.segments is not None and c.segment_workspace is None:
        c = _saved_per_piece(node, args, c, ctx)
    return c


def _saved_per_piece(node: Node, args, c: LayerCost, ctx: CostContext) -> LayerCost:
    """Inside segments a layer runs once a piece (seqmodel._run_segments), so
    what it saves besides its input and output is its rule's at one piece,
    summed over the pieces: a padded conv's copy (L + K - 1 rows a piece), a
    batchnorm's per-call statistics (seeds 1246, 1577, 1702, 1761, 1876:
    0.51-0.91x when taken once at T). Kept as the rule gave it where that is
    proportional to the piece's length (the sum is the same); a rule that
    runs per segment itself (attention, whose memory spans pieces: its
    segment_workspace) is not asked."""
    inputs = [_at_piece(node.inputs[0]), *node.inputs[1:]]
    one = LAYERS[node.kind].cost(args, inputs, _at_piece(node.output), CostContext(ctx.elem))
    length, t = ctx.segments[0], node.inputs[0].dims[1]
    pieces = ceil_div(t, length)
    last = t - length * (pieces - 1)

    def summed(piece, whole):
        piece = sympy.sympify(piece)
        if sympy.expand(piece.xreplace({PIECE: 2 * PIECE}) - 2 * piece) == 0:
            return whole
        return (pieces - 1) * piece.xreplace({PIECE: length}) + piece.xreplace({PIECE: last})

    grads = tuple(summed(p, w) for p, w in zip(one.saved_if_input_grad, c.saved_if_input_grad))
    return replace(c, saved_bytes=summed(one.saved_bytes, c.saved_bytes),
                   saved_if_input_grad=grads + c.saved_if_input_grad[len(grads):])


# ------------------------------------------------------------------ shared costs
# 2,000 attention layers with 2,000 distinct windows (or segments blocks with
# distinct lengths) are 2,000 distinct closed forms, and sympy spends
# milliseconds on each operation that builds one. Instead the layer's
# `symbolic_cost_args` and the enclosing segments' (length, memory) are given
# to the cost rule as cost symbols (`@window`, ...): one derivation serves
# every layer that differs only in them, and each node keeps its values (its
# binding). A total is then a `Figure`: the terms without cost symbols summed
# and expanded as before, plus (expression, binding) terms that the estimate
# evaluates once per distinct expression, at every binding at once.
# A cost used at fewer distinct values is derived at each (as share=False
# does): a handful of derivations cost little, and the totals then share
# their subexpressions (ceil(T/L), ...) in a sweep (CompiledCost), which
# bound terms do not.
SHARE_FROM = 8


def _shared_key(node: Node, elem: int):
    """(cache key, binding, thunk deriving the shared LayerCost)."""
    binding = []
    args = node.args
    layer = LAYERS.get(node.kind)
    if layer is not None and layer.symbolic_cost_args:
        given = {a: getattr(args, a) for a in layer.symbolic_cost_args if getattr(args, a) is not None}
        if given:
            args = args.model_copy(update={a: cost_symbol(a) for a in given})
            binding += [(cost_symbol(a), v) for a, v in given.items()]
    seg = node.segments_scope()
    segments = None
    if seg is not None:
        values = dict(seg.args)
        segments = (SEGMENT_LENGTH, SEGMENT_MEMORY)
        binding += [(SEGMENT_LENGTH, values["length"]), (SEGMENT_MEMORY, values.get("memory", 0))]
    try:
        key = (node.kind, args, node.inputs, segments)
        hash(key)
    except TypeError:   # an argument value that cannot be hashed: the args object stands for itself
        key = (node.kind, id(node.args), node.inputs, segments)
    return key, tuple(binding), lambda: _cost(node, args, CostContext(elem, segments))


@dataclass(frozen=True)
class Figure:
    """A closed form as a sum: `base` (no cost symbols) plus `bound`,
    ((expression, ((cost symbol, value), ...)), ...) terms, each its expression
    at its binding."""

    base: object
    bound: tuple = ()

    def closed_form(self):
        """The whole sum as one sympy expression, the bound terms expanded
        (slow on thousands of bound terms: the estimate never asks for it)."""
        if not self.bound:
            return self.base
        return sympy.Add(self.base, *[sympy.expand(e.xreplace(dict(b))) for e, b in self.bound])


class _Terms:
    """Builds Figures; sums and cost-symbol lookups are memoised across the
    totals, which repeat the same per-layer terms."""

    def __init__(self):
        self.sums: dict = {}        # tuple of terms -> their sum
        self.symbols: dict = {}     # expression -> the cost symbols it reads
        self.kept: dict = {}        # (those symbols, binding) -> the binding restricted to them

    def figure(self, terms) -> Figure:
        """terms: (expression, binding) pairs. A term's binding keeps only the
        cost symbols its expression reads; a term that reads none is summed
        into the base."""
        base, bound = [], []
        for e, binding in terms:
            if binding:
                syms = self.symbols.get(e)
                if syms is None:
                    syms = self.symbols[e] = frozenset(s for s in getattr(e, "free_symbols", ()) if is_cost_symbol(s))
                if syms:
                    kept = self.kept.get((syms, binding))
                    if kept is None:
                        kept = self.kept[syms, binding] = tuple(sorted(((s, v) for s, v in binding if s in syms),
                                                                      key=lambda p: p[0].name))
                    bound.append((e, kept))
                    continue
            base.append(e)
        return Figure(self.sum(base), tuple(bound))

    def sum(self, terms):
        """Add(*terms), each term as its rule built it, memoised by the terms.
        Nothing is expanded: expanding rebuilds, and so re-evaluates, every
        Piecewise, Min and Max in a term (sympy compares a Max's arguments
        pairwise again: seconds on a segments body), and the compiled closed
        forms and --formula read the sums as they are."""
        key = tuple(terms)
        total = self.sums.get(key)
        if total is None:
            total = self.sums[key] = sympy.Add(*terms)
        return total


def _time_len(t: TensorType):
    return t.dims[1] if t.rank >= 3 else None


# ------------------------------------------------------------------ model totals
@dataclass
class ModelCost:
    """Closed forms for one model at one dtype, each a `Figure` (the estimate
    evaluates these); the properties give each as one sympy expression
    (derived on first use: thousands of bound terms take seconds). Peak
    memory is a max over candidates (kept as a list: evaluating the max is
    cheaper than asking sympy to compare them)."""

    model: ModelGraph
    dtype: str
    elem: int
    nodes: list[NodeCost]
    params: int
    forward: Figure
    train: Figure
    activation: Figure
    peaks: list                      # Figures; the inference peak is their max (weights included)
    per_token: Figure | None         # None when the model cannot stream
    state: Figure | None
    depth: Figure
    streaming_blocker: Node | None
    input_bytes: object = ZERO
    limits: tuple = ()               # (length expr, max_len, layer node): lengths the module refuses
    saved_tensors: tuple = ()        # (storage name, "tensor", bytes): the stored tensors autograd saves
    stream_context: tuple = ()       # inputs given once when generating (an encoder–decoder's source)
    loss_bytes: object = ZERO        # the declared loss's training working set (seqdsl.layers.loss)
    tied_grad_bytes: int = 0         # extra gradient copies of tied weights at the end of backward

    @cached_property
    def flops_forward(self):
        return self.forward.closed_form()

    @cached_property
    def flops_train(self):
        return self.train.closed_form()

    @cached_property
    def activation_bytes(self):
        return self.activation.closed_form()

    @cached_property
    def inference_peak(self) -> list:
        return _dedupe([p.closed_form() for p in self.peaks])

    @cached_property
    def flops_per_token(self):
        return None if self.per_token is None else self.per_token.closed_form()

    @cached_property
    def state_bytes(self):
        return None if self.state is None else self.state.closed_form()

    @cached_property
    def sequential_depth(self):
        return self.depth.closed_form()

    @cached_property
    def activation_parts(self) -> tuple:
        """activation_bytes by owner, for the per-device split (seqdsl.cost.parallel):
        (node name, "internal" | "tensor", bytes); each node's at its own values."""
        return tuple([(n.node.name, "internal", n.cost.saved_bytes + n.cost.saved_buffer_bytes)
                      for n in self.nodes if n.in_backward]
                     + list(self.saved_tensors))


def model_cost(model: ModelGraph, dtype: str = "float32", share: bool = True) -> ModelCost:
    """Derive every closed form of `model` once (COST_MODEL.md). Layers that
    differ only in cost-symbol arguments, at SHARE_FROM distinct values or
    more, share one derivation ("shared costs" above); share=False derives
    each layer's cost at its own values: the same figures, slower on many
    distinct layers (tests compare the two)."""
    elem = DTYPE_BYTES[dtype]
    nodes: list[NodeCost] = []
    by_name: dict[str, NodeCost] = {}
    cache: dict = {}
    plan = [_shared_key(node, elem) if share else None for node in model.nodes]
    values: dict = {}
    for p in plan:
        if p is not None and p[1]:
            values.setdefault(p[0], set()).add(p[1])
    for node, p in zip(model.nodes, plan):
        if p is not None and len(values.get(p[0], ())) >= SHARE_FROM:
            key, binding, derive = p
        else:
            # repeats share one validated args object (the elaborator's rule cache)
            key = (node.kind, id(node.args), node.inputs, tuple(s.args for s in node.scope if s.kind == "segments"))
            binding, derive = (), (lambda node=node: layer_cost(node, elem))
        c = cache.get(key)
        if c is None:
            c = cache[key] = derive()
        srcs = [by_name[s] for s in node.sources]
        in_grads = [s.needs_grad for s in srcs]
        has_weights = node.params > 0 or c.has_weights
        in_backward = node.kind != "input" and (has_weights or any(in_grads))
        grad_ports = tuple(p for p, g in enumerate(in_grads) if g) if in_backward else ()
        # steps of this layer per model step: a time-strided conv upstream slows it down
        rate = srcs[0].rate / srcs[0].shared.time_stride if srcs else ONE
        nc = NodeCost(node, c, binding, in_backward, in_backward, grad_ports, rate, elem)
        nodes.append(nc)
        by_name[node.name] = nc

    terms = _Terms()
    forward = terms.figure([(n.shared.flops, n.binding) for n in nodes])
    train_terms = []
    for n in nodes:
        c, b = n.shared, n.binding
        train_terms.append((c.flops, b))
        if n.in_backward:
            train_terms.append((c.backward_flops, b))
            for port in n.grad_ports:
                if port < len(c.input_grad_flops):
                    train_terms.append((c.input_grad_flops[port], b))
    train = terms.figure(train_terms)

    # ---- storages: a view's storage is its source's (unsqueeze, flatten, p=0 dropout)
    size = {n.node.name: tensor_bytes(n.node.output, elem) for n in nodes}
    # A segments body value read after its group is the concatenation of its
    # pieces (seqmodel._run_segments: torch.cat, a new storage even of one
    # piece), not the pieces the body's layers saved: both are kept when a layer
    # after the group saves it (counted once: 0.86-0.87x measured, seed 1538).
    group = {n.node.name: (s.path if (s := n.node.segments_scope()) else None) for n in nodes}
    producer: dict[str, str] = {}        # a concatenation's storage name -> its body value

    def read(src: str, reader: str) -> str:
        """The storage `reader` reads for its source `src`."""
        if group[src] is None or group[src] == group[reader]:
            return root[src]
        cat = src + " (concatenated)"
        producer[cat], size[cat] = src, size[src]
        return cat

    root: dict[str, str] = {}
    for n in nodes:
        root[n.node.name] = read(n.node.sources[0], n.node.name) if n.shared.output_is_view else n.node.name

    # ---- training: tensors autograd saves, each storage once; model inputs excluded
    saved_roots: set[str] = set()
    maybe_saved: dict[str, list] = {}     # root -> the 0/1 forms of the lengths it is saved at
    internal = []
    entry_saved: set = set()
    entries, nodes_by_seg = _segments_entries(nodes)
    for n in nodes:
        if not n.in_backward:
            continue
        c, bind = n.shared, n.binding
        internal.append((c.saved_bytes, bind))
        if c.saved_buffer_bytes != 0:
            internal.append((c.saved_buffer_bytes, bind))
        for port, src in enumerate(n.node.sources):
            if port < len(c.saved_if_input_grad) and by_name[src].needs_grad:
                internal.append((c.saved_if_input_grad[port], bind))
        if c.saves_output and not c.output_is_view:
            saved_roots.add(root[n.node.name])
        for port, src in enumerate(n.node.sources):
            flag = c.saves_inputs[port] if port < len(c.saves_inputs) else False
            entry = _segments_entry(n.node, entries)
            if isinstance(flag, sympy.Expr) and not flag.is_number and not (n.binding or entry):
                # kept at some lengths only (a 0/1 closed form: conv2d/3d read the input in
                # place where no axis is padded, which can depend on the length's parity)
                maybe_saved.setdefault(read(src, n.node.name), []).append(flag)
                continue
            saves = bool(flag) or \
                (port < len(c.saves_inputs_if_grad) and c.saves_inputs_if_grad[port]
                 and by_name[src].needs_grad)
            if saves and c.saves_for_other and not any(
                    by_name[s].needs_grad for p, s in enumerate(n.node.sources) if p != port):
                saves = False   # a product keeps each factor only for the other factor's gradient
            if not saves:
                continue
            if entry is not None and entry[1] == src and port == 0:    # the piece (a context is whole)
                entry_saved.add((entry, read(src, n.node.name)))
            else:
                saved_roots.add(read(src, n.node.name))
    inputs = {n.node.name for n in nodes if n.node.kind == "input"}
    # A segments group over several pieces runs on a copy of each piece of its
    # entry value (docs/lowering.md): the layers save those copies (the value's
    # bytes in all), and the value itself only when one piece is the whole of it.
    # Over SHARE_FROM distinct lengths or more, one expression at each group's length.
    share_pieces = share and len({dict(seg.args)["length"] for (seg, _), _ in entry_saved}) >= SHARE_FROM
    products: dict = {}
    for (seg, _), r in sorted(entry_saved, key=str):
        several, bind = _several_pieces(seg, nodes_by_seg[seg.path], share_pieces)
        for key in ((size[r], several), (size[r], 1 - several)):
            if key not in products:
                products[key] = key[0] * key[1]
        internal.append((products[size[r], several], bind))
        if r not in inputs and r not in saved_roots:
            internal.append((products[size[r], 1 - several], bind))
    saved_roots -= inputs
    # a storage kept at some lengths only counts there, and once beside any keeping it always
    maybe = {r: size[r] * (f[0] if len(f) == 1 else sympy.Max(*f))
             for r, f in sorted(maybe_saved.items()) if r not in saved_roots and r not in inputs}
    activation = terms.figure([*internal, *[(size[r], ()) for r in sorted(saved_roots)],
                               *[(b, ()) for b in maybe.values()]])
    saved_tensors = tuple(sorted([(producer.get(r, r), "tensor", size[r]) for r in saved_roots]
                                 + [(producer.get(r, r), "tensor", b) for r, b in maybe.items()],
                                 key=lambda e: e[0]))

    # ---- inference: live storages along the graph (free after the last consumer)
    groups = _segments_groups(model, nodes)     # segments run piece by piece: _segments_peaks
    body = {k for g in groups for k in range(g.first, g.end)}
    cats = {name for g in groups for name in g.exported}
    iroot: dict[str, str] = {}
    for n in nodes:
        view = (n.shared.output_is_view or n.shared.inference_view) and n.node.name not in cats
        iroot[n.node.name] = iroot[n.node.sources[0]] if view else n.node.name
    root = iroot
    last_use: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for src in n.node.sources:
            last_use[root[src]] = i
    # model outputs are kept; so are the inputs, which the caller holds all along
    keep = {root[model.values[o]] for o in model.outputs} | {n.node.name for n in nodes if n.node.kind == "input"}
    live: dict[str, object] = {}
    weights_bytes = model.params * elem
    peaks = []
    share_len = share and len({g.length for g in groups}) >= SHARE_FROM
    first = {g.first: g for g in groups}
    piece_costs: dict = {}
    for i, n in enumerate(nodes):
        if i in first:
            peaks += _segments_peaks(first[i], [(v, ()) for v in live.values()], weights_bytes, terms, elem,
                                     share_len, piece_costs)
        r = root[n.node.name]
        if i in body:
            # one piece at a time (the peaks above); after the group only its
            # concatenated outputs are left
            if n.node.name in cats:
                live[r] = size[r]
        else:
            if r == n.node.name:
                live[r] = size[r]
            c = n.shared
            work = c.workspace_bytes if c.live_workspace_bytes is None else c.live_workspace_bytes
            peaks.append(terms.figure([*[(v, ()) for v in live.values()], (work, n.binding), (weights_bytes, ())]))
        for src in set(n.node.sources):
            rs = root[src]
            if last_use.get(rs) == i and rs not in keep and rs in live:
                del live[rs]
        if last_use.get(r) is None and r not in keep and r in live:
            del live[r]
    peaks = _dedupe(peaks)

    # ---- generation: every input streamed, or (an encoder–decoder) the last
    # input streamed with the others given once, their layers run at init_state
    blocker, static = _stream_plan(model, nodes)
    per_token = state = None
    stream_context: tuple = ()
    if blocker is None:
        stream_context = tuple(n for n in model.inputs if n in static)
        steps, states = [], []
        scaled: dict = {}
        kept = set()
        for n in nodes:
            c = n.shared
            if n.node.kind in ("input", "add") or n.node.name in static:
                continue
            # what the streamed layers read of the context, kept in the state (inputs are the caller's)
            kept |= {s for s in n.node.sources if s in static and by_name[s].node.kind != "input"}
            step = c.step_flops
            if step is None:
                tl = _time_len(n.node.inputs[0])
                step = c.flops / tl if tl is not None else c.flops
            if n.rate != ONE:
                key = (step, n.rate)
                if key not in scaled:
                    scaled[key] = n.rate * step
                step = scaled[key]
            steps.append((step, n.binding))
            states.append((c.state_bytes, n.binding))
        states += [(size[r], ()) for r in sorted(kept)]
        per_token = terms.figure(steps)
        state = terms.figure(states)

    # ---- sequential depth: longest path; segments with memory run one after another
    depth = _sequential_depth(model, nodes, terms, share)
    input_bytes = sympy.Add(*[tensor_bytes(t, elem) for t in model.inputs.values()])
    # learned positions and linformer projections exist for max_len steps only
    limits = tuple((n.node.inputs[0].dims[1], n.node.args.max_len, n.node) for n in nodes
                   if n.node.kind in ("posenc", "attention") and getattr(n.node.args, "max_len", None))
    loss = ZERO if model.loss is None else _loss_bytes(model.loss, model.outputs[model.loss.output], elem)
    # A weight used twice (a tied head) gets one gradient per use; autograd holds
    # the first while the second is computed, then adds them: three copies at
    # once where an untied weight has one (measured: tests/test_loss.py).
    tied = sum(2 * n.node.args.out * n.node.inputs[0].channels * elem for n in nodes
               if n.node.kind == "linear" and n.node.args.tie is not None)
    return ModelCost(model, dtype, elem, nodes, model.params, forward, train, activation, peaks,
                     per_token, state, depth, blocker, input_bytes, limits, saved_tensors, stream_context,
                     loss, tied)


def _stream_plan(model: ModelGraph, nodes: list[NodeCost]):
    """(blocker, static): the first layer that stops generation (None: it
    streams), and the nodes computed once from inputs given up front. Every
    input streams when every layer is causal; otherwise the last input streams
    and the others are context (an encoder–decoder: the decoder streams, the
    encoder runs once), as SeqModel.init_state(batch, **context) does, when
    every layer downstream of the streamed input is causal and reads its
    context (cross_attention's, join's) from the context side only. A layer
    that reads a context whole cannot have it streamed, so a model with one
    takes the second plan even when every layer is causal; when its context
    comes from the last input, each other input is tried as the one streamed
    (an RNN-T whose labels come last: the audio streams, the predictor's
    labels are given)."""
    first = _first_non_causal(nodes, set())
    reads_context = any(n.node.kind not in ("input", "add") and LAYERS[n.node.kind].context_args() for n in nodes)
    if (first is None and not reads_context) or len(model.inputs) < 2:
        return first, set()
    names = list(model.inputs)
    for streamed in reversed(names):
        static = set(names) - {streamed}
        for n in nodes:
            if n.node.kind != "input" and n.node.sources and all(s in static for s in n.node.sources):
                static.add(n.node.name)
        clash = next((n for n in nodes if n.node.kind not in ("input", "add") and n.node.name not in static
                      and LAYERS[n.node.kind].context_args()
                      and any(s not in static for s in n.node.sources[1:])), None)
        if clash is None:
            blocker = _first_non_causal(nodes, static)     # on the streamed side: the layer to change
            if blocker is None:
                return None, static
            if streamed == names[-1]:
                return blocker, set()
        elif streamed == names[-1] and LAYERS[clash.node.kind].aligned_context:
            return first, set()          # read chunk by chunk (mul, concat): every input streams
    return first, set()


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


# ------------------------------------------------------------------ segments: the live set
# seqmodel._run_segments runs a group's body on one piece of its entry value at a
# time (a copy of it when there are several pieces), keeps each piece's outputs
# in a list and concatenates them after the last piece. So while piece p runs,
# what is live is what was live before the group, the earlier pieces' outputs,
# and the piece's own body values (each held to the piece's end) with the
# running layer's workspace, all at the piece's length; then, at the
# concatenation, the pieces' outputs and the output.
PIECE = sympy.Symbol("piece@", integer=True, positive=True)    # one piece's length (no dim is named so)


@dataclass
class _SegmentsGroup:
    """The nodes of one segments body, walked piece by piece."""

    first: int                   # index of its first node in the walk
    end: int                     # one past its last
    nodes: list                  # its NodeCosts
    length: int
    exported: tuple              # its values read after it (concatenated from the pieces)


def _segments_groups(model: ModelGraph, nodes: list[NodeCost]) -> list[_SegmentsGroup]:
    """The segments groups, each a run of consecutive nodes in one segments
    scope, as seqmodel runs them."""
    groups, i = [], 0
    while i < len(nodes):
        seg = nodes[i].node.segments_scope()
        if seg is None:
            i += 1
            continue
        j = i
        while j < len(nodes) and (s := nodes[j].node.segments_scope()) is not None and s.path == seg.path:
            j += 1
        names = {n.node.name for n in nodes[i:j]}
        read = {s for n in nodes[j:] for s in n.node.sources} | {model.values[o] for o in model.outputs}
        exported = tuple(n.node.name for n in nodes[i:j] if n.node.name in names & read)
        groups.append(_SegmentsGroup(i, j, nodes[i:j], int(dict(seg.args)["length"]), exported))
        i = j
    return groups


def _at_piece(t: TensorType, length=PIECE) -> TensorType:
    return TensorType(t.dtype, (t.dims[0], length, *t.dims[2:]))


def _piece_workspace(n: NodeCost, elem: int, cache: dict):
    """The layer's live workspace on one piece (its pipeline input PIECE steps
    long, a context whole), as a call outside segments: the rule's per-segment
    arguments change only FLOPs (cross_attention projects its context once a
    piece), and attention, whose memory spans pieces, gives its own
    (segment_workspace)."""
    node = n.node
    if node.kind == "add":
        return ZERO
    inputs = (_at_piece(node.inputs[0]), *node.inputs[1:])
    key = (node.kind, node.args, inputs, _at_piece(node.output), elem)
    try:
        hash(key)
    except TypeError:   # an argument value that cannot be hashed: the args object stands for itself
        key = (node.kind, id(node.args), inputs, _at_piece(node.output), elem)
    c = cache.get(key)
    if c is None:
        c = cache[key] = LAYERS[node.kind].cost(node.args, list(inputs), _at_piece(node.output),
                                                       CostContext(elem))
    return c.workspace_bytes if c.live_workspace_bytes is None else c.live_workspace_bytes


def _segments_peaks(g: _SegmentsGroup, before: list, weights_bytes, terms: "_Terms", elem: int, share: bool,
                    cache: dict):
    """The inference peak candidates of one segments group (Figures), `before`
    the live terms at its start (its entry among them): at each body layer of
    the last piece (r steps, after T - r steps of earlier outputs) and of the
    last full piece (L steps, after T - r - L), and at the concatenation
    (the outputs twice: the pieces' list and the result)."""
    t = g.nodes[0].node.inputs[0].dims[1]
    length, bind = (SEGMENT_LENGTH, ((SEGMENT_LENGTH, g.length),)) if share else (g.length, ())
    several = _pieces(t, length)                      # 1 with several pieces: each is a copy
    last = t - length * (ceil_div(t, length) - 1)     # the last piece's steps
    out = sum((tensor_bytes(_at_piece(n.node.output), elem) for n in g.nodes if n.node.name in g.exported), ZERO)
    copy = tensor_bytes(_at_piece(g.nodes[0].node.inputs[0]), elem)
    at = lambda e, p: e.xreplace({PIECE: p})        # noqa: E731
    held = ZERO                                       # the piece's body values so far, at PIECE steps
    peaks = []
    for n in g.nodes:
        c = n.shared
        if not (c.output_is_view or c.inference_view):
            held = held + tensor_bytes(_at_piece(n.node.output), elem)
        if c.segment_workspace is not None:      # the rule's own, per piece (attention's memory)
            own = [[(w, n.binding)] for w in c.segment_workspace]
            piece = held
        else:
            own = [[], []]
            piece = held + _piece_workspace(n, elem, cache)
        last_piece = at(out, t - last) + several * at(copy, last) + at(piece, last)
        full_piece = several * (at(out, t - last - length) + at(copy, length) + at(piece, length))
        for e, w in zip((last_piece, full_piece), own):
            peaks.append(terms.figure([*before, (e, bind), *w, (weights_bytes, ())]))
    whole = sum((tensor_bytes(n.node.output, elem) for n in g.nodes if n.node.name in g.exported), ZERO)
    peaks.append(terms.figure([*before, (2 * whole, ()), (weights_bytes, ())]))
    return peaks


def _several_pieces(seg, first: Node, share: bool):
    """(expression, binding): 1 when the group's input of T steps is cut into
    more than one piece (T > length), else 0: Min(1, ceil(T/length) - 1); with
    share, at SEGMENT_LENGTH bound to the group's length."""
    t = first.inputs[0].dims[1]
    length = dict(seg.args)["length"]
    if share:
        return _pieces(t, SEGMENT_LENGTH), ((SEGMENT_LENGTH, length),)
    return _pieces(t, length), ()


@lru_cache(maxsize=1024)
def _pieces(t, length):
    # built once per (T, length): sympy's Min costs milliseconds (2,000 groups: seconds)
    return smin(ONE, ceil_div(t, length) - 1)




def _dedupe(exprs):
    seen, out = set(), []
    for e in exprs:
        if e not in seen:
            seen.add(e)
            out.append(e)
    return out


def _sequential_depth(model: ModelGraph, nodes: list[NodeCost], terms: _Terms, share: bool) -> Figure:
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
        # the node's own depth (its instance's, where it reads a cost symbol: none does today)
        own = n.shared.depth
        if n.binding and any(is_cost_symbol(s) for s in getattr(own, "free_symbols", ())):
            own = n.cost.depth
        depth[node.name] = start + own
    # add the segment wavefront once, after each segments block: ceil(T/L) - 1,
    # shared (one expression at each block's L) when SHARE_FROM lengths or more
    wave: dict = {}
    extra = []
    share = share and len({args["length"] for args, _ in seg_info.values()}) >= SHARE_FROM
    for args, T in seg_info.values():
        if args.get("memory", 0) > 0:
            if not share:
                extra.append((ceil_div(T, args["length"]) - 1, ()))
                continue
            if T not in wave:
                wave[T] = ceil_div(T, SEGMENT_LENGTH) - 1
            extra.append((wave[T], ((SEGMENT_LENGTH, args["length"]),)))
    outs = [depth[model.values[o]] for o in model.outputs]
    total = outs[0] if len(outs) == 1 else sympy.Max(*outs)
    return terms.figure([(total, ()), *extra])


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


__all__ = ["Figure", "ModelCost", "NodeCost", "model_cost", "layer_cost", "leading_terms"]
