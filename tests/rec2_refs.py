"""The reference layers of tests/test_layers_rec2.py, run on the CPU.

flash-linear-attention's package imports Triton at its top (`fla/__init__.py`)
and its layers call Triton kernels, neither of which runs on a CPU-only
machine. So the reference layer files themselves (`fla/layers/gla.py`,
`gated_deltanet.py`, `multiscale_retention.py`: the real __init__, so the real
parameter names and shapes, and the real forward) are loaded by path, with
their `fla.*` imports answered by stand-ins for the Triton-only pieces:

* the recurrences are fla's own readable references, `fla/ops/*/naive.py`
  (loaded by path: they import only torch and einops), wrapped with what the
  fused kernels do around them (`use_qk_l2norm_in_kernel`,
  `use_beta_sigmoid_in_kernel`, `use_gate_in_kernel` of gated_delta_rule);
* ShortConvolution, FusedRMSNormGated, RMSNorm and RotaryEmbedding are
  written from their sources (fla/modules/causal_conv1d/ops.py,
  norm/fused_norm_gate.py, rotary/ops.py `rotary_embedding_ref`), keeping
  their parameter names.

xlstm's mLSTMLayer is pure PyTorch and runs as it is.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def fla_root() -> Path | None:
    spec = importlib.util.find_spec("fla")      # locates the package without importing it (nor Triton)
    return Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------------ stand-ins (from fla's sources)
class ShortConvolution(nn.Conv1d):
    """fla.modules.ShortConvolution: depthwise Conv1d(padding=K-1), causal, silu."""

    def __init__(self, hidden_size, kernel_size, bias=False, activation="silu", backend="triton", **kw):
        super().__init__(hidden_size, hidden_size, kernel_size, padding=kernel_size - 1, groups=hidden_size, bias=bias)
        self.hidden_size, self.activation, self.backend = hidden_size, activation, backend

    def forward(self, x, cache=None, output_final_state=False, cu_seqlens=None, **kw):
        assert cache is None
        return causal_conv1d(x, self.weight.squeeze(1), self.bias, self.activation)


def causal_conv1d(x, weight, bias=None, activation=None, **kw):
    """fla.modules.convolution.causal_conv1d: x (B, T, D), weight (D, K)."""
    d, k = weight.shape
    y = F.conv1d(x.transpose(1, 2), weight.unsqueeze(1), bias, padding=k - 1, groups=d)[..., :x.shape[1]]
    y = y.transpose(1, 2)
    if activation in ("silu", "swish"):
        y = F.silu(y)
    return y, None


class FusedRMSNormGated(nn.Module):
    """fla.modules.FusedRMSNormGated: rmsnorm(x)·weight·act(g), in fp32."""

    def __init__(self, hidden_size, elementwise_affine=True, eps=1e-5, activation="swish", **kw):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.register_parameter("bias", None)
        self.eps, self.activation = eps, activation

    def forward(self, x, g, **kw):
        xf, gf = x.float(), g.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()
        y = y * (F.silu(gf) if self.activation in ("swish", "silu") else torch.sigmoid(gf))
        return y.to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, hidden_size, elementwise_affine=True, eps=1e-5, dtype=None, **kw):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.register_parameter("bias", None)
        self.eps = eps

    def forward(self, x, **kw):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()).to(x.dtype)


class RotaryEmbedding(nn.Module):
    """fla.modules.rotary.RotaryEmbedding (not interleaved, no xpos): the
    cos/sin tables of _update_cos_sin_cache and rotary_embedding_ref."""

    def __init__(self, dim, base=10000.0, **kw):
        super().__init__()
        self.dim, self.base = dim, float(base)
        inv = 1.0 / (self.base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, q, k, seqlen_offset=0, max_seqlen=None, cu_seqlens=None, **kw):
        t = torch.arange(seqlen_offset, seqlen_offset + q.shape[1], dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq)
        cos, sin = freqs.cos().to(q.dtype), freqs.sin().to(q.dtype)
        return rotary_embedding_ref(q, cos, sin), rotary_embedding_ref(k, cos, sin)


def rotary_embedding_ref(x, cos, sin):
    """fla.modules.rotary.rotary_embedding_ref (interleaved=False): x (B, T, H, D)."""
    cos = torch.cat([cos, cos], -1)[:, None]       # '... d -> ... 1 (2 d)'
    sin = torch.cat([sin, sin], -1)[:, None]
    x1, x2 = x.chunk(2, -1)
    return x * cos + torch.cat([-x2, x1], -1) * sin


def l2norm(x, eps=1e-6):
    """fla.modules.l2norm: x / sqrt(sum(x²) + eps) (l2norm_fwd_kernel)."""
    return x * torch.rsqrt(x.float().pow(2).sum(-1, keepdim=True) + eps).to(x.dtype)


# ------------------------------------------------------------------ loading the reference layers
@contextmanager
def fla_layers():
    """Yields {name: reference layer class} and the naive modules, with the
    stand-in `fla.*` modules in sys.modules only while inside."""
    root = fla_root()
    naive = {name: _load(root / "ops" / name / "naive.py", f"_fla_naive_{name}")
             for name in ("gla", "gated_delta_rule", "retention")}

    def chunk_gla(q, k, v, g=None, gk=None, initial_state=None, output_final_state=False, **kw):
        return naive["gla"].naive_recurrent_gla(q, k, v, g if g is not None else gk, initial_state, output_final_state)

    def gated_delta_rule(q, k, v, g, beta, initial_state=None, output_final_state=False,
                         use_qk_l2norm_in_kernel=False, use_beta_sigmoid_in_kernel=False,
                         allow_neg_eigval=False, use_gate_in_kernel=False, A_log=None, dt_bias=None, **kw):
        # what the fused kernels do around the recurrence (chunk.py, gate.py naive_gdn_gate)
        if use_qk_l2norm_in_kernel:
            q, k = l2norm(q), l2norm(k)
        if use_beta_sigmoid_in_kernel:
            beta = beta.sigmoid() * (2.0 if allow_neg_eigval else 1.0)
        if use_gate_in_kernel:
            g = -A_log.float().exp() * F.softplus(g.float() + dt_bias.float())
        return naive["gated_delta_rule"].naive_recurrent_gated_delta_rule(
            q, k, v, beta, g, initial_state=initial_state, output_final_state=output_final_state)

    def retention(q, k, v, **kw):
        o = naive["retention"].naive_retention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return o.transpose(1, 2), None

    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        return m

    no_cache = dict(get_layer_cache=lambda module, past_key_values: None,
                    update_layer_cache=lambda module, past_key_values, **kw: None,
                    unpad_hidden_states=lambda hidden_states, cu_seqlens, attention_mask, q_len:
                        (hidden_states, None, cu_seqlens),
                    repad_hidden_states=lambda hidden_states, indices, batch_size, q_len: hidden_states)
    fakes = {
        "fla": module("fla"), "fla.layers": module("fla.layers"), "fla.layers.utils": module("fla.layers.utils", **no_cache),
        "fla.modules": module("fla.modules", FusedRMSNormGated=FusedRMSNormGated, RMSNorm=RMSNorm,
                              ShortConvolution=ShortConvolution),
        "fla.modules.activations": module("fla.modules.activations", ACT2FN={"swish": F.silu, "silu": F.silu}),
        "fla.modules.convolution": module("fla.modules.convolution", causal_conv1d=causal_conv1d),
        "fla.modules.rotary": module("fla.modules.rotary", RotaryEmbedding=RotaryEmbedding),
        "fla.ops": module("fla.ops"),
        "fla.ops.gla": module("fla.ops.gla", chunk_gla=chunk_gla, fused_chunk_gla=chunk_gla, fused_recurrent_gla=chunk_gla),
        "fla.ops.gated_delta_rule": module("fla.ops.gated_delta_rule", chunk_gated_delta_rule=gated_delta_rule,
                                           fused_recurrent_gated_delta_rule=gated_delta_rule),
        "fla.ops.retention": module("fla.ops.retention", chunk_retention=retention, fused_chunk_retention=retention,
                                    fused_recurrent_retention=retention, parallel_retention=retention),
        "fla.ops.utils": module("fla.ops.utils"),
        "fla.ops.utils.index": module("fla.ops.utils.index", prepare_lens_from_mask=None),
        "transformers": module("transformers"),
        "transformers.activations": module("transformers.activations", ACT2FN={"swish": F.silu, "silu": F.silu}),
    }
    saved = {k: sys.modules.get(k) for k in fakes}
    sys.modules.update(fakes)
    try:
        layers = {
            "gla": _load(root / "layers" / "gla.py", "_fla_ref_gla").GatedLinearAttention,
            "gated_deltanet": _load(root / "layers" / "gated_deltanet.py", "_fla_ref_gdn").GatedDeltaNet,
            "retention": _load(root / "layers" / "multiscale_retention.py", "_fla_ref_ret").MultiScaleRetention,
        }
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    yield layers, naive


def randomize(module, seed=0, scale=0.3):
    """Every parameter random (norm weights near 1), so no term hides behind an init of zeros or ones."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale + (1.0 if p.dim() == 1 and "norm" in name else 0.0))
    return module
