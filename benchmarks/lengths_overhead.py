"""What per-sequence lengths cost: one speech encoder's eager forward on a
padded batch without lengths=, with lengths= (the masks, the packed
bidirectional LSTM), and, for the same outputs, each sequence run alone in
a loop (what one does without lengths), side by side in one run.

    .venv/bin/python benchmarks/lengths_overhead.py [--reps 5] [--threads 1]

The spec: a 2-D convolution subsampling (time / 4) of 80 log-mel features,
4 Conformer-style layers of d 144 (non-causal attention, a depthwise
convolution module), a bidirectional LSTM of 160 and a CTC head; batch 8,
T = 400, lengths spread evenly from 200 to 400. Eval mode, no gradient.
Calls are interleaved, so load on the machine falls on all three alike.
Writes benchmarks/results/lengths_overhead.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch   # noqa: E402

import seqdsl   # noqa: E402
from interleaved import machine_line, ratio_rows, time_interleaved   # noqa: E402

SPEC = """
model speech_encoder {
    let d = 144
    input feats: float[B, T, 80] lengths
    frames = feats
        -> unsqueeze
        -> conv2d(8, 3, stride=2, padding=1) -> relu
        -> conv2d(8, 3, stride=2, padding=1) -> relu
        -> flatten -> linear(d)
    encoded = frames
        -> repeat(4) {
            residual(scale=0.5) { layernorm -> mlp(4 * d, act=silu) }
            residual { layernorm -> attention(4) }
            residual { layernorm -> conv1d(d, 15, padding=7, groups=d) -> batchnorm -> silu -> linear(d) }
            residual(scale=0.5) { layernorm -> mlp(4 * d, act=silu) }
            layernorm
        }
    ctc = encoded -> lstm(160, bidirectional=true) -> linear(32) -> log_softmax
    output ctc
}
"""
B, T = 8, 400


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = seqdsl.build(seqdsl.parse(SPEC).model(), seed=0).eval()
    x = torch.randn(B, T, 80, generator=torch.Generator().manual_seed(0))
    lengths = torch.linspace(T // 2, T, B).round().long()
    runs = {
        "padded batch, no lengths=": lambda: model(x),
        "padded batch, lengths=": lambda: model(x, lengths=lengths),
        "each sequence alone (a loop of B)": lambda: [model(x[b:b + 1, :int(lengths[b])]) for b in range(B)],
    }
    times = time_interleaved(runs, a.reps)
    rows = ratio_rows("forward", times, "padded batch, no lengths=", 1)
    text = "\n".join([
        "# Per-sequence lengths: what the masks cost",
        "",
        f"`benchmarks/lengths_overhead.py --reps {a.reps} --threads {a.threads}`: a speech encoder "
        f"(2-D conv subsampling, 4 Conformer-style layers of d 144, a bidirectional LSTM of 160), "
        f"batch {B}, T = {T}, lengths {lengths.tolist()}; eval, no gradient; calls interleaved.",
        machine_line(a.threads),
        "",
        *rows,
        "",
    ])
    out = ROOT / "benchmarks" / "results" / "lengths_overhead.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
