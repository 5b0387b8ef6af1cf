"""What the example scripts share: the command line, atomic writes,
one-line errors, and picking a model under a memory budget.

Kept tiny on purpose: each example reads top to bottom on its own; this file
only holds the plumbing that would otherwise be copied into each.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "output"
GIB = 1024 ** 3


def parser(description: str) -> argparse.ArgumentParser:
    """`--smoke` and `--out DIR`, the flags every example takes; a bad flag
    exits 2 with one line, like the seqdsl CLI (its parser class)."""
    from seqdsl.cli.app import _Parser
    p = _Parser(description=description)
    p.add_argument("--smoke", action="store_true",
                   help="a tiny grid, no plot, no torch measurement: a few seconds (what CI runs)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"directory for the outputs (default {DEFAULT_OUT.relative_to(HERE.parent)})")
    return p


def positive(kind):
    """argparse type: a positive int or float (a bad value exits 2 with one line)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def write(path: Path, data: str | bytes) -> None:
    """Whole file or nothing (seqdsl.atomic.write_atomic)."""
    from seqdsl.atomic import write_atomic
    write_atomic(str(path), data)


def save_figure(fig, path: Path, **savefig_kwargs) -> None:
    """Render a matplotlib figure to PNG in memory, close it, then write the
    file whole (`write`)."""
    import io
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", **savefig_kwargs)
    finally:
        plt.close(fig)
    write(path, buf.getvalue())


def out_dir(path: Path) -> Path:
    from seqdsl.errors import UsageError
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --out {path}: {exc.strerror}") from None
    return path


def run(main) -> int:
    """Run main(); a usage error prints one line and exits 2, a refused spec 1."""
    from seqdsl.errors import UsageError
    from seqdsl.errors import SpecError
    try:
        main()
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def budget_verdict(r: dict, budget_bytes: int, min_params: int) -> str:
    """Why a candidate is out (the first rule it breaks), or "fits": at least
    `min_params` parameters (enough capacity), training memory within budget."""
    if r["params"] < min_params:
        return "too small"
    if r["training_bytes"] > budget_bytes:
        return "over the memory budget"
    return "fits"


def pick_under_budget(rows: list[dict], budget_bytes: int, min_params: int) -> dict | None:
    """The stated selection rule of the pipeline examples: among the candidates
    that fit (`budget_verdict`), the one with the fewest training FLOPs; ties
    go to the smaller training memory, then the name. None if nothing fits."""
    fits = [r for r in rows if budget_verdict(r, budget_bytes, min_params) == "fits"]
    return min(fits, key=lambda r: (r["flops_train"], r["training_bytes"], r["name"])) if fits else None


def evaluate(builders: list, seq: int, batch: int, extra=None) -> list[dict]:
    """Check each candidate (the same checks and diagnostics as a .seq file)
    and estimate it at one length: one row of exact figures per candidate.
    extra(graph) may add fields (the speech example adds its CTC length)."""
    import seqdsl
    rows = []
    for m in builders:
        graph = m.check()
        p = seqdsl.estimate(graph, seq=seq, batch=batch).points[0]
        rows.append({"name": m.name, "params": graph.params, "flops_train": p.flops_train,
                     "training_bytes": p.training_bytes, "activation_bytes": p.activation_bytes,
                     "inference_peak_bytes": p.inference_peak_bytes, "sequential_depth": p.sequential_depth,
                     **(extra(graph) if extra else {}), "seq": m.to_seq()})
    return rows


def ranking(rows: list[dict], verdicts: dict, winner: dict | None) -> str:
    """Every candidate, cheapest to train first, with its verdict; `*` marks the winner."""
    from seqdsl.units import human_bytes, human_flops
    lines = [f"{'':2}{'candidate':28} {'params':>8} {'train FLOPs':>11} {'train memory':>12} {'depth':>6}  verdict"]
    for r in sorted(rows, key=lambda r: (r["flops_train"], r["training_bytes"], r["name"])):
        lines.append(f"{'* ' if r is winner else '  '}{r['name']:28} {r['params'] / 1e6:7.2f}M "
                     f"{human_flops(r['flops_train']):>11} {human_bytes(r['training_bytes']):>12} "
                     f"{r['sequential_depth']:>6}  {verdicts[r['name']]}")
    return "\n".join(lines)


def plot(rows: list[dict], verdicts: dict, budget: int, winner: dict | None, title: str, path: Path) -> None:
    """Training memory against training FLOPs, one dot per candidate, coloured by verdict."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    fig, ax = plt.subplots(figsize=(8, 5.5))
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(verdicts[r["name"]].split(" (")[0], []).append(r)
    colours = {"fits": "tab:green", "over the memory budget": "tab:red", "too small": "tab:grey"}
    for label, rs in sorted(groups.items()):
        if rs:
            ax.scatter([r["flops_train"] for r in rs], [r["training_bytes"] / GIB for r in rs],
                       c=colours.get(label, "tab:purple"), s=[12 + r["params"] / 2e5 for r in rs], alpha=0.7,
                       label=label)
    ax.axhline(budget / GIB, color="tab:red", linestyle="--", linewidth=1,
               label=f"budget {budget / GIB:g} GiB")
    if winner is not None:
        ax.scatter([winner["flops_train"]], [winner["training_bytes"] / GIB], marker="*", s=300,
                   c="gold", edgecolors="black", zorder=5, label=f"winner: {winner['name']}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    gib = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")    # 0.5, 1, 2 rather than 5 x 10^-1
    ax.yaxis.set_major_formatter(gib)
    ax.yaxis.set_minor_formatter(gib)
    ax.set_xlabel("training FLOPs per step")
    ax.set_ylabel("training memory (GiB)")
    ax.set_title(title + "\n(dot size: parameters)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=110, bbox_inches="tight")


def report(out: Path, stem: str, rows: list[dict], verdicts: dict, winner: dict | None, settings: dict,
           title: str, smoke: bool) -> None:
    """Print the ranking; write OUT/STEM.json, the winner's .seq (or remove a
    stale one when nothing fits) and, unless smoke, the plot."""
    print(title)
    print(ranking(rows, verdicts, winner))
    write(out / f"{stem}.json", json.dumps(
        {**settings, "verdicts": verdicts, "winner": None if winner is None else winner["name"],
         "candidates": rows}, indent=1))
    seq_path = out / f"{stem}_winner.seq"
    if winner is None:
        seq_path.unlink(missing_ok=True)
        print("no candidate fits: loosen the budget or the constraints")
    else:
        write(seq_path, winner["seq"])
        print(f"winner: {winner['name']} -> {seq_path}")
    if not smoke:
        plot(rows, verdicts, settings["budget_bytes"], winner, title, out / f"{stem}.png")
