"""The tensor-parallel plan of a SeqModel from its layer kinds (issue 14):
`SeqModel.tp_plan()` and seqdsl.backend.distributed.apply_tp read it. Kept
apart from distributed.py, which builds models, so seqmodel can reach it
without an import cycle."""
from __future__ import annotations

import glob
from dataclasses import dataclass, field

from ..cost.parallel import rule_of


@dataclass
class TPLayout:
    """How each tensor-parallel layer is split."""

    plan: dict                                       # fnmatch pattern of a module path -> ParallelStyle
    heads: list = field(default_factory=list)        # attention modules whose heads are split
    replicated: list = field(default_factory=list)   # (layer name, kind, why) the estimate splits, kept whole here


def _pattern(path: str) -> str:
    # parallelize_module matches each path atom with fnmatch: `repeat[0]` is written `repeat[[]0]`
    return ".".join(glob.escape(p) for p in path.split("."))


def tp_layout(model) -> TPLayout:
    """Megatron's split from the layer kinds: attention's q, k, v column-wise
    and o row-wise (heads split; softmax attention without ALiBi, relative
    positions or segments memory), mlp fc1 column-wise and fc2 row-wise,
    swiglu and geglu (one module, two activations) w1 and w3 column-wise and
    w2 row-wise, biases with their rows. One all-reduce per layer
    forward (and one backward). Every other layer stays replicated; those the
    estimate splits are listed with the reason."""
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel   # lazy: torch.distributed
    path_of = {id(m): name for name, m in model.named_modules()}
    out = TPLayout(plan={})
    for node in model._graph.nodes:
        if node.kind in ("input", "add"):
            continue
        mod = model.named_layer(node.name)
        base = _pattern(path_of[id(mod)])
        a = node.args
        if node.kind == "attention":
            why = None
            if a.kind != "softmax":
                why = f"kind={a.kind}"
            elif a.pos in ("alibi", "relative"):
                why = f"pos={a.pos} (per-head position terms)"
            elif getattr(mod, "memory", None) is not None:
                why = "segments memory"
            if why is None:
                for p in ("q", "k", "v"):
                    out.plan[f"{base}.{p}"] = ColwiseParallel()
                out.plan[f"{base}.o"] = RowwiseParallel()
                out.heads.append((node.name, mod))
                continue
            out.replicated.append((node.name, node.kind, f"no engine TP plan for attention {why}"))
        elif node.kind == "mlp":
            out.plan[f"{base}.fc1"] = ColwiseParallel()
            out.plan[f"{base}.fc2"] = RowwiseParallel()
        elif node.kind in ("swiglu", "geglu"):
            out.plan[f"{base}.w1"] = ColwiseParallel()
            out.plan[f"{base}.w3"] = ColwiseParallel()
            out.plan[f"{base}.w2"] = RowwiseParallel()
        elif rule_of(node, 4).tp == "split":
            out.replicated.append((node.name, node.kind, f"no engine TP plan for {node.kind} yet "
                                                         f"(the estimate splits it)"))
    return out


__all__ = ["TPLayout", "tp_layout"]
