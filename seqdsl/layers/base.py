"""What every layer kind declares, and helpers its rules share.

A layer kind is one class with, side by side:

* `Args`         – a pydantic model: the argument schema, in positional order;
* `infer_shape`  – output TensorType from the input types (raises LayerError);
* `count_params` – exact parameter count, PyTorch's conventions;
* `cost`         – closed-form cost (seqdsl.cost), added by the cost model;
* `module`       – the torch module that runs it, as a `ModuleSpec` (class
                   name and constructor arguments): `lower` instantiates it,
                   `seqdsl compile -o` prints it, so the two cannot drift.

Rules raise `LayerError`; the elaborator turns it into a diagnostic at the
offending argument (when `arg` is given) or the stage.
"""
from __future__ import annotations

from typing import Annotated, ClassVar

import sympy
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from ..graph.ir import Ref, TensorType
from .costs import ParallelRule
from .module_spec import ModuleSpec
from ..limits import MAX_DIM
from ..graph.symbolic import as_int, fmt_dim

PositiveInt = Annotated[int, Field(gt=0, le=MAX_DIM)]
NonNegInt = Annotated[int, Field(ge=0, le=MAX_DIM)]
Probability = Annotated[float, Field(ge=0.0, lt=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
#: An argument naming another bound value (`context=memory`); dumps as the name.
ValueRef = Annotated[Ref, PlainSerializer(lambda r: r.name, return_type=str)]


class LayerArgs(BaseModel):
    """Strict: `hidden="big"` is an error, not a coercion; unknown keys are refused."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True,
                              arbitrary_types_allowed=True)


class NoArgs(LayerArgs):
    pass


class ResidualArgs(LayerArgs):
    """The args of a residual's `add` node when it scales the body:
    `residual(scale=s) { body }` is x + s · body(x)."""

    scale: float = 1.0


class LayerError(Exception):
    def __init__(self, message: str, arg: str | None = None, help: str | None = None):
        super().__init__(message)
        self.message = message
        self.arg = arg
        self.help = help


class Layer:
    kind: ClassVar[str]
    Args: ClassVar[type[LayerArgs]] = NoArgs
    #: True when output position t depends only on inputs at positions <= t.
    causal_by_default: ClassVar[bool] = True
    #: True when the values its `context_args` name are read position by
    #: position with the input (`mul`, `concat`): they stream with it, chunk
    #: by chunk, instead of being read whole (`cross_attention`).
    aligned_context: ClassVar[bool] = False

    # The kind's reference (`seqdsl layers`, docs/language.md), generated from
    # here so the two cannot drift; tests/test_language_doc.py requires the
    # first three. Argument names, types and defaults come from `Args`.
    #: One line: what the layer computes.
    summary: ClassVar[str | None] = None
    #: The shape rule, input -> output, e.g. "`[B, T, C] -> [B, T, out]`".
    shape_rule: ClassVar[str | None] = None
    #: The parameter count as a formula of C (input channels) and the
    #: arguments, PyTorch's conventions; "0" for none.
    params_rule: ClassVar[str | None] = None
    #: When causality depends on the arguments (`is_causal` overridden), the
    #: rule in words; otherwise `causal_by_default` says it.
    causal_rule: ClassVar[str | None] = None
    #: Optional: what an argument means, beside its type and default.
    arg_docs: ClassVar[dict[str, str]] = {}
    #: Optional: restrictions and remarks, a sentence or two.
    notes: ClassVar[str | None] = None
    #: Integer arguments `cost` also accepts as a positive integer symbol
    #: (seqdsl.layers.costs.cost_symbol), so layers that differ only in them
    #: share one derived cost (seqdsl.cost.model). A rule listed here must not
    #: branch in Python on the argument's value.
    symbolic_cost_args: ClassVar[tuple[str, ...]] = ()
    #: Per-sequence lengths (`input x: ... lengths`, docs/language.md,
    #: "Variable lengths"): True when the torch module takes `lengths=` (one
    #: int64 per sequence, of its input's axis 1) and keeps each sequence's
    #: valid outputs equal to running that sequence alone; its output's
    #: lengths are its shape rule's axis 1 at each sequence's length. False:
    #: the layer runs on the padded batch as it is, which `check_lengths`
    #: allows only for a causal layer that keeps the time axis.
    takes_lengths: ClassVar[bool] = False
    #: True when the module masks its `context=` value's padding itself
    #: (`context_lengths=`, cross_attention's key mask); otherwise a context
    #: value with lengths must carry its input's.
    masks_context: ClassVar[bool] = False

    def infer_shape(self, args, inputs: list[TensorType], ctx) -> TensorType:
        raise NotImplementedError

    def count_params(self, args, inputs: list[TensorType], out: TensorType) -> int:
        return 0

    def is_causal(self, args, inputs=None) -> bool:
        """Whether the layer can stream: no output looks at later inputs."""
        return self.causal_by_default

    def module(self, node, memory: int | None) -> "ModuleSpec":
        """The torch module for `node` (docs/lowering.md) as data: a class of
        seqdsl.backend.modules (or `nn.X`) and its constructor arguments.
        memory: M inside segments(memory=M), else None. Each kind overrides it."""
        raise NotImplementedError(f"no lowering for layer kind {self.kind!r}")

    def lower(self, node, ctx):
        """The torch module for `node`, built from `module` (torch loads here).
        ctx: {"tied": {alias: module}, "memory": M inside segments, else None}."""
        from .lowering import instantiate   # lazy: torch loads only when a module is built
        return instantiate(self.module(node, ctx.get("memory")), ctx["tied"])

    def examples(self) -> tuple[str, ...]:
        """Small model bodies that use this kind (`example(...)`), which the
        layer conformance harness (tests/test_layer_harness.py) builds and
        measures: parameters, FLOPs, saved and live bytes against the estimate,
        streaming against forward, compiled against eager. Every kind gives at
        least one, covering its options."""
        raise NotImplementedError(f"layer kind {self.kind!r} gives no examples for the conformance harness")

    def parallel(self, args, inputs: list[TensorType], elem: int) -> ParallelRule:
        """How the layer splits over tensor- and context-parallel devices
        (seqdsl.cost.parallel). Default: replicated weights, position-wise,
        output replicated; split layers override it beside their `cost`."""
        return ParallelRule()

    def check_lengths(self, args, inputs: list[TensorType], out: TensorType) -> None:
        """Raise LayerError when the layer cannot run on a padded batch with
        per-sequence lengths along axis 1. The default: a layer without its own
        rule (`takes_lengths`) must be causal, so valid positions never read
        padding (position-wise layers, causal convolutions and recurrences),
        and keep the time axis where it is."""
        if self.takes_lengths:
            return
        if not self.is_causal(args, inputs):
            raise LayerError("has no rule for per-sequence lengths: it mixes positions over time, "
                             "so the padding would change the valid outputs",
                             help="drop `lengths` from the input (the module then runs on the padded batch "
                                  "as it is), or use a layer that takes lengths (docs/language.md, "
                                  "\"Variable lengths\")")
        x = inputs[0]
        if out.rank < 2 or x.rank < 2 or out.dims[1] != x.dims[1]:
            raise LayerError(f"moves or changes the time axis ({x} -> {out}), which carries "
                             "per-sequence lengths", help="keep axis 1 as the time axis while the "
                             "value carries lengths (docs/language.md, \"Variable lengths\")")

    def context_args(self) -> tuple[str, ...]:
        """Argument names that refer to other bound values (extra inputs)."""
        return ()


# ------------------------------------------------------------------ helpers
def example(input_type: str, stages: str, *more_inputs: str) -> str:
    """A model body for `Layer.examples`: `input x: <input_type>` (plus
    `name: type` inputs), `y = x -> <stages>`, `output y`."""
    inputs = [f"input {m}" for m in more_inputs] + [f"input x: {input_type}"]   # x last: the one that streams
    return "\n".join(inputs + [f"y = x -> {stages}", "output y"])


def require_rank(x: TensorType, rank: int | None = None, *, at_least: int | None = None,
                 what: str = "") -> None:
    if rank is not None and x.rank != rank:
        raise LayerError(f"expects a rank-{rank} input{what}, got {x}")
    if at_least is not None and x.rank < at_least:
        raise LayerError(f"expects an input of rank {at_least} or more{what}, got {x}")


def require_float(x: TensorType, kind: str) -> None:
    if x.dtype != "float":
        raise LayerError(f"{kind} expects a float input, got int {x} (token ids)",
                         help="embed token ids first: -> embed(vocab, dim)")


def channels(x: TensorType) -> int:
    c = as_int(x.dims[-1]) if x.dims else None
    if c is None:
        raise LayerError(f"the channel (last) dim of {x} must be a number, not '{fmt_dim(x.dims[-1])}'")
    return c


def with_channels(x: TensorType, c: int) -> TensorType:
    return TensorType("float", x.dims[:-1] + (sympy.Integer(c),))
