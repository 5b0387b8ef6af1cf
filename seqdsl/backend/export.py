"""`seqdsl export SPEC -o FILE.pt2|FILE.onnx`: torch.export (dynamic sequence
dims) or ONNX of the built module."""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch.export import Dim
from torch.export.dynamic_shapes import refine_dynamic_shapes_from_suggested_fixes

from ..atomic import save_atomic
from ..errors import UsageError, error
from ..graph.symbolic import evaluate
from .export_lengths import EXPORT_MAX_LEN, export_lengths, learned_lengths, smallest_lengths
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


def _export(model, inputs: list, dynamic_shapes):
    """torch.export; where it refuses a dim's range, once more with the range
    it suggests (a lowering that needs T above its window, say), or else with
    the lower ends doubled, up to the example's lengths, twice at most: its
    range analysis cannot always prove what holds for every length from the
    smallest (a same-padded strided convolution's padding depends on T's
    parity). A suggestion to make a dim static is not taken: the error stands.
    Returns the program and the dims it was exported with."""
    first = None
    for _ in range(3):
        try:
            return torch.export.export(model, tuple(inputs), dynamic_shapes=dynamic_shapes), dynamic_shapes
        except torch._dynamo.exc.UserError as e:
            if "Constraints violated" not in str(e):
                raise
            first = first or e
            try:
                refined = refine_dynamic_shapes_from_suggested_fixes(e.msg, dynamic_shapes)
            except Exception:
                named = re.search(r"Constraints violated \(([^)]*)\)", str(e))
                refined = _raise_lower_ends(dynamic_shapes, inputs,
                                            {n.strip() for n in named.group(1).split(",")} if named else None)
            if refined is None or refined == dynamic_shapes or not _dims_fit(refined, inputs):
                raise first from None
            dynamic_shapes = refined
    raise first


def _ranges(dynamic_shapes) -> dict:
    return {d.__name__.removeprefix("seq_"): (d.min, d.max)
            for spec in dynamic_shapes[0] for d in (spec or {}).values()}


def _dims_fit(dynamic_shapes, inputs) -> bool:
    """Every dim still a range that holds the example's length."""
    return all(isinstance(d, Dim) and d.min <= x.shape[i] <= d.max
               for spec, x in zip(dynamic_shapes[0], inputs) for i, d in (spec or {}).items())


def _raise_lower_ends(dynamic_shapes, inputs, names=None):
    """The dims `names` (torch's message names those it refused; None: all)
    with each lower end doubled, capped at the example's length (each Dim
    once, however many inputs share it); None if none moves."""
    lengths = {}
    for spec, x in zip(dynamic_shapes[0], inputs):
        for i, d in (spec or {}).items():
            lengths[d.__name__] = min(lengths.get(d.__name__, x.shape[i]), x.shape[i])
    new, moved = {}, False
    for spec in dynamic_shapes[0]:
        for d in (spec or {}).values():
            if d.__name__ not in new:
                low = min(2 * d.min, lengths[d.__name__]) if names is None or d.__name__ in names else d.min
                moved |= low != d.min
                new[d.__name__] = Dim(d.__name__, min=low, max=d.max)
    if not moved:
        return None
    return (tuple(None if spec is None else {i: new[d.__name__] for i, d in spec.items()}
                  for spec in dynamic_shapes[0]),) + tuple(dynamic_shapes[1:])


def export_model(graph, output: str, seq: str | None = None) -> tuple[str, dict]:
    """Export via torch.export (.pt2, dynamic sequence dims) or ONNX (.onnx);
    returns the file and each sequence dim's exported range, (min, max)."""
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
    low = smallest_lengths(graph, env, top)
    for s, n in low.items():
        if env[s] < n:
            if seq:
                raise UsageError(f"--seq {s}={env[s]:,}: the exported range of {s} starts at {n:,} (every "
                                 f"length the layers derive from it must be at least 2): trace at {s}={n:,} or more")
            env[s] = n
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
        dims[s] = Dim(f"seq_{''.join(ch for ch in s if ch.isalnum()) or 'T'}", min=low[s],
                      max=top.get(s, EXPORT_MAX_LEN))
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
            ep, used = _export(model, inputs, (dynamic,))
        except Exception as e:  # torch's own message, with the spec's name on it
            raise error(f"torch.export failed for {graph.name}: {type(e).__name__}: {str(e).splitlines()[0]}") from e
        save_atomic(output, lambda tmp: torch.export.save(ep, tmp))
        return output, _ranges(used)
    try:
        program = torch.onnx.export(model, tuple(inputs), dynamo=True, dynamic_shapes=(dynamic,),
                                    verbose=False)
    except Exception as e:
        raise error(f"ONNX export failed for {graph.name}: {type(e).__name__}: {str(e).splitlines()[0]}") from e
    save_atomic(output, program.save)
    return output, _ranges((dynamic,))
