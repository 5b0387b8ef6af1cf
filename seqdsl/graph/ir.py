"""The checked intermediate representation: plain data, viewed as a networkx DiGraph.

A `ModelGraph` holds one model after elaboration: blocks and repeats expanded,
every node a layer instance (or an `input` / residual `add`), with its
validated arguments, tensor types, source span and hierarchical name. Later
stages (cost, torch lowering, source emission) walk `ModelGraph.nodes` in
order and read; they never mutate it. `ModelGraph.graph` is the networkx
DiGraph of the same nodes and edges, built on first use: networkx costs a
quarter of a second to import, which `check` and `--estimate` need not pay.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import error, Span, suggest
from .symbolic import as_int, fmt_dim

if TYPE_CHECKING:
    import networkx as nx


@dataclass(frozen=True)
class TensorType:
    """A value's dtype and dims (ints or sympy expressions of the sequence dims)."""

    dtype: str                 # "float" | "int"
    dims: tuple                # sympy expressions, batch first, channels last

    @property
    def rank(self) -> int:
        return len(self.dims)

    @property
    def channels(self) -> int | None:
        return as_int(self.dims[-1]) if self.dims else None

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(fmt_dim(d) for d in self.dims)}]"


@dataclass(frozen=True)
class Ref:
    """A bound value named as an argument (`context=memory`)."""

    name: str
    span: Span | None = field(default=None, compare=False)
    #: the node the name stood for where it was written (a name bound in a
    #: body is one node per repeat copy, and a block argument is resolved in
    #: the caller's scope); the checker's: a node's validated args may hold
    #: the Ref of an identical copy (the graph's edges say which node it reads)
    node: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Scope:
    """One enclosing combinator or block instance of a node."""

    kind: str                  # "repeat" | "residual" | "segments" | "block"
    path: str                  # hierarchical name of the combinator instance
    span: Span | None = field(default=None, compare=False)
    index: int | None = None   # copy number inside a repeat
    args: tuple = ()           # (("length", 64), ("memory", 64)) for segments


@dataclass(frozen=True)
class Node:
    """One layer of the checked graph: its kind, arguments, inputs and output type."""

    name: str                  # hierarchical, e.g. "encoded.repeat[2].residual[0].attention"
    kind: str                  # layer kind, or "input" / "add"
    args: Any                  # the layer's validated pydantic Args, or None
    inputs: tuple              # TensorTypes: main input first, then context
    output: TensorType
    params: int
    span: Span | None = field(default=None, compare=False)
    scope: tuple = ()          # tuple[Scope, ...], outermost first
    alias: str | None = None   # `as NAME`
    sources: tuple = ()        # node names feeding `inputs`, in the same order
    #: the input (declared `lengths`) whose per-sequence lengths the output
    #: carries along axis 1, or None (docs/language.md, "Variable lengths")
    lengths: str | None = None

    @property
    def line(self) -> int | None:
        return self.span.line if self.span else None

    def segments_scope(self) -> Scope | None:
        for s in self.scope:
            if s.kind == "segments":
                return s
        return None


@dataclass
class ModelGraph:
    """One checked model: its nodes in order, inputs, outputs and parameter count."""

    name: str
    node_map: dict[str, Node]              # construction order, a topological order
    edges: list[tuple[str, str, int]]      # (source node, node, input port)
    inputs: dict[str, TensorType]          # declaration order
    outputs: dict[str, TensorType]         # `output` order
    values: dict[str, str]                 # bound value name -> producing node name
    symbols: tuple[str, ...]               # symbolic dims, first-seen order
    span: Span | None = None
    loss: Any = None                       # seqdsl.layers.loss.LossSpec of a `loss` statement, or None
    #: Diagnostics (severity "warning") of a spec that checks but likely not as
    #: meant (seqdsl.check.layout); `seqdsl check` prints them to stderr.
    warnings: list = field(default_factory=list, compare=False)
    #: the inputs declared with `lengths` (per-sequence lengths along axis 1)
    lengths: tuple = ()
    _graph: Any = field(default=None, repr=False, compare=False)

    @property
    def graph(self) -> "nx.DiGraph":
        """The networkx DiGraph: node attribute `node` (the Node), edge attribute
        `port` (which input of the consumer). Built once, on first use."""
        if self._graph is None:
            import networkx as nx   # lazy: a quarter second to import, and check/estimate never need it
            g = nx.DiGraph()
            for name, node in self.node_map.items():
                g.add_node(name, node=node)
            for src, dst, port in self.edges:
                g.add_edge(src, dst, port=port)
            self._graph = g
        return self._graph

    @property
    def nodes(self) -> list[Node]:
        """Nodes in construction order, which is a topological order."""
        return list(self.node_map.values())

    def node(self, name: str) -> Node:
        return self.node_map[name]

    @property
    def layers(self) -> list[Node]:
        return [n for n in self.nodes if n.kind not in ("input", "add")]

    @property
    def params(self) -> int:
        return sum(n.params for n in self.nodes)

    @property
    def batch_symbol(self) -> str | None:
        """The symbol used as batch: the first dim of the inputs, by convention `B`."""
        firsts = {str(t.dims[0]) for t in self.inputs.values() if t.dims and as_int(t.dims[0]) is None}
        if "B" in firsts:
            return "B"
        return next(iter(firsts)) if len(firsts) == 1 else None

    @property
    def seq_symbols(self) -> tuple[str, ...]:
        return tuple(s for s in self.symbols if s != self.batch_symbol)


@dataclass
class Program:
    """A checked .seq file: its models by name, in file order."""

    path: str
    models: dict[str, ModelGraph]

    @property
    def warnings(self) -> list:
        """Every model's warnings (Diagnostics), in file order."""
        return [w for m in self.models.values() for w in m.warnings]

    def model(self, name: str | None = None) -> ModelGraph:
        if name is None:
            if len(self.models) == 1:
                return next(iter(self.models.values()))
            raise error(f"{self.path} defines {len(self.models)} models ("
                        + ", ".join(self.models) + "); choose one",
                        help="pass --model NAME (or model=NAME)")
        if name not in self.models:
            raise error(f"no model named '{name}' in {self.path}",
                        help=suggest(name, self.models) or "models: " + ", ".join(self.models))
        return self.models[name]
