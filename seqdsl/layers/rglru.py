"""rglru: Griffin's recurrent block (gate branch, temporal conv, RG-LRU with
block-diagonal gates), exactly transformers' `RecurrentGemmaRecurrentBlock`.
Lowering: rglru_torch.py; derivations: docs/recurrent_layers.md."""
from __future__ import annotations

from typing import Optional

from ..graph.symbolic import ceil_div
from .base import LayerArgs, LayerError, ModuleSpec, PositiveInt, channels, example
from .costs import LayerCost, transient_peak
from .mamba import SequenceMixer, doubling_scan_saved, short_conv_cost

#: The lowering's chunk length (rglru_torch.RGLRU_CHUNK): changes cost, never the function.
RGLRU_CHUNK = 64


class RglruArgs(LayerArgs):
    heads: PositiveInt
    width: Optional[PositiveInt] = None     # None: d
    conv: PositiveInt = 4


class Rglru(SequenceMixer):
    kind = "rglru"
    Args = RglruArgs
    summary = "Griffin's recurrent block (RG-LRU), exactly transformers' RecurrentGemmaRecurrentBlock"
    params_rule = "3·d·W + 2·W²/H + W·(K + 6) + d; W = width, H = heads, K = conv"
    arg_docs = {"heads": "blocks H of the block-diagonal gates (dividing the width)",
                "width": "recurrence width W (default: d)", "conv": "width K of the causal depthwise conv"}

    @staticmethod
    def width(args, d: int) -> int:
        return d if args.width is None else args.width

    def validate(self, args, c):
        w = self.width(args, c)
        if w % args.heads:
            raise LayerError(f"rglru's heads={args.heads} does not divide its width {w}", arg="heads",
                             help="the RG-LRU gates are block-diagonal: one block per head")

    def count_params(self, args, inputs, out):
        d = channels(inputs[0])
        w, h, k = self.width(args, d), args.heads, args.conv
        return 3 * d * w + 2 * w * w // h + w * (k + 6) + d

    def cost(self, args, inputs, out, ctx):
        """linear_x, linear_y, linear_out; the depthwise conv over T; the two
        block-diagonal gates (baddbmm per head, 2·B·T·W·W/H each). The RG-LRU
        scan (chunked doubling scan, fp32) is elementwise."""
        x = inputs[0]
        b, t, d, e = x.dims[0], x.dims[1], channels(x), ctx.elem
        w, h, k = self.width(args, d), args.heads, args.conv
        rows = b * t
        branches = 2 * (2 * rows * d * w)                       # linear_x, linear_y
        proj = branches + 2 * rows * w * d
        conv = short_conv_cost(b, t, w, k)
        gates = 2 * (2 * rows * w * (w // h))
        flops = proj + conv + gates
        backward = proj + 2 * rows * w * d + 2 * conv + 2 * gates
        saved = (doubling_scan_saved(b, t, RGLRU_CHUNK, w) + 2 * t + b * w * (t + k - 1) * e
                 + 14 * rows * w * e + w * 4)
        tp = ceil_div(t, RGLRU_CHUNK) * RGLRU_CHUNK
        work = b * w * 4 * (4 * tp + 2 * t) + 5 * rows * w * e
        # linear_out runs once the scan's temporaries are freed: its output sits beside the gate
        # branch, h and their product only (the sum of both was 1.22-1.27x measured: seed 1234)
        live = transient_peak(rows * d * e, before=[work], after=[5 * rows * w * e])
        step = 2 * b * 3 * d * w + 2 * b * w * k + 2 * (2 * b * w * (w // h))
        return LayerCost(flops=flops, backward_flops=backward, input_grad_flops=(branches,),
                         saved_bytes=saved, saves_inputs=(True,), workspace_bytes=work, live_workspace_bytes=live,
                         step_flops=step, state_bytes=b * w * (k - 1) * e + b * w * 4, depth=ceil_div(t, RGLRU_CHUNK) + 1,
                         has_weights=True)

    def tp_units(self, args, c):
        return (("heads", args.heads),)

    def module(self, node, memory):
        a = node.args
        d = channels(node.inputs[0])
        return ModuleSpec("Rglru", (d, a.heads, self.width(a, d), a.conv), lowering="rglru_torch")

    def examples(self):
        return (example("float[B, T, 32]", "rglru(4)"), example("float[B, T, 32]", "rglru(2, width=48, conv=3)"))
