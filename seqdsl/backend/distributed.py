"""Training on many devices (issue 14, the engine): a built SeqModel under
DDP, FSDP2 and tensor parallelism, and `seqdsl bench --nproc N --parallel ...`.

* `blocks(model)`: the per-block units, one `Block` per copy of an outermost
  `repeat` (SeqModel calls each copy as one module, so module hooks see it).
* `apply_ddp`, `apply_fsdp` (FSDP2 `fully_shard` on every block, then on
  the model for the rest), `apply_checkpointing(model, "full")` (each block
  recomputed in backward), `tp_layout`/`apply_tp` (DTensor's
  `parallelize_module` with the plan derived from the layer kinds).
* The layout of `--parallel` the engine runs: dp alone (zero=0: DDP; zero=3:
  FSDP2) or tp alone, world = nproc; anything else is refused (ParallelError,
  the flag named), the estimate (seqdsl.cost.parallel) still covers it.
* `launch(jobs, nproc)`: torch.distributed.run with `nproc` workers
  (`python -m seqdsl.backend.distributed CONFIG`), gloo on the CPU, NCCL on
  CUDA, a free port, a timeout; each rank writes its measurements (or its
  error) to a file; a failed or stuck worker is a DistributedError, never a hang.
* Measured per rank (seqdsl.backend.measure's conventions): parameter,
  gradient and optimizer-state bytes of the tensors' local shards (Adam's two
  moments; its per-tensor `step` counters, 4 bytes a parameter tensor, are not
  counted, as the estimate does not); saved activations via
  saved_tensors_hooks (unique storages, parameters and inputs excluded); the
  median step time.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor

from ..check.elaborate import load
from ..cost.parallel import Parallel, ParallelError, check_recompute, parse_parallel
from . import measure
from .seqmodel import Block, build
from .tp import TPLayout, tp_layout

DEFAULT_TIMEOUT = 300          # seconds, the whole run (startup included)
ENGINE_RECOMPUTE = ("none", "full")


class DistributedError(Exception):
    """A worker failed, or the run passed its timeout (the message says which rank and why)."""


# ------------------------------------------------------------------ the layout the engine runs
def engine_mode(layout: Parallel, nproc: int) -> str:
    """"ddp", "fsdp" or "tp" for a layout over `nproc` processes; a
    ParallelError naming the flag for one the engine does not run."""
    if layout.world != nproc:
        raise ParallelError(f"--parallel {layout} spans {layout.world} devices, but --nproc {nproc}: "
                            f"make dp·tp·pp·cp equal --nproc")
    if layout.pp > 1 or layout.cp > 1:
        raise ParallelError(f"--parallel {layout}: the engine runs data (dp) and tensor (tp) parallelism; "
                            f"pipeline and context parallelism are in the estimate only "
                            f"(seqdsl compile --estimate --parallel): use dp or tp")
    if layout.sp or layout.microbatches > 1:
        raise ParallelError(f"--parallel {layout}: sequence parallelism and micro-batches are in the estimate "
                            f"only: drop sp and microbatches")
    if layout.dp > 1 and layout.tp > 1:
        raise ParallelError(f"--parallel {layout}: the engine runs dp or tp, not both at once: use dp={nproc} "
                            f"or tp={nproc}")
    if layout.tp > 1:
        if layout.zero:
            raise ParallelError(f"--parallel {layout}: zero shards over dp, and dp=1: drop zero")
        return "tp"
    if layout.zero in (1, 2):
        raise ParallelError(f"--parallel zero={layout.zero}: the engine runs zero=0 (DDP) and zero=3 (FSDP2, "
                            f"fully_shard per block): use one of them")
    return "fsdp" if layout.zero == 3 else "ddp"


def check_engine_recompute(mode: str) -> str:
    check_recompute(mode)
    if mode not in ENGINE_RECOMPUTE:
        raise ParallelError(f"--recompute {mode}: the engine recomputes whole blocks (full) or nothing (none); "
                            f"selective (attention scores only) is in the estimate only")
    return mode


# ------------------------------------------------------------------ blocks, FSDP2, DDP, checkpointing
def blocks(model) -> list[Block]:
    """One Block per copy of an outermost `repeat` of the spec, in order."""
    return model.blocks()


def apply_checkpointing(model, mode: str) -> None:
    """recompute "full": every block keeps its inputs only and runs again in
    backward; "none": nothing recomputed."""
    check_engine_recompute(mode)
    for b in blocks(model):
        b.recompute = mode == "full"


def apply_fsdp(model, mesh, reshard_after_forward: bool = True):
    """FSDP2 (ZeRO-3): fully_shard on every block, then on the model (the
    layers outside any repeat: embeddings, head, final norm). In place."""
    from torch.distributed.fsdp import fully_shard   # lazy: torch.distributed.fsdp
    for b in blocks(model):
        fully_shard(b, mesh=mesh, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward)
    return model


def apply_ddp(model, device=None):
    """DistributedDataParallel with the gradients as views of its buckets (so
    the gradients take their bytes once)."""
    from torch.nn.parallel import DistributedDataParallel   # lazy: torch.nn.parallel
    ids = [device] if device is not None and torch.device(device).type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=True)


# ------------------------------------------------------------------ tensor parallelism
def apply_tp(model, mesh) -> TPLayout:
    """parallelize_module with tp_layout's plan; each split attention then
    runs heads/tp heads on its rank. In place; returns the layout."""
    from torch.distributed.tensor.parallel import parallelize_module   # lazy: torch.distributed
    layout = tp_layout(model)
    tp = mesh.size()
    for name, mod in layout.heads:
        if mod.h % tp or mod.kvh % tp:
            raise ParallelError(f"--parallel tp={tp}: attention '{name}' has {mod.h} heads and {mod.kvh} "
                                f"key/value heads, which tp={tp} does not divide")
    parallelize_module(model, mesh, layout.plan)
    for _, mod in layout.heads:
        mod.h //= tp
        mod.kvh //= tp
    return layout


# ------------------------------------------------------------------ measuring one rank
def _local(t):
    return t.to_local() if isinstance(t, DTensor) else t


def _nbytes(tensors) -> int:
    return sum(_local(t).numel() * _local(t).element_size() for t in tensors if t is not None)


def state_bytes(model, opt) -> tuple[int, int, int]:
    """(parameters, gradients, optimizer moments) bytes this rank holds: the
    local shards (a tied weight once; Adam's `step` counters excluded)."""
    params = list(model.parameters())
    moments = [v for s in opt.state.values() for k, v in s.items() if k != "step" and torch.is_tensor(v)]
    return _nbytes(params), _nbytes(p.grad for p in params), _nbytes(moments)


class SavedRecorder:
    """Bytes autograd saves for backward (unique storages), attributed to the
    block running (None outside blocks). Parameters (sharded, gathered or
    split: the storages of the parameters a module holds when it is called)
    and the inputs are excluded; under full recompute the blocks' inputs,
    which the checkpoint keeps, are recorded in `kept`."""

    def __init__(self, model, blocks_, inputs):
        self.exclude = {_local(x).untyped_storage().data_ptr() for x in inputs}
        self.saved: dict[int, tuple] = {}     # storage ptr -> (bytes, block index or None)
        self.kept: dict[int, int] = {}        # storage ptr -> bytes, block inputs
        self.block = None
        self.gathered: set = set()
        self.handles = [model.register_forward_pre_hook(lambda m, a: self._params(m) and None)]
        for i, b in enumerate(blocks_):
            self.handles.append(b.register_forward_pre_hook(lambda m, a, i=i: self._enter(m, a, i)))
            self.handles.append(b.register_forward_hook(lambda m, a, o: self._leave()))

    def _params(self, module) -> set:
        ptrs = {_local(p).untyped_storage().data_ptr() for p in module.parameters() if _local(p).numel()}
        new = ptrs - self.exclude
        self.exclude |= ptrs
        return new

    def _enter(self, block, args, i) -> None:
        # a block's gathered parameters are freed when it ends (FSDP2): their
        # addresses may then hold activations, so they are excluded only meanwhile
        self.gathered = self._params(block)
        for x in args[1:]:
            s = _local(x).untyped_storage()
            if s.data_ptr() not in self.exclude:
                self.kept[s.data_ptr()] = s.nbytes()
        self.block = i

    def _leave(self) -> None:
        self.exclude -= self.gathered
        self.block = None

    def pack(self, t):
        if isinstance(t, DTensor):
            with torch.no_grad():
                x = t.to_local()
        else:
            x = t
        if not isinstance(t, nn.Parameter) and x.numel():
            s = x.untyped_storage()
            if s.data_ptr() not in self.exclude:
                self.saved.setdefault(s.data_ptr(), (s.nbytes(), self.block))
        return t

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)

    def close(self) -> None:
        for h in self.handles:
            h.remove()

    def total(self) -> int:
        return sum(n for n, _ in self.saved.values())

    def by_block(self) -> dict:
        out: dict = {}
        for n, b in self.saved.values():
            out[b] = out.get(b, 0) + n
        return out


def _loss(out):
    """Mean squares of every output: a rank's mean over its share of the
    batch, so DDP's and FSDP's gradient average is the one-process gradient."""
    outs = out if isinstance(out, tuple) else (out,)
    return sum(o.float().square().mean() for o in outs)


def _batch_axis(graph) -> dict:
    axes = {}
    for name, t in graph.inputs.items():
        dims = [str(d) for d in t.dims]
        axes[name] = dims.index(graph.batch_symbol) if graph.batch_symbol in dims else None
    return axes


def _full(t):
    return t.full_tensor() if isinstance(t, DTensor) else t


def run_job(job: dict, rank: int, world: int, device, progress=None) -> dict:
    """Build the job's spec on this rank, apply its layout, run `steps`
    training steps (Adam, lr 1e-3) and measure; with `check`, the same steps
    on one process's model over the whole batch beside it (losses and the last
    step's gradients compared)."""
    from torch.distributed.device_mesh import init_device_mesh   # lazy: torch.distributed
    graph = load(job["spec"]).model(job.get("model"))
    layout = parse_parallel(job["parallel"])
    mode = engine_mode(layout, world)
    recompute = check_engine_recompute(job.get("recompute", "none"))
    steps = int(job.get("steps", 3))
    batch = int(job["batch"])
    dp = layout.dp
    axes = _batch_axis(graph)
    if dp > 1 and any(a is None for a in axes.values()):
        raise ParallelError(f"--parallel dp={dp}: model '{graph.name}' has an input without the batch "
                            f"dimension, which data parallelism splits")
    env = measure.input_env(graph, job["seq"], batch * dp)
    data = [measure.example_inputs(graph, env, seed=s, device=device) for s in range(steps)]

    def share(xs):
        if dp == 1:
            return xs
        return [x.narrow(axes[n], rank * batch, batch) for n, x in zip(graph.inputs, xs)]

    model = build(graph, seed=0, device=device)
    mesh = init_device_mesh(torch.device(device).type, (world,))
    bl = blocks(model)
    notes = []
    if mode == "tp":
        notes = [f"{name} ({kind}) replicated: {why}" for name, kind, why in apply_tp(model, mesh).replicated]
    apply_checkpointing(model, recompute)
    if mode == "fsdp":
        apply_fsdp(model, mesh)
    run = apply_ddp(model, device) if mode == "ddp" else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    ref = ref_opt = None
    if job.get("check"):
        ref = build(graph, seed=0, device=device)
        ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    losses, ref_losses, times = [], [], []
    measured = {}
    probe = recompute == "full" and steps > 1
    for step in range(steps):
        xs = share(data[step])
        last = step == steps - 1
        # under full recompute the first step runs the blocks whole, to measure what one
        # block saves while it is recomputed (its working set); the others checkpoint
        if probe:
            apply_checkpointing(model, "none" if step == 0 else "full")
        rec = SavedRecorder(model, bl, xs) if last or (probe and step == 0) else None
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if rec is not None:
            with rec.hooks():
                out = run(*xs)
        else:
            out = run(*xs)
        loss = _loss(out)
        del out
        loss.backward()
        if last:
            grads = {n.removeprefix("module."): _full(p.grad).detach().clone()
                     for n, p in run.named_parameters() if p.grad is not None} if ref is not None else {}
            measured["grads_bytes"] = state_bytes(model, opt)[1]
        opt.step()
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        value = loss.detach().clone()
        if dp > 1:
            dist.all_reduce(value)
            value /= dp
        losses.append(value.item())
        if rec is not None:
            rec.close()
            if probe and step == 0:
                work = {b: n for b, n in rec.by_block().items() if b is not None}
                measured["block_saved_bytes"] = max(work.values(), default=0)
            else:
                measured["saved_outside_blocks_bytes"] = rec.by_block().get(None, 0)
                measured["kept_block_inputs_bytes"] = sum(rec.kept.values()) if recompute == "full" else 0
                measured["saved_bytes"] = rec.total()
        if ref is not None:
            ref_opt.zero_grad(set_to_none=True)
            ref_loss = _loss(ref(*data[step]))
            ref_loss.backward()
            ref_losses.append(ref_loss.item())
            if last:
                diff = scale = 0.0
                for n, p in ref.named_parameters():
                    g = grads.get(n)
                    if g is None:
                        raise DistributedError(f"rank {rank}: parameter {n} has no gradient under {mode}")
                    diff = max(diff, (g - p.grad).abs().max().item())
                    scale = max(scale, p.grad.abs().max().item())
                measured.update(grad_max_diff=diff, grad_max=scale, grads_compared=len(grads))
            ref_opt.step()
        if progress:
            progress(step + 1, steps, f"{graph.name} {mode} step {step + 1}")
    params_b, _, opt_b = state_bytes(model, opt)
    if recompute == "full":
        # what backward needs at most at once: the kept block inputs and everything
        # saved outside blocks, plus the largest block's saved tensors while it is recomputed
        measured["saved_bytes"] = (measured["saved_outside_blocks_bytes"] + measured["kept_block_inputs_bytes"]
                                   + measured.get("block_saved_bytes", 0))
    timed = times[1:] or times
    result = {"rank": rank, "model": graph.name, "mode": mode, "parallel": str(layout), "recompute": recompute,
              "seq": job["seq"], "batch": batch, "params_bytes": params_b, "optimizer_bytes": opt_b,
              "step_s": sorted(timed)[len(timed) // 2], "losses": losses, "notes": notes, **measured}
    if ref is not None:
        result["ref_losses"] = ref_losses
    return result


# ------------------------------------------------------------------ the worker
def worker(config_path: str) -> int:
    """One rank under torch.distributed.run: runs the config's jobs, writes
    rank<r>.json (or rank<r>.error with the reason) in its `out` folder."""
    cfg = json.loads(Path(config_path).read_text())
    out = Path(cfg["out"])
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    torch.set_num_threads(int(cfg.get("threads", 1)))
    cuda = cfg.get("device", "cpu") == "cuda"
    (out / f"pid{rank}").write_text(str(os.getpid()))
    try:
        device = "cpu"
        if cuda:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=int(cfg["timeout"])))

        def progress(done, total, label):
            if rank == 0:
                with open(out / "progress", "a") as f:
                    f.write(json.dumps([done, total, label]) + "\n")

        results = []
        for i, job in enumerate(cfg["jobs"]):
            results.append(run_job(job, rank, world, device,
                                   lambda d, n, label, i=i: progress(i * n + d, n * len(cfg["jobs"]), label)))
        (out / f"rank{rank}.json").write_text(json.dumps(results))
        # every rank done before any tears its gloo connections down: a rank leaving early
        # aborts a peer still in its last collective (SIGABRT, seen once in CI)
        dist.barrier()
        return 0
    except Exception as exc:  # noqa: BLE001 - the launcher reports it, one line per rank
        (out / f"rank{rank}.error").write_text(f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}")
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        (out / f"pid{rank}").unlink(missing_ok=True)     # gone: never a pid to stop


# ------------------------------------------------------------------ the launcher
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc, out: Path) -> None:
    """Stop torch.distributed.run (SIGTERM: it stops its workers; SIGKILL
    after 5 s), then any worker left: torchrun starts each in a session of
    its own, and each wrote its pid at start."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=5)
            break
        except subprocess.TimeoutExpired:
            continue
    for f in out.glob("pid*"):
        try:
            os.kill(int(f.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def launch(jobs: list[dict], nproc: int, device: str = "cpu", timeout: float = DEFAULT_TIMEOUT,
           progress=None, threads: int = 1) -> list[list[dict]]:
    """Run `jobs` on `nproc` workers through torch.distributed.run; each
    rank's list of job results, by rank. progress(done, total, label) as rank
    0 goes. A worker's error or the timeout: DistributedError."""
    if nproc < 2:
        raise ParallelError(f"--nproc {nproc}: a distributed run needs 2 processes or more")
    root = str(Path(__file__).resolve().parents[2])
    with tempfile.TemporaryDirectory(prefix="seqdsl-dist-") as tmp:
        out = Path(tmp)
        cfg = out / "config.json"
        cfg.write_text(json.dumps({"jobs": jobs, "out": tmp, "device": device, "timeout": int(timeout),
                                   "threads": threads}))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc-per-node={nproc}",
               "--master-addr=127.0.0.1", f"--master-port={free_port()}", "--max-restarts=0",
               "-m", "seqdsl.backend.distributed", str(cfg)]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads),
                   PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
        log = open(out / "log", "w")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        deadline = time.monotonic() + timeout
        seen = 0
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    _stop(proc, out)
                    raise DistributedError(f"the {nproc} workers ran past the timeout of {timeout:g} s and were "
                                           f"stopped: raise --timeout, or use a shorter --seq or --steps")
                seen = _report(out / "progress", seen, progress)
                time.sleep(0.2)
            _report(out / "progress", seen, progress)
        except BaseException:
            _stop(proc, out)
            raise
        finally:
            log.close()
        errors = sorted(out.glob("rank*.error"))
        if errors:
            reason, _, trace = errors[0].read_text().partition("\n\n")
            debug = f"\n{trace}" if os.environ.get("SEQDSL_DEBUG") else " (SEQDSL_DEBUG=1 shows its traceback)"
            raise DistributedError(f"{errors[0].stem.replace('rank', 'rank ')} failed: {reason}{debug}")
        if proc.returncode != 0:
            tail = (out / "log").read_text().strip().splitlines()[-3:]
            raise DistributedError(f"torch.distributed.run exited with {proc.returncode}: " + " | ".join(tail))
        return [json.loads((out / f"rank{r}.json").read_text()) for r in range(nproc)]


def _report(path: Path, seen: int, progress) -> int:
    if progress is None or not path.exists():
        return seen
    lines = path.read_text().splitlines()
    for line in lines[seen:]:
        try:
            done, total, label = json.loads(line)
        except ValueError:       # a line being written
            return seen
        progress(done, total, label)
        seen += 1
    return seen


if __name__ == "__main__":
    sys.exit(worker(sys.argv[1]))

__all__ = ["DistributedError", "TPLayout", "apply_checkpointing", "apply_ddp", "apply_fsdp", "apply_tp",
           "blocks", "check_engine_recompute", "engine_mode", "launch", "run_job", "state_bytes", "tp_layout",
           "worker"]
