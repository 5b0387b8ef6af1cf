"""`seqdsl compile SPEC -o model.py` and `seqdsl export SPEC -o FILE.{pt2,onnx}`:
outputs checked before anything loads, then seqdsl.backend's emit and export."""
from __future__ import annotations

import os
from pathlib import Path

from ..atomic import check_output, write_atomic
from ..backend.emit import emit_program
from ..backend.export_lengths import export_lengths, learned_lengths
from ..check.elaborate import load, spec_files
from ..errors import UsageError


def run_compile(args) -> int:
    out = Path(args.output)
    if out.suffix != ".py":
        raise UsageError(f"-o {args.output}: source output must be a .py file")
    check_output(out, [args.spec])
    prog = load(args.spec)
    check_output(out, spec_files(args.spec))
    graphs = [prog.model(args.model)] if getattr(args, "model", None) else list(prog.models.values())
    write_atomic(out, emit_program(graphs, os.path.basename(args.spec)))
    print(f"wrote {out} ({', '.join(g.name for g in graphs)})")
    return 0


def run_export(args) -> int:
    if Path(args.output).suffix not in (".pt2", ".onnx"):
        raise UsageError(f"-o {args.output}: export writes FILE.pt2 (torch.export) or FILE.onnx")
    check_output(args.output, [args.spec])
    graph = load(args.spec).model(args.model)
    check_output(args.output, spec_files(args.spec))
    export_lengths(args.seq, graph, learned_lengths(graph))   # a bad --seq before torch loads
    from ..backend.export import export_model   # lazy: torch (seconds)
    out, ranges = export_model(graph, args.output, args.seq)
    dims = ", ".join(f"{s} from {lo:,} to {hi:,}" for s, (lo, hi) in ranges.items())
    print(f"wrote {out}" + (f" (dynamic {dims})" if dims else ""))
    return 0
