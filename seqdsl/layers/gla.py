"""gla: gated linear attention, exactly flash-linear-attention's
`GatedLinearAttention` (Yang et al. 2023, arXiv:2312.06635) with its defaults:
q, k, v, output-gate and low-rank key-gate projections, an optional short
convolution, a per-key-channel decay exp(logsigmoid(gk)/16), a gated RMSNorm
per head and the output projection. Lowering: gla_torch.py."""
from __future__ import annotations

from .base import LayerArgs, ModuleSpec, NonNegInt, PositiveInt, example
from . import linear_rnn as lr
from .costs import LayerCost

class GlaArgs(LayerArgs):
    heads: PositiveInt
    expand_k: float = 0.5
    expand_v: float = 1.0
    gate_rank: PositiveInt = 16
    conv: NonNegInt = 0
    conv_bias: bool = False
    chunk: PositiveInt = 64


class Gla(lr.HeadsLayer):
    kind = "gla"
    Args = GlaArgs
    summary = ("gated linear attention, exactly flash-linear-attention's GatedLinearAttention: a "
               "matrix state per head with a learned per-key decay, gated RMSNorm output")
    shape_rule = "`[B, T, C] -> [B, T, C]`"
    params_rule = ("C·(2dk + 3dv + r) + dk·(r + 1) + dv/heads + [conv > 0]·(2dk + dv)·(conv + [conv_bias]); "
                   "dk = expand_k·C, dv = expand_v·C, r = gate_rank")
    arg_docs = {"heads": "heads; must divide dk = expand_k·C and dv = expand_v·C",
                "expand_k": "key width as a multiple of C", "expand_v": "value width as a multiple of C",
                "gate_rank": "rank of the low-rank key-gate projection",
                "conv": "short causal convolution over q, k, v (0: none)",
                "conv_bias": "bias in the short convolutions",
                "chunk": "chunk length of the chunked form (cost only, never the function)"}
    notes = ("Streams with a constant state (dk·dv/heads per sequence in fp32, plus conv windows). "
             "Not allowed inside `segments`. See docs/linear_attention_layers.md.")

    def dims(self, args, c: int):
        """(dk, dv, dk per head, dv per head)."""
        return lr.key_value_dims(c, args)

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        c = lr.check_sequence(x, self.kind, ctx)
        self.dims(args, c)
        return x

    def count_params(self, args, inputs, out):
        c = lr.channels(inputs[0])
        dk, dv, _, dvh = self.dims(args, c)
        r = args.gate_rank
        return (c * (2 * dk + 3 * dv + r) + dk * (r + 1) + dvh
                + lr.conv_params(2 * dk + dv, args.conv, args.conv_bias))

    def cost(self, args, inputs, out, ctx):
        """docs/linear_attention_layers.md: seven projections (q, k, v, g, the
        two low-rank gate factors, o), the short convolution over q, k, v, and
        chunk_gla's products over ceil(T/Q)·Q padded steps; state: S of
        dk_h x dv_h per head in fp32 plus the convolution windows."""
        x = inputs[0]
        b, t, c = x.dims[0], x.dims[1], lr.channels(x)
        dk, dv, dkh, dvh = self.dims(args, c)
        h, r, k, q, e = args.heads, args.gate_rank, args.conv, args.chunk, ctx.elem
        p = lr.Products()
        for width in (dk, dk, dv, dv, r):                  # q, k, v, g, gk[0]: from the input
            p.linear(b * t, c, width, from_input=True)
        p.linear(b * t, r, dk).linear(b * t, dv, c)        # gk[1], o
        lr.short_conv(p, b * t, 2 * dk + dv, k)
        p.forward += lr.gla_core_flops(b * h, t, q, dkh, dvh)
        p.backward += lr.gla_core_backward(b * h, t, q, dkh, dvh)
        step = 2 * b * (c * (2 * dk + 2 * dv + r) + r * dk + dv * c + (2 * dk + dv) * k) + 4 * b * h * dkh * dvh
        saved, work, live = lr.gla_memory(b, t, c, h, dk, dv, dkh, dvh, r, k, q, e, gated_keys=True)
        return LayerCost(flops=p.forward, backward_flops=p.backward, input_grad_flops=(p.input_grad,),
                         saves_inputs=(True,), saved_bytes=saved, workspace_bytes=work,
                         live_workspace_bytes=live, step_flops=step,
                         state_bytes=b * h * dkh * dvh * 4 + b * (2 * dk + dv) * k * e,
                         depth=lr.chunked_depth(t, q), has_weights=True)

    def examples(self):
        return (example("float[B, T, 64]", "gla(2, chunk=16)"),
                example("float[B, T, 48]", "gla(3, expand_k=1, expand_v=2, gate_rank=8, conv=4, conv_bias=true)"))


    def module(self, node, memory):
        a, c = node.args, lr.channels(node.inputs[0])
        return ModuleSpec("GatedLinearAttention", (c,), dict(
            heads=a.heads, expand_k=a.expand_k, expand_v=a.expand_v, gate_rank=a.gate_rank,
            conv=a.conv, conv_bias=a.conv_bias, chunk=a.chunk), lowering="gla_torch")
