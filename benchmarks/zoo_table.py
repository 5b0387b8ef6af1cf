"""The model zoo table: each spec in specs/zoo/ at its published size beside
its reference implementation (tests/zoo_refs.py, built from a config with
random weights): parameters, and forward FLOPs at two lengths, batch 1 —
ours from `seqdsl.estimate` (closed forms), the reference's measured with
FlopCounterMode (seqdsl.backend.measure's counter, which adds the formulas
for ops torch's counter lacks). The references run on the meta device, so
the full sizes cost shapes, not arithmetic. Usage:

    python benchmarks/zoo_table.py [--models NAME,NAME]

writes benchmarks/results/zoo.md (the README's "Model zoo" table); with
--models only those rows are re-run and replaced (or added) in it, the rest
of the file kept.
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
           "conformer_s": (256, 1024)}
LENGTHS["recurrentgemma_2b"] = (256, 1024)     # both inside its attention window of 2,048

SOURCES = {
    "gpt2_small": "transformers GPT2LMHeadModel (`gpt2`)",
    "torch_transformer": "`torch.nn.Transformer()` defaults",
    "whisper_tiny": "transformers WhisperForConditionalGeneration (`openai/whisper-tiny`)",
    "mamba_130m": "transformers MambaForCausalLM (`state-spaces/mamba-130m-hf`)",
    "mamba2_130m": "transformers Mamba2ForCausalLM (`state-spaces/mamba2-130m`)",
    "wav2letter": "torchaudio `Wav2Letter()` defaults (module from its source)",
    "conformer_s": "torchaudio `Conformer`, Conformer (S) sizes (module from its source)",
}
SOURCES["recurrentgemma_2b"] = "transformers RecurrentGemmaForCausalLM (`google/recurrentgemma-2b`)"

NOT_WRITTEN = [
    ("BERT-base", "transformers BertModel",
     "the token-type embedding is added to the word and position embeddings: needs adding two bound values "
     "(value combination, another branch)"),
    ("DeepSpeech", "torchaudio DeepSpeech",
     "its bidirectional RNN sums the two directions instead of concatenating: needs adding bound values "
     "(value combination)"),
    ("Emformer RNN-T", "torchaudio emformer_rnnt_base",
     "needs block (segment-wise, right-context) Emformer attention and an RNN-T joiner of two sequences: "
     "neither exists"),
]


def reference_params(name: str) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in ENTRIES[name].reference(False).parameters())


def row(name: str) -> str:
    """The table line of one zoo spec: parameters, and FLOPs at its two lengths."""
    entry = ENTRIES[name]
    lengths = LENGTHS[name]
    ours, theirs = zip(*(published_flops(name, t) for t in lengths))
    p_ours, p_ref = graph(entry.spec).params, reference_params(name)
    print(name, p_ours, ours, theirs, flush=True)
    cells = []
    for t, a, b in zip(lengths, ours, theirs):
        where = ", ".join(f"{k} = {v:,}" for k, v in entry.full(t)[0].items())
        cells.append(f"{where}: {a:,} / {b:,}" + (" (equal)" if a == b else f" (reference +{b - a:,}\\*)"))
    return (f"| `specs/zoo/{name}.seq` | {SOURCES[name]} | {p_ours:,} / {p_ref:,}"
            + (" (equal)" if p_ours == p_ref else "") + f" | {cells[0]} | {cells[1]} |")


def notes() -> list[str]:
    """What follows the table: the footnote, and the models not written."""
    lines = ["", "\\* transformers' fallback causal conv (no `causal_conv1d` package) pads kernel − 1 on both "
             "sides and drops the last kernel − 1 outputs: 2 · channels · kernel · (kernel − 1) FLOPs per layer "
             "past the function (24 layers × 2 × 1,536 × 4 × 3 = 884,736 for Mamba, 24 × 2 × 1,792 × 4 × 3 = "
             "1,032,192 for Mamba-2), the whole difference; RecurrentGemma's recurrent block pads its conv1d the "
             "same way (18 recurrent layers × 2 × 2,560 × 4 × 3 = 1,105,920); tests/test_zoo.py checks "
             "estimate + that overhang == measured. RecurrentGemma's lengths are inside its attention window "
             "(2,048): past it the reference's SDPA still computes the whole masked T × T score square, "
             "its count growing as T², where `attention(window=)`'s banded kernel and the estimate do not.", "",
             "Not written (the language cannot say them exactly yet):", "",
             "| model | reference | what is missing |", "|---|---|---|"]
    return lines + [f"| {m} | {src} | {why} |" for m, src, why in NOT_WRITTEN]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated zoo spec names: re-run only their rows")
    args = parser.parse_args()
    names = list(ENTRIES) if args.models is None else args.models.split(",")
    unknown = [n for n in names if n not in ENTRIES]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; the zoo has {', '.join(ENTRIES)}")
    started = time.perf_counter()
    rows = {name: row(name) for name in names}
    elapsed = time.perf_counter() - started
    if args.models is None or not OUT.exists():
        lines = ["# Model zoo", "",
                 f"Machine: {platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}.",
                 "Command: `python benchmarks/zoo_table.py` "
                 f"({elapsed:.0f} s; references on the meta device, batch 1).", "",
                 "| model | reference | params: ours / reference | forward FLOPs, length 1: ours / reference "
                 "| forward FLOPs, length 2: ours / reference |",
                 "|---|---|---|---|---|", *rows.values()]
    else:                      # replace (or add) these rows, keep the others
        lines = OUT.read_text().splitlines()
        lines = lines[:next(i for i, line in enumerate(lines) if line.startswith("\\* "))]
        while lines and not lines[-1]:
            lines.pop()
        for name, line in rows.items():
            at = [i for i, old in enumerate(lines) if old.startswith(f"| `specs/zoo/{name}.seq` |")]
            if at:
                lines[at[0]] = line
            else:
                lines.insert(max(i for i, old in enumerate(lines) if old.startswith("| `specs/zoo/")) + 1, line)
        command = (f"Re-run alone: `python benchmarks/zoo_table.py --models {args.models}` ({elapsed:.0f} s, "
                   f"torch {torch.__version__}).")
        lines = [line for line in lines if not line.startswith("Re-run alone:")]
        lines.insert(next(i for i, line in enumerate(lines) if line.startswith("Command:")) + 1, command)
    OUT.write_text("\n".join(lines + notes()) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
