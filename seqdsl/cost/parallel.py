"""Per-device cost under parallelism (issue 14; COST_MODEL.md "Per device,
under parallelism"): the figures of the most loaded device when a training
run is sharded over `world = dp·tp·pp·cp` devices.

    layout = parse_parallel("dp=8,tp=2,pp=2,zero=1,sp,microbatches=8")
    seqdsl.estimate("specs/transformer_lm.seq", seq=32768, dtype="bfloat16",
                    parallel=layout, recompute="selective").points[0].per_device

Nothing is derived again: each layer's `LayerCost` closed forms (seqdsl.cost.model)
are split as its `ParallelRule` says (declared beside its cost rule in
seqdsl/layers/), stage by stage. `batch` is the micro-batch of one
data-parallel replica; a training step runs `microbatches` of them. Torch is
never imported.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

import sympy
from pydantic import BaseModel, ConfigDict

from ..errors import UsageError, suggest
from ..graph.ir import ModelGraph, Node
from ..graph.symbolic import compile_expr
from ..layers import LAYERS
from ..layers.costs import ParallelRule, tensor_bytes
from ..limits import MAX_LENGTH
from .hardware import HardwareProfile
from .model import ModelCost

RECOMPUTE = ("none", "selective", "full")
KEYS = ("dp", "tp", "pp", "cp", "zero", "sp", "microbatches", "world")
MAX_DEGREE = 1 << 20          # a million devices along one axis
EXAMPLE = "--parallel dp=8,tp=2,pp=2,zero=1,sp,microbatches=8"


class ParallelError(UsageError, ValueError):
    """A bad layout or recompute mode: a UsageError to the CLI (exit 2), a ValueError to Python callers."""


@dataclass(frozen=True)
class Parallel:
    """A validated layout: data (`dp`), tensor (`tp`), pipeline (`pp`) and
    context (`cp`) parallel degrees; ZeRO stage over `dp` (Megatron's
    distributed optimizer is stage 1); Megatron sequence parallelism (`sp`,
    with tp); micro-batches per training step."""

    dp: int = 1
    tp: int = 1
    pp: int = 1
    cp: int = 1
    zero: int = 0
    sp: bool = False
    microbatches: int = 1

    @property
    def world(self) -> int:
        return self.dp * self.tp * self.pp * self.cp

    def __str__(self) -> str:
        parts = [f"{k}={getattr(self, k)}" for k in ("dp", "tp", "pp", "cp") if getattr(self, k) > 1]
        if self.zero:
            parts.append(f"zero={self.zero}")
        if self.sp:
            parts.append("sp")
        if self.microbatches > 1:
            parts.append(f"microbatches={self.microbatches}")
        return ",".join(parts) or "dp=1"


def parse_parallel(text) -> Parallel:
    """`dp=8,tp=2,pp=2,cp=1,zero=1,sp,microbatches=8` (any subset, any order;
    `world=N` checks the product) -> Parallel. A Parallel passes through."""
    if isinstance(text, Parallel):
        return text
    if not isinstance(text, str):
        raise ParallelError(f"parallel must be a layout string like 'dp=8,tp=2' or a Parallel, "
                            f"not {type(text).__name__}")
    if not text.strip():
        raise ParallelError(f"--parallel is empty: give the degrees, e.g. {EXAMPLE}")
    if len(text) > 200:
        raise ParallelError(f"--parallel '{text[:20]}...' is too long for a layout: e.g. {EXAMPLE}")
    values: dict = {}
    world = None
    for part in text.split(","):
        key, eq, value = (s.strip() for s in part.partition("="))
        if not key and not eq:
            raise ParallelError(f"--parallel '{text}' has an empty entry (two commas, or one at an end): "
                                f"write the keys separated by single commas, e.g. {EXAMPLE}")
        if key not in KEYS:
            hint = suggest(key, KEYS) if key else None
            raise ParallelError(f"--parallel: unknown key '{key}' in '{text}'"
                                + (f" ({hint})" if hint else "")
                                + f": use {', '.join(KEYS)}, e.g. {EXAMPLE}")
        if key in values or (key == "world" and world is not None):
            raise ParallelError(f"--parallel gives '{key}' twice in '{text}': give each key once")
        if key == "sp":
            if eq and value not in ("true", "false"):
                raise ParallelError(f"--parallel sp={value}: sequence parallelism is on or off, "
                                    f"write 'sp' (or sp=true / sp=false)")
            values["sp"] = value != "false"
            continue
        if not eq or not re.fullmatch(r"[0-9]{1,7}", value):
            raise ParallelError(f"--parallel {part.strip()}: {key} needs a positive integer, e.g. {key}=2")
        n = int(value)
        if key == "zero":
            if n > 3:
                raise ParallelError(f"--parallel zero={n}: ZeRO stages are 0 (none), 1 (optimizer state), "
                                    f"2 (+ gradients) and 3 (+ weights, as FSDP)")
        elif not 1 <= n <= MAX_DEGREE:
            raise ParallelError(f"--parallel {key}={n}: {key} must be from 1 to {MAX_DEGREE:,}")
        if key == "world":
            world = n
        else:
            values[key] = n
    layout = Parallel(**values)
    if world is not None and world != layout.world:
        raise ParallelError(f"--parallel world={world}, but dp·tp·pp·cp = {layout.dp}·{layout.tp}·{layout.pp}·"
                            f"{layout.cp} = {layout.world}: change a degree so the product is {world}")
    if layout.sp and layout.tp == 1:
        raise ParallelError("--parallel sp: sequence parallelism splits over the tensor-parallel group, "
                            "and tp=1: add tp=2 or more, or drop sp")
    return layout


def check_recompute(mode) -> str:
    if mode not in RECOMPUTE:
        raise ParallelError(f"unknown recompute mode {mode!r}: use none, selective (attention's scores "
                            f"and probabilities) or full (each repeated layer's input only)")
    return mode


class PerDevice(BaseModel):
    """The most loaded device's figures at one point (integers: bytes; seconds: floats)."""

    model_config = ConfigDict(frozen=True)

    stage: int                        # its pipeline stage (0 = first)
    weights_bytes: int
    grads_bytes: int
    optimizer_bytes: int
    activation_bytes: int             # saved for backward, all micro-batches in flight
    state_bytes: int | None           # inference KV cache / recurrent state of its layers; None: cannot stream
    peak_bytes: int                   # training: weights + optimizer + gathered + the larger of
                                      # activations + loss and the gradients (as training_bytes)
    gathered_bytes: int               # ZeRO-3 / FSDP: the largest layer and its gradient gathered whole
    comm_bytes: int                   # sent per training step, all collectives
    comm: dict[str, int]              # sent per training step, by collective
    sequential_depth: int             # the model's, plus cp − 1 state hand-offs per recurrent layer
    compute_time_s: float | None = None
    comm_time_s: float | None = None
    step_time_s: float | None = None  # compute (with the pipeline bubble) + communication, not overlapped


# ------------------------------------------------------------------ the layout on a model
def rule_of(node: Node, elem: int) -> ParallelRule:
    if node.kind in ("input", "add"):
        return ParallelRule()
    return LAYERS[node.kind].parallel(node.args, list(node.inputs), elem)


def _where(node: Node) -> str:
    name = node.alias or node.name
    return f"{node.kind} '{name}'" + (f" ({node.span.path}:{node.line}:{node.span.column})" if node.span else "")


def _divisors(n: int) -> str:
    ds = [d for d in range(1, min(n, 64) + 1) if n % d == 0]
    return ", ".join(map(str, ds))


def units_of(model: ModelGraph) -> list[tuple[str, int]]:
    """The pipeline's units, in order: one per copy of an outermost `repeat`."""
    seen: dict = {}
    for node in model.nodes:
        rep = next((s for s in node.scope if s.kind == "repeat"), None)
        if rep is not None:
            seen.setdefault((rep.path, rep.index), None)
    return list(seen)


def check_layout(model: ModelGraph, layout: Parallel, elem: int = 2) -> None:
    """Refuse a layout the model cannot take: tp must divide every split
    layer's heads and widths, pp the number of repeated layers."""
    if layout.tp > 1:
        for node in model.nodes:
            rule = rule_of(node, elem)
            if rule.tp != "split":
                continue
            for what, count in rule.divides:
                if count % layout.tp:
                    raise ParallelError(f"--parallel tp={layout.tp}: {_where(node)} has {count} {what}, which "
                                        f"tp={layout.tp} does not divide: use tp = one of {_divisors(count)}")
    if layout.pp > 1:
        units = units_of(model)
        if not units:
            raise ParallelError(f"--parallel pp={layout.pp}: model '{model.name}' has no repeat(...) block "
                                f"whose layers the pipeline stages could split: use pp=1")
        if len(units) % layout.pp:
            raise ParallelError(f"--parallel pp={layout.pp}: model '{model.name}' has {len(units)} repeated "
                                f"layers, which pp={layout.pp} does not divide: use pp = one of "
                                f"{_divisors(len(units))}")


# ------------------------------------------------------------------ per stage closed forms
def _div(expr, d: int):
    """expr / d, exact (a Python int over an int would be a float)."""
    return expr if d == 1 else sympy.sympify(expr) / d


@dataclass
class _Stage:
    """One pipeline stage's share of the model."""

    params: Fraction          # parameters this device holds (tp-split ones divided)
    largest: Fraction         # the largest layer's parameters on it (ZeRO-3 gathers one at a time)
    activation: object        # sympy: one micro-batch's saved bytes, before cp
    state: object             # sympy: generation state (KV caches already split over cp)
    tp_bytes: object          # sympy: bytes all-reduced over tp per forward
    kv_bytes: object          # sympy: keys and values each rank sends around the cp ring per forward
    state_handoff: object     # sympy: recurrent state handed over cp per forward
    boundary: object          # sympy: the tensor sent to the next stage
    state_layers: int         # layers that hand their state on under cp


class ParallelCost:
    """The per-device closed forms of one model under one layout, built once
    from its ModelCost; `at(point, batch)` evaluates them."""

    def __init__(self, cost: ModelCost, layout: Parallel, optimizer_per_param: Fraction,
                 recompute: str = "none"):
        """optimizer_per_param: the optimizer's bytes a parameter (seqdsl.cost.estimate.optimizer_bytes)."""
        model = cost.model
        check_layout(model, layout, cost.elem)
        self.cost, self.layout, self.recompute = cost, layout, recompute
        self.optimizer_per_param = Fraction(optimizer_per_param)
        self.model, self.elem = model, cost.elem
        tp, sp = layout.tp, layout.sp
        nodes = model.nodes
        rules = {n.name: rule_of(n, cost.elem) for n in nodes}
        by_name = {n.name: n for n in nodes}

        # ---- stages: each outermost repeat copy is a unit; the rest go with the unit before them
        units = units_of(model)
        per_stage = max(1, len(units) // layout.pp) if units else 1
        unit_stage = {u: i // per_stage for i, u in enumerate(units)}
        stage_of: dict[str, int] = {}
        unit_of: dict[str, tuple] = {}
        current = 0
        for node in nodes:
            rep = next((s for s in node.scope if s.kind == "repeat"), None)
            if rep is not None:
                unit_of[node.name] = (rep.path, rep.index)
                current = unit_stage[(rep.path, rep.index)]
            stage_of[node.name] = current
        npp = layout.pp if units else 1

        # ---- tensor-parallel split of each output
        sharded: dict[str, bool] = {}
        for node in nodes:
            out = rules[node.name].output
            sharded[node.name] = (out == "sharded") or (out == "input" and bool(node.sources)
                                                         and sharded[node.sources[0]])

        def split(node: Node) -> bool:
            return rules[node.name].tp == "split"

        # ---- activations by owner: internals split with their layer, tensors with their producer
        def part_bytes(owner: str, what: str, expr):
            node = by_name[owner]
            rule = rules[owner]
            if what == "internal":
                if self.recompute == "selective" and rule.selective_saved is not None:
                    expr = rule.selective_saved
                div = tp if (split(node) or (sp and rule.cp == "local")) else 1
            else:
                div = tp if (sharded[owner] or sp) else 1
            return _div(expr, div)

        stage_act = [0] * npp
        unit_act: dict[tuple, object] = {}
        for owner, what, expr in cost.activation_parts:
            b = part_bytes(owner, what, expr)
            unit = unit_of.get(owner)
            if self.recompute == "full" and unit is not None:
                unit_act[unit] = unit_act.get(unit, 0) + b
            else:
                stage_act[stage_of[owner]] += b
        if self.recompute == "full":
            # keep each repeated layer's input; recompute one layer's working set at a time
            firsts: dict[tuple, Node] = {}
            for node in nodes:
                u = unit_of.get(node.name)
                if u is not None and u not in firsts:
                    firsts[u] = node
            for s in range(npp):
                mine = [u for u in units if unit_stage[u] == s]
                kept = [_div(tensor_bytes(firsts[u].inputs[0], cost.elem), tp if sp else 1) for u in mine]
                work = [unit_act.get(u, 0) for u in mine]
                if mine:
                    stage_act[s] += sympy.Add(*kept) + (work[0] if len(set(work)) == 1 else sympy.Max(*work))

        # ---- weights, state, communication per stage
        alias_stage = {n.alias: stage_of[n.name] for n in nodes if n.alias}
        alias_node = {n.alias: n for n in nodes if n.alias}
        costs = {nc.node.name: nc.cost for nc in cost.nodes}
        self.stages: list[_Stage] = []
        for s in range(npp):
            params, largest = Fraction(0), Fraction(0)
            state = tpb = kvb = hand = 0
            state_layers = 0
            for node in nodes:
                if stage_of[node.name] != s:
                    continue
                rule = rules[node.name]
                div = tp if split(node) else 1
                p = Fraction(node.params, div)
                tie = getattr(node.args, "tie", None) if node.kind == "linear" else None
                if tie is not None and alias_stage.get(tie) != s:
                    p += Fraction(alias_node[tie].params, tp)     # a tied head's own copy on a later stage
                params += p
                largest = max(largest, p)
                c = costs[node.name]
                # a KV cache is split over the context-parallel ranks too; a recurrent state is not
                state += _div(c.state_bytes, div * (layout.cp if rule.cp == "kv" else 1))
                if rule.all_reduces:
                    tpb += rule.all_reduces * tensor_bytes(node.output, cost.elem)
                if rule.cp == "kv":
                    # the ring passes (cp-1)/cp of the sequence's keys and values through every
                    # rank; a window needs at most the W positions before the rank's block
                    ring = _div(rule.kv_bytes, div) * Fraction(layout.cp - 1, layout.cp)
                    if rule.kv_window_bytes is not None:
                        ring = sympy.Min(ring, _div(rule.kv_window_bytes, div))
                    kvb += ring
                elif rule.cp == "state":
                    hand += _div(c.state_bytes, div)
                    state_layers += 1
            boundary = 0
            if s + 1 < npp:
                nxt = next(n for n in nodes if stage_of[n.name] == s + 1)
                boundary = _div(tensor_bytes(nxt.inputs[0], cost.elem), tp if sp else 1)
            self.stages.append(_Stage(params, largest, stage_act[s], state, tpb, kvb, hand, boundary,
                                      state_layers))
        self._fns = [{k: compile_expr(getattr(st, k)) for k in
                      ("activation", "state", "tp_bytes", "kv_bytes", "state_handoff", "boundary")}
                     for st in self.stages]
        # the declared loss works on the last stage's logits, split over the vocabulary (tp) and
        # the positions (cp); tied weights' extra gradient copies sit with the embedding (stage 0)
        self._loss = compile_expr(cost.loss_bytes)
        self._tied = Fraction(cost.tied_grad_bytes) / self.layout.tp
        self.streaming = cost.state_bytes is not None
        self.batch_symbol = model.batch_symbol
        self.states = [self.model_state(s) for s in range(npp)]     # constant in the lengths

    # -------------------------------------------------------------- evaluation
    def _env(self, point: dict, batch: int) -> dict:
        env = dict(point)
        if self.batch_symbol is not None:
            env[self.batch_symbol] = batch
        return env

    def model_state(self, s: int) -> tuple[int, int, int, int]:
        """(weights, grads, optimizer, gathered) bytes on a device of stage s,
        after ZeRO: the resident shards, and under ZeRO-3 / FSDP the largest
        layer gathered whole with its gradient before the reduce-scatter (a
        transient the peak counts, not a shard the device keeps)."""
        lay, e, n = self.layout, self.elem, self.layout.dp
        st = self.stages[s]
        weights = grads = st.params * e
        opt = self.optimizer_per_param * st.params
        if lay.zero >= 1:
            opt /= n
        if lay.zero >= 2:
            grads /= n
        gathered = 0
        if lay.zero >= 3:
            weights = weights / n
            gathered = 2 * st.largest * e
        return math.ceil(weights), math.ceil(grads), math.ceil(opt), math.ceil(gathered)

    def in_flight(self, s: int) -> int:
        """Micro-batches whose activations stage s keeps (1F1B)."""
        return min(self.layout.microbatches, len(self.stages) - s)

    def peak_exprs(self) -> list:
        """Each stage's training peak as a sympy expression of the model's dims
        (batch included): the most loaded device's is their max."""
        out = []
        last = len(self.stages) - 1
        for s, st in enumerate(self.stages):
            act = sympy.ceiling(sympy.sympify(st.activation) * self.in_flight(s) / self.layout.cp)
            if s == last:
                act += sympy.ceiling(self.cost.loss_bytes / (self.layout.tp * self.layout.cp))
            w, g, o, gathered = self.states[s]
            grads = g + (math.ceil(self._tied) if s == 0 else 0)
            out.append(w + o + gathered + sympy.Max(act, grads))
        return out

    def stage_at(self, s: int, env: dict, depth: int, train_s: float | None,
                 profile: HardwareProfile | None) -> PerDevice:
        lay, e = self.layout, self.elem
        st, fn = self.stages[s], self._fns[s]
        npp = len(self.stages)
        n, m, cp, tp = lay.dp, lay.microbatches, lay.cp, lay.tp
        params = st.params
        act = Fraction(fn["activation"](env)) * self.in_flight(s) / cp
        val = lambda k: Fraction(fn[k](env))  # noqa: E731
        ring = lambda g: Fraction(g - 1, g)   # noqa: E731  each rank sends (g-1)/g of the data
        comm: dict[str, Fraction] = {}
        local = params * e                     # this device's weights (or gradients), unsharded
        if n > 1:
            if lay.zero == 0:
                comm["dp_all_reduce"] = 2 * ring(n) * local
            elif lay.zero < 3:
                comm["dp_reduce_scatter"] = ring(n) * local
                comm["dp_all_gather"] = ring(n) * local
            else:
                comm["dp_all_gather"] = 2 * ring(n) * local
                comm["dp_reduce_scatter"] = ring(n) * local
        passes = 3 if self.recompute == "full" else 2     # forward, backward (and the recomputed forward)
        if tp > 1 and st.tp_bytes:
            comm["tp_all_reduce"] = passes * 2 * ring(tp) * val("tp_bytes") / cp * m
        if cp > 1:
            if st.kv_bytes:
                comm["cp_kv_ring"] = 2 * val("kv_bytes") * m
            if st.state_handoff:
                comm["cp_state"] = 2 * val("state_handoff") * m
        if npp > 1:
            sends = (s + 1 < npp) + (s > 0)
            prev = self._fns[s - 1]["boundary"](env) if s > 0 else 0
            comm["pp_send_recv"] = m * (Fraction(fn["boundary"](env)) * (s + 1 < npp)
                                        + Fraction(prev) * (s > 0)) / cp if sends else Fraction(0)
        comm_int = {k: math.ceil(v) for k, v in comm.items() if v}
        state = math.ceil(Fraction(fn["state"](env))) if self.streaming else None
        w, g, o, gathered = self.states[s]
        a = math.ceil(act)
        loss = math.ceil(Fraction(self._loss(env)) / (tp * cp)) if s == npp - 1 else 0
        grads_end = g + (math.ceil(self._tied) if s == 0 else 0)
        compute_s = comm_s = step_s = None
        if profile is not None and train_s is not None:
            bubble = (npp - 1 + m) / m
            compute_s = train_s * m * bubble / (tp * cp * npp)
            comm_s = comm_seconds(comm_int, lay, profile)
            step_s = compute_s + comm_s
        return PerDevice(stage=s, weights_bytes=w, grads_bytes=g, optimizer_bytes=o, activation_bytes=a,
                         state_bytes=state, peak_bytes=w + o + gathered + max(a + loss, grads_end),
                         gathered_bytes=gathered,
                         comm_bytes=sum(comm_int.values()),
                         comm=comm_int, sequential_depth=depth + (cp - 1) * st.state_layers,
                         compute_time_s=compute_s, comm_time_s=comm_s, step_time_s=step_s)

    def at(self, point: dict, batch: int, depth: int = 0, train_s: float | None = None,
           profile: HardwareProfile | None = None) -> PerDevice:
        """The most loaded device (the stage with the highest training peak)."""
        env = self._env(point, batch)
        devices = [self.stage_at(s, env, depth, train_s, profile) for s in range(len(self.stages))]
        return max(devices, key=lambda d: (d.peak_bytes, -d.stage))


def comm_seconds(comm: dict[str, int], lay: Parallel, profile: HardwareProfile) -> float:
    """Each collective's bytes over the link its group spans (ranks ordered tp,
    cp, dp, pp: a group inside one node uses intra_node_bw, else inter_node_bw)."""
    if not comm:
        return 0.0
    if profile.intra_node_bw is None or profile.inter_node_bw is None or profile.gpus_per_node is None:
        raise ParallelError(f"hardware profile '{profile.name}' has no interconnect figures (intra_node_bw, "
                            f"inter_node_bw, gpus_per_node) to time communication: use --hw h100, h200 or "
                            f"a100, or add them to the profile")
    span = {"tp": lay.tp, "cp": lay.tp * lay.cp, "dp": lay.tp * lay.cp * lay.dp, "pp": lay.world}
    total = 0.0
    for name, b in comm.items():
        group = name.split("_")[0]
        bw = profile.intra_node_bw if span[group] <= profile.gpus_per_node else profile.inter_node_bw
        total += b / bw
    return total


# ------------------------------------------------------------------ the inverse question
@dataclass(frozen=True)
class Fit:
    """The largest length and batch whose per-device training peak fits a budget."""

    budget: int
    seq: int | None          # the largest length that fits at the batch, None if even 1 does not
    batch: int | None        # the largest micro-batch that fits at the given length
    at_seq: dict
    binding: str             # the largest term at the limit: weights, grads, optimizer, gathered layer or activations
    per_device: PerDevice    # at (seq or 1, batch asked)


def parse_bytes(text: str, what: str = "--fit") -> int:
    """`80GiB`, `80GB`, `141e9`, `512MiB` -> bytes."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?(?:e[0-9]+)?)\s*([KMGTP]i?B|B)?\s*", text or "")
    if not m:
        raise ParallelError(f"{what} '{text}' is not a memory size: write e.g. {what} 80GiB (or 80GB, 141e9)")
    unit = m.group(2) or "B"
    scale = 1
    if unit != "B":
        scale = (1024 if "i" in unit else 1000) ** ("KMGTP".index(unit[0]) + 1)
    value = int(float(m.group(1)) * scale)
    if value < 1:
        raise ParallelError(f"{what} {text}: a memory size must be at least 1 byte")
    return value


def binding_term(d: PerDevice) -> str:
    terms = {"weights": d.weights_bytes, "grads": d.grads_bytes, "optimizer": d.optimizer_bytes,
             "gathered layer": d.gathered_bytes,
             "activations": d.activation_bytes}
    return max(terms, key=terms.get)


def fit(pc: ParallelCost, budget: int, point: dict, batch: int) -> Fit:
    """The largest length (every sequence dim set to it) at `batch`, and the
    largest micro-batch at `point`, whose training peak on the most loaded
    device is within `budget` bytes; bisection on the closed forms (the peak
    grows with the length and the batch)."""
    dims = list(point)

    def peak_at(t: int, b: int) -> int:
        return pc.at({d: t for d in dims} if dims else {}, b).peak_bytes

    def largest(fits, hi: int) -> int | None:
        if not fits(1):
            return None
        lo = 1
        step = 1
        while lo + step <= hi and fits(lo + step):   # gallop, then bisect
            lo += step
            step *= 2
        top = min(hi, lo + step)
        while lo < top:
            mid = (lo + top + 1) // 2
            if fits(mid):
                lo = mid
            else:
                top = mid - 1
        return lo

    seq = largest(lambda t: peak_at(t, batch) <= budget, MAX_LENGTH) if dims else None
    best_batch = largest(lambda b: pc.at(point, b).peak_bytes <= budget, MAX_LENGTH)
    at = pc.at({d: seq or 1 for d in dims}, batch)
    return Fit(budget, seq, best_batch, point, binding_term(at), at)


__all__ = ["Parallel", "ParallelCost", "ParallelError", "PerDevice", "RECOMPUTE", "check_layout",
           "check_recompute", "fit", "parse_bytes", "parse_parallel"]
