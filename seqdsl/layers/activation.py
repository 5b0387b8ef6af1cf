"""Element-wise layers: activations and dropout. Shape unchanged, no weights."""
from __future__ import annotations

from .base import example, Layer, LayerArgs, ModuleSpec, Probability, require_float
from .costs import LayerCost, ParallelRule, numel


FORMULAS = {"relu": "max(x, 0)", "gelu": "x · Φ(x), Φ the standard normal CDF (exact, not tanh)",
            "silu": "x · sigmoid(x)", "tanh": "tanh(x)", "sigmoid": "1 / (1 + exp(-x))"}


class Activation(Layer):
    shape_rule = "unchanged (float input)"
    params_rule = "0"

    def __init__(self, kind: str):
        self.kind = kind
        self.summary = f"element-wise {kind}: {FORMULAS[kind]}"

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, self.kind)
        return x

    def cost(self, args, inputs, out, ctx):
        """No FLOPs. gelu and silu save their input, relu/tanh/sigmoid their output."""
        if self.kind in ("gelu", "silu"):
            return LayerCost(saves_inputs=(True,))
        return LayerCost(saves_output=True)

    def parallel(self, args, inputs, elem):
        """Elementwise: its output is split as its input is."""
        return ParallelRule(output="input")

    def module(self, node, memory):
        return ModuleSpec("Act", (self.kind,), lowering="activation_torch")

    def examples(self):
        return (example("float[B, T, 8]", self.kind),)


class DropoutArgs(LayerArgs):
    p: Probability


class Dropout(Layer):
    kind = "dropout"
    Args = DropoutArgs
    summary = "zeroes each element with probability p and scales the rest by 1 / (1 - p) in training; identity in inference"
    shape_rule = "unchanged (float input)"
    params_rule = "0"
    arg_docs = {"p": "drop probability"}

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, "dropout")
        return x

    def cost(self, args, inputs, out, ctx):
        """nn.Dropout on the CPU multiplies by a float mask it saves (x·e bytes);
        p=0 returns the input itself; in inference it is the identity."""
        if args.p == 0:
            return LayerCost(output_is_view=True, depth=0)
        return LayerCost(saved_bytes=numel(inputs[0].dims) * ctx.elem, inference_view=True)

    def parallel(self, args, inputs, elem):
        """Elementwise: its output is split as its input is."""
        return ParallelRule(output="input")

    def module(self, node, memory):
        return ModuleSpec("nn.Dropout", (node.args.p,))

    def examples(self):
        return (example("float[B, T, 8]", "dropout(0.25)"),)
