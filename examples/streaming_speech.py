"""Streaming speech recognition: a causal conv frontend + RG-LRU recogniser, fed chunk by chunk.

examples/streaming_speech.seq declares a recogniser that can run on a live
microphone: log-mel features every 10 ms, two stride-2 causal conv1d layers
(one frame every 40 ms), six Griffin recurrent layers (RG-LRU) with SwiGLU
feed-forwards, and a CTC head. This script

* synthesises a few seconds of audio (tones, a chirp and noise, seeded) and
  turns it into 80 log-mel features per 10 ms with torch.stft;
* builds the spec with seqdsl.build and runs it over the whole utterance
  (forward) and as a stream, `step()` on one chunk at a time from
  `init_state()`, checking that the streamed output equals the full one;
* measures the streaming state after every chunk (the bytes of every tensor
  the state holds: the conv windows, the RG-LRU states) against
  seqdsl.estimate's state figure, which must agree exactly;
* feeds one stride period of single frames to FlopCounterMode and compares
  it with the estimate's per-frame cost;
* prints the latency of each chunk (this CPU, one thread) and the real-time
  factor.

    .venv/bin/python examples/streaming_speech.py            # 20 s of audio in 160 ms chunks
    .venv/bin/python examples/streaming_speech.py --smoke    # 2 s (what CI runs)

Writes OUT/streaming_speech.md (the report) and .json (every figure, for tests).
"""
from __future__ import annotations

import json
import statistics
import sys
import time

import _common

SPEC = _common.HERE / "streaming_speech.seq"
SAMPLE_RATE = 16_000
HOP = 160            # 10 ms between feature frames
WINDOW = 400         # 25 ms analysis window
MELS = 80
FRAME_MS = 1000 * HOP // SAMPLE_RATE
ATOL, RTOL = 1e-5, 1e-4   # streamed vs full: float32 rounding of the chunked scans
REPS = 5             # streamed runs whose fastest time per chunk is reported (1 with --smoke)


def audio(seconds: float, seed: int = 0):
    """A deterministic test signal: two tones, a rising chirp and a little noise."""
    import math

    import torch
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    chirp = torch.sin(2 * math.pi * (200 + 900 * t / max(seconds, 1e-9)) * t)
    tones = 0.5 * torch.sin(2 * math.pi * 440 * t) + 0.3 * torch.sin(2 * math.pi * 1250 * t)
    return 0.3 * (tones + chirp) + 0.02 * torch.randn(t.shape, generator=g)


def mel_filterbank(n_fft: int, n_mels: int):
    """(n_fft // 2 + 1, n_mels) triangular filters, evenly spaced on the HTK mel scale."""
    import torch

    def mel(f):
        return 2595 * torch.log10(1 + f / 700)

    def hz(m):
        return 700 * (10 ** (m / 2595) - 1)
    freqs = torch.linspace(0, SAMPLE_RATE / 2, n_fft // 2 + 1)
    edges = hz(torch.linspace(0, float(mel(torch.tensor(SAMPLE_RATE / 2))), n_mels + 2))
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    up = (freqs[:, None] - lo) / (mid - lo)
    down = (hi - freqs[:, None]) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0)


def log_mel(wave):
    """[1, T, 80] log-mel features, one frame every HOP samples (no centring:
    frame t covers samples t·HOP .. t·HOP + WINDOW, so a live stream has it
    as soon as those samples arrive)."""
    import torch
    spec = torch.stft(wave, n_fft=WINDOW, hop_length=HOP, window=torch.hann_window(WINDOW), center=False,
                      return_complex=True).abs() ** 2          # (freqs, T)
    return torch.log(spec.T @ mel_filterbank(WINDOW, MELS) + 1e-6)[None]   # (1, T, mels)


def state_bytes(state: dict) -> int:
    """Bytes of every tensor a streaming state holds (one dict per layer;
    the "__"-prefixed entries are the stream's bookkeeping, not layer state)."""
    import torch
    return sum(v.nbytes for name, layer in state.items() if not name.startswith("__") and isinstance(layer, dict)
               for v in layer.values() if isinstance(v, torch.Tensor))


def total_stride(graph) -> int:
    """Input frames per output frame: the product of the time strides of the conv layers."""
    stride = 1
    for n in graph.nodes:
        if n.kind == "conv1d":
            stride *= n.args.stride if isinstance(n.args.stride, int) else n.args.stride[0]
    return stride


def stream(module, features, chunk: int):
    """step() over consecutive chunks of `chunk` frames from init_state():
    the outputs joined, the seconds each step took and the state's bytes after each."""
    import torch
    state = module.init_state(batch_size=features.shape[0])
    outs, seconds, sizes = [], [], []
    for i in range(0, features.shape[1], chunk):
        t0 = time.perf_counter()
        y, state = module.step(features[:, i:i + chunk], state=state)
        seconds.append(time.perf_counter() - t0)
        outs.append(y)
        sizes.append(state_bytes(state))
    return torch.cat(outs, dim=1), seconds, sizes


def frame_flops(module, features, stride: int) -> int:
    """FlopCounterMode's count for `stride` single-frame steps (one output frame
    of the frontend), after a warm-up period so every conv window is full."""
    from seqdsl.backend import measure
    state = module.init_state(batch_size=features.shape[0])
    for i in range(stride):
        _, state = module.step(features[:, i:i + 1], state=state)

    def period():
        nonlocal state
        for i in range(stride, 2 * stride):
            _, state = module.step(features[:, i:i + 1], state=state)
    return measure.count_flops(period)


def report(r: dict) -> str:
    from seqdsl.units import human_bytes, human_flops
    lat = r["latency_ms"]
    chunk_ms = r["chunk_frames"] * FRAME_MS
    runs = f"fastest of {r['reps']} streamed runs" if r["reps"] > 1 else "one streamed run"
    lines = [
        "# Streaming speech recognition: chunked step() against the full forward", "",
        f"Spec: examples/streaming_speech.seq (model {r['model']}, {r['params']:,} parameters), built with "
        f"seqdsl.build, float32, batch 1, {r['threads']} torch thread(s).",
        f"Input: {r['seconds']:g} s of synthetic audio, {r['frames']:,} log-mel frames of {FRAME_MS} ms; "
        f"the frontend keeps one frame in {r['stride']} ({r['out_frames']:,} CTC frames of {r['labels']} labels).", "",
        "| check | result |", "|---|---|",
        f"| streamed ({r['chunks']} chunks of {r['chunk_frames']} frames = {chunk_ms} ms) equals the full forward | "
        f"{'yes' if r['streamed_equals_full'] else 'NO'}: max abs difference {r['max_abs_diff']:.2e} "
        f"(allowed {ATOL:g} + {RTOL:g}·|y|) |",
        f"| state after every chunk equals seqdsl.estimate's state_bytes | "
        f"{'yes' if r['state_agrees'] else 'NO'}: measured {sorted(set(r['state_bytes_measured']))} B, "
        f"estimate {r['state_bytes_estimate']:,} B ({human_bytes(r['state_bytes_estimate'])}) |",
        f"| frame by frame (chunks of 1 frame), the state's largest size is the estimate | "
        f"{'yes' if r['frame_state_max'] == r['state_bytes_estimate'] else 'NO'}: "
        f"{r['frame_state_min']:,}–{r['frame_state_max']:,} B (mid-stride, a conv window holds fewer frames) |",
        f"| FLOPs of {r['stride']} single-frame steps (FlopCounterMode) = {r['stride']} x the estimate's per-frame "
        f"cost | {'yes' if r['flops_agree'] else 'NO'}: {r['flops_period_measured']:,} measured, "
        f"{r['stride']} x {r['flops_per_frame_estimate']:,} = {r['stride'] * r['flops_per_frame_estimate']:,} "
        f"estimated ({human_flops(r['flops_per_frame_estimate'])} a frame) |", "",
        f"Latency per {chunk_ms} ms chunk on this CPU ({runs}, each chunk's time): "
        f"median {statistics.median(lat):.2f} ms, "
        f"90th percentile {sorted(lat)[int(0.9 * (len(lat) - 1))]:.2f} ms, max {max(lat):.2f} ms "
        f"(first chunk {lat[0]:.2f} ms); real-time factor {r['real_time_factor']:.3f} "
        f"(compute time / audio time, median chunk).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--seconds", type=_common.positive(float), default=None,
                   help="length of the synthetic utterance (default 20, 2 with --smoke)")
    p.add_argument("--chunk-ms", type=_common.positive(int), default=160,
                   help="chunk length fed to step(), a multiple of the frontend's 40 ms (default 160)")
    args = p.parse_args()
    seconds = args.seconds or (2.0 if args.smoke else 20.0)
    out = _common.out_dir(args.out)

    import seqdsl
    graph = seqdsl.load(SPEC).model()
    stride = total_stride(graph)
    chunk = args.chunk_ms // FRAME_MS
    if args.chunk_ms % (stride * FRAME_MS):
        from seqdsl.errors import UsageError
        raise UsageError(f"--chunk-ms {args.chunk_ms}: give a multiple of {stride * FRAME_MS} ms (the frontend "
                         f"keeps one {FRAME_MS} ms frame in {stride}), e.g. --chunk-ms {stride * FRAME_MS * 4}")

    import torch
    torch.set_num_threads(1)   # a live stream runs beside other work; one thread is the honest latency
    features = log_mel(audio(seconds))
    frames = features.shape[1] // chunk * chunk      # whole chunks only
    if frames == 0:
        from seqdsl.errors import UsageError
        raise UsageError(f"--seconds {seconds:g} gives fewer frames than one chunk ({chunk}): give more audio")
    features = features[:, :frames]
    module = seqdsl.build(graph, seed=0).eval()
    est = seqdsl.estimate(graph, seq=frames, batch=1).points[0]
    with torch.no_grad():
        full = module(features)
        runs = [stream(module, features, chunk) for _ in range(1 if args.smoke else REPS)]
        streamed, _, sizes = runs[0]
        # each chunk's latency: the fastest of the runs, the one least disturbed by other work
        seconds_per_chunk = [min(run[1][i] for run in runs) for i in range(len(runs[0][1]))]
        frame_span = min(frames, 50 * stride)        # frame by frame: a short stretch is enough
        _, _, frame_sizes = stream(module, features[:, :frame_span], 1)
        flops_period = frame_flops(module, features, stride)
    lat = [1000 * s for s in seconds_per_chunk]
    r = {"model": graph.name, "params": graph.params, "threads": torch.get_num_threads(), "seconds": seconds,
         "frames": frames, "stride": stride, "out_frames": full.shape[1], "labels": full.shape[2],
         "chunk_frames": chunk, "chunks": len(lat), "reps": len(runs),
         "streamed_equals_full": streamed.shape == full.shape and torch.allclose(streamed, full, atol=ATOL, rtol=RTOL),
         "max_abs_diff": (streamed - full).abs().max().item(),
         "state_bytes_estimate": est.state_bytes, "state_bytes_measured": sizes,
         "state_agrees": all(s == est.state_bytes for s in sizes),
         "frame_state_min": min(frame_sizes), "frame_state_max": max(frame_sizes),
         "flops_per_frame_estimate": est.flops_per_token, "flops_period_measured": flops_period,
         "flops_agree": flops_period == stride * est.flops_per_token,
         "latency_ms": lat, "real_time_factor": statistics.median(lat) / (chunk * FRAME_MS)}
    text = report(r)
    _common.write(out / "streaming_speech.md", text)
    _common.write(out / "streaming_speech.json", json.dumps(r, indent=1))
    print(text)
    print(f"wrote {out}/streaming_speech.{{md,json}}")


if __name__ == "__main__":
    sys.exit(_common.run(main))
