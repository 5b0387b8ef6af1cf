"""Backend: standalone source emission round trip, the CLI, and export (in a subprocess)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

import seqdsl  # noqa: E402
from seqdsl.backend.emit import class_name, emit_program  # noqa: E402

from test_backend_build import ROOT, SPECS, built_models, make_inputs, one_thread  # noqa: E402,F401


def _import(path, name="gen_model"):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("path", SPECS, ids=os.path.basename)
def test_emitted_source_matches_build(path, tmp_path):
    prog = seqdsl.load(path)
    out = tmp_path / "model.py"
    out.write_text(emit_program(list(prog.models.values()), os.path.basename(path)))
    src = out.read_text()
    imports = {line.split()[1] for line in src.splitlines() if line.startswith(("import ", "from "))}
    assert imports <= {"torch", "torch.nn.functional", "__future__", "math"}, imports
    mod = _import(out)
    for graph, built in built_models(path).values():
        emitted = getattr(mod, class_name(graph.name))().eval()
        emitted.load_state_dict(built.state_dict())
        env = {s: (2 if s == graph.batch_symbol else (4 if "video" in path else 21)) for s in graph.symbols}
        xs = make_inputs(graph, env)
        with torch.no_grad():
            a, b = built(*xs), emitted(*xs)
        a = a if isinstance(a, tuple) else (a,)
        b = b if isinstance(b, tuple) else (b,)
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_emitted_segments_match(tmp_path):
    text = """
model seg_model {
    input x: float[B, T, 16]
    y = x -> segments(length=5, memory=3) { residual { attention(2, causal=true, pos=relative) } -> mlp(32) }
    output y
}"""
    graph = seqdsl.parse(text).model()
    out = tmp_path / "seg.py"
    out.write_text(emit_program([graph]))
    mod = _import(out, "seg_gen")
    built = seqdsl.build(graph).eval()
    emitted = mod.SegModel().eval()
    emitted.load_state_dict(built.state_dict())
    x = torch.randn(2, 17, 16)
    with torch.no_grad():
        assert torch.equal(built(x), emitted(x))


def test_hostile_names_are_escaped(tmp_path):
    # identifiers are the only spec text that can reach the source: they must
    # come out as repr()'d strings or validated identifiers
    text = """
model import_ {
    input class_: float[B, T, 8]
    lambda_ = class_ -> linear(8) as def_
    output lambda_
}"""
    graph = seqdsl.parse(text).model()
    src = emit_program([graph], 'x"\n__import__("os")')
    out = tmp_path / "h.py"
    out.write_text(src)
    compile(src, str(out), "exec")
    assert not any(line.lstrip().startswith("__import__") for line in src.splitlines())
    assert src.splitlines()[0].startswith("#")
    mod = _import(out, "h_gen")
    m = getattr(mod, class_name("import_"))()
    assert m(torch.randn(1, 3, 8)).shape == (1, 3, 8)


def test_cli_compile_writes_module(tmp_path):
    out = tmp_path / "lm.py"
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "seqdsl"), "compile", os.path.join(ROOT, "specs", "lstm_lm.seq"),
                        "-o", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    mod = _import(out, "lm_gen")
    assert hasattr(mod, "LstmLm")


EXPORT_SCRIPT = r"""
import sys, torch, seqdsl
from seqdsl.backend.export import export_model
text = '''
model att {
    input x: float[B, T, 16]
    y = x -> residual { layernorm -> attention(2, causal=true, pos=rope) } -> mlp(32)
    output y
}'''
g = seqdsl.parse(text).model()
export_model(g, sys.argv[1], "T=32")
ep = torch.export.load(sys.argv[1])
m = ep.module()
for t in (7, 40):
    x = torch.randn(2, t, 16)
    assert m(x).shape == (2, t, 16)
text2 = '''
model r {
    input x: float[B, T, 8]
    y = x -> lstm(8)
    output y
}'''
try:
    export_model(seqdsl.parse(text2).model(), sys.argv[1] + ".2.pt2")
except seqdsl.SpecError as e:
    assert "lstm" in str(e) and "dynamic" in str(e), str(e)
    print("refused-ok")
print("export-ok")
"""


def test_export_pt2_in_subprocess(tmp_path):
    r = subprocess.run([sys.executable, "-c", EXPORT_SCRIPT, str(tmp_path / "m.pt2")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "refused-ok" in r.stdout and "export-ok" in r.stdout


ONNX_SCRIPT = r"""
import sys, numpy as np, onnx, torch, seqdsl
from onnx.reference import ReferenceEvaluator
from seqdsl.backend.seqmodel import SeqModel
from seqdsl.backend.export import export_model
texts = ['''
model att {
    input x: float[B, T, 16]
    y = x -> residual { layernorm -> attention(2, kv_heads=1, causal=true, pos=rope) } -> swiglu(32)
    output y
}''', '''
model r {
    input x: float[B, T, 8]
    y = x -> conv1d(8, 3, padding=causal) -> lstm(8) -> linear(4)
    output y
}''']
for i, text in enumerate(texts):
    g = seqdsl.parse(text).model()
    path = sys.argv[1] + f".{i}.onnx"
    torch.manual_seed(0)
    export_model(g, path, "T=12")
    torch.manual_seed(0)
    model = SeqModel(g).eval()          # export_model builds the same weights from the same seed
    proto = onnx.load(path)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert isinstance(dims[1], str), dims          # T stayed symbolic
    ref = ReferenceEvaluator(proto)
    for t in (7, 20):
        x = torch.randn(2, t, g.inputs['x'].dims[-1])
        (got,) = ref.run(None, {proto.graph.input[0].name: x.numpy()})
        with torch.no_grad():
            want = model(x).numpy()
        assert np.allclose(got, want, atol=1e-4), (i, t, abs(got - want).max())
print("onnx-ok")
"""


def test_export_onnx_in_subprocess(tmp_path):
    """torch.onnx.export(dynamo=True) with a dynamic T; onnx's reference evaluator
    matches the module at two other lengths. Its own process: an earlier
    torch.export of an RNN in the same process can make a later ONNX export static."""
    import importlib.util
    if importlib.util.find_spec("onnxscript") is None or importlib.util.find_spec("onnx") is None:
        pytest.skip("onnxscript/onnx not installed (pip install onnxscript onnx)")
    r = subprocess.run([sys.executable, "-c", ONNX_SCRIPT, str(tmp_path / "m")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "onnx-ok" in r.stdout


def test_export_onnx_without_onnxscript_is_a_usage_error(tmp_path):
    """Without the packages: one line naming the missing package, exit 2, no file."""
    import importlib.util
    if importlib.util.find_spec("onnxscript") is not None:
        pytest.skip("onnxscript is installed")
    out = tmp_path / "m.onnx"
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "seqdsl"), "export",
                        os.path.join(ROOT, "specs", "transformer_lm.seq"), "-o", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "onnx" in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_emitted_file_opens_with_its_usage():
    from seqdsl.backend.emit import emit_program
    src = emit_program([seqdsl.load(os.path.join(ROOT, "specs", "translation.seq")).model()], "translation.seq")
    head = src.split('"""', 1)[0]
    assert "model = Translation()" in head and "logits = model(src, tgt)" in head
    assert "src: int64[B, S]" in head and "logits: float[B, T, 24000]" in head


EXPORT_RANGE_SCRIPT = r"""
import sys, torch, seqdsl
torch.set_num_threads(1)
from seqdsl.backend.seqmodel import SeqModel
from seqdsl.backend.export import export_model
text = '''
model sub {
    input x: float[B, T, 8]
    y = x -> conv1d(8, 3, stride=2) -> relu -> conv1d(8, 3, stride=2, padding=same)
        -> residual { layernorm -> attention(2, causal=true) }
    output y
}'''
g = seqdsl.parse(text).model()
torch.manual_seed(0)
out, ranges = export_model(g, sys.argv[1], None)
torch.manual_seed(0)
model = SeqModel(g).eval()          # export_model builds the same weights from the same seed
program = torch.export.load(out).module()
lo, hi = ranges["T"]
print("range", lo, hi)
for t in (lo, lo + 1, 64, 101):
    x = torch.randn(2, t, 8)
    with torch.no_grad():
        torch.testing.assert_close(program(x), model(x), rtol=1e-5, atol=1e-5)
print("export-range-ok")
"""


def test_export_of_strided_convs_starts_its_range_where_every_length_is_two(tmp_path):
    """torch.export refused any range for stride-2 convolutions ('Constraints
    violated (seq_T)'): a derived length of 1 at short T is specialised. The
    range now starts where every derived length is 2 or more (T = 5 for the
    unpadded conv, 9 with the second), raised where torch cannot prove its
    guards, and the program equals the module across it."""
    r = subprocess.run([sys.executable, "-c", EXPORT_RANGE_SCRIPT, str(tmp_path / "s.pt2")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "export-range-ok" in r.stdout
    lo, hi = map(int, r.stdout.split("range ")[1].split()[:2])
    assert 9 <= lo <= 64 and hi == 65536
