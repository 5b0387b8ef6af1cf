"""Mamba-1's eager selective scan: the step loop the layer runs eagerly
(mamba_torch.mamba_loop_scan) against the chunked doubling scan it ran before
(mamba_chunk_scan, still its torch.compile form), side by side in one run.

    PYTHONPATH=. .venv/bin/python benchmarks/mamba_scan.py [--lengths 1024,4096] [--reps 3]
        [--threads 1] [--width 256] [--out benchmarks/results]

1. The whole `mamba` layer's training step (forward + backward, d = width,
   B = 1, eager): with the loop (the lowering), with the chunked scan put in
   its place (the lowering before), and softmax attention of the same width
   (`attention(h, causal=true)`, SDPA), timed in turn so each sees the same load.
2. The scan alone (B = 1, di = 512, N = 16, fp32, forward + backward): the
   chunked scan, the loop with the read-out h_t·C_t in it (the lowering), the
   loop with the read-out one bmm over the stacked states after it; and the
   bytes each keeps for backward (saved_tensors_hooks, unique storages).

Writes OUT/mamba_scan.md and .json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch   # noqa: E402

import seqdsl   # noqa: E402
from interleaved import machine_line   # noqa: E402
from seqdsl.layers import mamba_torch   # noqa: E402


def layer_model(call: str, d: int):
    src = f"model m {{\n    input x: float[B, T, {d}]\n    y = x -> {call}\n    output y\n}}\n"
    return seqdsl.build(seqdsl.parse(src).model(), seed=0).train()


def chunked_in_place_of_loop(model):
    """The model's forward with mamba_chunk_scan where the eager forward calls
    mamba_loop_scan (the lowering before the loop)."""
    def run(x):
        loop = mamba_torch.mamba_loop_scan
        mamba_torch.mamba_loop_scan = mamba_torch.mamba_chunk_scan
        try:
            return model(x)
        finally:
            mamba_torch.mamba_loop_scan = loop
    return run


def loop_readout_after(da, dbx, c, h0=None):
    """The loop with the read-out after it: one bmm over the stacked states."""
    h = torch.zeros_like(dbx[:, 0]) if h0 is None else h0
    hs = []
    for a_t, b_t in zip(da.unbind(1), dbx.unbind(1)):
        h = torch.addcmul(b_t, a_t, h)
        hs.append(h)
    return (torch.stack(hs, 1) @ c[..., None])[..., 0], h


def time_in_turn(runs: dict, reps: int) -> dict:
    """name -> `reps` wall times (s) of a forward + backward, after one warm-up each."""
    def step(fn):
        outs = fn()
        sum(o.float().square().mean() for o in outs).backward()
    for fn in runs.values():
        step(fn)
    times = {k: [] for k in runs}
    for _ in range(reps):
        for k, fn in runs.items():
            t0 = time.perf_counter()
            step(fn)
            times[k].append(time.perf_counter() - t0)
    return times


def saved_bytes(fn) -> int:
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def summary(ts) -> dict:
    return {"median_ms": round(1e3 * statistics.median(ts), 1), "min_ms": round(1e3 * min(ts), 1)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", default="1024,4096")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    lengths = [int(v) for v in a.lengths.split(",")]
    d = a.width
    mamba, attn = layer_model("mamba", d), layer_model(f"attention({d // 64}, causal=true)", d)
    res = {"command": "benchmarks/mamba_scan.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "machine": machine_line(a.threads), "width": d, "reps": a.reps, "layer": {}, "scan": {}}
    for t in lengths:
        x = torch.randn(1, t, d, generator=torch.Generator().manual_seed(t))
        chunked = chunked_in_place_of_loop(mamba)
        with torch.no_grad():
            diff = float((mamba(x) - chunked(x)).abs().max())
        times = time_in_turn({"loop": lambda: (mamba(x),), "chunked": lambda: (chunked(x),),
                              "attention": lambda: (attn(x),)}, a.reps)
        res["layer"][t] = {k: summary(v) for k, v in times.items()} | {"max_abs_diff": diff}
        print(t, res["layer"][t], flush=True)

        g = torch.Generator().manual_seed(0)
        da = (torch.rand(1, t, 512, 16, generator=g) * 0.5 + 0.5).requires_grad_()
        dbx = torch.randn(1, t, 512, 16, generator=g, requires_grad=True)
        c = torch.randn(1, t, 16, generator=g, requires_grad=True)
        forms = {"chunked": mamba_torch.mamba_chunk_scan, "loop, read-out in it": mamba_torch.mamba_loop_scan,
                 "loop, read-out after": loop_readout_after}
        times = time_in_turn({k: (lambda f=f: f(da, dbx, c)) for k, f in forms.items()}, a.reps)
        full = 512 * 16 * 4 * t
        res["scan"][t] = {k: summary(v) | {"saved_bytes": saved_bytes(lambda f=forms[k]: f(da, dbx, c))}
                          for k, v in times.items()}
        for v in res["scan"][t].values():
            v["saved_x_BTdiN"] = round(v["saved_bytes"] / full, 2)
        print(t, res["scan"][t], flush=True)

    md = ["# Mamba-1's eager scan: step loop against the chunked doubling scan", "",
          f"`{res['command']}`", "", res["machine"], "",
          f"## The whole layer's training step (d = {d}, B = 1, eager)", "",
          "| T | loop (ms) | chunked (ms) | chunked / loop | attention (ms) | loop / attention "
          "| chunked / attention | max abs diff |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t, r in res["layer"].items():
        lo, ch, at = (r[k]["median_ms"] for k in ("loop", "chunked", "attention"))
        md.append(f"| {t:,} | {lo:,.1f} | {ch:,.1f} | {ch / lo:.1f}x | {at:,.1f} | {lo / at:.1f}x | {ch / at:.1f}x "
                  f"| {r['max_abs_diff']:.1e} |")
    md += ["", "## The scan alone (B = 1, di = 512, N = 16, fp32, forward + backward)", "",
           "| T | form | median (ms) | min (ms) | saved (x B·T·di·N·4 bytes) |", "|---:|---|---:|---:|---:|"]
    for t, r in res["scan"].items():
        md += [f"| {t:,} | {k} | {v['median_ms']:,.1f} | {v['min_ms']:,.1f} | {v['saved_x_BTdiN']} |"
               for k, v in r.items()]
    md += ["", "Medians of the timed repetitions (each variant in turn, after one warm-up)."]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mamba_scan.md").write_text("\n".join(md) + "\n")
    (out / "mamba_scan.json").write_text(json.dumps(res, indent=1) + "\n")
    print("\n".join(md))
    return res


if __name__ == "__main__":
    main()
