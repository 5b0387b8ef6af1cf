"""What step(..., lengths=) costs: streaming one causal speech model over a
padded batch in chunks, without lengths= (the ended streams run on through
the padding), with lengths= (each chunk in which some stream ends runs as
pieces, the ended streams' state rows carried), and, for the same outputs,
each stream alone in a loop, side by side in one run.

    .venv/bin/python benchmarks/step_lengths_overhead.py [--reps 3] [--threads 1] [--chunk 16]

The spec: a causal strided convolution over 80 features (time / 2), 2
causal attention layers of d 128 with RoPE (a KV cache), a GRU of 128 and
a mamba2 layer; batch 8, T = 400, lengths spread evenly from 200 to 400.
Eval mode, no gradient. Calls are interleaved, so load on the machine
falls on all three alike. Writes benchmarks/results/step_lengths_overhead.md.
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
model streaming_encoder {
    let d = 128
    input feats: float[B, T, 80] lengths
    encoded = feats
        -> conv1d(d, 3, stride=2, padding=causal) -> silu
        -> repeat(2) {
            residual { layernorm -> attention(4, causal=true, pos=rope) }
            residual { layernorm -> mlp(4 * d, act=silu) }
        }
        -> gru(d)
        -> residual { layernorm -> mamba2(state=16, head_dim=32) }
    output encoded
}
"""
B, T = 8, 400


def stream(model, x, chunk, lengths=None):
    state = model.init_state(x.shape[0])
    for i in range(0, x.shape[1], chunk):
        c = x[:, i:i + chunk]
        if lengths is None:
            model.step(c, state=state)
        else:
            model.step(c, state=state, lengths=(lengths - i).clamp(0, c.shape[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=16)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = seqdsl.build(seqdsl.parse(SPEC).model(), seed=0).eval()
    x = torch.randn(B, T, 80, generator=torch.Generator().manual_seed(0))
    lengths = torch.linspace(T // 2, T, B).round().long()
    runs = {
        "padded batch, no lengths=": lambda: stream(model, x, a.chunk),
        "padded batch, lengths=": lambda: stream(model, x, a.chunk, lengths),
        "each stream alone (a loop of B)": lambda: [stream(model, x[b:b + 1, :int(lengths[b])], a.chunk)
                                                    for b in range(B)],
    }
    times = time_interleaved(runs, a.reps)
    rows = ratio_rows("whole stream", times, "padded batch, no lengths=", 0)
    ends = sorted({int(n) // a.chunk for n in lengths if int(n) % a.chunk})
    text = "\n".join([
        "# step(..., lengths=): what ending streams costs",
        "",
        f"`benchmarks/step_lengths_overhead.py --reps {a.reps} --threads {a.threads} --chunk {a.chunk}`: a "
        f"streaming encoder (causal strided conv, 2 causal attention layers of d 128 with RoPE, a GRU, "
        f"mamba2), batch {B}, T = {T} in chunks of {a.chunk}, lengths {lengths.tolist()} "
        f"({len(ends)} of the {-(-T // a.chunk)} chunks end a stream inside them and run as pieces); "
        "eval, no gradient; calls interleaved.",
        machine_line(a.threads),
        "",
        *rows,
        "",
    ])
    out = ROOT / "benchmarks" / "results" / "step_lengths_overhead.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
