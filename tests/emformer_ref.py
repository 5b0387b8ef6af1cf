"""torchaudio.models.Emformer and the encoder of emformer_rnnt_base, written
as plain test-only modules from torchaudio's source (torchaudio/models/
emformer.py and rnnt.py; the torchaudio wheel does not install here).

They follow torchaudio's training-mode forward step by step: time-major
(T, B, D) tensors; the right-context blocks cut from the input
(_gen_right_context); the attention mask built block by block from column
widths (_gen_attention_mask); the memory bank from average-pooled segment
summaries; queries [right context, utterance, summary] and keys [memory,
right context, utterance] through torch.bmm with the scores masked to -1e8 in
float; the memory written back through tanh or clamp. All frames are valid
(lengths = T), so the padding mask is never needed. The module and parameter
names are torchaudio's, so a state_dict maps one to one."""
from __future__ import annotations

import math

import torch
from torch import nn


class EmformerAttention(nn.Module):
    def __init__(self, d, heads, dropout=0.0, tanh_on_mem=False, negative_inf=-1e8):
        super().__init__()
        self.d, self.heads, self.dropout = d, heads, dropout
        self.tanh_on_mem, self.negative_inf = tanh_on_mem, negative_inf
        self.scaling = (d // heads) ** -0.5
        self.emb_to_key_value = nn.Linear(d, 2 * d, bias=True)
        self.emb_to_query = nn.Linear(d, d, bias=True)
        self.out_proj = nn.Linear(d, d, bias=True)

    def _attend(self, utterance, right_context, summary, mems, attention_mask, lc_key=None, lc_val=None):
        """Queries [right context, utterance, summary]; keys and values
        [mems, right context, (left-context keys and values: infer), utterance]."""
        b = utterance.size(1)
        t = right_context.size(0) + utterance.size(0) + summary.size(0)
        query = self.emb_to_query(torch.cat([right_context, utterance, summary]))
        key, value = self.emb_to_key_value(torch.cat([mems, right_context, utterance])).chunk(2, dim=2)
        if lc_key is not None:
            cut = mems.size(0) + right_context.size(0)
            key = torch.cat([key[:cut], lc_key, key[cut:]])
            value = torch.cat([value[:cut], lc_val, value[cut:]])
        dh = self.d // self.heads
        q, k, v = (z.contiguous().view(-1, b * self.heads, dh).transpose(0, 1) for z in (query, key, value))
        weights = torch.bmm(q * self.scaling, k.transpose(1, 2))
        weights = weights.float().masked_fill(attention_mask.unsqueeze(0), self.negative_inf)
        probs = nn.functional.softmax(weights, dim=-1).type_as(q)
        probs = nn.functional.dropout(probs, p=self.dropout, training=self.training)
        attention = torch.bmm(probs, v).transpose(0, 1).contiguous().view(t, b, self.d)
        out = self.out_proj(attention)
        n_sum = summary.size(0)
        out_rc, out_mems = out[: t - n_sum], out[t - n_sum:]
        out_mems = torch.tanh(out_mems) if self.tanh_on_mem else torch.clamp(out_mems, min=-10, max=10)
        return out_rc, out_mems, key, value

    def forward(self, utterance, right_context, summary, mems, attention_mask):
        out_rc, out_mems, _, _ = self._attend(utterance, right_context, summary, mems, attention_mask)
        return out_rc, out_mems[:-1]

    def infer(self, utterance, right_context, summary, mems, lc_key, lc_val):
        """torchaudio's _EmformerAttention.infer: one segment; every query sees
        every key except the summary, which does not see the memory bank.
        Returns the outputs, the memory written (not cut), and the keys and
        values of [left context, utterance] (the next left context's source)."""
        q_len = right_context.size(0) + utterance.size(0) + summary.size(0)
        k_len = mems.size(0) + right_context.size(0) + lc_key.size(0) + utterance.size(0)
        mask = torch.zeros(q_len, k_len, dtype=torch.bool, device=utterance.device)
        mask[-1, : mems.size(0)] = True
        out_rc, out_mems, key, value = self._attend(utterance, right_context, summary, mems, mask, lc_key, lc_val)
        cut = mems.size(0) + right_context.size(0)
        return out_rc, out_mems, key[cut:], value[cut:]


class EmformerLayer(nn.Module):
    def __init__(self, d, heads, ffn, segment, dropout=0.0, activation="relu", max_memory_size=0,
                 tanh_on_mem=False):
        super().__init__()
        self.attention = EmformerAttention(d, heads, dropout, tanh_on_mem)
        self.dropout = nn.Dropout(dropout)
        self.memory_op = nn.AvgPool1d(kernel_size=segment, stride=segment, ceil_mode=True)
        act = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}[activation]()
        self.pos_ff = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, ffn), act, nn.Dropout(dropout),
                                    nn.Linear(ffn, d), nn.Dropout(dropout))
        self.layer_norm_input = nn.LayerNorm(d)
        self.layer_norm_output = nn.LayerNorm(d)
        self.use_mem = max_memory_size > 0
        self.max_memory_size, self.segment = max_memory_size, segment

    def forward(self, utterance, right_context, mems, attention_mask):
        normed = self.layer_norm_input(torch.cat([right_context, utterance]))
        n_rc = right_context.size(0)
        utt_n, rc_n = normed[n_rc:], normed[:n_rc]
        if self.use_mem:
            summary = self.memory_op(utt_n.permute(1, 2, 0)).permute(2, 0, 1)
        else:
            summary = utterance.new_empty(0)
        rc_output, out_mems = self.attention(utt_n, rc_n, summary, mems, attention_mask)
        return self._feed_forward(rc_output, utterance, right_context) + (out_mems,)

    def _feed_forward(self, rc_output, utterance, right_context):
        n_rc = right_context.size(0)
        result = self.dropout(rc_output) + torch.cat([right_context, utterance])
        result = self.pos_ff(result) + result
        result = self.layer_norm_output(result)
        return result[n_rc:], result[:n_rc]

    def init_state(self, batch, left, device=None):
        """torchaudio's _EmformerLayer._init_state: [memory bank (M, B, D),
        left-context keys (L, B, D), values (L, B, D), frames seen (1, B) int32]."""
        d = self.attention.d
        return [torch.zeros(self.max_memory_size, batch, d, device=device),
                torch.zeros(left, batch, d, device=device), torch.zeros(left, batch, d, device=device),
                torch.zeros(1, batch, dtype=torch.int32, device=device)]

    def infer(self, utterance, right_context, state, mems):
        """torchaudio's _EmformerLayer.infer: one segment (its utterance frames
        and right context, (T, B, D) and (R, B, D)) with the state of the
        segments before it; mems is the memory the layer below wrote for this
        segment (for the first layer, the segment's average). Returns the
        utterance and right-context outputs, the new state and this layer's
        memory for the layer above."""
        m_max, left = self.max_memory_size, state[1].size(0)
        normed = self.layer_norm_input(torch.cat([right_context, utterance]))
        n_rc = right_context.size(0)
        utt_n, rc_n = normed[n_rc:], normed[:n_rc]
        past = int(state[3][0][0].item())
        past_left = min(left, past)
        past_mem = min(m_max, math.ceil(past / self.segment))
        pre_mems = state[0][m_max - past_mem:]
        lc_key, lc_val = state[1][left - past_left:], state[2][left - past_left:]
        if self.use_mem:
            summary = self.memory_op(utt_n.permute(1, 2, 0)).permute(2, 0, 1)[:1]
        else:
            summary = utterance.new_empty(0)
        rc_output, next_m, next_k, next_v = self.attention.infer(utt_n, rc_n, summary, pre_mems, lc_key, lc_val)
        # the state: the memory bank takes the memory given to this layer (not its own
        # output), the left context the last `left` keys and values, the count the frames
        new_k, new_v = torch.cat([state[1], next_k]), torch.cat([state[2], next_v])
        state = [torch.cat([state[0], mems])[-m_max:] if m_max else state[0],
                 new_k[new_k.size(0) - left:], new_v[new_v.size(0) - left:], state[3] + utterance.size(0)]
        out_utt, out_rc = self._feed_forward(rc_output, utterance, right_context)
        return out_utt, out_rc, state, next_m


def _mask_block(widths, ones, rows):
    return torch.cat([(torch.ones if one else torch.zeros)(rows, w) for w, one in zip(widths, ones)], dim=1)


class Emformer(nn.Module):
    """torchaudio.models.Emformer(input_dim, num_heads, ffn_dim, num_layers,
    segment_length, ...): forward(input (B, T + right, D)) -> (B, T, D)."""

    def __init__(self, d, heads, ffn, layers, segment, dropout=0.0, activation="relu", left_context_length=0,
                 right_context_length=0, max_memory_size=0, tanh_on_mem=False):
        super().__init__()
        self.emformer_layers = nn.ModuleList(
            EmformerLayer(d, heads, ffn, segment, dropout, activation, max_memory_size, tanh_on_mem)
            for _ in range(layers))
        self.memory_op = nn.AvgPool1d(kernel_size=segment, stride=segment, ceil_mode=True)
        self.segment, self.left, self.right = segment, left_context_length, right_context_length
        self.max_memory_size, self.use_mem = max_memory_size, max_memory_size > 0

    def _right_context(self, x):
        t = x.shape[0]
        n = math.ceil((t - self.right) / self.segment)
        blocks = [x[(i + 1) * self.segment:(i + 1) * self.segment + self.right] for i in range(n - 1)]
        return torch.cat(blocks + [x[t - self.right:]])

    def _col_widths(self, i, t):
        n = math.ceil(t / self.segment)
        rc, lc = self.right, self.left
        rc_start, rc_end = i * rc, i * rc + rc
        seg_start = max(i * self.segment - lc, 0)
        seg_end = min((i + 1) * self.segment, t)
        widths = [rc_start, rc, rc * n - rc_end, seg_start, seg_end - seg_start, t - seg_end]
        if self.use_mem:
            m_start = max(i - self.max_memory_size, 0)
            widths = [m_start, i - m_start, n - 1 - i] + widths
        return widths

    def _mask(self, t):
        n = math.ceil(t / self.segment)
        cols = 9 if self.use_mem else 6
        rc_q = [j in ((1, 4, 7) if self.use_mem else (1, 4)) for j in range(cols)]
        s = [j in (4, 7) for j in range(cols)]
        rc_mask, q_mask, s_mask = [], [], []
        for i in range(n):
            widths = self._col_widths(i, t)
            rc_mask.append(_mask_block(widths, rc_q, self.right))
            q_mask.append(_mask_block(widths, rc_q, min(self.segment, t - i * self.segment)))
            if self.use_mem:
                s_mask.append(_mask_block(widths, s, 1))
        parts = [rc_mask, q_mask] + ([s_mask] if self.use_mem else [])
        return (1 - torch.cat([torch.cat(p) for p in parts])).to(torch.bool)

    def forward(self, x):
        x = x.permute(1, 0, 2)
        right_context = self._right_context(x)
        utterance = x[: x.size(0) - self.right]
        mask = self._mask(utterance.size(0))
        if self.use_mem:
            mems = self.memory_op(utterance.permute(1, 2, 0)).permute(2, 0, 1)[:-1]
        else:
            mems = x.new_empty(0)
        out = utterance
        for layer in self.emformer_layers:
            out, right_context, mems = layer(out, right_context, mems, mask)
        return out.permute(1, 0, 2)

    def infer(self, x, states=None):
        """torchaudio's Emformer.infer: one segment at a time. x (B, S + R, D):
        the segment's S frames (S = segment, or fewer for the last) and the R =
        right frames after it; states: what the previous call returned (None
        for the first). Returns the segment's S output frames and the states."""
        x = x.permute(1, 0, 2)
        utterance, right_context = x[: x.size(0) - self.right], x[x.size(0) - self.right:]
        if self.use_mem:
            mems = self.memory_op(utterance.permute(1, 2, 0)).permute(2, 0, 1)
        else:
            mems = x.new_empty(0)
        if states is None:
            states = [layer.init_state(x.size(1), self.left, x.device) for layer in self.emformer_layers]
        out, new_states = utterance, []
        for layer, state in zip(self.emformer_layers, states):
            out, right_context, state, mems = layer.infer(out, right_context, state, mems)
            new_states.append(state)
        return out.permute(1, 0, 2), new_states

    def infer_stream(self, x):
        """The whole input (B, T, D) through infer, segment by segment as a
        streaming caller feeds it: windows of segment + right frames that start
        every segment frames, the last one shorter (torchaudio's streaming
        recipes cut the input this way)."""
        t_utt = x.size(1) - self.right
        outs, states = [], None
        for start in range(0, t_utt, self.segment):
            end = min(start + self.segment, t_utt)
            y, states = self.infer(x[:, start:end + self.right], states)
            outs.append(y)
        return torch.cat(outs, 1)


class EmformerEncoder(nn.Module):
    """torchaudio's _EmformerEncoder (the transcriber of emformer_rnnt_model):
    input_linear (no bias), _TimeReduction(stride), Emformer, output_linear,
    layer_norm. forward(input (B, T, input_dim)) -> (B, T // stride - right, out)."""

    def __init__(self, input_dim=80, output_dim=1024, segment_length=16, right_context_length=4,
                 time_reduction_input_dim=128, stride=4, heads=8, ffn=2048, layers=20, left_context_length=30,
                 dropout=0.1, activation="gelu", max_memory_size=0, tanh_on_mem=True):
        super().__init__()
        self.stride = stride
        self.input_linear = nn.Linear(input_dim, time_reduction_input_dim, bias=False)
        d = time_reduction_input_dim * stride
        self.transformer = Emformer(d, heads, ffn, layers, segment_length // stride, dropout=dropout,
                                    activation=activation, left_context_length=left_context_length,
                                    right_context_length=right_context_length // stride,
                                    max_memory_size=max_memory_size, tanh_on_mem=tanh_on_mem)
        self.output_linear = nn.Linear(d, output_dim)
        self.layer_norm = nn.LayerNorm(output_dim)

    def forward(self, x):
        y = self.input_linear(x)
        b, t, d = y.shape
        frames = t - t % self.stride                     # _TimeReduction: drop the remainder, fold
        y = y[:, :frames].reshape(b, frames // self.stride, d * self.stride).contiguous()
        return self.layer_norm(self.output_linear(self.transformer(y)))


class CustomLSTM(nn.Module):
    """torchaudio's _CustomLSTM with layer_norm=True: x2g without bias, p2g,
    a layer norm on the gates and on the cell; time-major (T, B, D)."""

    def __init__(self, d, hidden, eps):
        super().__init__()
        self.hidden = hidden
        self.x2g = nn.Linear(d, 4 * hidden, bias=False)
        self.p2g = nn.Linear(hidden, 4 * hidden, bias=False)
        self.c_norm = nn.LayerNorm(hidden, eps=eps)
        self.g_norm = nn.LayerNorm(4 * hidden, eps=eps)

    def forward(self, x):
        h = x.new_zeros(x.size(1), self.hidden)
        c = x.new_zeros(x.size(1), self.hidden)
        outputs = []
        for gates in self.x2g(x).unbind(0):
            gates = self.g_norm(gates + self.p2g(h))
            i, f, g, o = gates.chunk(4, 1)
            c = self.c_norm(f.sigmoid() * c + i.sigmoid() * g.tanh())
            h = o.sigmoid() * c.tanh()
            outputs.append(h)
        return torch.stack(outputs, dim=0)


class Predictor(nn.Module):
    """torchaudio's _Predictor: embedding, layer norm, the LSTM stack (dropout
    after each layer), linear, layer norm. forward(targets (B, U)) -> (B, U, out)."""

    def __init__(self, num_symbols, output_dim=1024, embed_dim=512, layers=3, eps=1e-3, dropout=0.3):
        super().__init__()
        self.embedding = nn.Embedding(num_symbols, embed_dim)
        self.input_layer_norm = nn.LayerNorm(embed_dim)
        self.lstm_layers = nn.ModuleList(CustomLSTM(embed_dim, embed_dim, eps) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(embed_dim, output_dim)
        self.output_layer_norm = nn.LayerNorm(output_dim)

    def forward(self, targets):
        y = self.input_layer_norm(self.embedding(targets.permute(1, 0)))
        for lstm in self.lstm_layers:
            y = self.dropout(lstm(y))
        return self.output_layer_norm(self.linear(y)).permute(1, 0, 2)


class RNNT(nn.Module):
    """torchaudio's emformer_rnnt_base(num_symbols): transcriber, predictor, and
    the joiner (source[:, :, None] + target[:, None], relu, linear).
    forward(sources (B, 4T, 80), targets (B, U)) -> (B, T - 1, U, num_symbols)."""

    def __init__(self, num_symbols=4097, layers=20):
        super().__init__()
        self.transcriber = EmformerEncoder(layers=layers)
        self.predictor = Predictor(num_symbols)
        self.joiner = nn.Linear(1024, num_symbols)

    def forward(self, sources, targets):
        source, target = self.transcriber(sources), self.predictor(targets)
        joint = source.unsqueeze(2).contiguous() + target.unsqueeze(1).contiguous()
        return self.joiner(torch.relu(joint))


def emformer_rnnt_base_params(num_symbols: int = 4097) -> int:
    """The parameters of torchaudio's emformer_rnnt_base(num_symbols), on the meta device."""
    with torch.device("meta"):
        return sum(p.numel() for p in RNNT(num_symbols).parameters())


# torchaudio's names of an Emformer layer's modules -> seqdsl's (seqdsl/layers/emformer_torch.py)
LAYER_NAMES = {"attn_norm": "layer_norm_input", "q": "attention.emb_to_query", "kv": "attention.emb_to_key_value",
               "o": "attention.out_proj", "ffn_norm": "pos_ff.0", "fc1": "pos_ff.1", "fc2": "pos_ff.4",
               "out_norm": "layer_norm_output"}


def emformer_weights(ours: str, ref: Emformer) -> dict:
    """The reference Emformer's weights under the names of the seqdsl module at `ours`."""
    sd, out = ref.state_dict(), {}
    for i in range(len(ref.emformer_layers)):
        for mine, theirs in LAYER_NAMES.items():
            for w in ("weight", "bias"):
                out[f"{ours}.layers.{i}.{mine}.{w}"] = sd[f"emformer_layers.{i}.{theirs}.{w}"]
    return out
