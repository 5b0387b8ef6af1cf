"""What a layer's cost rule returns (`LayerCost`) and the primitives the rules
share: element sizes, tensor sizes, matmul FLOPs, Transformer-XL segment sums.
Conventions: docs/cost_model.md. The model totals are summed in seqdsl.cost.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, reduce

import sympy

from ..graph.ir import TensorType
from ..graph.symbolic import as_int, ceil_div

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
INDEX_BYTES = 8          # token ids are int64
STAT_BYTES = 4           # per-row statistics (logsumexp, norm mean/rstd) stay fp32
ZERO = sympy.Integer(0)
ONE = sympy.Integer(1)


# ------------------------------------------------------------------ cost symbols
# Integer arguments a cost rule can take as sympy symbols: model_cost derives
# one LayerCost for every layer that differs only in them (2,000 attention
# layers with distinct windows: one closed form, not 2,000) and evaluates it
# at each layer's values (seqdsl.cost.model, "shared costs"). The names
# cannot be dims: `@` is not in an identifier.
@lru_cache(maxsize=None)
def cost_symbol(name: str, zero: bool = False) -> sympy.Symbol:
    """`@name`, a positive integer symbol (or non-negative with zero=True)."""
    if zero:
        return sympy.Symbol("@" + name, integer=True, nonnegative=True)
    return sympy.Symbol("@" + name, integer=True, positive=True)


SEGMENT_LENGTH = cost_symbol("length")             # segments(length=L, ...)
SEGMENT_MEMORY = cost_symbol("memory", zero=True)  # segments(..., memory=M)


def is_cost_symbol(s) -> bool:
    return s.is_Symbol and s.name.startswith("@")


@dataclass(frozen=True)
class CostContext:
    """What a cost rule may ask besides its args and input types."""

    elem: int                              # bytes per float element at the model dtype
    # (length, memory) inside `segments`: ints, or SEGMENT_LENGTH and
    # SEGMENT_MEMORY when model_cost shares the cost across segments blocks
    segments: tuple | None = None


@dataclass(frozen=True)
class LayerCost:
    """One layer instance's cost. FLOPs follow FlopCounterMode (2 per MAC);
    bytes are at the context's dtype. Generation fields describe one step at
    the layer's current length n = its input's time dim (the n-th position)."""

    flops: object = ZERO                 # forward
    backward_flops: object = ZERO        # backward work run whenever the layer is in the backward graph
    input_grad_flops: tuple = ()         # extra backward work per input port, only if that input needs a grad
    saved_bytes: object = ZERO           # saved for backward, other than the inputs/output themselves
    saved_if_input_grad: tuple = ()      # per input port: more saved bytes, only if that input needs a grad
    saved_buffer_bytes: object = ZERO    # the layer's own buffers autograd keeps (batchnorm's running
                                         # statistics): one storage however often it runs (segments)
    saves_inputs: tuple = ()             # per input port: autograd keeps that tensor
    saves_inputs_if_grad: tuple = ()     # per input port: kept only when that input needs a gradient
    saves_for_other: bool = False        # ... only while another input needs a gradient (a product
                                         # keeps each factor for the other factor's gradient)
    saves_output: bool = False           # autograd keeps the output tensor
    output_is_view: bool = False         # output shares the input's storage (no new memory)
    inference_view: bool = False         # ... in an inference (eval, no_grad) pass: dropout is identity
    workspace_bytes: object = ZERO       # transient inference memory besides inputs and output (each written once)
    live_workspace_bytes: object | None = None   # the most of it alive at once, beside the inputs and the
                                                 # output (`transient_peak`); None: all of workspace_bytes
    segment_workspace: tuple | None = None   # inside segments, a rule that runs per segment (its memory
                                             # spans pieces): the live workspace on the last piece and
                                             # on the last full one (0 when one piece is all); None: the
                                             # model's walk takes the rule at one piece's length
    step_flops: object | None = None     # one generation step; None: position-wise (flops / n)
    state_bytes: object = ZERO           # generation state carried at length n
    depth: object = ONE                  # sequential steps on the critical path
    time_stride: int = 1                 # a later layer steps once per `time_stride` of this one's steps
    has_weights: bool = False            # needs weight gradients even with params == 0 (tied head)


@dataclass(frozen=True)
class ParallelRule:
    """How one layer instance splits over devices (COST_MODEL.md "Per device,
    under parallelism"), declared beside its cost rule and read by
    seqdsl.cost.parallel. The default is a replicated, position-wise layer."""

    tp: str = "replicate"            # "split": weights and the tensors it saves inside are divided by tp
    output: str = "replicated"       # its output under tp: "replicated", "sharded" (column-parallel) or "input"
    all_reduces: int = 0             # all-reduces of its output per forward (row-parallel end); as many backward
    divides: tuple = ()              # ((what, count), ...): tp must divide each count (heads, widths, vocab)
    cp: str = "local"                # context parallel: "local" (position-wise), "kv" (gathers keys and
                                     # values around the ring) or "state" (hands its state rank to rank)
    kv_bytes: object = ZERO          # "kv": bytes of the keys and values of the whole sequence
    kv_window_bytes: object | None = None   # "kv" with a window: the keys and values of W positions,
                                            # all a rank needs from the ranks before it
    selective_saved: object | None = None   # saved bytes (besides inputs/outputs) under selective recompute


# ------------------------------------------------------------------ helpers
def numel(dims) -> sympy.Expr:
    return reduce(lambda a, b: a * b, dims, ONE)


def tensor_bytes(t: TensorType, elem: int) -> sympy.Expr:
    return numel(t.dims) * (INDEX_BYTES if t.dtype == "int" else elem)


def rows(x: TensorType) -> sympy.Expr:
    """Positions a position-wise layer maps: every axis but channels."""
    return numel(x.dims[:-1])


def matmul(m, k, n) -> sympy.Expr:
    """FLOPs of an (m x k)(k x n) product: 2·m·n·k (aten.mm / bmm convention)."""
    return 2 * m * k * n


def transient_peak(out, before=(), after=()):
    """A layer's inference working set beyond its inputs, as `live_workspace_bytes`
    (docs/cost_model.md, "Inference peak"): `before` lists the transients alive
    together at each moment before the output is written, `after` those alive
    beside the output. The walk adds the output itself, so moments before it
    count less the output's bytes."""
    terms = [sympy.sympify(b) - out for b in before] + [sympy.sympify(a) for a in after]
    return terms[0] if len(terms) == 1 else sympy.Max(*terms, evaluate=False)


def segment_sums(T, length: int, memory: int):
    """Transformer-XL segments over T steps (docs/lowering.md): returns
    (n, Σ len_s², Σ len_s·mem_s, Σ mem_s) with len_s = L except the last,
    mem_s = min(M, s·L) (the last M inputs seen before segment s)."""
    L, M = length, memory
    n = ceil_div(T, L)
    last = T - (n - 1) * L
    sq = (n - 1) * L * L + last * last
    if M == 0:
        return n, sq, ZERO, ZERO
    j = ceil_div(M, L)  # segments before the memory is full
    # n <= j: every earlier step is in memory; else the first j segments fill it.
    # (j·(j - 1) is even: the halves below are whole numbers)
    cross_small = L * L * (n - 1) * (n - 2) / 2 + last * (n - 1) * L
    cross_big = L * L * j * (j - 1) / 2 + M * (T - j * L)
    mem_small = L * n * (n - 1) / 2
    mem_big = L * j * (j - 1) / 2 + M * (n - j)
    if as_int(n) is not None:
        big = as_int(n) > j
        return n, sq, (cross_big if big else cross_small), (mem_big if big else mem_small)
    if isinstance(T, sympy.Basic) and T.is_Symbol:
        # n = ceiling(T/L) with distinct branches: the Piecewise is canonical as
        # built, and its branches are expanded here, once, so expanding a total
        # later finds nothing to rebuild (sympy's evaluation of each relation and
        # Piecewise costs milliseconds per distinct L)
        cond = sympy.LessThan(n, j, evaluate=False)
        pw = lambda a, b: sympy.Piecewise((sympy.expand(a), cond), (sympy.expand(b), True),  # noqa: E731
                                          evaluate=False)
        return n, sq, pw(cross_small, cross_big), pw(mem_small, mem_big)
    cond = sympy.LessThan(n, j)   # the last branch is the one long sequences take
    return (n, sq, sympy.Piecewise((cross_small, cond), (cross_big, True)),
            sympy.Piecewise((mem_small, cond), (mem_big, True)))
