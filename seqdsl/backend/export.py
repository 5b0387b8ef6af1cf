"""`seqdsl export SPEC -o FILE.pt2|FILE.onnx`: torch.export (dynamic sequence
dims) or ONNX of the built module."""
from __future__ import annotations

from pathlib import Path

import torch
from torch.export import Dim

from ..atomic import save_atomic
from ..cost.estimate import resolve_points
from ..cost.lengths import parse_seq
from ..errors import UsageError, error
from ..graph.symbolic import evaluate
from .checks import input_checks
from .seqmodel import SeqModel

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


def export_model(graph, output: str, seq: str | None = None) -> str:
    """Export via torch.export (.pt2, dynamic sequence dims) or ONNX (.onnx)."""
    suffix = Path(output).suffix
    if suffix not in (".pt2", ".onnx"):
        raise UsageError(f"-o {output}: export writes FILE.pt2 (torch.export) or FILE.onnx")
    if suffix == ".onnx":      # before building anything
        for package in ("onnx", "onnxscript"):
            try:
                __import__(package)
            except ImportError:
                raise UsageError(f"ONNX export needs the {package} package (pip install onnxscript onnx); "
                                 "or export to FILE.pt2") from None
    # a learned posenc over T has max_len positions: T's range ends there
    # (check_inputs refuses longer inputs; a wider Dim would be a violated constraint)
    top = learned_lengths(graph)
    env = export_lengths(seq, graph, top)
    model = SeqModel(graph).eval()
    inputs = []
    for t in graph.inputs.values():
        shape = [int(evaluate(d, env)) for d in t.dims]
        inputs.append(torch.randint(0, 2, shape) if t.dtype == "int" else torch.randn(shape))
    rnn = [n for n in graph.layers if n.kind in ("lstm", "gru", "rnn")]
    seg = [n for n in graph.layers if n.segments_scope() is not None]
    dims = {}
    seq_syms = set(graph.seq_symbols)
    for s in seq_syms:
        dims[s] = Dim(f"seq_{''.join(ch for ch in s if ch.isalnum()) or 'T'}", min=2, max=top.get(s, EXPORT_MAX_LEN))
    dynamic = tuple({i: dims[str(d)] for i, d in enumerate(t.dims) if str(d) in seq_syms}
                    for t in graph.inputs.values())
    if suffix == ".pt2":
        if rnn:
            n = rnn[0]
            raise error(f"cannot export {graph.name} with a dynamic sequence length: torch.export "
                        f"specialises {n.kind} '{n.name}' (line {n.line}) to the example length",
                        span=n.span, help="use seqdsl.build (or seqdsl compile -o model.py) for RNN models")
        if seg:
            n = seg[0]
            raise error(f"cannot export {graph.name}: segments (line {n.line}) loop over a data-dependent "
                        f"number of segments", span=n.span)
        try:
            ep = torch.export.export(model, tuple(inputs), dynamic_shapes=(dynamic,))
        except Exception as e:  # torch's own message, with the spec's name on it
            raise error(f"torch.export failed for {graph.name}: {type(e).__name__}: {str(e).splitlines()[0]}") from e
        save_atomic(output, lambda tmp: torch.export.save(ep, tmp))
        return output
    try:
        program = torch.onnx.export(model, tuple(inputs), dynamo=True, dynamic_shapes=(dynamic,),
                                    verbose=False)
    except Exception as e:
        raise error(f"ONNX export failed for {graph.name}: {type(e).__name__}: {str(e).splitlines()[0]}") from e
    save_atomic(output, program.save)
    return output
