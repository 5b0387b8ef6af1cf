"""mingru: minGRU, exactly minGRU-pytorch's `minGRU` (log-space parallel scan;
an output projection when expand != 1).
Lowering: mingru_torch.py; derivations: docs/recurrent_layers.md."""
from __future__ import annotations

from .base import LayerArgs, LayerError, ModuleSpec, PositiveFloat, channels, example
from .costs import LayerCost, transient_peak
from .mamba import SequenceMixer


class MinGruArgs(LayerArgs):
    expand: PositiveFloat = 1.0


class MinGru(SequenceMixer):
    kind = "mingru"
    Args = MinGruArgs
    summary = "minGRU (log-space parallel scan), exactly minGRU-pytorch's minGRU"
    params_rule = "2·d·di + [expand != 1]·di·d; di = int(expand·d)"
    arg_docs = {"expand": "inner width di = int(expand·d); an output projection when expand != 1"}

    @staticmethod
    def inner(args, d: int) -> int:
        return int(d * args.expand)          # the reference's int(dim * expansion_factor)

    def validate(self, args, c):
        if self.inner(args, c) < 1:
            raise LayerError(f"mingru's inner width int({c} * {args.expand}) is 0", arg="expand")

    def count_params(self, args, inputs, out):
        d = channels(inputs[0])
        di = self.inner(args, d)
        return 2 * d * di + (args.expand != 1) * di * d

    def cost(self, args, inputs, out, ctx):
        """to_hidden_and_gate and (expand != 1) to_out; the log-space scan
        (softplus, cumsum, logcumsumexp, exp) is elementwise, a parallel scan
        of depth 1 in products. Without to_out the output is the scan's exp,
        which autograd keeps. The inference workspace (the scan's temporaries)
        is fitted on torch 2.13 (CPU), within 3%: seven [B, T, di] tensors and
        a bool one at the scan's busiest moment, the input projection's two
        among them. With to_out the output comes after the scan, beside the
        projection and h only (the sum of both was 1.16x measured at expand=0.5)."""
        x = inputs[0]
        b, t, d, e = x.dims[0], x.dims[1], channels(x), ctx.elem
        di = self.inner(args, d)
        proj_out = args.expand != 1
        first = 2 * b * t * d * 2 * di
        last = proj_out * 2 * b * t * di * d
        u = b * t * di * e
        saved = (6 + proj_out) * b * t * di * e + b * t * 2 * di * e + b * t * di
        return LayerCost(flops=first + last, backward_flops=first + 2 * last, input_grad_flops=(first,),
                         saved_bytes=saved, saves_inputs=(True,), saves_output=not proj_out,
                         workspace_bytes=(12 + proj_out) * b * t * di * e / 2 + b * t * di,
                         live_workspace_bytes=transient_peak(b * t * d * e, before=[7 * u + b * t * di],
                                                             after=[3 * u]) if proj_out else None,
                         step_flops=2 * b * d * 2 * di + proj_out * 2 * b * di * d,
                         state_bytes=b * di * e, has_weights=True)

    def tp_units(self, args, c):
        return (("inner width", self.inner(args, c)),)

    def module(self, node, memory):
        a = node.args
        return ModuleSpec("MinGru", (channels(node.inputs[0]), float(a.expand)), lowering="mingru_torch")

    def examples(self):
        return (example("float[B, T, 32]", "mingru"), example("float[B, T, 32]", "mingru(expand=1.5)"))
