"""The parsers of `seqdsl compile` and `seqdsl export`, and the table of the
commands whose modules live beside this one:

* `compile SPEC --estimate ...`  -> cli/estimate.py   (cost model, no torch)
* `compile SPEC -o model.py`     -> cli/backend.py: run_compile
* `export SPEC -o FILE`          -> cli/backend.py: run_export
* `compare A.seq B.seq ...`      -> cli/compare.py
* `verify SPEC`, `bench SPEC`    -> cli/verify.py, cli/bench.py

None of these modules imports torch at its top, so building the parser (and
`seqdsl --help`) stays fast; torch loads when a command that needs it runs.
"""
from __future__ import annotations

from ..errors import UsageError
from . import backend, bench, compare, estimate, verify


def add_compile_parser(sub) -> None:
    p = sub.add_parser("compile", help="estimate costs (--estimate) or emit PyTorch source (-o model.py)")
    p.add_argument("spec", help="path to a .seq file")
    p.add_argument("--model", help="which model, when the file defines several")
    p.add_argument("--estimate", action="store_true",
                   help="print closed-form costs per sequence length (no torch needed)")
    p.add_argument("--seq", help="lengths: 64,1024 | 64..65536 (powers of two) | 16..1e7:50 (50 log-spaced) | T=1024,S=256 | T=128..4096,S=3000 (sweep T, S fixed)")
    p.add_argument("--batch", default="1", help="batch size (default 1)")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")
    p.add_argument("--optimizer", default="adam", help="adam | sgd | none (training memory)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--per-layer", action="store_true", help="add a per-layer table at one length")
    p.add_argument("--formula", action="store_true", help="print each figure's closed form")
    p.add_argument("--hw", help="hardware profile for roofline latency: h100 | h200 | a100 | cpu | FILE")
    p.add_argument("--parallel", help="per-device figures for a layout: dp=8,tp=2,pp=2,cp=1,zero=1,sp,"
                                      "microbatches=8 (--batch is then one data-parallel micro-batch)")
    p.add_argument("--recompute", default="none", help="none | selective | full (with --parallel)")
    p.add_argument("--fit", metavar="MEMORY", help="with --parallel: the largest length and batch whose "
                                                   "per-device training peak fits, e.g. 80GiB")
    p.add_argument("-o", "--output", help="write standalone PyTorch source to this file")
    p.add_argument("--no-cache", action="store_true",
                   help="derive the estimate afresh and keep nothing (also SEQDSL_NO_CACHE=1)")

    p = sub.add_parser("export", help="export the model with torch.export (.pt2) or ONNX (.onnx)")
    p.add_argument("spec", help="path to a .seq file")
    p.add_argument("--model", help="which model, when the file defines several")
    p.add_argument("-o", "--output", required=True, help="FILE.pt2 or FILE.onnx")
    p.add_argument("--seq", help="example lengths for tracing, e.g. T=64")

    for module in (compare, verify, bench):
        module.add_parser(sub)


def run_compile(args) -> int:
    if args.estimate:
        return estimate.run(args)
    if args.output:
        return backend.run_compile(args)
    raise UsageError("nothing to do: pass --estimate, or -o FILE.py to write PyTorch source")


COMMANDS = {"compile": run_compile, "export": backend.run_export,
            "compare": compare.run, "verify": verify.run, "bench": bench.run}
