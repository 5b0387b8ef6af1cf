"""minGRU (the `mingru` layer): minGRU-pytorch's `minGRU` under the same
parameter names and shapes (its state_dict loads strict).

h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ g(h̃_t), z = sigmoid(gate), g(v) = v + 0.5
(v >= 0) or sigmoid(v), which keeps h positive. Three forms, tested equal:

* `mingru_naive`: the readable reference, one step at a time;
* `mingru_log_scan`: training and prefill, the log-space parallel scan
  (Heinsen; the reference's): cumulative sums and one logcumsumexp, depth O(1)
  in products;
* the decoding step (T = 1): one lerp.

Streaming (`state` dict): "h" the last hidden state (B, 1, di), model dtype.
"""
import torch
import torch.nn.functional as F
from torch import nn


def _g(x):
    return torch.where(x >= 0, x + 0.5, x.sigmoid())


def _log_g(x):
    return torch.where(x >= 0, (F.relu(x) + 0.5).log(), -F.softplus(-x))


def mingru_naive(hidden, gate, h0=None):
    """hidden, gate: (B, T, di) pre-activations. Every state (B, T, di)."""
    h = torch.zeros_like(hidden[:, 0]) if h0 is None else h0[:, 0]
    hs = []
    for t in range(hidden.shape[1]):
        z = torch.sigmoid(gate[:, t])
        h = (1 - z) * h + z * _g(hidden[:, t])
        hs.append(h)
    return torch.stack(hs, 1)


def mingru_log_scan(hidden, gate, h0=None):
    """The same states by the log-space scan: log h_t = a*_t + logcumsumexp(log v - a*)."""
    log_coeffs = -F.softplus(gate)                              # log(1 - z)
    log_values = -F.softplus(-gate) + _log_g(hidden)            # log(z · g(h̃))
    if h0 is not None:
        log_values = torch.cat([h0.log(), log_values], 1)
        log_coeffs = F.pad(log_coeffs, (0, 0, 1, 0))
    a_star = log_coeffs.cumsum(1)
    h = (a_star + (log_values - a_star).logcumsumexp(1)).exp()
    return h[:, h.shape[1] - hidden.shape[1]:]


class MinGru(nn.Module):
    def __init__(self, d, expand=1.0):
        super().__init__()
        di = int(d * expand)
        self.to_hidden_and_gate = nn.Linear(d, 2 * di, bias=False)
        self.to_out = nn.Linear(di, d, bias=False) if expand != 1 else nn.Identity()

    def forward(self, x, state=None):
        hidden, gate = self.to_hidden_and_gate(x).chunk(2, dim=-1)
        h0 = None if state is None else state.get("h")
        if x.shape[1] == 1:                                     # the decoding step
            z = gate.sigmoid()
            h = torch.lerp(h0, _g(hidden), z) if h0 is not None else _g(hidden) * z
        else:
            h = mingru_log_scan(hidden, gate, h0)
        if state is not None and x.shape[1]:
            state["h"] = h[:, -1:].detach()
        return self.to_out(h)
