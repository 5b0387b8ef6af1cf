"""One training step (forward + backward) of each v0.2 recurrent layer, side by
side in one run: seqdsl's built layer against its reference implementation's
own pure-torch path (the same weights), against softmax attention of the same
width, and eager against torch.compile; then one compile across five lengths.

    PYTHONPATH=. .venv/bin/python benchmarks/recurrent_layers.py [--quick] [--reps N]
        [--threads N] [--backend inductor] [--layers mamba,gla] [--lengths 1024,4096] [--out DIR]
        [--no-compile | --compile-only [--compile-lengths 200,256,500,1024,300]]
        [--merge RUN.json ...]

Writes DIR/recurrent_layers.md and .json (DIR: benchmarks/results). The
references (the `reference` extra) are built as tests/test_layers_rec1.py and
tests/test_layers_rec2.py build them (flash-linear-attention's layers through
tests/rec2_refs.py, on fla's own naive recurrences, since its kernels need
Triton); a reference that cannot be built is skipped with its reason in the
results. `--quick` (small T, one repetition, the `eager` compile backend
unless --backend says otherwise) is the smoke test tests/test_bench_recurrent.py runs.

A whole run at T = 1,024 and 4,096 takes hours on a shared 2-core machine: run
subsets (`--layers`; `--lengths` for some timed lengths; `--no-compile` for the
timings alone; `--compile-only` for the five-length compile alone, at lengths
of your choosing) and join them with `--merge`, which takes each layer's
timings at each length from the first run that timed it at that length and its
compile table row from the run that compiled it over the most lengths.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import seqdsl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))      # rec2_refs: the fla reference loader the tests use

# kind -> the seqdsl call benchmarked (heads: width / 64)
CALLS = {
    "mamba": "mamba",
    "mamba2": "mamba2(head_dim=64)",
    "rglru": "rglru({h})",
    "mingru": "mingru",
    "gla": "gla({h})",
    "gated_deltanet": "gated_deltanet({h}, head_dim=64)",
    "retention": "retention({h})",
    "mlstm": "mlstm({h})",
}
ATTENTION = "attention({h}, causal=true)"


# ------------------------------------------------------------------ the references
# Each returns (what it is, module, fn(x) -> output (B, T, d)) for width d and
# lengths up to max_t, its parameter names those of the seqdsl layer.
def ref_mamba(d, max_t):
    from transformers import MambaConfig
    from transformers.models.mamba.modeling_mamba import MambaMixer
    cfg = MambaConfig(hidden_size=d, state_size=16, expand=2, conv_kernel=4, time_step_rank=-(-d // 16),
                      use_bias=False, use_conv_bias=True, num_hidden_layers=1)
    m = MambaMixer(cfg, 0)
    return "transformers MambaMixer, torch path (a Python loop over T)", m, m


def ref_mamba2(d, max_t):
    from transformers import Mamba2Config
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer
    cfg = Mamba2Config(hidden_size=d, state_size=128, expand=2, head_dim=64, n_groups=1, num_heads=2 * d // 64,
                       conv_kernel=4, chunk_size=256, num_hidden_layers=1)
    m = Mamba2Mixer(cfg, 0)
    return "transformers Mamba2Mixer, torch path (chunked SSD)", m, m


def ref_rglru(d, max_t):
    from transformers import RecurrentGemmaConfig
    from transformers.models.recurrent_gemma.modeling_recurrent_gemma import RecurrentGemmaRecurrentBlock
    cfg = RecurrentGemmaConfig(hidden_size=d, lru_width=d, num_attention_heads=d // 64, conv1d_width=4,
                               num_hidden_layers=1)
    m = RecurrentGemmaRecurrentBlock(cfg, 0)
    import rec2_refs
    rec2_refs.randomize(m, scale=0.1)          # its own init leaves the gates empty

    def run(x):
        pos = torch.arange(x.shape[1])[None].expand(x.shape[0], -1)
        return m(x, pos, None, use_cache=False)[0]
    return "transformers RecurrentGemmaRecurrentBlock (a Python loop over T)", m, run


def ref_mingru(d, max_t):
    import minGRU_pytorch
    m = minGRU_pytorch.minGRU(d, 1)
    return "minGRU-pytorch minGRU (log-space parallel scan)", m, m


def _fla(kind, d, **kw):
    import rec2_refs
    if rec2_refs.fla_root() is None:
        raise ImportError("flash-linear-attention is not installed (pip install -e .[reference])")
    with rec2_refs.fla_layers() as (layers, _):
        m = rec2_refs.randomize(layers[kind](hidden_size=d, **kw), scale=0.1)
    return m, (lambda x: m(x)[0])


def ref_gla(d, max_t):
    m, run = _fla("gla", d, num_heads=d // 64)
    return "fla GatedLinearAttention on fla.ops.gla.naive_recurrent_gla (a loop over T)", m, run


def ref_gated_deltanet(d, max_t):
    m, run = _fla("gated_deltanet", d, num_heads=d // 64, head_dim=64)
    return "fla GatedDeltaNet on naive_recurrent_gated_delta_rule (a loop over T)", m, run


def ref_retention(d, max_t):
    m, run = _fla("retention", d, num_heads=d // 64)
    return "fla MultiScaleRetention on fla.ops.retention.naive_retention (parallel, T x T)", m, run


def ref_mlstm(d, max_t):
    from xlstm.blocks.mlstm.layer import mLSTMLayer, mLSTMLayerConfig
    m = mLSTMLayer(mLSTMLayerConfig(embedding_dim=d, num_heads=d // 64, context_length=max_t))
    import rec2_refs
    rec2_refs.randomize(m, scale=0.1)
    return "xlstm mLSTMLayer, its torch backend (parallel stabilized, T x T)", m, m


REFERENCES = {k: globals()[f"ref_{k}"] for k in CALLS}


# ------------------------------------------------------------------ building and timing
def spec(call: str, d: int) -> str:
    return f"model m {{\n    input x: float[B, T, {d}]\n    y = x -> {call}\n    output y\n}}\n"


def built(call: str, d: int, seed: int = 0):
    """seqdsl's model of the one layer (eager SeqModel) and the layer's module."""
    graph = seqdsl.parse(spec(call, d)).model()
    m = seqdsl.build(graph, seed=seed).train()
    (name,) = m._mods
    return graph, m, m.named_layer(name)


def train_step(fn, params, x):
    """One forward + backward; the output (detached) for the equality check."""
    out = fn(x)
    out.float().square().mean().backward()
    for p in params:
        p.grad = None
    return out.detach()


def timed(fn, params, x) -> float:
    t0 = time.perf_counter()
    train_step(fn, params, x)
    return time.perf_counter() - t0


def graphs_compiled() -> int:
    from torch._dynamo.utils import counters
    return counters["stats"]["unique_graphs"]


def graph_breaks() -> int:
    from torch._dynamo.utils import counters
    return sum(counters["graph_break"].values())


def compile_seconds() -> float:
    from torch._dynamo.utils import calculate_time_spent
    return calculate_time_spent().get("total_wall_time", 0.0)


def bench_layer(kind, args, x_of):
    d = args.width
    h = d // 64
    call = CALLS[kind].format(h=h)
    row = {"kind": kind, "call": call}
    graph, model, layer = built(call, d)
    row["params"] = sum(p.numel() for p in model.parameters())
    ref = None
    try:
        what, ref_mod, ref_fn = REFERENCES[kind](d, max(args.lengths + args.compile_lengths))
        ref_mod.train()
        layer.load_state_dict(ref_mod.state_dict(), strict=True)   # the same weights, the same function
        row["reference"] = what
        ref = (ref_fn, list(ref_mod.parameters()))
    except Exception as e:       # not installed, or an API that changed: said in the results, never silently
        row["reference"] = None
        row["reference_skipped"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    _, attn, _ = built(ATTENTION.format(h=h), d)

    # one compile across five lengths (the compiled model then serves the timings)
    import torch._dynamo
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    before = compile_seconds()
    comp = None
    row["compile"] = {"backend": args.backend, "lengths": list(args.compile_lengths)}
    if args.compile_only:
        row["compile"]["only"] = True     # this run measured the compile and no timings
    if not args.compile:
        row["compile"]["skipped"] = "--no-compile"
    else:
        try:
            comp = seqdsl.build(graph, compile=True, backend=args.backend).train()
            comp.load_state_dict(model.state_dict())
            first, graphs = [], []
            for t in args.compile_lengths:
                first.append(round(timed(comp, list(comp.parameters()), x_of(t)), 4))
                graphs.append(graphs_compiled())
            row["compile"].update(first_step_s=first, graphs_after_each=graphs, graphs=graphs[-1],
                                  new_graphs_after_first=graphs[-1] - graphs[0], graph_breaks=graph_breaks(),
                                  compile_s=round(compile_seconds() - before, 3))
        except Exception as e:       # a layer the backend cannot compile is a result too
            row["compile"]["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            comp = None

    row["steps"] = {}
    if args.compile_only:
        return row
    variants = {"seqdsl": (model, list(model.parameters())), "attention": (attn, list(attn.parameters()))}
    if ref is not None:
        variants["reference"] = ref
    if comp is not None:
        variants["compiled"] = (comp, list(comp.parameters()))
    for t in args.lengths:
        x = x_of(t)
        here = dict(variants)
        if args.reference_max_length is not None and t > args.reference_max_length:
            here.pop("reference", None)         # said in the row: never silently
        outs = {k: train_step(fn, ps, x) for k, (fn, ps) in here.items()}   # warm-up
        times = {k: [] for k in here}
        for _ in range(args.reps):              # round robin: every variant sees the same load
            for k, (fn, ps) in here.items():
                times[k].append(timed(fn, ps, x))
        step = {f"{k}_ms": {"median": round(1e3 * statistics.median(v), 3), "best": round(1e3 * min(v), 3)}
                for k, v in times.items()}
        step["not_finite"] = [k for k, out in outs.items() if not bool(torch.isfinite(out).all())]
        if ref is not None and "reference" not in here:
            step["reference_skipped"] = f"not run above T = {args.reference_max_length:,} (--reference-max-length)"
        if "reference" in outs:
            step["max_abs_diff_vs_reference"] = float((outs["seqdsl"] - outs["reference"]).abs().max())
        if "compiled" in outs:
            step["max_abs_diff_compiled"] = float((outs["seqdsl"] - outs["compiled"]).abs().max())
        row["steps"][str(t)] = step
    return row


# ------------------------------------------------------------------ the report
RUN_KEYS = ("command", "date", "jobs", "loadavg_start", "loadavg_end", "wall_s", "complete", "backend",
            "compile_only", "compile_lengths", "lengths")


def _timed(run: dict) -> bool:
    return not run.get("compile_only")


def _runs_of(results: list[dict]) -> list[dict]:
    """A report that is itself merged stands for its runs: run i gets the
    timings marked with i (`run` on each length) and the compiles marked with i
    (`compile_run`), so merging it again gives the same report."""
    out = []
    for r in results:
        if "runs" not in r:
            out.append(r)
            continue
        for i, run in enumerate(r["runs"], 1):
            rows = []
            for row in r["layers"]:
                steps = {t: {k: v for k, v in s.items() if k != "run"}
                         for t, s in row["steps"].items() if s.get("run", row.get("run")) == i}
                compiled = row.get("compile_run", row.get("run")) == i
                if steps or compiled:
                    rows.append({**{k: v for k, v in row.items() if k not in ("run", "compile_run")}, "steps": steps,
                                 "compile": row["compile"] if compiled else {"skipped": "taken from another run"}})
            out.append({**r, **{k: v for k, v in run.items() if v is not None}, "layers": rows})
    return out


def merged(results: list[dict], notes=()) -> dict:
    """Several runs' results as one report (--merge): each layer's timings at
    each length from the first run that timed it at that length (marked with its
    run), its compile across lengths from the run that compiled it over the most
    lengths, the first of those (`compile_run`); the runs' commands and loads
    kept. The timed runs must share width, batch and reps (the lengths are the
    union of theirs); every run must share the width. An earlier merged report
    counts as its runs (give its notes again with --note: they are not carried).
    Runs no row is from are left out (_drop_unused_runs)."""
    results = _runs_of(results)
    timed = [r for r in results if _timed(r)]
    if not timed:
        raise SystemExit("--merge: every run is --compile-only; give a run with timings first")
    first = timed[0]
    for r in timed[1:]:
        if (r["width"], r["batch"], r["reps"]) != (first["width"], first["batch"], first["reps"]):
            raise SystemExit("--merge: the timed runs differ in width, batch or reps")
    if any(r["width"] != first["width"] for r in results):
        raise SystemExit("--merge: the runs differ in width")
    res = {**first, "runs": [{k: r.get(k) for k in RUN_KEYS} for r in results], "layers": [],
           "lengths": sorted({t for r in timed for t in r["lengths"]}),
           "compile_lengths": max((r["compile_lengths"] for r in timed), key=len)}   # the table's heading
    rows = {}
    for i, r in enumerate(results, 1):
        for row in r["layers"]:
            if not _timed(r):
                continue
            have = rows.setdefault(row["kind"], {**row, "run": i, "compile_run": i, "steps": {}})
            for t, step in row["steps"].items():
                have["steps"].setdefault(t, {**step, "run": i})
    most = {}
    for i, r in enumerate(results, 1):
        for row in r["layers"]:
            have = rows.get(row["kind"])
            n = len(row["compile"]["lengths"]) if "skipped" not in row["compile"] else 0
            if have and n > most.get(row["kind"], 0):
                have.update(compile=row["compile"], compile_run=i)
                most[row["kind"]] = n
    res["layers"] = sorted(rows.values(), key=lambda row: list(CALLS).index(row["kind"]))
    _drop_unused_runs(res, results)
    res["complete"] = set(rows) == set(CALLS) and all(str(t) in row["steps"] for row in rows.values()
                                                      for t in res["lengths"])
    res["notes"] = list(notes)
    return res


def _drop_unused_runs(res: dict, results: list[dict]) -> None:
    """Keep only the runs some row is from (timings or compile), renumbered in
    order: a run whose every row a later one superseded says nothing here."""
    used = sorted({s["run"] for row in res["layers"] for s in row["steps"].values()}
                  | {row["compile_run"] for row in res["layers"]})
    new = {old: i for i, old in enumerate(used, 1)}
    for row in res["layers"]:
        for step in row["steps"].values():
            step["run"] = new[step["run"]]
        row["run"], row["compile_run"] = new[row["run"]], new[row["compile_run"]]
    res["runs"] = [res["runs"][i - 1] for i in used]
    kept = [results[i - 1] for i in used]
    res["loadavg_start"] = [max(r["loadavg_start"][i] for r in kept) for i in range(3)]
    res["loadavg_end"] = [max(r["loadavg_end"][i] for r in kept) for i in range(3)]
    res["wall_s"] = sum(r["wall_s"] for r in kept)
    res["jobs"] = max(r["jobs"] for r in kept)


def _ratio(a, b):
    return f"{a / b:.2f}" if a and b else "–"


def _diff(diff, not_finite) -> str:
    if diff is None:
        return "–"
    if diff == diff:
        return f"{diff:.1e}"
    return f"nan: {', '.join(not_finite)} output not finite" if not_finite else "nan"


def markdown(res) -> str:
    lines = ["# Recurrent layers: one training step (forward + backward)",
             "",
             *([] if res["complete"] else [f"**Incomplete run**: {len(res['layers'])} layer(s) measured so far.", ""]),
             f"CPU: {res['cpu']}, torch {res['torch']}, {res['threads']} torch thread(s) per process, "
             f"{'up to ' if 'runs' in res else ''}{res['jobs']} layer(s) measured at once (separate processes); "
             f"load average {res['loadavg_start'][0]:.2f} at the start, {res['loadavg_end'][0]:.2f} at the end "
             "(1-minute; the machine is shared)."
             + ("" if "runs" in res else f" Run took {res['wall_s']:.0f} s ({res['date']})."),
             f"Width d = {res['width']}, batch B = {res['batch']}, heads d/64; fp32. Every variant runs once to warm up, "
             f"then {res['reps']} round(s) in turn (round robin, so each sees the same load); times are medians "
             f"(best in the JSON).",
             *([f"Command: `{res['command']}`"] if "runs" not in res else
               [f"Merged from {len(res['runs'])} runs (`--merge`); each layer's row is from the run marked beside it, "
                "and its ratios are from inside that run (the load figures above are the highest of the runs):"]
               + [f"- run {i}: `{r['command']}` ({r['date']}, {r['jobs']} at once; load {r['loadavg_start'][0]:.2f} "
                  f"at the start, {r['loadavg_end'][0]:.2f} at the end; {r['wall_s']:.0f} s"
                  f"{'' if r['complete'] else '; cut short'})" for i, r in enumerate(res["runs"], 1)]
               + [f"- note: {n}" for n in res.get("notes", [])]),
             "",
             "Columns: seqdsl's built layer (eager); its reference on the same weights; **ref / seqdsl** "
             "(above 1: seqdsl faster); softmax attention of the same width (seqdsl `attention`, causal, SDPA) "
             "and **layer / attention** (below 1: the layer is cheaper); seqdsl compiled "
             f"(`seqdsl.build(compile=True, backend={res['backend']!r})`: torch.compile with the sequence dim "
             "marked dynamic) and **eager / compiled** (above 1: compiling pays).",
             ""]
    for t in ([] if res.get("compile_only") else res["lengths"]):
        lines += [f"## T = {t:,}", "",
                  "| layer | params | seqdsl (ms) | reference (ms) | ref / seqdsl | attention (ms) | layer / attention "
                  "| compiled (ms) | eager / compiled | max abs diff vs ref |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in res["layers"]:
            if str(t) not in r["steps"]:
                lines.append(f"| `{r['call']}` | {r['params']:,} | not run at this length | | | | | | | |")
                continue
            s = r["steps"][str(t)]
            me = s["seqdsl_ms"]["median"]
            ref = s.get("reference_ms", {}).get("median")
            att = s["attention_ms"]["median"]
            comp = s.get("compiled_ms", {}).get("median")
            diff = s.get("max_abs_diff_vs_reference")
            run = f" (run {s.get('run', r['run'])})" if "run" in r else ""
            lines.append(f"| `{r['call']}`{run} | {r['params']:,} | {me:.1f} | {f'{ref:.1f}' if ref else ('not run (--reference-max-length)' if 'reference_skipped' in s else 'skipped')} | "
                         f"{_ratio(ref, me)} | {att:.1f} | {_ratio(me, att)} | {f'{comp:.1f}' if comp else ('failed' if 'error' in r['compile'] else 'not run')} | "
                         f"{_ratio(me, comp)} | {_diff(diff, s.get('not_finite'))} |")
        lines.append("")
    lines += ["## One compile across five lengths", "",
              f"`seqdsl.build(compile=True, backend={res['backend']!r})`, then one training step at each of "
              f"T = {', '.join(str(t) for t in res['compile_lengths'])} in that order (or the lengths the row "
              "names, from a `--compile-only` run), from a reset dynamo: "
              "the graphs dynamo compiled (`counters['stats']['unique_graphs']`: all lengths, and those compiled "
              "after the first length, i.e. recompiles), graph breaks, compile time (dynamo and backend, forward "
              "and backward: `torch._dynamo.utils.calculate_time_spent`), and the wall time of each first step "
              "(compile included).", "",
              "| layer | graphs | of which after the first T | graph breaks | compile (s) | first step at each T (s) |",
              "|---|---|---|---|---|---|"]
    for r in res["layers"]:
        c = r["compile"]
        name = f"`{r['call']}`"
        if r.get("compile_run", r.get("run")) != r.get("run") or c.get("lengths", res["compile_lengths"]) != res["compile_lengths"]:
            name += f" (run {r['compile_run']}, T = {', '.join(str(t) for t in c['lengths'])})"
        if "error" in c or "skipped" in c:
            lines.append(f"| {name} | {'failed: ' + c['error'] if 'error' in c else 'not run (' + c['skipped'] + ')'} | | | | |")
        else:
            lines.append(f"| {name} | {c['graphs']} | {c['new_graphs_after_first']} | {c['graph_breaks']} | "
                         f"{c['compile_s']:.1f} | {', '.join(f'{s:.2f}' for s in c['first_step_s'])} |")
    lines += ["", "## References", ""]
    for r in res["layers"]:
        lines.append(f"- `{r['kind']}`: " + (r["reference"] if r["reference"] else f"**skipped** ({r['reference_skipped']})")
                     + f"; this layer's part of {'run ' + str(r['run']) if 'run' in r else 'the run'} took {r['wall_s']:.0f} s")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small T, one repetition (the smoke test)")
    p.add_argument("--reps", type=int, default=None, help="timed rounds per length (default 3; --quick 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    p.add_argument("--backend", default=None, help="torch.compile backend (default inductor; --quick eager)")
    p.add_argument("--jobs", type=int, default=1,
                   help="layers measured at once, each in its own process (default 1)")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="leave out the compiled columns and the five-length compile")
    p.add_argument("--compile-only", action="store_true",
                   help="measure the five-length compile alone (no timings): a subset to --merge with timed runs")
    p.add_argument("--lengths", default=None,
                   help="the timed lengths, comma-separated (default 1024,4096; --quick 32)")
    p.add_argument("--compile-lengths", default=None,
                   help="the five lengths of the compile, comma-separated (default 1000,1024,2500,4096,1536)")
    p.add_argument("--layers", default=",".join(CALLS), help="comma-separated kinds (default: all eight)")
    p.add_argument("--reference-max-length", type=int, default=None, metavar="T",
                   help="time the reference only up to this length (mamba's reference takes minutes a step "
                        "at T = 1,024 and grows faster than T squared)")
    p.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                   help="write one report from earlier runs' JSON files (no measuring)")
    p.add_argument("--note", action="append", default=[],
                   help="with --merge: a line for the report (what was measured under which load)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="results folder")
    a = p.parse_args(argv)
    a.layers = [k.strip() for k in a.layers.split(",") if k.strip()]
    unknown = [k for k in a.layers if k not in CALLS]
    if unknown:
        p.error(f"--layers: unknown kind(s) {', '.join(unknown)}; choose from {', '.join(CALLS)}")
    if a.reps is not None and a.reps < 1:
        p.error("--reps must be at least 1")
    if a.threads < 1 or a.jobs < 1:
        p.error("--threads and --jobs must be at least 1")
    if a.compile_only and not a.compile:
        p.error("--compile-only and --no-compile leave nothing to measure: give one of them")
    for flag in ("lengths", "compile_lengths"):
        given = getattr(a, flag)
        if given is None:
            continue
        name = "--" + flag.replace("_", "-")
        try:
            setattr(a, flag, [int(v) for v in given.split(",")])
        except ValueError:
            p.error(f"{name}: {given!r} is not comma-separated integers (e.g. 200,256,500)")
        if not getattr(a, flag) or min(getattr(a, flag)) < 2:
            p.error(f"{name}: give lengths of at least 2 (a length of 1 is specialised by torch.compile)")
    a.reps = a.reps or (1 if a.quick else 3)
    a.backend = a.backend or ("eager" if a.quick else "inductor")
    a.width, a.batch = (64, 1) if a.quick else (256, 1)
    a.lengths = a.lengths or ([32] if a.quick else [1024, 4096])
    a.compile_lengths = a.compile_lengths or ([16, 32, 40, 24, 48] if a.quick else [1000, 1024, 2500, 4096, 1536])
    return a


def run_layer(kind, args) -> dict:
    """One layer's whole measurement (in this process or a --jobs worker)."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    xs = {}

    def x_of(t):      # one input per length, the same for every layer and process
        if t not in xs:
            xs[t] = torch.randn(args.batch, t, args.width, generator=torch.Generator().manual_seed(t))
        return xs[t]

    t0 = time.perf_counter()
    row = bench_layer(kind, args, x_of)
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    return row


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.merge:
        res = merged([json.loads(Path(f).read_text()) for f in args.merge], args.note)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "recurrent_layers.json").write_text(json.dumps(res, indent=1) + "\n")
        (args.out / "recurrent_layers.md").write_text(markdown(res))
        return res
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    res = {"command": "PYTHONPATH=. .venv/bin/python benchmarks/recurrent_layers.py"
                      + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "cpu": f"{platform.machine()}, {os.cpu_count()} cores", "torch": torch.__version__,
           "threads": torch.get_num_threads(), "jobs": args.jobs, "loadavg_start": list(os.getloadavg()),
           "quick": args.quick, "reps": args.reps, "backend": args.backend, "width": args.width,
           "batch": args.batch, "lengths": args.lengths, "compile_lengths": args.compile_lengths,
           "compile_only": args.compile_only,
           "complete": False, "layers": []}
    args.out.mkdir(parents=True, exist_ok=True)
    if args.jobs == 1:
        rows = (run_layer(kind, args) for kind in args.layers)
    else:             # layers in separate processes, --jobs at a time (spawned: a fresh torch each)
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        pool = ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"))
        rows = (f.result() for f in as_completed([pool.submit(run_layer, kind, args) for kind in args.layers]))
    for row in rows:
        print(f"{row['kind']}: {row['wall_s']:.0f} s", flush=True)
        res["layers"] = sorted(res["layers"] + [row], key=lambda r: args.layers.index(r["kind"]))
        res["complete"] = len(res["layers"]) == len(args.layers)
        res["loadavg_end"] = list(os.getloadavg())
        res["wall_s"] = round(time.perf_counter() - start, 1)
        # written after every layer: a run cut short keeps what it measured
        (args.out / "recurrent_layers.json").write_text(json.dumps(res, indent=1) + "\n")
        (args.out / "recurrent_layers.md").write_text(markdown(res))
    print(markdown(res))
    return res


if __name__ == "__main__":
    main()
