"""retention: multi-scale retention (RetNet, Sun et al. 2023,
arXiv:2307.08621), exactly flash-linear-attention's `MultiScaleRetention`:
q, k, v, output-gate projections, RoPE on q and k, a fixed decay
1 - 2^(-5-h) per head h, a gated RMSNorm per head and the output projection.
Lowering: retention_torch.py."""
from __future__ import annotations

from .base import LayerArgs, LayerError, ModuleSpec, PositiveInt, example
from . import linear_rnn as lr
from .costs import LayerCost


class RetentionArgs(LayerArgs):
    heads: PositiveInt
    expand_k: float = 1.0
    expand_v: float = 2.0
    chunk: PositiveInt = 64


class Retention(lr.HeadsLayer):
    kind = "retention"
    Args = RetentionArgs
    summary = ("multi-scale retention (RetNet), exactly flash-linear-attention's MultiScaleRetention: "
               "RoPE'd linear attention with a fixed decay 1 - 2^(-5-h) per head, gated RMSNorm output")
    shape_rule = "`[B, T, C] -> [B, T, C]`"
    params_rule = "C·(2dk + 3dv) + dv/heads; dk = expand_k·C, dv = expand_v·C"
    arg_docs = {"heads": "heads; must divide dk and dv, with an even key head size of at most 256",
                "expand_k": "key width as a multiple of C", "expand_v": "value width as a multiple of C",
                "chunk": "chunk length of the chunked form (cost only, never the function)"}
    notes = ("Streams with a constant state (dk·dv/heads per sequence in fp32). Not allowed inside "
             "`segments`. See docs/linear_attention_layers.md.")

    def dims(self, args, c: int):
        dk, dv, dkh, dvh = lr.key_value_dims(c, args)
        if dkh % 2:
            raise LayerError(f"RoPE needs an even key head size, got {dk} / {args.heads} = {dkh}",
                             arg="heads")
        if dkh > 256:
            raise LayerError(f"the key head size {dkh} is past the reference's limit of 256",
                             arg="heads", help="use more heads or a smaller expand_k")
        return dk, dv, dkh, dvh

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        self.dims(args, lr.check_sequence(x, self.kind, ctx))
        return x

    def count_params(self, args, inputs, out):
        c = lr.channels(inputs[0])
        dk, dv, _, dvh = self.dims(args, c)
        return c * (2 * dk + 3 * dv) + dvh

    def cost(self, args, inputs, out, ctx):
        """docs/linear_attention_layers.md: projections q, k, v, g, o and
        chunk_gla's products (RoPE and the fixed decays are elementwise);
        state: S of dk_h x dv_h per head in fp32."""
        x = inputs[0]
        b, t, c = x.dims[0], x.dims[1], lr.channels(x)
        dk, dv, dkh, dvh = self.dims(args, c)
        h, q, e = args.heads, args.chunk, ctx.elem
        p = lr.Products()
        for width in (dk, dk, dv, dv):
            p.linear(b * t, c, width, from_input=True)
        p.linear(b * t, dv, c)
        p.forward += lr.gla_core_flops(b * h, t, q, dkh, dvh)
        p.backward += lr.gla_core_backward(b * h, t, q, dkh, dvh)
        step = 2 * b * c * (2 * dk + 3 * dv) + 4 * b * h * dkh * dvh
        saved, work, live = lr.gla_memory(b, t, c, h, dk, dv, dkh, dvh, 0, 0, q, e, gated_keys=False)
        return LayerCost(flops=p.forward, backward_flops=p.backward, input_grad_flops=(p.input_grad,),
                         saves_inputs=(True,), saved_bytes=saved, workspace_bytes=work,
                         live_workspace_bytes=live, step_flops=step,
                         state_bytes=b * h * dkh * dvh * 4, depth=lr.chunked_depth(t, q), has_weights=True)

    def examples(self):
        return (example("float[B, T, 64]", "retention(2, chunk=16)"),
                example("float[B, T, 48]", "retention(3, expand_k=0.5, expand_v=1)"))


    def module(self, node, memory):
        a, c = node.args, lr.channels(node.inputs[0])
        return ModuleSpec("MultiScaleRetention", (c,), dict(
            heads=a.heads, expand_k=a.expand_k, expand_v=a.expand_v, chunk=a.chunk),
            lowering="retention_torch")
