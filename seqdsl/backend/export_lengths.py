"""The example lengths and dynamic ranges `seqdsl export` traces with. Torch-
free, so the command refuses a bad --seq before torch loads (seconds)."""
from __future__ import annotations

from ..cost.estimate import resolve_points
from ..cost.lengths import parse_seq
from ..errors import UsageError
from ..graph.symbolic import evaluate
from .checks import input_checks

EXPORT_MAX_LEN = 65536     # the dynamic sequence dims' range (Dim max) and the example's bound
EXPORT_BATCH = 2
SMALLEST_SEARCH = 4096   # smallest_lengths looks this far


def learned_lengths(graph) -> dict:
    """symbol -> the most positions a learned posenc over it has: the exported
    range ends there (check_inputs refuses longer inputs)."""
    top = {}
    for layer, symbols, length_of, max_len, _ in input_checks(graph)[1]:
        if length_of is None and symbols:
            top[symbols[0]] = min(top.get(symbols[0], EXPORT_MAX_LEN), max_len)
    return top


def smallest_lengths(graph, env: dict, top: dict | None = None) -> dict:
    """symbol -> the shortest length (from 2) at which every dim that depends
    on it, through every layer, is at least 2, the others at their example
    lengths. torch.export specialises a dim that can be 1 (a strided
    convolution's output at a short input) and refuses a range that admits
    it, so the exported range starts here."""
    top = top or {}
    out = {}
    for s in graph.seq_symbols:
        dims = {d for n in graph.node_map.values() for t in (n.output, *n.inputs)
                for d in t.dims if s in {str(f) for f in getattr(d, "free_symbols", ())}}
        out[s] = 2      # none found below SMALLEST_SEARCH: torch.export's own message tells
        for length in range(2, min(EXPORT_MAX_LEN, top.get(s, EXPORT_MAX_LEN), SMALLEST_SEARCH) + 1):
            at = {**env, s: length}
            if all(evaluate(d, at) >= 2 for d in dims):
                out[s] = length
                break
    return out


def export_lengths(text, graph, top=None) -> dict:
    """--seq for export: DIM=LENGTH pairs (or one length for every sequence
    dim), each dim of the model at most once, lengths 2..EXPORT_MAX_LEN (or a
    learned posenc's max_len: `top`, symbol -> max_len), valid for every layer;
    unset dims default to 2 (batch) and 64 (or the max_len when less)."""
    top = top or {}
    points = parse_seq(text, graph.seq_symbols) if text else None
    if points is not None and len(points) != 1:
        raise UsageError(f"--seq {text}: export traces one example; give one length per dim, e.g. T=64")
    env = dict(resolve_points(graph, points[0])[0]) if points else {}
    for k, v in env.items():
        hi = min(EXPORT_MAX_LEN, top.get(k, EXPORT_MAX_LEN))
        if not 2 <= v <= hi:
            raise UsageError(f"--seq {k}={v:,}: an export example length must be from 2 to {hi:,}")
    for s in graph.symbols:
        env.setdefault(s, EXPORT_BATCH if s == graph.batch_symbol else min(64, top.get(s, 64)))
    if not text:
        resolve_points(graph, {k: v for k, v in env.items() if k in graph.seq_symbols})
    return env
