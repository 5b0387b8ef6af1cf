"""Speech pipeline: generate a family of recognisers, pick one under a memory budget.

Each candidate is built with the builder API (seqdsl.builder), not string
templates: a strided conv1d frontend that subsamples the 10 ms log-mel frames
by 2, 4, 6 or 8, a pre-LayerNorm attention encoder (depth, width, full or
sliding-window attention with rotary positions), a bidirectional LSTM
decoder and a CTC head. Every candidate is checked exactly like a .seq file
and costed in closed form at the utterance length (seqdsl.estimate: no torch,
milliseconds a model once derived).

Selection rule (stated, not tuned): a candidate must be able to emit the
transcript — CTC needs at least one output frame per character, so its
output length (read off the checked graph's symbolic shape, e.g.
ceil(ceil(T/2)/2)) must reach --chars-per-second x the utterance length —
must have at least --min-params parameters, and its training memory
(weights + gradients + Adam + saved activations, float32, batch --batch)
must fit --budget-gib. Of those, the one with the fewest training FLOPs
per step wins.

    .venv/bin/python examples/speech_pipeline.py                       # 30 s utterances, 1 GiB
    .venv/bin/python examples/speech_pipeline.py --seconds 10 --budget-gib 0.5
    .venv/bin/python examples/speech_pipeline.py --smoke               # 4 candidates, no plot

Writes OUT/speech_pipeline.json (every candidate's figures), the winner as
OUT/speech_pipeline_winner.seq, and OUT/speech_pipeline.png (training memory
against training FLOPs, the budget line, the winner starred).
"""
from __future__ import annotations

import itertools
import math
import sys
import time

import _common

FRAMES_PER_SECOND = 100      # 10 ms hop
MELS = 80
CHARS = 32                   # CTC alphabet incl. blank
GRID = {                     # every combination is one candidate
    "subsample": (2, 4, 6, 8),
    "layers": (4, 8),
    "width": (144, 256),
    "window": (None, 64),    # None: full attention; W: each frame sees W frames either side
    "decoder": (256, 512),   # bidirectional LSTM hidden size
}
STRIDES = {2: (2,), 4: (2, 2), 6: (2, 3), 8: (2, 2, 2)}   # subsampling factor -> conv strides
SMOKE_GRID = {"subsample": (4, 8), "layers": (2,), "width": (256,), "window": (None, 64), "decoder": (512,)}


def recogniser(subsample: int, layers: int, width: int, window: int | None, decoder: int):
    """One candidate as a ModelBuilder: conv frontend -> attention encoder -> BiLSTM -> CTC."""
    import seqdsl.builder as sb
    name = f"asr_s{subsample}_l{layers}_d{width}_{'full' if window is None else f'w{window}'}_h{decoder}"
    m = sb.model(name)
    d = m.let("d", width)
    heads = m.let("heads", 4)
    feats = m.input("feats", "float", ["B", "T", MELS])           # log-mel frames
    frontend = []
    for stride in STRIDES[subsample]:                             # [B, T, C] -> [B, ceil(T / stride), d]
        frontend += [sb.conv1d(d, kernel=3, stride=stride), sb.gelu()]
    attention = sb.attention(heads, pos="rope", **({} if window is None else {"window": window}))
    encoded = m.bind("encoded", feats, *frontend, sb.layernorm(),
                     sb.repeat(layers,
                               sb.residual(sb.layernorm(), attention),
                               sb.residual(sb.layernorm(), sb.mlp(4 * d))))
    ctc = m.bind("ctc", encoded, sb.lstm(decoder, bidirectional=True), sb.linear(CHARS, as_="ctc_head"))
    m.output(ctc)
    return m


def candidates(grid: dict) -> list:
    keys = list(grid)
    return [recogniser(**dict(zip(keys, combo))) for combo in itertools.product(*grid.values())]


def ctc_frames(graph, frames: int) -> dict:
    """The CTC output length at this many input frames, read off the checked
    graph's symbolic output shape (e.g. ceil(ceil(T/2)/2))."""
    from seqdsl.graph.symbolic import evaluate
    return {"ctc_frames": int(evaluate(graph.outputs["ctc"].dims[1], {"T": frames}))}


def verdict(r: dict, chars: int, budget: int, min_params: int) -> str:
    """Why a candidate is out (the first rule it breaks), or "fits": CTC
    needs an output frame per character, then the budget rules."""
    if r["ctc_frames"] < chars:
        return f"too few CTC frames ({r['ctc_frames']} < {chars} chars)"
    return _common.budget_verdict(r, budget, min_params)


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--seconds", type=_common.positive(float), default=30.0, help="utterance length (default 30)")
    p.add_argument("--batch", type=_common.positive(int), default=8, help="utterances per step (default 8)")
    p.add_argument("--budget-gib", type=_common.positive(float), default=1.0,
                   help="training memory budget in GiB (default 1)")
    p.add_argument("--chars-per-second", type=_common.positive(float), default=15.0,
                   help="transcript characters per second of speech; CTC needs as many output frames (default 15)")
    p.add_argument("--min-params", type=_common.positive(float), default=5e6,
                   help="least parameters a candidate may have (default 5e6)")
    args = p.parse_args()
    out = _common.out_dir(args.out)
    t0 = time.perf_counter()
    frames = round(args.seconds * FRAMES_PER_SECOND)
    budget, min_params = int(args.budget_gib * _common.GIB), int(args.min_params)
    chars = math.ceil(args.seconds * args.chars_per_second)
    rows = _common.evaluate(candidates(SMOKE_GRID if args.smoke else GRID), frames, args.batch,
                            extra=lambda graph: ctc_frames(graph, frames))
    verdicts = {r["name"]: verdict(r, chars, budget, min_params) for r in rows}
    winner = _common.pick_under_budget([r for r in rows if r["ctc_frames"] >= chars], budget, min_params)
    title = (f"{len(rows)} recognisers at {args.seconds:g} s ({frames:,} frames, {chars} chars), batch "
             f"{args.batch}, float32, Adam; budget {args.budget_gib:g} GiB, >= {min_params / 1e6:g}M params")
    _common.report(out, "speech_pipeline", rows, verdicts, winner,
                   {"frames": frames, "chars": chars, "batch": args.batch, "budget_bytes": budget,
                    "min_params": min_params}, title, args.smoke)
    print(f"{len(rows)} candidates in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    sys.exit(_common.run(main))
