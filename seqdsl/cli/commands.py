"""Parsers for `seqdsl compile` and `seqdsl export`; the work lives elsewhere.

* `compile SPEC --estimate ...`  -> seqdsl.cli.estimate.run   (cost model, no torch)
* `compile SPEC -o model.py`     -> seqdsl.backend.cli.run_compile
* `export SPEC -o FILE`          -> seqdsl.backend.cli.run_export
* `compare A.seq B.seq ...`      -> seqdsl.compare   (its own add_parser / run)
* `verify SPEC`, `bench SPEC`    -> seqdsl.backend.verify, seqdsl.backend.bench

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


_ADDED_MODULES = {"compare": "seqdsl.cost.compare", "verify": "seqdsl.backend.verify", "bench": "seqdsl.backend.bench"}


def _added(name: str):
    from importlib import import_module
    return import_module(_ADDED_MODULES[name])


def run_compile(args) -> int:
    from ..errors import UsageError
    if args.estimate:
        from .estimate import run
        return run(args)
    if args.output:
        from .backend import run_compile as emit
        return emit(args)
    raise UsageError("nothing to do: pass --estimate, or -o FILE.py to write PyTorch source")


def run_export(args) -> int:
    from .backend import run_export as export
    return export(args)


COMMANDS = {"compile": run_compile, "export": run_export,
            **{name: (lambda args, _n=name: _added(_n).run(args)) for name in ADDED}}
