"""The optional CUDA kernels (the `cuda` extra: mamba-ssm, causal-conv1d,
flash-linear-attention) behind torch_modules.cuda_kernel, tested without a GPU:

* on the CPU the import is never tried, and the layers run their pure path;
* with a package missing, a GPU tensor gets None (the pure path);
* with fake kernel modules in sys.modules (each computing the kernel's
  documented function from seqdsl's own step-by-step references, and checking
  the argument shapes and layout it documents) and the CUDA branch forced, the
  layers call them and give the pure path's outputs;
* `compile -o` source carries the dispatch and still runs.

What a real GPU would add (the kernels' own numerics, speed, torch.compile
over them) is not tested here: see docs/recurrent_layers.md, "CUDA kernels".
"""
from __future__ import annotations

import importlib.util
import sys
import types

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import seqdsl  # noqa: E402
from seqdsl.layers import torch_modules  # noqa: E402
from seqdsl.layers import gated_deltanet_torch, linear_rnn_torch, mamba2_torch, mamba_torch  # noqa: E402

from test_backend_build import one_thread  # noqa: E402,F401  (autouse)

NAMES = ("selective_scan", "ssd_chunk_scan", "causal_conv1d", "chunk_gla", "chunk_gated_delta_rule")
PACKAGES = ("mamba_ssm", "causal_conv1d", "fla")
# the layers that dispatch, small, with every option that changes the kernel's arguments on
CALLS = {
    "mamba": "mamba(state=8)",
    "mamba2": "mamba2(state=8, head_dim=8, groups=2, chunk=16)",
    "gla": "gla(2)",
    "retention": "retention(2)",
    "gated_deltanet": "gated_deltanet(2, head_dim=8)",
}


def spec(call: str, d: int = 32) -> str:
    return f"model m {{\n    input x: float[B, T, {d}]\n    y = x -> {call}\n    output y\n}}\n"


@pytest.fixture
def fresh_cache(monkeypatch):
    monkeypatch.setattr(torch_modules, "_CUDA_KERNELS", {})
    return torch_modules._CUDA_KERNELS


# ------------------------------------------------------------------ fake kernels
def fake_modules(calls: list):
    """sys.modules entries for the three packages, each kernel computing its
    documented function with seqdsl's naive references, its argument shapes checked."""

    def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False):
        b, di, t = u.shape                      # mamba_ssm: u, delta (B, D, L); A (D, N); B, C (B, N, L)
        n = A.shape[1]
        assert delta.shape == (b, di, t) and A.shape == (di, n) and B.shape == C.shape == (b, n, t)
        assert D is None and z is None and delta_bias is None and not delta_softplus
        calls.append("selective_scan")
        dt = delta.transpose(1, 2)                                           # (B, T, di)
        da = torch.exp(dt[..., None] * A)
        dbx = (dt * u.transpose(1, 2))[..., None] * B.transpose(1, 2)[:, :, None]
        y, h = mamba_torch.mamba_scan_naive(da, dbx, C.transpose(1, 2))
        return (y.transpose(1, 2), h) if return_last_state else y.transpose(1, 2)

    def mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
                                  seq_idx=None, cu_seqlens=None, dt_softplus=False, dt_limit=(0.0, float("inf")),
                                  return_final_states=False, **kw):
        b, t, h, p = x.shape                    # (batch, seqlen, nheads, headdim); B, C (batch, seqlen, ngroups, dstate)
        g, n = B.shape[2:]
        assert dt.shape == (b, t, h) and A.shape == (h,) and C.shape == B.shape == (b, t, g, n) and h % g == 0
        assert initial_states is None or initial_states.shape == (b, h, p, n)
        assert D is None and z is None and dt_bias is None and not dt_softplus
        calls.append("ssd_chunk_scan" + (" from a state" if initial_states is not None else ""))
        rep = lambda m: m.repeat_interleave(h // g, dim=2)                  # noqa: E731
        y, final = mamba2_torch.ssd_naive(x, dt, A, rep(B), rep(C), initial_states)
        return (y, final) if return_final_states else y

    def causal_conv1d_fn(x, weight, bias=None, seq_idx=None, initial_states=None, return_final_states=False,
                         final_states_out=None, activation=None):
        c, k = weight.shape                     # x (batch, dim, seqlen), weight (dim, width)
        assert x.shape[1] == c and 2 <= k <= 4 and activation in (None, "silu", "swish")
        calls.append("causal_conv1d")
        y = F.conv1d(F.pad(x, (k - 1, 0)), weight[:, None], bias, groups=c)
        return F.silu(y) if activation else y

    def chunk_gla(q, k, v, g, scale=None, initial_state=None, output_final_state=False, **kw):
        b, t, h, dk = q.shape                   # fla: q, k, g (B, T, H, K), v (B, T, H, V)
        assert k.shape == g.shape == (b, t, h, dk) and v.shape[:3] == (b, t, h)
        calls.append("chunk_gla")
        o, s = linear_rnn_torch.naive_gla(*(z.transpose(1, 2) for z in (q, k, v, g)), scale)
        return o.transpose(1, 2), (s if output_final_state else None)

    def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False, **kw):
        b, t, h, dk = q.shape                   # fla: q, k (B, T, H, K), v (B, T, H, V), g, beta (B, T, H)
        assert k.shape == (b, t, h, dk) and v.shape[:3] == g.shape == beta.shape == (b, t, h)
        assert not kw.get("use_qk_l2norm_in_kernel") and not kw.get("use_beta_sigmoid_in_kernel")
        calls.append("chunk_gated_delta_rule")
        o, s = gated_deltanet_torch.naive_delta_rule(*(z.transpose(1, 2) for z in (q, k, v, beta, g)), scale)
        return o.transpose(1, 2), (s if output_final_state else None)

    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        return m

    return {
        "mamba_ssm": module("mamba_ssm"), "mamba_ssm.ops": module("mamba_ssm.ops"),
        "mamba_ssm.ops.selective_scan_interface": module("mamba_ssm.ops.selective_scan_interface",
                                                         selective_scan_fn=selective_scan_fn),
        "mamba_ssm.ops.triton": module("mamba_ssm.ops.triton"),
        "mamba_ssm.ops.triton.ssd_combined": module("mamba_ssm.ops.triton.ssd_combined",
                                                    mamba_chunk_scan_combined=mamba_chunk_scan_combined),
        "causal_conv1d": module("causal_conv1d", causal_conv1d_fn=causal_conv1d_fn),
        "fla": module("fla"), "fla.ops": module("fla.ops"),
        "fla.ops.gla": module("fla.ops.gla", chunk_gla=chunk_gla),
        "fla.ops.gated_delta_rule": module("fla.ops.gated_delta_rule", chunk_gated_delta_rule=chunk_gated_delta_rule),
    }


@pytest.fixture
def fakes(monkeypatch, fresh_cache):
    calls = []
    for name, mod in fake_modules(calls).items():
        monkeypatch.setitem(sys.modules, name, mod)
    return calls


def force_cuda_branch(monkeypatch):
    """Every lowering file's cuda_kernel answers as for GPU tensors (the CPU
    tensors here cannot say is_cuda)."""
    real = torch_modules.cuda_kernel
    for mod in (torch_modules, mamba_torch, mamba2_torch, linear_rnn_torch, gated_deltanet_torch):
        monkeypatch.setattr(mod, "cuda_kernel", lambda name, on_cuda: real(name, True))


def layer_of(kind):
    m = seqdsl.build(seqdsl.parse(spec(CALLS[kind])).model(), seed=0).eval()
    (name,) = m._mods
    return m, m.named_layer(name)


# ------------------------------------------------------------------ the dispatch
def test_cpu_tensors_never_try_the_import(fakes, fresh_cache):
    for name in NAMES:
        assert torch_modules.cuda_kernel(name, False) is None
    x = torch.randn(2, 20, 32)
    for kind in CALLS:
        model, _ = layer_of(kind)
        with torch.no_grad():
            model(x)
    assert fresh_cache == {} and fakes == []            # nothing looked up, nothing called


def test_a_missing_package_gives_the_pure_path(monkeypatch, fresh_cache):
    for pkg in PACKAGES:
        for name in [m for m in sys.modules if m == pkg or m.startswith(pkg + ".")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, pkg, None)    # `import pkg` raises ImportError
    for name in NAMES:
        assert torch_modules.cuda_kernel(name, True) is None
    assert fresh_cache == dict.fromkeys(NAMES)          # tried once each, remembered as missing
    with pytest.raises(ValueError, match="unknown CUDA kernel"):
        torch_modules.cuda_kernel("flash_attention", True)


def test_an_installed_package_gives_its_kernel(fakes):
    got = {name: torch_modules.cuda_kernel(name, True) for name in NAMES}
    assert got["selective_scan"] is sys.modules["mamba_ssm.ops.selective_scan_interface"].selective_scan_fn
    assert got["causal_conv1d"] is sys.modules["causal_conv1d"].causal_conv1d_fn
    assert got["chunk_gla"] is sys.modules["fla.ops.gla"].chunk_gla
    assert all(callable(f) for f in got.values())


# ------------------------------------------------------------------ the layers call the kernels, the same function
WANT = {"mamba": ["causal_conv1d", "selective_scan"], "mamba2": ["causal_conv1d", "ssd_chunk_scan"],
        "gla": ["chunk_gla"], "retention": ["chunk_gla"], "gated_deltanet": ["chunk_gated_delta_rule"]}


@pytest.mark.parametrize("kind", list(CALLS))
def test_layers_call_the_kernels_and_agree(kind, fakes, monkeypatch):
    model, _ = layer_of(kind)
    x = torch.randn(2, 37, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pure = model(x)
    assert fakes == []
    force_cuda_branch(monkeypatch)
    with torch.no_grad():
        fused = model(x)
    assert fakes == WANT[kind]
    torch.testing.assert_close(fused, pure, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind, want", [
    ("mamba", ["selective_scan"] * 2),                 # no carried state yet: the first token, the first chunk
    ("mamba2", ["ssd_chunk_scan"] + ["ssd_chunk_scan from a state"] * 2),   # every chunk of 17; tokens: the step
])
def test_streaming_with_the_kernels_equals_the_whole_sequence(kind, want, fakes, monkeypatch):
    model, _ = layer_of(kind)
    x = torch.randn(2, 40, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(x)
    force_cuda_branch(monkeypatch)
    with torch.no_grad():
        for n in (1, 17):
            st = model.init_state(2)
            out = torch.cat([model.step(x[:, i:i + n], state=st)[0] for i in range(0, 40, n)], 1)
            torch.testing.assert_close(out, full, rtol=1e-4, atol=1e-5)
    assert [c for c in fakes if c != "causal_conv1d"] == want     # the stream's conv keeps its window: pure


# ------------------------------------------------------------------ compile -o
def test_emitted_source_carries_the_dispatch_and_runs(tmp_path, fresh_cache):
    from seqdsl.backend.emit import emit_program
    body = " -> ".join(CALLS.values())
    graph = seqdsl.parse(spec(body)).model()
    src = emit_program([graph])
    assert "def cuda_kernel(" in src and "from mamba_ssm" in src
    imports = {line.split()[1] for line in src.splitlines() if line.startswith(("import ", "from "))}
    assert imports <= {"torch", "torch.nn.functional", "__future__", "math"}, imports   # the kernels' imports are lazy
    out = tmp_path / "gen_cuda.py"
    out.write_text(src)
    spec_ = importlib.util.spec_from_file_location("gen_cuda", out)
    mod = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(mod)
    built = seqdsl.build(graph, seed=0).eval()
    emitted = mod.M().eval()
    emitted.load_state_dict(built.state_dict())
    x = torch.randn(2, 30, 32)
    with torch.no_grad():
        assert torch.equal(emitted(x), built(x))
    assert mod._CUDA_KERNELS == {} and fresh_cache == {}
