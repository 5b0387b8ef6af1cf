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


def _parse_seq(text, graph):
    from ..cli import UsageError
    env = {}
    if text:
        for part in text.split(","):
            if "=" not in part:
                raise UsageError(f"--seq {text}: expected NAME=LENGTH pairs, e.g. T=64")
            k, v = part.split("=", 1)
            try:
                env[k.strip()] = int(v)
            except ValueError:
                raise UsageError(f"--seq {text}: {v!r} is not an integer") from None
    for s in graph.symbols:
        env.setdefault(s, 2 if s == graph.batch_symbol else 64)
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
    out = export_model(graph, args.output, args.seq)
    print(f"wrote {out}")
    return 0
