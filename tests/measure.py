"""Measure a torch module the way the cost model counts it (COST_MODEL.md).

* FLOPs: `FlopCounterMode` plus formulas for the CPU kernels it counts as 0
  (ENVIRONMENT.md): `aten._scaled_dot_product_flash_attention_for_cpu` and its
  backward (torch's own SDPA formulas, GQA-aware: 4·B·H·dh·T·S forward, 2.5x
  backward), and oneDNN's `aten.mkldnn_rnn_layer` (2·rows·(W_ih + W_hh) per
  layer and direction) and its backward (2x: weight, hidden and input grads).
  The formulas go in through `custom_mapping`, so nothing global changes;
  `registered()` installs them in torch's registry (via register_flop_formula,
  idempotently) for one block and takes them out again.
* Saved activations: `saved_tensors_hooks`, unique storages' nbytes, with
  parameters and the given inputs excluded.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

aten = torch.ops.aten


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


FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _flash_cpu,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _flash_cpu_backward,
    aten.mkldnn_rnn_layer: _mkldnn_rnn,
    aten.mkldnn_rnn_layer_backward: _mkldnn_rnn_backward,
}


def register() -> list:
    """Install FORMULAS in torch's global registry (idempotent); returns the ops
    it added, for `unregister`."""
    added = []
    for op, formula in FORMULAS.items():
        if op not in flop_counter.flop_registry:
            flop_counter.register_flop_formula(op)(formula)
            added.append(op)
    return added


def unregister(ops) -> None:
    for op in ops:
        flop_counter.flop_registry.pop(op, None)


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


def forward_and_train_flops(module, *inputs, loss=None):
    """(forward FLOPs, forward + backward FLOPs) of module(*inputs) in training mode."""
    module.train()
    loss = loss or (lambda out: (out[0] if isinstance(out, tuple) else out).float().sum())
    with counter() as c:
        out = module(*inputs)
    fwd = c.get_total_flops()
    with counter() as c:
        loss(module(*inputs)).backward()
    return fwd, c.get_total_flops()


@contextmanager
def _collect(exclude_ptrs, seen):
    def pack(t):
        if isinstance(t, torch.nn.Parameter):
            return t
        s = t.untyped_storage()
        ptr = s.data_ptr()
        if ptr not in exclude_ptrs:
            seen[ptr] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield


def saved_bytes(module, *inputs) -> int:
    """Bytes autograd saves for backward in module(*inputs): unique storages,
    parameters and the inputs excluded."""
    module.train()
    exclude = {p.untyped_storage().data_ptr() for p in module.parameters()}
    exclude |= {x.untyped_storage().data_ptr() for x in inputs if isinstance(x, torch.Tensor)}
    seen: dict[int, int] = {}
    with _collect(exclude, seen):
        out = module(*inputs)
    del out
    return sum(seen.values())


def params(module) -> int:
    return sum(p.numel() for p in module.parameters())
