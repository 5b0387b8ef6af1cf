"""Spec texts and small helpers that several test files share."""

from seqdsl.cli import main


def write_spec(tmp_path, text: str, name: str = "m.seq") -> str:
    """`text` as a spec file in tmp_path; its path."""
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def run_compile(capsys, *argv):
    """`seqdsl compile ARGV` in-process: (exit code, stdout, stderr)."""
    code = main(["compile", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# A two-layer GPT with a tied output head: attention, MLP, layernorm, embed and
# repeat, small enough to estimate, build and time quickly.
GPT = """# a small GPT
model gpt {
    let d = 64
    input tokens: int[B, T]
    logits = tokens
        -> embed(1000, d) as wte
        -> repeat(2) {
               residual { layernorm -> attention(4, causal=true) }
               residual { layernorm -> mlp(4 * d) }
           }
        -> layernorm
        -> linear(1000, bias=false, tie=wte)
    output logits
}
"""


def assert_refused(input_type: str, stages: str, message: str) -> None:
    """A one-stage model `y = x -> STAGES` over `input x: INPUT_TYPE` is
    refused at check time with MESSAGE, placed at the stage's line (3)."""
    import pytest

    import seqdsl
    from seqdsl.errors import SpecError
    text = f"model m {{\n    input x: {input_type}\n    y = x -> {stages}\n    output y\n}}\n"
    with pytest.raises(SpecError) as e:
        seqdsl.parse(text, "t.seq").model()
    shown = str(e.value)
    assert message in shown and "t.seq:3:" in shown, shown
