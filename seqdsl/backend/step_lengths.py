"""Streams that end at different steps: `step(chunk, state=..., lengths=n)`
(docs/language.md, "Variable lengths"), n the valid steps of each sequence in
this chunk. A stream's valid steps are a prefix of its chunk and, once it has
ended (a chunk with fewer valid steps than the chunk's length), it has none
again. SeqModel.step cuts the chunk at the distinct counts (`pieces`) and runs
each piece as a chunk of its own (streaming is the same for any chunking).
Where a stream ends, its state rows are kept (`freeze_rows`); after every
piece that is padding for it they are put back (`carry_rows`), and its
outputs there are zeroed.
"""
from __future__ import annotations

import torch

from ..errors import error


def check_step_lengths(model, lengths, n: int, state: dict) -> torch.Tensor:
    """step's `lengths=`: an integer tensor [B] of 0..n (n: the chunk's steps);
    a sequence whose stream ended in an earlier chunk has 0. The int64 counts."""
    spec, b = model.spec_name, state["__batch__"]
    if not isinstance(lengths, torch.Tensor) or lengths.is_floating_point() or lengths.is_complex() \
            or lengths.dtype == torch.bool:
        raise TypeError(f"{spec}: step's lengths= is an integer tensor [B] of each sequence's valid steps in "
                        f"the chunk, not {lengths.dtype if isinstance(lengths, torch.Tensor) else type(lengths).__name__}")
    if lengths.dim() != 1 or lengths.shape[0] != b:
        raise ValueError(f"{spec}: step's lengths= has shape {tuple(lengths.shape)}, but the state streams "
                         f"{b} sequences: one count per sequence, shape ({b},)")
    counts = lengths.to(dtype=torch.long, device="cpu")
    if counts.numel() and (int(counts.min()) < 0 or int(counts.max()) > n):
        raise ValueError(f"{spec}: step's lengths= must be 0..{n} (the chunk's steps), got {counts.tolist()}")
    ended = state.get("__ended__")
    if ended is not None and bool((ended & (counts > 0)).any()):
        rows = torch.nonzero(ended & (counts > 0)).flatten().tolist()
        raise ValueError(f"{spec}: sequence(s) {rows} ended in an earlier chunk (fewer valid steps than the "
                         f"chunk), so their lengths= must be 0 now; start a new state for a new stream")
    return counts


def refuse_step_lengths(model, skip) -> None:
    """A layer that holds frames back (emformer) runs its segments when they
    are whole, not when the chunk ends: a piece of a chunk is not its unit."""
    for node in model._graph.nodes:
        if node.kind == "input" or node.name in skip:
            continue
        if getattr(model._mods.get(node.name), "holds_frames", False):
            raise error(f"{model.spec_name}: step(lengths=...) cannot end streams inside {node.kind} "
                        f"'{node.name}' (line {node.line}): it holds frames back until a segment and its "
                        "lookahead are whole", span=node.span,
                        help="stream each sequence with its own state, ending it with step(..., final=True)")


def pieces(counts: torch.Tensor, n: int) -> list[tuple[int, int]]:
    """The chunk [0, n) cut at each distinct count strictly inside it: in each
    piece every sequence is either valid throughout or padding throughout."""
    cuts = sorted({int(c) for c in counts.tolist() if 0 < c < n})
    edges = [0, *cuts, n]
    return [(lo, hi) for lo, hi in zip(edges, edges[1:])] or [(0, 0)]


def freeze_rows(states: dict, frozen: dict, rows: torch.Tensor, batch_dims: dict, initial: dict) -> None:
    """Keep the state rows of the sequences `rows` (bool [B]) as they are now,
    where they end, in `frozen` (layer -> {key: tensor}): copies, since a
    decoding step may write into its state (mamba2's ssd_step). Other rows
    keep what they had; a row never kept holds the layer's initial value
    (`initial`: layer -> {key: value}, else 0)."""
    for name, st, dim, init in _layer_states(states, batch_dims, initial):
        mine = frozen.setdefault(name, {})
        for key, value in st.items():
            kept = _keep(value, mine.get(key), rows, dim, init.get(key, 0.0))
            if kept is not None:
                mine[key] = kept


def _layer_states(states: dict, batch_dims: dict, initial: dict):
    """Each layer's state dict (not the model's own `__` entries), with its
    batch axis and its initial values."""
    for name, st in states.items():
        if isinstance(st, dict) and not name.startswith("__"):
            yield name, st, batch_dims.get(name, 0), initial.get(name, {})


def _olds(new, old) -> list:
    """`old`'s parts beside a tuple state `new`'s (None where it has none)."""
    return old if isinstance(old, (tuple, list)) and len(old) == len(new) else [None] * len(new)


def _keep(new, old, rows, dim, init):
    if isinstance(new, (tuple, list)):
        return type(new)(_keep(a, o, rows, dim, init) for a, o in zip(new, _olds(new, old)))
    if not isinstance(new, torch.Tensor) or new.dim() <= dim or new.shape[dim] != rows.shape[0]:
        return None
    mask = _rows_mask(rows, new, dim)
    if isinstance(old, torch.Tensor) and old.shape == new.shape:
        return torch.where(mask, new, old)
    # none kept yet, or a growing cache (never put back: its shape moves on)
    return new.masked_fill(~mask, init) if old is None else new.clone()


def carry_rows(states: dict, frozen: dict, padded: torch.Tensor, batch_dims: dict, initial: dict) -> None:
    """Put the `padded` sequences' state rows (bool [B]) back as `frozen`
    kept them where each one ended: for each layer's state tensors that keep
    their shape (recurrent states, convolution windows, a full window cache);
    a tensor first made after a row ended gets that row at its initial
    value. A growing cache (attention's keys and values) changes shape: an
    ended stream's rows there are never read by a valid query again."""
    for name, st, dim, init in _layer_states(states, batch_dims, initial):
        old = frozen.get(name, {})
        for key, value in st.items():
            st[key] = _carry(value, old.get(key), padded, dim, init.get(key, 0.0))


def _rows_mask(rows, like, dim):
    shape = [1] * like.dim()
    shape[dim] = rows.shape[0]
    return rows.to(like.device).view(shape)


def _carry(new, old, padded, dim, init):
    if isinstance(new, (tuple, list)):
        return type(new)(_carry(a, o, padded, dim, init) for a, o in zip(new, _olds(new, old)))
    if not isinstance(new, torch.Tensor) or new.dim() <= dim or new.shape[dim] != padded.shape[0]:
        return new
    mask = _rows_mask(padded, new, dim)
    if isinstance(old, torch.Tensor) and old.shape == new.shape:
        return torch.where(mask, old, new)
    if old is None:
        return new.masked_fill(mask, init)
    return new
