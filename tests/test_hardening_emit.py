"""Hardening of the generated source and the Python API: spec names that are
Python keywords, builtins, dunders, nn.Module attributes or the emitted file's
own names; bad arguments to the API; inputs that disagree with the spec."""
from __future__ import annotations

import importlib.util
import itertools
import keyword
import os
import sys
import tempfile

import pytest

torch = pytest.importorskip("torch")

from hypothesis import assume, HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import seqdsl  # noqa: E402
from seqdsl.backend.emit import class_names, emit_program, file_names  # noqa: E402
from seqdsl.lang.printer import is_identifier  # noqa: E402

from small_specs import run_compile, write_spec  # noqa: E402
from test_backend_build import one_thread  # noqa: E402,F401  (autouse)

_counter = itertools.count()


def import_source(src: str):
    """The emitted source imported as a fresh module (written to a temp file)."""
    name = f"hardening_gen_{next(_counter)}"
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, name + ".py")
        with open(path, "w") as f:
            f.write(src)
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    return mod


def inputs_for(graph, seed=0, t=7, s=5):
    g = torch.Generator().manual_seed(seed)
    out = []
    for ty in graph.inputs.values():
        shape = [2 if str(d) == "B" else t if str(d) == "T" else s if str(d) == "S" else int(d)
                 for d in ty.dims]
        out.append(torch.randint(0, 20, shape, generator=g) if ty.dtype == "int" else torch.randn(shape, generator=g))
    return out


def assert_emitted_equals_built(text: str):
    """Every model of `text`: the emitted class, loaded with seqdsl.build's
    weights, gives the same outputs; and the built module survives train/eval
    and a state_dict round trip."""
    prog = seqdsl.parse(text)
    graphs = list(prog.models.values())
    mod = import_source(emit_program(graphs, "hostile.seq"))
    assert set(mod.MODELS) == set(prog.models)
    for graph in graphs:
        torch.manual_seed(0)
        built = seqdsl.build(graph)
        built.train()
        built.eval()
        emitted = mod.MODELS[graph.name]().eval()
        emitted.load_state_dict(built.state_dict())
        again = seqdsl.build(graph).eval()
        again.load_state_dict(built.state_dict())
        xs = inputs_for(graph)
        with torch.no_grad():
            a, b, c = built(*xs), emitted(*xs), again(*xs)
        a, b, c = ((y if isinstance(y, tuple) else (y,)) for y in (a, b, c))
        assert len(a) == len(b) == len(graph.outputs)
        for x, y, z in zip(a, b, c):
            assert torch.allclose(x, y, atol=1e-6) and torch.equal(x, z)
    return mod


# ------------------------------------------------------------------ item 4
def test_input_named_like_a_temporary():
    """An input `h1` beside the emitter's first temporary: forward must read the input."""
    assert_emitted_equals_built("""
model m {
    input x: float[B, T, 8]
    input h1: float[B, T, 8]
    y = x -> linear(8)
    z = h1 -> linear(8) -> gelu
    output z, y
}""")


# ------------------------------------------------------------------ item 5
def test_names_that_shadow_the_files_own():
    """Models named like the file's classes and helpers (`linear` -> Linear, F,
    ACTS, SpecModule); inputs named like the globals forward uses (`torch`,
    `range`) or not allowed as Python names (`__debug__`)."""
    mod = assert_emitted_equals_built("""
model linear {
    input torch: float[B, T, 8]
    input range: float[B, T, 8]
    y = torch -> segments(length=3, memory=2) { attention(2, causal=true) } -> linear(8)
    z = range -> linear(8)
    out = y -> residual { layernorm } -> cross_attention(2, context=z)
    output out
}
model F {
    input __debug__: float[B, T, 8]
    y = __debug__ -> linear(8)
    output y
}
model ACTS {
    input self: float[B, T, 8]
    y = self -> mlp(8) -> relu
    output y
}
model spec_module {
    input x: float[B, T, 8]
    y = x -> linear(8)
    output y
}""")
    assert mod.F is torch.nn.functional and mod.ACTS["relu"] is torch.nn.functional.relu
    assert issubclass(mod.Linear, torch.nn.Module) and mod.MODELS["linear"] is not mod.Linear


# ------------------------------------------------------------------ item 6
def test_models_differing_in_case_or_underscores(tmp_path, capsys):
    text = """
model foo_bar {
    input x: float[B, T, 8]
    y = x -> linear(8)
    output y
}
model fooBar {
    input x: float[B, T, 8]
    y = x -> linear(4)
    output y
}
model foo__bar {
    input x: float[B, T, 8]
    y = x -> gelu
    output y
}"""
    names = class_names(["foo_bar", "fooBar", "foo__bar", "lstm_lm"])
    assert len(set(names.values())) == 4 and names["lstm_lm"] == "LstmLm"
    assert_emitted_equals_built(text)
    code, out, err = run_compile(capsys, write_spec(tmp_path, text), "-o", str(tmp_path / "m.py"))
    assert code == 0, err


# ------------------------------------------------------------------ item 7
MODULE_ATTRS = ["eval", "type", "to", "forward", "training", "modules", "cuda", "state_dict",
                "parameters", "_modules", "_parameters", "layers", "graph", "add_module", "float"]


def test_values_and_layers_named_like_module_attributes():
    stmts = []
    prev = "x"
    for i, name in enumerate(MODULE_ATTRS):
        alias = MODULE_ATTRS[-1 - i]
        stmts.append(f"    {name} = {prev} -> linear(8) as {alias} -> layernorm")
        prev = name
    text = "model m {\n    input x: float[B, T, 8]\n" + "\n".join(stmts) + f"\n    output {prev}\n}}"
    assert_emitted_equals_built(text)
    built = seqdsl.build(seqdsl.parse(text).model())
    keys = set(built.state_dict())
    # readable: other names stay as written, attribute names are marked <name>
    assert "<eval>.<float>.weight" in keys and "layers.<forward>.weight" in keys
    assert isinstance(built.training, bool)
    built.to(torch.float64)
    assert built(torch.randn(1, 3, 8, dtype=torch.float64)).dtype == torch.float64


def test_state_dict_keys_of_plain_names_are_unchanged():
    text = """
model m {
    input tokens: int[B, T]
    logits = tokens -> embed(50, 16) as wte -> repeat(2) { residual { layernorm -> attention(2, causal=true) } }
        -> linear(50, bias=false, tie=wte) as head
    output logits
}"""
    keys = set(seqdsl.build(seqdsl.parse(text).model()).state_dict())
    assert "logits.repeat[0].residual.attention.q.weight" in keys and "logits.wte.weight" in keys


EXPORT_SCRIPT = r"""
import sys, torch, seqdsl
from seqdsl.backend.export import export_model
text = '''
model m {
    input x: float[B, T, 8]
    eval = x -> linear(8) as training -> layernorm as graph
    code = eval -> linear(8) as meta
    forward = code -> residual { attention(2, causal=true) as state_dict }
    output forward
}'''
g = seqdsl.parse(text).model()
export_model(g, sys.argv[1], "T=8")
m = torch.export.load(sys.argv[1]).module()
torch.manual_seed(0)
x = torch.randn(2, 11, 8)
ref = seqdsl.build(g).eval()
ref.load_state_dict({k[len("layers."):]: v for k, v in m.state_dict().items()})
with torch.no_grad():
    assert torch.allclose(m(x), ref(x), atol=1e-5)
# a learned posenc bounds T's range (it was a violated constraint at max=65536)
g = seqdsl.parse("model p {\n    input tokens: int[B, T]\n    y = tokens -> embed(50, 16) -> posenc(learned, max_len=32)"
                 " -> attention(2, causal=true) -> linear(4)\n    output y\n}").model()
export_model(g, sys.argv[1] + ".p.pt2")
m = torch.export.load(sys.argv[1] + ".p.pt2").module()
assert m(torch.randint(0, 50, (2, 11))).shape == (2, 11, 4)
assert m(torch.randint(0, 50, (2, 32))).shape == (2, 32, 4)
print("export-ok")
"""


def test_export_with_module_attribute_names_and_a_learned_posenc(tmp_path):
    import subprocess
    r = subprocess.run([sys.executable, "-c", EXPORT_SCRIPT, str(tmp_path / "m.pt2")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "export-ok" in r.stdout


# ------------------------------------------------------------------ items 4-7: property
SEQ_KEYWORDS = {"model", "block", "let", "input", "output", "repeat", "residual", "segments", "as",
                "import", "true", "false"}
HOSTILE = sorted({
    *keyword.kwlist, *keyword.softkwlist,
    "range", "zip", "len", "print", "int", "float", "super", "type", "object", "list", "dict", "id",
    "__debug__", "__class__", "__init__", "__name__", "__builtins__", "__dict__", "__import__",
    "torch", "nn", "F", "math", "self", "x", "states", "pieces", "start", "layer", "st", "p",
    "h1", "h2", "h3", "s0", "s1", "e0", "v_x", "v_h1", "_segments0", "M_x", "MODELS",
    "ACTS", "Act", "Linear", "linear", "Attention", "attention", "Scope", "SpecModule", "sinusoid",
    "_dense", "storage_key", "eval", "training", "forward", "state_dict", "parameters", "_modules",
    "layers", "graph", "code", "to", "cuda", "modules", "add_module",
    "foo_bar", "fooBar", "FooBar", "foo__bar", "_foo_bar", "foobar", "_", "__", "M", "m",
    "none", "causal", "rope", "learned", "softmax", "tie", "context", "embed", "gru", "Scope_",
} - SEQ_KEYWORDS - {"B", "T", "S"})
HOSTILE = [n for n in HOSTILE if is_identifier(n)]


def _model_text(model, names, variant=0):
    a, b, v1, v2, v3, l1, l2, l3 = names
    if variant == 2:
        # combining values: a split bound to two names, mul, add and concat of bound values
        return f"""
model {model} {{
    input {a}: float[B, T, 8]
    input {b}: float[B, T, 8]
    {v1}, {l1} = {a} -> linear(16) -> split(2)
    {l2} = {l1} -> silu
    {v2} = {v1} -> mul({l2}) -> add({b}) -> concat({a}) as {l3}
    {v3} = {v2} -> linear(8) -> add({v1})
    output {v3}, {v1}
}}"""
    if variant:
        # token ids, a tied head (tie= names an alias), repeat, conv, an RNN
        return f"""
model {model} {{
    input {a}: int[B, T]
    input {b}: float[B, S, 8]
    {v1} = {a} -> embed(20, 8) as {l1} -> repeat(2) {{ residual {{ rmsnorm -> attention(2, causal=true) }} }} as {l2}
    {v2} = {v1} -> conv1d(8, 3, padding=causal) as {l3} -> gru(8) -> cross_attention(2, context={b})
    {v3} = {v2} -> linear(20, tie={l1})
    output {v3}
}}"""
    return f"""
model {model} {{
    input {a}: float[B, T, 8]
    input {b}: float[B, S, 8]
    {v1} = {a} -> linear(8) as {l1} -> layernorm
    {v2} = {v1} -> residual {{ attention(2, causal=true) }} -> cross_attention(2, context={b}) as {l2}
    {v3} = {v2} -> segments(length=3, memory=2) {{ attention(2, causal=true) as {l3} -> cross_attention(2, context={a}) }} -> mlp(8)
    output {v3}, {v1}
}}"""


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models=st.lists(st.sampled_from(HOSTILE), min_size=2, max_size=2, unique=True),
       names=st.lists(st.lists(st.sampled_from(HOSTILE), min_size=8, max_size=8, unique=True),
                      min_size=2, max_size=2),
       variants=st.lists(st.integers(0, 2), min_size=2, max_size=2))
def test_hostile_names_emit_what_build_computes(models, names, variants):
    text = "".join(_model_text(m, n, v) for m, n, v in zip(models, names, variants))
    try:   # a draw the checker refuses cleanly (a value named like an enum word it then stands for,
        seqdsl.parse(text)   # `as gru` beside a default-named gru) is no case for the emitter
    except seqdsl.SpecError:
        assume(False)
    mod = assert_emitted_equals_built(text)
    classes = {c.__name__ for c in mod.MODELS.values()}
    assert len(classes) == 2 and not classes & file_names()


# ------------------------------------------------------------------ item 3: builder
INJECTION = "T]\n}\nmodel evil {\n    input z: float[B, T"


def _builder_refuses(fn, *words, kind=ValueError):
    with pytest.raises(kind) as info:
        fn()
    assert isinstance(info.value, seqdsl.SpecError)
    for w in words:
        assert w in str(info.value), str(info.value)


def test_builder_refuses_names_and_dims_that_are_not_the_language():
    import seqdsl.builder as sb
    m = sb.model("a")
    _builder_refuses(lambda: m.input("x", "float", ["B", INJECTION, 8]), "input 'x'", "dim")
    _builder_refuses(lambda: m.input("x", "float\n}", ["B", 8]), "dtype")
    _builder_refuses(lambda: m.input("x", "float", ["B", 0]), "dim 0")
    _builder_refuses(lambda: m.input("x", "float", ["B", -3]), "dim -3")
    _builder_refuses(lambda: m.input("x", "float", ["B", 2.5]), "dim 2.5", kind=TypeError)
    _builder_refuses(lambda: m.input("x", "float", "BT"), "dims", kind=TypeError)
    _builder_refuses(lambda: m.input("x\n}", "float", ["B"]), "input name")
    _builder_refuses(lambda: m.input(3, "float", ["B"]), "input name", kind=TypeError)
    x = m.input("x", "float", ["B", "T", 8])
    _builder_refuses(lambda: m.output(sb.Value("y\n}\nmodel evil {\n    input q: float[B]\n    output q")),
                     "output name")
    _builder_refuses(lambda: m.bind("y", sb.Value("x}\nmodel e {"), sb.gelu()), "value name")
    _builder_refuses(lambda: m.bind("y", x, sb.linear(8, act="a\n}")), "line break")
    _builder_refuses(lambda: m.bind("y", x, sb.linear(float("inf"))), "finite")
    _builder_refuses(lambda: m.bind("y", x, sb.linear(8, as_="wé")), "not a valid identifier")
    _builder_refuses(lambda: m.bind("y", x, sb.layer(["linear"])), "layer kind", kind=TypeError)
    _builder_refuses(lambda: m.let("d", sb.func("min", sb.Value("x\n}"))), "value name")
    # a hand-made AST node is checked before it is printed
    from seqdsl.lang import ast
    m.statements.append(ast.Input("q", "float", None, (ast.Name(INJECTION, None),), None))
    _builder_refuses(m.to_seq, "not a valid identifier")
    _builder_refuses(m.check, "not a valid identifier")
    m.statements.pop()
    prog = sb.Program([m], imports=['x.seq"\nmodel evil {'])
    _builder_refuses(prog.to_seq, "import path")
    # what it accepts still checks
    ok = sb.model("ok")
    d = ok.let("d", 4)
    x = ok.input("x", "float", ["B", "T", d * 2])
    ok.output(ok.bind("y", x, sb.linear(8)))
    assert "model evil" not in ok.to_seq() and list(ok.check().outputs) == ["y"]


def test_builder_deep_expressions_and_bodies_are_refused_not_recursion_errors():
    import seqdsl.builder as sb

    def long_sum():
        e = sb.ref("d")
        for _ in range(3000):
            e = e + 1
    _builder_refuses(long_sum, "MAX_EXPR_DEPTH")

    def long_right_sum():
        e = sb.ref("d")
        for _ in range(3000):
            e = 1 - e
    _builder_refuses(long_right_sum, "MAX_EXPR_DEPTH")

    def deep_bodies():
        s = sb.gelu()
        for _ in range(3000):
            s = sb.residual(s)
        m = sb.model("q")
        m.output(m.bind("y", m.input("x", "float", ["B", "T", 8]), s))
        m.to_seq()
    _builder_refuses(deep_bodies, "MAX_NESTING")


# ------------------------------------------------------------------ item 28: inputs against the spec
CHECKED = """
model m {
    input tokens: int[B, T]
    input ctx: float[B, S, 16]
    y = tokens -> embed(50, 16) -> posenc(learned, max_len=32) -> attention(2, causal=true)
        -> cross_attention(2, context=ctx) -> linear(4)
    output y
}"""


@pytest.fixture(scope="module")
def checked_model():
    torch.manual_seed(0)
    return seqdsl.build(seqdsl.parse(CHECKED).model()).eval()


@pytest.mark.parametrize("case, kind, words", [
    ("float_tokens", TypeError, ["input 'tokens'", "float32", "tokens: int[B, T]", "line 3"]),
    ("int_ctx", TypeError, ["input 'ctx'", "ctx: float[B, S, 16]", "line 4"]),
    ("rank", ValueError, ["input 'tokens'", "rank 1", "tokens: int[B, T]", "line 3"]),
    ("channels", ValueError, ["input 'ctx'", "(2, 5, 8)", "ctx: float[B, S, 16]", "line 4"]),
    ("batch", ValueError, ["input 'ctx'", "B=1", "input 'tokens' has B=2", "line 4"]),
    ("max_len", ValueError, ["posenc", "line 5", "max_len", "40", "input 'tokens' has T=40"]),
    ("not_tensor", TypeError, ["input 'tokens'", "list", "line 3"]),
])
def test_forward_checks_inputs_against_the_spec(checked_model, case, kind, words):
    t, c = torch.randint(0, 50, (2, 10)), torch.randn(2, 5, 16)
    args = {"float_tokens": (t.float(), c), "int_ctx": (t, c.long()), "rank": (t[0], c),
            "channels": (t, c[..., :8]), "batch": (t, c[:1]),
            "max_len": (torch.randint(0, 50, (2, 40)), c), "not_tensor": (t.tolist(), c)}[case]
    with torch.no_grad():
        assert checked_model(t, c).shape == (2, 10, 4)
        with pytest.raises(kind) as info:
            checked_model(*args)
    for w in words:
        assert w in str(info.value), str(info.value)


def test_compiled_model_checks_inputs_without_breaking_its_graph():
    """The check runs eagerly before the compiled stages: fullgraph=True
    (a graph break would raise) still compiles once for two lengths."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    graph = seqdsl.parse(CHECKED).model()
    compiled = seqdsl.compile_model(graph, backend="eager", fullgraph=True).eval()
    c = torch.randn(2, 5, 16)
    with torch.no_grad():
        for t in (7, 19):
            assert compiled(torch.randint(0, 50, (2, t)), c).shape == (2, t, 4)
        with pytest.raises(ValueError, match="max_len"):
            compiled(torch.randint(0, 50, (2, 40)), c)
        with pytest.raises(ValueError, match="B=1"):
            compiled(torch.randint(0, 50, (2, 7)), c[:1])
    assert counters["stats"]["unique_graphs"] <= 2, dict(counters["stats"])


# ------------------------------------------------------------------ item 29: API arguments
def test_step_and_init_state_check_their_arguments(checked_model):
    m = checked_model
    c = torch.randn(2, 5, 16)
    t = torch.randint(0, 50, (2, 3))
    with pytest.raises(TypeError, match="init_state returned"):
        m.step(t, state={})
    with pytest.raises(TypeError, match="init_state returned"):
        m.step(t, state=None)
    for bad, kind in (("x", TypeError), (True, TypeError), (0, ValueError), (2.0, TypeError)):
        with pytest.raises(kind, match="batch_size"):
            m.init_state(bad, ctx=c)
    with pytest.raises(ValueError, match="input 'ctx' has B=2.*the state has B=3"):
        m.init_state(3, ctx=c)
    state = m.init_state(2, ctx=c)
    with torch.no_grad():
        with pytest.raises(ValueError, match="input 'tokens' has B=1.*the state has B=2"):
            m.step(t[:1], state=state)
        y, state = m.step(torch.randint(0, 50, (2, 30)), state=state)
        with pytest.raises(ValueError, match="max_len.*35.*position 30"):
            m.step(torch.randint(0, 50, (2, 5)), state=state)
        y, state = m.step(torch.randint(0, 50, (2, 2)), state=state)
        assert y.shape == (2, 2, 4)


def test_parse_load_estimate_and_build_check_their_arguments():
    with pytest.raises(TypeError, match="parse.*str.*NoneType"):
        seqdsl.parse(None)
    with pytest.raises(TypeError, match="seqdsl.load"):
        seqdsl.parse(b"model m {}")
    with pytest.raises(TypeError, match="load.*NoneType"):
        seqdsl.load(None)
    graph = seqdsl.parse(CHECKED).model()
    for seq, words in (([], r"seq=\[\]"), ("64", "seq must be"), ({"T": 8}, "no length given for dim 'S'")):
        with pytest.raises(ValueError, match=words):
            seqdsl.estimate(graph, seq=seq)
    assert seqdsl.estimate(graph, seq={"T": 8, "S": 4}) is not None
    for kw, kind, words in ((dict(model=3), TypeError, "model="), (dict(seed="x"), TypeError, "seed="),
                            (dict(device="nope"), ValueError, "device="), (dict(dtype="float32"), TypeError, "dtype="),
                            (dict(dtype=torch.int64), ValueError, "floating-point"),
                            (dict(compile="yes"), TypeError, "compile=")):
        with pytest.raises(kind, match=words):
            seqdsl.build(graph, **kw)
    with pytest.raises(TypeError, match="path, a Program or a ModelGraph"):
        seqdsl.build(None)


# ------------------------------------------------------------------ more of the same
def _bundled_specs():
    from test_backend_build import ROOT, SPECS
    import glob
    return SPECS + sorted(glob.glob(os.path.join(ROOT, "examples", "*.seq")))


@pytest.mark.parametrize("path", _bundled_specs(), ids=os.path.basename)
def test_cli_compile_of_every_bundled_spec_imports_and_equals_build(path, tmp_path, capsys):
    out = tmp_path / "model.py"
    code, _, err = run_compile(capsys, path, "-o", str(out))
    assert code == 0, err
    mod = import_source(out.read_text())
    prog = seqdsl.load(path)
    assert set(mod.MODELS) == set(prog.models)
    assert len({c.__name__ for c in mod.MODELS.values()}) == len(prog.models)
    for name, graph in prog.models.items():
        if graph.params > 20_000_000:        # the big LMs: test_backend_emit compares them
            continue
        torch.manual_seed(0)
        built = seqdsl.build(graph).eval()
        emitted = mod.MODELS[name]().eval()
        emitted.load_state_dict(built.state_dict())
        env = {s: (2 if s == graph.batch_symbol else 4 if "video" in path else 9) for s in graph.symbols}
        from test_backend_build import make_inputs
        xs = make_inputs(graph, env)
        with torch.no_grad():
            a, b = built(*xs), emitted(*xs)
        a, b = ((y if isinstance(y, tuple) else (y,)) for y in (a, b))
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_very_long_names():
    n = "a" * 5000
    assert_emitted_equals_built(f"""
model {n} {{
    input {n}x: float[B, T, 8]
    {n}y = {n}x -> linear(8) as {n}z -> residual {{ layernorm as {n}w }}
    output {n}y
}}""")


def test_verify_with_module_attribute_names():
    from seqdsl.backend.verify import verify
    report = verify(seqdsl.parse("""
model m {
    input x: float[B, T, 16]
    eval = x -> linear(16) as training -> residual { layernorm as to -> attention(2, causal=true) as state_dict }
    forward = eval -> mlp(32) as modules -> linear(16) as cuda
    output forward
}""").model(), seq=(16,))
    assert report.ok, report.failed


def test_emitted_model_checks_inputs_as_build_does(checked_model):
    graph = seqdsl.parse(CHECKED).model()
    mod = import_source(emit_program([graph]))
    emitted = mod.MODELS["m"]().eval()
    emitted.load_state_dict(checked_model.state_dict())
    t, c = torch.randint(0, 50, (2, 10)), torch.randn(2, 5, 16)
    with torch.no_grad():
        assert torch.allclose(emitted(t, c), checked_model(t, c), atol=1e-6)
        for args in ((t, c[:1]), (t.float(), c), (t, c[..., :8]), (torch.randint(0, 50, (2, 40)), c)):
            with pytest.raises((TypeError, ValueError)) as built_error:
                checked_model(*args)
            with pytest.raises(type(built_error.value)) as emitted_error:
                emitted(*args)
            assert str(emitted_error.value) == str(built_error.value)


def test_builder_wrong_types_are_type_errors():
    import seqdsl.builder as sb
    m = sb.model("m")
    _builder_refuses(lambda: m.let("d", object()), "cannot use object", kind=TypeError)
    _builder_refuses(lambda: sb.repeat(2, "gelu"), "not a stage", kind=TypeError)
    _builder_refuses(lambda: sb.block("b", 5, sb.gelu()), "params", kind=TypeError)
    _builder_refuses(lambda: sb.block("b", [3], sb.gelu()).to_ast(), "parameter", kind=TypeError)
    _builder_refuses(lambda: sb.func("sqrt", 2), "unknown function")
    _builder_refuses(lambda: sb.layer("atention", 2), "unknown layer", "attention")
    _builder_refuses(lambda: sb.Program([3]).to_seq(), "blocks and models", kind=TypeError)


def test_named_layer_names_the_missing_layer(checked_model):
    with pytest.raises(KeyError, match="no layer 'y.atention'.*y.attention"):
        checked_model.named_layer("y.atention")


def test_init_state_takes_a_numpy_int(checked_model):
    np = pytest.importorskip("numpy")
    state = checked_model.init_state(np.int64(2), ctx=torch.randn(2, 5, 16))
    assert state["__batch__"] == 2 and type(state["__batch__"]) is int


def test_step_refuses_another_models_state(checked_model):
    other = seqdsl.build(seqdsl.parse("""
model other {
    input x: float[B, T, 8]
    y = x -> attention(2, causal=true)
    output y
}""").model())
    with pytest.raises(TypeError, match="this state streams.*init_state"):
        checked_model.step(torch.randint(0, 50, (2, 3)), state=other.init_state(2))
