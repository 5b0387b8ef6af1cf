"""Token embeddings and absolute position encodings."""
from __future__ import annotations

from typing import Literal

import sympy

from ..graph.ir import TensorType
from .base import example, Layer, LayerArgs, LayerError, ModuleSpec, PositiveInt, channels, require_float, require_rank
from .costs import LayerCost, ParallelRule


class EmbedArgs(LayerArgs):
    vocab: PositiveInt
    dim: PositiveInt


class Embed(Layer):
    """int[B, T] -> float[B, T, dim]; weight vocab x dim (nn.Embedding)."""

    kind = "embed"
    Args = EmbedArgs
    summary = "token embedding: looks up a learned vector per token id (nn.Embedding)"
    shape_rule = "`int[B, T] -> float[B, T, dim]` (any int rank: one axis of dim added)"
    params_rule = "vocab · dim"
    arg_docs = {"vocab": "number of token ids (0 .. vocab - 1)", "dim": "embedding width"}

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        if x.dtype != "int":
            raise LayerError(f"embed expects int token ids, got float {x}",
                             help="declare the input as int[B, T], or use linear(dim) on float features")
        require_rank(x, at_least=1)
        return TensorType("float", x.dims + (sympy.Integer(args.dim),))

    def count_params(self, args, inputs, out):
        return args.vocab * args.dim

    def cost(self, args, inputs, out, ctx):
        """A gather: no FLOPs; saves the indices (the model's input)."""
        return LayerCost(saves_inputs=(True,), has_weights=True)

    def parallel(self, args, inputs, elem):
        """Vocabulary over tp (Megatron's VocabParallelEmbedding): one all-reduce."""
        return ParallelRule(tp="split", all_reduces=1, divides=(("vocab", args.vocab),))

    def module(self, node, memory):
        return ModuleSpec("Embed", (node.args.vocab, node.args.dim), lowering="embed_torch")

    def examples(self):
        return (example("int[B, T]", "embed(50, 8)"),)


class PosencArgs(LayerArgs):
    kind: Literal["sinusoidal", "learned"] = "sinusoidal"
    max_len: PositiveInt | None = None


class Posenc(Layer):
    """Adds absolute positions: fixed sinusoids, or a learned max_len x C table."""

    kind = "posenc"
    Args = PosencArgs
    summary = "adds absolute position encodings: fixed sinusoids, or a learned table of max_len positions"
    shape_rule = "`[B, T, C] -> [B, T, C]` (sinusoidal needs an even C)"
    params_rule = "learned: max_len · C; sinusoidal: 0"
    arg_docs = {"kind": "`sinusoidal` (fixed) or `learned` (a max_len x C table)",
                "max_len": "positions the learned table holds; required by `learned`"}
    notes = "Not allowed inside `segments` (positions would restart per segment): use attention(pos=relative) there."

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, "posenc")
        require_rank(x, 3, what=" [B, T, C]")
        c = channels(x)
        if args.kind == "learned" and args.max_len is None:
            raise LayerError("posenc(learned) needs max_len, the number of positions it learns",
                             arg="kind", help="posenc(learned, max_len=1024)")
        if args.kind == "sinusoidal" and c % 2:
            raise LayerError(f"sinusoidal posenc needs an even channel count, got {c}")
        if ctx.in_segments:
            raise LayerError("posenc cannot run inside segments (positions restart per segment)",
                             help="add positions before segments, or use attention(pos=relative)")
        return x

    def count_params(self, args, inputs, out):
        return args.max_len * channels(inputs[0]) if args.kind == "learned" else 0

    def cost(self, args, inputs, out, ctx):
        """x + table[offset:offset+T]: an add, nothing saved; the sinusoid table
        (T x C) is built per call."""
        x = inputs[0]
        table = 0 if args.kind == "learned" else x.dims[1] * channels(x) * ctx.elem
        return LayerCost(workspace_bytes=table)

    def module(self, node, memory):
        a = node.args
        return ModuleSpec("Posenc", (channels(node.inputs[0]), a.kind, a.max_len), lowering="embed_torch")

    def examples(self):
        return (example("float[B, T, 8]", "posenc"), example("float[B, T, 8]", "posenc(learned, max_len=256)"))
