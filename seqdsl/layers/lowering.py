"""A layer's ModuleSpec made a torch module. The one place, with
torch_modules.py, where seqdsl.layers imports torch: `Layer.lower` reaches it
lazily, so checking and costing never load torch."""
from __future__ import annotations

from torch import nn

from . import torch_modules
from .base import Tied


def instantiate(spec, tied: dict[str, nn.Module]) -> nn.Module:
    """A layer's ModuleSpec made a module: `nn.X` from torch.nn, anything else
    from seqdsl.layers.torch_modules; a `Tied` argument is the aliased module."""
    from ..layers.base import Tied
    from ..layers import torch_modules as modules
    owner, name = (nn, spec.cls[3:]) if spec.cls.startswith("nn.") else (torch_modules, spec.cls)
    args = [tied[a.alias] if isinstance(a, Tied) else a for a in spec.args]
    return getattr(owner, name)(*args, **spec.kwargs)
