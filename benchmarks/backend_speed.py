"""Generated module (seqdsl.build) vs a hand-written plain-PyTorch twin, eager and
compiled (inductor), forward and training step, side by side in one run.

    .venv/bin/python benchmarks/backend_speed.py [--quick] [--no-compile]

Writes benchmarks/results/backend_speed.md. Sizes are small so the whole run
takes a few minutes on this 2-core CPU.
"""
from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import seqdsl

V, D, H, L = 2000, 256, 4, 4

TRANSFORMER = f"""
model transformer_lm {{
    input tokens: int[B, T]
    logits = tokens -> embed({V}, {D}) as wte
        -> repeat({L}) {{
            residual {{ layernorm -> attention({H}, causal=true) }}
            residual {{ layernorm -> mlp({4 * D}) }}
        }}
        -> layernorm -> linear({V}, bias=false, tie=wte)
    output logits
}}"""

LSTM = f"""
model lstm_lm {{
    input tokens: int[B, T]
    logits = tokens -> embed({V}, {D}) -> lstm(512, layers=2) -> linear({V})
    output logits
}}"""

HYBRID = """
model hybrid {
    input feats: float[B, T, 40]
    y = feats -> conv1d(128, 5, padding=causal) -> gelu
        -> repeat(2) { residual { layernorm -> attention(4, causal=true) } }
        -> gru(128) -> linear(32)
    output y
}"""


# ------------------------------------------------------------------ hand-written twins
class TwinBlock(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv_q, self.qkv_k, self.qkv_v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.proj = nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.h = h

    def forward(self, x):
        b, t, d = x.shape
        y = self.ln1(x)
        q = self.qkv_q(y).view(b, t, self.h, -1).transpose(1, 2)
        k = self.qkv_k(y).view(b, t, self.h, -1).transpose(1, 2)
        v = self.qkv_v(y).view(b, t, self.h, -1).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class TwinTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(V, D)
        self.blocks = nn.ModuleList(TwinBlock(D, H) for _ in range(L))
        self.ln = nn.LayerNorm(D)

    def forward(self, tokens):
        x = self.wte(tokens)
        for blk in self.blocks:
            x = blk(x)
        return F.linear(self.ln(x), self.wte.weight)


class TwinLstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.rnn = nn.LSTM(D, 512, 2, batch_first=True)
        self.head = nn.Linear(512, V)

    def forward(self, tokens):
        return self.head(self.rnn(self.emb(tokens))[0])


class TwinAttn(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.h = h

    def forward(self, x):
        b, t, d = x.shape
        y = self.ln(x)
        q, k, v = (m(y).view(b, t, self.h, -1).transpose(1, 2) for m in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return x + self.o(y.transpose(1, 2).reshape(b, t, d))


class TwinHybrid(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(40, 128, 5)
        self.attn = nn.ModuleList(TwinAttn(128, 4) for _ in range(2))
        self.rnn = nn.GRU(128, 128, batch_first=True)
        self.head = nn.Linear(128, 32)

    def forward(self, x):
        x = self.conv(F.pad(x.transpose(1, 2), (4, 0))).transpose(1, 2)   # (B, T, C) -> (B, C, T) -> (B, T, 128)
        x = F.gelu(x)
        for a in self.attn:
            x = a(x)
        return self.head(self.rnn(x)[0])


NOTES = """
Notes. Eager: the generated module runs the same kernels as the twin (docs/lowering.md);
its only extra work is a Python walk over the graph (a dict lookup per node), a few
microseconds per layer. Ratios within a few percent either way are run-to-run noise
on this shared 2-core CPU (a --quick run gave transformer fwd x0.94). Compiled: the
generated module compiles to one graph for attention-only specs; when a spec holds an
RNN, dynamo graph-breaks around it and resumes inside the generic per-node
interpreter (`SeqModel._exec`), recompiling per node until the recompile limit
(visible as the hybrid's compiled train-step ratio). Fix: emit a straight-line
forward (as `seqdsl compile -o` does) for the compiled path, or compile the stages
between RNNs as separate graphs.
"""


CASES = [
    ("transformer LM", TRANSFORMER, TwinTransformer, lambda b, t: torch.randint(0, V, (b, t)), (8, 256)),
    ("LSTM LM", LSTM, TwinLstm, lambda b, t: torch.randint(0, V, (b, t)), (8, 128)),
    ("conv+attention+GRU hybrid", HYBRID, TwinHybrid, lambda b, t: torch.randn(b, t, 40), (8, 256)),
]


def timeit(fn, reps, warmup=2):
    for _ in range(warmup):
        fn()
    best = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t0)
    best.sort()
    return best[len(best) // 2]          # median


def measure(model, x, reps):
    model.train(False)

    def fwd():
        with torch.no_grad():
            model(x)

    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def train():
        model.train(True)
        opt.zero_grad(set_to_none=True)
        y = model(x)
        y.float().pow(2).mean().backward()
        opt.step()
        model.train(False)

    return timeit(fwd, reps), timeit(train, reps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args()
    import torch._dynamo  # noqa: F401
    rows = []
    for name, text, twin_cls, make, (b, t) in CASES:
        if a.quick:
            t = t // 2
        torch.manual_seed(0)
        gen = seqdsl.build(seqdsl.parse(text).model())
        twin = twin_cls()
        ng, nt = sum(p.numel() for p in gen.parameters()), sum(p.numel() for p in twin.parameters())
        assert ng == nt, (name, ng, nt)
        x = make(b, t)
        res = {}
        res["eager"] = (measure(gen, x, a.reps), measure(twin, x, a.reps))
        if not a.no_compile:
            torch._dynamo.reset()
            cg = seqdsl.compile_model(seqdsl.parse(text).model())
            ct = torch.compile(twin_cls())
            res["inductor"] = (measure(cg, x, max(3, a.reps // 2)), measure(ct, x, max(3, a.reps // 2)))
        for mode, ((gf, gt), (tf, tt)) in res.items():
            rows.append((name, f"B={b} T={t}", f"{ng / 1e6:.2f}M", mode, gf, tf, gt, tt))
            print(f"{name:28s} {mode:8s} fwd gen {gf * 1e3:8.2f} ms twin {tf * 1e3:8.2f} ms x{gf / tf:.3f} | "
                  f"train gen {gt * 1e3:8.2f} ms twin {tt * 1e3:8.2f} ms x{gt / tt:.3f}", flush=True)
    lines = ["# Backend speed: generated module vs hand-written twin", "",
             f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads. Median of {a.reps} runs (compiled: {max(3, a.reps // 2)}).",
             "Command: `.venv/bin/python benchmarks/backend_speed.py" + (" --quick" if a.quick else "") + "`", "",
             "| model | size | params | mode | fwd gen (ms) | fwd twin (ms) | fwd ratio | train gen (ms) | train twin (ms) | train ratio |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, size, p, mode, gf, tf, gt, tt in rows:
        lines.append(f"| {name} | {size} | {p} | {mode} | {gf * 1e3:.2f} | {tf * 1e3:.2f} | {gf / tf:.3f} | "
                     f"{gt * 1e3:.2f} | {tt * 1e3:.2f} | {gt / tt:.3f} |")
    lines.append(NOTES)
    out = Path(__file__).parent / "results" / "backend_speed.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
