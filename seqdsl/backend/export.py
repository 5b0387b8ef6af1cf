"""`seqdsl export SPEC -o FILE.pt2|FILE.onnx`: torch.export (dynamic sequence
dims) or ONNX of the built module."""
from __future__ import annotations

from pathlib import Path

import torch
from torch.export import Dim

from ..atomic import save_atomic
from ..errors import UsageError, error
from ..graph.symbolic import evaluate
from .export_lengths import EXPORT_MAX_LEN, export_lengths, learned_lengths
from .seqmodel import SeqModel


class WithLengths(torch.nn.Module):
    """The model's forward with per-sequence lengths as positional inputs
    after its inputs (one per input declared `lengths`, in declaration
    order), for torch.export and ONNX, which trace positional tensors:
    `program(x, lengths)` returns `(outputs, output_lengths)` as
    `model(x, lengths=lengths)` does."""

    def __init__(self, model: SeqModel):
        super().__init__()
        self.model = model

    def forward(self, *args):
        k = len(self.model.input_names)
        names = self.model.lengths_inputs
        lengths = args[k] if len(names) == 1 else dict(zip(names, args[k:]))
        return self.model(*args[:k], lengths=lengths)


def example_lengths(graph, env: dict) -> list:
    """One example lengths tensor [B] per input declared `lengths`: from its
    whole axis down, each at least 1, so the trace sees different lengths."""
    out = []
    for name in graph.lengths:
        dims = graph.inputs[name].dims
        b, t = int(evaluate(dims[0], env)), int(evaluate(dims[1], env))
        out.append(torch.tensor([max(t - i, 1) for i in range(b)]))
    return out


def export_model(graph, output: str, seq: str | None = None) -> str:
    """Export via torch.export (.pt2, dynamic sequence dims) or ONNX (.onnx)."""
    suffix = Path(output).suffix
    if suffix not in (".pt2", ".onnx"):
        raise UsageError(f"-o {output}: export writes FILE.pt2 (torch.export) or FILE.onnx")
    if suffix == ".onnx":      # before building anything
        for package in ("onnx", "onnxscript"):
            try:
                __import__(package)
            except ImportError:
                raise UsageError(f"ONNX export needs the {package} package (pip install onnxscript onnx); "
                                 "or export to FILE.pt2") from None
    # a learned posenc over T has max_len positions: T's range ends there
    # (check_inputs refuses longer inputs; a wider Dim would be a violated constraint)
    top = learned_lengths(graph)
    env = export_lengths(seq, graph, top)
    model = SeqModel(graph).eval()
    inputs = []
    for t in graph.inputs.values():
        shape = [int(evaluate(d, env)) for d in t.dims]
        inputs.append(torch.randint(0, 2, shape) if t.dtype == "int" else torch.randn(shape))
    rnn = [n for n in graph.layers if n.kind in ("lstm", "gru", "rnn")]
    seg = [n for n in graph.layers if n.segments_scope() is not None]
    dims = {}
    seq_syms = set(graph.seq_symbols)
    for s in seq_syms:
        dims[s] = Dim(f"seq_{''.join(ch for ch in s if ch.isalnum()) or 'T'}", min=2, max=top.get(s, EXPORT_MAX_LEN))
    dynamic = tuple({i: dims[str(d)] for i, d in enumerate(t.dims) if str(d) in seq_syms}
                    for t in graph.inputs.values())
    if graph.lengths:
        # the lengths as inputs after the inputs (WithLengths): [B], B static as the inputs' is
        model = WithLengths(model)
        lens = example_lengths(graph, env)
        inputs += lens
        dynamic += tuple(None for _ in lens)
    if suffix == ".pt2":
        if rnn:
            n = rnn[0]
            raise error(f"cannot export {graph.name} with a dynamic sequence length: torch.export "
                        f"specialises {n.kind} '{n.name}' (line {n.line}) to the example length",
                        span=n.span, help="use seqdsl.build (or seqdsl compile -o model.py) for RNN models")
        if seg:
            n = seg[0]
            raise error(f"cannot export {graph.name}: segments (line {n.line}) loop over a data-dependent "
                        f"number of segments", span=n.span)
        try:
            ep = torch.export.export(model, tuple(inputs), dynamic_shapes=(dynamic,))
        except Exception as e:  # torch's own message, with the spec's name on it
            raise error(f"torch.export failed for {graph.name}: {type(e).__name__}: {str(e).splitlines()[0]}") from e
        save_atomic(output, lambda tmp: torch.export.save(ep, tmp))
        return output
    try:
        program = torch.onnx.export(model, tuple(inputs), dynamo=True, dynamic_shapes=(dynamic,),
                                    verbose=False)
    except Exception as e:
        raise error(f"ONNX export failed for {graph.name}: {type(e).__name__}: {str(e).splitlines()[0]}") from e
    save_atomic(output, program.save)
    return output
