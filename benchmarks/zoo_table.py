"""The model zoo table: each spec in specs/zoo/ at its published size beside
its reference implementation (tests/zoo_refs.py, built from a config with
random weights): parameters, and forward FLOPs at two lengths, batch 1 —
ours from `seqdsl.estimate` (closed forms), the reference's measured with
FlopCounterMode (seqdsl.backend.measure's counter, which adds the formulas
for ops torch's counter lacks). The references run on the meta device, so
the full sizes cost shapes, not arithmetic. Usage:

    python benchmarks/zoo_table.py [--models NAME,NAME]

writes benchmarks/results/zoo.md (the README's "Model zoo" table). With
--models only those rows are measured; the file's other rows are kept as
they were.
"""
from __future__ import annotations

import argparse
import platform
import re
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
LENGTHS["emformer_rnnt"] = (256, 1024)        # acoustic frames; the predictor reads T // 4 + 1 tokens

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
SOURCES["emformer_rnnt"] = "torchaudio `emformer_rnnt_base(4097)` (modules from its source)"

NOT_WRITTEN: list = []     # (model, reference, what the language lacks): every zoo model is written


# ---- BERT-base and DeepSpeech (a block of their own, so that other rows merge untouched);
# DeepSpeech's lengths are frames of 10 ms: 10 s and 30 s of audio
LENGTHS.update({"bert_base": (128, 512), "deepspeech": (1000, 3000)})
SOURCES.update({"bert_base": "transformers BertModel (`bert-base-uncased`, pooler included)",
                "deepspeech": "torchaudio `DeepSpeech(n_feature=80)` defaults (module from its source)"})


def reference_params(name: str) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in ENTRIES[name].reference(False).parameters())


def row(name: str) -> str:
    """The table row of one zoo spec, measured now."""
    entry, lengths = ENTRIES[name], LENGTHS[name]
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
             "1,032,192 for Mamba-2), the whole difference for Mamba; RecurrentGemma's recurrent block pads its "
             "conv1d the same way (18 recurrent layers × 2 × 2,560 × 4 × 3 = 1,105,920). Mamba-2's reference also "
             "computes its SSD's scores C·Bᵀ for each of its 24 heads, where the `mamba2` lowering computes them "
             "once per group (1 here), and hands the states over with an (nc+1)² decay matrix where ours is "
             "(nc+1)·nc: 24 × (2·nc·256²·128·23 + 2·24·(nc+1)·64·128) FLOPs more, nc = ceil(T/256) "
             "(tests/zoo_refs.py `ssd_overhang`). tests/test_zoo.py checks estimate + the overhang == measured. RecurrentGemma's lengths are inside its attention window "
             "(2,048): past it the reference's SDPA still computes the whole masked T × T score square, "
             "its count growing as T², where `attention(window=)`'s banded kernel and the estimate do not."]
    if NOT_WRITTEN:
        lines += ["", "Not written (the language cannot say them exactly yet):", "",
                  "| model | reference | what is missing |", "|---|---|---|"]
        lines += [f"| {m} | {src} | {why} |" for m, src, why in NOT_WRITTEN]
    return lines


def kept_rows() -> dict[str, str]:
    """The rows benchmarks/results/zoo.md holds now, by spec name."""
    if not OUT.exists():
        return {}
    return {m.group(1): line for line in OUT.read_text().splitlines()
            if (m := re.match(r"\| `specs/zoo/(\w+)\.seq` \|", line))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="comma-separated zoo names to measure (default: all); the file's "
                        "other rows are kept")
    args = parser.parse_args()
    names = list(ENTRIES) if not args.models else args.models.split(",")
    unknown = [n for n in names if n not in ENTRIES]
    if unknown:
        parser.error(f"--models: no zoo entry {', '.join(unknown)}; known: {', '.join(ENTRIES)}")
    old = kept_rows()
    missing = [n for n in ENTRIES if n not in names and n not in old]
    if missing:
        parser.error(f"--models: {OUT.name} has no row for {', '.join(missing)} yet; measure it too")
    started = time.perf_counter()
    rows = {name: row(name) for name in names}
    elapsed = time.perf_counter() - started
    command = "python benchmarks/zoo_table.py" + (f" --models {args.models}" if args.models else "")
    lines = ["# Model zoo", "",
             f"Machine: {platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}.",
             f"Last command: `{command}` ({elapsed:.0f} s for {len(rows)} row{'s' if len(rows) != 1 else ''}; references on the meta device, "
             "batch 1)" + ("; the other rows are from earlier runs of the script." if args.models else "."), "",
             "| model | reference | params: ours / reference | forward FLOPs, length 1: ours / reference "
             "| forward FLOPs, length 2: ours / reference |",
             "|---|---|---|---|---|"]
    lines += [rows.get(name) or old[name] for name in ENTRIES]
    OUT.write_text("\n".join(lines + notes()) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
