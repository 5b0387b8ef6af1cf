"""mamba: the Mamba-1 selective SSM mixer, exactly transformers' `MambaMixer`.

Shared with the other v0.2 mixers (mamba2, rglru, mingru): `SequenceMixer`,
the `[B, T, C] -> [B, T, C]` causal shape rule, and the short-convolution cost.
Lowering: mamba_torch.py; derivations: docs/recurrent_layers.md.
"""
from __future__ import annotations

import math
from typing import Literal, Union

import sympy

from ..graph.symbolic import as_int, ceil_div
from .base import Layer, LayerArgs, LayerError, ModuleSpec, PositiveInt, channels, example, require_float, require_rank, with_channels
from .costs import LayerCost, ParallelRule, transient_peak

#: Mamba-1's chunk length (the compiled lowering's chunked scan: a doubling
#: scan inside a chunk, the state handed chunk to chunk; also rglru's). It
#: changes the depth, never the function.
MAMBA_CHUNK = 64


class SequenceMixer(Layer):
    """A linear-time mixer of the v0.2 table: float [B, T, C] in, same shape out."""
    shape_rule = "`[B, T, C] -> [B, T, C]` (float, rank 3)"
    notes = ("Causal, with a generation state of constant size (docs/recurrent_layers.md). "
             "Not allowed inside `segments`.")

    def infer_shape(self, args, inputs, ctx):
        (x,) = inputs
        require_float(x, self.kind)
        require_rank(x, 3, what=" [B, T, C]")
        c = channels(x)
        if ctx.in_segments:
            raise LayerError(f"{self.kind} cannot run inside segments",
                             help="segments carry memory for attention layers only; "
                                  "put the recurrent layer before or after the segments block")
        self.validate(args, c)
        return with_channels(x, c)

    def parallel(self, args, inputs, elem):
        """Its inner width (or heads) over tp, in projection column-, out
        projection row-parallel: one all-reduce. Every weight counts as split,
        though a small projection (Mamba's x_proj, shared B/C groups) is
        replicated in practice. Under context parallelism each rank hands its
        final state on."""
        return ParallelRule(tp="split", all_reduces=1, cp="state", divides=self.tp_units(args, channels(inputs[0])))

    def tp_units(self, args, c: int) -> tuple:
        """((what, count), ...) that tp must divide."""
        return (("inner width", self.dims(args, c)[0]),)

    def validate(self, args, c: int) -> None:
        """Raise LayerError for argument combinations the reference refuses."""

def short_conv_cost(b, t, width: int, k: int):
    """A depthwise causal conv over exactly T outputs (left pad only):
    FlopCounterMode counts 2·B·T·width·K."""
    return 2 * b * t * width * k


def if_longer(t, q: int, value):
    """value when T > q (more than one chunk), else 0; a Piecewise when T is symbolic."""
    if as_int(t) is not None:
        return value if as_int(t) > q else 0
    return sympy.Piecewise((value, sympy.StrictGreaterThan(t, q)), (0, True))


def doubling_scan_saved(b, t, q: int, width):
    """Bytes autograd keeps for the chunked doubling scan of mamba_torch /
    rglru_torch (fp32 states of `width` numbers a position, T padded to
    Tp = ceil(T/q)·q): the decays and partial sums of every doubling step
    (2·log2 q tensors) and the last decays, the concatenated states, the
    states handed between chunks (the last decays again once there are two
    chunks or more) and the zero initial state."""
    steps = (q - 1).bit_length()                      # ceil(log2 q)
    tp = ceil_div(t, q) * q
    full = b * tp * width * 4
    return (2 * steps + 1) * full + if_longer(t, q, full) + (tp - q) * b * width * 4 + b * width * 4


class MambaArgs(LayerArgs):
    state: PositiveInt = 16
    expand: PositiveInt = 2
    conv: PositiveInt = 4
    dt_rank: Union[PositiveInt, Literal["auto"]] = "auto"
    bias: bool = False
    conv_bias: bool = True


class Mamba(SequenceMixer):
    kind = "mamba"
    Args = MambaArgs
    summary = "Mamba-1 selective SSM mixer, exactly transformers' MambaMixer"
    params_rule = ("3·d·di + di·(2R + 3N + K + 2) + [conv_bias]·di + [bias]·(2di + d); "
                   "di = expand·d, N = state, K = conv, R = dt_rank")
    arg_docs = {"state": "SSM state size N per channel", "expand": "inner width di = expand·d",
                "conv": "width K of the causal depthwise conv", "dt_rank": "rank R of the dt projection (auto: ceil(d/16))",
                "bias": "biases on in_proj and out_proj", "conv_bias": "bias on the conv"}

    @staticmethod
    def dims(args, d: int) -> tuple[int, int, int, int]:
        """(di, N, K, R): inner width, state, conv width, dt rank."""
        r = math.ceil(d / 16) if args.dt_rank == "auto" else args.dt_rank
        return args.expand * d, args.state, args.conv, r

    def count_params(self, args, inputs, out):
        d = channels(inputs[0])
        di, n, k, r = self.dims(args, d)
        return (3 * d * di + di * (2 * r + 3 * n + k + 2) + args.conv_bias * di
                + args.bias * (2 * di + d))

    def cost(self, args, inputs, out, ctx):
        """Projections in, x, dt and out; the depthwise conv over T; the scan's
        output product h_t·C_t (one (di x N)(N x 1) bmm a step, T steps). The
        scan itself is elementwise (~9·B·T·di·N by the Mamba authors' count):
        not in `flops`; its tensors are in `workspace_bytes`.

        FLOPs, saved bytes and the live set describe the eager lowering
        (mamba_torch.mamba_loop_scan, what `seqdsl verify` measures);
        torch.compile runs the chunked doubling scan (its read-out over T
        padded to whole chunks, more saved) and a GPU with the `cuda` extra
        mamba-ssm's fused kernel. The depth is those forms' critical path,
        ceil(T/64) + 1, not the loop's T: they are the forms for a parallel
        device; the loop trades that parallelism for one pass over memory,
        which wins on the CPU (docs/recurrent_layers.md)."""
        x = inputs[0]
        b, t, d, e = x.dims[0], x.dims[1], channels(x), ctx.elem
        di, n, k, r = self.dims(args, d)
        rows = b * t
        first = 2 * rows * d * 2 * di                            # in_proj
        proj = first + 2 * rows * (di * (r + 2 * n) + r * di + di * d)
        conv = short_conv_cost(b, t, di, k)
        scan = 2 * b * t * di * n                                # h_t @ C_t, T steps
        flops = proj + conv + scan
        backward = proj + (proj - first) + 2 * conv + 2 * scan   # weight grads; inner input grads
        state = b * di * n * 4                                   # one scan state, fp32
        f32 = 0 if e == 4 else rows * (di + 2 * n) * 4          # .float() copies below fp32: xs, B, C
        # x_proj reads xs, the conv's (B, di, T) output transposed: reshaped to
        # (B·T, di) it is a view unless B, T and di all exceed 1 (then a copy)
        saved = ((t + 1) * state + rows * di * n * 4 + 2 * di * n * 4       # states h_0..h_T, decays exp, A
                 + 7 * rows * di * e + 3 * rows * di * 4 + f32               # dt, dt·xs, y + xs·D in fp32
                 + (if_longer(b, 1, if_longer(t, 1, rows * di * e)) if di > 1 else 0)   # x_proj's input copy
                 + b * di * (t + k - 1) * e + rows * (r + 2 * n) * e)
        # written once, read once: dt·A, da = exp(dt·A), dbx and the loop's T
        # states (fp32, B·di·N a step), its read-outs and their stack (fp32)
        work = 4 * rows * di * n * 4 + 2 * rows * di * 4 + 4 * rows * di * e
        step = 2 * b * (d * 2 * di + di * (r + 2 * n) + r * di + di * d) + 2 * b * di * k + 2 * b * di * n
        live = self.live_workspace(b, t, d, args, e)
        return LayerCost(flops=flops, backward_flops=backward, input_grad_flops=(first,),
                         saved_bytes=saved, saves_inputs=(True,), workspace_bytes=work, live_workspace_bytes=live,
                         step_flops=step, state_bytes=b * di * k * e + state, depth=ceil_div(t, MAMBA_CHUNK) + 1,
                         has_weights=True)

    def live_workspace(self, b, t, d, args, e):
        """The most of the forward's transients alive at once (inference),
        moment by moment through mamba_torch.Mamba.forward and its eager scan
        mamba_loop_scan (every allocation listed with
        seqdsl.backend.measure.LiveTensorTracker). Held from the projections
        on: in_proj's output (z, a view, keeps it to the end), the conv's
        silu output xs, x_proj's output (dt, B and C are views of it), dt in
        fp32 and A; then the decays da and inputs dbx (T steps, fp32, alive
        until the forward returns). The loop holds the state and the next one
        (2 x B·di·N) beside the read-outs so far (B·di a step), then their
        stack beside the list; the stacked y and the final state stay while
        `(y + xs·D)·silu(z)` makes its sum, gate and product."""
        di, n, k, r = self.dims(args, d)
        rows = b * t
        x = rows * di * e                                   # xs, and each [B, T, di] temporary
        z = 2 * x                                           # in_proj's output
        xp = rows * (r + 2 * n) * e                         # x_proj's output
        f32 = 0 if e == 4 else rows * n * 4                 # a .float() copy of B or C below fp32
        held = z + x + xp + rows * di * 4 + di * n * 4      # ... and dt (fp32), A
        big, state, ys = rows * di * n * 4, b * di * n * 4, rows * di * 4
        scan = held + 2 * big + f32                         # da, dbx, C in fp32
        before = [z + x + b * di * (t + k - 1) * e,         # the conv's padded input and output
                  z + 3 * x + xp,                           # dt_proj's product and bias sum
                  held + 2 * big + rows * di * 4 + f32,     # dbx = (dt·xs)·B, B in fp32
                  scan + 2 * state + ys - b * di * 4,       # the last step's new state beside the old
                  scan + state + 2 * ys,                    # the read-outs stacked beside their list
                  scan + state + 3 * ys + x]                # y, y + xs·D, silu(z) and their product
        return transient_peak(rows * d * e, before=before, after=[scan + state + ys])

    def module(self, node, memory):
        a = node.args
        di, n, k, r = self.dims(a, channels(node.inputs[0]))
        return ModuleSpec("Mamba", (channels(node.inputs[0]), n, a.expand, k, r, a.bias, a.conv_bias),
                          lowering="mamba_torch")

    def examples(self):
        return (example("float[B, T, 32]", "mamba(state=8)"),
                example("float[B, T, 32]", "mamba(state=4, expand=1, conv=3, dt_rank=5, bias=true, conv_bias=false)"))
