"""The reference implementations of the specs in specs/zoo/, built from a
config with random weights (test-only: transformers, or a plain module
written from the reference's source where its package does not install),
and for each the mapping of its weights onto the seqdsl build's names.

Each Entry gives: the spec, the `let` values that shrink it to the small
config the FLOP and output checks run (the published size's parameters are
counted on the meta device), the reference at either size, its inputs at a
length, and `load(ours, ref)`, which copies the reference's weights into the
seqdsl module. Used by tests/test_zoo.py and benchmarks/zoo_table.py."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, NamedTuple

import torch

import seqdsl

ZOO = Path(__file__).resolve().parent.parent / "specs" / "zoo"


def spec_text(name: str, lets: dict | None = None) -> str:
    """specs/zoo/NAME.seq with some `let` lines given other values."""
    text = (ZOO / f"{name}.seq").read_text()
    for key, value in (lets or {}).items():
        text, n = re.subn(rf"(?m)^(\s*let {key} = ).*$", rf"\g<1>{value}", text)
        assert n == 1, f"{name}.seq has no single `let {key} =` line"
    return text


def graph(name: str, lets: dict | None = None):
    return seqdsl.parse(spec_text(name, lets), path=str(ZOO / f"{name}.seq")).model()


class Entry(NamedTuple):
    spec: str                                   # specs/zoo/<spec>.seq
    small: dict                                 # let values of the small config
    reference: Callable[[bool], torch.nn.Module]   # reference(small) -> module
    inputs: Callable[[int], tuple]              # inputs(t) for the small config, batch 1
    seq: Callable[[int], dict]                  # the spec's symbols at length t
    load: Callable | None                       # load(ours, ref): weights across, or None
    run: Callable                               # run(ref, *inputs) -> the tensor ours returns
    lengths: tuple = (16, 40)                   # the small config's lengths the test runs
    extra: Callable[[bool, int], int] = lambda small, t: 0   # FLOPs the reference spends past ours at t
    full: Callable[[int], tuple] | None = None  # published size: t -> (the spec's symbols, inputs)


# ---------------------------------------------------------------- GPT-2 small
def gpt2(small: bool):
    import transformers as tf
    cfg = tf.GPT2Config(n_layer=2 if small else 12, n_embd=768, n_head=12, n_positions=1024,
                        vocab_size=512 if small else 50257, activation_function="gelu_new", layer_norm_epsilon=1e-5,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
                        **(dict(bos_token_id=1, eos_token_id=1) if small else {}))
    return tf.GPT2LMHeadModel(cfg).eval()


def gpt2_load(ours, ref):
    sd, out = ref.state_dict(), {}
    out["logits.wte.weight"] = sd["transformer.wte.weight"]
    out["logits.posenc.weight"] = sd["transformer.wpe.weight"]
    for i in range(ref.config.n_layer):
        h, o = f"transformer.h.{i}.", f"logits.repeat[{i}]."
        a, m = o + "residual[0].", o + "residual[1]."
        out[a + "layernorm.weight"], out[a + "layernorm.bias"] = sd[h + "ln_1.weight"], sd[h + "ln_1.bias"]
        w, b = sd[h + "attn.c_attn.weight"].t(), sd[h + "attn.c_attn.bias"]   # Conv1D: [in, out]
        for j, n in enumerate("qkv"):
            out[a + f"attention.{n}.weight"] = w[j * 768:(j + 1) * 768]
            out[a + f"attention.{n}.bias"] = b[j * 768:(j + 1) * 768]
        out[a + "attention.o.weight"] = sd[h + "attn.c_proj.weight"].t()
        out[a + "attention.o.bias"] = sd[h + "attn.c_proj.bias"]
        out[m + "layernorm.weight"], out[m + "layernorm.bias"] = sd[h + "ln_2.weight"], sd[h + "ln_2.bias"]
        out[m + "mlp.fc1.weight"], out[m + "mlp.fc1.bias"] = sd[h + "mlp.c_fc.weight"].t(), sd[h + "mlp.c_fc.bias"]
        out[m + "mlp.fc2.weight"] = sd[h + "mlp.c_proj.weight"].t()
        out[m + "mlp.fc2.bias"] = sd[h + "mlp.c_proj.bias"]
    out["logits.layernorm.weight"], out["logits.layernorm.bias"] = sd["transformer.ln_f.weight"], sd["transformer.ln_f.bias"]
    ours.load_state_dict(out, strict=True)


# ---------------------------------------------------------------- torch.nn.Transformer
def torch_transformer(small: bool):
    n = 2 if small else 6
    return torch.nn.Transformer(num_encoder_layers=n, num_decoder_layers=n, batch_first=True).eval()


def split_mha(out: dict, ours: str, sd: dict, ref: str) -> None:
    """nn.MultiheadAttention's packed in_proj -> our q, k, v; out_proj -> o."""
    w, b = sd[ref + "in_proj_weight"].chunk(3), sd[ref + "in_proj_bias"].chunk(3)
    for n, wi, bi in zip("qkv", w, b):
        out[f"{ours}{n}.weight"], out[f"{ours}{n}.bias"] = wi, bi
    out[ours + "o.weight"], out[ours + "o.bias"] = sd[ref + "out_proj.weight"], sd[ref + "out_proj.bias"]


def both(out: dict, ours: str, sd: dict, ref: str, names=("weight", "bias")) -> None:
    for n in names:
        out[f"{ours}.{n}"] = sd[f"{ref}.{n}"]


def torch_transformer_load(ours, ref):
    sd, out = ref.state_dict(), {}
    for i in range(len(ref.encoder.layers)):
        o, r = f"memory.repeat[{i}].", f"encoder.layers.{i}."
        split_mha(out, o + "residual[0].attention.", sd, r + "self_attn.")
        both(out, o + "residual[1].mlp.fc1", sd, r + "linear1")
        both(out, o + "residual[1].mlp.fc2", sd, r + "linear2")
        both(out, o + "layernorm[0]", sd, r + "norm1")
        both(out, o + "layernorm[1]", sd, r + "norm2")
    both(out, "memory.layernorm", sd, "encoder.norm")
    for i in range(len(ref.decoder.layers)):
        o, r = f"out.repeat[{i}].", f"decoder.layers.{i}."
        split_mha(out, o + "residual[0].attention.", sd, r + "self_attn.")
        split_mha(out, o + "residual[1].cross_attention.", sd, r + "multihead_attn.")
        both(out, o + "residual[2].mlp.fc1", sd, r + "linear1")
        both(out, o + "residual[2].mlp.fc2", sd, r + "linear2")
        for j in range(3):
            both(out, o + f"layernorm[{j}]", sd, r + f"norm{j + 1}")
    both(out, "out.layernorm", sd, "decoder.norm")
    ours.load_state_dict(out, strict=True)


def src_tgt(t):
    g = torch.Generator().manual_seed(t)
    return torch.randn(1, t, 512, generator=g), torch.randn(1, t // 2, 512, generator=g)


def torch_transformer_run(ref, src, tgt):
    mask = torch.nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
    with torch.enable_grad():   # no_grad would take the fused fast path, an op FlopCounterMode cannot see
        return ref(src, tgt, tgt_mask=mask, tgt_is_causal=True).detach()


# ---------------------------------------------------------------- Whisper tiny
def whisper(small: bool):
    import transformers as tf
    n = 2 if small else 4
    cfg = tf.WhisperConfig(vocab_size=512 if small else 51865, num_mel_bins=80, d_model=384,
                           encoder_layers=n, decoder_layers=n, encoder_attention_heads=6,
                           decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536,
                           max_source_positions=16 if small else 1500, max_target_positions=448,
                           dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                           **(dict(pad_token_id=1, bos_token_id=1, eos_token_id=1, decoder_start_token_id=1)
                              if small else {}))   # the special ids inside the small vocabulary
    return tf.WhisperForConditionalGeneration(cfg).eval()


def whisper_attention(out: dict, ours: str, sd: dict, ref: str) -> None:
    for n in "qkvo":
        r = ref + ("out_proj" if n == "o" else f"{n}_proj")
        out[f"{ours}{n}.weight"] = sd[r + ".weight"]
        if n != "k":   # Whisper's k_proj has no bias
            out[f"{ours}{n}.bias"] = sd[r + ".bias"]


def whisper_load(ours, ref):
    sd, out = ref.state_dict(), {}
    both(out, "audio.conv1d[0].conv", sd, "model.encoder.conv1")
    both(out, "audio.conv1d[1].conv", sd, "model.encoder.conv2")
    out["audio.posenc.weight"] = sd["model.encoder.embed_positions.weight"]
    for i in range(ref.config.encoder_layers):
        o, r = f"audio.repeat[{i}].", f"model.encoder.layers.{i}."
        both(out, o + "residual[0].layernorm", sd, r + "self_attn_layer_norm")
        whisper_attention(out, o + "residual[0].attention.", sd, r + "self_attn.")
        both(out, o + "residual[1].layernorm", sd, r + "final_layer_norm")
        both(out, o + "residual[1].mlp.fc1", sd, r + "fc1")
        both(out, o + "residual[1].mlp.fc2", sd, r + "fc2")
    both(out, "audio.layernorm", sd, "model.encoder.layer_norm")
    out["logits.embed_tokens.weight"] = sd["model.decoder.embed_tokens.weight"]
    out["logits.posenc.weight"] = sd["model.decoder.embed_positions.weight"]
    for i in range(ref.config.decoder_layers):
        o, r = f"logits.repeat[{i}].", f"model.decoder.layers.{i}."
        both(out, o + "residual[0].layernorm", sd, r + "self_attn_layer_norm")
        whisper_attention(out, o + "residual[0].attention.", sd, r + "self_attn.")
        both(out, o + "residual[1].layernorm", sd, r + "encoder_attn_layer_norm")
        whisper_attention(out, o + "residual[1].cross_attention.", sd, r + "encoder_attn.")
        both(out, o + "residual[2].layernorm", sd, r + "final_layer_norm")
        both(out, o + "residual[2].mlp.fc1", sd, r + "fc1")
        both(out, o + "residual[2].mlp.fc2", sd, r + "fc2")
    both(out, "logits.layernorm", sd, "model.decoder.layer_norm")
    ours.load_state_dict(out, strict=True)


def mel_tokens(frames: int, vocab: int):
    """Whisper's inputs: exactly 2 x max_source_positions mel frames (the
    reference refuses any other length) and t decoder tokens."""
    def make(t):
        g = torch.Generator().manual_seed(t)
        return torch.randn(1, frames, 80, generator=g), torch.randint(0, vocab, (1, t), generator=g)
    return make


def whisper_run(ref, mel, tokens):
    return ref(input_features=mel.transpose(1, 2), decoder_input_ids=tokens).logits


# ---------------------------------------------------------------- Mamba and Mamba-2
def mamba(small: bool):
    import transformers as tf
    cfg = tf.MambaConfig(vocab_size=512 if small else 50280, hidden_size=768, state_size=16,
                         num_hidden_layers=2 if small else 24, expand=2, conv_kernel=4, time_step_rank=48,
                         use_bias=False, use_conv_bias=True, layer_norm_epsilon=1e-5, tie_word_embeddings=True,
                         **(dict(pad_token_id=1, bos_token_id=1, eos_token_id=1) if small else {}))
    return tf.MambaForCausalLM(cfg).eval()


def mamba2(small: bool):
    import transformers as tf
    cfg = tf.Mamba2Config(vocab_size=512 if small else 50288, hidden_size=768, num_hidden_layers=2 if small else 24,
                          state_size=128, expand=2, head_dim=64, num_heads=24, n_groups=1, conv_kernel=4,
                          chunk_size=256, layer_norm_epsilon=1e-5, tie_word_embeddings=True,
                          **(dict(pad_token_id=1, bos_token_id=1, eos_token_id=1) if small else {}))
    return tf.Mamba2ForCausalLM(cfg).eval()


def conv_overhang(channels: int, kernel: int = 4) -> Callable[[bool, int], int]:
    """transformers' causal_conv1d fallback pads kernel - 1 on both sides and
    drops the last kernel - 1 outputs: it computes kernel - 1 outputs per layer
    past the causal conv's T (2 FLOPs per weight each, batch 1), at any T;
    2 layers in the small config, 24 at the published size."""
    return lambda small, t: (2 if small else 24) * 2 * channels * kernel * (kernel - 1)


def ssd_overhang(heads: int, groups: int, state: int, head_dim: int, chunk: int) -> Callable[[bool, int], int]:
    """transformers' torch SSD computes the intra-chunk scores C·Bᵀ for every
    head, where the `mamba2` lowering computes them once per group (H - G more
    products of Q x Q x N per chunk), and hands the states over with an
    (nc+1) x (nc+1) decay matrix where ours is (nc+1) x nc (one more column of
    P·N products per head): FLOPs past ours per layer at batch 1, nc = ceil(T/Q);
    2 layers in the small config, 24 at the published size."""
    def extra(small: bool, t: int) -> int:
        nc = -(-t // chunk)
        per_layer = 2 * nc * chunk * chunk * state * (heads - groups) + 2 * heads * (nc + 1) * head_dim * state
        return (2 if small else 24) * per_layer
    return extra


def ssm_loader(embed: str, mixer: str):
    """transformers' Mamba/Mamba2ForCausalLM: the mixers' own names are ours."""
    def load(ours, ref):
        sd, out = ref.state_dict(), {}
        out[f"logits.{embed}.weight"] = sd["backbone.embeddings.weight"]
        for key, value in sd.items():
            parts = key.split(".")
            if parts[:2] == ["backbone", "layers"] and parts[3] == "norm":
                out[f"logits.repeat[{parts[2]}].residual.rmsnorm.weight"] = value
            elif parts[:2] == ["backbone", "layers"] and parts[3] == "mixer":
                out[f"logits.repeat[{parts[2]}].residual.{mixer}." + ".".join(parts[4:])] = value
        out["logits.rmsnorm.weight"] = sd["backbone.norm_f.weight"]
        ours.load_state_dict(out, strict=True)
    return load


# ---------------------------------------------------------------- Wav2Letter
class Wav2Letter(torch.nn.Module):
    """torchaudio.models.Wav2Letter(num_classes=40, input_type="waveform",
    num_features=1), written from its source (torchaudio/models/wav2letter.py;
    the torchaudio wheel does not install here): conv1d layers (in, out,
    kernel, stride, padding), each followed by relu, then log_softmax over the
    channels. Takes and returns channels-first tensors, as torchaudio's does."""

    CONVS = ([(1, 250, 250, 160, 45), (250, 250, 48, 2, 23)] + [(250, 250, 7, 1, 3)] * 7
             + [(250, 2000, 32, 1, 16), (2000, 2000, 1, 1, 0), (2000, 40, 1, 1, 0)])

    def __init__(self):
        super().__init__()
        self.convs = torch.nn.ModuleList(torch.nn.Conv1d(i, o, k, stride=s, padding=p)
                                         for i, o, k, s, p in self.CONVS)

    def forward(self, x):                       # (B, features, samples) -> (B, classes, frames)
        for conv in self.convs:
            x = torch.relu(conv(x))
        return torch.log_softmax(x, dim=1)


def wav2letter_load(ours, ref):
    mine = [k[:-len(".weight")] for k in ours.state_dict() if k.endswith(".weight")]
    out = {}
    for name, conv in zip(mine, ref.convs, strict=True):
        out[name + ".weight"], out[name + ".bias"] = conv.weight, conv.bias
    ours.load_state_dict(out, strict=True)


def waveform(t):
    return (torch.randn(1, t, 1, generator=torch.Generator().manual_seed(t)),)


def channels_first(ref, x):
    return ref(x.transpose(1, 2)).transpose(1, 2)


# ---------------------------------------------------------------- Conformer (torchaudio)
class ConformerLayer(torch.nn.Module):
    """torchaudio.models.conformer.ConformerLayer (use_group_norm=False,
    convolution_first=False), written from its source (the torchaudio wheel
    does not install here); its conv_module (LayerNorm + sequential) is
    conv_layer_norm + conv here. Time-major (T, B, D), as torchaudio's."""

    def __init__(self, d, ffn, heads, kernel):
        super().__init__()
        nn = torch.nn

        def feed_forward():
            return nn.Sequential(nn.LayerNorm(d), nn.Linear(d, ffn), nn.SiLU(), nn.Dropout(0.0),
                                 nn.Linear(ffn, d), nn.Dropout(0.0))
        self.ffn1, self.ffn2 = feed_forward(), feed_forward()
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.self_attn = nn.MultiheadAttention(d, heads)
        self.conv_layer_norm = nn.LayerNorm(d)
        self.conv = nn.Sequential(nn.Conv1d(d, 2 * d, 1), nn.GLU(dim=1),
                                  nn.Conv1d(d, d, kernel, padding=(kernel - 1) // 2, groups=d),
                                  nn.BatchNorm1d(d), nn.SiLU(), nn.Conv1d(d, d, 1), nn.Dropout(0.0))
        self.final_layer_norm = nn.LayerNorm(d)

    def forward(self, x, key_padding_mask):
        x = self.ffn1(x) * 0.5 + x
        y = self.self_attn_layer_norm(x)
        x = self.self_attn(y, y, y, key_padding_mask=key_padding_mask, need_weights=False)[0] + x
        y = self.conv_layer_norm(x).permute(1, 2, 0)            # (T, B, D) -> (B, D, T)
        x = self.conv(y).permute(2, 0, 1) + x
        x = self.ffn2(x) * 0.5 + x
        return self.final_layer_norm(x)


class Conformer(torch.nn.Module):
    """torchaudio.models.Conformer: the layers over (B, T, D) features, all
    frames valid here (lengths = T)."""

    def __init__(self, d=144, heads=4, ffn=576, layers=16, kernel=31):
        super().__init__()
        self.conformer_layers = torch.nn.ModuleList(ConformerLayer(d, ffn, heads, kernel) for _ in range(layers))

    def forward(self, x):
        mask = torch.zeros(x.shape[0], x.shape[1], dtype=torch.bool)
        x = x.transpose(0, 1)
        for layer in self.conformer_layers:
            x = layer(x, mask)
        return x.transpose(0, 1)


def random_running_stats(module):
    """BatchNorm's running mean and variance drawn at random (a fresh one
    holds 0 and 1, which would let a mix-up of the two go unseen)."""
    g = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm1d) and m.running_mean.device.type != "meta":
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return module


def conformer_load(ours, ref):
    sd, out = ref.state_dict(), {}
    for i in range(len(ref.conformer_layers)):
        o, r = f"encoded.repeat[{i}].", f"conformer_layers.{i}."
        for j, ffn in ((0, "ffn1"), (3, "ffn2")):
            both(out, o + f"residual[{j}].layernorm", sd, r + f"{ffn}.0")
            both(out, o + f"residual[{j}].mlp.fc1", sd, r + f"{ffn}.1")
            both(out, o + f"residual[{j}].mlp.fc2", sd, r + f"{ffn}.4")
        both(out, o + "residual[1].layernorm", sd, r + "self_attn_layer_norm")
        split_mha(out, o + "residual[1].attention.", sd, r + "self_attn.")
        both(out, o + "residual[2].layernorm", sd, r + "conv_layer_norm")
        both(out, o + "residual[2].conv1d[0].conv", sd, r + "conv.0")
        both(out, o + "residual[2].conv1d[1].conv", sd, r + "conv.2")
        both(out, o + "residual[2].batchnorm", sd, r + "conv.3",
             ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"))
        both(out, o + "residual[2].conv1d[2].conv", sd, r + "conv.5")
        both(out, o + "layernorm", sd, r + "final_layer_norm")
    ours.load_state_dict(out, strict=True)


def features(d):
    return lambda t: (torch.randn(1, t, d, generator=torch.Generator().manual_seed(t)),)


def with_grad(ref, *xs):
    with torch.enable_grad():   # no_grad would take nn.MultiheadAttention's fused fast path, unseen by the counter
        return ref(*xs).detach()


def tokens(vocab):
    return lambda t: (torch.randint(0, vocab, (1, t), generator=torch.Generator().manual_seed(t)),)


def full_tokens(vocab):
    return lambda t: ({"T": t}, tokens(vocab)(t))


def full_features(d):
    return lambda t: ({"T": t}, (torch.zeros(1, t, d),))


def logits(ref, *xs):
    return ref(*xs).logits


ENTRIES: dict[str, Entry] = {
    "gpt2_small": Entry("gpt2_small", {"layers": 2, "vocab": 512}, gpt2, tokens(512), lambda t: {"T": t}, gpt2_load,
                        logits, full=full_tokens(50257)),
    "torch_transformer": Entry("torch_transformer", {"layers": 2}, torch_transformer, src_tgt,
                               lambda t: {"S": t, "T": t // 2}, torch_transformer_load, torch_transformer_run,
                               full=lambda t: ({"S": t, "T": t}, (torch.zeros(1, t, 512), torch.zeros(1, t, 512)))),
    "whisper_tiny": Entry("whisper_tiny", {"layers": 2, "vocab": 512, "frames": 16}, whisper,
                          mel_tokens(32, 512), lambda t: {"S": 32, "T": t}, whisper_load, whisper_run,
                          full=lambda t: ({"S": 3000, "T": t}, mel_tokens(3000, 51865)(t))),
    "mamba_130m": Entry("mamba_130m", {"layers": 2, "vocab": 512}, mamba, tokens(512), lambda t: {"T": t},
                        ssm_loader("embeddings", "mamba"), logits,
                        lengths=(64, 128), extra=conv_overhang(2 * 768), full=full_tokens(50280)),
    "mamba2_130m": Entry("mamba2_130m", {"layers": 2, "vocab": 512}, mamba2, tokens(512), lambda t: {"T": t},
                         ssm_loader("wte", "mamba2"), logits,
                         extra=lambda small, t: (conv_overhang(2 * 768 + 2 * 128)(small, t)
                                                 + ssd_overhang(24, 1, 128, 64, 256)(small, t)),
                         full=full_tokens(50288)),
    "wav2letter": Entry("wav2letter", {}, lambda small: Wav2Letter(), waveform, lambda t: {"T": t},
                        wav2letter_load, channels_first, lengths=(3200, 8000), full=full_features(1)),
    "conformer_s": Entry("conformer_s", {"layers": 2},
                         lambda small: random_running_stats(Conformer(layers=2 if small else 16)),
                         features(144), lambda t: {"T": t}, conformer_load, with_grad, full=full_features(144)),
}


# ---------------------------------------------------------------- Emformer RNN-T (torchaudio)
def emformer_rnnt(small: bool):
    """emformer_rnnt_base(4097) (tests/emformer_ref.py); small: 2 Emformer layers, 64 symbols."""
    from emformer_ref import RNNT
    return RNNT(num_symbols=64 if small else 4097, layers=2 if small else 20)


def emformer_rnnt_load(ours, ref):
    from emformer_ref import emformer_weights
    sd = ref.state_dict()
    out = emformer_weights("source.emformer", ref.transcriber.transformer)
    out["source.input_linear.weight"] = sd["transcriber.input_linear.weight"]
    both(out, "source.output_linear", sd, "transcriber.output_linear")
    both(out, "source.layernorm", sd, "transcriber.layer_norm")
    out["target.embed.weight"] = sd["predictor.embedding.weight"]
    both(out, "target.layernorm[0]", sd, "predictor.input_layer_norm")
    for i in range(len(ref.predictor.lstm_layers)):
        o, r = f"target.repeat[{i}].ln_lstm.", f"predictor.lstm_layers.{i}."
        out[o + "x2g.weight"], out[o + "p2g.weight"] = sd[r + "x2g.weight"], sd[r + "p2g.weight"]
        both(out, o + "g_norm", sd, r + "g_norm")
        both(out, o + "c_norm", sd, r + "c_norm")
    both(out, "target.linear", sd, "predictor.linear")
    both(out, "target.layernorm[1]", sd, "predictor.output_layer_norm")
    both(out, "logits.linear", sd, "joiner")
    ours.load_state_dict(out, strict=True)


def rnnt_lengths(t):
    """The spec's symbols at t time-reduced steps: U = t // 4 + 1 target tokens."""
    return {"T": t, "U": t // 4 + 1}


def frames_targets(symbols):
    """t steps of 4 mel frames, as [1, t, 4, 80] (the spec's input; a view of the
    reference's [1, 4t, 80]), and U target tokens."""
    def make(t):
        g = torch.Generator().manual_seed(t)
        return (torch.randn(1, t, 4, 80, generator=g),
                torch.randint(0, symbols, (1, rnnt_lengths(t)["U"]), generator=g))
    return make


def rnnt_run(ref, steps, targets):
    return ref(steps.reshape(steps.shape[0], -1, steps.shape[-1]), targets)


ENTRIES["emformer_rnnt"] = Entry(
    "emformer_rnnt", {"layers": 2, "symbols": 64}, emformer_rnnt, frames_targets(64), rnnt_lengths,
    emformer_rnnt_load, rnnt_run, full=lambda t: (rnnt_lengths(t), frames_targets(4097)(t)))

def published_flops(name: str, t: int) -> tuple[int, int]:
    """(our estimate, the reference's FlopCounterMode count) at the published
    size, length t, batch 1: the reference runs on the meta device, so this
    costs shapes, not arithmetic."""
    from seqdsl.backend import measure
    entry = ENTRIES[name]
    seq, xs = entry.full(t)
    ours = seqdsl.estimate(graph(entry.spec), seq=seq, batch=1).points[0].flops_forward
    with torch.device("meta"):
        ref = entry.reference(False).eval()
        with torch.no_grad(), measure.counter() as c:
            entry.run(ref, *(x.to("meta") for x in xs))
    return ours, c.get_total_flops()


# ---------------------------------------------------------------- BERT-base and DeepSpeech
# (their own block, after the published_flops helper, so that the other zoo
# entries' blocks above merge untouched)
def bert(small: bool):
    import transformers as tf
    cfg = tf.BertConfig(vocab_size=512 if small else 30522, hidden_size=768, num_hidden_layers=2 if small else 12,
                        num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
                        max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12,
                        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    return tf.BertModel(cfg).eval()   # add_pooling_layer=True, BertModel's default


def bert_load(ours, ref):
    sd, out = ref.state_dict(), {}
    out["type_embeddings.token_type_embeddings.weight"] = sd["embeddings.token_type_embeddings.weight"]
    out["hidden.word_embeddings.weight"] = sd["embeddings.word_embeddings.weight"]
    out["hidden.position_embeddings.weight"] = sd["embeddings.position_embeddings.weight"]
    both(out, "hidden.layernorm", sd, "embeddings.LayerNorm")
    for i in range(ref.config.num_hidden_layers):
        o, r = f"hidden.repeat[{i}].", f"encoder.layer.{i}."
        for n, name in zip("qkv", ("query", "key", "value")):
            both(out, o + f"residual[0].attention.{n}", sd, r + f"attention.self.{name}")
        both(out, o + "residual[0].attention.o", sd, r + "attention.output.dense")
        both(out, o + "layernorm[0]", sd, r + "attention.output.LayerNorm")
        both(out, o + "residual[1].mlp.fc1", sd, r + "intermediate.dense")
        both(out, o + "residual[1].mlp.fc2", sd, r + "output.dense")
        both(out, o + "layernorm[1]", sd, r + "output.LayerNorm")
    both(out, "pooled.linear", sd, "pooler.dense")
    ours.load_state_dict(out, strict=True)


def tokens_and_types(vocab):
    """Token ids and token type ids (segment A then segment B, BERT's sentence pair)."""
    def make(t):
        ids = torch.randint(0, vocab, (1, t), generator=torch.Generator().manual_seed(t))
        return ids, (torch.arange(t) >= t // 2).long()[None]
    return make


def bert_run(ref, ids, types):
    out = ref(input_ids=ids, token_type_ids=types)
    return out.last_hidden_state, out.pooler_output


class FullyConnected(torch.nn.Module):
    """torchaudio's DeepSpeech layer: linear, relu, then hardtanh(0, 20) (no dropout at dropout=0)."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.fc = torch.nn.Linear(n_in, n_out)

    def forward(self, x):
        return torch.nn.functional.hardtanh(torch.relu(self.fc(x)), 0.0, 20.0)


class DeepSpeech(torch.nn.Module):
    """torchaudio.models.DeepSpeech(n_feature, n_hidden=2048, n_class=40,
    dropout=0.0), written from its source (torchaudio/models/deepspeech.py;
    the torchaudio wheel does not install here), with its parameter names:
    fc1-fc3, a one-layer bidirectional relu nn.RNN over the time-major
    sequence whose two directions are summed, fc4, the output linear, and
    log_softmax over the classes. Takes (B, 1, T, n_feature) and returns
    (B, T, n_class), as torchaudio's does."""

    def __init__(self, n_feature=80, n_hidden=2048, n_class=40):
        super().__init__()
        self.n_hidden = n_hidden
        self.fc1 = FullyConnected(n_feature, n_hidden)
        self.fc2 = FullyConnected(n_hidden, n_hidden)
        self.fc3 = FullyConnected(n_hidden, n_hidden)
        self.bi_rnn = torch.nn.RNN(n_hidden, n_hidden, num_layers=1, nonlinearity="relu", bidirectional=True)
        self.fc4 = FullyConnected(n_hidden, n_hidden)
        self.out = torch.nn.Linear(n_hidden, n_class)

    def forward(self, x):                            # (B, 1, T, F)
        x = self.fc3(self.fc2(self.fc1(x))).squeeze(1).transpose(0, 1)   # (T, B, H)
        x = self.bi_rnn(x)[0]
        x = x[:, :, :self.n_hidden] + x[:, :, self.n_hidden:]
        x = self.out(self.fc4(x)).permute(1, 0, 2)   # (B, T, classes)
        return torch.log_softmax(x, dim=2)


def deepspeech_load(ours, ref):
    sd, out = ref.state_dict(), {}
    for i in range(3):
        both(out, f"directions.fully_connected[{i}].linear", sd, f"fc{i + 1}.fc")
    for key, value in sd.items():
        if key.startswith("bi_rnn."):
            out["directions.rnn.rnn." + key[len("bi_rnn."):]] = value
    both(out, "log_probs.fully_connected.linear", sd, "fc4.fc")
    both(out, "log_probs.linear", sd, "out")
    ours.load_state_dict(out, strict=True)


def with_channel(ref, x):
    return ref(x.unsqueeze(1))


ENTRIES["bert_base"] = Entry("bert_base", {"layers": 2, "vocab": 512}, bert, tokens_and_types(512),
                             lambda t: {"T": t}, bert_load, bert_run,
                             full=lambda t: ({"T": t}, tokens_and_types(30522)(t)))
ENTRIES["deepspeech"] = Entry("deepspeech", {"hidden": 64}, lambda small: DeepSpeech(n_hidden=64 if small else 2048),
                              features(80), lambda t: {"T": t}, deepspeech_load, with_channel,
                              full=full_features(80))


# ---------------------------------------------------------------- RecurrentGemma-2B
RG_SMALL = {"vocab": 512, "d": 128, "heads": 2, "hidden": 384, "groups": 1}


def recurrentgemma(small: bool, window: int = 2048):
    """transformers' RecurrentGemmaForCausalLM at google/recurrentgemma-2b's
    config (its MLP is intermediate_size // 2 wide), or at RG_SMALL's sizes:
    groups = 1, so 5 layers (recurrent, recurrent, attention, recurrent,
    recurrent). At the small size every weight transformers initialises to
    zero (biases, the RMSNorms' w of 1 + w, the RG-LRU gate biases) is drawn
    at random instead, so that a swapped or dropped one cannot go unseen.
    window: its attention_window_size (tests/test_zoo.py tries a small one)."""
    import transformers as tf
    d, heads, hidden = (RG_SMALL["d"], RG_SMALL["heads"], RG_SMALL["hidden"]) if small else (2560, 10, 7680)
    cfg = tf.RecurrentGemmaConfig(vocab_size=RG_SMALL["vocab"] if small else 256000, hidden_size=d,
                                  num_attention_heads=heads, num_key_value_heads=1, intermediate_size=2 * hidden,
                                  num_hidden_layers=3 * (RG_SMALL["groups"] if small else 8) + 2,
                                  attention_window_size=window, conv1d_width=4, logits_soft_cap=30.0,
                                  rms_norm_eps=1e-6, tie_word_embeddings=True, attn_implementation="sdpa")
    ref = tf.RecurrentGemmaForCausalLM(cfg).eval()
    if small:
        g = torch.Generator().manual_seed(2)
        with torch.no_grad():
            for name, p in ref.named_parameters():
                if name.endswith("bias") or name.endswith("norm.weight"):
                    p.add_(0.1 * torch.randn(p.shape, generator=g))
    return ref


def recurrentgemma_layers(groups: int) -> list[str]:
    """Our name of each of transformers' layers, in its order."""
    names = []
    for g in range(groups):
        names += [f"repeat[{g}].recurrent_layer[0]", f"repeat[{g}].recurrent_layer[1]", f"repeat[{g}].attention_layer"]
    return [f"logits.{n}." for n in names + ["recurrent_layer[0]", "recurrent_layer[1]"]]


def recurrentgemma_load(ours, ref):
    sd, out = ref.state_dict(), {}
    out["logits.embed_tokens.weight"] = sd["model.embed_tokens.weight"]
    for i, o in enumerate(recurrentgemma_layers((ref.config.num_hidden_layers - 2) // 3)):
        r = f"model.layers.{i}."
        out[o + "residual[0].rmsnorm.weight"] = sd[r + "temporal_pre_norm.weight"]
        out[o + "residual[1].rmsnorm.weight"] = sd[r + "channel_pre_norm.weight"]
        for key, value in sd.items():
            if key.startswith(r + "temporal_block.") and "attention_layer" not in o:
                out[o + "residual[0].rglru." + key[len(r + "temporal_block."):]] = value
        if "attention_layer" in o:
            for n in "qkv":
                out[o + f"residual[0].attention.{n}.weight"] = sd[r + f"temporal_block.{n}_proj.weight"]
            both(out, o + "residual[0].attention.o", sd, r + "temporal_block.o_proj")
        for ours_name, theirs in (("w1", "gate_proj"), ("w3", "up_proj"), ("w2", "down_proj")):
            both(out, o + f"residual[1].geglu.{ours_name}", sd, r + f"mlp_block.{theirs}")
    out["logits.rmsnorm.weight"] = sd["model.final_norm.weight"]
    ours.load_state_dict(out, strict=True)


def rg_conv_overhang(small: bool, t: int) -> int:
    """transformers' RecurrentGemmaRecurrentBlock pads its depthwise conv by
    kernel - 1 on both sides and drops the last kernel - 1 outputs: 2 · width
    · 4 · 3 FLOPs per recurrent layer past the function (4 layers small, 18 at
    the published size)."""
    return (4 * 2 * RG_SMALL["d"] if small else 18 * 2 * 2560) * 4 * 3


ENTRIES["recurrentgemma_2b"] = Entry("recurrentgemma_2b", RG_SMALL, recurrentgemma, tokens(RG_SMALL["vocab"]),
                                     lambda t: {"T": t}, recurrentgemma_load, logits, lengths=(16, 40),
                                     extra=rg_conv_overhang, full=full_tokens(256000))
