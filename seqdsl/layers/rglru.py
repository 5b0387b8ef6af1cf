"""rglru: Griffin's recurrent block (gate branch, temporal conv, RG-LRU with
block-diagonal gates), exactly transformers' `RecurrentGemmaRecurrentBlock`.
Lowering: rglru_torch.py; derivations: docs/recurrent_layers.md."""
from __future__ import annotations

from typing import Optional

from .base import LayerArgs, LayerError, ModuleSpec, PositiveInt, channels
from .mamba import SequenceMixer


class RglruArgs(LayerArgs):
    heads: PositiveInt
    width: Optional[PositiveInt] = None     # None: d
    conv: PositiveInt = 4


class Rglru(SequenceMixer):
    kind = "rglru"
    Args = RglruArgs

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

    def module(self, node, memory):
        a = node.args
        d = channels(node.inputs[0])
        return ModuleSpec("Rglru", (d, a.heads, self.width(a, d), a.conv), lowering="rglru_torch")
