"""A measured transformers GPT-2 training step, beside tests/gpt2_small.seq.

`training_step_peak` builds GPT2LMHeadModel (random weights, dropout off,
activation "gelu_pytorch_tanh": GPT-2's tanh GELU as one fused op, which
saves what the spec's `gelu` saves) and returns the most bytes one Adam
training step holds at once — `loss = model(x, labels=x).loss; loss.backward();
opt.step()`, gradients set to None before it — measured with seqdsl's
LiveTensorTracker after a warm-up step, plus the weights, buffers, input and
Adam state resident throughout. Used by tests/test_loss.py and
benchmarks/gpt2_training_memory.py.
"""
from __future__ import annotations

from pathlib import Path

SPEC = Path(__file__).with_name("gpt2_small.seq")
FULL = {"layers": 12, "d": 768, "heads": 12, "vocab": 50257, "max_len": 1024}


def spec_text(layers: int, d: int, heads: int, vocab: int, max_len: int, loss: bool = True) -> str:
    """tests/gpt2_small.seq with other sizes (and without its loss statement)."""
    text = SPEC.read_text()
    for name, value in (("vocab", vocab), ("d", d), ("heads", heads), ("layers", layers), ("max_len", max_len)):
        old = next(line for line in text.splitlines() if line.strip().startswith(f"let {name} ="))
        text = text.replace(old, f"    let {name} = {value}")
    if not loss:
        text = text.replace("    loss cross_entropy(logits)\n", "")
    return text


def training_step_peak(layers: int, d: int, heads: int, vocab: int, max_len: int, seq: int,
                       batch: int = 1) -> int:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    from seqdsl.backend import measure

    logging.set_verbosity_error()
    config = GPT2Config(n_layer=layers, n_embd=d, n_head=heads, vocab_size=vocab, n_positions=max_len,
                        activation_function="gelu_pytorch_tanh", resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).train()
    params = list(model.parameters())
    tokens = torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(params, lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=tokens, labels=tokens).loss
        loss.backward()
        opt.step()

    step()   # the Adam moments now exist: resident, like the weights
    state = [t for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    resident = params + list(model.buffers()) + [tokens] + state
    return measure.allocation_peak(step, resident) + measure.storage_bytes(resident)
