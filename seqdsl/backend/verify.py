"""`seqdsl verify SPEC`: build the module, measure it, compare with the estimate.

COST_MODEL.md principle 2: the estimate describes the module seqdsl emits, so
measuring that module must agree. At a few small lengths this measures the
*built* module (seqdsl.build, seed 0) with seqdsl.backend.measure and checks:

* params: `sum(p.numel())`, tied weights once. Exact.
* flops_forward: FlopCounterMode over the training forward, with formulas for
  the kernels it misses or over-counts (seqdsl.backend.measure.FORMULAS). 0.5%.
* flops_train: forward + backward of `sum(outputs)` in train mode (dropout
  on, as in training). 0.5%.
* activation_bytes: saved_tensors_hooks, unique storages still alive when
  the forward returns (what backward starts from), weights and inputs
  excluded. 10%.
* inference_live_bytes: one eval, no_grad forward: the live-tensor tracker
  (CPU) or max_memory_allocated (CUDA), plus the inputs. 15%.
* latency_s (CUDA only): median eval forward, beside the roofline's forward
  seconds when seqdsl.cost.roofline and a profile for the device exist. Shown,
  never enforced.

`inference_live_bytes` is the estimate's `inference_peak_bytes -
weights_bytes`: the inputs plus the most activations alive at once. Weights
are left out on both sides because at verify's small lengths they dominate
the total and would hide any error in the live-set walk. 15% is the bound
docs/cost_model.md states for the live-set model against measured peaks: the
walk charges each layer's transient workspace by rule, not allocation by
allocation. Latency is a roofline estimate (an order-of-magnitude figure by
design), so it is shown, not enforced.

Torch is imported only inside the functions that measure.
"""
from __future__ import annotations

import os
import time

from pydantic import BaseModel

from ..cost.estimate import _model_of, estimate, resolve_points
from ..cost.hardware import bundled_profiles
from ..cost.roofline import predictor
from ..errors import UsageError
from ..layers.costs import DTYPE_BYTES
from ..units import human_bytes

DEFAULT_SEQ = (48, 64, 96)
TOLERANCES = {"params": 0.0, "flops_forward": 0.005, "flops_train": 0.005, "activation_bytes": 0.10,
              "inference_live_bytes": 0.15}


class Row(BaseModel):
    """One figure at one length: estimate vs measured. ratio = estimate / measured."""

    figure: str
    seq: dict[str, int] | None          # None: the figure does not depend on length (params)
    estimate: float | int | None
    measured: float | int
    ratio: float | None
    tolerance: float | None             # None: informational only
    ok: bool


class VerifyReport(BaseModel):
    model: str
    device: str
    batch: int
    dtype: str
    rows: list[Row]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]


def _within(estimate, measured, tol: float) -> bool:
    if measured == 0:
        return estimate == 0
    return abs(estimate - measured) <= tol * measured


def _row(figure: str, seq, estimate, measured, tol) -> Row:
    ratio = None if estimate is None or not measured else estimate / measured
    ok = True if tol is None or estimate is None else _within(estimate, measured, tol)
    return Row(figure=figure, seq=seq, estimate=estimate, measured=measured, ratio=ratio, tolerance=tol, ok=ok)


def _check_device(device: str) -> None:
    if device not in ("cpu", "cuda"):
        raise UsageError(f"unknown device '{device}': use cpu or cuda")
    if device == "cuda":
        import torch   # lazy: torch
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available here (torch sees none)")


def available_memory(device: str = "cpu") -> int | None:
    """Bytes the measurement may use: MemAvailable from /proc/meminfo (else
    the free pages os.sysconf reports) on the CPU, the free device memory on
    CUDA; None when it cannot be told."""
    if device == "cuda":
        try:
            import torch   # lazy: torch
            return int(torch.cuda.mem_get_info()[0])
        except Exception:  # noqa: BLE001 - unknown: no check
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


MEMORY_SHARE = 0.5    # refuse a run whose estimate is past this share of the available memory


def check_memory(graph, points, batch: int, dtype: str, device: str, force: bool, command: str) -> None:
    """Before building anything: refuse (UsageError) a run whose closed-form
    training memory (weights, gradients, saved activations, inputs) or
    inference peak at its largest point is past MEMORY_SHARE of the memory
    available, naming both figures, unless `force`. The measurement itself
    (hooks, FLOP counting, the allocator) needs room beyond the estimate."""
    if force:
        return
    est = estimate(graph, seq=points, batch=batch, dtype=dtype, optimizer="none")
    worst = max(est.points, key=lambda p: max(p.training_bytes, p.inference_peak_bytes))
    need = max(worst.training_bytes, worst.inference_peak_bytes)
    avail = available_memory(device)
    if avail is None or need <= MEMORY_SHARE * avail:
        return
    at = ",".join(f"{k}={v}" for k, v in worst.seq.items())
    raise UsageError(f"at {at}, batch {batch} the model needs about {human_bytes(need)} ({need:,} bytes) "
                     f"and {device} has {human_bytes(avail)} ({avail:,} bytes) available; "
                     f"refusing to {command} past {MEMORY_SHARE:.0%} of it: use a smaller --seq or --batch, "
                     "or pass --force")


def _torch_dtype(dtype: str):
    if dtype not in DTYPE_BYTES:
        raise UsageError(f"unknown dtype '{dtype}': use float32, bfloat16 or float16")
    import torch   # lazy: torch
    return getattr(torch, dtype)


def _roofline_latency(graph, env: dict, dtype: str, hw: str | None, device_name: str):
    """Predicted forward seconds from seqdsl.cost.roofline, or None when no profile
    matches this device (and none was given)."""
    name = hw or next((p for p in bundled_profiles() if p != "cpu" and p in device_name.lower()), None)
    if name is None:
        return None
    return predictor(graph, name, dtype)(env)[0]


def _forward_latency(module, inputs, reps: int = 5) -> float:
    """Median seconds of an eval forward (CUDA: synchronised), after one warm-up."""

    import torch   # lazy: torch
    module.eval()
    times = []
    with torch.no_grad():
        for i in range(reps + 1):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            module(*inputs)
            torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def verify(program_or_path, model: str | None = None, seq=DEFAULT_SEQ, batch: int = 2, device: str = "cpu",
           dtype: str = "float32", tolerances: dict | None = None, hw: str | None = None,
           force: bool = False) -> VerifyReport:
    """Build the module (seed 0), measure it at each length and compare with
    seqdsl.estimate. `seq` takes what seqdsl.estimate takes (ints or
    {dim: int}); `tolerances` overrides TOLERANCES per figure. A run whose
    estimated memory is past MEMORY_SHARE of what is available is refused
    (UsageError, `check_memory`) before anything is built, unless `force`."""
    graph = _model_of(program_or_path, model)
    tol = dict(TOLERANCES)
    for k, v in (tolerances or {}).items():
        if k not in TOLERANCES:
            raise UsageError(f"no figure '{k}' to set a tolerance for (figures: {', '.join(TOLERANCES)})")
        tol[k] = v
    _check_device(device)
    torch_dtype = _torch_dtype(dtype)
    points = resolve_points(graph, seq)
    check_memory(graph, points, batch, dtype, device, force, "verify")
    est = estimate(graph, seq=points, batch=batch, dtype=dtype)
    for p in est.points:
        if p.warnings:               # a length past a layer's max_len: the module would refuse it
            raise UsageError(p.warnings[0])

    import torch   # lazy: torch

    from . import measure   # lazy: torch
    from .seqmodel import build   # lazy: torch
    module = build(graph, device=device, dtype=torch_dtype, seed=0)
    rows = [_row("params", None, graph.params, measure.params(module), tol["params"])]
    device_name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    for point, p in zip(points, est.points):
        env = measure.input_env(graph, point, batch)
        xs = measure.example_inputs(graph, env, device=device, dtype=torch_dtype)
        fwd, train, saved = measure.training_pass(module, *xs)
        live = measure.inference_live_bytes(module, *xs)
        rows += [_row("flops_forward", point, p.flops_forward, fwd, tol["flops_forward"]),
                 _row("flops_train", point, p.flops_train, train, tol["flops_train"]),
                 _row("activation_bytes", point, p.activation_bytes, saved, tol["activation_bytes"]),
                 _row("inference_live_bytes", point, p.inference_peak_bytes - p.weights_bytes, live,
                      tol["inference_live_bytes"])]
        if device == "cuda":
            predicted = _roofline_latency(graph, env, dtype, hw, device_name)
            rows.append(_row("latency_s", point, predicted, _forward_latency(module, xs), None))
    return VerifyReport(model=graph.name, device=device_name, batch=batch, dtype=dtype, rows=rows)
