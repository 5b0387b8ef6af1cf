"""The README tells the truth about the bundled files it quotes."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_opening_spec_is_a_bundled_spec_verbatim():
    text = (ROOT / "README.md").read_text()
    m = re.search(r"`(specs/[\w/]+\.seq)`, one of the bundled specs:\n\n```\n(.*?)```\n", text, re.S)
    assert m, "the README opens with a spec quoted from specs/"
    assert m.group(2) == (ROOT / m.group(1)).read_text()


def test_the_readme_names_only_modules_that_exist():
    text = (ROOT / "README.md").read_text()
    for mod in set(re.findall(r"\bfrom (seqdsl(?:\.\w+)*) import", text)) | set(re.findall(r"\bimport (seqdsl(?:\.\w+)*)", text)):
        path = ROOT / Path(*mod.split("."))
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), mod


def test_the_compare_example_has_the_crossover_it_shows():
    from seqdsl.cost.compare import compare
    text = (ROOT / "README.md").read_text()
    assert "c.crossovers[0].seq                                       # {'T': 2275}" in text
    assert "(but at T = 2,305-2,347, a new chunk's start)" in text
    c = compare([str(ROOT / "specs/transformer_lm.seq"), str(ROOT / "specs/mamba2_lm.seq")], metric="flops_train")
    assert [x.seq for x in c.crossovers] == [{"T": 2275}, {"T": 2305}, {"T": 2348}]
