"""Property: whatever text reaches `seqdsl.parse` -- valid specs damaged by
random character and token edits, or random token soup -- the front end ends
quickly with a checked Program or a SpecError, never another exception."""
import re
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import seqdsl

ROOT = Path(__file__).resolve().parent.parent
CORPUS = [p.read_text() for p in sorted((ROOT / "specs").glob("*.seq"))
          if "import" not in p.read_text()]
CORPUS += [p.read_text() for p in sorted((ROOT.parent / "shared" / "conformance").glob("*/*.seq"))]
TOKEN = re.compile(r"\s+|#[^\n]*|->|\*\*|//|\w+|.", re.S)
VOCAB = ["model", "block", "let", "input", "output", "repeat", "residual", "segments", "as", "import",
         "true", "false", "->", "{", "}", "(", ")", "[", "]", ",", "=", ":", "\n", " ", "#", "x", "y",
         "B", "T", "8", "1_000", "1e-5", "0.5", '"a.seq"', "**", "//", "-", "+", "*", "/", "%",
         "attention", "linear", "lstm", "conv1d", "conv2d", "embed", "posenc", "mlp", "layernorm",
         "heads", "kv_heads", "window", "causal", "int", "float", "min", "max", "ceil", "floor",
         "10**9", "__import__", "\x00", "\t", "\r\n", "é"]
SETTINGS = settings(max_examples=400, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def outcome(text):
    """Success or SpecError; anything else fails the property."""
    t0 = time.perf_counter()
    try:
        seqdsl.parse(text, base_dir=ROOT / "specs")
    except seqdsl.SpecError as exc:
        assert exc.diagnostics and all(d.message for d in exc.diagnostics)
        exc.render()                               # rendering never fails either
    assert time.perf_counter() - t0 < 5.0


@st.composite
def damaged(draw):
    text = draw(st.sampled_from(CORPUS))
    tokens = TOKEN.findall(text)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["del_char", "ins_char", "swap_char", "del_tok", "dup_tok", "swap_tok",
                                   "ins_tok"]))
        if op.endswith("_tok") and tokens:
            i = draw(st.integers(0, len(tokens) - 1))
            j = draw(st.integers(0, len(tokens) - 1))
            if op == "del_tok":
                del tokens[i]
            elif op == "dup_tok":
                tokens.insert(i, tokens[i])
            elif op == "swap_tok":
                tokens[i], tokens[j] = tokens[j], tokens[i]
            else:
                tokens.insert(i, draw(st.sampled_from(VOCAB)))
        else:
            s = "".join(tokens)
            if not s:
                continue
            i = draw(st.integers(0, len(s) - 1))
            if op == "del_char":
                s = s[:i] + s[i + 1:]
            elif op == "ins_char":
                s = s[:i] + draw(st.characters(codec="utf-8")) + s[i:]
            else:
                j = draw(st.integers(0, len(s) - 1))
                c = list(s)
                c[i], c[j] = c[j], c[i]
                s = "".join(c)
            tokens = TOKEN.findall(s)
    return "".join(tokens)


@SETTINGS
@given(damaged())
def test_damaged_specs_succeed_or_raise_spec_error(text):
    outcome(text)


@SETTINGS
@given(st.lists(st.sampled_from(VOCAB), max_size=80).map(" ".join))
def test_token_soup_succeeds_or_raises_spec_error(text):
    outcome(text)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.text(max_size=300))
def test_arbitrary_text_succeeds_or_raises_spec_error(text):
    outcome(text)


PIPE = st.sampled_from(["linear(8)", "relu", "layernorm", "rmsnorm", "attention(2)", "attention(2, causal=true)",
                        "mlp(16)", "swiglu(16)", "lstm(8)", "gru(4, bidirectional=true)", "conv1d(8, 3)",
                        "conv1d(8, 3, stride=2, padding=causal)", "dropout(0.1)", "time_mean", "posenc",
                        "attention(4, window=2, pos=rope)", "linear(3)", "batchnorm", "unsqueeze", "flatten"])


@st.composite
def random_model(draw):
    stages = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["layer", "layer", "residual", "repeat"]))
        inner = " -> ".join(draw(st.lists(PIPE, min_size=1, max_size=3)))
        if kind == "residual":
            stages.append(f"residual {{ {inner} }}")
        elif kind == "repeat":
            stages.append(f"repeat({draw(st.integers(1, 3))}) {{ {inner} }}")
        else:
            stages.append(inner)
    return ("model m {\n    input x: float[B, T, 8]\n    y = x -> " + " -> ".join(stages)
            + "\n    output y\n}\n")


@SETTINGS
@given(random_model())
def test_random_well_formed_models_check_or_are_refused_cleanly(text):
    """Random but grammatical pipelines: shape errors are SpecErrors; accepted
    models have consistent graphs (every node's inputs are its predecessors)."""
    try:
        m = seqdsl.parse(text).model()
    except seqdsl.SpecError:
        return
    assert m.params == sum(n.params for n in m.nodes)
    for n in m.nodes:
        assert set(n.sources) == set(m.graph.predecessors(n.name))
