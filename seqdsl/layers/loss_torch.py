"""Lowering of the `loss` statement (rules: loss.py): the declared objective
as torch.nn.functional calls, which `SeqModel.loss(outputs, targets)` runs."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def compute_loss(spec, output: torch.Tensor, targets, target_lengths=None, output_lengths=None) -> torch.Tensor:
    """The mean loss of `output` (the model output `spec.output`) against `targets`.

    cross_entropy: targets are int64 class ids of the output's shape without
    its last axis. mse: a float tensor of the output's shape. ctc: int64
    labels [B, S] (no blank), `target_lengths` [B] (default: all S); every
    one of the output's T steps is used. `output_lengths` [B] (forward's,
    under per-sequence lengths): only each sequence's first steps count
    (ctc's input lengths; cross_entropy and mse average over the valid
    positions only)."""
    if output_lengths is not None:
        if output.dim() < 2 or tuple(output_lengths.shape) != (output.shape[0],):
            raise ValueError(f"output_lengths must have shape ({output.shape[0]},), one per sequence of "
                             f"the output's time axis, got {tuple(output_lengths.shape)}")
        valid = torch.arange(output.shape[1], device=output.device) < output_lengths.to(output.device)[:, None]
    if spec.kind == "cross_entropy":
        classes = output.shape[-1]
        if tuple(targets.shape) != tuple(output.shape[:-1]):
            raise ValueError(f"cross_entropy targets must have shape {tuple(output.shape[:-1])} "
                             f"(the output's without its class axis), got {tuple(targets.shape)}")
        if output_lengths is not None:     # the valid positions' ids; the rest ignored
            targets = targets.masked_fill(~valid.view(*valid.shape, *([1] * (targets.dim() - 2))), -100)
        # [..., C] -> [N, C]: a view, so the loss saves only its log-softmax
        return F.cross_entropy(output.reshape(-1, classes), targets.reshape(-1))
    if spec.kind == "mse":
        if tuple(targets.shape) != tuple(output.shape):
            raise ValueError(f"mse targets must have the output's shape {tuple(output.shape)}, "
                             f"got {tuple(targets.shape)}")
        if output_lengths is not None:
            keep = valid.view(*valid.shape, *([1] * (output.dim() - 2))).expand_as(output)
            return F.mse_loss(output[keep], targets[keep])
        return F.mse_loss(output, targets)
    if spec.kind == "ctc":
        batch, steps = output.shape[0], output.shape[1]
        if targets.dim() != 2 or targets.shape[0] != batch:
            raise ValueError(f"ctc targets must be labels [{batch}, S], got {tuple(targets.shape)}")
        if target_lengths is None:
            target_lengths = torch.full((batch,), targets.shape[1], dtype=torch.long, device=targets.device)
        log_probs = F.log_softmax(output, dim=-1).transpose(0, 1)  # (T, B, C), as ctc_loss takes it
        input_lengths = (torch.full((batch,), steps, dtype=torch.long, device=output.device)
                         if output_lengths is None else output_lengths.to(device=output.device, dtype=torch.long))
        return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=spec.option("blank"))
    raise ValueError(f"unknown loss {spec.kind!r}")  # pragma: no cover - the check refuses it
