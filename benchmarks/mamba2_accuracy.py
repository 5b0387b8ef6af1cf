"""How far the `mamba2` layer and its reference (transformers' Mamba2Mixer,
torch path) are from the exact function: both in float32 against the
reference run in float64 on the same weights, at T = 1,000 and 4,096 (chunks
of 256), with the time steps at their initial range and pushed large (dt_bias
raised: dt·A down to about -200 a step, decays far past exp's range), for the
outputs and for the gradients of A_log, dt_bias, D and the input.

    PYTHONPATH=. .venv/bin/python benchmarks/mamba2_accuracy.py [--out DIR]

Writes DIR/mamba2_accuracy.md (DIR: benchmarks/results). The layer computes
the segment sums within a chunk as differences of cumulative sums (corrected
by the fp32 cumsum's rounding error), where the reference takes a masked
cumsum per segment: this is the check that it loses no accuracy.
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

import seqdsl

ROOT = Path(__file__).resolve().parent.parent
D, STATE, HEAD_DIM, CHUNK = 64, 16, 16, 256            # 8 heads of 16, one group
GRADS = ("A_log", "dt_bias", "D")


def layers():
    from transformers import Mamba2Config
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer
    cfg = Mamba2Config(hidden_size=D, state_size=STATE, expand=2, head_dim=HEAD_DIM, n_groups=1,
                       num_heads=2 * D // HEAD_DIM, conv_kernel=4, chunk_size=CHUNK, num_hidden_layers=1)
    torch.manual_seed(0)
    ref = Mamba2Mixer(cfg, 0)
    text = (f"model m {{\n    input x: float[B, T, {D}]\n"
            f"    y = x -> mamba2(state={STATE}, head_dim={HEAD_DIM}, chunk={CHUNK})\n    output y\n}}\n")
    return ref, seqdsl.build(seqdsl.parse(text).model(), seed=0)


def load(ours, ref):
    ours.load_state_dict({"y.mamba2." + k: v for k, v in ref.state_dict().items()}, strict=True)


def run(module, x):
    """Output and gradients (input, A_log, dt_bias, D) of sum(y · w) for a fixed w."""
    x = x.clone().requires_grad_(True)
    y = module(x)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(y.dtype)
    (y * w).sum().backward()
    params = dict(module.named_parameters())
    grads = [x.grad] + [next(p for n, p in params.items() if n.endswith(name)).grad for name in GRADS]
    module.zero_grad(set_to_none=True)
    return y.detach().double(), [g.double() for g in grads]


def relative(a, b) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    ref, ours = layers()
    rows = []
    for dt_shift in (0.0, 25.0):
        with torch.no_grad():
            ref.dt_bias += dt_shift
        for t in (1000, 4096):
            x = torch.randn(1, t, D, generator=torch.Generator().manual_seed(t))
            load(ours, ref)
            got = {"seqdsl": run(ours, x), "reference": run(ref, x)}
            exact = run(ref.double(), x.double())      # float32 -> float64 -> float32: the same weights
            ref.float()
            for name, (y, grads) in got.items():
                cells = [relative(y, exact[0])] + [relative(g, e) for g, e in zip(grads, exact[1])]
                rows.append(f"| {t:,} | {'initial' if not dt_shift else f'dt_bias + {dt_shift:g}'} | {name} | "
                            + " | ".join(f"{c:.2e}" for c in cells) + " |")
                print(rows[-1], flush=True)
        with torch.no_grad():
            ref.dt_bias -= dt_shift
    lines = ["# mamba2: accuracy against the float64 reference", "",
             f"Machine: {platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}.",
             "Command: `PYTHONPATH=. .venv/bin/python benchmarks/mamba2_accuracy.py`.", "",
             f"d = {D}, state {STATE}, head_dim {HEAD_DIM} (8 heads, one group), chunk {CHUNK}, batch 1, float32; "
             "each cell the largest error over the tensor divided by the tensor's largest magnitude, both "
             "against transformers' Mamba2Mixer (torch path) run in float64 on the same weights. "
             "`dt_bias + 25`: time steps of about 25, dt·A down to about -200 a step.", "",
             "| T | time steps | implementation | y | dL/dx | dL/dA_log | dL/ddt_bias | dL/dD |",
             "|---|---|---|---|---|---|---|---|", *rows, ""]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mamba2_accuracy.md").write_text("\n".join(lines))
    print(f"wrote {out / 'mamba2_accuracy.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
