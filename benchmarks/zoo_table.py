"""The model zoo table: each spec in specs/zoo/ at its published size beside
its reference implementation (tests/zoo_refs.py, built from a config with
random weights): parameters, and forward FLOPs at two lengths, batch 1 —
ours from `seqdsl.estimate` (closed forms), the reference's measured with
FlopCounterMode (seqdsl.backend.measure's counter, which adds the formulas
for ops torch's counter lacks). The references run on the meta device, so
the full sizes cost shapes, not arithmetic. Usage:

    python benchmarks/zoo_table.py

writes benchmarks/results/zoo.md (the README's "Model zoo" table).

    python benchmarks/zoo_table.py --models emformer_rnnt

re-runs only the named rows (comma-separated) and writes them into the
existing table, the other rows as they were.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402

from zoo_refs import ENTRIES, graph, published_flops  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "zoo.md"


# the two published-size lengths of each row (Whisper: decoder tokens; its encoder takes 3,000 frames)
LENGTHS = {"gpt2_small": (256, 1024), "torch_transformer": (256, 1024), "whisper_tiny": (64, 256),
           "mamba_130m": (256, 1024), "mamba2_130m": (256, 1024), "wav2letter": (16_000, 160_000),
           "conformer_s": (256, 1024), "emformer_rnnt": (256, 1024)}

SOURCES = {
    "gpt2_small": "transformers GPT2LMHeadModel (`gpt2`)",
    "torch_transformer": "`torch.nn.Transformer()` defaults",
    "whisper_tiny": "transformers WhisperForConditionalGeneration (`openai/whisper-tiny`)",
    "mamba_130m": "transformers MambaForCausalLM (`state-spaces/mamba-130m-hf`)",
    "mamba2_130m": "transformers Mamba2ForCausalLM (`state-spaces/mamba2-130m`)",
    "wav2letter": "torchaudio `Wav2Letter()` defaults (module from its source)",
    "conformer_s": "torchaudio `Conformer`, Conformer (S) sizes (module from its source)",
    "emformer_rnnt": "torchaudio `emformer_rnnt_base(4097)` (modules from its source)",
}

NOT_WRITTEN = [
    ("BERT-base", "transformers BertModel",
     "the token-type embedding is added to the word and position embeddings: needs adding two bound values "
     "(value combination, another branch)"),
    ("DeepSpeech", "torchaudio DeepSpeech",
     "its bidirectional RNN sums the two directions instead of concatenating: needs adding bound values "
     "(value combination)"),
    ("RecurrentGemma-2B", "transformers RecurrentGemmaForCausalLM",
     "its gated MLP has biases on all three projections (`geglu` has none), its embedding is scaled by "
     "sqrt(d) (no layer scales by a constant), and its RMSNorm multiplies by 1 + w (`rmsnorm` by w); its "
     "local attention layer is exact (tests/test_zoo.py), its RG-LRU block is `rglru`"),
]


def reference_params(name: str) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in ENTRIES[name].reference(False).parameters())


def row(name: str, seq, p_ours: int, p_ref: int, ours, theirs) -> str:
    cells = []
    for sizes, a, b in zip(seq, ours, theirs):
        where = ", ".join(f"{k} = {v:,}" for k, v in sizes.items())
        cells.append(f"{where}: {a:,} / {b:,}" + (" (equal)" if a == b else f" (reference +{b - a:,}\\*)"))
    return (f"| `specs/zoo/{name}.seq` | {SOURCES[name]} | {p_ours:,} / {p_ref:,}"
            + (" (equal)" if p_ours == p_ref else "") + f" | {cells[0]} | {cells[1]} |")


def measure_rows(names) -> dict[str, str]:
    rows = {}
    for name in names:
        entry = ENTRIES[name]
        lengths = LENGTHS[name]
        ours, theirs = zip(*(published_flops(name, t) for t in lengths))
        seq = [entry.full(t)[0] for t in lengths]
        params = graph(entry.spec).params
        rows[name] = row(name, seq, params, reference_params(name), ours, theirs)
        print(name, params, ours, theirs, flush=True)
    return rows


def not_written() -> list[str]:
    return (["Not written (the language cannot say them exactly yet):", "",
             "| model | reference | what is missing |", "|---|---|---|"]
            + [f"| {m} | {src} | {why} |" for m, src, why in NOT_WRITTEN])


def update(names: list[str]) -> None:
    """Re-measure the named rows only and write them into the existing table."""
    started = time.perf_counter()
    rows = measure_rows(names)
    elapsed = time.perf_counter() - started
    lines = OUT.read_text().splitlines()
    marker = lambda n: f"| `specs/zoo/{n}.seq` |"  # noqa: E731
    for name, text in rows.items():
        at = [i for i, line in enumerate(lines) if line.startswith(marker(name))]
        if at:
            lines[at[0]] = text
        else:   # after the last model row
            last = max(i for i, line in enumerate(lines) if line.startswith("| `specs/zoo/"))
            lines.insert(last + 1, text)
    note = f"Rows re-run alone: `python benchmarks/zoo_table.py --models {','.join(names)}` ({elapsed:.0f} s)."
    head = lines.index(next(line for line in lines if line.startswith("Command:")))
    if lines[head + 1].startswith("Rows re-run alone:"):
        lines[head + 1] = note
    else:
        lines.insert(head + 1, note)
    start = lines.index("Not written (the language cannot say them exactly yet):")
    lines = lines[:start] + not_written()
    OUT.write_text("\n".join(lines) + "\n")
    print(f"updated {OUT}")


def main() -> None:
    parser = argparse.ArgumentParser(description="The model zoo table (benchmarks/results/zoo.md).")
    parser.add_argument("--models", help="re-run only these rows (comma-separated spec names) and write them "
                                         "into the existing table")
    args = parser.parse_args()
    if args.models:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
        unknown = [n for n in names if n not in ENTRIES]
        if unknown:
            parser.error(f"--models: no zoo entry {', '.join(unknown)} (entries: {', '.join(ENTRIES)})")
        if not OUT.exists():
            parser.error(f"--models updates {OUT}, which does not exist: run without --models first")
        update(names)
        return
    started = time.perf_counter()
    rows = measure_rows(ENTRIES)
    elapsed = time.perf_counter() - started
    lines = ["# Model zoo", "",
             f"Machine: {platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}.",
             "Command: `python benchmarks/zoo_table.py` "
             f"({elapsed:.0f} s; references on the meta device, batch 1).", "",
             "| model | reference | params: ours / reference | forward FLOPs, length 1: ours / reference "
             "| forward FLOPs, length 2: ours / reference |",
             "|---|---|---|---|---|"]
    lines += list(rows.values())
    lines += ["", "\\* transformers' fallback causal conv (no `causal_conv1d` package) pads kernel − 1 on both "
              "sides and drops the last kernel − 1 outputs: 2 · channels · kernel · (kernel − 1) FLOPs per layer "
              "past the function (24 layers × 2 × 1,536 × 4 × 3 = 884,736 for Mamba, 24 × 2 × 1,792 × 4 × 3 = "
              "1,032,192 for Mamba-2), the whole difference; tests/test_zoo.py checks estimate + that overhang == "
              "measured.", ""]
    lines += not_written()
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}")

if __name__ == "__main__":
    main()
