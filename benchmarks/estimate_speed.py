"""How fast is `seqdsl compile --estimate` against measuring?

Times, on this machine:

1. `seqdsl compile SPEC --estimate --json --seq <1,000 lengths up to 10**7>`
   as a cold process (interpreter start and imports included; best and
   median of 7);
2. the same 1,000-length sweep through `seqdsl.estimate` once the spec is
   loaded and its closed forms derived (best of 20);
3. one `FlopCounterMode` measurement (forward + backward, with the CPU
   flash-attention formulas of tests/measure.py) of the equivalent PyTorch
   module at T = 1,024, batch 1 (the compiled module from seqdsl.backend when
   it exists, else the hand-written reference built from tests/cost_refs.py);

and the ratios. Usage:

    python benchmarks/estimate_speed.py [SPEC]     (default: specs/zoo/gpt2_small.seq)

writes benchmarks/results/estimate_speed.md.
"""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

GPT2 = ROOT / "specs" / "zoo" / "gpt2_small.seq"     # the default spec: GPT-2 small, exactly


def lengths(n: int = 1000, hi: int = 10 ** 7) -> list[int]:
    """n distinct lengths from 64 to hi, spaced geometrically."""
    out = sorted({round(64 * (hi / 64) ** (i / (n - 1))) for i in range(n)})
    k = 65
    while len(out) < n:          # rounding merges a few at the low end: fill with small ones
        if k not in out:
            out.append(k)
        k += 1
    return sorted(out)


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def cold_process(spec: str, seq: str) -> tuple[float, int]:
    exe = Path(sys.executable).parent / "seqdsl"
    # --no-cache: a cold process derives the closed forms (a repeated one reads
    # them from the cache: benchmarks/estimate_cache.py)
    cmd = [str(exe), "compile", spec, "--estimate", "--json", "--seq", seq, "--no-cache"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    import json
    points = len(json.loads(out.stdout)["points"])
    times = []
    for _ in range(7):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    return (min(times), statistics.median(times)), points


FLOOR_CODE = ("import gc, sympy, pydantic, lark\n"
              "class M(pydantic.BaseModel):\n    x: int\n"
              "sympy.Symbol('T') + 1\n"          # the first Add imports sympy.tensor
              "gc.freeze()\n")                   # exits like seqdsl.cli.entry


def import_floor() -> tuple[float, float]:
    """(best, median) of 7 for a process that only starts Python and imports
    what every estimate needs (sympy, pydantic, lark): the part of the cold
    process that is not seqdsl's own work."""
    times = []
    for _ in range(7):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", FLOOR_CODE], check=True)
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


TARGET_OVER_FLOOR = 0.35   # issue 10: a cold check or estimate within 0.35 s of the import floor


def fresh_bytecode() -> None:
    """Compile seqdsl's modules once, as an install does: with
    PYTHONDONTWRITEBYTECODE set (or pycs older than the sources) every timed
    process would compile them again (~0.1 s), which no installed copy does."""
    import compileall
    compileall.compile_dir(str(ROOT / "seqdsl"), quiet=1)


def over_floor_table(specs: list[Path], rounds: int = 11) -> str:
    """Every bundled spec's cold `seqdsl check` and `seqdsl compile --estimate`
    (default lengths, --no-cache: the closed forms derived), timed in turn with
    the import floor in every round, so that each sees the same load: best and
    median, and each over the floor's best and median."""
    exe = str(Path(sys.executable).parent / "seqdsl")
    cmds = {"floor": [sys.executable, "-c", FLOOR_CODE]}
    for path in specs:
        cmds[(path.stem, "check")] = [exe, "check", str(path)]
        cmds[(path.stem, "estimate")] = [exe, "compile", str(path), "--estimate", "--no-cache"]
    for c in cmds.values():                       # warm the file cache once
        subprocess.run(c, capture_output=True, check=True)
    times = {k: [] for k in cmds}
    for _ in range(rounds):
        for k, c in cmds.items():
            t = time.perf_counter()
            subprocess.run(c, capture_output=True, check=True)
            times[k].append(time.perf_counter() - t)
    fb, fm = min(times["floor"]), statistics.median(times["floor"])
    rows, worst = [], 0.0
    for path in specs:
        cells = []
        for what in ("check", "estimate"):
            ts = times[(path.stem, what)]
            b, m = min(ts), statistics.median(ts)
            worst = max(worst, b - fb)
            cells.append(f"{b * 1000:.0f} ({m * 1000:.0f}) | **{(b - fb) * 1000:+.0f}** ({(m - fm) * 1000:+.0f})")
        rows.append(f"| {path.stem} | " + " | ".join(cells) + " |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return ("\n## Cold `seqdsl check` and `--estimate` of every bundled spec, against the import floor\n\n"
            f"A process that only imports sympy, pydantic and lark (the floor) took {fb * 1000:.0f} ms best, "
            f"{fm * 1000:.0f} ms median; each command in turn with it, {rounds} rounds (1-minute load "
            f"{load:.2f} at the end). Times in ms, best (median); over the floor: best minus the floor's best "
            f"(median minus its median). Target: within {TARGET_OVER_FLOOR * 1000:.0f} ms; the largest "
            f"best is {worst * 1000:.0f} ms over.\n\n"
            "| spec | check | over floor | estimate | over floor |\n|---|---:|---:|---:|---:|\n"
            + "\n".join(rows) + "\n")


def imports_of_cold_process(spec: str) -> str:
    code = ("import sys, io, contextlib; from seqdsl.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    main(['compile', {spec!r}, '--estimate', '--json', '--seq', '64'])\n"
            "heavy = [m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules]\n"
            "print(','.join(heavy) or 'none')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def in_process(spec: str, seq: list[int]) -> tuple[float, float]:
    import seqdsl
    model = seqdsl.load(spec).model()
    t = time.perf_counter()
    seqdsl.estimate(model, seq=[64])          # derive and compile the closed forms once
    derive = time.perf_counter() - t
    return best(lambda: seqdsl.estimate(model, seq=seq), 20), derive


def torch_module(spec: str):
    """The equivalent module: the compiler's own when it exists, else the reference."""
    import torch
    try:
        from seqdsl import backend  # noqa: F401
        import seqdsl
        return seqdsl.build(spec), "seqdsl.build (the compiled module)"
    except (ImportError, AttributeError):
        pass
    from torch import nn

    from cost_refs import Attention
    from test_cost_layers import Mlp

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.attn = nn.LayerNorm(768), Attention(768, 12, causal=True)
            self.ln2, self.mlp = nn.LayerNorm(768), Mlp(768, 3072)

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(50257, 768), nn.Parameter(torch.zeros(1024, 768))
            self.blocks = nn.ModuleList(Block() for _ in range(12))
            self.ln = nn.LayerNorm(768)

        def forward(self, tokens):
            x = self.wte(tokens) + self.wpe[: tokens.shape[1]]
            for b in self.blocks:
                x = b(x)
            return torch.nn.functional.linear(self.ln(x), self.wte.weight)

    return GPT(), "hand-written reference (tests/cost_refs.py), seqdsl.backend not present"


def flop_counter_measurement(spec: str, t: int = 1024):
    """(seconds in all, seconds counting only, FLOPs, which module): importing
    torch and building the module are part of what a measuring tool costs."""
    t0 = time.perf_counter()
    import torch

    import measure
    module, what = torch_module(spec)
    tokens = torch.randint(0, 50257, (1, t))
    t1 = time.perf_counter()
    with measure.counter() as c:
        module(tokens).sum().backward()
    t2 = time.perf_counter()
    return t2 - t0, t2 - t1, c.get_total_flops(), what


def bundled_table(seq: list[int]) -> str:
    """Cold process and in-process sweep for every bundled spec."""
    specs = sorted((ROOT / "specs").glob("*.seq")) or sorted(
        (ROOT.parent / "shared" / "conformance" / "specs").glob("*.seq"))
    if not specs:
        return ""
    import seqdsl
    seq_arg = ",".join(map(str, seq))
    rows = []
    for path in specs:
        cold, _ = cold_process(str(path), seq_arg)
        warm, derive = in_process(str(path), seq)
        model = seqdsl.load(path).model()
        rows.append(f"| {path.stem} | {model.params:,} | {cold[0] * 1000:.0f} ms ({cold[1] * 1000:.0f}) "
                    f"| {derive * 1000:.0f} ms "
                    f"| {warm * 1000:.1f} ms |")
    where = specs[0].parent.relative_to(ROOT.parent) if ROOT.parent in specs[0].parents else specs[0].parent
    return over_floor_table(specs) + ("\n## Every bundled spec (" + str(where) + "), the same 1,000 lengths\n\n"
            "| spec | parameters | cold process, best (median) of 7 | derive (once) | sweep after load |\n|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n")


def main() -> None:
    fresh_bytecode()
    spec_arg = sys.argv[1] if len(sys.argv) > 1 else None
    spec = spec_arg or str(GPT2)
    seq = lengths()
    seq_arg = ",".join(map(str, seq))
    cold, points = cold_process(spec, seq_arg)
    floor = import_floor()
    heavy = imports_of_cold_process(spec)
    warm, derive = in_process(spec, seq)
    import seqdsl
    estimate = seqdsl.estimate(spec, seq=[1024], batch=1)
    est = estimate.points[0]
    measured_s, counting_s, measured_flops, what = flop_counter_measurement(spec)
    extra = bundled_table(seq)
    rows = [
    f"| `seqdsl compile --estimate --json`, {points:,} lengths (64 .. 10^7), cold process, best of 7 (median) | {cold[0] * 1000:.0f} ms ({cold[1] * 1000:.0f} ms) | target < 1 s |",
    f"| `seqdsl.estimate(model, seq=<same {points:,}>)` after load (closed forms cached) | {warm * 1000:.1f} ms | target < 50 ms |",
    f"| deriving and compiling the closed forms (once per model and dtype) | {derive * 1000:.0f} ms | |",
    f"| one FlopCounterMode measurement, forward + backward, T = 1,024 (import torch, build, count) | {measured_s:.1f} s | {what} |",
    f"| ... of which the counted forward + backward alone | {counting_s:.1f} s | |",
    ]
    ratio_cold = measured_s / cold[0]
    ratio_warm = measured_s / warm
    per_point = measured_s / (warm / points)
    agree = abs(est.flops_train - measured_flops) / measured_flops
    text = f"""# Estimate speed

Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}.
Spec: `{Path(spec).resolve().relative_to(ROOT) if Path(spec).resolve().is_relative_to(ROOT) else spec}` ({estimate.params:,} parameters).
Command: `python benchmarks/estimate_speed.py`.

| what | time | note |
|---|---|---|
{chr(10).join(rows)}

- One FlopCounterMode measurement at a single length takes **{ratio_cold:.0f}x** as long
  as the cold-process estimate of all {points:,} lengths, and **{ratio_warm:,.0f}x** the
  in-process sweep ({per_point:,.0f}x per length).
- Of the cold process, starting Python and importing sympy, pydantic and lark
  alone take {floor[0] * 1000:.0f} ms ({floor[1] * 1000:.0f} ms median): seqdsl's own work is the rest.
- Heavy modules imported by the estimating process: {heavy}.
- At T = 1,024 the estimate's training FLOPs are {est.flops_train:,}; FlopCounterMode
  counted {measured_flops:,} (difference {100 * agree:.3f}%).
{extra}"""
    out = ROOT / "benchmarks" / "results" / "estimate_speed.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
