"""`seqdsl compile SPEC -o model.py` and `seqdsl export SPEC -o FILE.{pt2,onnx}`."""
from __future__ import annotations

import os
from pathlib import Path

from ..backend.checks import input_checks


def run_compile(args) -> int:
    from ..errors import UsageError
    from ..atomic import write_atomic
    from ..check.elaborate import load
    from ..backend.emit import emit_program
    out = Path(args.output)
    if out.suffix != ".py":
        raise UsageError(f"-o {args.output}: source output must be a .py file")
    prog = load(args.spec)
    graphs = [prog.model(args.model)] if getattr(args, "model", None) else list(prog.models.values())
    write_atomic(out, emit_program(graphs, os.path.basename(args.spec)))
    print(f"wrote {out} ({', '.join(g.name for g in graphs)})")
    return 0


def _parse_seq(text, graph, top=None):
    """--seq NAME=LENGTH pairs; the rest default to 2 (batch) and 64, or a
    learned posenc's max_len when that is less (top: symbol -> max_len)."""
    from ..errors import UsageError
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
        env.setdefault(s, 2 if s == graph.batch_symbol else min(64, (top or {}).get(s, 64)))
    return env


def export_model(graph, output: str, seq: str | None = None) -> str:
    """Export via torch.export (.pt2, dynamic sequence dims) or ONNX (.onnx)."""
    import torch
    from torch.export import Dim

    from ..errors import UsageError
    from ..atomic import save_atomic
    from ..errors import error
    from ..graph.symbolic import evaluate
    from ..backend.seqmodel import SeqModel

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
    top = {}
    for layer, symbols, length_of, max_len, _ in input_checks(graph)[1]:
        if length_of is None and symbols:
            top[symbols[0]] = min(top.get(symbols[0], 65536), max_len)
    env = _parse_seq(seq, graph, top)
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
        dims[s] = Dim(f"seq_{''.join(ch for ch in s if ch.isalnum()) or 'T'}", min=2, max=top.get(s, 65536))
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


def run_export(args) -> int:
    from ..check.elaborate import load
    graph = load(args.spec).model(args.model)
    out = export_model(graph, args.output, args.seq)
    print(f"wrote {out}")
    return 0
