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
