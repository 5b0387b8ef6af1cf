"""How fast does `seqdsl check` read a big spec?

Generates two 10,000-line specs and times `seqdsl check` on each as a cold
process (imports included; best of 5) and in-process (parse + elaborate):

* `typical`: written the way the bundled specs are — one stage per line,
  comments and blank lines, lets, blocks, several models (about 6 tokens a
  line, like specs/ and ../shared/conformance/specs);
* `dense`: every line a full residual block (about 15 tokens a line).

Usage:  python benchmarks/check_speed.py        (writes benchmarks/results/check_speed.md)
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LINES = 10_000


def typical_spec(lines: int = LINES) -> str:
    out = ["# Generated benchmark spec: many small encoder models, one stage a line.", ""]
    out += ["block ffn(d, mult=4) {", "    layernorm", "    -> mlp(mult * d, act=gelu)", "}", ""]
    model = 0
    while len(out) < lines - 40:
        out += [f"# model {model}: a conv frontend, attention blocks and an LSTM head",
                f"model m{model} {{", "    let d = 256", "    let heads = 4", "",
                "    input feats: float[B, T, 80]", "",
                "    x = feats", "        -> conv1d(d, kernel=3, stride=2, padding=causal)", "        -> gelu"]
        for i in range(40):
            out += [f"        # block {i}",
                    "        -> residual { layernorm -> attention(heads, causal=true) }",
                    "        -> residual { ffn(d) }"]
        out += ["        -> lstm(d)", "        -> linear(1024)", "    output x", "}", ""]
        model += 1
    while len(out) < lines:
        out.append("# padding comment line")
    return "\n".join(out[:lines]) + "\n"


def dense_spec(lines: int = LINES) -> str:
    out = ["model big {", "    let d = 64", "    input x: float[B, T, d]", "    y = x"]
    while len(out) < lines - 2:
        out.append("        -> residual { layernorm -> attention(4, causal=true) }")
        out.append("        -> residual { layernorm -> mlp(4 * d, act=gelu) }")
    out += ["    output y", "}"]
    return "\n".join(out) + "\n"


def tokens_per_line(text: str) -> float:
    from seqdsl.syntax import _parser
    return sum(1 for _ in _parser().lex(text)) / len(text.splitlines())


def cold_check(path: Path, runs: int = 5) -> float:
    exe = Path(sys.executable).parent / "seqdsl"
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run([str(exe), "check", str(path)], capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"check failed on {path}:\n{proc.stderr}")
    return min(times)


def in_process(text: str, runs: int = 3) -> float:
    import seqdsl
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        seqdsl.parse(text)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    import seqdsl
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in (("typical", typical_spec()), ("dense", dense_spec())):
            path = Path(tmp) / f"{name}.seq"
            path.write_text(text)
            layers = sum(len(m.layers) for m in seqdsl.parse(text).models.values())
            rows.append((name, len(text.splitlines()), tokens_per_line(text), layers,
                         cold_check(path), in_process(text)))
    py = sys.version.split()[0]
    md = ["# `seqdsl check` on a generated 10,000-line spec", "",
          f"`python benchmarks/check_speed.py` (Python {py}, this machine's CPU). "
          "Cold = the whole `seqdsl check FILE` process, imports included, best of 5; "
          "in-process = `seqdsl.parse(text)`, median of 3.", "",
          "| spec | lines | tokens/line | layers | cold process | in-process |",
          "|---|---:|---:|---:|---:|---:|"]
    for name, lines, tpl, layers, cold, warm in rows:
        md.append(f"| {name} | {lines:,} | {tpl:.1f} | {layers:,} | {cold:.2f} s | {warm:.2f} s |")
    text = "\n".join(md) + "\n"
    out = ROOT / "benchmarks" / "results" / "check_speed.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
