"""Parsers for `seqdsl compile` and `seqdsl export`; the work lives elsewhere.

* `compile SPEC --estimate ...`  -> seqdsl.estimate_cli.run   (cost model, no torch)
* `compile SPEC -o model.py`     -> seqdsl.backend.cli.run_compile
* `export SPEC -o FILE`          -> seqdsl.backend.cli.run_export
* `compare A.seq B.seq ...`      -> seqdsl.compare   (its own add_parser / run)
* `verify SPEC`, `bench SPEC`    -> seqdsl.verify, seqdsl.bench

Each module named here keeps torch out of its top-level imports, so building
the parser (and `seqdsl --help`) stays fast.
"""
from __future__ import annotations


def add_compile_parser(sub) -> None:
    p = sub.add_parser("compile", help="estimate costs (--estimate) or emit PyTorch source (-o model.py)")
    p.add_argument("spec", help="path to a .seq file")
    p.add_argument("--model", help="which model, when the file defines several")
    p.add_argument("--estimate", action="store_true",
                   help="print closed-form costs per sequence length (no torch needed)")
    p.add_argument("--seq", help="lengths: 64,1024 | 64..65536 (powers of two) | T=1024,S=256")
    p.add_argument("--batch", default="1", help="batch size (default 1)")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")
    p.add_argument("--optimizer", default="adam", help="adam | sgd | none (training memory)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--per-layer", action="store_true", help="add a per-layer table at one length")
    p.add_argument("--formula", action="store_true", help="print each figure's closed form")
    p.add_argument("--hw", help="hardware profile for roofline latency: h100 | h200 | a100 | cpu | FILE")
    p.add_argument("-o", "--output", help="write standalone PyTorch source to this file")

    p = sub.add_parser("export", help="export the model with torch.export (.pt2) or ONNX (.onnx)")
    p.add_argument("spec", help="path to a .seq file")
    p.add_argument("--model", help="which model, when the file defines several")
    p.add_argument("-o", "--output", required=True, help="FILE.pt2 or FILE.onnx")
    p.add_argument("--seq", help="example lengths for tracing, e.g. T=64")

    for name in ADDED:
        _added(name).add_parser(sub)


ADDED: tuple[str, ...] = ("compare", "verify", "bench")  # each added when its module lands: "compare", "verify", "bench"


def _added(name: str):
    from importlib import import_module
    return import_module(f"seqdsl.{name}")


def run_compile(args) -> int:
    from .cli import UsageError
    if args.estimate:
        from .estimate_cli import run
        return run(args)
    if args.output:
        _check_output(args, (".py",), "source output must be a .py file")
        from .backend.cli import run_compile as emit
        return emit(args)
    raise UsageError("nothing to do: pass --estimate, or -o FILE.py to write PyTorch source")


def _check_output(args, suffixes, why: str) -> None:
    """The output's name and place, and that it is none of the files the spec
    reads, before the backend (and torch, seconds) loads."""
    from pathlib import Path

    from .cli import UsageError, check_output, spec_files
    if Path(args.output).suffix not in suffixes:
        raise UsageError(f"-o {args.output}: {why}")
    check_output(args.output, spec_files(args.spec))


def run_export(args) -> int:
    _check_output(args, (".pt2", ".onnx"), "export writes FILE.pt2 (torch.export) or FILE.onnx")
    from .backend.cli import run_export as export
    return export(args)


COMMANDS = {"compile": run_compile, "export": run_export,
            **{name: (lambda args, _n=name: _added(_n).run(args)) for name in ADDED}}
