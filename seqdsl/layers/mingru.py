"""mingru: minGRU, exactly minGRU-pytorch's `minGRU` (log-space parallel scan;
an output projection when expand != 1).
Lowering: mingru_torch.py; derivations: docs/recurrent_layers.md."""
from __future__ import annotations

from .base import LayerArgs, LayerError, ModuleSpec, PositiveFloat, channels
from .mamba import SequenceMixer


class MinGruArgs(LayerArgs):
    expand: PositiveFloat = 1.0


class MinGru(SequenceMixer):
    kind = "mingru"
    Args = MinGruArgs

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

    def module(self, node, memory):
        a = node.args
        return ModuleSpec("MinGru", (channels(node.inputs[0]), float(a.expand)), lowering="mingru_torch")
