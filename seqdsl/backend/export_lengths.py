"""The example lengths and dynamic ranges `seqdsl export` traces with. Torch-
free, so the command refuses a bad --seq before torch loads (seconds)."""
from __future__ import annotations

from ..cost.estimate import resolve_points
from ..cost.lengths import parse_seq
from ..errors import UsageError
from .checks import input_checks

EXPORT_MAX_LEN = 65536     # the dynamic sequence dims' range (Dim max) and the example's bound
EXPORT_BATCH = 2


def learned_lengths(graph) -> dict:
    """symbol -> the most positions a learned posenc over it has: the exported
    range ends there (check_inputs refuses longer inputs)."""
    top = {}
    for layer, symbols, length_of, max_len, _ in input_checks(graph)[1]:
        if length_of is None and symbols:
            top[symbols[0]] = min(top.get(symbols[0], EXPORT_MAX_LEN), max_len)
    return top


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
