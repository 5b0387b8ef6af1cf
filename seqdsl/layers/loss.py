"""The `loss` statement: the objective a model is trained with.

    loss cross_entropy(logits)          # class ids over the last axis (a vocabulary)
    loss ctc(logits, target_len=200)    # CTC over [B, T, C], blank class 0
    loss mse(y)                         # mean-squared error against a float target

Its check (which output, which options) and its cost sit here; its lowering
(`SeqModel.loss`) in loss_torch.py. The first positional argument names the
output the loss is computed on; it may be left out when the model has one
output. Torch is not imported.

Cost (COST_MODEL.md): no FLOPs — log-softmax, NLL, CTC's forward-backward
recursion and the squared error are element-wise work, and FlopCounterMode
counts none of them (tests/test_loss.py checks it). Memory: the working set of
the loss in a training step, on top of the model's saved activations, as
`torch.nn.functional`'s kernels allocate it (elem bytes each, M = elements of
the output):

* cross_entropy: the log-softmax saved for backward (M), the gradient NLL's
  backward writes into it (M) and the logits' gradient (M): 3·M.
* ctc: the log-softmax saved for backward (M), one gradient of its size at a
  time (M), and CTC's saved alpha table of B·T·(2·target_len + 1): 2·M + that.
* mse: the difference (M) and the output's gradient (M): 2·M.

The targets are an input of the step, like the model's inputs, and are not counted.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import Span
from ..graph.ir import TensorType
from ..graph.symbolic import as_int
from ..limits import MAX_DIM
from .base import LayerError
from .costs import numel

#: kind -> (summary, {option: default}); an option whose default is None is required
LOSSES = {
    "cross_entropy": ("softmax cross-entropy against class ids over the output's last axis "
                      "(F.cross_entropy, mean over positions)", {}),
    "ctc": ("connectionist temporal classification over a float[B, T, C] output "
            "(log-softmax, then F.ctc_loss); target_len: the longest target sequence", {"blank": 0, "target_len": None}),
    "mse": ("mean-squared error against a float target of the output's shape (F.mse_loss)", {}),
}


@dataclass(frozen=True)
class LossSpec:
    """A checked `loss` statement."""

    kind: str
    output: str                      # the output the loss is computed on
    options: tuple                   # ((name, value), ...) in LOSSES order, defaults filled in
    span: Span | None = None

    def option(self, name: str):
        return dict(self.options)[name]


def check_loss(kind: str, output: TensorType, options: dict) -> tuple:
    """The options of a `loss KIND(...)` on `output`, defaults filled in, in
    LOSSES order; LayerError (with `arg` naming the option) when they do not fit."""
    if kind not in LOSSES:
        raise LayerError(f"unknown loss '{kind}'", help="losses: " + ", ".join(LOSSES))
    schema = LOSSES[kind][1]
    for name in options:
        if name not in schema:
            raise LayerError(f"{kind} takes no option '{name}'", arg=name,
                             help=("options: " + ", ".join(schema)) if schema else f"{kind} takes only the output's name")
    values = {name: options.get(name, default) for name, default in schema.items()}
    for name, value in values.items():
        if value is None:
            raise LayerError(f"{kind} needs {name}=", help=f"write {kind}(..., {name}=N)")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DIM:
            raise LayerError(f"{name} must be a non-negative integer, got {value!r}", arg=name)
    if output.dtype != "float":
        raise LayerError(f"{kind} needs a float output, got {output}")
    if kind == "cross_entropy" and (output.rank < 2 or as_int(output.dims[-1]) is None):
        raise LayerError(f"cross_entropy needs an output [B, ..., classes] with a fixed class count, got {output}")
    if kind == "ctc":
        if output.rank != 3 or as_int(output.dims[-1]) is None:
            raise LayerError(f"ctc needs an output float[B, T, classes], got {output}")
        if not values["blank"] < as_int(output.dims[-1]):
            raise LayerError(f"blank={values['blank']} is not one of the {as_int(output.dims[-1])} classes",
                             arg="blank")
        if values["target_len"] < 1:
            raise LayerError("target_len must be at least 1", arg="target_len")
    return tuple(values.items())


def loss_bytes(spec: LossSpec, output: TensorType, elem: int):
    """Bytes the loss adds to a training step (the module docstring's rule), in
    the symbolic dims."""
    m = numel(output.dims)
    if spec.kind == "cross_entropy":
        return 3 * m * elem
    if spec.kind == "ctc":
        batch, steps = output.dims[0], output.dims[1]
        return 2 * m * elem + batch * steps * (2 * spec.option("target_len") + 1) * elem
    return 2 * m * elem
