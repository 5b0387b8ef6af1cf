"""Spec texts that several test files share."""

# A two-layer GPT with a tied output head: attention, MLP, layernorm, embed and
# repeat, small enough to estimate, build and time quickly.
GPT = """# a small GPT
model gpt {
    let d = 64
    input tokens: int[B, T]
    logits = tokens
        -> embed(1000, d) as wte
        -> repeat(2) {
               residual { layernorm -> attention(4, causal=true) }
               residual { layernorm -> mlp(4 * d) }
           }
        -> layernorm
        -> linear(1000, bias=false, tie=wte)
    output logits
}
"""
