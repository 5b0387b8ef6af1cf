"""The `seqdsl` command.

Exit codes: 0 success, 1 a refused spec (diagnostics on stderr), 2 a usage
error (bad flag or value, or output that cannot be written: a full disk,
an unwritable place), 130 interrupted (Ctrl-C, at any point, imports
included: one line, no traceback), 141 stdout closed early (EPIPE, e.g.
`seqdsl graph x.seq | head -1`: quiet, as a process killed by SIGPIPE
reports in a shell). Never a traceback: unexpected failures print one
line and exit 3 (set SEQDSL_DEBUG=1 to see the traceback).
"""
from __future__ import annotations

import argparse
import gc
import os
import sys

from . import __version__
from .diagnostics import SpecError


# Packages only some commands need (build, compile -o, export, verify, bench,
# calibrate, --plot), and the extra that installs each.
OPTIONAL_PACKAGES = {"torch": "torch", "numpy": "torch", "matplotlib": "plot", "onnx": "onnx", "onnxscript": "onnx"}


class UsageError(Exception):
    """A bad flag value: one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line + exit 2, as argparse does, without the usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="path to a .seq file")
    p.add_argument("--model", help="which model, when the file defines several")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="seqdsl", description="Declare hybrid sequence models, check, cost and compile them.")
    parser.add_argument("--version", action="version", version=f"seqdsl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("check", help="parse and check a spec; print its shapes and parameters")
    _add_spec_args(p)

    p = sub.add_parser("graph", help="print the checked graph as dot, mermaid or json")
    _add_spec_args(p)
    p.add_argument("--format", choices=("dot", "mermaid", "json"), default="dot")

    p = sub.add_parser("fmt", help="rewrite .seq files in canonical form (comments kept)")
    p.add_argument("files", nargs="+", metavar="FILE")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if any file would change; write nothing")
    mode.add_argument("--stdout", action="store_true", help="print the formatted text instead of writing")

    p = sub.add_parser("calibrate", help="measure this machine's GEMM throughput, bandwidth and step floor")
    p.add_argument("-o", "--output", required=True, help="profile JSON to write (use with --hw FILE)")
    p.add_argument("--quick", action="store_true", help="smaller measurements (seconds, noisier)")

    from .commands import add_compile_parser
    add_compile_parser(sub)
    return parser


def cmd_check(args) -> int:
    from .elaborate import load
    from .render import summary
    program = load(args.spec)
    models = [program.model(args.model)] if args.model or len(program.models) == 1 else list(program.models.values())
    print("\n\n".join(summary(m, args.spec) for m in models))
    return 0


def cmd_graph(args) -> int:
    from .elaborate import load
    from .render import to_dot, to_json, to_mermaid
    model = load(args.spec).model(args.model)
    print({"dot": to_dot, "mermaid": to_mermaid, "json": to_json}[args.format](model))
    return 0


def cmd_fmt(args) -> int:
    from .elaborate import read_source
    from .printer import format_text
    changed = []
    for path in args.files:
        source = read_source(path)
        formatted = format_text(source.text, path)
        if args.stdout:
            sys.stdout.write(formatted)
        elif formatted != source.text:
            changed.append(path)
            if not args.check:
                _write_atomic(path, formatted)
    for path in changed:
        print(f"{'would reformat' if args.check else 'reformatted'} {path}", file=sys.stderr)
    return 1 if args.check and changed else 0


def cmd_calibrate(args) -> int:
    check_output(args.output, [], suffixes=(".json",))
    from .hardware import calibrate
    profile = calibrate(quick=args.quick)
    _write_atomic(args.output, profile.model_dump_json(indent=2) + "\n")
    print(f"wrote {args.output}: float32 {profile.peak_flops['float32'] / 1e9:.1f} GFLOP/s, "
          f"bfloat16 {profile.peak_flops['bfloat16'] / 1e9:.1f} GFLOP/s, "
          f"bandwidth {profile.bandwidth / 1e9:.1f} GB/s, steps (us, forward/backward) "
          + ", ".join(f"{k} {profile.step_floor(k) * 1e6:.1f}/{profile.step_floor(k + '.backward') * 1e6:.1f}"
                      for k in ("lstm", "gru", "rnn")))
    return 0


def spec_files(spec) -> list[str]:
    """The files a spec reads: itself and every file its imports reach (as
    the elaborator resolves them). Unreadable ones are skipped: loading the
    spec reports them."""
    from pathlib import Path

    from .elaborate import read_source
    from .syntax import parse_module
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


def check_output(path, reads, flag: str = "-o", suffixes: tuple[str, ...] | None = None) -> None:
    """Refuse, before any work, an output that would overwrite a file the
    command reads (the spec, one it imports, a profile: compared by
    os.path.samefile, so links and ../ spellings are caught), a directory,
    or a file name without one of `suffixes`. UsageError (exit 2)."""
    from pathlib import Path
    out = Path(path)
    if not str(path).strip():
        raise UsageError(f"{flag}: empty file name")
    if suffixes is not None and out.suffix.lower() not in suffixes:
        raise UsageError(f"{flag} {path}: the file name must end in {' or '.join(suffixes)}")
    if out.is_dir():
        raise UsageError(f"{flag} {path} is a directory; give a file name")
    if out.exists() and not out.is_file():   # a device or fifo: the atomic rename would replace the node
        raise UsageError(f"{flag} {path} is not a regular file")
    if not out.parent.is_dir() if str(out.parent) else False:
        raise UsageError(f"cannot write {path}: no directory {out.parent}")
    for r in reads:
        if r is None:
            continue
        try:
            same = os.path.samefile(out, r)
        except OSError:           # one of them does not exist (yet)
            same = os.path.abspath(out) == os.path.abspath(r)
        if same:
            raise UsageError(f"{flag} {path} would overwrite {r}, which this command reads; "
                             "choose another output file")


def _save_atomic(path, save) -> None:
    """save(tmp) writes a temporary file beside `path` (same suffix, for
    writers that look at it), which is then renamed over `path`: a failure
    leaves the old file whole and no temporary behind. An unwritable place is
    a usage error (one line, exit 2)."""
    import tempfile
    from pathlib import Path
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp" + target.suffix)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    os.close(fd)
    try:
        # mkstemp makes the file 0600; give it the mode a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        save(tmp)
        os.replace(tmp, target)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None
        raise


def _write_atomic(path, data: str | bytes) -> None:
    """Text or bytes to `path`, whole or not at all (`_save_atomic`)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data

    def save(tmp):
        with open(tmp, "wb") as f:
            f.write(payload)
    _save_atomic(path, save)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handlers = {"check": cmd_check, "graph": cmd_graph, "fmt": cmd_fmt, "calibrate": cmd_calibrate}
    from .commands import COMMANDS
    handlers.update(COMMANDS)
    try:
        return handlers[args.command](args)
    except SpecError as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"seqdsl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        extra = OPTIONAL_PACKAGES.get((exc.name or "").split(".")[0])
        if extra is None:
            return _internal_error(exc)
        print(f"seqdsl {args.command}: error: this needs {exc.name.split('.')[0]}, which is not installed: "
              f"pip install 'seqdsl[{extra}]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted()
    except OSError as exc:
        if _stdout_failed(exc):
            return _output_error(exc)
        return _internal_error(exc)
    except RecursionError as exc:
        return _internal_error(exc)
    except Exception as exc:  # noqa: BLE001 - the promise is: never a traceback
        return _internal_error(exc)


EXIT_PIPE = 141          # stdout closed early (EPIPE): 128 + SIGPIPE, quietly


def _interrupted() -> int:
    print("seqdsl: interrupted", file=sys.stderr)
    return 130


def _stdout_failed(exc: OSError) -> bool:
    """Whether `exc` is a failure to write our output (a full disk or quota,
    a closed pipe). Files the commands write themselves go through
    `_save_atomic`, which reports its own errors, so these are stdout's."""
    import errno
    return isinstance(exc, BrokenPipeError) or exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EPIPE)


def _output_error(exc: OSError) -> int:
    """stdout cannot take our output: point it at /dev/null (so the exit-time
    flush does not fail again) and say so in one line, except for a closed
    pipe, which is the reader's choice (exit quietly)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    if isinstance(exc, BrokenPipeError):
        return EXIT_PIPE
    print(f"seqdsl: error: cannot write the output: {exc.strerror or exc}", file=sys.stderr)
    return 2


def _finish_output(code: int) -> int:
    """Flush stdout now, so a full disk or closed pipe is reported like any
    other output error instead of by the interpreter at exit."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        return _output_error(exc)
    return code


def _internal_error(exc: BaseException) -> int:
    if os.environ.get("SEQDSL_DEBUG"):
        raise exc
    print(f"seqdsl: internal error: {type(exc).__name__}: {exc} "
          "(please report it; SEQDSL_DEBUG=1 shows the traceback)", file=sys.stderr)
    return 3


def entry() -> None:
    """The console script: `main`, then exit without tearing the heap down.

    At exit the interpreter garbage-collects every object still alive; after
    importing sympy and checking a large spec that takes 0.3-0.5 s, as long as
    the work itself. `gc.freeze` moves the whole heap out of the collector's
    sight (the OS reclaims the memory), so a short command ends when its work
    does. Only the process entry does this: `main` stays safe to call in-process.
    """
    import signal
    try:
        code = _finish_output(main())
    except KeyboardInterrupt:     # outside main's handlers (building the parser, flushing)
        code = _interrupted()
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # exiting now: a late Ctrl-C changes nothing
    except ValueError:            # not the main thread
        pass
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
