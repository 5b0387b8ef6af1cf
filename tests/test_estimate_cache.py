"""The estimate cache (seqdsl/cli/cache.py): a repeated `compile --estimate`
prints exactly what deriving the closed forms prints, without sympy; a
damaged, foreign or stale entry is ignored and rebuilt."""
from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import seqdsl
from seqdsl.cli import cache
from seqdsl.cli.app import main
from seqdsl.cli.estimate import run_cached

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(glob.glob(str(ROOT / "specs" / "*.seq")) + glob.glob(str(ROOT / "examples" / "**" / "*.seq"),
                                                                       recursive=True))
OPTIONS = [
    [],
    ["--json", "--seq", "1,77,4096"],
    ["--seq", "16..1e7:7", "--batch", "3", "--dtype", "bfloat16", "--optimizer", "sgd"],
    ["--hw", "h100", "--json", "--per-layer", "--seq", "64..100000"],
    ["--hw", "cpu", "--per-layer", "--formula", "--seq", "100"],
]


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SEQDSL_NO_CACHE", raising=False)
    monkeypatch.delenv("SEQDSL_DEBUG", raising=False)
    return tmp_path / "xdg" / "seqdsl"


def _call(fn, argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = fn(argv)
    return code, out.getvalue(), err.getvalue()


def derive(argv):
    """The usual path (argparse, load, sympy), which also writes the entry."""
    code, out, err = _call(main, argv)
    assert code == 0, err
    return out


def hit(argv):
    """The cached path: None when it declines (a miss)."""
    code, out, _ = _call(run_cached, argv)
    return out if code == 0 else None


def entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("*.json")) if cache_dir.is_dir() else []


def _models(spec):
    return list(seqdsl.load(spec).models)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: os.path.relpath(p, ROOT))
def test_a_hit_prints_what_deriving_prints(spec):
    for model in _models(spec):
        for opts in OPTIONS:
            argv = ["compile", spec, "--estimate", "--model", model] + opts
            cold = derive(argv)
            assert hit(argv) == cold, argv


def test_dims_given_by_name_and_the_default_model(cache_home):
    spec = str(ROOT / "specs" / "translation.seq")
    for argv in (["compile", spec, "--estimate", "--seq", "T=512,S=100"],
                 ["compile", spec, "--estimate", "--json", "--seq", "S=7,T=3000"]):
        cold = derive(argv)
        assert hit(argv) == cold
    assert len(entries(cache_home)) == 1          # one slot per (spec, --model, --dtype)


def test_other_lengths_batch_and_optimizer_reuse_the_entry(cache_home):
    spec = str(ROOT / "specs" / "long_document.seq")
    derive(["compile", spec, "--estimate"])
    for opts in (["--seq", "3,1e9"], ["--batch", "64", "--optimizer", "none", "--json"]):
        argv = ["compile", spec, "--estimate"] + opts
        cached = hit(argv)
        assert cached is not None and cached == derive(argv + ["--no-cache"])
    assert "max_len" in hit(["compile", spec, "--estimate", "--seq", "1e9"])   # the warnings come back too


def test_a_part_not_derived_yet_is_a_miss_then_kept(cache_home):
    spec = str(ROOT / "specs" / "griffin_like.seq")
    derive(["compile", spec, "--estimate"])
    for opts in (["--hw", "h200"], ["--formula"]):
        argv = ["compile", spec, "--estimate"] + opts
        assert hit(argv) is None
        derive(argv)
    for opts in (["--hw", "h200"], ["--formula"], ["--hw", "h200", "--formula", "--per-layer"]):
        argv = ["compile", spec, "--estimate"] + opts
        assert hit(argv) == derive(argv + ["--no-cache"])


# ------------------------------------------------------------------ invalidation
def _spec_with_import(tmp_path) -> tuple[Path, Path]:
    (tmp_path / "lib.seq").write_text((ROOT / "specs" / "blocks" / "common.seq").read_text())
    spec = tmp_path / "lm.seq"
    spec.write_text((ROOT / "specs" / "transformer_lm.seq").read_text().replace("blocks/common.seq", "lib.seq"))
    return spec, tmp_path / "lib.seq"


def test_a_changed_spec_or_imported_file_or_version_misses(tmp_path, monkeypatch):
    spec, lib = _spec_with_import(tmp_path)
    argv = ["compile", str(spec), "--estimate", "--json"]
    derive(argv)
    assert hit(argv) is not None
    spec.write_text(spec.read_text().replace("let d = 768", "let d = 960"))
    assert "let d = 960" in spec.read_text()
    assert hit(argv) is None
    new = derive(argv)
    assert hit(argv) == new
    lib.write_text(lib.read_text() + "\n# changed\n")
    assert hit(argv) is None
    derive(argv)
    assert hit(argv) == new
    monkeypatch.setattr(cache, "__version__", "999.0")
    assert hit(argv) is None


def test_a_changed_profile_file_misses(tmp_path):
    profile = tmp_path / "mine.json"
    data = json.loads((ROOT / "seqdsl" / "profiles" / "cpu.json").read_text())
    profile.write_text(json.dumps(data))
    argv = ["compile", str(ROOT / "specs" / "lstm_lm.seq"), "--estimate", "--hw", str(profile)]
    first = derive(argv)
    assert hit(argv) == first
    data["bandwidth"] *= 2
    profile.write_text(json.dumps(data))
    assert hit(argv) is None
    assert derive(argv) != first and hit(argv) == derive(argv + ["--no-cache"])


# ------------------------------------------------------------------ damage and safety
ARGV = ["compile", str(ROOT / "specs" / "lstm_lm.seq"), "--estimate"]


def _one_entry(cache_home) -> Path:
    derive(ARGV)
    (entry,) = entries(cache_home)
    assert hit(ARGV) is not None
    return entry


def _rebuilt(cache_home):
    """The damage is ignored and the next derivation writes a good entry."""
    assert hit(ARGV) is None
    derive(ARGV)
    assert hit(ARGV) == derive(ARGV + ["--no-cache"])


def test_a_truncated_entry_is_ignored_and_rebuilt(cache_home):
    entry = _one_entry(cache_home)
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    _rebuilt(cache_home)


@pytest.mark.parametrize("damage", ["code", "cycle", "float", "extra key", "not a list", "nan", "deep"])
def test_an_entry_of_the_wrong_shape_is_ignored_and_rebuilt(cache_home, damage):
    entry = _one_entry(cache_home)
    doc = json.loads(entry.read_text())
    nodes = doc["forms"]["nodes"]
    if damage == "code":
        nodes[0] = ["exec", "__import__('os').system('false')"]
    elif damage == "cycle":
        nodes[-1] = ["add", [len(nodes) - 1, 0]]
    elif damage == "float":
        nodes[0] = ["int", 1.5]
    elif damage == "extra key":
        doc["forms"]["extra"] = 1
    elif damage == "not a list":
        doc["forms"]["layers"] = {"a": 1}
    text = json.dumps(doc)
    if damage == "nan":
        text = text.replace('"params":', '"params":NaN,"x":', 1)
    elif damage == "deep":        # json recurses: RecursionError, caught
        text = text.replace('"formulas": null', '"formulas": ' + "[" * 100_000 + "]" * 100_000)
    entry.write_text(text)
    _rebuilt(cache_home)


def test_an_entry_that_is_a_symlink_is_ignored(cache_home, tmp_path):
    entry = _one_entry(cache_home)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(entry.read_bytes())
    entry.unlink()
    entry.symlink_to(elsewhere)
    _rebuilt(cache_home)
    assert not entry.is_symlink()


def test_an_entry_that_is_a_fifo_is_ignored_without_waiting(cache_home):
    entry = _one_entry(cache_home)
    entry.unlink()
    os.mkfifo(entry)
    code = ("import sys; from seqdsl.cli.estimate import run_cached; "
            f"sys.exit(run_cached({ARGV!r}) is not None)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, timeout=120)   # a blocking read would time out
    assert done.returncode == 0


def test_a_foreign_or_writable_cache_is_ignored(cache_home, monkeypatch):
    entry = _one_entry(cache_home)
    uid = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: uid + 1)        # as if another user owned the files
    assert hit(ARGV) is None
    monkeypatch.setattr(os, "getuid", lambda: uid)
    assert hit(ARGV) is not None
    entry.chmod(0o620)                                          # group-writable entry
    assert hit(ARGV) is None
    entry.chmod(0o600)
    cache_home.chmod(0o777)                                     # world-writable directory
    try:
        assert hit(ARGV) is None
        before = entry.stat().st_mtime_ns
        derive(ARGV)
        assert entry.stat().st_mtime_ns == before               # nor written into
    finally:
        cache_home.chmod(0o700)


def test_the_directory_and_entries_are_private(cache_home):
    entry = _one_entry(cache_home)
    assert cache_home.stat().st_mode & 0o777 == 0o700
    assert entry.stat().st_mode & 0o777 == 0o600


def test_a_refused_spec_or_length_is_never_cached(cache_home, tmp_path):
    bad = tmp_path / "bad.seq"
    bad.write_text("model m {\n  input x: float[B, T, 64]\n  y = x -> atention(4)\n  output y\n}\n")
    code, _, err = _call(main, ["compile", str(bad), "--estimate"])
    assert code == 1 and "atention" in err
    assert entries(cache_home) == []
    conv = tmp_path / "conv.seq"
    conv.write_text("model m {\n  input x: float[B, T, 8]\n  y = x -> conv1d(8, 100, padding=valid)\n  output y\n}\n")
    derive(["compile", str(conv), "--estimate", "--seq", "1000"])
    argv = ["compile", str(conv), "--estimate", "--seq", "64"]
    assert hit(argv) is None                       # the usual path words the refusal
    code, _, err = _call(main, argv)
    assert code == 2 and "smallest length that works" in err


def test_no_cache_flag_and_variable(cache_home, monkeypatch):
    derive(ARGV + ["--no-cache"])
    assert entries(cache_home) == []
    monkeypatch.setenv("SEQDSL_NO_CACHE", "1")
    derive(ARGV)
    assert entries(cache_home) == [] and hit(ARGV) is None
    monkeypatch.delenv("SEQDSL_NO_CACHE")
    derive(ARGV)
    assert hit(ARGV) is not None and hit(ARGV + ["--no-cache"]) is None


def test_only_plain_estimate_command_lines_are_answered(cache_home):
    derive(ARGV)
    assert hit(ARGV) is not None
    for argv in (ARGV + ["-o", "x.py"], ARGV + ["--est"], ARGV + ["--seq"], ARGV + ["--seq", "-5"],
                 ARGV + ["--json", "--json"], ["check"] + ARGV[1:2], ARGV[:2], ARGV + ["extra.seq"],
                 ARGV + ["--batch", "0"], ARGV + ["--optimizer", "lion"], ARGV + ["--help"]):
        assert hit(argv) is None, argv


# ------------------------------------------------------------------ the process
def test_a_cached_command_loads_no_sympy_lark_or_pydantic(cache_home):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(cache_home.parent)}
    spec = str(ROOT / "specs" / "transformer_lm.seq")
    cmd = [sys.executable, "-X", "importtime", "-m", "seqdsl", "compile", spec, "--estimate", "--hw", "h100"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0 and "sympy" in first.stderr
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0 and second.stdout == first.stdout
    loaded = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in second.stderr.splitlines()}
    assert not loaded & {"sympy", "lark", "pydantic", "networkx", "torch"}
