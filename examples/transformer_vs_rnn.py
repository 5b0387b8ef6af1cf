"""Transformer vs LSTM vs Mamba-2 vs Gated DeltaNet vs hybrid: which wins where, with numbers.

The essay that motivated seqdsl argues in regimes: on short sequences
(< 100 tokens) the transformer wins everything; on medium ones (100-1,000)
its quadratic attention starts to show; on long ones (> 1,000) recurrence or
a hybrid wins on memory and generation, while the LSTM pays in sequential
depth. This example makes the table from five comparable (16.3-17.3M
parameter) language models written by hand in examples/transformer_vs_rnn/*.seq:
a transformer, an LSTM, the two modern linear-time recurrences Mamba-2 and
Gated DeltaNet, and a modern hybrid (Mamba-2 interleaved with sliding-window
attention, Samba's layout):

* every figure is seqdsl's closed form (seqdsl.estimate), exact at any T;
* the winner of each (regime, metric) cell holds across the whole regime,
  with the exact lengths where it changes (seqdsl.compare's crossovers,
  seqdsl.cost.crossover for sequential depth, which compare has no metric for);
* the generation state of each model against the context length, split into
  the KV cache of its attention layers and the states of its recurrent
  layers (the hybrid's is both: the figure tools that assume one kind of
  layer get wrong), summed per layer from seqdsl's cost model and checked
  against the estimate's total;
* a spot check builds each model in PyTorch and counts FLOPs with
  FlopCounterMode and saved activations with saved_tensors_hooks
  (seqdsl.backend.measure) at one small length: the ratio measured / estimated.

    .venv/bin/python examples/transformer_vs_rnn.py            # tables, crossovers, spot check, plots
    .venv/bin/python examples/transformer_vs_rnn.py --smoke    # tables and crossovers only

Writes OUT/transformer_vs_rnn.md (the tables), .json (the same, for tests),
.png (one log-log panel per metric, crossovers dashed) and _state.png (the
generation state against the context length).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import _common

SPEC_DIR = _common.HERE / "transformer_vs_rnn"
SPECS = ("transformer", "lstm", "mamba2", "gated_deltanet", "hybrid")
TRAIN_BATCH = 8      # training figures: a batch of 8 sequences of length T
GEN_BATCH = 1        # generation figures: one stream
SWEEP = [2 ** k for k in range(17)]          # T = 1 .. 65,536
REGIMES = (  # name, first T, last T, the T whose values the table shows
    ("short", 1, 99, 64),
    ("medium", 100, 1000, 512),
    ("long", 1001, SWEEP[-1], 8192),
)
HW = "h100"          # roofline profile of the training-time row (seqdsl/profiles/h100.json)
# metric (seqdsl.compare's name, or sequential_depth), label, batch, seqdsl.estimate Point field.
# The roofline row (latency_*) is slower to solve (~10 s), so --smoke leaves it out.
METRICS = (
    ("flops_train", "training FLOPs", TRAIN_BATCH, "flops_train"),
    ("sequential_depth", "sequential depth", TRAIN_BATCH, "sequential_depth"),
    ("latency_train", f"training step, {HW} roofline", TRAIN_BATCH, "latency_train_s"),
    ("train_memory", "training memory", TRAIN_BATCH, "training_bytes"),
    ("state_bytes", "KV / state memory", GEN_BATCH, "state_bytes"),
    ("flops_per_token", "generation FLOPs / token", GEN_BATCH, "flops_per_token"),
)
SPOT = {"T": 520, "B": 1}   # > the hybrid's window (512) and two Mamba-2 chunks (256), a partial GDN chunk (64)
STATE_T = [1, 8, 16, 32, 64, 128, 256, 384, 448, 512, 520, 576, 640, 768, 1024, 1536, 2048, 4096, 8192,
           16384, 32768, 65536]   # context lengths of the generation-state figure (the window is 512)


def load_models() -> dict:
    import seqdsl
    return {name: seqdsl.load(SPEC_DIR / f"{name}.seq").model(name) for name in SPECS}


def is_latency(metric: str) -> bool:
    return metric.startswith("latency")


def value(graph, metric: str, T: int) -> int | float:
    """One model's figure at length T: the estimate's exact int, or roofline seconds."""
    import seqdsl
    hw = HW if is_latency(metric) else None
    return getattr(seqdsl.estimate(graph, seq=T, batch=BATCH[metric], hw=hw).points[0], FIELD[metric])


BATCH = {m: b for m, _, b, _ in METRICS}
FIELD = {m: f for m, _, _, f in METRICS}


def comparisons(models: dict, metrics: list[str]) -> dict:
    """metric -> seqdsl.compare Comparison over SWEEP (all but sequential depth,
    which compare has no metric for). Solved once, used by the table and the plot."""
    from seqdsl.cost.compare import compare
    return {m: compare(list(models.values()), metric=m, seq=SWEEP, batch=BATCH[m],
                       hw=HW if is_latency(m) else None)
            for m in metrics if m != "sequential_depth"}


def count_expr(graph, metric: str):
    """An integer metric's closed form in T and B (seqdsl.cost, rounded up as
    seqdsl.estimate rounds), for seqdsl.cost.crossover. Latency is compare's alone."""
    import sympy

    from seqdsl.cost.estimate import compiled, optimizer_bytes
    c = compiled(graph, "float32").cost
    if metric == "train_memory":     # weights + gradients + Adam + saved activations
        expr = 2 * 4 * graph.params + optimizer_bytes(graph.params, "float32", "adam") + c.activation_bytes
    else:
        expr = getattr(c, metric)
    return sympy.ceiling(sympy.sympify(expr))


def crossovers(models: dict, metrics: list[str], compared: dict) -> dict[str, list[dict]]:
    """metric -> [{between: [costlier, cheaper], T, before, at}]: the exact
    lengths in the sweep where a pair's order flips (seqdsl.compare's;
    seqdsl.cost.crossover directly for sequential depth)."""
    from seqdsl.cost.crossover import crossings
    out = {}
    for metric in metrics:
        if metric in compared:
            out[metric] = [{"between": x.between, "T": x.seq["T"], "before": x.before, "at": x.at}
                           for x in compared[metric].crossovers]
            continue
        found = []
        exprs = {n: count_expr(g, metric) for n, g in models.items()}
        for i, a in enumerate(SPECS):
            for b in SPECS[i + 1:]:
                for T in crossings(exprs[a], exprs[b], "T", SWEEP[0], SWEEP[-1], fixed={"B": BATCH[metric]}):
                    hi, lo = sorted((a, b), key=lambda s: -value(models[s], metric, T))
                    found.append({"between": [hi, lo], "T": T,
                                  "before": {s: value(models[s], metric, T - 1) for s in (hi, lo)},
                                  "at": {s: value(models[s], metric, T) for s in (hi, lo)}})
        out[metric] = sorted(found, key=lambda x: x["T"])
    return out


def tie_changes(models: dict, metric: str) -> set[int]:
    """Lengths where a pair starts or stops being tied. A crossover is a flip of
    the strict order; a tie that ends (the hybrid's depth equals the
    transformer's up to T = 128, one segment) changes the winners too. For
    integer figures, f > g flips exactly where f - (g + 1/2) changes sign, and
    g > f where (f + 1/2) - g does: seqdsl.cost.crossover finds both exactly."""
    import sympy

    from seqdsl.cost.crossover import crossings
    exprs = {n: count_expr(g, metric) for n, g in models.items()}
    half = sympy.Rational(1, 2)
    out: set[int] = set()
    for i, a in enumerate(SPECS):
        for b in SPECS[i + 1:]:
            for fa, fb in ((exprs[a], exprs[b] + half), (exprs[a] + half, exprs[b])):
                out.update(crossings(fa, fb, "T", SWEEP[0], SWEEP[-1], fixed={"B": BATCH[metric]}))
    return out


def winners(models: dict, metric: str, lo: int, hi: int, changes: set[int]) -> list[dict]:
    """Who is cheapest over [lo, hi], piece by piece: the minimum can only
    change where some pair's order (<, =, >) changes, so evaluating at lo and
    at each such length inside the regime gives every piece. Ties list every
    tied model."""
    pieces = []
    for T in [lo] + sorted(t for t in changes if lo < t <= hi):
        vals = {n: value(g, metric, T) for n, g in models.items()}
        who = [n for n in SPECS if vals[n] == min(vals.values())]
        if not pieces or pieces[-1]["winners"] != who:
            pieces.append({"from": T, "winners": who})
    return pieces


def regime_table(models: dict, flips: dict) -> list[dict]:
    rows = []
    labels = {m: label for m, label, _, _ in METRICS}
    # latency: floats never tie in practice, its strict crossovers are every change
    changes = {m: {x["T"] for x in flips[m]} if is_latency(m) else tie_changes(models, m) for m in flips}
    for regime, lo, hi, at in REGIMES:
        for metric in flips:
            rows.append({"regime": regime, "lo": lo, "hi": hi, "at": at, "metric": metric,
                         "label": labels[metric], "batch": BATCH[metric],
                         "values": {n: value(g, metric, at) for n, g in models.items()},
                         "pieces": winners(models, metric, lo, hi, changes[metric])})
    return rows


def state_label(kind: str) -> str:
    return "KV cache (attention)" if kind == "attention" else f"{kind} state"


def state_parts(models: dict) -> dict:
    """model -> {part: [bytes at each STATE_T]}, one generation (batch
    GEN_BATCH): each layer's state_bytes from seqdsl's cost model
    (seqdsl.cost.model, the per-layer terms the estimate sums), summed by
    kind: the attention layers' KV cache, each recurrent kind's state. The
    parts of a model add up to seqdsl.estimate's state_bytes at every length
    (checked here, and by tests/test_examples.py on the JSON)."""
    import seqdsl
    from seqdsl.cost.estimate import compiled
    from seqdsl.graph.symbolic import compile_expr
    out = {}
    for name, graph in models.items():
        terms: dict[str, list] = {}
        for n in compiled(graph, "float32").cost.nodes:
            if n.node.kind not in ("input", "add") and n.cost.state_bytes != 0:
                terms.setdefault(state_label(n.node.kind), []).append(compile_expr(n.cost.state_bytes))
        parts = {label: [int(sum(f({"T": T, graph.batch_symbol: GEN_BATCH}) for f in fs)) for T in STATE_T]
                 for label, fs in terms.items()}
        totals = [p.state_bytes for p in seqdsl.estimate(graph, seq=STATE_T, batch=GEN_BATCH).points]
        assert [sum(col) for col in zip(*parts.values())] == totals, name
        out[name] = parts
    return out


# ------------------------------------------------------------------ text
def fmt(metric: str, v) -> str:
    from seqdsl.units import human_bytes, human_flops, human_seconds
    if is_latency(metric):
        return human_seconds(v)
    if metric.startswith("flops"):
        return human_flops(v)
    if metric == "sequential_depth":
        return f"{v:,}"
    return human_bytes(v)


def exact(v) -> str:
    """Crossover values in full: ints with separators, seconds to 6 digits."""
    return f"{v:,}" if isinstance(v, int) else f"{v:.6g} s"


def winner_text(pieces: list[dict]) -> str:
    parts = []
    for i, p in enumerate(pieces):
        who = " = ".join(f"**{w}**" for w in p["winners"])
        parts.append(who if i == 0 else f"from T = {p['from']:,}: {who}")
    return "; ".join(parts)


def markdown(models: dict, rows: list[dict], flips: dict, states: dict, spot: list[dict] | None) -> str:
    params = ", ".join(f"{n} {g.params / 1e6:.2f}M" for n, g in models.items())
    out = ["# Transformer vs LSTM vs Mamba-2 vs Gated DeltaNet vs hybrid: regime table", "",
           f"Models (examples/transformer_vs_rnn/*.seq, parameters): {params}. float32, Adam.",
           f"Training figures at batch {TRAIN_BATCH}, generation figures at batch {GEN_BATCH}. "
           "Lower is better in every column. The winner holds over the whole regime unless the cell "
           "says from which T another model takes over (exact crossovers); the values are at the "
           "regime's representative length.", "",
           "| regime | metric | winner | " + " | ".join(SPECS) + " |",
           "|---|---|---|" + "---|" * len(SPECS)]
    for r in rows:
        span = f"{r['regime']} ({r['lo']:,}–{r['hi']:,}), at T = {r['at']:,}"
        best = min(r["values"].values())
        cells = [(f"**{fmt(r['metric'], v)}**" if v == best else fmt(r["metric"], v)) for v in r["values"].values()]
        out.append(f"| {span} | {r['label']} | {winner_text(r['pieces'])} | " + " | ".join(cells) + " |")
    out += ["", f"## Crossovers (T = {SWEEP[0]:,} to {SWEEP[-1]:,})", "",
            "The first model costs more from T on (checked at T - 1 and T).", "",
            "| metric | T | costlier from T | cheaper | at T - 1 | at T |", "|---|---|---|---|---|---|"]
    labels = {m: label for m, label, _, _ in METRICS}
    for metric, found in flips.items():
        label = labels[metric]
        for x in found:
            hi, lo = x["between"]
            out.append(f"| {label} | {x['T']:,} | {hi} | {lo} | {exact(x['before'][hi])} vs "
                       f"{exact(x['before'][lo])} | {exact(x['at'][hi])} vs {exact(x['at'][lo])} |")
        if not found:
            out.append(f"| {label} | — | none | | | |")
    shown = [T for T in (64, 512, 8192, 65536) if T in STATE_T]
    out += ["", f"## Generation state by layer kind (batch {GEN_BATCH})", "",
            "Each model's state split into its attention layers' KV cache and its recurrent layers' "
            "states; the parts add up to the estimate's KV / state memory.", "",
            "| model | part | " + " | ".join(f"T = {T:,}" for T in shown) + " |", "|---|---|" + "---|" * len(shown)]
    for name, parts in states.items():
        for label, ys in parts.items():
            out.append(f"| {name} | {label} | " + " | ".join(fmt("state_bytes", ys[STATE_T.index(T)])
                                                            for T in shown) + " |")
    if spot:
        out += ["", f"## Spot check: estimate vs measurement at T = {SPOT['T']}, B = {SPOT['B']}", "",
                "FLOPs by torch's FlopCounterMode (with seqdsl.backend.measure's CPU formulas), saved activations "
                "by saved_tensors_hooks, on the module seqdsl.build emits.", "",
                "| model | params (est = torch) | forward FLOPs measured / estimated | training FLOPs "
                "measured / estimated | saved activations measured / estimated |", "|---|---|---|---|---|"]
        for s in spot:
            out.append(f"| {s['model']} | {s['params']:,} = {s['params_torch']:,} | "
                       f"{s['fwd'][0]:,} / {s['fwd'][1]:,} = {s['fwd'][0] / s['fwd'][1]:.4f} | "
                       f"{s['train'][0]:,} / {s['train'][1]:,} = {s['train'][0] / s['train'][1]:.4f} | "
                       f"{s['saved'][0]:,} / {s['saved'][1]:,} = {s['saved'][0] / s['saved'][1]:.4f} |")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ measurement
def spot_check(models: dict) -> list[dict]:
    """Build each model and measure it at SPOT (imports torch: not in --smoke)."""
    import torch

    import seqdsl
    from seqdsl.backend import measure
    # One thread: the counts do not depend on it, and on a shared 2-core
    # machine two threads under load ran the check 3x slower (45 s vs 13.5 s).
    torch.set_num_threads(1)
    out = []
    for name, graph in models.items():
        module = seqdsl.build(graph, seed=0)
        inputs = measure.example_inputs(graph, measure.input_env(graph, {"T": SPOT["T"]}, SPOT["B"]))
        est = seqdsl.estimate(graph, seq=SPOT["T"], batch=SPOT["B"])
        p = est.points[0]
        fwd, train = measure.forward_and_train_flops(module, *inputs)
        saved = measure.saved_bytes(module, *inputs)
        out.append({"model": name, "params": est.params, "params_torch": measure.params(module),
                    "fwd": [fwd, p.flops_forward], "train": [train, p.flops_train],
                    "saved": [saved, p.activation_bytes]})
    return out


# ------------------------------------------------------------------ plot
def plot(compared: dict, path: Path) -> None:
    """seqdsl.cli.compare.plot draws each metric (log-log, crossovers dashed) to its
    own PNG, in a temporary directory; this tiles them into one figure."""
    import tempfile

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    from seqdsl.cli.compare import plot as compare_plot
    rows = (len(compared) + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(16, 5 * rows))
    for ax in axes.flat:
        ax.axis("off")
    with tempfile.TemporaryDirectory() as tmp:
        for ax, (metric, c) in zip(axes.flat, compared.items()):
            panel = Path(tmp) / f"{metric}.png"
            compare_plot(c, panel)
            ax.imshow(mpimg.imread(panel))
    fig.tight_layout()
    _common.save_figure(fig, path, dpi=100)


def hybrid_window(graph) -> int:
    """The hybrid's attention window (from its checked graph), marked on the state figure."""
    return next(n.args.window for n in graph.nodes if n.kind == "attention")


def plot_state(states: dict, window: int, path: Path) -> None:
    """Generation state against context length: the hybrid's KV cache stacked
    on its Mamba-2 states, beside the transformer's KV cache and the pure
    recurrent models' constant states. Left linear (the first 4x the
    window, where the hybrid's cache fills), right log-log to 65,536."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    mib = 2 ** 20
    fig, axes = plt.subplots(1, 2, figsize=(15, 5.5))
    colours = {"transformer": "tab:red", "lstm": "tab:grey", "mamba2": "tab:blue",
               "gated_deltanet": "tab:green", "hybrid": "black"}
    for ax, hi, log in ((axes[0], 4 * window, False), (axes[1], STATE_T[-1], True)):
        ts = [T for T in STATE_T if T <= hi]
        hybrid = states["hybrid"]
        recurrent = [label for label in hybrid if not label.startswith("KV")]
        stack = [[v / mib for v in hybrid[label][:len(ts)]] for label in recurrent + ["KV cache (attention)"]]
        ax.stackplot(ts, *stack, colors=["tab:cyan", "tab:orange"], alpha=0.45,
                     labels=[f"hybrid: {label}" for label in recurrent] + ["hybrid: KV cache (attention, window "
                                                                           f"{window})"])
        for name, parts in states.items():
            total = [sum(col) / mib for col in zip(*parts.values())][:len(ts)]
            ax.plot(ts, total, color=colours.get(name), linewidth=2 if name == "hybrid" else 1.5,
                    linestyle="-" if name in ("transformer", "hybrid") else "--",
                    label=f"{name} total" if name == "hybrid" else name)
        ax.axvline(window, color="tab:orange", linestyle=":", linewidth=1)
        if log:
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_ylim(bottom=0.01)
        else:
            ax.set_xlim(0, hi)
            ax.set_ylim(0, 3 * max(sum(col) for col in zip(*states["hybrid"].values())) / mib)
        ax.set_xlabel("context length T (tokens)")
        ax.set_ylabel(f"generation state (MiB, batch {GEN_BATCH}, float32)")
        ax.grid(True, alpha=0.3)
    axes[0].set_title("the hybrid's state: Mamba-2 states + a KV cache that fills to the window")
    axes[1].set_title("every model, to 65,536 tokens (log-log)")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    _common.save_figure(fig, path, dpi=100)


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    args = p.parse_args()
    out = _common.out_dir(args.out)
    t0 = time.perf_counter()
    models = load_models()
    metrics = [m for m, _, _, _ in METRICS if not (args.smoke and is_latency(m))]
    compared = comparisons(models, metrics)
    flips = crossovers(models, metrics, compared)
    rows = regime_table(models, flips)
    states = state_parts(models)
    spot = None if args.smoke else spot_check(models)
    text = markdown(models, rows, flips, states, spot)
    _common.write(out / "transformer_vs_rnn.md", text)
    _common.write(out / "transformer_vs_rnn.json", json.dumps(
        {"params": {n: g.params for n, g in models.items()}, "train_batch": TRAIN_BATCH, "gen_batch": GEN_BATCH,
         "metrics": {m: {"batch": BATCH[m], "field": FIELD[m]} for m in metrics}, "hw": HW,
         "regimes": rows, "crossovers": flips, "state_T": STATE_T, "state_parts": states, "spot_check": spot},
        indent=1))
    if not args.smoke:
        plot(compared, out / "transformer_vs_rnn.png")
        plot_state(states, hybrid_window(models["hybrid"]), out / "transformer_vs_rnn_state.png")
    print(text)
    print(f"wrote {out}/transformer_vs_rnn{{.md,.json{'' if args.smoke else ',.png,_state.png'}}} "
          f"in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    sys.exit(_common.run(main))
