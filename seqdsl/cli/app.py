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
import errno
import gc
import os
import signal
import stat
import sys
from pathlib import Path

import seqdsl

from .. import __version__
from ..atomic import check_output, save_atomic, write_atomic
from ..check.elaborate import load, read_source, split_model_path
from ..errors import SpecError, UsageError
from ..graph.render import summary, to_dot, to_json, to_mermaid
from ..lang.printer import format_text
from .commands import COMMANDS, add_compile_parser
from .exits import finish_output as _finish_output, interrupted as _interrupted, stdout_failed as _stdout_failed
from .exits import output_error as _output_error
from .layers import add_layers_parser, run_layers


# Packages only some commands need (build, compile -o, export, verify, bench,
# calibrate, --plot), and the extra that installs each.
OPTIONAL_PACKAGES = {"torch": "torch", "numpy": "torch", "matplotlib": "plot", "onnx": "onnx", "onnxscript": "onnx"}


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

    add_compile_parser(sub)
    add_layers_parser(sub)
    return parser


def cmd_check(args) -> int:
    program = load(args.spec)
    models = [program.model(args.model)] if args.model or len(program.models) == 1 else list(program.models.values())
    print("\n\n".join(summary(m, args.spec) for m in models))
    for w in (w for m in models for w in m.warnings):   # a warning does not refuse the spec: exit 0
        print(w.render(), file=sys.stderr)
    return 0


def cmd_graph(args) -> int:
    model = load(args.spec).model(args.model)
    print({"dot": to_dot, "mermaid": to_mermaid, "json": to_json}[args.format](model))
    return 0


def cmd_fmt(args) -> int:
    """Every file is read and formatted before any is written or printed: if
    one is refused (a spec error, exit 1) or cannot be used (missing, a
    directory, not a .seq file: exit 2), each such file's errors are reported
    and no file is touched, in every mode (write, --check, --stdout)."""
    done, problems, usage = [], [], False
    for path in args.files:
        try:
            source = _read_fmt_source(path)
            done.append((path, source.text, format_text(source.text, path)))
        except UsageError as exc:
            problems.append(f"seqdsl fmt: error: {exc}")
            usage = True
        except SpecError as exc:
            problems.append(exc.render())
    if problems:
        print("\n".join(problems), file=sys.stderr)
        if len(args.files) > 1:
            print(f"seqdsl fmt: {len(problems)} of {len(args.files)} files refused; no file was "
                  f"{'checked' if args.check else 'printed' if args.stdout else 'written'}", file=sys.stderr)
        return 2 if usage else 1
    failed = False
    for path, text, formatted in done:
        if args.stdout:  # the file's bytes (UTF-8, its line ends), whatever stdout's encoding
            _write_stdout_bytes(formatted.encode("utf-8"))
        elif formatted != text:
            if args.check:
                print(f"would reformat {path}", file=sys.stderr)
                continue
            try:
                _rewrite_file(path, formatted)
            except UsageError as exc:  # say so, and still format the others
                print(f"seqdsl fmt: error: {exc}", file=sys.stderr)
                failed = True
                continue
            print(f"reformatted {path}", file=sys.stderr)
    if failed:
        return 2
    return 1 if args.check and any(formatted != text for _, text, formatted in done) else 0


def _write_stdout_bytes(data: bytes) -> None:
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a text-only stream (an embedding program's): text it is
        sys.stdout.write(data.decode("utf-8"))
        return
    sys.stdout.flush()
    buffer.write(data)
    buffer.flush()


def _read_fmt_source(path):
    """A .seq file to format, or a UsageError (one line) naming what is wrong."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"cannot find '{path}'" + (" (a broken symbolic link)" if p.is_symlink() else ""))
    if p.is_dir():
        raise UsageError(f"'{path}' is a directory; give the .seq files in it")
    if not p.is_file():
        raise UsageError(f"'{path}' is not a regular file")
    if p.suffix != ".seq":
        raise UsageError(f"'{path}' is not a .seq file")
    return read_source(path)


def _rewrite_file(path, text: str) -> None:
    """New content for an existing file, keeping what makes it that file:
    through a symbolic link its target is rewritten (the link stays); the
    mode (and owner, where allowed) is kept; a file with other hard links is
    rewritten in place (same inode), otherwise atomically (`save_atomic`)."""
    real = os.path.realpath(path)
    payload = text.encode("utf-8")
    try:
        info = os.stat(real)
        if info.st_nlink > 1:
            # the whole new text is ready: one write over the old inode, after
            # making room for it (so a full disk refuses before any byte changes)
            with open(real, "r+b") as f:
                if len(payload) > info.st_size and hasattr(os, "posix_fallocate"):
                    try:
                        os.posix_fallocate(f.fileno(), 0, len(payload))
                    except OSError as exc:
                        f.truncate(info.st_size)
                        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                            raise
                f.write(payload)
                f.truncate()
                f.flush()
                os.fsync(f.fileno())
            return
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None

    def save(tmp):
        with open(tmp, "wb") as f:
            f.write(payload)
        if hasattr(os, "chown") and (info.st_uid, info.st_gid) != (os.getuid(), os.getgid()):
            try:
                os.chown(tmp, info.st_uid, info.st_gid)
            except OSError:  # only root may give a file away: it is then ours
                pass
        os.chmod(tmp, stat.S_IMODE(info.st_mode))  # after chown, which may clear setuid bits
    save_atomic(real, save)


def cmd_calibrate(args) -> int:
    check_output(args.output, [], suffixes=(".json",))
    from ..backend.calibrate import measure_machine   # lazy: torch
    cal = measure_machine(quick=args.quick)
    profile = cal.profile
    write_atomic(args.output, profile.model_dump_json(indent=2) + "\n")
    print(f"wrote {args.output}: float32 {profile.peak_flops['float32'] / 1e9:.1f} GFLOP/s, "
          f"bfloat16 {profile.peak_flops['bfloat16'] / 1e9:.1f} GFLOP/s, "
          f"bandwidth {profile.bandwidth / 1e9:.1f} GB/s, steps (us, forward/backward) "
          + ", ".join(f"{k} {profile.step_floor(k) * 1e6:.1f}/{profile.step_floor(k + '.backward') * 1e6:.1f}"
                      for k in ("lstm", "gru", "rnn")))
    print("figure           median per unit   spread  trusted")
    for name, t in cal.timings.items():
        unit = "per step" if t.per > 1 else "per call"
        print(f"{name:<16} {t.median * 1e6:>10.2f} us {unit:<8} {t.spread:>4.0%}   {'no' if t.flags else 'yes'}")
    for name, flags in cal.untrusted.items():
        for flag in flags:
            print(f"untrusted: {name}: {flag}")
    return 0


def _split_model(args) -> None:
    """`FILE.seq:MODEL` wherever a spec path is taken (as compare takes it):
    the same as `FILE.seq --model MODEL`."""
    spec = getattr(args, "spec", None)
    if not isinstance(spec, str) or not hasattr(args, "model"):
        return
    path, model = split_model_path(spec)
    if model is None:
        return
    if args.model is not None and args.model != model:
        raise UsageError(f"{spec} names model '{model}' but --model says '{args.model}'")
    args.spec, args.model = path, model


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handlers = {"check": cmd_check, "graph": cmd_graph, "fmt": cmd_fmt, "calibrate": cmd_calibrate, "layers": run_layers}
    handlers.update(COMMANDS)
    try:
        _split_model(args)
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
        if seqdsl._sigint_seen:   # a Ctrl-C a library wrapped in an error of its own
            return _interrupted()
        return _internal_error(exc)


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
