"""A layer's ModuleSpec made a torch module. The one place, with
torch_modules.py, where seqdsl.layers imports torch: `Layer.lower` reaches it
lazily, so checking and costing never load torch."""
from __future__ import annotations

import importlib

from torch import nn

from .module_spec import LOWERING_NAME, Tied



def lowering_module(name: str):
    """seqdsl.layers.<name>, the lowering file a ModuleSpec names."""
    if not LOWERING_NAME.match(name):
        raise ValueError(f"not a lowering file name: {name!r}")
    return importlib.import_module(f"{__package__}.{name}")


def instantiate(spec, tied: dict[str, nn.Module]) -> nn.Module:
    """A layer's ModuleSpec made a module: `nn.X` from torch.nn, anything else
    from the lowering file the spec names; a `Tied` argument is the aliased module."""
    owner, name = (nn, spec.cls[3:]) if spec.cls.startswith("nn.") else (lowering_module(spec.lowering), spec.cls)
    args = [tied[a.alias] if isinstance(a, Tied) else a for a in spec.args]
    return getattr(owner, name)(*args, **spec.kwargs)
