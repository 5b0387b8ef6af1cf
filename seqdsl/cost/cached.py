"""A model's derived closed forms as one plain-data entry, and the report of
`compile --estimate` computed from it without sympy, pydantic or lark.

`forms_entry` writes what the estimate derived (ModelCost's figures, the
roofline's ops, the per-layer costs, the closed-form strings) as JSON data:
the expressions as one node table (seqdsl.graph.exprdata), the rest as the
names, numbers and texts the report prints. `check_forms` refuses anything
that is not exactly that shape; `report_from_forms` evaluates it at the
requested lengths with the same exact arithmetic as `seqdsl.cost.estimate`
(the helpers both use live here: `optimizer_bytes`, `whole`,
`layer_where`, `max_len_warning`, `roofline_seconds`, `node_bounds`, `layer_row`).
The CLI keeps these entries in a per-user cache (seqdsl/cli/cache.py).
"""
from __future__ import annotations

import math
from fractions import Fraction
from types import SimpleNamespace

from ..graph.exprdata import Columns, Encoder, Unavailable, Unsupported, check_nodes, is_row

FIGURES = ("flops_forward", "flops_train", "activation_bytes", "sequential_depth", "loss_bytes")
OPTIONAL_FIGURES = ("flops_per_token", "state_bytes")      # None: the model cannot stream
ROOFLINE = ("forward", "train", "per_token")
DEFAULT_SEQ = tuple(2 ** k for k in range(6, 15))
OPTIMIZERS = ("adam", "sgd", "none")


# ------------------------------------------------------------------ shared arithmetic
def whole(v) -> int:
    """Exact values are ints; a fractional one (amortised strided steps) rounds up."""
    if v.__class__ is Fraction:   # not isinstance: Fraction's ABC check is slow
        return math.ceil(v)
    return int(v)


def optimizer_bytes(params: int, dtype: str, optimizer: str) -> int:
    """Adam: two fp32 moments (8 bytes a parameter); sgd (no momentum): none;
    under bf16/fp16 both keep an fp32 master copy (4 bytes) (COST_MODEL.md)."""
    master = 4 * params if dtype != "float32" and optimizer != "none" else 0
    return {"adam": 8 * params, "sgd": 0, "none": 0}[optimizer] + master


def max_len_warning(where: str, max_len: int, steps) -> str:
    """A point past a layer's max_len; `where` is "kind 'name' at line N"."""
    return (f"{where} has max_len={max_len}, but sees {whole(steps)} steps: "
            "the module refuses this length")


def roofline_seconds(groups: dict, column, n: int, compute: float, memory: float,
                     step_floor) -> list[dict[str, float | None]]:
    """Seconds of each roofline figure at n points. groups: figure -> None or
    [(ops alike, flops, bytes, steps or None, runs or None, floor)], each a
    key that column() turns into its n exact values; compute and memory are
    the profile's effective FLOP/s and bytes/s; step_floor(kind) its floor."""
    out = [{} for _ in range(n)]
    for fig, group in groups.items():
        if group is None:
            for row in out:
                row[fig] = None
            continue
        totals = [0.0] * n
        for same, fi, bi, si, ri, floor in group:
            floor_s = step_floor(floor)
            flops, moved = column(fi), column(bi)
            runs = column(ri) if ri is not None else None
            steps = column(si) if si is not None else None
            for i in range(n):
                t = max(flops[i] / compute, moved[i] / memory)
                if runs is not None:
                    t *= float(runs[i])
                if steps is not None:
                    t += float(steps[i]) * floor_s
                totals[i] += same * t
        for row, total in zip(out, totals):
            row[fig] = total
    return out


def node_bounds(ops, compute: float, memory: float, step_floor) -> dict[str, tuple[float, str]]:
    """Forward seconds of each node and what bounds it ("compute", "memory"
    or "steps"), from its ops' exact (name, flops, bytes, runs, steps, floor)."""
    parts: dict[str, dict[str, float]] = {}
    for name, flops, moved, runs, steps, floor in ops:
        name = name.removesuffix(".steps")
        tc, tm = float(flops) / compute, float(moved) / memory
        share = parts.setdefault(name, {"compute": 0.0, "memory": 0.0, "steps": 0.0})
        share["compute" if tc >= tm else "memory"] += float(runs) * max(tc, tm)
        share["steps"] += float(steps) * step_floor(floor)
    return {name: (sum(share.values()), max(share, key=share.get)) for name, share in parts.items()}


def layer_row(name: str, kind: str, line, output: list, output_symbolic: str, params: int,
              flops: int, total: int) -> dict:
    """One row of the per-layer table (text and JSON)."""
    return {"name": name, "kind": kind, "line": line,
            "output": "[" + ", ".join(str(whole(d)) for d in output) + "]",
            "output_symbolic": output_symbolic, "params": params, "flops": flops, "share": flops / total}


# ------------------------------------------------------------------ writing an entry
def forms_entry(model, cost, streaming_blocker: str | None, ops=None, formulas: dict | None = None) -> dict:
    """The plain-data form of what `compile --estimate` derived for `model`:
    cost is its ModelCost, ops its roofline CompiledOps (or None), formulas
    the closed-form strings (or None). Raises exprdata.Unsupported for an
    expression outside the vocabulary (then nothing is cached)."""
    from ..graph.symbolic import fmt_dim   # lazy: sympy (the cold path has it loaded already)
    if any(f is not None and f.bound for f in (cost.forward, cost.train, cost.activation, cost.depth,
                                               cost.per_token, cost.state, *cost.peaks)):
        # shared costs (seqdsl.cost.model): writing them out whole would derive every
        # layer again (seconds on thousands), while deriving them is fast already
        raise Unsupported("the closed forms hold shared costs")
    enc = Encoder()
    add = enc.add
    figures = {k: add(getattr(cost, k)) for k in FIGURES}
    for k in OPTIONAL_FIGURES:
        v = getattr(cost, k)
        figures[k] = None if v is None else add(v)
    figures["inference_peak"] = [add(p) for p in cost.inference_peak]
    limits = [[add(length), max_len, layer_where(node)] for length, max_len, node in cost.limits]
    dims, seen = [], set()
    for node in model.nodes:          # as estimate.check_lengths reads them
        for d in node.output.dims:
            if isinstance(d, int) or getattr(d, "is_Integer", False) or getattr(d, "is_Symbol", False):
                continue
            if d not in seen:
                seen.add(d)
                dims.append(add(d))
    layers = [{"name": n.node.name, "kind": n.node.kind, "line": n.node.line,
               "output": [add(d) for d in n.node.output.dims],
               "output_symbolic": ", ".join(fmt_dim(d) for d in n.node.output.dims),
               "params": n.node.params, "flops": add(n.cost.flops)}
              for n in cost.nodes if n.node.kind not in ("input", "add")]
    roofline = None
    if ops is not None:
        roofline = {fig: None if ops.groups[fig] is None else
                    [[same, add(ops.exprs[fi]), add(ops.exprs[bi]),
                      None if si is None else add(ops.exprs[si]), None if ri is None else add(ops.exprs[ri]), floor]
                     for same, fi, bi, si, ri, floor in ops.groups[fig]] for fig in ROOFLINE}
        roofline["layer_ops"] = [[op.name, add(op.flops), add(op.bytes), add(op.count), add(op.steps), op.floor]
                                 for op in ops.ops.forward]
        roofline["floors"] = sorted({g[5] for fig in ROOFLINE for g in roofline[fig] or ()}
                                    | {o[5] for o in roofline["layer_ops"]})
    return {"model": model.name, "params": model.params, "symbols": list(model.symbols),
            "seq_symbols": list(model.seq_symbols), "batch_symbol": model.batch_symbol,
            "dtype": cost.dtype, "elem": cost.elem, "streaming_blocker": streaming_blocker,
            "stream_context": list(cost.stream_context), "tied_grad_bytes": int(cost.tied_grad_bytes),
            "nodes": enc.nodes, "figures": figures, "limits": limits, "dims": dims, "layers": layers,
            "roofline": roofline, "formulas": formulas}


def peak_of_training(weights: int, optimizer: int, forward_phase: int, gradients: int) -> int:
    """The training step's peak in bytes (seqdsl.cost.estimate.training_peak
    says why): weights and optimizer state, plus the larger of what backward
    starts from and what it ends with."""
    return weights + optimizer + max(forward_phase, gradients)


def layer_where(node) -> str:
    """How a warning names a layer: kind 'name' at line N."""
    return f"{node.kind} '{node.alias or node.name}' at line {node.line}"


def profile_entry(profile, dtype: str, floors: list[str]) -> dict:
    """What the roofline reads of a hardware profile at `dtype`, as plain data."""
    return {"name": profile.name, "compute": profile.compute_efficiency * profile.peak(dtype),
            "memory": profile.memory_efficiency * profile.bandwidth,
            "floors": {k: profile.step_floor(k) for k in floors}}


# ------------------------------------------------------------------ checking an entry
def check_forms(e) -> None:
    """Refuse (ValueError) forms that are not exactly what forms_entry writes."""
    _keys(e, ("model", "params", "symbols", "seq_symbols", "batch_symbol", "dtype", "elem",
              "streaming_blocker", "stream_context", "tied_grad_bytes", "nodes", "figures", "limits", "dims",
              "layers", "roofline",
              "formulas"))
    check_nodes(e["nodes"])
    nodes = e["nodes"]
    row = lambda i: is_row(i, nodes)  # noqa: E731
    _need(isinstance(e["model"], str) and _count(e["params"]) and _count(e["elem"]), "model")
    _need(_strs(e["symbols"]) and _strs(e["seq_symbols"]), "symbols")
    _need(e["batch_symbol"] is None or isinstance(e["batch_symbol"], str), "batch_symbol")
    _need(isinstance(e["dtype"], str) and _opt_str(e["streaming_blocker"]), "dtype")
    _need(_strs(e["stream_context"]), "stream_context")
    _need(isinstance(e["tied_grad_bytes"], int) and not isinstance(e["tied_grad_bytes"], bool)
          and e["tied_grad_bytes"] >= 0, "tied_grad_bytes")
    f = e["figures"]
    _keys(f, FIGURES + OPTIONAL_FIGURES + ("inference_peak",))
    _need(all(row(f[k]) for k in FIGURES) and all(f[k] is None or row(f[k]) for k in OPTIONAL_FIGURES)
          and isinstance(f["inference_peak"], list) and f["inference_peak"]
          and all(row(i) for i in f["inference_peak"]), "figures")
    _need(isinstance(e["limits"], list) and all(
        isinstance(x, list) and len(x) == 3 and row(x[0]) and _count(x[1]) and isinstance(x[2], str)
        for x in e["limits"]), "limits")
    _need(isinstance(e["dims"], list) and all(row(i) for i in e["dims"]), "dims")
    _need(isinstance(e["layers"], list), "layers")
    for r in e["layers"]:
        _keys(r, ("name", "kind", "line", "output", "output_symbolic", "params", "flops"))
        _need(isinstance(r["name"], str) and isinstance(r["kind"], str) and (r["line"] is None or _count(r["line"]))
              and isinstance(r["output"], list) and all(row(i) for i in r["output"])
              and isinstance(r["output_symbolic"], str) and _count(r["params"]) and row(r["flops"]), "layers")
    if e["roofline"] is not None:
        _check_roofline(e["roofline"], row)
    if e["formulas"] is not None:
        fm = e["formulas"]
        _need(isinstance(fm, dict) and fm and all(
            isinstance(k, str) and (v is None or (isinstance(v, dict) and set(v) == {"leading", "exact"}
                                                  and _strs(list(v.values()))))
            for k, v in fm.items()), "formulas")


def _check_roofline(r, row) -> None:
    _keys(r, ROOFLINE + ("layer_ops", "floors"))
    _need(_strs(r["floors"]), "roofline floors")
    for fig in ROOFLINE:
        if r[fig] is None and fig == "per_token":
            continue
        _need(isinstance(r[fig], list) and all(
            isinstance(g, list) and len(g) == 6 and _count(g[0]) and row(g[1]) and row(g[2])
            and (g[3] is None or row(g[3])) and (g[4] is None or row(g[4])) and g[5] in r["floors"]
            for g in r[fig]), "roofline")
    _need(isinstance(r["layer_ops"], list) and all(
        isinstance(o, list) and len(o) == 6 and isinstance(o[0], str) and all(row(i) for i in o[1:5])
        and o[5] in r["floors"] for o in r["layer_ops"]), "roofline layer_ops")


def check_profile(p, floors: list[str]) -> None:
    _keys(p, ("name", "compute", "memory", "floors"))
    _need(isinstance(p["name"], str) and _positive(p["compute"]) and _positive(p["memory"]), "profile")
    _need(isinstance(p["floors"], dict) and set(p["floors"]) == set(floors)
          and all(type(v) is float and 0 <= v < float("inf") for v in p["floors"].values()), "profile floors")


def _keys(d, keys) -> None:
    _need(isinstance(d, dict) and list(d) == list(keys), f"keys {list(keys)[:3]}...")


def _need(ok, what: str) -> None:
    if not ok:
        raise ValueError(f"malformed {what}")


def _count(v) -> bool:
    return type(v) is int and v >= 0


def _positive(v) -> bool:
    return type(v) is float and 0 < v < float("inf")


def _strs(v) -> bool:
    return isinstance(v, list) and all(isinstance(s, str) for s in v)


def _opt_str(v) -> bool:
    return v is None or isinstance(v, str)


# ------------------------------------------------------------------ the report from an entry
def report_from_forms(e: dict, seq, batch: int, optimizer: str, profile: dict | None = None,
                      per_layer: bool = False, formulas: bool = False) -> SimpleNamespace:
    """What `seqdsl.cost.report.report` returns, from checked forms: the same
    names and values (plain namespaces in place of the pydantic models).
    seq: None, or what `cost.lengths.parse_seq` returned for this model.
    Raises Unavailable where the cold path must answer instead (a length at
    which a dim drops below 1, which it refuses with its message; forms
    without the roofline or the formulas asked for)."""
    if (profile is not None and e["roofline"] is None) or (formulas and e["formulas"] is None):
        raise Unavailable("these forms lack a part the options ask for")
    dims, nodes = e["seq_symbols"], e["nodes"]
    items = DEFAULT_SEQ if seq is None else seq
    points = [dict(item) if isinstance(item, dict) else {d: item for d in dims} for item in items]
    cols, n = _columns(points, e["batch_symbol"], 1)
    probe = Columns(nodes, cols, n)
    probe.evaluate(e["dims"])
    for row in e["dims"]:              # estimate.check_lengths: the cold path words the refusal
        if any(v < 1 for v in probe.values(row)):
            raise Unavailable("a dim is below 1 at some length")
    cols, n = _columns(points, e["batch_symbol"], batch)
    at = Columns(nodes, cols, n)
    f = e["figures"]
    roofline = e["roofline"] if profile is not None else None
    at.evaluate([f[k] for k in FIGURES + OPTIONAL_FIGURES if f[k] is not None] + f["inference_peak"]
                + [x[0] for x in e["limits"]]
                + [i for fig in ROOFLINE for g in (roofline or {}).get(fig) or () for i in g[1:5] if i is not None])

    def ints(row):
        return [v if v.__class__ is int else whole(v) for v in at.values(row)]
    fwd, train, act, depth, loss = (ints(f[k]) for k in FIGURES)
    token = ints(f["flops_per_token"]) if f["flops_per_token"] is not None else [None] * n
    state = ints(f["state_bytes"]) if f["state_bytes"] is not None else [None] * n
    peak = [max(values) for values in zip(*(ints(p) for p in f["inference_peak"]))]
    warns = [[] for _ in range(n)]
    for row, max_len, where in e["limits"]:
        for i, steps in enumerate(at.values(row)):
            if steps > max_len:
                warns[i].append(max_len_warning(where, max_len, steps))
    times = [(None, None, None)] * n
    if profile is not None:
        floors = profile["floors"]
        secs = roofline_seconds({k: e["roofline"][k] for k in ROOFLINE}, at.values, n, profile["compute"],
                                profile["memory"], floors.__getitem__)
        times = [(t["forward"], t["train"], t["per_token"]) for t in secs]
    params, dtype = e["params"], e["dtype"]
    weights = params * e["elem"]
    opt = optimizer_bytes(params, dtype, optimizer)
    out = [SimpleNamespace(
        seq=points[i], batch=batch, dtype=dtype, flops_forward=fwd[i], flops_train=train[i],
        flops_per_token=token[i], weights_bytes=weights, grads_bytes=weights, optimizer_bytes=opt,
        activation_bytes=act[i], loss_bytes=loss[i],
        training_bytes=peak_of_training(weights, opt, act[i] + loss[i], weights + e["tied_grad_bytes"]),
        inference_peak_bytes=peak[i],
        state_bytes=state[i], sequential_depth=depth[i], warnings=warns[i], latency_forward_s=times[i][0],
        latency_train_s=times[i][1], latency_per_token_s=times[i][2], per_device=None) for i in range(n)]
    blocker = e["streaming_blocker"]
    est = SimpleNamespace(model=e["model"], params=params, dtype=dtype, optimizer=optimizer,
                          streaming=blocker is None, streaming_blocker=blocker, points=out,
                          hw=None if profile is None else profile["name"], parallel=None, recompute="none",
                          stream_context=list(e["stream_context"]))
    model = SimpleNamespace(name=e["model"], params=params, symbols=tuple(e["symbols"]))
    return SimpleNamespace(model=model, estimate=est,
                           layers=_layers(e, out[-1], batch, profile) if per_layer else None,
                           formulas=e["formulas"] if formulas else None, fit=None)   # the cache serves no --parallel/--fit


def _columns(points: list[dict], batch_symbol, batch: int) -> tuple[dict, int]:
    n = len(points)
    cols = {d: [p[d] for p in points] for d in points[0]}
    if batch_symbol is not None:
        cols[batch_symbol] = [batch] * n
    return cols, n


def _layers(e: dict, point, batch: int, profile: dict | None) -> list[dict]:
    """report.per_layer_rows at the last point."""
    env = {d: [v] for d, v in point.seq.items()}
    if e["batch_symbol"]:
        env[e["batch_symbol"]] = [batch]
    at = Columns(e["nodes"], env, 1)
    at.evaluate([i for r in e["layers"] for i in (*r["output"], r["flops"])]
                + ([i for o in e["roofline"]["layer_ops"] for i in o[1:5]] if profile is not None else []))
    one = lambda row: at.values(row)[0]  # noqa: E731
    total = point.flops_forward or 1
    rows = [layer_row(r["name"], r["kind"], r["line"], [one(d) for d in r["output"]], r["output_symbolic"],
                      r["params"], whole(one(r["flops"])), total) for r in e["layers"]]
    if profile is not None:
        ops = [(name, one(f), one(b), one(c), one(s), floor) for name, f, b, c, s, floor in e["roofline"]["layer_ops"]]
        times = node_bounds(ops, profile["compute"], profile["memory"], profile["floors"].__getitem__)
        for r in rows:
            r["latency_forward_s"], r["bound"] = times.get(r["name"], (0.0, "-"))
    return rows
