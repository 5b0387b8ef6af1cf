"""Shared costs (seqdsl.cost.model, "shared costs"): layers that differ only in
attention's window or in the enclosing segments' (length, memory) derive one
closed form with those as cost symbols, evaluated at each layer's values.

The work this saves is counted, not timed (speed: benchmarks/estimate_scaling.py):
the cost rule runs once, and the sympy expressions built do not grow with
the number of such layers. The figures are those of deriving every layer at
its own values (share=False), on every bundled spec and on hostile ones."""
from pathlib import Path

import pytest
import sympy
from sympy.core.cache import clear_cache

import seqdsl
from seqdsl.check.elaborate import parse
from seqdsl.cost.estimate import CompiledCost, evaluate_points, resolve_points
from seqdsl.cost.model import layer_cost, model_cost
from seqdsl.graph.symbolic import compile_expr
from seqdsl.layers import LAYERS

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.seq"))
LENGTHS = [1, 2, 3, 7, 8, 9, 16, 17, 63, 64, 65, 100, 128, 129, 1000, 4097, 65_537, 10 ** 9]


def windows(n: int, shape: str = "B, T, 64", mix: bool = True) -> str:
    """n attention layers, every window distinct, mixing causal, alibi and dropout."""
    body = [f"        -> attention(4, window={i}, causal={'true' if i % 2 or not mix else 'false'}"
            f"{', pos=alibi' if i % 3 == 0 and mix else ''}{', dropout=0.1' if i % 5 == 0 and mix else ''})"
            for i in range(1, n + 1)]
    return f"model m {{\n    input x: float[{shape}]\n    y = x\n" + "\n".join(body) + "\n    output y\n}\n"


def segments(n: int, shape: str = "B, T, 64", mix: bool = True) -> str:
    """n segments blocks, every length distinct, memory 0 to 6, XL attention in some."""
    body = [f"        -> segments(length={i}, memory={i % 7}) {{ attention(4, causal=true"
            f"{', pos=relative' if i % 3 == 0 and mix else ''}{', dropout=0.1' if i % 4 == 0 and mix else ''})"
            " -> mlp(128) }" for i in range(1, n + 1)]
    return f"model m {{\n    input x: float[{shape}]\n    y = x\n" + "\n".join(body) + "\n    output y\n}\n"


class Counter:
    """Counts calls of the attention cost rule and sympy Add/Mul constructions."""

    def __init__(self, monkeypatch):
        self.rule = self.flatten = 0
        attention = LAYERS["attention"]
        rule = attention.cost

        def counted_rule(*a, **k):
            self.rule += 1
            return rule(*a, **k)
        monkeypatch.setattr(attention, "cost", counted_rule)
        for cls in (sympy.Add, sympy.Mul):
            flatten = cls.flatten

            def counted_flatten(cls_, seq, flatten=flatten):
                self.flatten += 1
                return flatten(seq)
            monkeypatch.setattr(cls, "flatten", classmethod(counted_flatten))


def counted(monkeypatch, text: str) -> Counter:
    model = parse(text, "<hostile>").model()
    clear_cache()          # sympy's cache would hide constructions a previous test made
    counter = Counter(monkeypatch)
    evaluate_points(model, CompiledCost(model_cost(model)), resolve_points(model, [1024]), 1, "float32", "adam")
    return counter


@pytest.mark.parametrize("make", [windows, segments], ids=["windows", "segments"])
def test_distinct_layers_derive_the_cost_once(monkeypatch, make):
    """Before: one cost derivation and ~50-250 sympy constructions per layer
    (60 layers: 60 rule calls; 240: 240), which made 2,000 layers take 15 s
    and more. Now the rule runs once and the constructions stay flat."""
    small = counted(monkeypatch, make(60, mix=False))
    monkeypatch.undo()
    big = counted(monkeypatch, make(240, mix=False))
    assert big.rule == small.rule == 1, (small.rule, big.rule)
    # 4x the layers: no more sympy work beyond a few constructions that do not depend on the count
    assert big.flatten <= small.flatten + 50, (small.flatten, big.flatten)


def estimates(model, share: bool, lengths=LENGTHS, batch=3):
    cc = CompiledCost(model_cost(model, "float32", share=share))
    points = resolve_points(model, lengths if model.seq_symbols else None)
    return evaluate_points(model, cc, points, batch, "float32", "adam")


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_bundled_specs_have_the_same_figures_and_closed_forms(path):
    model = seqdsl.load(path).model()
    shared, own = model_cost(model, share=True), model_cost(model, share=False)
    for figure in ("flops_forward", "flops_train", "activation_bytes", "flops_per_token", "state_bytes",
                   "sequential_depth", "inference_peak"):
        assert getattr(shared, figure) == getattr(own, figure), (path.stem, figure)
    assert estimates(model, True) == estimates(model, False)


@pytest.mark.parametrize("make", [windows, segments], ids=["windows", "segments"])
@pytest.mark.parametrize("shape", ["B, T, 64", "B, 100, 64", "2, T, 64"])
def test_hostile_specs_have_the_same_figures(make, shape):
    """At lengths on both sides of every window and segment boundary, with a
    concrete length (100) and a concrete batch too; 40 layers of up to 8
    variants (causal or not, alibi, dropout, relative), so some derive one
    shared cost and some (fewer than SHARE_FROM values) their own."""
    model = parse(make(40, shape), "<hostile>").model()
    assert estimates(model, True) == estimates(model, False)


def test_each_node_cost_is_its_own_layer_cost():
    """NodeCost.value (a shared field at the node's values, which the
    per-layer rows read) and NodeCost.cost (which the roofline reads) are the
    node's own LayerCost."""
    for text in (windows(12, mix=False), segments(12, mix=False)):
        nodes = model_cost(parse(text, "<hostile>").model()).nodes
        assert any(n.binding for n in nodes)
        for n in nodes:
            own = layer_cost(n.node, 4)
            for field in ("flops", "backward_flops", "saved_bytes", "workspace_bytes", "step_flops", "state_bytes"):
                want = getattr(own, field)
                if want is None:
                    assert getattr(n.shared, field) is None and getattr(n.cost, field) is None
                    continue
                for t in (1, 5, 9, 100):
                    env = {"B": 2, "T": t}
                    assert n.value(field, env) == compile_expr(want)(env) == compile_expr(getattr(n.cost, field))(env), \
                        (n.node.name, field, t)


def test_shared_costs_are_not_written_to_the_cache():
    """seqdsl.cost.cached would write every layer's closed form out whole,
    deriving each again (seconds on thousands of layers): a model with shared
    costs is not cached, a model without is."""
    from seqdsl.cost.cached import forms_entry
    from seqdsl.graph.exprdata import Unsupported
    shared = parse(windows(12, mix=False), "<hostile>").model()
    with pytest.raises(Unsupported):
        forms_entry(shared, model_cost(shared), None)
    few = parse(windows(4, mix=False), "<hostile>").model()
    assert forms_entry(few, model_cost(few), None)["figures"]["flops_forward"] is not None
