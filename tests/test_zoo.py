"""specs/zoo/: real published architectures, each against its reference
implementation (tests/zoo_refs.py) built from a config with random weights:
parameters exact at the published size (built on the meta device); forward
FLOPs exact against FlopCounterMode (with seqdsl.backend.measure's formulas
for the ops it lacks) at the published size on the meta device at one
length, and at a small config (fewer layers, a small vocabulary) at two
lengths, where the outputs must also equal the reference's after loading
its weights into the seqdsl build.

Where a reference spends FLOPs past the function (transformers' fallback
causal conv computes kernel - 1 outputs it then drops), zoo_refs gives that
overhang as a formula (Entry.extra) and the check is estimate + overhang ==
measured. The Mamba-1 lengths are multiples of 64: our scan pads T to whole
chunks of 64 and the estimate counts that padding, where the reference's
step loop runs exactly T steps."""
import pytest
import torch

import seqdsl
from seqdsl.backend import measure
from zoo_refs import ENTRIES, graph, published_flops

pytest.importorskip("transformers")
NAMES = sorted(ENTRIES)


@pytest.fixture(autouse=True)
def one_thread():
    """Small models on a shared 2-core machine: one intra-op thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())   # shared (tied) weights once


@pytest.mark.parametrize("name", NAMES)
def test_published_size_params_exact(name):
    entry = ENTRIES[name]
    with torch.device("meta"):
        ref = entry.reference(False)
    assert graph(entry.spec).params == count(ref)


@pytest.mark.parametrize("name", NAMES)
def test_forward_flops_exact_and_outputs_equal(name):
    entry = ENTRIES[name]
    model = graph(entry.spec, entry.small)
    torch.manual_seed(0)
    ref = entry.reference(True).eval()
    assert model.params == count(ref)
    ours = seqdsl.build(model).eval()
    if entry.load is not None:
        entry.load(ours, ref)
    for t in entry.lengths:
        xs = entry.inputs(t)
        estimated = seqdsl.estimate(model, seq=entry.seq(t), batch=1).points[0].flops_forward
        with torch.no_grad(), measure.counter() as c:
            expected = entry.run(ref, *xs)
        assert estimated + entry.extra(True) == c.get_total_flops(), (t, estimated, entry.extra(True), c.get_total_flops())
        if entry.load is not None:
            with torch.no_grad():
                got = ours(*xs)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=5e-5)


# published size on the meta device; lengths short enough for Mamba's step loop
PUBLISHED_LENGTH = {"whisper_tiny": 16, "wav2letter": 16_000}


@pytest.mark.parametrize("name", NAMES)
def test_published_size_forward_flops_exact(name):
    t = PUBLISHED_LENGTH.get(name, 64)
    ours, theirs = published_flops(name, t)
    assert ours + ENTRIES[name].extra(False) == theirs, (t, ours, theirs)
