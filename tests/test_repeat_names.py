"""`as NAME` inside repeat(N) names each copy NAME[i] (NAME[i][j] in nested
repeats), so a repeated body can name its layers, a later layer can tie to
one copy, and the names show in errors; the same name twice in one copy is
still refused."""
import pytest

import seqdsl
from seqdsl.errors import SpecError

torch = pytest.importorskip("torch")

SPEC = """model m {
    input x: int[B, T]
    h = x -> repeat(1) { embed(50, 8) as tok } -> repeat(2) { linear(8) as proj -> repeat(2) { relu as act } }
    y = h -> linear(50, bias=false, tie="tok[0]")
    output y
}
"""


def test_each_copy_has_its_own_name():
    g = seqdsl.parse(SPEC, "m.seq").model()
    aliases = {n.alias: n.name for n in g.nodes if n.alias}
    assert aliases["proj[0]"] == "h.repeat[1][0].proj" and aliases["proj[1]"] == "h.repeat[1][1].proj"
    assert set(a for a in aliases if a.startswith("act")) == {"act[0][0]", "act[0][1]", "act[1][0]", "act[1][1]"}
    assert g.params == 50 * 8 + 2 * (8 * 8 + 8)          # the tied head adds no weight


def test_a_tie_to_one_copy_shares_its_weight():
    g = seqdsl.parse(SPEC, "m.seq").model()
    model = seqdsl.build(g)
    assert model.named_layer("y.linear").tied is model.named_layer("h.repeat[0][0].tok")
    assert sum(p.numel() for p in model.parameters()) == g.params
    from test_hardening_emit import assert_emitted_equals_built
    assert_emitted_equals_built(SPEC)


def test_the_plain_name_suggests_the_copies():
    with pytest.raises(SpecError) as e:
        seqdsl.parse(SPEC.replace('tie="tok[0]"', "tie=tok"), "m.seq").model()
    assert "unknown layer name 'tok'" in str(e.value) and "tok[0]" in str(e.value)


def test_one_name_twice_in_a_copy_is_refused():
    text = SPEC.replace("linear(8) as proj -> repeat(2) { relu as act }", "linear(8) as proj -> linear(8) as proj")
    with pytest.raises(SpecError) as e:
        seqdsl.parse(text, "m.seq").model()
    assert "layer name 'proj[0]' is already used" in str(e.value) and "m.seq:3:" in str(e.value)
