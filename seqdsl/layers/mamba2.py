"""mamba2: the Mamba-2 (SSD) mixer, exactly transformers' `Mamba2Mixer`,
gated RMSNorm included (gate first, then normalise per group).
Lowering: mamba2_torch.py; derivations: docs/recurrent_layers.md."""
from __future__ import annotations


from ..graph.symbolic import ceil_div, smin
from .base import LayerArgs, LayerError, ModuleSpec, PositiveInt, channels, example
from .costs import LayerCost, transient_peak
from .mamba import SequenceMixer, short_conv_cost


class Mamba2Args(LayerArgs):
    state: PositiveInt = 128
    expand: PositiveInt = 2
    head_dim: PositiveInt = 64
    groups: PositiveInt = 1
    conv: PositiveInt = 4
    chunk: PositiveInt = 256
    bias: bool = False
    conv_bias: bool = True


class Mamba2(SequenceMixer):
    kind = "mamba2"
    Args = Mamba2Args
    summary = "Mamba-2 (SSD) mixer with its gated RMSNorm, exactly transformers' Mamba2Mixer"
    params_rule = ("d·(3di + 2GN + Hm) + (di + 2GN)·K + 3Hm + di + [conv_bias]·(di + 2GN) "
                   "+ [bias]·(2di + 2GN + Hm + d); di = expand·d, Hm = di / head_dim, G = groups, N = state, K = conv")
    arg_docs = {"state": "SSM state size N per head", "expand": "inner width di = expand·d (a multiple of head_dim)",
                "head_dim": "width P of a head", "groups": "groups G of B and C (dividing the heads)",
                "conv": "width K of the causal depthwise conv over x, B and C",
                "chunk": "chunk length of the chunked form (cost only, never the function)",
                "bias": "biases on in_proj and out_proj", "conv_bias": "bias on the conv"}

    @staticmethod
    def dims(args, d: int) -> tuple[int, int, int, int, int]:
        """(di, Hm, G, N, K): inner width, heads, groups, state, conv width."""
        di = args.expand * d
        return di, di // args.head_dim, args.groups, args.state, args.conv

    def validate(self, args, c):
        di = args.expand * c
        if di % args.head_dim:
            raise LayerError(f"mamba2's inner width expand*d = {args.expand}*{c} = {di} is not a multiple "
                             f"of head_dim={args.head_dim}", arg="head_dim",
                             help=f"pick a head_dim that divides {di}")
        hm = di // args.head_dim
        if hm % args.groups:
            raise LayerError(f"mamba2's groups={args.groups} does not divide its {hm} heads "
                             f"(expand*d / head_dim = {di} / {args.head_dim})", arg="groups",
                             help="every group of B and C serves the same number of heads")

    def count_params(self, args, inputs, out):
        d = channels(inputs[0])
        di, hm, g, n, k = self.dims(args, d)
        conv = di + 2 * g * n
        return (d * (3 * di + 2 * g * n + hm) + conv * k + 3 * hm + di + args.conv_bias * conv
                + args.bias * (2 * di + 2 * g * n + hm + d))

    def cost(self, args, inputs, out, ctx):
        """in_proj and out_proj; the depthwise conv over x, B, C; the chunked
        SSD's products over nc = ceil(T/Q) chunks of Q = chunk (T padded to
        nc·Q): scores C·B and their product with x (2·B·nc·H·Q²·(N + P)), each
        chunk's state and its read-out (2 x 2·B·nc·H·Q·P·N), the states handed
        between chunks (2·B·H·(nc+1)²·P·N). Decays and the gated norm are elementwise."""
        x = inputs[0]
        b, t, d, e = x.dims[0], x.dims[1], channels(x), ctx.elem
        di, hm, g, n, k = self.dims(args, d)
        p, q = args.head_dim, args.chunk
        cd = di + 2 * g * n                                          # the conv's channels: x, B, C
        nc = ceil_div(t, q)
        tp = nc * q
        rows = b * t
        first = 2 * rows * d * (di + cd + hm)
        proj = first + 2 * rows * di * d
        conv = short_conv_cost(b, t, cd, k)
        ssd = (2 * b * nc * hm * q * q * (n + p) + 2 * 2 * b * nc * hm * q * p * n
               + 2 * b * hm * (nc + 1) ** 2 * p * n)
        flops = proj + conv + ssd
        backward = proj + 2 * rows * di * d + 2 * conv + 2 * ssd
        scores = b * nc * hm * q * q * 4
        # x padded, and its copies for y_diag's and (over more than one chunk: with one, einsum reads
        # it in place) the chunk states' products (was 1.1x measured with T below one chunk)
        x_copies = 2 + smin(1, nc - 1)
        saved = (3 * scores + 5 * b * tp * hm * n * 4 + x_copies * b * tp * di * 4 + b * (2 * nc + 1) * hm * p * n * 4
                 + 2 * b * hm * tp * 4 + b * hm * (nc + 1) ** 2 * 4 + 2 * (nc + 1) ** 2 + 2 * q * q
                 + rows * (di + cd + hm) * e + b * cd * (t + k - 1) * e + 2 * rows * cd * e
                 + rows * hm * (e + 4) + 4 * rows * di * 4 + rows * g * 4 + rows * di * e + 2 * hm * 4)
        work = 3 * scores + 4 * b * tp * hm * n * 4 + 4 * rows * (di + cd) * e
        live = self.live_workspace(b, t, d, args, e)
        step = 2 * b * d * (di + cd + hm) + 2 * b * di * d + 2 * b * cd * k + 2 * b * hm * p * n
        return LayerCost(flops=flops, backward_flops=backward, input_grad_flops=(first,),
                         saved_bytes=saved, saves_inputs=(True,), workspace_bytes=work, live_workspace_bytes=live,
                         step_flops=step, state_bytes=b * cd * k * e + b * hm * p * n * 4, depth=nc + 1,
                         has_weights=True)

    def live_workspace(self, b, t, d, args, e):
        """The most of the forward's transients alive at once (inference, at
        float32), moment by moment through mamba2_torch.Mamba2.forward. Held
        from the in_proj on: its output z (gate, x·B·C, dt: `gate` keeps it to
        the end), the conv's silu output (xs is a view of it), dt, and B and
        C repeated to every head (the forward's b, c). ssd_chunk_scan pads x·dt,
        A·dt, B and C to tp = nc·Q steps, makes the decays (the segment sums:
        three Q x Q score-sized tensors at once), the scores, y_diag, the
        chunk states and y_off, each einsum copying its operands to bmm's
        layout; then the gated norm holds four [B, T, di] fp32 tensors. The
        moments, each the bytes alive beside the input (found by listing every
        allocation with seqdsl.backend.measure.LiveTensorTracker; the single
        moment's rule was 0.58-1.22x measured on the random specs, now
        0.90-1.08x over 22 shapes)."""
        di, hm, g, n, k = self.dims(args, d)
        p, q = args.head_dim, args.chunk
        cd = di + 2 * g * n
        nc = ceil_div(t, q)
        rows, rows_p = b * t, b * nc * q
        x, dt, bn = rows * di * 4, rows * hm * 4, rows * hm * n * 4             # fp32, T steps
        xp, ap, bnp = rows_p * di * 4, rows_p * hm * 4, rows_p * hm * n * 4     # fp32, padded to tp
        scores = b * nc * hm * q * q * 4
        states, states1 = b * nc * hm * p * n * 4, b * (nc + 1) * hm * p * n * 4
        z = rows * (di + cd + hm) * e
        held = z + rows * cd * e + dt + 2 * bn                     # through the scan and the norm
        padded = held + xp + ap + 2 * bnp + ap                     # the padded inputs and a_cum
        diag = padded + 2 * scores + xp + bnp                      # decay, scores, y_diag, b·decay
        before = [z + b * cd * (2 * t + k - 1) * e,                # the conv's padded input and output
                  held + x + dt + xp + ap + 2 * bnp,               # x·dt, A·dt and their padded copies
                  padded + 3 * scores,                             # the segment sums
                  padded + 2 * scores + 2 * bnp,                   # C·B: copies of C and B
                  padded + 2 * scores + 2 * xp,                    # y_diag: a copy of x
                  padded + 2 * scores + 2 * xp + 2 * bnp + states,  # the chunk states
                  diag + states + states1,                         # the states with the first one
                  diag + 3 * states1,                              # the states handed chunk to chunk
                  diag + states1 + bnp + states + xp,              # y_off: copies of C and the states
                  diag + states1 + 2 * xp + ap,                    # y_off, then y_diag + y_off
                  held + 4 * x]                                    # the gated norm
        return transient_peak(rows * d * e, before=before, after=[held + x])

    def tp_units(self, args, c):
        di, hm, g, n, k = self.dims(args, c)
        return (("heads", hm), ("groups", g))

    def module(self, node, memory):
        a = node.args
        return ModuleSpec("Mamba2", (channels(node.inputs[0]), a.state, a.expand, a.head_dim, a.groups, a.conv,
                                     a.chunk, a.bias, a.conv_bias), lowering="mamba2_torch")

    def examples(self):
        return (example("float[B, T, 32]", "mamba2(state=8, head_dim=16, chunk=32)"),
                example("float[B, T, 32]", "mamba2(state=4, head_dim=8, groups=2, conv=3, chunk=16, bias=true)"))
