"""`residual(scale=s) { body }` is x + s · body(x) (the Conformer's macaron
halves): parsed, printed, built by the builder, checked with errors that name
the place, lowered to one fused add in the built and the emitted module, and
streamed; its cost is the unscaled residual's."""
import pytest

import seqdsl
import seqdsl.builder as sb

torch = pytest.importorskip("torch")
from small_specs import assert_refused  # noqa: E402

from seqdsl.backend.emit import emit_program  # noqa: E402
from seqdsl.lang.printer import format_text  # noqa: E402

from test_backend_build import check_stream, one_thread  # noqa: E402,F401  (one_thread: autouse)
from test_hardening_emit import assert_emitted_equals_built  # noqa: E402

SPEC = """model m {
    input x: float[B, T, 8]

    y = x
        -> residual(scale=0.5) { layernorm -> mlp(16) }
        -> segments(length=4, memory=4) { residual(0.25) { attention(2, causal=true) } }
        -> residual { linear(8) }

    output y
}
"""


def test_fmt_keeps_the_scale_and_the_text_is_canonical():
    assert format_text(SPEC) == SPEC
    adds = [n for n in seqdsl.parse(SPEC, "m.seq").model().nodes if n.kind == "add"]
    assert [a.args.scale if a.args else None for a in adds] == [0.5, 0.25, None]


def test_built_module_adds_the_scaled_body():
    one = "model m {\n    input x: float[B, T, 8]\n    y = x -> residual(scale=0.5) { layernorm -> mlp(16) }\n    output y\n}\n"
    model = seqdsl.build(seqdsl.parse(one, "m.seq").model()).eval()
    x = torch.randn(2, 9, 8)
    with torch.no_grad():   # by hand, from the layers' own modules: x + 0.5 · mlp(layernorm(x))
        body = model.named_layer("y.residual.mlp")(model.named_layer("y.residual.layernorm")(x))
        assert torch.allclose(model(x), x + 0.5 * body, atol=1e-6)
    full = seqdsl.build(seqdsl.parse(SPEC, "m.seq").model()).eval()
    plain = seqdsl.build(seqdsl.parse(SPEC.replace("residual(scale=0.5)", "residual"), "m.seq").model()).eval()
    plain.load_state_dict(full.state_dict())
    with torch.no_grad():
        assert not torch.allclose(full(x), plain(x), atol=1e-3)
    check_stream(full, [x])


def test_emitted_source_equals_the_built_module():
    graph = seqdsl.parse(SPEC, "m.seq").model()
    src = emit_program([graph], "m.seq")
    assert "alpha=0.5)" in src
    assert "alpha=0.25)" in src
    assert_emitted_equals_built(SPEC)


def test_the_builder_writes_the_scale():
    m = sb.model("m")
    x = m.input("x", "float", ["B", "T", 8])
    m.bind("y", x, sb.residual(sb.layernorm(), sb.mlp(16), scale=0.5))
    m.output("y")
    assert "residual(scale=0.5)" in m.to_seq()
    assert m.check().nodes[-1].args.scale == 0.5


def test_the_scale_costs_nothing():
    scaled = seqdsl.estimate(seqdsl.parse(SPEC, "m.seq").model(), seq=[9, 64]).points
    plain = seqdsl.estimate(seqdsl.parse(SPEC.replace("residual(scale=0.5)", "residual"), "m.seq").model(),
                            seq=[9, 64]).points
    for a, b in zip(scaled, plain):
        assert (a.flops_train, a.activation_bytes, a.inference_peak_bytes) == \
               (b.flops_train, b.activation_bytes, b.inference_peak_bytes)


@pytest.mark.parametrize("head, message", [
    ("residual(scale=0)", "residual scale must be a finite, non-zero number, got 0"),
    ("residual(scale=true)", "residual argument 'scale' must be a number, got"),
    ("residual(scal=0.5)", "unknown argument 'scal' for residual"),
    ("residual(0.5, 2)", "residual takes at most 1 positional argument"),
])
def test_bad_scales_name_the_place(head, message):
    assert_refused("float[B, T, 8]", f"{head} {{ linear(8) }}", message)