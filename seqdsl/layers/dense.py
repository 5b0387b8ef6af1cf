"""Position-wise dense layers: linear, mlp, swiglu."""
from __future__ import annotations

from typing import Literal

from .base import (example, Layer, LayerArgs, LayerError, ModuleSpec, PositiveInt, Probability, channels, require_float, with_channels)
from .module_spec import Tied
from .activation import SAVES
from .costs import LayerCost, ParallelRule, matmul, rows, transient_peak

# the element-wise activations an mlp may put between its linears (seqdsl/layers/activation.py)
Activation = Literal["gelu", "gelu_tanh", "relu", "squared_relu", "silu", "tanh", "sigmoid"]


class LinearArgs(LayerArgs):
    out: PositiveInt
    bias: bool = True
    tie: str | None = None


class Linear(Layer):
    """C -> out. `tie=NAME` reuses the named embed's vocab x dim weight (no new weight)."""

    kind = "linear"
    Args = LinearArgs
    summary = "dense projection of the channel axis (F.linear)"
    shape_rule = "`[.., C] -> [.., out]`"
    params_rule = "C · out + [bias] · out; with tie=NAME only [bias] · out (the weight is the embed's)"
    arg_docs = {"out": "output channels", "bias": "add a bias per output channel",
                "tie": "the `as` name of an embed layer whose vocab x dim weight this layer shares "
                       "(out must be its vocab, C its dim): a tied output head"}

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, "linear")
        c = channels(x)
        if args.tie is not None:
            target = ctx.lookup_alias(args.tie, arg="tie")
            if target.kind != "embed":
                raise LayerError(f"tie={args.tie} names a {target.kind}; only an embed weight can be tied",
                                 arg="tie")
            vocab, dim = target.args.vocab, target.args.dim
            if (args.out, c) != (vocab, dim):
                raise LayerError(f"tie={args.tie}: this linear maps {c} -> {args.out}, but the embed "
                                 f"weight is {vocab} x {dim}; a tied head must map {dim} -> {vocab}",
                                 arg="tie")
        return with_channels(x, args.out)

    def count_params(self, args, inputs, out):
        c = channels(inputs[0])
        weight = 0 if args.tie is not None else c * args.out
        return weight + (args.out if args.bias else 0)

    def cost(self, args, inputs, out, ctx):
        """F.linear (aten.addmm): 2·rows·C·out forward; the weight gradient and the
        input gradient cost the same again; autograd saves the input."""
        f = matmul(rows(inputs[0]), channels(inputs[0]), args.out)
        return LayerCost(flops=f, backward_flops=f, input_grad_flops=(f,), saves_inputs=(True,),
                         has_weights=True)

    def parallel(self, args, inputs, elem):
        """Megatron's pair: a widening linear, or a tied head (over the
        vocabulary), is column-parallel with its output sharded; any other is
        row-parallel, all-reducing its output."""
        c = channels(inputs[0])
        if args.out > c or args.tie is not None:
            return ParallelRule(tp="split", output="sharded", divides=(("out", args.out),))
        return ParallelRule(tp="split", all_reduces=1, divides=(("input channels", c),))

    def module(self, node, memory):
        """F.linear; `tie=NAME` shares the named embed's weight object."""
        a = node.args
        tied = (Tied(a.tie),) if a.tie is not None else ()
        return ModuleSpec("Linear", (channels(node.inputs[0]), a.out, a.bias, *tied), lowering="dense_torch")

    def examples(self):
        return (example("float[B, T, 8]", "linear(6)"), example("float[B, T, 8]", "linear(6, bias=false)"),
                example("int[B, T]", "embed(50, 8) as tok -> linear(50, bias=false, tie=tok)"))


class MlpArgs(LayerArgs):
    hidden: PositiveInt
    out: PositiveInt | None = None
    act: Activation = "gelu"
    dropout: Probability = 0.0
    bias: bool = True


class Mlp(Layer):
    """linear(C -> hidden), act, [dropout], linear(hidden -> out); both with bias."""

    kind = "mlp"
    Args = MlpArgs
    summary = "feed-forward block: linear(C -> hidden), act, dropout, linear(hidden -> out), both with bias unless bias=false"
    shape_rule = "`[.., C] -> [.., out]` (out = C when not given)"
    params_rule = "C · hidden + hidden · out + [bias] · (hidden + out)"
    arg_docs = {"hidden": "hidden width", "out": "output channels; none: C", "act": "activation between the linears",
                "dropout": "dropout probability after the activation",
                "bias": "biases on both linears (false: T5's and PaLM's bias-free feed-forward)"}

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, "mlp")
        c = channels(x)
        return with_channels(x, args.out or c)

    def count_params(self, args, inputs, out):
        c = channels(inputs[0])
        o = args.out or c
        return c * args.hidden + args.hidden * o + ((args.hidden + o) if args.bias else 0)

    def cost(self, args, inputs, out, ctx):
        """fc1 -> act -> dropout -> fc2 (docs/lowering.md). Saved: x (fc1), the
        act's input (gelu, silu) or output (relu, tanh, sigmoid) or its
        intermediate (squared_relu: relu's output), the dropout mask and output,
        fc2's input — each tensor once."""
        n, c, h = rows(inputs[0]), channels(inputs[0]), args.hidden
        o = args.out or c
        f1, f2 = matmul(n, c, h), matmul(n, h, o)
        act_saves_input = SAVES[args.act] != "output"   # its input or an intermediate
        hidden_tensors = int(act_saves_input) + int(not act_saves_input)
        hidden_tensors += 2 if args.dropout > 0 else (1 if act_saves_input else 0)
        live_hidden = 3 if SAVES[args.act] == "other" else 2
        return LayerCost(flops=f1 + f2, backward_flops=f1 + 2 * f2, input_grad_flops=(f1,),
                         saves_inputs=(True,), saved_bytes=hidden_tensors * n * h * ctx.elem,
                         workspace_bytes=live_hidden * n * h * ctx.elem,
                         # fc1's output and the activation (squared_relu: and relu's output, all
                         # alive inside the call); fc1's is freed before fc2 writes
                         live_workspace_bytes=transient_peak(n * o * ctx.elem,
                                                             before=[live_hidden * n * h * ctx.elem],
                                                             after=[n * h * ctx.elem]))

    def parallel(self, args, inputs, elem):
        """Hidden units over tp (first linear column-, second row-parallel): one all-reduce."""
        return ParallelRule(tp="split", all_reduces=1, divides=(("hidden", args.hidden),))

    def module(self, node, memory):
        a, c = node.args, channels(node.inputs[0])
        return ModuleSpec("Mlp", (c, a.hidden, a.out or c, a.act, a.dropout, a.bias), lowering="dense_torch")

    def examples(self):
        return (example("float[B, T, 8]", "mlp(16)"), example("float[B, T, 8]", "mlp(16, out=4, act=relu, dropout=0.1)"),
                example("float[B, T, 8]", "mlp(16, act=squared_relu, dropout=0.1)"), example("float[B, T, 8]", "mlp(16, out=4, act=gelu_tanh, bias=false)"))


class SwigluArgs(LayerArgs):
    hidden: PositiveInt
    out: PositiveInt | None = None
    bias: bool = False


class GegluArgs(SwigluArgs):
    act: Literal["gelu", "gelu_tanh"] = "gelu"


class Swiglu(Layer):
    """w2(act(w1 x) * w3 x): three linears (C->hidden twice, hidden->out),
    bias-free unless bias=true; act silu (swiglu) or gelu (geglu)."""

    shape_rule = "`[.., C] -> [.., out]` (out = C when not given)"
    params_rule = "2 · C · hidden + hidden · out + [bias] · (2 · hidden + out)"

    def __init__(self, kind: str = "swiglu"):
        self.kind = kind
        self.Args = SwigluArgs if kind == "swiglu" else GegluArgs
        act = "silu" if kind == "swiglu" else "act"
        self.summary = f"gated feed-forward w2({act}(w1 x) · w3 x), three linears, without bias unless bias=true"
        self.arg_docs = {"hidden": "hidden width (of w1 and w3)", "out": "output channels; none: C",
                         "bias": "biases on all three linears (RecurrentGemma's MLP: "
                                 "`geglu(hidden, act=gelu_tanh, bias=true)`)"}
        if kind == "geglu":
            self.arg_docs["act"] = "gelu (exact, Shazeer 2020) or gelu_tanh (T5 v1.1, Gemma)"

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, self.kind)
        return with_channels(x, args.out or channels(x))

    def count_params(self, args, inputs, out):
        c, h = channels(inputs[0]), args.hidden
        o = args.out or c
        return 2 * c * h + h * o + ((2 * h + o) if args.bias else 0)

    def cost(self, args, inputs, out, ctx):
        """w2(act(w1 x) * w3 x): saved x, w1 x (silu and gelu keep their
        input), act(w1 x) and w3 x (mul), the product (w2). With bias=true
        each linear is an addmm: the same FLOPs (the bias add is element-wise)."""
        n, c, h = rows(inputs[0]), channels(inputs[0]), args.hidden
        f_in, f_out = 2 * matmul(n, c, h), matmul(n, h, args.out or c)
        return LayerCost(flops=f_in + f_out, backward_flops=f_in + 2 * f_out, input_grad_flops=(f_in,),
                         saves_inputs=(True,), saved_bytes=4 * n * h * ctx.elem,
                         workspace_bytes=3 * n * h * ctx.elem,
                         # silu(w1 x), w3 x and their product; only the product is left when w2 writes
                         live_workspace_bytes=transient_peak(n * (args.out or c) * ctx.elem,
                                                             before=[3 * n * h * ctx.elem], after=[n * h * ctx.elem]))

    def parallel(self, args, inputs, elem):
        """Hidden units over tp (gate and up column-, down row-parallel): one all-reduce."""
        return ParallelRule(tp="split", all_reduces=1, divides=(("hidden", args.hidden),))

    def module(self, node, memory):
        a, c = node.args, channels(node.inputs[0])
        act = "silu" if self.kind == "swiglu" else a.act
        return ModuleSpec("Swiglu", (c, a.hidden, a.out or c, act, a.bias), lowering="dense_torch")

    def examples(self):
        if self.kind == "geglu":
            return (example("float[B, T, 8]", "geglu(16)"), example("float[B, T, 8]", "geglu(16, out=4, act=gelu_tanh)"),
                    example("float[B, T, 8]", "geglu(16, act=gelu_tanh, bias=true)"))
        return (example("float[B, T, 8]", "swiglu(16)"), example("float[B, T, 8]", "swiglu(16, out=4)"),
                example("float[B, T, 8]", "swiglu(16, out=4, bias=true)"))


__all__ = ["Linear", "Mlp", "Swiglu", "LayerError"]
