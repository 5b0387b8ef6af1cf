"""docs/language.md is the language reference users have; its layer library
is generated from the registry (`seqdsl layers --markdown`), so the two
cannot drift, and every layer kind must say what it is.

Run this file to regenerate the section:  python tests/test_language_doc.py
"""
from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from seqdsl.check.elaborate import parse
from seqdsl.cli import main
from seqdsl.cli.layers import BEGIN, END, REQUIRED, UNDOCUMENTED, markdown, missing
from seqdsl.errors import SpecError
from seqdsl.layers import LAYERS, Layer, LayerArgs

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "language.md"
REGENERATE = ("regenerate it with `python tests/test_language_doc.py` (it writes the output of "
              "`python -m seqdsl layers --markdown` between the markers in docs/language.md)")


def committed_section(text: str | None = None) -> str:
    text = DOC.read_text(encoding="utf-8") if text is None else text
    assert text.count(BEGIN) == 1 and text.count(END) == 1, \
        f"docs/language.md must hold one {BEGIN} and one {END} marker"
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[start:end]


def regenerate() -> bool:
    """Write the generated section into docs/language.md; True if it changed."""
    text = DOC.read_text(encoding="utf-8")
    new = text.replace(committed_section(text), markdown())
    if new != text:
        DOC.write_text(new, encoding="utf-8")
    return new != text


def _where(layer: Layer) -> str:
    cls = type(layer)
    path = Path(inspect.getsourcefile(cls)).resolve().relative_to(ROOT)
    return f"class {cls.__name__} in {path}"


def _sections(section: str) -> dict[str, str]:
    """### `kind` -> that kind's text, from the generated section."""
    out, kind = {}, None
    for line in section.splitlines():
        if line.startswith("### `") and line.endswith("`"):
            kind = line[5:-1]
            out[kind] = ""
        elif kind is not None:
            out[kind] += line + "\n"
    return out


# ------------------------------------------------------------------ the registry gives the data
def test_every_layer_kind_documents_itself():
    gaps = [f"layer '{kind}' ({_where(layer)}) lacks {', '.join(missing(layer))}"
            for kind, layer in LAYERS.items() if missing(layer)]
    assert not gaps, (
        "every layer kind says what it is, for `seqdsl layers` and docs/language.md:\n  " + "\n  ".join(gaps)
        + "\nadd them as class attributes beside the kind's Args (see Attention in seqdsl/layers/attention.py): "
        "summary (one line: what it computes), shape_rule (input -> output, e.g. \"`[B, T, C] -> [B, T, C]`\"), "
        "params_rule (the parameter count as a formula of C and the arguments, \"0\" for none), and causal_rule "
        "(in words) when is_causal depends on the arguments; arg_docs (argument -> meaning) and notes are "
        "optional. Then " + REGENERATE)


def test_arg_docs_name_real_arguments():
    by_class: dict[type, set[str]] = {}
    for layer in LAYERS.values():
        by_class.setdefault(type(layer), set()).update(layer.Args.model_fields)
    bad = [f"{_where(layer)}: arg_docs names '{name}', which is no argument"
           for layer in LAYERS.values() for name in (layer.arg_docs or {}) if name not in by_class[type(layer)]]
    assert not bad, "\n".join(sorted(set(bad)))


# ------------------------------------------------------------------ the doc holds it
def test_committed_layer_section_is_what_the_registry_generates():
    assert committed_section() == markdown(), (
        "docs/language.md's layer library (between the layers:begin / layers:end markers) differs from what "
        "the layer registry generates: " + REGENERATE)


def test_every_layer_and_argument_appears_in_the_doc():
    sections = _sections(committed_section())
    absent = []
    for kind, layer in LAYERS.items():
        if kind not in sections:
            absent.append(f"layer '{kind}'")
            continue
        absent += [f"argument '{name}' of '{kind}'" for name in layer.Args.model_fields
                   if f"| `{name}` |" not in sections[kind]]
    assert not absent, "docs/language.md does not document: " + ", ".join(absent) + "; " + REGENERATE


def test_the_doc_covers_the_language():
    text = DOC.read_text(encoding="utf-8")
    for word in ("## Lexical rules", "## Top level", "### `let` and expressions", "### Inputs and dims",
                 "### Outputs", "## Pipelines", "`as NAME`", "### `repeat(N) { body }`", "### `residual { body }`",
                 "### `segments(length=L, memory=M) { body }`", "### Blocks", "### Imports", "**Comments**",
                 "## Semantics", "symbolic dim", "**Causality and streaming.**", "## Errors and limits",
                 "## Layer library"):
        assert word in text, f"docs/language.md lost its part on {word}"


# ------------------------------------------------------------------ seqdsl layers
def test_layers_lists_every_kind(capsys):
    assert main(["layers"]) == 0
    out = capsys.readouterr().out
    for kind, layer in LAYERS.items():
        assert any(line.split()[:1] == [kind] for line in out.splitlines()), kind
    assert "docs/language.md" in out


def test_layers_name_shows_arguments_shape_params_and_causality(capsys):
    assert main(["layers", "attention"]) == 0
    out = capsys.readouterr().out
    for name in LAYERS["attention"].Args.model_fields:
        assert f"\n  {name} " in out, name
    assert "kv_heads=none" in out and "required" in out and "float in [0, 1)" in out
    for label in ("shape:", "parameters:", "causal:"):
        assert label in out
    assert main(["layers", "conv1d"]) == 0
    out = capsys.readouterr().out
    assert "padding=same" in out and "one of same, valid, causal" in out
    assert main(["layers", "relu"]) == 0
    assert "arguments:   none" in capsys.readouterr().out


def test_unknown_layer_exits_2_with_one_line_and_a_suggestion(capsys):
    assert main(["layers", "atention"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == ["seqdsl layers: error: unknown layer 'atention'; did you mean 'attention'?"]
    assert main(["layers", "qqqqqq"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["layers", "repeat"]) == 2
    assert "combinator" in capsys.readouterr().err


def test_layers_markdown_is_the_section(capsys):
    assert main(["layers", "--markdown"]) == 0
    assert capsys.readouterr().out == markdown() + "\n"


def test_an_undocumented_kind_prints_undocumented_and_fails_clearly(monkeypatch, capsys):
    class NewArgs(LayerArgs):
        state: int = 16

    class New(Layer):
        kind = "new_mixer"
        Args = NewArgs

        def is_causal(self, args, inputs=None):
            return True

    monkeypatch.setitem(LAYERS, "new_mixer", New())
    assert missing(LAYERS["new_mixer"]) == [*REQUIRED, "causal_rule"]
    for argv in (["layers"], ["layers", "new_mixer"], ["layers", "--markdown"]):
        assert main(argv) == 0
        assert UNDOCUMENTED in capsys.readouterr().out
    with pytest.raises(AssertionError, match="layer 'new_mixer' .*lacks summary, shape_rule, params_rule"):
        test_every_layer_kind_documents_itself()
    with pytest.raises(AssertionError, match="python tests/test_language_doc.py"):
        test_committed_layer_section_is_what_the_registry_generates()


def test_layers_does_not_import_torch():
    code = ("import sys\n"
            "from seqdsl.cli import main\n"
            "for argv in (['layers'], ['layers', 'attention'], ['layers', '--markdown']):\n"
            "    assert main(argv) == 0, argv\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=120, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


# ------------------------------------------------------------------ help points at what users have
def test_unknown_layer_help_points_at_the_reference():
    with pytest.raises(SpecError) as info:
        parse("model m {\n  input x: float[B, T, 8]\n  y = x -> qqqqqq\n  output y\n}\n")
    help_text = info.value.diagnostics[0].help or ""
    assert "seqdsl layers" in help_text and "docs/language.md" in help_text


def _strings(path: Path):
    """String constants of a module, docstrings left out (comments are not strings)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def test_nothing_user_facing_points_at_files_users_do_not_have():
    bad = [f"grammars/seq.lark:{i}: {line}" for i, line in
           enumerate((ROOT / "grammars" / "seq.lark").read_text(encoding="utf-8").splitlines(), 1)
           if "LANGUAGE.md" in line or "../shared" in line]
    for path in sorted((ROOT / "seqdsl").rglob("*.py")):
        bad += [f"{path.relative_to(ROOT)}:{line}: {s!r}" for line, s in _strings(path)
                if "LANGUAGE.md" in s or "../shared" in s]
    assert not bad, "these point users at files they do not have (use docs/language.md or `seqdsl layers`):\n" \
        + "\n".join(bad)


if __name__ == "__main__":
    print("docs/language.md " + ("regenerated" if regenerate() else "was up to date"))
