"""Roofline latency of a model on a hardware profile (COST_MODEL.md, issue 5).

    time = Σ_ops max(FLOPs / (η_c·peak), bytes / (η_m·bandwidth)) + steps · step_latency

An "op" is one graph node's pass: its FLOPs come from `seqdsl.cost` (the
same counts the estimate reports), its bytes moved follow the conventions
below (also in docs/cost_model.md, "Roofline latency"), and its sequential
steps are the loop iterations the emitted module runs one after another.

Bytes, per node, at the model dtype (token ids 8 bytes):

* forward (inference): weights read (an embedding gathers only its B·T rows;
  a tied head reads the tied table), every input read, the output written,
  and its transient tensors (`workspace_bytes`: q/k/v and heads, the MLP
  hidden pair, the band's scores, ...) written once and read once. Views and
  dropout in eval mode move nothing.
* training forward: the same, dropout included, plus the tensors saved for
  backward beyond the transients, `max(saved_bytes - workspace_bytes, 0)`
  (masks, logsumexp, norm statistics, oneDNN's gate workspace): a transient
  that autograd keeps was written anyway.
* backward (nodes in the backward graph): the weights read again, the weight
  gradient written, the output gradient read, every saved tensor read, the
  transients' gradients written and read (2 x workspace), and the gradient
  of each input that needs one written; a residual `add` reads two gradients
  and writes their sum.
* per token (one generation step at position n): weights read plus the
  generation state read (KV cache, recurrent state) — the traffic that bounds
  decoding — against the step's FLOPs.

Sequential steps: a recurrent layer is one batched op (the input products,
its traffic) plus `layers·T` dependent step ops, each the hidden product
h·W_hh^T bound by its FLOPs or by reading W_hh, plus the per-step floor;
its backward the same (the hidden gradient runs back through time); one
generated token costs `layers` floors. Every node inside `segments(L, ...)`
pays ceil(T/L) floors: the emitted module loops over the segments.

Two forms: `latency_exprs` gives sympy expressions (for `compare`), and
`latency` evaluates at points through integer closed forms compiled once per
(model, dtype) — the profile only scales them, so it is applied last, in
floats. Torch is never imported.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy

from .cached import node_bounds, roofline_seconds
from .model import ModelCost, NodeCost, model_cost
from ..layers.costs import tensor_bytes
from .hardware import HardwareProfile, load_profile
from ..graph.ir import ModelGraph, Node
from ..graph.symbolic import ceil_div, compile_expr, compile_shared, point_columns
from ..layers import LAYERS

ZERO = sympy.Integer(0)
ONE = sympy.Integer(1)
RECURRENT = ("lstm", "gru", "rnn")
FIGURES = ("forward", "train", "per_token")


@dataclass(frozen=True)
class Op:
    """One kernel, run `count` times: time = count·max(flops / (η_c·peak),
    bytes / (η_m·bandwidth)) + steps·floor, the floor being the profile's
    per-step latency for `floor` (HardwareProfile.step_floor). FLOPs and bytes are per run;
    `steps` counts the runs that wait on each other (sympy, ints)."""

    name: str
    flops: object
    bytes: object
    steps: object = ZERO
    count: object = ONE
    floor: str = ""                  # which per-step floor (HardwareProfile.step_floor): "gru", "gru.backward"


@dataclass
class RooflineOps:
    """Every op of the three figures of one (model, dtype)."""

    forward: list[Op]
    train: list[Op]                  # training forward ops, then backward ops
    per_token: list[Op] | None       # None: the model cannot stream


# ------------------------------------------------------------------ bytes per node
def weight_bytes(node: Node, elem: int):
    """Bytes of the weights a node multiplies by: its own parameters, plus the
    embedding table a tied head uses (counted in the embed's params, read here)."""
    w = node.params * elem
    if node.kind == "linear" and node.args.tie is not None:
        w += node.inputs[0].dims[-1] * node.args.out * elem
    return w


def _segment_steps(n: NodeCost):
    """Inside `segments(L, ...)` the emitted module runs the body once per
    segment: ceil(T/L) launches one after another."""
    node = n.node
    seg = node.segments_scope()
    if seg is not None and not n.cost.output_is_view:
        return ceil_div(node.inputs[0].dims[1], dict(seg.args)["length"])
    return ZERO


def recurrent_step(node: Node, elem: int):
    """(FLOPs, bytes) of one recurrent step of an lstm/gru/rnn node: the hidden
    product h·W_hh^T of every direction, 2·B·G·h·h·d FLOPs, which must read
    W_hh (G·h·h·d elements) each step — the input product is one batched GEMM."""
    layer, args = LAYERS[node.kind], node.args
    g, h, d = layer.gates, args.hidden, layer.directions(args)
    b = node.inputs[0].dims[0]
    return 2 * b * g * h * h * d, g * h * h * d * elem


def _split_recurrent(node: Node, name: str, flops, moved, depth, elem: int, floor: str) -> list[Op]:
    """A recurrent pass as one parallel op (the input products, all of the
    traffic but W_hh's per-step reads) plus `depth` = layers·T step ops, each
    paying the kind's per-step floor (`floor`: "lstm", "gru.backward", ...)."""
    step_flops, step_bytes = recurrent_step(node, elem)
    return [Op(name, flops - depth * step_flops, moved),
            Op(name + ".steps", step_flops, step_bytes, depth, depth, floor)]


def _forward_ops(n: NodeCost, elem: int, training: bool) -> list[Op]:
    node, c = n.node, n.cost
    if node.kind == "input" or c.output_is_view or (c.inference_view and not training):
        return []
    out = tensor_bytes(node.output, elem)
    weights = out if node.kind == "embed" else weight_bytes(node, elem)   # a gather reads B·T rows
    moved = weights + sum((tensor_bytes(t, elem) for t in node.inputs), ZERO) + out + 2 * c.workspace_bytes
    if training:
        # tensors saved for backward beyond the transients (which are written anyway):
        # dropout masks, logsumexp, norm statistics, oneDNN's gate workspace
        moved += sympy.Max(sympy.sympify(c.saved_bytes - c.workspace_bytes), ZERO)
    if node.kind in RECURRENT:
        return _split_recurrent(node, node.name, c.flops, moved, c.depth, elem, node.kind)
    return [Op(node.name, c.flops, moved, _segment_steps(n))]


def _backward_ops(n: NodeCost, elem: int, needs_grad: dict[str, bool]) -> list[Op]:
    node, c = n.node, n.cost
    if not n.in_backward or c.output_is_view:
        return []
    grad_out = tensor_bytes(node.output, elem)
    name = node.name + ".backward"
    if node.kind == "add":                      # the two branches' gradients summed
        return [Op(name, ZERO, 3 * grad_out)]
    w = weight_bytes(node, elem)
    has_weights = node.params > 0 or c.has_weights
    # the output gradient read, every saved tensor read, the transients' gradients written and read
    moved = grad_out + c.saved_bytes + 2 * c.workspace_bytes
    if has_weights:
        # weight gradient written; weights read for the input gradient (a gather needs none)
        moved += w if node.kind == "embed" else 2 * w
    if c.saves_output:
        moved += grad_out
    for port, (src, t) in enumerate(zip(node.sources, node.inputs)):
        saves = c.saves_inputs[port] if port < len(c.saves_inputs) else False
        if saves is not False:      # True, or a 0/1 form where it depends on the length (conv2d's padding)
            moved += tensor_bytes(t, elem) * (1 if saves is True else saves)
        if needs_grad[src]:
            moved += tensor_bytes(t, elem)
    if node.kind in RECURRENT:   # the hidden gradient runs backward through time, step by step
        return _split_recurrent(node, name, n.train_flops - c.flops, moved, c.depth, elem,
                                node.kind + ".backward")
    return [Op(name, n.train_flops - c.flops, moved, _segment_steps(n))]


def _token_op(n: NodeCost, elem: int) -> Op:
    node, c = n.node, n.cost
    if node.kind in ("input", "add") or c.output_is_view:
        return Op(node.name, ZERO, ZERO)
    step = c.step_flops
    if step is None:                            # position-wise: one position's share
        t = node.inputs[0].dims[1] if node.inputs[0].rank >= 3 else None
        step = c.flops / t if t is not None else c.flops
    batch = node.inputs[0].dims[0]
    weights = batch * node.output.dims[-1] * elem if node.kind == "embed" else weight_bytes(node, elem)
    steps, floor = (node.args.layers, node.kind) if node.kind in RECURRENT else (ZERO, "")
    return Op(node.name, n.rate * step, n.rate * (weights + c.state_bytes), n.rate * steps, floor=floor)


def roofline_ops(cost: ModelCost) -> RooflineOps:
    """The ops of one model's forward, training step and generation step."""
    elem = cost.elem
    needs_grad = {n.node.name: n.needs_grad for n in cost.nodes}
    forward = [op for n in cost.nodes for op in _forward_ops(n, elem, False)]
    train = [op for n in cost.nodes for op in _forward_ops(n, elem, True)]
    train += [op for n in reversed(cost.nodes) for op in _backward_ops(n, elem, needs_grad)]
    token = None if cost.flops_per_token is None else [_token_op(n, elem) for n in cost.nodes]
    keep = lambda ops: [o for o in ops if o.flops != 0 or o.bytes != 0 or o.steps != 0]  # noqa: E731
    return RooflineOps(keep(forward), keep(train), None if token is None else keep(token))


# ------------------------------------------------------------------ sympy form
def _op_expr(op: Op, profile: HardwareProfile, dtype: str):
    compute = sympy.Float(1 / (profile.compute_efficiency * profile.peak(dtype)))
    memory = sympy.Float(1 / (profile.memory_efficiency * profile.bandwidth))
    flops, moved = sympy.sympify(op.flops), sympy.sympify(op.bytes)
    if flops == 0:
        bound = memory * moved
    elif moved == 0:
        bound = compute * flops
    else:
        bound = sympy.Max(compute * flops, memory * moved)
    return op.count * bound + sympy.Float(profile.step_floor(op.floor)) * op.steps


def latency_exprs(model: ModelGraph, profile: HardwareProfile, dtype: str) -> dict[str, sympy.Expr | None]:
    """Seconds as sympy expressions of the model's dims (batch included):
    "forward", "train" (forward + backward, op by op) and "per_token" (None
    when the model cannot stream). A Max per op: compute- or memory-bound."""
    ops = compiled_ops(model, dtype).ops
    out = {}
    for fig in FIGURES:
        lst = getattr(ops, fig)
        out[fig] = None if lst is None else sympy.Add(*[_op_expr(o, profile, dtype) for o in lst])
    return out


# ------------------------------------------------------------------ fast evaluation
class CompiledOps:
    """The ops' FLOPs, bytes and steps compiled to exact integer evaluators.
    Repeated layers give identical expressions: each distinct (flops, bytes,
    steps) is evaluated once and weighted by its count; shared subexpressions
    are factored with sympy.cse and evaluated once a point."""

    def __init__(self, cost: ModelCost):
        self.cost = cost
        self.ops = roofline_ops(cost)
        exprs: list = []
        # figure -> [(ops alike, flops index, bytes index, steps index or None, count index or None)]
        self.groups: dict[str, list[tuple] | None] = {}
        for fig in FIGURES:
            lst = getattr(self.ops, fig)
            if lst is None:
                self.groups[fig] = None
                continue
            counts: dict[tuple, int] = {}
            for o in lst:
                key = (*(sympy.sympify(v) for v in (o.flops, o.bytes, o.steps, o.count)), o.floor)
                counts[key] = counts.get(key, 0) + 1
            group = []
            for (flops, moved, steps, runs, floor), same in counts.items():
                at = len(exprs)
                exprs += [flops, moved]
                si = ri = None
                if steps != 0:
                    si = len(exprs)
                    exprs.append(steps)
                if runs != 1:
                    ri = len(exprs)
                    exprs.append(runs)
                group.append((same, at, at + 1, si, ri, floor))
            self.groups[fig] = group
        self.exprs = exprs               # the cache stores them (seqdsl.cost.cached)
        self.shared, self.fns = compile_shared(exprs, "_rl")

    def evaluate(self, cols: dict, n: int, profile: HardwareProfile, dtype: str) -> list[dict[str, float | None]]:
        """Seconds for each figure at each of n points; cols maps each dim
        (batch included) to its n values and is extended. Same arithmetic as
        HardwareProfile.op_time, with its divisors hoisted."""
        compute = profile.compute_efficiency * profile.peak(dtype)
        memory = profile.memory_efficiency * profile.bandwidth
        for name, fn in self.shared:
            cols[name] = fn(cols, n)
        values = [fn(cols, n) for fn in self.fns]
        return roofline_seconds(self.groups, values.__getitem__, n, compute, memory, profile.step_floor)


_CACHE: dict[tuple[int, str], tuple[ModelGraph, CompiledOps]] = {}


def compiled_ops(model: ModelGraph, dtype: str, cost: ModelCost | None = None) -> CompiledOps:
    """The compiled ops of `model` at `dtype`, derived once (the profile is
    applied at evaluation, so one compilation serves every profile)."""
    key = (id(model), dtype)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is model:
        return hit[1]
    c = CompiledOps(cost if cost is not None else model_cost(model, dtype))
    _CACHE[key] = (model, c)
    return c


def latency(model: ModelGraph, profile: HardwareProfile, dtype: str, points: list[dict[str, int]],
            batch: int, cost: ModelCost | None = None) -> list[dict[str, float | None]]:
    """Predicted seconds at each point ({dim: length}): one dict per point with
    "forward", "train" and "per_token" (None when the model cannot stream)."""
    c = compiled_ops(model, dtype, cost)
    cols, n = point_columns(points, {model.batch_symbol: batch} if model.batch_symbol is not None else None)
    return c.evaluate(cols, n, profile, dtype)


def node_latency(model: ModelGraph, profile: HardwareProfile, dtype: str, point: dict[str, int],
                 batch: int) -> dict[str, tuple[float, str]]:
    """Forward seconds of each node at one point, and what bounds it: "compute",
    "memory" or "steps" (the per-step floor), whichever part is largest."""
    compute = profile.compute_efficiency * profile.peak(dtype)
    memory = profile.memory_efficiency * profile.bandwidth
    env = dict(point)
    if model.batch_symbol is not None:
        env[model.batch_symbol] = batch
    ops = [(op.name, *(compile_expr(e)(env) for e in (op.flops, op.bytes, op.count, op.steps)), op.floor)
           for op in compiled_ops(model, dtype).ops.forward]
    return node_bounds(ops, compute, memory, profile.step_floor)


__all__ = ["Op", "RooflineOps", "roofline_ops", "latency_exprs", "latency", "compiled_ops", "node_latency",
           "weight_bytes"]


def predictor(graph: ModelGraph, hw: str, dtype: str):
    """A function env -> (forward_s, train_s): the roofline's closed forms on
    profile `hw`, evaluated at the env's dims and batch (bench, verify)."""
    profile = load_profile(hw)
    dims = list(graph.seq_symbols)

    def predict(env: dict):
        batch = env.get(graph.batch_symbol, 1) if graph.batch_symbol else 1
        (res,) = latency(graph, profile, dtype, [{d: env[d] for d in dims}], batch)
        return res["forward"], res["train"]
    return predict
