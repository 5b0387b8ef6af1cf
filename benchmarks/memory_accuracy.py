"""How close the memory estimate comes to the emitted module, example by
example: every layer kind's `examples()` (the conformance harness's bodies)
and the issue-10 shapes (tests/test_memory_shapes.py), each verified at two
lengths, batch 2, float32, on the CPU; estimate / measured for the saved
activations and the inference live set, the worst first.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/memory_accuracy.py

Writes benchmarks/results/memory_accuracy.md. About a minute on this CPU.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

import seqdsl
from seqdsl.backend.verify import verify
from seqdsl.layers import LAYERS

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "tests"))
from test_memory_shapes import SHAPES  # noqa: E402

SEQ = ({"T": 65, "S": 21}, {"T": 128, "S": 40})       # the harness's lengths
FIGURES = ("activation_bytes", "inference_live_bytes")


def _bodies():
    for kind, rule in LAYERS.items():
        for i, body in enumerate(rule.examples()):
            yield f"{kind}-{i}", body, SEQ
    for name, (input_type, stages) in SHAPES.items():
        yield name, f"input x: {input_type}\ny = x -> {stages}\noutput y", ({"T": 100}, {"T": 128})


def main() -> None:
    torch.set_num_threads(1)
    rows = []
    for name, body, seq in _bodies():
        text = "model m {\n" + "\n".join("    " + line for line in body.splitlines()) + "\n}\n"
        graph = seqdsl.parse(text, f"<{name}>").model()
        points = [{d: v for d, v in p.items() if d in graph.seq_symbols} for p in seq]
        for r in verify(graph, seq=points, batch=2).rows:
            if r.figure in FIGURES and r.ratio is not None:
                rows.append((abs(r.ratio - 1), name, r.figure, r.seq, r.ratio, r.ok))
    rows.sort(key=lambda r: (-r[0], r[1]))
    exact = sum(1 for r in rows if r[0] < 1e-9)
    lines = ["# Memory estimate vs measured module (benchmarks/memory_accuracy.py)", "",
             f"torch {torch.__version__}, CPU, batch 2, float32. {len(rows)} figures "
             f"({len({r[1] for r in rows})} models), {exact} exact to the byte, "
             f"{sum(1 for r in rows if not r[5])} outside verify's tolerances (10% saved, 15% live).", "",
             "| model | figure | seq | estimate / measured |", "|---|---|---|---|"]
    for _, name, figure, seq, ratio, _ in rows:
        if abs(ratio - 1) < 1e-9:
            continue
        at = ",".join(f"{k}={v}" for k, v in seq.items())
        lines.append(f"| {name} | {figure} | {at} | {ratio:.3f} |")
    lines.append("")
    lines.append("Every figure not listed is exact.")
    out = ROOT / "results" / "memory_accuracy.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:12]))
    print(f"... written to {out}")


if __name__ == "__main__":
    main()
