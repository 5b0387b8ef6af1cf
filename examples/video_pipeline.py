"""Video pipeline: generate per-frame conv stems x temporal models, pick one under a memory budget.

Each candidate is built with the builder API (seqdsl.builder): a stem of
stride-2 conv2d layers applied to every frame of a [B, T, H, W, 3] clip
(conv2d convolves the two axes before the channels, so the time axis is
batch to it), spatially averaged to one vector per frame and projected to
the model width; then a temporal model over the frames — full attention,
sliding-window attention, or a bidirectional GRU — and a clip label from the
time average. Every candidate is checked like a .seq file and costed in
closed form at the clip length and frame size (seqdsl.estimate, no torch).

Selection rule (stated, not tuned): among the candidates with at least
--min-params parameters whose training memory (weights + gradients + Adam +
saved activations, float32, batch --batch) fits --budget-gib, the one with
the fewest training FLOPs per step.

    .venv/bin/python examples/video_pipeline.py                         # 256 frames of 128 x 128, 6 GiB
    .venv/bin/python examples/video_pipeline.py --frames 64 --size 224 --budget-gib 3
    .venv/bin/python examples/video_pipeline.py --smoke                 # 4 candidates, no plot

Writes OUT/video_pipeline.json (every candidate's figures), the winner as
OUT/video_pipeline_winner.seq, and OUT/video_pipeline.png.
"""
from __future__ import annotations

import itertools
import sys
import time

import _common

CLASSES = 174                # Something-Something v2 labels
GRID = {                     # every combination is one candidate
    "stem_depth": (3, 4),    # stride-2 convs: the frame shrinks 8x or 16x per side
    "stem_width": (16, 32, 64),  # channels of the first conv; each later conv doubles them
    "temporal": ("attention", "window", "gru"),
    "layers": (2, 4),
    "width": (256, 512),     # temporal model width
}
SMOKE_GRID = {"stem_depth": (3,), "stem_width": (16, 32), "temporal": ("attention", "window"), "layers": (4,),
              "width": (512,)}
WINDOW = 8                   # frames each side for the sliding-window temporal model


def classifier(stem_depth: int, stem_width: int, temporal: str, layers: int, width: int, frame_size: int):
    """One candidate as a ModelBuilder: per-frame conv stem -> temporal model -> label."""
    import seqdsl.builder as sb
    name = f"video_s{stem_depth}x{stem_width}_{temporal}{layers}_d{width}"
    m = sb.model(name)
    d = m.let("d", width)
    clip = m.input("clip", "float", ["B", "T", frame_size, frame_size, 3])
    stem = []
    for i in range(stem_depth):      # per frame: [B, T, H, W, C] -> [B, T, H/2, W/2, 2C]
        stem += [sb.conv2d(stem_width * 2 ** i, kernel=3, stride=2, bias=False), sb.batchnorm(), sb.relu()]
    frames = m.bind("frames", clip, *stem, sb.spatial_mean(), sb.linear(d))       # [B, T, d]
    if temporal == "gru":
        body = [sb.gru(d // 2, layers=layers, bidirectional=True)]      # [B, T, d]
    else:
        window = {"window": WINDOW} if temporal == "window" else {}
        body = [sb.posenc(), sb.repeat(layers,
                                       sb.residual(sb.layernorm(), sb.attention(4, **window)),
                                       sb.residual(sb.layernorm(), sb.mlp(2 * d))), sb.layernorm()]
    label = m.bind("label", frames, *body, sb.time_mean(), sb.linear(CLASSES, as_="head"))
    m.output(label)
    return m


def candidates(grid: dict, frame_size: int) -> list:
    keys = list(grid)
    return [classifier(**dict(zip(keys, combo)), frame_size=frame_size) for combo in itertools.product(*grid.values())]


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--frames", type=_common.positive(int), default=256,
                   help="clip length in frames (default 256: ~10 s at 25 fps)")
    p.add_argument("--size", type=_common.positive(int), default=128, help="frame height = width (default 128)")
    p.add_argument("--batch", type=_common.positive(int), default=8, help="clips per step (default 8)")
    p.add_argument("--budget-gib", type=_common.positive(float), default=6.0,
                   help="training memory budget in GiB (default 6)")
    p.add_argument("--min-params", type=_common.positive(float), default=5e6,
                   help="least parameters a candidate may have (default 5e6)")
    args = p.parse_args()
    out = _common.out_dir(args.out)
    t0 = time.perf_counter()
    budget, min_params = int(args.budget_gib * _common.GIB), int(args.min_params)
    rows = _common.evaluate(candidates(SMOKE_GRID if args.smoke else GRID, args.size), args.frames, args.batch)
    verdicts = {r["name"]: _common.budget_verdict(r, budget, min_params) for r in rows}
    winner = _common.pick_under_budget(rows, budget, min_params)
    title = (f"{len(rows)} video classifiers at {args.frames} frames of {args.size} x {args.size}, batch "
             f"{args.batch}, float32, Adam; budget {args.budget_gib:g} GiB, >= {min_params / 1e6:g}M params")
    _common.report(out, "video_pipeline", rows, verdicts, winner,
                   {"frames": args.frames, "size": args.size, "batch": args.batch, "budget_bytes": budget,
                    "min_params": min_params}, title, args.smoke)
    print(f"{len(rows)} candidates in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    sys.exit(_common.run(main))
