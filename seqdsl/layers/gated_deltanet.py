"""gated_deltanet: the gated delta rule (Yang et al. 2024, arXiv:2412.06464),
exactly flash-linear-attention's `GatedDeltaNet`: q, k, v projections through
silu'd short convolutions, L2-normalised q and k, a per-head decay
-exp(A_log)·softplus(a + dt_bias) and write strength sigmoid(b), the delta-rule
state update, a gated RMSNorm per head (gate=true) and the output projection.
Lowering: gated_deltanet_torch.py."""
from __future__ import annotations

from .base import LayerArgs, ModuleSpec, NonNegInt, PositiveInt, example
from . import linear_rnn as lr
from .costs import LayerCost, transient_peak


class GatedDeltaNetArgs(LayerArgs):
    heads: PositiveInt
    head_dim: PositiveInt = 256
    expand_v: float = 2.0
    conv: NonNegInt = 4
    conv_bias: bool = False
    gate: bool = True
    chunk: PositiveInt = 64


class GatedDeltaNet(lr.HeadsLayer):
    kind = "gated_deltanet"
    Args = GatedDeltaNetArgs
    summary = ("gated delta rule, exactly flash-linear-attention's GatedDeltaNet: L2-normalised q, k "
               "through short convolutions, a decayed delta-rule matrix state per head, gated RMSNorm output")
    shape_rule = "`[B, T, C] -> [B, T, C]`"
    params_rule = ("C·(2Kd + 2Vd + 2·heads) + [gate]·C·Vd + 2·heads + [conv > 0]·(2Kd + Vd)·(conv + [conv_bias]) "
                   "+ dvh; Kd = heads·head_dim, dvh = head_dim·expand_v, Vd = heads·dvh")
    arg_docs = {"heads": "heads", "head_dim": "key (and query) size per head",
                "expand_v": "value size per head as a multiple of head_dim",
                "conv": "short causal convolution over q, k, v (0: none, silu only)",
                "conv_bias": "bias in the short convolutions", "gate": "output gate (silu) on the RMSNorm",
                "chunk": "chunk length of the chunked form (cost only, never the function)"}
    notes = ("Streams with a constant state (heads·head_dim·dvh per sequence in fp32, plus conv windows). "
             "Not allowed inside `segments`. See docs/linear_attention_layers.md.")

    def dims(self, args):
        """(Kd, Vd, dk per head, dv per head)."""
        dvh = lr.scaled_width(args.head_dim, args.expand_v, "expand_v")
        return args.heads * args.head_dim, args.heads * dvh, args.head_dim, dvh

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        lr.check_sequence(x, self.kind, ctx)
        self.dims(args)
        return x

    def count_params(self, args, inputs, out):
        c = lr.channels(inputs[0])
        kd, vd, _, dvh = self.dims(args)
        h = args.heads
        return (c * (2 * kd + 2 * vd + 2 * h) + int(args.gate) * c * vd + 2 * h
                + lr.conv_params(2 * kd + vd, args.conv, args.conv_bias) + dvh)

    def cost(self, args, inputs, out, ctx):
        """docs/linear_attention_layers.md: projections q, k, v, a, b, g, o, the
        short convolution, and chunk_delta_rule's products per chunk of Q:
        (beta k) k^T, q k^T, T·(beta v), T·(beta k e^b) (Q·Q·dk or dv each),
        w·S, k^T v_new, q·S (Q·dk·dv each), tril(q k^T)·v_new, plus the
        unit-triangular solve for T = (I + M)^-1, Q(Q-1)·Q FLOPs (its backward:
        the same solve and a Q x Q x Q product). State: S of dk x dv per head in
        fp32 plus the convolution windows."""
        x = inputs[0]
        b, t, c = x.dims[0], x.dims[1], lr.channels(x)
        kd, vd, dk, dv = self.dims(args)
        h, k, q, e = args.heads, args.conv, args.chunk, ctx.elem
        p = lr.Products()
        for width in (kd, kd, vd, h, h) + ((vd,) if args.gate else ()):
            p.linear(b * t, c, width, from_input=True)
        p.linear(b * t, vd, c)
        lr.short_conv(p, b * t, 2 * kd + vd, k)
        _, tp = lr.chunks(t, q)
        bh = b * h
        p.product(2 * bh * tp * (q * (3 * dk + 2 * dv) + 3 * dk * dv))
        # the loop's per-chunk products: the first w·S has a zero S (no gradient),
        # the last k^T v_new only makes the final state; one chunk: q·S_start too
        s_prod = 2 * bh * q * dk * dv
        p.backward -= 3 * s_prod + lr.one_chunk(t, q, s_prod)
        solve = bh * tp * q * (q - 1)                      # (I + M)^-1, n = Q, Q right-hand sides
        p.forward += solve
        p.backward += solve + 2 * bh * tp * q * q          # the backward's solve and its Q x Q x Q product
        step = (2 * b * (c * (2 * kd + vd + 2 * h + int(args.gate) * vd) + vd * c + (2 * kd + vd) * k)
                + 6 * bh * dk * dv)
        saved, work = lr.delta_memory(b, t, c, h, kd, vd, dk, dv, k, q, e, args.gate)
        # o_proj runs once the chunked rule's temporaries are freed: its output is
        # beside q, k, v, beta (model dtype), the fp32 decay, the gated norm's output
        # and its contiguous copy (the norm keeps the heads-transposed strides), not
        # on top of the rule's busiest moment (1.19-1.28x measured at C = 672: seed 1419)
        tail = b * t * (2 * kd + vd) * e + b * t * h * (e + lr.F32) + 2 * b * t * vd * e
        live = transient_peak(b * t * c * e, before=[work], after=[tail])
        return LayerCost(flops=p.forward, backward_flops=p.backward, input_grad_flops=(p.input_grad,),
                         saves_inputs=(True,), saved_bytes=saved, workspace_bytes=work, step_flops=step,
                         live_workspace_bytes=live,
                         state_bytes=bh * dk * dv * 4 + b * (2 * kd + vd) * k * e,
                         depth=lr.chunked_depth(t, q), has_weights=True)

    def examples(self):
        return (example("float[B, T, 64]", "gated_deltanet(2, head_dim=16, chunk=16)"),
                example("float[B, T, 48]", "gated_deltanet(3, head_dim=8, expand_v=1.5, conv=0, gate=false)"))


    def module(self, node, memory):
        a, c = node.args, lr.channels(node.inputs[0])
        return ModuleSpec("GatedDeltaNet", (c,), dict(
            heads=a.heads, head_dim=a.head_dim, expand_v=a.expand_v, conv=a.conv,
            conv_bias=a.conv_bias, gate=a.gate, chunk=a.chunk), lowering="gated_deltanet_torch")
