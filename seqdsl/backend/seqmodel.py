"""ModelGraph -> nn.Module.

The module holds one submodule per layer node in nested nn.ModuleDicts keyed by
the node's hierarchical name, so `logits.repeat[0].residual[0].attention.q.weight`
is a state_dict key. forward walks the graph's nodes in construction order (a
topological order); nodes under a `segments` scope run segment by segment
(Transformer-XL recurrence, docs/lowering.md); each copy of an outermost
`repeat` is a `Block`, called as one module in training forwards (FSDP2 and
activation checkpointing act per block: seqdsl.backend.distributed). `CompiledSeqModel` runs the same
plan with the stretches between RNN calls compiled as separate graphs.
"""
from __future__ import annotations

import operator
import types as pytypes
from pathlib import Path

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import SpecError, error, suggest
from ..check.elaborate import load
from ..graph.ir import ModelGraph, Program, TensorType
from ..graph.lengths import length_fn
from ..layers import LAYERS
from ..layers.loss_torch import compute_loss
from ..layers.torch_modules import Scope, check_inputs, check_lengths, zero_padded
from .checks import input_checks
from .lengths import lengths_plan
from .step_lengths import carry_rows, check_step_lengths, freeze_rows, pieces, refuse_step_lengths
from .tp import tp_layout


def _seg_path(node):
    s = node.segments_scope()
    return s.path if s is not None else None


def _unit_path(node):
    """The outermost `repeat` copy holding node (its scope path, e.g.
    `logits.repeat[0]`), or None; None too when a `segments` scope encloses
    that copy (the segments loop runs across copies, so one cannot run alone)."""
    for s in node.scope:
        if s.kind == "segments":
            return None
        if s.kind == "repeat":
            return s.path
    return None


class Block(Scope):
    """The modules of one copy of an outermost `repeat` (a pipeline unit of
    seqdsl.cost.parallel), called as one module in training and inference
    forwards: `block(run, *inputs)` runs that copy's nodes. So per-block
    module hooks fire once per copy: FSDP2's `fully_shard(block)` gathers its
    parameters for that call, and `recompute = True` runs it under activation
    checkpointing (only the inputs are kept; the body runs again in backward).
    seqdsl.backend.distributed applies both."""

    recompute = False

    def forward(self, run, *inputs):
        if self.recompute and torch.is_grad_enabled():
            return checkpoint(run, *inputs, use_reentrant=False)
        return run(*inputs)


class SeqModel(nn.Module):
    def __init__(self, graph: ModelGraph):
        super().__init__()
        self.spec_name = graph.name
        self.input_names = list(graph.inputs)
        self.output_names = list(graph.outputs)
        self._graph = graph
        # Scope: any spec name is a key, `eval` and `training` included
        self.layers = Scope()
        tied: dict[str, nn.Module] = {}
        plan = []            # (kind, name, sources, segments path)
        seg_args = {}
        self._unit_paths = {_unit_path(n) for n in graph.nodes if n.kind not in ("input", "add")} - {None}
        self._scales = {n.name: n.args.scale for n in graph.nodes if n.kind == "add" and n.args is not None}
        for node in graph.nodes:
            if node.kind in ("input", "add"):
                plan.append((node.kind, node.name, node.sources, _seg_path(node)))
                continue
            seg = node.segments_scope()
            memory = None
            if seg is not None:
                args = dict(seg.args)
                seg_args[seg.path] = (int(args["length"]), int(args.get("memory", 0)))
                memory = seg_args[seg.path][1]
            rule = LAYERS[node.kind]
            module = rule.lower(node, {"tied": tied, "memory": memory})
            if node.alias is not None:
                tied[node.alias] = module
            self._put(node.name, module)
            plan.append(("layer", node.name, node.sources, _seg_path(node)))
        self._plan = plan
        self._seg_args = seg_args
        self._out_nodes = [graph.values[o] for o in graph.outputs]
        # which values are consumed outside their segments group
        consumers: dict[str, set] = {}
        for kind, name, sources, seg in plan:
            for s in sources:
                consumers.setdefault(s, set()).add(seg)
        for o in self._out_nodes:
            consumers.setdefault(o, set()).add(None)
        self._consumers = consumers
        self._mods = {name: self._get(name) for kind, name, _, _ in plan if kind == "layer"}
        # Free each value after its last use, as a hand-written forward's locals
        # go out of scope: the inference peak is the live set the estimate counts.
        # A segments group reads its sources until the group ends.
        group_end = {}
        for i, (_, _, _, seg) in enumerate(plan):
            if seg is not None:
                group_end[seg] = i
        last: dict[str, int] = {}
        for i, (_, _, sources, seg) in enumerate(plan):
            for src in sources:
                last[src] = group_end[seg] if seg is not None else i
        keep = set(self._out_nodes)
        # value -> index in the plan of its last read (outputs are never freed);
        # the compiled path frees by it too (plan_stages)
        self._last_use = {name: i for name, i in last.items() if name not in keep}
        frees: dict[int, list[str]] = {}
        for name, i in self._last_use.items():
            frees.setdefault(i, []).append(name)
        self._frees = {i: tuple(names) for i, names in frees.items()}
        # what check_inputs holds forward's, init_state's and step's tensors to
        self.input_specs, self.position_limits = input_checks(graph)
        # per-sequence lengths (forward's lengths=): each value's, from its input's; each module's
        self.lengths_inputs = graph.lengths
        values, self._len_calls = lengths_plan(graph)
        fns = {tree: length_fn(tree) for _, tree in values.values()}
        self._len_values = {name: (origin, tree, fns[tree]) for name, (origin, tree) in values.items()}
        # each outermost repeat copy with layers: (Block path, first plan index, end, inputs, outputs)
        spans: dict[str, list[int]] = {}
        for i, node in enumerate(graph.nodes):
            u = _unit_path(node)
            if u is not None and u in self._unit_paths:
                spans.setdefault(u, []).append(i)
        self._units = {}
        for u, idx in spans.items():
            lo, hi = idx[0], idx[-1] + 1
            inside = [plan[k][1] for k in range(lo, hi)]
            ins = dict.fromkeys(s for k in range(lo, hi) for s in plan[k][2] if s not in inside)
            later = {s for k in range(hi, len(plan)) for s in plan[k][2]} | set(self._out_nodes)
            self._units[lo] = (u, hi, tuple(ins), tuple(n for n in inside if n in later))

    # ---------------------------------------------------------------- naming
    @staticmethod
    def _parts(name: str):
        return name.split(".")

    def _put(self, name, module):
        d = self.layers
        parts = self._parts(name)
        for k, p in enumerate(parts[:-1]):
            if p not in d:
                d[p] = Block() if ".".join(parts[:k + 1]) in self._unit_paths else Scope()
            d = d[p]
        d[parts[-1]] = module

    def blocks(self) -> list[Block]:
        """The Block of each outermost `repeat` copy, in order (the units FSDP2
        wraps and activation checkpointing recomputes)."""
        return [self._get(u) for u, *_ in self._units.values()]

    def tp_plan(self) -> dict:
        """{module path pattern: ColwiseParallel | RowwiseParallel} for
        torch.distributed.tensor.parallel.parallelize_module, from the layer
        kinds (seqdsl.backend.tp.tp_layout says which layers stay replicated
        and why; distributed.apply_tp also sets each split layer's local heads)."""
        return tp_layout(self).plan

    def _get(self, name):
        d = self.layers
        for p in self._parts(name):
            d = d[p]
        return d

    def named_layer(self, name: str) -> nn.Module:
        """The module of the layer node `name` (`logits.repeat[0].residual.attention`)."""
        if name not in self._mods:
            hint = suggest(str(name), self._mods) or f"layers: {', '.join(list(self._mods)[:8])}, ..."
            raise KeyError(f"{self.spec_name} has no layer {name!r}; {hint}")
        return self._mods[name]

    def state_dict(self, *args, **kwargs):
        # keys read like the spec: drop the container prefix "layers."
        sd = super().state_dict(*args, **kwargs)
        return type(sd)((k[len("layers."):] if k.startswith("layers.") else k, v) for k, v in sd.items())

    def load_state_dict(self, state_dict, strict=True, assign=False):
        # every key is under "layers." (state_dict drops it): a value named
        # `layers` has keys that start with "layers." too
        sd = {"layers." + k: v for k, v in state_dict.items()}
        return super().load_state_dict(sd, strict=strict, assign=assign)

    # ---------------------------------------------------------------- run
    def _run(self, env, states, skip=frozenset(), seg_stream=None, lens=None):
        self._run_range(env, states, 0, len(self._plan), skip, blocks=states is None and self._calls_blocks(),
                        lens=lens)
        outs = tuple(env[o] for o in self._out_nodes)
        return outs[0] if len(outs) == 1 else outs

    def _calls_blocks(self) -> bool:
        """Training forwards call each repeat copy's Block; inference forwards
        only when hooks wait on one (FSDP2's gather): the call holds the copy's
        inputs to its end, where running layer by layer frees them at their
        last read (the inference live set the estimate counts)."""
        if torch.is_grad_enabled():
            return True
        return any(b._forward_pre_hooks or b._forward_hooks for b in self.blocks())

    def _run_block(self, env, lo, lens=None) -> int:
        """Run the repeat copy starting at plan index lo through its Block; the end index."""
        path, hi, ins, outs = self._units[lo]

        def run(*xs):
            sub = dict(zip(ins, xs))
            self._run_range(sub, None, lo, hi, blocks=False, lens=lens)
            return tuple(sub[o] for o in outs)

        ys = self._get(path)(run, *(env[s] for s in ins))
        env.update(zip(outs, ys))
        for k in range(lo, hi):
            self._free(env, k)
        return hi

    def _run_range(self, env, states, lo, hi, skip=frozenset(), blocks=False, lens=None):
        plan = self._plan
        i = lo
        while i < hi:
            kind, name, sources, seg = plan[i]
            if name in skip or kind == "input":
                i += 1
                continue
            if blocks and i in self._units:
                i = self._run_block(env, i, lens)
                continue
            if seg is not None:
                j = i
                while j < len(plan) and plan[j][3] == seg:
                    j += 1
                self._run_segments(env, states, plan[i:j], seg, lens)
                self._free(env, j - 1)
                i = j
                continue
            self._exec(env, states, kind, name, sources, lens=lens)
            self._free(env, i)
            i += 1

    def _add(self, name, x, y):
        """A residual's add: x + y, or x + scale · y in one kernel (`residual(scale=...)`)."""
        scale = self._scales.get(name)
        return x + y if scale is None else torch.add(x, y, alpha=scale)

    def _free(self, env, i) -> None:
        for name in self._frees.get(i, ()):
            env.pop(name, None)

    def _exec(self, env, states, kind, name, sources, x_override=None, lens=None):
        if kind == "add":
            env[name] = self._add(name, env[sources[0]], env[sources[1]])
            return
        args = [env[s] for s in sources]
        mod = self._mods[name]
        if lens is not None and name in self._len_calls:
            env[name] = mod(*args, **{key: lens[src] for key, src in self._len_calls[name]})
            return
        st = None if states is None else states.setdefault(name, {})
        if st is not None or getattr(mod, "memory", None) is not None:
            if st is None:
                st = {}
            try:
                env[name] = mod(*args, state=st)
            except TypeError:
                env[name] = mod(*args)
        else:
            env[name] = mod(*args)

    def _run_segments(self, env, states, group, seg, lens=None):
        """Run a segments group piece by piece: each piece ends at a segment
        boundary or the end of the input; a layer with memory closes its segment
        (`end_segment`) at every boundary. An empty streaming chunk (a strided
        conv upstream is mid-stride) runs once as an empty piece. Only the body's
        pipeline input is the piece: a name read by an argument (a
        cross_attention's `context=`) is the whole value, even the one the group
        is entered with (docs/language.md, `segments`). With per-sequence
        lengths (`lens`), the modules that take lengths get each piece's own:
        a sequence's valid steps in the piece (the body keeps the time axis,
        so one count serves every value in it); a value read whole, its own."""
        length, memory = self._seg_args[seg]
        names = {g[1] for g in group}
        entry = next(s for s in group[0][2] if s not in names)
        exported = [g[1] for g in group if self._consumers.get(g[1], set()) - {seg}]
        x = env[entry]
        t = x.shape[1]
        streaming = states is not None
        gstate = states.setdefault(seg, {"pos": 0}) if streaming else {"pos": 0}
        layer_states = states if streaming else {}
        pieces = {n: [] for n in exported}
        start = 0
        while start < t or (start == 0 and t == 0):
            pos = gstate["pos"]
            n = min(length - pos % length, t - start)
            sub = args = None          # the last piece's values go before this one is cut
            # A fresh copy per piece when there are several: the q/k/v linears
            # would each copy a strided slice, and a contiguous slice would keep
            # the whole input alive for backward.
            piece = x[:, start:start + n]
            piece = piece.clone(memory_format=torch.contiguous_format) if n < t else piece
            # The body's values for this piece; its pipeline input is the piece
            # itself (every stage's first source, and both of a residual's add).
            sub = {entry: piece}
            piece_lens = None if lens is None or entry not in lens else (lens[entry] - start).clamp(0, n)
            for kind, name, sources, _ in group:
                if kind == "add":
                    sub[name] = self._add(name, sub[sources[0]], sub[sources[1]])
                    continue
                mod = self._mods[name]
                args = [sub[sources[0]]] + [sub[s] if s in names else env[s] for s in sources[1:]]
                kw = {} if lens is None else {key: piece_lens if src in names or src == entry else lens[src]
                                              for key, src in self._len_calls.get(name, ())}
                if getattr(mod, "memory", None) is not None:
                    sub[name] = mod(*args, state=layer_states.setdefault(name, {}), **kw)
                elif kw:
                    sub[name] = mod(*args, **kw)
                elif streaming:
                    try:
                        sub[name] = mod(*args, state=layer_states.setdefault(name, {}))
                    except TypeError:
                        sub[name] = mod(*args)
                else:
                    sub[name] = mod(*args)
            gstate["pos"] = pos + n
            if n and gstate["pos"] % length == 0:
                for kind, name, _, _ in group:
                    mod = self._mods.get(name)
                    if getattr(mod, "memory", None) is not None:
                        mod.end_segment(layer_states.setdefault(name, {}))
            for e in exported:
                pieces[e].append(sub[e])
            start += max(n, 1)
        sub = piece = args = None      # only the pieces' outputs are left for the concatenation
        for e in exported:
            env[e] = torch.cat(pieces[e], dim=1)

    def forward(self, *inputs, lengths=None):
        """The outputs; with `lengths=` (the inputs declared `lengths`: a
        tensor [B], or a dict {input: tensor} for several), `(outputs,
        output_lengths)`: the outputs with every position at or past a
        sequence's length zeroed, and each output's lengths (None for an
        output without a time axis), one tensor or a tuple as the outputs."""
        if len(inputs) != len(self.input_names):
            raise TypeError(f"{self.spec_name} takes {len(self.input_names)} inputs "
                            f"({', '.join(self.input_names)}), got {len(inputs)}")
        check_inputs(self, zip(self.input_names, inputs))
        env = dict(zip(self.input_names, inputs))
        if lengths is None:
            return self._run(env, None)
        lens = self._lengths(check_lengths(self, lengths, env))
        outs = self._run(env, None, lens=lens)
        return self._with_lengths(outs if len(self._out_nodes) > 1 else (outs,), lens)

    def _with_lengths(self, outs: tuple, lens: dict):
        """(outputs, output_lengths), the outputs' padded positions zeroed."""
        out_lens = tuple(lens.get(o) for o in self._out_nodes)
        outs = tuple(y if n is None else zero_padded(y, n) for y, n in zip(outs, out_lens))
        return (outs, out_lens) if len(outs) > 1 else (outs[0], out_lens[0])

    def _lengths(self, given: dict) -> dict:
        """Every value's per-sequence lengths from the inputs' (each distinct
        formula computed once)."""
        done, lens = {}, {}
        for name, (origin, tree, fn) in self._len_values.items():
            if (origin, tree) not in done:
                done[origin, tree] = fn(given[origin])
            lens[name] = done[origin, tree]
        return lens

    def loss(self, outputs, targets, target_lengths=None, output_lengths=None) -> torch.Tensor:
        """The spec's declared loss (`loss KIND(OUTPUT)`) of forward's `outputs`
        against `targets` (seqdsl.layers.loss_torch.compute_loss says what each
        kind takes); `output_lengths`: the loss's output's lengths from
        forward(..., lengths=), so only valid positions count. A spec without a
        `loss` statement has none to compute."""
        spec = self._graph.loss
        if spec is None:
            raise ValueError(f"{self.spec_name} declares no loss: add a statement such as "
                             f"`loss cross_entropy({self.output_names[0]})` to the model")
        outs = outputs if isinstance(outputs, tuple) else (outputs,)
        return compute_loss(spec, outs[self.output_names.index(spec.output)], targets, target_lengths,
                            output_lengths)

    # ---------------------------------------------------------------- streaming
    def _static_nodes(self, context_names):
        """Nodes computed from context inputs only: run once at init_state."""
        static = set(context_names)
        for kind, name, sources, _ in self._plan:
            if kind != "input" and sources and all(s in static for s in sources):
                static.add(name)
        return static

    def check_streamable(self, context_names=()):
        static = self._static_nodes(context_names)
        sources = {name: srcs for _, name, srcs, _ in self._plan}
        for node in self._graph.nodes:
            if node.kind == "input" or node.name in static:
                continue
            aligned = node.kind == "add" or LAYERS[node.kind].aligned_context
            whole = [s for s in sources.get(node.name, ()) if s in static]
            if aligned and whole:
                # add, mul, concat read both values position by position: a chunk
                # cannot meet a value computed whole from the context inputs
                raise error(f"{self.spec_name} cannot stream: '{node.name}' ({node.kind}) at line {node.line} "
                            f"combines a streamed value with '{whole[0]}', computed once from the context inputs",
                            span=node.span, help="stream every input the combined values come from")
            if node.kind == "add":
                continue
            rule = LAYERS[node.kind]
            streamed = [s for s in sources.get(node.name, ())[1:] if s not in static]
            if rule.context_args() and streamed and not rule.aligned_context:
                # a context read whole by every step cannot arrive in chunks
                raise error(f"{self.spec_name} cannot stream: layer '{node.name}' ({node.kind}) at line "
                            f"{node.line} reads its context from a streamed input",
                            span=node.span,
                            help="give the context's inputs to init_state(...) once, and stream the others")
            ok = rule.is_causal(node.args, list(node.inputs))
            if node.kind == "batchnorm" and self.training:
                ok = False
            if not ok:
                raise error(f"{self.spec_name} cannot stream: layer '{node.name}' ({node.kind}) "
                            f"at line {node.line} looks ahead (it is not causal)",
                            span=node.span,
                            help="make every layer causal (attention causal=true, conv padding=causal, "
                                 "unidirectional RNNs) to use step()")

    def init_state(self, batch_size: int, **context_inputs):
        try:
            if isinstance(batch_size, bool):
                raise TypeError
            batch_size = operator.index(batch_size)        # an int, or numpy's
        except TypeError:
            raise TypeError(f"init_state: batch_size must be an int, not {type(batch_size).__name__} "
                            f"{batch_size!r}") from None
        if batch_size < 1:
            raise ValueError(f"init_state: batch_size must be positive, got {batch_size}")
        missing = [c for c in context_inputs if c not in self.input_names]
        if missing:
            raise TypeError(f"unknown context input(s) {missing}; inputs: {self.input_names}")
        b = self._graph.batch_symbol
        check_inputs(self, context_inputs.items(), {b: batch_size} if b else {})
        self.check_streamable(tuple(context_inputs))
        static = self._static_nodes(tuple(context_inputs))
        env = dict(context_inputs)
        for kind, name, sources, seg in self._plan:
            if name in static and kind != "input" and name not in context_inputs:
                self._exec(env, None, kind, name, sources)
        # keep what the streamed layers read (an encoder's output), not every
        # intermediate of the context's layers: the state the estimate counts
        read = {s for kind, name, sources, _ in self._plan if name not in static for s in sources}
        env = {k: v for k, v in env.items() if k in context_inputs or k in read}
        return {"__static__": env, "__skip__": frozenset(static),
                "__stream_inputs__": [n for n in self.input_names if n not in context_inputs],
                "__batch__": batch_size}

    def step(self, *chunks, state, final=False, lengths=None):
        """Run the next chunk of each streamed input (B, n, ...) and return the
        outputs for it and the state. final=True: these are the stream's last
        chunks, so a layer that holds frames back until it has a whole segment
        and its lookahead (emformer) runs what it holds as a last, shorter
        segment; its outputs lag its inputs until then (docs/lowering.md).
        lengths= (an integer tensor [B], one streamed input): each sequence's
        valid steps in this chunk, for streams that end at different steps;
        then it returns ((outputs, output_lengths), state) as forward does,
        a sequence's state is carried unchanged past its valid steps and its
        outputs there are 0 (seqdsl.backend.step_lengths)."""
        if not isinstance(state, dict) or "__stream_inputs__" not in state:
            got = "a dict without its keys" if isinstance(state, dict) else type(state).__name__
            raise TypeError(f"step: state must be the dict init_state returned "
                            f"(state = model.init_state(batch_size)), got {got}")
        names = state["__stream_inputs__"]
        if not set(names) <= set(self.input_names) or not set(state["__static__"]) >= (
                set(self.input_names) - set(names)):
            raise TypeError(f"step: this state streams {names}, but {self.spec_name}'s inputs are "
                            f"{self.input_names}: pass the state this model's init_state returned")
        if len(chunks) != len(names):
            raise TypeError(f"step takes {len(names)} chunk(s) ({', '.join(names)}), got {len(chunks)}")
        b = self._graph.batch_symbol
        offsets = {layer: state.get(layer, {}).get("pos", 0) for layer, *_ in self.position_limits}
        check_inputs(self, zip(names, chunks), {b: state["__batch__"]} if b else {}, offsets)
        env = dict(state["__static__"])
        env.update(zip(names, chunks))
        skip = state.get("__skip__", frozenset(state["__static__"]))
        for name, mod in self._mods.items():
            if getattr(mod, "holds_frames", False) and name not in skip:
                state.setdefault(name, {})["final"] = bool(final)
        if lengths is None:
            return self._run(env, state, skip=skip), state
        if len(names) != 1:
            raise TypeError(f"{self.spec_name}: step(lengths=...) takes one streamed input, but the state streams "
                            f"{names}: give the others to init_state, or stream without lengths=")
        refuse_step_lengths(self, skip)
        return self._step_lengths(env, state, skip, names[0], check_step_lengths(self, lengths, chunks[0].shape[1],
                                                                                 state)), state

    def _step_lengths(self, env, state, skip, name, counts):
        """step over one chunk with each sequence's valid steps `counts`: the
        chunk runs piece by piece (cut where some sequence's steps end), each
        sequence's state rows carried past its padded pieces."""
        chunk = env[name]
        layers = [n for n in self._mods if n not in skip]
        # each layer's state layout: the batch axis (torch's RNNs keep (layers, B, H): state_batch_dim = 1)
        # and the initial values that are not 0 (mlstm's stabiliser starts at -inf: state_initial)
        batch_dims = {n: getattr(self._mods[n], "state_batch_dim", 0) for n in layers}
        initial = {n: getattr(self._mods[n], "state_initial", {}) for n in layers}
        # the rows of the streams that have ended, kept where each ended (step_lengths.freeze_rows)
        frozen = state.setdefault("__frozen__", {})
        ended = state.get("__ended__")
        ended = torch.zeros_like(counts, dtype=torch.bool) if ended is None else ended
        outs, valid = [], []
        for lo, hi in pieces(counts, chunk.shape[1]):
            ok = counts >= hi if hi > 0 else ~ended       # valid throughout the piece (an empty chunk: the live)
            ending = ~ok & ~ended
            if bool(ending.any()):
                freeze_rows(state, frozen, ending, batch_dims, initial)
                ended = ended | ending
            env[name] = chunk[:, lo:hi]
            y = self._run(dict(env), state, skip=skip)
            if not bool(ok.all()):
                carry_rows(state, frozen, ~ok, batch_dims, initial)
            outs.append(y if len(self._out_nodes) > 1 else (y,))
            valid.append(ok)
        state["__ended__"] = ended
        ys, ns = [], []
        for k in range(len(self._out_nodes)):
            parts = [o[k] for o in outs]
            ok = [v.to(p.device).view(-1, *[1] * (p.dim() - 1)) for v, p in zip(valid, parts)]
            ys.append(torch.cat([p.masked_fill(~m, 0) for p, m in zip(parts, ok)], 1))
            ns.append(sum(v.long() * p.shape[1] for v, p in zip(valid, parts)).to(ys[-1].device))
        return (ys[0], ns[0]) if len(ys) == 1 else (tuple(ys), tuple(ns))


def _graph_of(program_or_path, model=None) -> ModelGraph:
    if isinstance(program_or_path, ModelGraph):
        return program_or_path
    if isinstance(program_or_path, (str, Path)):
        program_or_path = load(str(program_or_path))
    if isinstance(program_or_path, Program):
        return program_or_path.model(model)
    raise TypeError(f"build() takes a path, a Program or a ModelGraph, not {type(program_or_path).__name__}")


def _dynamic_dims(ttype: TensorType, seq_symbols: set) -> list[int]:
    """Axes of a value whose symbolic size involves a sequence symbol (T, S, ceil(T/2), ...)."""
    return [i for i, d in enumerate(ttype.dims)
            if getattr(d, "free_symbols", None) and {str(s) for s in d.free_symbols} & seq_symbols]


_RNN_KINDS = ("lstm", "gru", "rnn")
# Kinds that eager PyTorch runs as one kernel (a GEMM, a convolution, a gather,
# a norm, one element-wise op) or a few that inductor on the CPU does not fuse
# further (the GEMM stays an extern call): a stage made of these alone gains
# nothing from torch.compile but its compile time (an LSTM LM's embed and
# head: 14.4 s first call against 1.0 s, benchmarks/compile_stages.py), so
# it runs eagerly. "add" is a residual's sum.
_ONE_KERNEL_KINDS = frozenset({"embed", "linear", "conv1d", "conv2d", "conv3d", "dropout", "layernorm",
                               "batchnorm", "relu", "gelu", "silu", "tanh", "sigmoid", "unsqueeze", "flatten",
                               "time_mean", "time_last", "time_first", "spatial_mean", "spatial_max", "add"})


class _Stage:
    """One step of the compiled forward: a run of nodes between RNN calls compiled
    as one graph (`compiled`), or a node group run eagerly (`rnn`: dynamo breaks
    the graph around nn.LSTM/GRU/RNN; `segments`: a loop over a data-dependent
    number of segments with growing memory, which would recompile per length).

    A run made only of one-kernel layers (`_ONE_KERNEL_KINDS`) is `eager`:
    there is nothing for the compiler to fuse.

    Each compiled stage traces `_run_nodes` through its own copy of that
    function's code object: dynamo keeps its cache and recompile limit per code
    object, so stages sharing one would evict each other's graphs.
    """

    def __init__(self, model: "SeqModel", mode: str, entries, needs, gives, frees, types, seq, **compile_kw):
        self.model, self.mode, self.entries = model, mode, entries
        self.needs, self.gives = tuple(needs), tuple(gives)
        self.frees = tuple(frees)          # values last read here: dropped after the stage
        self.dynamic = [_dynamic_dims(types[n], seq) for n in self.needs]
        # the per-sequence lengths its modules take (forward(..., lengths=)), passed after the values
        self.len_needs = tuple(dict.fromkeys(src for _, name, _, _ in entries
                                             for _, src in model._len_calls.get(name, ())))
        self.compiled = None
        if mode == "compiled":
            code = _Stage._run_nodes.__code__.replace()          # a distinct code object
            fn = pytypes.FunctionType(code, _Stage._run_nodes.__globals__, "_run_nodes")
            self.compiled = torch.compile(pytypes.MethodType(fn, self), dynamic=None, **compile_kw)

    def _run_nodes(self, *xs):
        env = dict(zip(self.needs, xs))
        lens = dict(zip(self.len_needs, xs[len(self.needs):]))
        for kind, name, sources, _ in self.entries:
            if kind == "add":
                env[name] = self.model._add(name, env[sources[0]], env[sources[1]])
            else:
                kw = {key: lens[src] for key, src in self.model._len_calls.get(name, ()) if lens[src] is not None}
                env[name] = self.model._mods[name](*[env[s] for s in sources], **kw)
        return tuple(env[n] for n in self.gives)

    def __call__(self, env, lens=None):
        import torch._dynamo   # lazy: torch
        extra = [None if lens is None else lens[s] for s in self.len_needs]
        if self.mode == "segments":
            self.model._run_segments(env, None, self.entries, self.entries[0][3], lens)
        elif self.mode == "rnn":
            kind, name, sources, _ = self.entries[0]
            self.model._exec(env, None, kind, name, sources, lens=lens)
        elif self.mode == "eager":
            env.update(zip(self.gives, self._run_nodes(*[env[n] for n in self.needs], *extra)))
        else:
            # the caller's own tensors are marked through a view: the mark stays off them
            # (another compiled model fed the same tensor would compile dynamic too)
            inputs = self.model.input_names
            xs = [env[n].view_as(env[n]) if n in inputs else env[n] for n in self.needs]
            for x, dims in zip(xs, self.dynamic):
                for i in dims:
                    torch._dynamo.maybe_mark_dynamic(x, i)
            env.update(zip(self.gives, self.compiled(*xs, *extra)))
            del xs
        for name in self.frees:
            env.pop(name, None)


def plan_stages(model: "SeqModel", compile_every_stage: bool = False, **compile_kw) -> list[_Stage]:
    """Split the model's plan into compiled runs, RNN calls and segments
    groups; a run of one-kernel layers only runs eagerly unless
    `compile_every_stage` (for benchmarks/compile_stages.py's comparison)."""
    graph = model._graph
    types = {n.name: n.output for n in graph.nodes}
    seq = set(graph.seq_symbols)
    groups: list[tuple[str, list, int]] = []     # (mode, entries, plan index of the last entry)
    for index, entry in enumerate(model._plan):
        kind, name, _, seg = entry
        if kind == "input":
            continue
        mode = ("segments" if seg is not None else
                "rnn" if kind == "layer" and graph.node(name).kind in _RNN_KINDS else "compiled")
        last = groups[-1] if groups else None
        if last and last[0] == mode and mode != "rnn" and (mode == "compiled" or last[1][0][3] == seg):
            last[1].append(entry)
            groups[-1] = (mode, last[1], index)
        else:
            groups.append((mode, [entry], index))
    # The eager forward's liveness (SeqModel._last_use), read per stage: a value
    # made here leaves the stage if it is read after it or is an output; an
    # input of the stage is dropped after it unless it is read later.
    last_use, outputs = model._last_use, set(model._out_nodes)
    stages = []
    for mode, entries, end in groups:
        if mode == "compiled" and not compile_every_stage and all(
                kind == "add" or graph.node(name).kind in _ONE_KERNEL_KINDS for kind, name, _, _ in entries):
            mode = "eager"
        made = {e[1] for e in entries}
        needs = list(dict.fromkeys(s for e in entries for s in e[2] if s not in made))
        gives = [e[1] for e in entries if e[1] in outputs or last_use.get(e[1], -1) > end]
        frees = [n for n in needs if n not in outputs and last_use.get(n, -1) <= end]
        stages.append(_Stage(model, mode, entries, needs, gives, frees, types, seq, **compile_kw))
    return stages


class CompiledSeqModel(nn.Module):
    """torch.compile for a SeqModel, stage by stage (see `_Stage`): the nodes
    between RNN calls compile to one graph each, with the sequence dims of
    every stage input marked dynamic so one compile serves all lengths; the
    RNNs (cuDNN/oneDNN kernels) and segments loops run eagerly in between, and
    so do runs of one-kernel layers (an embed, a head), which compiling would
    only slow down. Without RNNs or segments the whole model is one compiled
    stage (or, if it is all one-kernel layers, none).
    """

    def __init__(self, model: SeqModel, backend="inductor", fullgraph=False, compile_every_stage=False, **kw):
        super().__init__()
        self.model = model
        self.__dict__["_stages"] = plan_stages(model, compile_every_stage, backend=backend, fullgraph=fullgraph,
                                               **kw)

    def forward(self, *inputs, lengths=None):
        m = self.model
        if len(inputs) != len(m.input_names):
            raise TypeError(f"{m.spec_name} takes {len(m.input_names)} inputs "
                            f"({', '.join(m.input_names)}), got {len(inputs)}")
        check_inputs(m, zip(m.input_names, inputs))
        env = dict(zip(m.input_names, inputs))
        lens = None if lengths is None else m._lengths(check_lengths(m, lengths, env))
        for stage in self._stages:
            stage(env, lens)
        outs = tuple(env[o] for o in m._out_nodes)
        if lens is not None:
            return m._with_lengths(outs, lens)
        return outs[0] if len(outs) == 1 else outs

    @property
    def stage_modes(self) -> list[str]:
        """How each stage runs ("compiled", "eager", "rnn", "segments"), for tests and docs."""
        return [s.mode for s in self._stages]

    def loss(self, *a, **k):
        return self.model.loss(*a, **k)

    def init_state(self, *a, **k):
        return self.model.init_state(*a, **k)

    def step(self, *a, **k):
        return self.model.step(*a, **k)

    def state_dict(self, *a, **k):
        return self.model.state_dict(*a, **k)

    def load_state_dict(self, *a, **k):
        return self.model.load_state_dict(*a, **k)


def _check_build_args(model, compile, device, dtype, backend, fullgraph, seed) -> None:
    """build()'s options, checked before anything is loaded or allocated."""
    if model is not None and not isinstance(model, str):
        raise TypeError(f"build(model=...) is a model's name (a str), not {type(model).__name__}")
    for flag, value in (("compile", compile), ("fullgraph", fullgraph)):
        if not isinstance(value, bool):
            raise TypeError(f"build({flag}=...) must be True or False, not {value!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"build(seed=...) must be an int, not {type(seed).__name__} {seed!r}")
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(f"build(dtype=...) must be a torch.dtype (torch.float32), not {dtype!r}")
    if dtype is not None and not dtype.is_floating_point:
        raise ValueError(f"build(dtype={dtype}): parameters need a floating-point dtype")
    if device is not None:
        try:
            torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"build(device={device!r}) is not a device: {str(e).splitlines()[0]}") from None
    if not isinstance(backend, str) and not callable(backend):
        raise TypeError(f"build(backend=...) must be a torch.compile backend name or callable, not {backend!r}")


def build(program_or_path, model=None, *, compile=False, device=None, dtype=None,
          backend="inductor", fullgraph=False, seed=None):
    """The spec's model as an nn.Module (eager `SeqModel`), or with compile=True a
    `CompiledSeqModel` (torch.compile stage by stage, dynamic sequence dims)."""
    _check_build_args(model, compile, device, dtype, backend, fullgraph, seed)
    graph = _graph_of(program_or_path, model)
    if seed is not None:
        torch.manual_seed(seed)
    m = SeqModel(graph)
    if device is not None or dtype is not None:
        m = m.to(device=device, dtype=dtype)
    if compile:
        return CompiledSeqModel(m, backend=backend, fullgraph=fullgraph)
    return m


def compile_model(program_or_path, model=None, **kw):
    """`build(..., compile=True)`."""
    kw.setdefault("compile", True)
    return build(program_or_path, model, **kw)


__all__ = ["SeqModel", "build", "compile_model", "SpecError"]
