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
        nc·Q): the scores C·Bᵀ once per group and their product with x
        (2·B·nc·Q²·(G·N + H·P)), each chunk's state and its read-out
        (2 x 2·B·nc·H·Q·P·N), the states handed between chunks (an (nc+1) x nc
        decay matrix: 2·B·H·(nc+1)·nc·P·N). Decays and the gated norm are
        elementwise. Saved for backward (mamba2_torch.ssd_chunk_scan): the
        decays and the decayed scores per head, the causal scores per group,
        B and C padded, x padded, x·decay and y_off's product (and x head-major
        unless H = 1), the chunk states before and after the hand-over, the
        decays to each chunk's end and from its start, the hand-over's decay
        matrix; beside the projections', conv's and norm's per-position tensors."""
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
        ssd = (2 * b * nc * q * q * (g * n + hm * p) + 2 * 2 * b * nc * hm * q * p * n
               + 2 * b * hm * (nc + 1) * nc * p * n)
        flops = proj + conv + ssd
        backward = proj + 2 * rows * di * d + 2 * conv + 2 * ssd
        scores, group_scores = b * nc * hm * q * q * 4, b * nc * g * q * q * 4
        xp, states = b * tp * di * 4, b * nc * hm * p * n * 4
        x_copies = 3 + int(hm > 1)             # x padded, x·decay, y_off's product; x head-major unless H = 1
        saved = (2 * scores + group_scores + 2 * b * tp * g * n * 4 + x_copies * xp + 2 * b * hm * tp * 4
                 + 2 * states + b * hm * (nc + 1) ** 2 * 4 + 2 * (nc + 1) ** 2
                 + rows * (di + cd + hm) * e + b * cd * (t + k - 1) * e + rows * cd * e + rows * di * 4
                 + rows * hm * (e + 4) + 4 * rows * di * 4 + rows * g * 4 + rows * di * e + 2 * hm * 4)
        work = 2 * scores + 2 * group_scores + 8 * xp + 2 * b * tp * g * n * 4 + 4 * rows * (di + cd) * e
        live = self.live_workspace(b, t, d, args, e)
        step = 2 * b * d * (di + cd + hm) + 2 * b * di * d + 2 * b * cd * k + 2 * b * hm * p * n
        return LayerCost(flops=flops, backward_flops=backward, input_grad_flops=(first,),
                         saved_bytes=saved, saves_inputs=(True,), workspace_bytes=work, live_workspace_bytes=live,
                         step_flops=step, state_bytes=b * cd * k * e + b * hm * p * n * 4, depth=nc + 1,
                         has_weights=True)

    def live_workspace(self, b, t, d, args, e):
        """The most of the forward's transients alive at once (inference),
        moment by moment through mamba2_torch.Mamba2.forward and ssd_chunk_scan
        (each moment the bytes alive beside the input, found by listing every
        allocation with seqdsl.backend.measure.LiveTensorTracker). Held from the
        in_proj on: its output z (`gate` keeps it to the end), the conv's silu
        output, dt and x heads in fp32 (and B, C copied to fp32 below it). The scan
        pads x·dt, A·dt, B and C to tp = nc·Q steps (B and C copied with the
        groups first when G > 1) and keeps A·dt's cumulative sum; then, one
        at a time: the group scores C·Bᵀ and their causal copy; the fp64
        rounding error of that sum; the decays and the decayed scores; y_diag
        (x copied head-major unless H = 1); x·decay (copied when G > 1) and the
        chunk states; the hand-over's decay matrix (its segment sums), the
        states copied head-major (from two chunks on, unless H = 1) and handed
        over; the entering states copied back; y_off (copied when G > 1) and
        its decay; y. Then D·x and the gated norm, three [B, T, di] fp32
        tensors beside its input."""
        di, hm, g, n, k = self.dims(args, d)
        p, q = args.head_dim, args.chunk
        cd = di + 2 * g * n
        nc = ceil_div(t, q)
        rows, rows_p = b * t, b * nc * q
        x = rows * di * 4
        xp, ap, bp = rows_p * di * 4, rows_p * hm * 4, rows_p * g * n * 4       # fp32, padded to tp
        scores, group_scores = b * nc * hm * q * q * 4, b * nc * g * q * q * 4
        states, states1 = b * nc * hm * p * n * 4, b * (nc + 1) * hm * p * n * 4
        hand = b * hm * (nc + 1) ** 2 * 4                                        # the hand-over's decays
        g_copy = int(g > 1 and q > 1)                                            # groups moved before time
        h_copy = int(hm > 1)                                                     # x and states head-major
        z = rows * (di + cd + hm) * e
        held = z + rows * cd * e + rows * hm * 4 + x + (0 if e == 4 else 2 * rows * g * n * 4)
        padded = held + xp + 2 * ap + 2 * bp                     # x·dt, A·dt, its cumsum, B, C padded
        diag = padded + xp                                       # ... and y_diag
        handed = diag + hand + states1                           # ... and the states entering each chunk
        before = [z + b * cd * (2 * t + k - 1) * e,              # the conv's padded input and output
                  held + x + xp,                                 # x·dt and its padded copy
                  held + xp + ap + (2 + g_copy) * bp,            # B and C padded (and copied)
                  padded + 2 * group_scores,                     # C·Bᵀ and its causal copy
                  padded + group_scores + 6 * ap,                # the fp64 cumulative sum's rounding error
                  padded + group_scores + ap + 2 * scores,       # the decays and the decayed scores
                  padded + scores + (1 + h_copy) * xp,           # y_diag
                  diag + ap + xp,                                # x·decay
                  diag + (1 + g_copy) * xp + states,             # the chunk states
                  diag + states + 3 * hand + (nc + 1) ** 2,      # the hand-over's segment sums (_segsum)
                  diag + hand + (1 + h_copy * smin(1, nc - 1)) * states + states1,   # handed over
                  handed + states + (2 + g_copy) * xp + ap,      # y_off
                  handed + states + 2 * xp,                      # y = y_diag + y_off
                  held + xp + 2 * x,                             # D·x added
                  held + 3 * x]                                  # the gated norm
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
