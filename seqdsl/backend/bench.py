"""`seqdsl bench SPEC --seq ...`: real latency and memory of the built module.

Per length: the median seconds of an inference forward (eval, no_grad) and of
a training step (forward, backward of the spec's declared loss or else of
sum(outputs), Adam step), each after a
warm-up call (which also compiles, with --compile), and the peak bytes of
both: on the CPU the live-tensor tracker of seqdsl.backend.measure plus the resident
weights, buffers, inputs and optimizer state; on CUDA
torch.cuda.max_memory_allocated. With `--hw PROFILE`, the roofline's
predicted seconds (seqdsl.cost.roofline) and the ratio predicted / measured sit
beside them, so predictions can be checked.

Torch is imported only inside `run` and the measuring functions.
"""
from __future__ import annotations

import time

from ..cost.roofline import predictor
from ..errors import UsageError
from .verify import _check_device, _torch_dtype

BACKENDS = ("inductor", "eager", "aot_eager")


MAX_REPS = 1000


# ------------------------------------------------------------------ measuring
def _sync(device: str) -> None:
    if device == "cuda":
        import torch   # lazy: torch
        torch.cuda.synchronize()


def _median_seconds(fn, reps: int, device: str) -> float:
    """Median of `reps` timed calls after one warm-up call (compilation,
    allocator and oneDNN primitive caches)."""
    fn()
    _sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def _default_loss(out):
    outs = out if isinstance(out, tuple) else (out,)
    return sum(o.float().sum() for o in outs)


def bench_point(module, inputs, reps: int, device: str, targets=None) -> dict:
    """forward_s, train_s, peak_bytes (training step), inference_peak_bytes at one length.
    With `targets` the training step's loss is the spec's declared one
    (`module.loss`), otherwise the sum of the outputs."""
    import torch   # lazy: torch

    from . import measure   # lazy: torch
    params = list(module.parameters())
    resident = params + list(module.buffers()) + list(inputs)

    module.eval()

    def forward():
        with torch.no_grad():
            module(*inputs)

    forward_s = _median_seconds(forward, reps, device)
    inference_peak = measure.allocation_peak(forward, resident, device) + measure.storage_bytes(resident)

    module.train()
    opt = torch.optim.Adam(params, lr=1e-4)

    def train_step():
        opt.zero_grad(set_to_none=True)
        out = module(*inputs)
        value = _default_loss(out) if targets is None else module.loss(out, targets)
        del out                     # as `loss = model(x).loss`: the outputs go before backward
        value.backward()
        opt.step()

    train_s = _median_seconds(train_step, reps, device)
    # after the warm-up the Adam moments exist: they are resident, the gradients are not
    state = [t for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    peak = measure.allocation_peak(train_step, resident + state, device) + measure.storage_bytes(resident + state)
    opt.zero_grad(set_to_none=True)
    return {"forward_s": forward_s, "train_s": train_s, "peak_bytes": peak, "inference_peak_bytes": inference_peak}


def check_bench_args(reps: int, backend: str) -> None:
    """The repetitions and compile backend a benchmark may take (UsageError)."""
    if reps > MAX_REPS:
        raise UsageError(f"--reps {reps:,} is past the limit of {MAX_REPS:,}")
    if backend not in BACKENDS:
        raise UsageError(f"unknown --backend '{backend}': use {', '.join(BACKENDS)}")


def bench(graph, points, batch: int = 1, reps: int = 5, device: str = "cpu", dtype: str = "float32",
          compile: bool = False, backend: str = "inductor", hw: str | None = None, progress=None) -> dict:
    """Build `graph` (seed 0) and time it at each point: forward and training
    step seconds and peak bytes, with the roofline's predictions beside them
    when `hw` names a profile. progress(done, total, label) is called per point."""
    from . import measure   # lazy: torch
    from .seqmodel import build   # lazy: torch
    check_bench_args(reps, backend)
    _check_device(device)
    torch_dtype = _torch_dtype(dtype)
    predict = predictor(graph, hw, dtype) if hw else None
    module = build(graph, compile=compile, backend=backend, device=device, dtype=torch_dtype, seed=0)
    rows = []
    for i, point in enumerate(points):
        env = measure.input_env(graph, point, batch)
        if progress:
            progress(i, len(points), point)
        xs = measure.example_inputs(graph, env, device=device, dtype=torch_dtype)
        ys = measure.example_targets(graph, env, device=device, dtype=torch_dtype)
        row = {"seq": point, "batch": batch, **bench_point(module, xs, reps, device, ys)}
        if predict is not None:
            fwd, train = predict(env)
            row.update(forward_pred_s=fwd, train_pred_s=train, forward_ratio=fwd / row["forward_s"],
                       train_ratio=train / row["train_s"])
        rows.append(row)
    if progress:
        progress(len(points), len(points), None)
    return {"model": graph.name, "device": device, "dtype": dtype, "compile": compile,
            "backend": backend if compile else None, "points": rows}
