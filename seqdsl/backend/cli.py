"""`seqdsl compile SPEC -o model.py` and `seqdsl export SPEC -o FILE.{pt2,onnx}`."""
from __future__ import annotations

import os
from pathlib import Path


def run_compile(args) -> int:
    from ..cli import UsageError, _write_atomic, check_output, spec_files
    from ..elaborate import load
    from .emit import emit_program
    out = Path(args.output)
    if out.suffix != ".py":
        raise UsageError(f"-o {args.output}: source output must be a .py file")
    check_output(out, [args.spec])
    prog = load(args.spec)
    check_output(out, spec_files(args.spec))
    graphs = [prog.model(args.model)] if getattr(args, "model", None) else list(prog.models.values())
    _write_atomic(out, emit_program(graphs, os.path.basename(args.spec)))
    print(f"wrote {out} ({', '.join(g.name for g in graphs)})")
    return 0


EXPORT_MAX_LEN = 65536     # the dynamic sequence dims' range (Dim max) and the example's bound
EXPORT_BATCH = 2


def _parse_seq(text, graph):
    """--seq for export: DIM=LENGTH pairs (or one length for every sequence
    dim), each dim of the model at most once, lengths 2..EXPORT_MAX_LEN (the
    range the exported program accepts), and valid for every layer."""
    from ..cli import UsageError
    from ..estimate import resolve_points
    from ..estimate_cli import parse_seq
    points = parse_seq(text, graph.seq_symbols) if text else None
    if points is not None and len(points) != 1:
        raise UsageError(f"--seq {text}: export traces one example; give one length per dim, e.g. T=64")
    env = dict(resolve_points(graph, points[0])[0]) if points else {}
    for k, v in env.items():
        if not 2 <= v <= EXPORT_MAX_LEN:
            raise UsageError(f"--seq {k}={v:,}: an export example length must be from 2 to {EXPORT_MAX_LEN:,}")
    for s in graph.symbols:
        env.setdefault(s, EXPORT_BATCH if s == graph.batch_symbol else 64)
    if not text:
        resolve_points(graph, {k: v for k, v in env.items() if k in graph.seq_symbols})
    return env


def export_model(graph, output: str, seq: str | None = None) -> str:
    """Export via torch.export (.pt2, dynamic sequence dims) or ONNX (.onnx)."""
    import torch
    from torch.export import Dim

    from ..cli import UsageError, _save_atomic
    from ..diagnostics import error
    from ..symbolic import evaluate
    from .build import SeqModel

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
    env = _parse_seq(seq, graph)
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
        dims[s] = Dim(f"seq_{''.join(ch for ch in s if ch.isalnum()) or 'T'}", min=2, max=65536)
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
        _save_atomic(output, lambda tmp: torch.export.save(ep, tmp))
        return output
    try:
        program = torch.onnx.export(model, tuple(inputs), dynamo=True, dynamic_shapes=(dynamic,),
                                    verbose=False)
    except Exception as e:
        raise error(f"ONNX export failed for {graph.name}: {type(e).__name__}: {str(e).splitlines()[0]}") from e
    _save_atomic(output, program.save)
    return output


def run_export(args) -> int:
    from ..cli import UsageError, check_output, spec_files
    from ..elaborate import load
    if Path(args.output).suffix not in (".pt2", ".onnx"):
        raise UsageError(f"-o {args.output}: export writes FILE.pt2 (torch.export) or FILE.onnx")
    check_output(args.output, [args.spec])
    graph = load(args.spec).model(args.model)
    check_output(args.output, spec_files(args.spec))
    _parse_seq(args.seq, graph)         # a bad --seq before torch loads (seconds)
    out = export_model(graph, args.output, args.seq)
    print(f"wrote {out}")
    return 0
