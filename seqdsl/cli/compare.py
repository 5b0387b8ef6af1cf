"""`seqdsl compare A.seq B.seq ...`: the side-by-side table, crossovers, JSON
and plot of a `seqdsl.cost.compare.Comparison` (matplotlib only for --plot)."""
from __future__ import annotations

import io
import os
import sys
from pathlib import Path

from ..atomic import check_output, write_atomic
from ..check.elaborate import spec_files, split_model_path
from ..cost.compare import (DEFAULT_SEQ, METRICS, Comparison, Crossover, _metric_name, compare, seq_text)
from ..cost.lengths import parse_int, parse_seq
from ..cost.parallel import check_recompute, parse_parallel
from ..errors import UsageError
from ..units import human_bytes, human_flops, human_seconds
from .format import grid


# ------------------------------------------------------------------ text
def _unit(metric: str):
    if metric.startswith("flops"):
        return human_flops
    if metric.startswith("latency"):
        return human_seconds
    if metric == "sequential_depth":
        return lambda v: f"{v:,}"
    return human_bytes


def _exact_texts(values: list) -> list[str]:
    """Values at full precision: ints with separators; floats (seconds) with
    the fewest digits (6 at least) that keep every two unequal values apart."""
    if all(isinstance(v, int) for v in values):
        return [f"{v:,}" for v in values]
    for digits in range(6, 18):
        text = [f"{v:.{digits}g} s" for v in values]
        if len(set(text)) == len(set(values)):
            return text
    return [f"{v!r} s" for v in values]


def table(c: Comparison) -> str:
    """Rows = lengths, columns = specs, `*` on the lowest cost of each row."""
    unit = _unit(c.metric)
    head = [" = ".join(c.swept)] + c.specs
    rows = []
    for p in c.points:
        defined = [v for v in p.values.values() if v is not None]
        best = min(defined) if len(defined) > 1 else None
        rows.append([f"{p.seq[c.swept[0]]:,}"] + [
            "—" if v is None else unit(v) + (" *" if v == best else "  ") for v in p.values.values()])
    title = f"{c.metric} at batch {c.batch}, {c.dtype}"
    if c.metric == "train_memory":
        title += f", optimizer {c.optimizer}"
    if c.hw:
        title += f", hardware {c.hw}"
    if c.parallel:
        title += f", per device (the most loaded) of {c.parallel}, recompute {c.recompute}"
    if c.fixed:
        title += ", " + ", ".join(f"{d} = {v:,}" for d, v in c.fixed.items())
    title += "  (* lowest)"
    return title + "\n" + "\n".join(line.rstrip() for line in grid(head, rows).splitlines())


def render(c: Comparison) -> str:
    """The human report: the table, the crossovers, the notes."""
    lines = [table(c), ""]
    first, last = c.points[0].seq[c.swept[0]], c.points[-1].seq[c.swept[0]]
    if not c.crossovers:
        lines.append(f"Crossovers: none for {' = '.join(c.swept)} in [{first:,}, {last:,}]")
    else:
        lines.append("Crossovers (the first spec costs more from that length on):")
        for x in c.crossovers:
            hi, lo = x.between
            n = x.seq[c.swept[0]]
            below = seq_text({**x.seq, **{d: n - 1 for d in c.swept}})
            bh, bl, ah, al = _exact_texts([x.before[hi], x.before[lo], x.at[hi], x.at[lo]])
            lines.append(f"  {hi} overtakes {lo} at {seq_text(x.seq)} ({c.metric}: "
                         f"{bh} vs {bl} at {below}; {ah} vs {al} at {seq_text(x.seq)})")
    lines.extend(f"note: {n}" for n in c.notes)
    return "\n".join(lines)


# ------------------------------------------------------------------ plot
PLOT_FORMATS = (".png", ".svg", ".pdf")     # --plot FILE: the format follows the suffix


def plot(c: Comparison, path) -> None:
    """Cost against length on log-log axes, one line per spec, a dashed
    vertical line at each crossover. Written atomically: a failure leaves no file."""
    try:
        import matplotlib   # lazy: matplotlib, only for --plot
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'seqdsl[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt   # lazy: matplotlib, only for --plot
    xs = [p.seq[c.swept[0]] for p in c.points]
    fig, ax = plt.subplots(figsize=(8, 5))
    try:
        for spec in c.specs:
            pts = [(x, p.values[spec]) for x, p in zip(xs, c.points)
                   if p.values[spec] is not None and p.values[spec] > 0]
            if pts:
                ax.plot([x for x, _ in pts], [float(v) for _, v in pts], marker="o", markersize=3, label=spec)
        dim = " = ".join(c.swept)
        for group in _clusters(c):
            first, last = group[0].seq[c.swept[0]], group[-1].seq[c.swept[0]]
            a, b = group[0].between
            label = (f"{a} > {b}\n{dim} = {first:,}" if len(group) == 1 else
                     f"{a} ⇄ {b}\n{dim} = {first:,}–{last:,} ({len(group)} flips)")
            ax.axvline(first, color="grey", linestyle="--", linewidth=0.8)
            ax.annotate(label, (first, 1), xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                        ha="right", va="top", color="dimgrey")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(" = ".join(c.swept) + (" (" + ", ".join(f"{d} = {v:,}" for d, v in c.fixed.items()) + ")"
                                            if c.fixed else ""))
        unit = "FLOPs" if c.metric.startswith("flops") else "seconds" if c.metric.startswith("latency") else "bytes"
        ax.set_ylabel(f"{c.metric} ({unit})")
        ax.set_title(f"{c.metric}, batch {c.batch}, {c.dtype}")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend()
        buf = io.BytesIO()
        fmt = Path(path).suffix.lower().lstrip(".")
        fig.savefig(buf, format=fmt if "." + fmt in PLOT_FORMATS else "png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    write_atomic(path, buf.getvalue())


def _clusters(c: Comparison) -> list[list[Crossover]]:
    """Crossovers of one pair within 1% of each other (ceil steps flipping the
    order back and forth next to one crossing) drawn as one marked line."""
    groups: list[list[Crossover]] = []
    for x in sorted(c.crossovers, key=lambda x: (sorted(x.between), x.seq[c.swept[0]])):
        g = groups[-1] if groups else None
        if g and set(g[-1].between) == set(x.between) and x.seq[c.swept[0]] <= 1.01 * g[-1].seq[c.swept[0]]:
            g.append(x)
        else:
            groups.append([x])
    return groups


# ------------------------------------------------------------------ CLI
def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="compare specs on one cost; exact crossover lengths")
    p.add_argument("specs", nargs="+", metavar="SPEC",
                   help="FILE.seq (all its models) or FILE.seq:MODEL; two models at least")
    p.add_argument("--metric", default="flops_train",
                   help=f"{' | '.join(METRICS)} | latency (= latency_train); default flops_train")
    p.add_argument("--seq", help=f"lengths for every sequence dim: 64,1024 | 64..65536 (powers of two; "
                                 f"default {DEFAULT_SEQ}) | T=64..65536,S=512 (dims all specs share)")
    p.add_argument("--batch", default="1", help="batch size (default 1)")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")
    p.add_argument("--optimizer", default="adam", help="adam | sgd | none (train_memory)")
    p.add_argument("--hw", help="hardware profile for the latency metrics: h100 | h200 | a100 | cpu | FILE")
    p.add_argument("--parallel", help="train_memory of the most loaded device under a layout: "
                                      "dp=8,tp=2,pp=2,cp=1,zero=1,sp,microbatches=8 (--batch: one micro-batch)")
    p.add_argument("--recompute", default="none", help="none | selective | full (with --parallel)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="FILE.png", help="draw cost against length to FILE.png, .svg or .pdf (log-log; needs matplotlib)")


def parse_compare_seq(text: str | None):
    """--seq text -> compare()'s `seq`: None, a list of ints, or {dim: int | [ints]}."""
    if text is None:
        return None
    if "=" not in text:
        return parse_seq(text, ())
    out: dict[str, int | list[int]] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if not name.isidentifier() or not value.strip():
            raise UsageError(f"--seq '{part}' is not DIM=LENGTH or DIM=LO..HI")
        if name in out:
            raise UsageError(f"--seq gives dim '{name}' twice")
        out[name] = parse_seq(value, ()) if ".." in value else parse_int(value, f"--seq {name}")
    return out


def run(args) -> int:
    """Entry point of `seqdsl compare`."""
    metric = _metric_name(args.metric)      # flag errors before any file is read
    batch = parse_int(args.batch, "--batch")
    seq = parse_compare_seq(args.seq)
    layout = parse_parallel(args.parallel) if args.parallel is not None else None
    check_recompute(args.recompute)
    if args.plot:
        specs = [split_model_path(s)[0] for s in args.specs]
        hw = [args.hw] if args.hw and os.path.isfile(args.hw) else []
        check_output(args.plot, specs + hw, flag="--plot", suffixes=PLOT_FORMATS)
        check_output(args.plot, [f for s in specs for f in spec_files(s)] + hw, flag="--plot")
    c = compare(args.specs, metric=metric, seq=seq, batch=batch, dtype=args.dtype,
                optimizer=args.optimizer, hw=args.hw, parallel=layout, recompute=args.recompute)
    if args.plot:
        plot(c, args.plot)
    print(c.to_json() if args.json else render(c))
    if args.plot:   # on stderr, so that --json output stays one JSON document
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
