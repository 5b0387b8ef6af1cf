"""AST -> checked graph (`seqdsl.graph.ir`).

Loads a spec and its imports (reading files safely, naming import cycles),
checks blocks for recursion and the program's size before building it, then
elaborates each model (`models.py`, with the values of `values.py`). Every
refusal is a `SpecError` at the exact span.
"""
from __future__ import annotations

import gc
import os
import stat
from contextlib import contextmanager
from pathlib import Path

from ..errors import SourceFile, Span, SpecError, error
from ..graph.ir import ModelGraph, Program
from ..lang import ast
from ..lang.syntax import parse_module
from ..layers import LAYERS
from ..limits import MAX_DIAGNOSTICS, MAX_FILE_BYTES, MAX_IMPORTS, MAX_NODES
from .layout import layout_warnings
from .models import _ModelBuilder, _add_new
from .values import COMBINATORS, VALUE_STAGES

def read_source(path: str | Path, display: str | None = None, span: Span | None = None) -> SourceFile:
    p = Path(path)
    try:
        # One open, then fstat on it: a FIFO or device (even one swapped in
        # after a check by name) is refused instead of blocking the read, and
        # a file growing meanwhile is read no further than the limit.
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise error(f"'{path}' is not a file", span)
            if info.st_size > MAX_FILE_BYTES:
                raise error(f"'{path}' is {info.st_size} bytes, past the limit of {MAX_FILE_BYTES}", span,
                            help="split the spec into files joined with import")
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) > MAX_FILE_BYTES:
            raise error(f"'{path}' is past the limit of {MAX_FILE_BYTES} bytes", span,
                        help="split the spec into files joined with import")
        text = _without_bom(data.decode("utf-8"))
    except FileNotFoundError:
        raise error(f"cannot find '{path}'", span) from None
    except UnicodeDecodeError as exc:
        # Point at the offending byte: line and column (in characters) of the decoded prefix.
        line = data.count(b"\n", 0, exc.start) + 1
        start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[start:exc.start].decode("utf-8", "replace")) + 1
        shown = SourceFile(display or str(path), data.decode("utf-8", "replace"))
        raise error(f"'{path}' is not UTF-8 text ({exc.reason} at byte {exc.start})",
                    Span(shown, line, column, line, column + 1),
                    help="save the spec as UTF-8") from None
    except OSError as exc:
        raise error(f"cannot read '{path}': {exc.strerror}", span) from None
    return SourceFile(display or str(path), text)


def split_model_path(spec: str) -> tuple[str, str | None]:
    """`FILE.seq:MODEL` -> (FILE.seq, MODEL), the form every command takes for
    one model of a file; a plain path (or one that exists as written) -> (path, None)."""
    file_part, sep, name_part = spec.rpartition(":")
    if sep and name_part.isidentifier() and not Path(spec).exists():
        return file_part, name_part
    return spec, None


def spec_files(spec) -> list[str]:
    """The files a spec reads: itself and every file its imports reach (as
    the elaborator resolves them). Unreadable ones are skipped: loading the
    spec reports them."""
    first = Path(spec)
    out, seen = [str(first)], set()
    pending = [(first, first.resolve().parent)]
    while pending and len(seen) < 1000:
        path, here = pending.pop()
        try:
            module = parse_module(read_source(path))
        except Exception:  # noqa: BLE001 - a bad file is reported when the spec is loaded
            continue
        for imp in module.imports:
            target = (here / imp.path).resolve()
            if target not in seen:
                seen.add(target)
                out.append(str(target))
                pending.append((target, target.parent))
    return out


def _without_bom(text: str) -> str:
    """Drop a leading byte order mark (editors on Windows write one); kept,
    it would be an unexpected character at 1:1."""
    return text[1:] if text.startswith("\ufeff") else text


def load(path: str | Path) -> Program:
    """Read, parse and check a .seq file and the files it imports."""
    if not isinstance(path, (str, Path)):
        raise TypeError(f"load() takes a path (str or Path), not {type(path).__name__}"
                        + ("; seqdsl.parse(text) reads spec text" if path is None else ""))
    source = read_source(path)
    file = Path(path).resolve()
    return check_source(source, file.parent, file)


def parse(text: str, path: str = "<string>", base_dir: str | Path | None = None) -> Program:
    """Parse and check spec text; imports resolve against base_dir (default: cwd)."""
    if not isinstance(text, str):
        raise TypeError(f"parse() takes the spec's text (a str), not {type(text).__name__}"
                        + ("; seqdsl.load(path) reads a file" if isinstance(text, (Path, bytes)) else ""))
    if not isinstance(path, str):
        raise TypeError(f"parse(path=...) is the name the spec is reported under (a str), not {type(path).__name__}")
    if len(text.encode("utf-8")) > MAX_FILE_BYTES:
        raise error(f"spec text is past the limit of {MAX_FILE_BYTES} bytes")
    root = Path(base_dir).resolve() if base_dir else Path.cwd().resolve()
    return check_source(SourceFile(path, _without_bom(text)), root)


@contextmanager
def _fewer_gc_passes():
    """Parsing and elaboration allocate many small, acyclic objects; the
    default gen-0 threshold (700) makes the cyclic GC rescan them hundreds of
    times (a third of the time on a 10,000-line spec). Raise it meanwhile."""
    old = gc.get_threshold()
    gc.set_threshold(max(old[0], 100_000), old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def check_source(source: SourceFile, root_dir: Path, root_file: Path | None = None) -> Program:
    """Check a spec's text; `root_file` is its file, if it has one (for import cycles)."""
    with _fewer_gc_passes():
        return _check_source(source, root_dir, root_file)


def _check_source(source: SourceFile, root_dir: Path, root_file: Path | None = None) -> Program:
    module = parse_module(source)
    blocks = _collect_blocks(module, root_dir, root_file)
    _check_block_recursion(blocks)
    _check_program_size(module.models, blocks)
    models: dict[str, ModelGraph] = {}
    built = 0  # layers of the models built so far: MAX_NODES bounds the whole file
    found = []  # every model is checked: the errors of all of them, in order
    defined: dict[str, int] = {}  # model name -> its line, refused or not
    for model in module.models:
        try:
            if model.name in defined:
                raise error(f"model '{model.name}' is defined twice", model.name_span,
                            help=f"first defined at line {defined[model.name]}")
            defined[model.name] = model.span.line
            models[model.name] = graph = _ModelBuilder(model, blocks, built).build()
            graph.warnings.extend(layout_warnings(graph))
            built += len(graph.nodes)
        except SpecError as exc:
            _add_new(found, exc.diagnostics)
            if len(found) >= MAX_DIAGNOSTICS:
                break
    if found:
        raise SpecError(found[:MAX_DIAGNOSTICS])
    if not models:
        raise error(f"{source.path} defines no model", Span(source, 1, 1, 1, 2),
                    help="add `model NAME { input ... output ... }`")
    return Program(source.path, models)


def _collect_blocks(root: ast.Module, root_dir: Path, root_file: Path | None = None) -> dict[str, ast.BlockDef]:
    blocks: dict[str, ast.BlockDef] = {}
    seen: set[Path] = set()
    imports: dict[Path | None, list[tuple[Path, ast.Import]]] = {}  # file -> the files it imports
    pending = [(root, root_dir, root_file)]
    while pending:
        module, here, file = pending.pop(0)
        for block in module.blocks:
            if block.name in LAYERS or block.name in COMBINATORS or block.name in VALUE_STAGES:
                raise error(f"block '{block.name}' has the name of a built-in layer", block.name_span,
                            help="rename the block")
            if block.name in blocks:
                first = blocks[block.name].span
                raise error(f"block '{block.name}' is defined twice", block.name_span,
                            help=f"first defined at {first.path}:{first.line}")
            blocks[block.name] = block
        for imp in module.imports:
            target = (here / imp.path).resolve()
            if not target.is_relative_to(root_dir):
                raise error(f"import of '{imp.path}' leaves the spec's folder {root_dir}", imp.span,
                            help="imports must name files inside the importing spec's folder")
            imports.setdefault(file, []).append((target, imp))
            if target in seen or target == root_file:
                continue
            seen.add(target)
            if len(seen) > MAX_IMPORTS:
                raise error(f"more than {MAX_IMPORTS} imported files", imp.span)
            src = read_source(target, display=imp.path, span=imp.span)
            pending.append((parse_module(src), target.parent, target))
    _check_import_cycles(imports, root_file, root_dir, root.source.path if root.source else "<string>")
    return blocks


def _check_import_cycles(imports, root_file, root_dir: Path, root_shown: str) -> None:
    """Refuse a file that imports itself, directly or through other files,
    naming the cycle at the import that closes it (iterative depth-first search)."""
    def shown(file):
        if file is None:
            return root_shown
        return str(file.relative_to(root_dir)) if file.is_relative_to(root_dir) else str(file)

    state: dict = {root_file: 1}  # 1 = on the path, 2 = done
    path = [root_file]
    pending = [iter(imports.get(root_file, ()))]
    while pending:
        step = next(pending[-1], None)
        if step is None:
            state[path.pop()] = 2
            pending.pop()
            continue
        target, imp = step
        if state.get(target) == 1:
            cycle = path[path.index(target):] + [target]
            raise error("import cycle: " + " -> ".join(shown(f) for f in cycle), imp.span,
                        help="a file cannot import itself, directly or through other files; "
                             "move the blocks both need into a file that imports neither")
        if target not in state:
            state[target] = 1
            path.append(target)
            pending.append(iter(imports.get(target, ())))


def _check_program_size(models, blocks) -> None:
    """Refuse, before building anything, a file whose models together expand
    past MAX_NODES layers (one block of 200,000 layers used by 30 models took
    a minute and gigabytes when the limit counted per model)."""
    total = 0
    for model in models:
        size = _ModelBuilder(model, blocks).projected_size()
        if size > MAX_NODES:
            return  # past the limit alone: building it stops at the stage that goes past
        total += size
        if total > MAX_NODES:
            raise error(f"the models of this file expand to more than {MAX_NODES} layers "
                        f"({total} up to model '{model.name}')", model.name_span,
                        help=f"the limit of {MAX_NODES} layers counts every model in the file; "
                             "put some models in another file")


def _called_blocks(stages, blocks):
    for stage in stages:
        if isinstance(stage, ast.Call):
            if stage.name in blocks:
                yield stage
        elif isinstance(stage, ast.Line):
            yield from _called_blocks(stage.stages, blocks)
        else:
            yield from _called_blocks(stage.body, blocks)


def _check_block_recursion(blocks: dict[str, ast.BlockDef]) -> None:
    """Refuse a block that calls itself, directly or through other blocks.

    Iterative depth-first search, so a chain of thousands of blocks cannot
    exhaust Python's recursion limit (the elaborator refuses deep chains later)."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for root in blocks:
        if root in state:
            continue
        state[root] = 1
        path = [root]
        pending = [iter(list(_called_blocks(blocks[root].body, blocks)))]
        while pending:
            call = next(pending[-1], None)
            if call is None:
                state[path.pop()] = 2
                pending.pop()
                continue
            if state.get(call.name) == 1:
                cycle = path[path.index(call.name):] + [call.name]
                via = "" if len(cycle) == 2 else " through " + " -> ".join(cycle[1:-1])
                raise error(f"block '{call.name}' calls itself recursively{via}", call.span,
                            help="a block cannot contain itself; use repeat(N) { ... } to stack copies")
            if call.name not in state:
                state[call.name] = 1
                path.append(call.name)
                pending.append(iter(list(_called_blocks(blocks[call.name].body, blocks))))


