"""Normalisations over the channel axis."""
from __future__ import annotations

from ..graph.symbolic import smax
from .base import example, Layer, LayerArgs, ModuleSpec, PositiveFloat, channels, require_float
from .costs import LayerCost, STAT_BYTES, rows


class NormArgs(LayerArgs):
    eps: PositiveFloat = 1e-5


class RmsNormArgs(NormArgs):
    offset: float = 0.0


SUMMARIES = {"layernorm": "layer normalisation over the channel axis, with weight and bias",
             "rmsnorm": "RMS normalisation over the channel axis, with weight",
             "batchnorm": "batch normalisation of each channel over all other axes, with weight and bias "
                          "(running statistics are buffers)"}


class Norm(Layer):
    """layernorm (weight + bias), rmsnorm (weight), batchnorm (weight + bias;
    running statistics are buffers). Shape unchanged."""

    shape_rule = "unchanged (float input)"

    def __init__(self, kind: str, params_per_channel: int):
        self.kind = kind
        self.Args = RmsNormArgs if kind == "rmsnorm" else NormArgs
        self.arg_docs = {"eps": "added to the variance (mean square for rmsnorm) before the square root"}
        if kind == "rmsnorm":
            self.arg_docs["offset"] = ("the normalised x multiplies by (offset + weight), the weight starting at "
                                       "1 - offset; `offset=1` is Gemma's RMSNorm (x · (1 + w), w from zero, "
                                       "computed in float32 and cast back)")
        self.params_per_channel = params_per_channel
        self.summary = SUMMARIES[kind]
        self.params_rule = "C" if params_per_channel == 1 else f"{params_per_channel} · C"

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, self.kind)
        channels(x)
        return x

    def count_params(self, args, inputs, out):
        return self.params_per_channel * channels(inputs[0])

    def cost(self, args, inputs, out, ctx):
        """No FLOPs (elementwise). Saved, as aten saves them: layernorm x and
        mean/rstd per row (at the input dtype on the CPU); RMSNorm (composite,
        computed in fp32) x·rstd in fp32 for the weight gradient, and, only when
        the input needs a gradient, x — or its fp32 copy under bf16/fp16 — and
        rstd; batchnorm x, save_mean/invstd and the running buffers (4 x C fp32).
        Inference: rmsnorm's x² is alive with the mean square and rstd it makes
        (rsqrt runs before x² is freed), and rstd with x·rstd and the output:
        x² (or x·rstd) plus one fp32 value per row beside the output, which
        with one channel is as large as x (the live set was 0.75x measured)."""
        n, c, e = rows(inputs[0]), channels(inputs[0]), ctx.elem
        if self.kind == "rmsnorm":
            upcast = e != STAT_BYTES
            # offset: (offset + w), C floats, which the product keeps for the input gradient
            offset = c * STAT_BYTES if args.offset else 0
            per_row = n * STAT_BYTES
            if args.offset:
                # OffsetRMSNorm: the per-row rstd is freed with x·rstd's temporaries before
                # the output exists (1.17-1.32x measured when it was counted beside the
                # output: random seeds 600, 1201, 1550). In fp32 the product is the output,
                # made while x·rstd and (offset + w) are alive; a 16-bit output is cast from
                # the fp32 product after (offset + w) is freed, and the moments before the
                # output exists (the fp32 copy, x² and the mean square; the product beside
                # (offset + w)) are larger with one channel or one row.
                if upcast:
                    per_row = smax(0, n * (STAT_BYTES - e * c), c * STAT_BYTES - n * c * e)
                else:
                    per_row = c * STAT_BYTES
            return LayerCost(saves_inputs_if_grad=(not upcast,), has_weights=True,
                             workspace_bytes=n * c * STAT_BYTES * (2 if upcast else 1) + per_row,
                             saved_bytes=n * c * STAT_BYTES,
                             saved_if_input_grad=(n * STAT_BYTES + (n * c * STAT_BYTES if upcast else 0) + offset,))
        if self.kind == "layernorm":     # aten.native_layer_norm writes mean and rstd beside the output
            return LayerCost(saves_inputs=(True,), saved_bytes=2 * n * e, workspace_bytes=2 * n * e,
                             has_weights=True)
        # save_mean and save_invstd are written at each call, the running buffers are the layer's own
        return LayerCost(saves_inputs=(True,), saved_bytes=2 * c * STAT_BYTES, saved_buffer_bytes=2 * c * STAT_BYTES,
                         has_weights=True)

    def module(self, node, memory):
        """nn.RMSNorm, or with an offset OffsetRMSNorm (norm_torch.py)."""
        c, a = channels(node.inputs[0]), node.args
        if self.kind == "rmsnorm" and a.offset:
            return ModuleSpec("OffsetRMSNorm", (c, a.offset), {"eps": a.eps}, lowering="norm_torch")
        cls = {"batchnorm": "BatchNorm", "layernorm": "nn.LayerNorm", "rmsnorm": "nn.RMSNorm"}[self.kind]
        return ModuleSpec(cls, (c,), {"eps": a.eps}, lowering="norm_torch")

    def examples(self):
        more = (example("float[B, T, 8]", "rmsnorm(eps=1e-6, offset=1)"),) if self.kind == "rmsnorm" else ()
        return (example("float[B, T, 8]", self.kind), example("float[B, T, 8]", f"{self.kind}(eps=1e-3)")) + more
