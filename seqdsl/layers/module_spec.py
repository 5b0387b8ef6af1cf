"""A layer's torch module as data: the class, its constructor arguments and
the lowering file that holds it, so checking never imports torch and
`lower` and `compile -o` build the same module."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

#: A lowering file's name: `torch_modules` (the shared kernels) or `<family>_torch`.
LOWERING_NAME = re.compile(r"(torch_modules|[a-z][a-z0-9_]*_torch)\Z")


@dataclass(frozen=True)
class Tied:
    """A constructor argument: the module of the layer named `alias` (`tie=`),
    whose weight the new module shares."""

    alias: str


@dataclass(frozen=True)
class ModuleSpec:
    """A module constructor call: `cls` names a class of the layer's lowering
    file `seqdsl/layers/<lowering>.py` (the only files of seqdsl.layers that
    import torch) or of torch.nn (`nn.LayerNorm`); arguments are literals or
    `Tied`."""

    cls: str
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    lowering: str = "torch_modules"
