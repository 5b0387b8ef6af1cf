"""join: two sequence axes into one grid, the RNN-T joiner's broadcast add.

`x -> join(context=pred)` with x `[B, T, C]` and pred `[B, U, C]` gives
`out[b, t, u, :] = x[b, t, :] + pred[b, u, :]`, a `[B, T, U, C]` value; the
position-wise layers after it (tanh, relu, linear(vocab)) map its B·T·U rows.
That is torchaudio's RNN-T `_Joiner` before its activation and projection:
`source.unsqueeze(2) + target.unsqueeze(1)`.
"""
from __future__ import annotations

from ..graph.ir import TensorType
from ..graph.symbolic import fmt_dim
from .base import example, Layer, LayerArgs, LayerError, ModuleSpec, ValueRef, channels, require_float, require_rank
from .costs import LayerCost


class JoinArgs(LayerArgs):
    context: ValueRef


class Join(Layer):
    """[B, T, C] joined with context [B, U, C] -> [B, T, U, C] (broadcast add)."""

    kind = "join"
    Args = JoinArgs
    summary = ("every pair of positions of the input and another bound value, added: out[b, t, u] = "
               "x[b, t] + context[b, u] (the RNN-T joiner)")
    shape_rule = "`[B, T, C]` with context `[B, U, C]` -> `[B, T, U, C]`"
    params_rule = "0"
    arg_docs = {"context": "a value bound earlier in the model, float `[B, U, C]` with the input's B and C"}
    notes = ("Layers after it map the B·T·U rows (`join(context=pred) -> tanh -> linear(vocab)`). "
             "Causal over the input, which streams (each chunk of T joins the whole context); "
             "the context is read whole, as cross_attention's is.")

    def context_args(self):
        return ("context",)

    def infer_shape(self, args, inputs, ctx):
        x, context = inputs
        require_float(x, "join")
        require_rank(x, 3, what=" [B, T, C]")
        name = args.context.name
        if context.dtype != "float" or context.rank != 3:
            raise LayerError(f"context={name} must be a float [B, U, C] value, got {context}", arg="context")
        if context.dims[0] != x.dims[0]:
            raise LayerError(f"context={name} {context} has batch {fmt_dim(context.dims[0])}, "
                             f"the input {x} has {fmt_dim(x.dims[0])}", arg="context",
                             help="join values of the same batch")
        c, cc = channels(x), channels(context)
        if c != cc:
            raise LayerError(f"context={name} {context} has {cc} channels, the input {x} has {c}",
                             arg="context", help=f"project one of them first, e.g. `-> linear({c})` on {name}")
        return TensorType("float", (x.dims[0], x.dims[1], context.dims[1], x.dims[2]))

    def cost(self, args, inputs, out, ctx):
        """x.unsqueeze(2) + context.unsqueeze(1): FlopCounterMode counts no
        FLOPs for the add, nor for the sums over U and T that give the two
        gradients; the add saves nothing. The output, B·T·U·C, is new memory.
        One generation step joins one position of x with the whole context."""
        return LayerCost()

    def module(self, node, memory):
        return ModuleSpec("Join", lowering="join_torch")

    def examples(self):
        return (example("float[B, T, 8]", "join(context=pred)", "pred: float[B, S, 8]"),
                example("float[B, T, 8]", "join(context=pred) -> tanh -> linear(5)", "pred: float[B, S, 8]"))
