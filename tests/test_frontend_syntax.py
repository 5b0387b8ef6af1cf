"""The language's syntax (LANGUAGE.md "Lexical", "Top level", "Statements"):
newline continuation, literals, let expressions, several models, imports,
`as NAME`, hierarchical node names."""
from pathlib import Path

import pytest

import seqdsl


def model(text, **kw):
    return seqdsl.parse(text, **kw).model()


def refuse(text, **kw):
    with pytest.raises(seqdsl.SpecError) as exc:
        seqdsl.parse(text, **kw)
    return exc.value


def channels_of(expr):
    """Evaluate a let/argument expression through linear(out=EXPR)."""
    m = model(f"model m {{\n    input x: float[B, T, 8]\n    y = x -> linear({expr})\n    output y\n}}")
    return int(m.outputs["y"].dims[-1])


# ----------------------------------------------------------------- newlines
def test_continuation_rules():
    text = """
# a comment before anything

model m {   # comment after a brace
    let a = 1_000

    input x: float[
        B,
        T,
        8
    ]
    y = x ->
        # a comment line inside a continued statement

        linear(
            a,
            bias=false
        )
        -> relu

        -> linear(4)
    z = x -> residual {
        linear(8)
        relu

        linear(8)
    } -> layernorm(eps=1e-5) -> conv1d(4, [3], stride=[1])
    output y, z
}
"""
    m = model(text)
    assert [n.kind for n in m.layers] == ["linear", "relu", "linear", "linear", "relu", "linear",
                                          "layernorm", "conv1d"]
    assert str(m.outputs["y"]) == "float[B, T, 4]"
    assert m.layers[0].params == 8 * 1000                     # bias=false survived the line breaks


def test_a_newline_ends_a_statement():
    # `y = x` then a new statement: the bare line `linear(8)` is not a stage of y
    err = refuse("model m {\n    input x: float[B, T, 8]\n    y = x\n    linear(8)\n    output y\n}")
    assert err.span.line == 4
    # two statements on one line are an error
    err = refuse("model m {\n    input x: float[B, T, 8]\n    y = x -> linear(8) z = x\n    output y\n}")
    assert (err.span.line, err.span.column) == (3, 24)
    # a comma does not continue a line (only ->, ( and [ do)
    refuse("model m {\n    input x: float[B, T, 8]\n    output x,\n        x\n}")


def test_next_line_starting_with_arrow_continues():
    m = model("model m {\n    input x: float[B, T, 8]\n    y = x\n\n    # note\n    -> linear(3)\n    -> relu\n"
              "    output y\n}")
    assert [n.kind for n in m.layers] == ["linear", "relu"]


def test_crlf_line_endings():
    text = "model m {\r\n    input x: float[B, T, 8]\r\n    y = x ->\r\n  linear(2)\r\n    output y\r\n}\r\n"
    assert str(model(text).outputs["y"]) == "float[B, T, 2]"


# ----------------------------------------------------------------- literals and lets
@pytest.mark.parametrize("expr,value", [
    ("1_000", 1000), ("2 + 3 * 4", 14), ("(2 + 3) * 4", 20), ("17 // 5", 3), ("17 % 5", 2),
    ("2 ** 5", 32), ("2 ** 3 ** 2", 512), ("-2 ** 2 + 10", 6), ("10 - 2 - 3", 5), ("12 / 4", 3),
    ("min(3, 7)", 3), ("max(3, 7, 5)", 7), ("ceil(7 / 2)", 4), ("floor(7 / 2)", 3), ("ceil(8 / 2)", 4),
])
def test_expressions(expr, value):
    assert channels_of(expr) == value


def test_lets_chain_and_are_constants():
    m = model("model m {\n    let d = 64\n    let h = d * 4\n    let k = h // d + max(d, 2) - 64\n"
              "    input x: float[B, T, d]\n    y = x -> mlp(h, out=k)\n    output y\n}")
    assert str(m.outputs["y"]) == "float[B, T, 4]" and m.layers[0].params == 64 * 256 + 256 + 256 * 4 + 4
    assert "already bound" in refuse("model m {\n    let d = 4\n    let d = 5\n    input x: float[B, T, 8]\n"
                                     "    output x\n}").message
    assert "'e'" in refuse("model m {\n    let d = e + 1\n    input x: float[B, T, 8]\n    output x\n}").message
    assert "zero" in refuse("model m {\n    let d = 1 // 0\n    input x: float[B, T, 8]\n    output x\n}").message
    assert "sqrt" in refuse("model m {\n    let d = sqrt(4)\n    input x: float[B, T, 8]\n    output x\n}").message


def test_non_integer_sizes_are_refused():
    assert "int" in refuse("model m {\n    input x: float[B, T, 8]\n    y = x -> linear(7 / 2)\n"
                           "    output y\n}").message
    refuse("model m {\n    input x: float[B, T, 8]\n    y = x -> linear(8.0)\n    output y\n}")
    refuse("model m {\n    input x: float[B, T, 8]\n    y = x -> linear(true)\n    output y\n}")


def test_floats_bools_lists_and_enum_words():
    m = model("model m {\n    input x: float[B, T, 8, 1]\n"
              "    y = x -> conv2d(4, kernel=[3, 1], stride=[2, 1], bias=false) -> layernorm(eps=1e-6)\n"
              "         -> dropout(0.25) -> mlp(16, act=relu)\n    output y\n}")
    conv, norm, drop, mlp = m.layers
    assert conv.params == 4 * 3 and norm.args.eps == 1e-6 and drop.args.p == 0.25
    assert mlp.args.act == "relu"


def test_symbolic_dims_stay_symbolic_and_lets_in_dims_are_numbers():
    m = model("model m {\n    let F = 40\n    input x: float[Batch, Len, F * 2]\n    y = x -> linear(4)\n"
              "    output y\n}")
    assert str(m.outputs["y"]) == "float[Batch, Len, 4]"
    assert m.symbols == ("Batch", "Len")


# ----------------------------------------------------------------- models, blocks
TWO = """
block ffn(hidden, act=gelu) {
    residual { layernorm -> mlp(hidden, act=act) }
}
model small {
    input x: float[B, T, 8]
    y = x -> ffn(16)
    output y
}
model large {
    input x: float[B, T, 8]
    y = x -> repeat(3) { ffn(hidden=32, act=relu) }
    output y
}
"""


def test_several_models_in_one_file():
    p = seqdsl.parse(TWO)
    assert list(p.models) == ["small", "large"]
    assert p.model("large").params == 3 * (16 + 8 * 32 + 32 + 32 * 8 + 8)
    with pytest.raises(seqdsl.SpecError) as exc:
        p.model()
    assert "small" in exc.value.message and "large" in exc.value.message
    with pytest.raises(seqdsl.SpecError) as exc:
        p.model("larg")
    assert "large" in str(exc.value)


def test_block_defaults_and_errors():
    m = seqdsl.parse(TWO).model("large")
    assert {n.args.act for n in m.layers if n.kind == "mlp"} == {"relu"}
    assert "defined twice" in refuse(TWO.replace("model large", "model small")).message
    assert "'f'" in refuse(TWO.replace("ffn(16)", "ffn(16, f=1)")).message
    assert "hidden" in refuse(TWO.replace("ffn(16)", "ffn")).message


def test_recursive_blocks_are_refused_directly_and_mutually():
    text = "block a(d) { b(d) }\nblock b(d) { a(d) }\nmodel m {\n    input x: float[B, T, 8]\n" \
           "    y = x -> a(8)\n    output y\n}"
    assert "recurs" in refuse(text).message


# ----------------------------------------------------------------- names
def test_as_names_and_hierarchical_names():
    m = model("model m {\n    input x: float[B, T, 8]\n"
              "    encoded = x -> linear(8) as proj -> repeat(3) {\n"
              "        residual { layernorm -> attention(2) }\n"
              "        residual { layernorm -> mlp(16) }\n    }\n    output encoded\n}")
    names = [n.name for n in m.layers]
    assert "encoded.proj" in names
    assert "encoded.repeat[2].residual[0].attention" in names
    assert "encoded.repeat[0].residual[1].mlp" in names
    assert m.node("encoded.proj").alias == "proj"
    assert len(set(names)) == len(names)
    assert "already used" in refuse("model m {\n    input x: float[B, T, 8]\n"
                                    "    y = x -> linear(8) as a -> linear(8) as a\n    output y\n}").message


def test_graph_edges_follow_the_data():
    m = model("model m {\n    input x: float[B, T, 8]\n    y = x -> residual { linear(8) }\n    output y\n}")
    g = m.graph
    add = next(n.name for n in m.nodes if n.kind == "add")
    assert set(g.predecessors(add)) == {"x", "y.residual.linear"} or len(list(g.predecessors(add))) == 2


# ----------------------------------------------------------------- imports
BLOCKS = "block ffn(h) {\n    residual { layernorm -> mlp(h) }\n}\n"
USER = 'import "blocks/common.seq"\nmodel m {\n    input x: float[B, T, 8]\n    y = x -> ffn(16)\n    output y\n}\n'


def test_import_is_relative_to_the_importing_file(tmp_path, monkeypatch):
    (tmp_path / "blocks").mkdir()
    (tmp_path / "blocks" / "common.seq").write_text('import "inner.seq"\n' + BLOCKS)
    (tmp_path / "blocks" / "inner.seq").write_text("block unused(d) { linear(d) }\n")
    (tmp_path / "spec.seq").write_text(USER)
    monkeypatch.chdir("/")
    assert seqdsl.load(tmp_path / "spec.seq").model().params == 16 + 8 * 16 + 16 + 16 * 8 + 8
    assert seqdsl.parse(USER, base_dir=tmp_path).model().params == 296


def test_the_bundled_transformer_imports_its_blocks():
    root = Path(__file__).resolve().parent.parent
    assert 'import "blocks/common.seq"' in (root / "specs" / "transformer_lm.seq").read_text()
    assert seqdsl.load(root / "specs" / "transformer_lm.seq").model().params == 100_092_672


@pytest.mark.parametrize("target", ["../x.seq", "/etc/passwd", "blocks/../../x.seq", "/dev/zero"])
def test_imports_outside_the_folder_are_refused(tmp_path, target):
    (tmp_path / "x.seq").write_text(BLOCKS)
    sub = tmp_path / "spec"
    sub.mkdir()
    (sub / "spec.seq").write_text(f'import "{target}"\n' + USER.split("\n", 1)[1])
    with pytest.raises(seqdsl.SpecError) as exc:
        seqdsl.load(sub / "spec.seq")
    assert exc.value.span.line == 1
    assert "folder" in exc.value.message or "outside" in exc.value.message


def test_symlink_escaping_the_folder_is_refused(tmp_path):
    (tmp_path / "x.seq").write_text(BLOCKS)
    sub = tmp_path / "spec"
    sub.mkdir()
    (sub / "link.seq").symlink_to(tmp_path / "x.seq")
    (sub / "spec.seq").write_text('import "link.seq"\n' + USER.split("\n", 1)[1])
    with pytest.raises(seqdsl.SpecError):
        seqdsl.load(sub / "spec.seq")


def test_missing_and_cyclic_imports(tmp_path):
    (tmp_path / "spec.seq").write_text('import "nothere.seq"\n' + USER.split("\n", 1)[1])
    with pytest.raises(seqdsl.SpecError) as exc:
        seqdsl.load(tmp_path / "spec.seq")
    assert "nothere.seq" in exc.value.message and exc.value.span.line == 1
    (tmp_path / "a.seq").write_text('import "b.seq"\n' + BLOCKS)
    (tmp_path / "b.seq").write_text('import "a.seq"\nblock other(d) { linear(d) }\n')
    (tmp_path / "spec.seq").write_text('import "a.seq"\n' + USER.split("\n", 1)[1])
    try:  # a cycle may be allowed (each file once) or refused, but must end
        seqdsl.load(tmp_path / "spec.seq")
    except seqdsl.SpecError as exc:
        assert "import" in exc.message


@pytest.mark.parametrize("name", ["S", "E", "I", "N", "pi", "oo", "lambda", "ceiling", "floor", "True"])
def test_symbol_names_that_mean_something_to_sympy_stay_plain_symbols(name):
    m = model(f"model m {{\n    input x: float[B, {name}, 8]\n    y = x -> conv1d(8, 3, stride=2)\n    output y\n}}")
    assert str(m.outputs["y"]) == f"float[B, ceil({name}/2), 8]"
    assert m.symbols == ("B", name)
