"""The package's import rules (docs/architecture.md), read from the source.

* Dependencies between the parts of seqdsl point one way, as ALLOWED says;
  a new edge fails here until the table (and the architecture page) says why.
* No import cycle between modules, counting imports inside functions too.
* An import inside a function is only for a heavy optional package (torch,
  matplotlib, onnx, ...) or a seqdsl module that loads one, and says so in a
  comment on its line.
* Nothing on the check/estimate path imports torch (see also
  test_backend_build.test_check_and_estimate_do_not_import_torch).
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "seqdsl"

# part -> the parts it may import. A part is a sub-package or a top-level module.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "limits": set(),
    "atomic": {"errors"},
    "units": set(),
    "lang": {"errors", "limits"},
    "graph": {"errors", "limits"},
    "layers": {"graph", "errors", "limits"},
    "check": {"lang", "graph", "layers", "errors", "limits"},
    "cost": {"check", "layers", "graph", "errors", "limits"},
    "backend": {"cost", "check", "layers", "graph", "lang", "errors", "limits", "atomic", "units"},
    "builder": {"check", "lang", "layers", "errors", "limits"},   # refuses past-limit trees before printing
    "cli": {"backend", "cost", "check", "layers", "graph", "lang", "builder", "errors", "limits", "atomic",
            "units", "seqdsl"},
    "seqdsl": {"check", "graph", "errors", "cost", "backend"},   # the package's own __init__: the public API
    "__main__": {"cli", "seqdsl"},
}

# Packages heavy enough to load only when a command needs them: the optional
# ones (the last three are the `cuda` extra, imported only for GPU tensors:
# torch_modules.cuda_kernel), and the front end's (a cached `compile
# --estimate` answers without sympy, lark or pydantic: seqdsl/cli/cache.py).
OPTIONAL = ("torch", "matplotlib", "onnx", "onnxscript", "numpy", "networkx", "mamba_ssm", "causal_conv1d", "fla")
HEAVY = OPTIONAL + ("sympy", "lark", "pydantic")


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        yield ".".join(parts), is_pkg, path


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "seqdsl"


def _imports(module: str, is_pkg: bool, path: Path):
    """(target module, inside a function?, line text) for every import."""
    text = path.read_text()
    lines = text.splitlines()
    tree = ast.parse(text)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                root = ".".join(base + ([node.module] if node.module else []))
            else:
                root = node.module
            # `from pkg import x` may name a submodule; _resolve strips a name back to its module
            targets = [f"{root}.{a.name}" for a in node.names]
        else:
            continue
        inside, typing_only, p = False, False, parents.get(node)
        while p is not None:
            inside |= isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef))
            typing_only |= isinstance(p, ast.If) and "TYPE_CHECKING" in ast.unparse(p.test)
            p = parents.get(p)
        if typing_only:   # annotations only: never run
            continue
        for t in targets:
            yield t, inside, lines[node.lineno - 1]


MODULES = {name: (is_pkg, path) for name, is_pkg, path in _modules()}
IMPORTS = {name: list(_imports(name, is_pkg, path)) for name, (is_pkg, path) in MODULES.items()}


def _resolve(target: str) -> str | None:
    """The seqdsl module a target names (a name imported from a module counts as that module)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def _loads_heavy(module: str, seen=None, heavy=HEAVY) -> bool:
    """Whether importing `module` (a seqdsl module) loads a heavy package at its top level."""
    seen = set() if seen is None else seen
    if module in seen:
        return False
    seen.add(module)
    for target, inside, _ in IMPORTS[module]:
        if inside:
            continue
        if target.split(".")[0] in heavy:
            return True
        dep = _resolve(target) if target.startswith("seqdsl") else None
        if dep and _loads_heavy(dep, seen, heavy):
            return True
    return False


def test_every_part_is_in_the_table():
    parts = {_part(m) for m in MODULES}
    assert parts <= set(ALLOWED), f"parts missing from ALLOWED: {sorted(parts - set(ALLOWED))}"


def test_dependencies_point_one_way():
    bad = []
    for module, imports in IMPORTS.items():
        src = _part(module)
        for target, _, line in imports:
            dep = _resolve(target) if target.startswith("seqdsl") else None
            if dep is None:
                continue
            dst = _part(dep)
            if dst != src and dst not in ALLOWED[src]:
                bad.append(f"{module} imports {target} ({src} -> {dst}): {line.strip()}")
    assert not bad, "\n".join(bad)


def test_the_allowed_table_has_no_cycle():
    order, state = [], {}

    def visit(p, stack):
        if state.get(p) == 1:
            raise AssertionError(f"cycle in ALLOWED: {' -> '.join(stack + [p])}")
        if state.get(p) == 2:
            return
        state[p] = 1
        for q in ALLOWED[p]:
            visit(q, stack + [p])
        state[p] = 2
        order.append(p)
    for p in ALLOWED:
        visit(p, [])


def test_no_import_cycle_between_modules():
    graph = defaultdict(set)
    for module, imports in IMPORTS.items():
        for target, _, _ in imports:
            dep = _resolve(target) if target.startswith("seqdsl") else None
            # a module importing its own package's __init__ (`from . import x`) is not a cycle edge
            if dep and dep != module and not module.startswith(dep + "."):
                graph[module].add(dep)
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))
    for v in list(MODULES):
        if v not in index:
            strong(v)
    assert not cycles, f"import cycles: {cycles}"


def test_imports_inside_functions_are_for_heavy_packages_and_say_so():
    bad = []
    for module, imports in IMPORTS.items():
        for target, inside, line in imports:
            if not inside:
                continue
            heavy = target.split(".")[0] in HEAVY or (
                target.startswith("seqdsl") and _resolve(target) and _loads_heavy(_resolve(target)))
            if not heavy:
                bad.append(f"{module}: {line.strip()} (not a heavy package: import it at the top)")
            elif "#" not in line:
                bad.append(f"{module}: {line.strip()} (say why it is lazy in a comment)")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("part", ["lang", "graph", "check", "cost"])
def test_the_torch_free_parts_never_import_torch(part):
    bad = [f"{m}: {line.strip()}" for m, imports in IMPORTS.items() if _part(m) == part
           for target, _, line in imports if target.split(".")[0] in ("torch", "matplotlib")]
    assert not bad, "\n".join(bad)


def test_only_lowering_files_of_the_layers_import_torch():
    bad = [f"{m}: {line.strip()}" for m, imports in IMPORTS.items() if _part(m) == "layers"
           and not (m.endswith("_torch") or m.endswith(".torch_modules") or m.endswith(".lowering"))
           for target, inside, line in imports if target.split(".")[0] == "torch"
           or (target.startswith("seqdsl") and not inside and _resolve(target)
               and _loads_heavy(_resolve(target), heavy=OPTIONAL))]
    assert not bad, "\n".join(bad)
