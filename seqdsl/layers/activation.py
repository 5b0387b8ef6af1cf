"""Element-wise layers: activations, scale and dropout. Shape unchanged, no weights."""
from __future__ import annotations

from typing import Literal

from .base import (example, Layer, LayerArgs, LayerError, ModuleSpec, NoArgs, PositiveFloat, Probability, channels,
                   require_float, with_channels)
from .costs import LayerCost, ParallelRule, numel


FORMULAS = {"relu": "max(x, 0)", "gelu": "x · Φ(x), Φ the standard normal CDF (exact, not tanh)",
            "gelu_tanh": "GELU with Φ approximated by tanh (GPT-2's `gelu_new`, Gemma's `gelu_pytorch_tanh`)",
            "silu": "x · sigmoid(x)", "tanh": "tanh(x)", "sigmoid": "1 / (1 + exp(-x))",
            "squared_relu": "max(x, 0)² (Primer, Nemotron-H)",
            "hardtanh": "x clipped to [min, max]; `hardtanh(min=0, max=20)` is DeepSpeech's clipped ReLU",
            "log_softmax": "log-softmax over the channel axis",
            "softcap": "cap · tanh(x / cap): logit soft-capping (Gemma 2)",
            "glu": "a · sigmoid(b), a and b the two halves of the channels (the Conformer's GLU)"}

# What autograd keeps of each activation for backward: its "input", its
# "output", or "other" (one intermediate of the input's size: squared_relu
# keeps relu's output, softcap keeps tanh's). Read by mlp's rule too.
SAVES = {"relu": "output", "gelu": "input", "gelu_tanh": "input", "silu": "input", "tanh": "output",
         "sigmoid": "output", "squared_relu": "other", "hardtanh": "input", "log_softmax": "output",
         "softcap": "other", "glu": "input"}


class HardtanhArgs(LayerArgs):
    min: float = -1.0
    max: float = 1.0


class SoftcapArgs(LayerArgs):
    cap: PositiveFloat


ARGS = {"hardtanh": HardtanhArgs, "softcap": SoftcapArgs}
ARG_DOCS = {"hardtanh": {"min": "lower bound", "max": "upper bound (above min)"},
            "softcap": {"cap": "the largest magnitude of the output"}}


class Activation(Layer):
    params_rule = "0"

    def __init__(self, kind: str):
        self.kind = kind
        self.summary = f"element-wise {kind}: {FORMULAS[kind]}"
        self.Args = ARGS.get(kind, NoArgs)
        self.arg_docs = ARG_DOCS.get(kind, {})
        self.shape_rule = ("`[.., 2·C] -> [.., C]` (float input, even channels)" if kind == "glu"
                           else "unchanged (float input)")

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, self.kind)
        if self.kind == "hardtanh" and not args.min < args.max:
            raise LayerError(f"hardtanh's min ({args.min}) must be below its max ({args.max})", arg="max")
        if self.kind == "glu":
            c = channels(x)
            if c % 2:
                raise LayerError(f"glu halves the channels, but the input has {c} (an odd number)",
                                 help="give the layer before it an even number of output channels")
            return with_channels(x, c // 2)
        return x

    def cost(self, args, inputs, out, ctx):
        """No FLOPs (element-wise, COST_MODEL.md). Saved as SAVES says; the
        intermediate of squared_relu and softcap also lives in inference."""
        saves = SAVES[self.kind]
        if saves == "input":
            return LayerCost(saves_inputs=(True,))
        if saves == "output":
            return LayerCost(saves_output=True)
        n = numel(inputs[0].dims) * ctx.elem
        return LayerCost(saved_bytes=n, workspace_bytes=n)

    def parallel(self, args, inputs, elem):
        """Elementwise: its output is split as its input is."""
        return ParallelRule(output="input")

    def module(self, node, memory):
        a = node.args
        params = (a.min, a.max) if self.kind == "hardtanh" else (a.cap,) if self.kind == "softcap" else ()
        return ModuleSpec("Act", (self.kind, *params), lowering="activation_torch")

    def examples(self):
        if self.kind == "hardtanh":
            return (example("float[B, T, 8]", "hardtanh"), example("float[B, T, 8]", "hardtanh(min=0, max=20)"))
        if self.kind == "softcap":
            return (example("float[B, T, 8]", "softcap(30)"),)
        if self.kind == "glu":
            return (example("float[B, T, 8]", "glu"), example("float[B, T, 4, 6]", "glu"))
        return (example("float[B, T, 8]", self.kind),)


class ScaleArgs(LayerArgs):
    factor: float
    round: Literal["bfloat16", "float16"] | None = None


class Scale(Layer):
    """x · factor, the factor a constant (an embedding scaled by sqrt(d))."""

    kind = "scale"
    Args = ScaleArgs
    summary = "multiplies by a constant factor (Gemma's embedding · sqrt(d)), the factor optionally rounded to a 16-bit float first"
    shape_rule = "unchanged (float input)"
    params_rule = "0"
    arg_docs = {"factor": "the constant, any finite non-zero number (an expression: `d ** 0.5`)",
                "round": "`bfloat16` or `float16`: the factor is first rounded to that type, as a model that "
                         "keeps it in a 16-bit buffer computes it (transformers' Gemma and RecurrentGemma "
                         "hold sqrt(d) as a bfloat16 `normalizer`: sqrt(2560) = 50.596 multiplies as 50.5); "
                         "none: the factor as given, at the input's dtype"}

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, "scale")
        if args.factor == 0:
            raise LayerError("scale(0) would zero its input", arg="factor",
                             help="give a non-zero factor, or drop the stage")
        return x

    def cost(self, args, inputs, out, ctx):
        """One multiply by a Python number: no FLOPs (element-wise,
        COST_MODEL.md), nothing saved (its gradient needs only the factor)."""
        return LayerCost()

    def parallel(self, args, inputs, elem):
        """Elementwise: its output is split as its input is."""
        return ParallelRule(output="input")

    def module(self, node, memory):
        return ModuleSpec("Scale", (node.args.factor, node.args.round), lowering="activation_torch")

    def examples(self):
        return (example("float[B, T, 8]", "scale(0.5)"), example("float[B, T, 8]", "scale(8 ** 0.5, round=bfloat16)"))


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
