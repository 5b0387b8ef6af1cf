"""Warnings at check time: a spec that checks but most likely says something
other than its author meant. Today one: a convolution or pooling layer reading
a channels-first input as channels-last.

Layers read channels from the last axis and convolve the axes just before it,
so channels-first video `[B, T, 3, 112, 112]` checks, silently wrong: conv2d
convolves (3, 112) and takes 112 as channels. The sign: a small axis (1 to 4,
the usual count of image or audio channels) right after the time axis or
later, followed by at least two axes (a spatial one and the channels) that are
all much larger, at least `LARGE` and `RATIO` times it. Channels-last feature
maps do not look like that: their axes shrink towards the channels-wide end
([B, T, 4, 4, 512]), and a small last axis is the channels ([B, T, 112, 112, 3]).
"""
from __future__ import annotations

from ..errors import Diagnostic
from ..graph.ir import ModelGraph, Node
from ..graph.symbolic import as_int, fmt_dim
from ..layers.conv import Conv
from ..layers.pool import Pool
from ..layers import LAYERS

SMALL = 4      # the most channels an image or audio input usually has
LARGE = 16     # each axis after it is at least this ...
RATIO = 8      # ... and this many times the small axis


def layout_warnings(graph: ModelGraph) -> list[Diagnostic]:
    """The first convolution or pooling layer of the model that reads a
    channels-first layout, as a warning at its stage; none when no layer does
    (a model warns once: the layers after the first read what it made)."""
    for node in graph.nodes:
        if isinstance(LAYERS.get(node.kind), (Conv, Pool)):
            axis = channels_first_axis(node.inputs[0].dims)
            if axis is not None:
                return [_warning(node, axis)]
    return []


def channels_first_axis(dims) -> int | None:
    """The index of an axis after T that looks like channels-first channels, or None."""
    sizes = [as_int(d) for d in dims]
    for i in range(2, len(sizes) - 2):
        s = sizes[i]
        after = sizes[i + 1:]
        if s is not None and 1 <= s <= SMALL and all(a is not None and a >= max(LARGE, RATIO * s) for a in after):
            return i
    return None


def _warning(node: Node, axis: int) -> Diagnostic:
    x = node.inputs[0]
    rank = x.rank
    order = [0, 1] + [j for j in range(2, rank) if j != axis] + [axis]
    return Diagnostic(
        f"{node.kind} reads {fmt_dim(x.dims[-1])} channels from {x}: the axis of size "
        f"{fmt_dim(x.dims[axis])} (axis {axis}) looks like the channels of a channels-first layout",
        node.span, severity="warning",
        notes=("layers read channels from the last axis and convolve or pool the axes just before it",),
        help=f"if the value is channels-first, make it channels-last first: `-> permute({order}) -> {node.kind}(...)`")
