"""How fast does `seqdsl check` read a big spec?

Generates two 10,000-line specs and times, on each, the check in-process
(parse + elaborate + check), the whole `seqdsl check` command as a cold
process (imports included), and the parse alone with the fast driver and with
Lark's own loop:

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
sys.path.insert(0, str(ROOT / "benchmarks"))
from estimate_speed import fresh_bytecode  # noqa: E402

LINES = 10_000


def typical_spec(lines: int = LINES) -> str:
    out = ["# Generated benchmark spec: many small encoder models, one stage a line.", ""]
    out += ["block ffn(d, mult=4) {", "    layernorm", "    -> mlp(mult * d, act=gelu)", "}", ""]
    model = 0
    while True:
        lines_of_model = [f"# model {model}: a conv frontend, attention blocks and an LSTM head",
                          f"model m{model} {{", "    let d = 256", "    let heads = 4", "",
                          "    input feats: float[B, T, 80]", "",
                          "    x = feats", "        -> conv1d(d, kernel=3, stride=2, padding=causal)",
                          "        -> gelu"]
        for i in range(40):
            lines_of_model += [f"        # block {i}",
                               "        -> residual { layernorm -> attention(heads, causal=true) }",
                               "        -> residual { ffn(d) }"]
        lines_of_model += ["        -> lstm(d)", "        -> linear(1024)", "    output x", "}", ""]
        if len(out) + len(lines_of_model) > lines:
            break
        out += lines_of_model
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
    from seqdsl.lang.syntax import _parser
    return sum(1 for _ in _parser().lex(text)) / len(text.splitlines())


def timed(fn, runs: int) -> tuple[float, float]:
    """(best, median) wall time of fn() over `runs` runs. The best is the
    figure least disturbed by other work on the machine (as timeit reports);
    the median shows the spread."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def cold_check(path: Path, runs: int = 7) -> tuple[float, float]:
    exe = Path(sys.executable).parent / "seqdsl"

    def run():
        proc = subprocess.run([str(exe), "check", str(path)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"check failed on {path}:\n{proc.stderr}")
    return timed(run, runs)


def main() -> None:
    fresh_bytecode()
    import seqdsl
    from seqdsl.lang import syntax
    from seqdsl.errors import SourceFile
    runs = 7
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tiny = Path(tmp) / "tiny.seq"
        tiny.write_text(typical_spec(150))
        floor = cold_check(tiny, runs)
        for name, text in (("typical", typical_spec()), ("dense", dense_spec())):
            path = Path(tmp) / f"{name}.seq"
            path.write_text(text)
            layers = sum(len(m.layers) for m in seqdsl.parse(text).models.values())
            source = SourceFile(str(path), text)
            rows.append((name, len(text.splitlines()), tokens_per_line(text), layers,
                         cold_check(path, runs),
                         timed(lambda: seqdsl.parse(text), runs),
                         timed(lambda: syntax.parse_module(source), runs),
                         timed(lambda: syntax.parse_module(source, fast=False), runs)))
    py = sys.version.split()[0]
    ms = lambda pair: f"{pair[0]:.2f} s ({pair[1]:.2f})"  # noqa: E731
    md = ["# `seqdsl check` on a generated 10,000-line spec", "",
          f"`python benchmarks/check_speed.py` (Python {py}, this machine's CPU). "
          f"Each figure is the best of {runs} runs, the median in brackets.", "",
          "- *check* = `seqdsl.parse(text)`: parse, elaborate and check the whole spec in-process;",
          "- *cold process* = the whole `seqdsl check FILE` command: interpreter start and imports "
          "(sympy, pydantic, lark) included;",
          "- *parse* = text to AST alone, with the fast driver (`seqdsl.lang.syntax._FastDriver`) and "
          "with Lark's own parser loop.", "",
          "| spec | lines | tokens/line | layers | check | cold process | parse | parse, Lark's loop |",
          "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, lines, tpl, layers, cold, check, fast, lark in rows:
        md.append(f"| {name} | {lines:,} | {tpl:.1f} | {layers:,} | {ms(check)} | {ms(cold)} | "
                  f"{ms(fast)} | {ms(lark)} |")
    md += ["", f"The cold process's floor, `seqdsl check` on a 150-line spec: {ms(floor)}; "
           "nearly all of it is starting Python and importing sympy, pydantic and lark."]
    text = "\n".join(md) + "\n"
    out = ROOT / "benchmarks" / "results" / "check_speed.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
