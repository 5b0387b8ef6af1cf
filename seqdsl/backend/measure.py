"""Measure a torch module the way the cost model counts it (COST_MODEL.md).

Used by `seqdsl verify`, `seqdsl bench` and the tests; imports torch, so
nothing on the check/estimate path may import it.

* FLOPs: `FlopCounterMode` plus formulas for the CPU kernels it counts as 0
  (ENVIRONMENT.md): `aten._scaled_dot_product_flash_attention_for_cpu` and its
  backward (torch's own SDPA formulas, GQA-aware: 4·B·H·dh·T·S forward, 2.5x
  backward), and oneDNN's `aten.mkldnn_rnn_layer` (2·rows·(W_ih + W_hh) per
  layer and direction) and its backward (2x: weight, hidden and input grads);
  cuDNN's `aten._cudnn_rnn` the same way; and `aten.convolution_backward`,
  whose stock formula counts a grouped conv's weight gradient `groups` times
  over; and `aten.linalg_solve_triangular` (n(n-1) FLOPs per right-hand side
  for a unit triangle, n² otherwise).
  The formulas go in through `custom_mapping`, so nothing global changes;
  `registered()` installs them in torch's registry (via register_flop_formula,
  idempotently, torch's own formula set aside) for one block and restores it.
* Saved activations: `saved_tensors_hooks`, unique storages' nbytes, with
  parameters and the given inputs excluded, counting those still alive when
  the forward returns (a branch no output reads frees what it saved).
* Peak live memory on the CPU: `LiveTensorTracker`, a TorchDispatchMode that
  counts every storage an op creates until it is freed (tracemalloc and RSS
  see nothing useful of torch, ENVIRONMENT.md). On CUDA use
  `torch.cuda.max_memory_allocated` instead (`allocation_peak` picks).
* `example_inputs`: inputs of a graph's declared types at given lengths.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from ..graph.symbolic import evaluate

__all__ = ["FORMULAS", "LiveTensorTracker", "allocation_peak", "count_flops", "counter", "example_inputs",
           "example_targets", "forward_and_train_flops", "forward_flops", "inference_live_bytes", "input_env",
           "params",
           "register", "registered", "saved_bytes", "storage_bytes", "train_flops", "training_pass",
           "unregister"]

aten = torch.ops.aten


# ------------------------------------------------------------------ FLOPs
def _flash_cpu(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _flash_cpu_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                        **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _rows(shape) -> int:
    n = 1
    for d in shape[:-1]:
        n *= d
    return n


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _mkldnn_rnn(input_shape, w_ih_shape, w_hh_shape, *args, out_shape=None, **kwargs) -> int:
    # one layer, one direction: every step multiplies by W_ih [G·h, in] and W_hh [G·h, h]
    return 2 * _rows(input_shape) * (_numel(w_ih_shape) + _numel(w_hh_shape))


def _mkldnn_rnn_backward(input_shape, w_ih_shape, w_hh_shape, *args, out_shape=None, **kwargs) -> int:
    # weight gradients (= forward) plus input and hidden gradients (= forward)
    return 2 * _mkldnn_rnn(input_shape, w_ih_shape, w_hh_shape)


def _cudnn_rnn(input_shape, weight_shapes, *args, out_shape=None, **kwargs) -> int:
    # every layer and direction: 2·rows·(W_ih + W_hh); the flat weight list
    # also holds the 1-D biases, which cost no FLOPs here (COST_MODEL.md)
    return 2 * _rows(input_shape) * sum(_numel(w) for w in weight_shapes if len(w) == 2)


def _cudnn_rnn_backward(input_shape, weight_shapes, *args, out_shape=None, **kwargs) -> int:
    return 2 * _cudnn_rnn(input_shape, weight_shapes)


def _solve_triangular(a_shape, b_shape, *args, upper=None, left=True, unitriangular=False, out_shape=None,
                      **kwargs) -> int:
    """linalg_solve_triangular (FlopCounterMode counts 0): substitution with an
    n x n triangle costs n(n-1)/2 multiply-adds per right-hand side (n more
    divisions unless unitriangular): 2 FLOPs a MAC, over numel(out)/n sides."""
    n = a_shape[-1]
    return (n * (n - 1) + (0 if unitriangular else n)) * (_numel(out_shape) // n)


def _conv_backward(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed,
                   output_padding, groups, output_mask, out_shape=None, **kwargs) -> int:
    # torch's formula is right for the input gradient but counts the weight
    # gradient of a grouped conv `groups` times over (ENVIRONMENT.md): each
    # group's weight gradient only sees its own in/groups input channels.
    flops = 0
    if output_mask[0]:
        flops += flop_counter.conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:
        flops += flop_counter.conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return flops


FORMULAS = {
    aten.convolution_backward: _conv_backward,
    aten._scaled_dot_product_flash_attention_for_cpu: _flash_cpu,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _flash_cpu_backward,
    aten.mkldnn_rnn_layer: _mkldnn_rnn,
    aten.mkldnn_rnn_layer_backward: _mkldnn_rnn_backward,
    aten._cudnn_rnn: _cudnn_rnn,                   # on CUDA; not yet checked on a GPU
    aten._cudnn_rnn_backward: _cudnn_rnn_backward,
    aten.linalg_solve_triangular: _solve_triangular,   # gated_deltanet's per-chunk (I + M)^-1
}


_INSTALLED: dict = {}     # op -> the wrapped formula register() put in torch's registry


def register() -> list:
    """Install FORMULAS in torch's global registry, replacing torch's own
    formula where it has one (convolution_backward); idempotent. Returns
    [(op, previous formula or None)] for `unregister` to restore."""
    changed = []
    for op, formula in FORMULAS.items():
        current = flop_counter.flop_registry.get(op)
        if current is not None and current is _INSTALLED.get(op):
            continue
        flop_counter.flop_registry.pop(op, None)
        flop_counter.register_flop_formula(op)(formula)
        _INSTALLED[op] = flop_counter.flop_registry[op]
        changed.append((op, current))
    return changed


def unregister(changed) -> None:
    """Undo `register`: each op gets back the formula it had before (or none)."""
    for op, previous in changed:
        flop_counter.flop_registry.pop(op, None)
        if previous is not None:
            flop_counter.flop_registry[op] = previous


@contextmanager
def registered():
    """FORMULAS in the global registry for the duration of the block only."""
    added = register()
    try:
        yield
    finally:
        unregister(added)


def counter() -> FlopCounterMode:
    return FlopCounterMode(display=False, custom_mapping=dict(FORMULAS))


def count_flops(fn) -> int:
    """FLOPs of fn() (forward only, or forward + backward if fn runs both)."""
    with counter() as c:
        fn()
    return c.get_total_flops()


def _default_loss(out):
    outs = out if isinstance(out, tuple) else (out,)
    return sum(o.float().sum() for o in outs)


def forward_flops(module, *inputs) -> int:
    """FLOPs of one inference forward (eval mode, no_grad)."""
    module.eval()
    with torch.no_grad():
        return count_flops(lambda: module(*inputs))


def train_flops(module, *inputs, loss=None) -> int:
    """FLOPs of forward + backward in training mode. The loss reduces every
    output (a sum: no FLOPs), so every output's backward is counted."""
    module.train()
    loss = loss or _default_loss
    with counter() as c:
        loss(module(*inputs)).backward()
    module.zero_grad(set_to_none=True)
    return c.get_total_flops()


def forward_and_train_flops(module, *inputs, loss=None):
    """(forward FLOPs, forward + backward FLOPs) of module(*inputs) in training mode."""
    module.train()
    loss = loss or (lambda out: (out[0] if isinstance(out, tuple) else out).float().sum())
    with counter() as c:
        module(*inputs)
    fwd = c.get_total_flops()
    with counter() as c:
        loss(module(*inputs)).backward()
    return fwd, c.get_total_flops()


# ------------------------------------------------------------------ saved activations
@contextmanager
def _collect(exclude_ptrs, seen):
    """Record each storage autograd saves: seen[address] = (weak reference, bytes)."""
    def pack(t):
        if isinstance(t, torch.nn.Parameter):
            return t
        s = t.untyped_storage()
        ptr = s.data_ptr()
        if ptr not in exclude_ptrs:
            seen[ptr] = (StorageWeakRef(s), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield


def _alive(seen) -> int:
    """Bytes of the recorded storages still alive: what backward starts from.
    Read before backward. A tensor saved on a branch of the graph that no
    output reaches (mlstm's final state, when nothing streams) is freed
    during the forward, and the allocator may hand its address to a later
    saved tensor: keyed by address alone, the later one's bytes replaced it
    or it was counted although freed, depending on the allocator's reuse
    (one spec measured 2.03, 2.10 and 2.37 MB in three runs). A dead branch
    that saves an op's output is not freed until Python's cycle collector runs
    (the packed tensor holds its grad_fn): still counted, as before."""
    return sum(n for ref, n in seen.values() if not ref.expired())


def saved_bytes(module, *inputs) -> int:
    """Bytes autograd saves for backward in module(*inputs): unique storages,
    parameters and the inputs excluded."""
    module.train()
    exclude = {p.untyped_storage().data_ptr() for p in module.parameters()}
    exclude |= {x.untyped_storage().data_ptr() for x in inputs if isinstance(x, torch.Tensor)}
    seen: dict[int, int] = {}
    with _collect(exclude, seen):
        out = module(*inputs)
    saved = _alive(seen)
    del out
    return saved


def params(module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------ one training pass
def training_pass(module, *inputs, loss=None) -> tuple[int, int, int]:
    """(forward FLOPs, forward + backward FLOPs, saved bytes) of one training
    step's forward and backward, measured in a single pass (train mode, so
    dropout runs as in training). The loss sums every output, so each output's
    backward is counted; the sum itself is no FLOP. Saved bytes as
    `saved_bytes`. Gradients are dropped afterwards."""
    module.train()
    loss = loss or _default_loss
    exclude = {p.untyped_storage().data_ptr() for p in module.parameters()}
    exclude |= {x.untyped_storage().data_ptr() for x in inputs if isinstance(x, torch.Tensor)}
    seen: dict[int, int] = {}
    with _collect(exclude, seen), counter() as c:
        out = module(*inputs)
    fwd = c.get_total_flops()
    saved = _alive(seen)
    value = loss(out)
    if not value.requires_grad:     # no parameter and no input needs a gradient: no backward
        return fwd, fwd, 0
    with counter() as c:
        value.backward()
    del out, value
    module.zero_grad(set_to_none=True)
    return fwd, fwd + c.get_total_flops(), saved


# ------------------------------------------------------------------ peak memory
class LiveTensorTracker(TorchDispatchMode):
    """Bytes of the storages ops create, alive at once: `current` now, `peak`
    the most at any op. Each op's new output storages are added; storages are
    dropped when torch frees them (StorageWeakRef.expired, checked before each
    op's outputs are added, so a tensor freed between two ops is not counted
    at the second). Views and in-place results share a counted storage and add
    nothing; storages named in `ignore` (weights, inputs) are never added.
    Workspace a kernel allocates and frees inside itself (oneDNN's scratchpad)
    is invisible, as it is to torch.profiler."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.known: set[int] = set()
        self.current = 0
        self.peak = 0

    def _sweep(self) -> None:
        for ptr in [p for p, (ref, _) in self.live.items() if ref.expired()]:
            self.current -= self.live.pop(ptr)[1]

    def ignore(self, tensors) -> None:
        """Storages that existed before the measured region (not counted)."""
        for t in tensors:
            if isinstance(t, torch.Tensor):
                self.known.add(t.untyped_storage().data_ptr())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self._sweep()
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            s = t.untyped_storage()
            ptr, n = s.data_ptr(), s.nbytes()
            if n == 0 or ptr in self.live or ptr in self.known:
                continue
            self.live[ptr] = (StorageWeakRef(s), n)
            self.current += n
        self.peak = max(self.peak, self.current)
        return out


def storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind `tensors` (tied weights once)."""
    seen = {}
    for t in tensors:
        if isinstance(t, torch.Tensor):
            s = t.untyped_storage()
            seen[(s.device, s.data_ptr())] = s.nbytes()
    return sum(seen.values())


def allocation_peak(fn, existing=(), device="cpu") -> int:
    """The most bytes allocated at once while fn() runs, above what existed
    before it. CPU: LiveTensorTracker (`existing` names the tensors alive
    before, so outputs that alias them count nothing). CUDA:
    torch.cuda.max_memory_allocated after a reset, minus what was allocated at
    the start (the caching allocator's 512-byte rounding included)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    tracker = LiveTensorTracker()
    tracker.ignore(existing)
    with tracker:
        fn()
    return tracker.peak


def inference_live_bytes(module, *inputs) -> int:
    """Peak bytes of one inference forward (eval, no_grad) above the module's
    weights and buffers: the inputs plus the most intermediates alive at once
    (what the estimate's `inference_peak_bytes - weights_bytes` counts)."""
    module.eval()
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    existing = list(module.parameters()) + list(module.buffers()) + list(inputs)
    with torch.no_grad():
        peak = allocation_peak(lambda: module(*inputs), existing, device)
    return peak + storage_bytes(inputs)


# ------------------------------------------------------------------ inputs
def input_env(graph, seq: dict[str, int], batch: int) -> dict[str, int]:
    """Values for every symbolic dim: the batch symbol and the sequence dims."""
    env = dict(seq)
    if graph.batch_symbol is not None:
        env[graph.batch_symbol] = batch
    return env


def _vocab(graph, input_name: str) -> int:
    """Token ids must index every embedding fed by the input, directly or
    through the int-valued nodes between (unsqueeze, flatten, and a residual
    add, which sums ids): the bound that keeps every embed's index in range."""
    scale = {input_name: 1}     # node -> the most an id of the input can have been multiplied by
    bounds = []
    for n in graph.nodes:       # topological order
        if not n.sources or n.sources[0] not in scale:
            continue
        if n.kind == "embed":
            bounds.append((n.args.vocab - 1) // scale[n.sources[0]] + 1)
        elif n.output.dtype == "int":
            scale[n.name] = sum(scale.get(s, 0) for s in n.sources) if n.kind == "add" else scale[n.sources[0]]
    return min(bounds) if bounds else 2


def example_targets(graph, env: dict[str, int], seed: int = 1, device=None, dtype=None):
    """Targets for the graph's declared loss (None without one), as
    `SeqModel.loss` takes them: class ids for cross_entropy, a float tensor of
    the output's shape for mse, labels [B, target_len] that avoid the blank
    for ctc."""
    spec = graph.loss
    if spec is None:
        return None
    g = torch.Generator().manual_seed(seed)
    shape = [int(evaluate(d, env)) for d in graph.outputs[spec.output].dims]
    if spec.kind == "cross_entropy":
        t = torch.randint(0, shape[-1], shape[:-1], generator=g)
    elif spec.kind == "mse":
        t = torch.randn(shape, generator=g, dtype=dtype or torch.float32)
    else:
        blank = spec.option("blank")
        t = torch.randint(0, shape[-1] - 1, (shape[0], spec.option("target_len")), generator=g)
        t = t + (t >= blank).long()        # every class but the blank
    return t.to(device) if device is not None else t


def example_inputs(graph, env: dict[str, int], seed: int = 0, device=None, dtype=None) -> list:
    """One tensor per declared input, in declaration order (the order
    SeqModel.forward takes): token ids (int64) below the vocab of the embeds
    they feed for `int` inputs, standard normal values for `float` ones."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for name, t in graph.inputs.items():
        shape = [int(evaluate(d, env)) for d in t.dims]
        if t.dtype == "int":
            x = torch.randint(0, _vocab(graph, name), shape, generator=g)
        else:
            x = torch.randn(shape, generator=g, dtype=dtype or torch.float32)
        out.append(x.to(device) if device is not None else x)
    return out
