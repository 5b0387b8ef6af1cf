"""Hammer the `seqdsl` command with hostile input and report what breaks.

Every case is one `python -m seqdsl ...` child process. Cases are the fixed
hostile inputs of issue 9 (bad flags and flag combinations, unreadable files,
directories as specs, outputs over inputs, huge or malformed --seq/--batch,
bad --hw profiles, /dev/full, ...) followed by fuzzed specs: random
mutations of the bundled specs (characters, tokens and lines deleted,
duplicated or inserted; huge numbers; control characters) run through
check, graph, fmt --check and compile --estimate.

For each case it records the exit code, wall time and the child's peak RSS
(os.wait4), and flags:

* traceback   - "Traceback" on stderr
* exit3       - exit code 3 (an internal error: always a bug)
* hang        - still running after --hang seconds (killed)
* memory      - peak RSS over 1 GiB
* changed     - an input file (spec, import, profile) differs or is gone afterwards
* leftover    - a failed case left a new file behind (a half-written output)
* multiline   - a usage error (exit 2) that is not exactly one line
* signal      - killed by a signal other than the SIGPIPE/SIGINT it was sent

Usage:
    python benchmarks/hostile_cli.py [--cases N] [--seed S] [--hang 10] [--no-torch]

N counts the fuzzed cases (the fixed ones always run). Writes
benchmarks/results/hostile_cli.json and prints a summary; exits 1 if any
case was flagged.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEMORY_LIMIT = 1024 ** 3


# ------------------------------------------------------------------ running one case
def run_case(argv: list[str], cwd: Path, hang: float, stdout_path: str | None = None,
             sigint_after: float | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SEQDSL_DEBUG", None)
    out_f = open(stdout_path, "wb") if stdout_path else tempfile.TemporaryFile()
    err_f = tempfile.TemporaryFile()
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "seqdsl", *argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                         stdout=out_f, stderr=err_f)
    hung = sent = False
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        elapsed = time.monotonic() - t0
        if sigint_after is not None and not sent and elapsed >= sigint_after:
            p.send_signal(signal.SIGINT)
            sent = True
        if elapsed > hang:
            hung = True
            p.kill()
            pid, status, usage = os.wait4(p.pid, 0)
            break
        time.sleep(0.01)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    err_f.seek(0)
    stderr = err_f.read().decode("utf-8", "replace")
    out_f.seek(0) if not stdout_path else None
    stdout = b"" if stdout_path else out_f.read()
    out_f.close()
    err_f.close()
    return {"argv": argv, "rc": p.returncode, "wall_s": round(wall, 3), "peak_rss": usage.ru_maxrss * 1024,
            "hung": hung, "stderr": stderr[-2000:], "stdout_bytes": len(stdout), "sigint": sent}


def hash_tree(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            try:
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
            except OSError:
                out[str(p.relative_to(root))] = "unreadable"
    return out


def flags(r: dict, expect_signal: bool = False) -> list[str]:
    f = []
    if "Traceback" in r["stderr"]:
        f.append("traceback")
    if r["rc"] == 3:
        f.append("exit3")
    if r["hung"]:
        f.append("hang")
    if r["peak_rss"] > MEMORY_LIMIT:
        f.append("memory")
    if r["rc"] == 2 and len(r["stderr"].strip().splitlines()) > 1:
        f.append("multiline")
    if r["rc"] < 0 and not r["hung"] and not expect_signal:
        f.append("signal")
    return f


# ------------------------------------------------------------------ fixed cases
def fixed_cases(work: Path, torch: bool) -> list[dict]:
    """(argv, stdout file or None, sigint delay or None) of the issue's hostile inputs."""
    s = "specs"
    tlm, lstm, conv = f"{s}/transformer_lm.seq", f"{s}/lstm_lm.seq", "conv.seq"
    out = "out"
    cases = [
        # flags and combinations
        [], ["--nope"], ["check"], ["check", "missing.seq"], ["check", s], ["check", "/dev/null"],
        ["check", "unreadable.seq"], ["check", "binary.seq"], ["check", "empty.seq"],
        ["graph", tlm, "--format", "png"], ["check", tlm, "--model", "nope"],
        ["compile", tlm], ["compile", tlm, "--estimate", "-o", f"{out}/m.py"],
        ["compile", tlm, "--estimate", "--dtype", "float8"], ["compile", tlm, "--estimate", "--optimizer", "lion"],
        ["compile", tlm, "--estimate", "--seq", ""], ["compile", tlm, "--estimate", "--seq", ","],
        ["compile", tlm, "--estimate", "--seq", "0"], ["compile", tlm, "--estimate", "--seq", "-5"],
        ["compile", tlm, "--estimate", "--seq", "1e400"], ["compile", tlm, "--estimate", "--seq", "1..10000000000"],
        ["compile", tlm, "--estimate", "--seq", "1..1e300"], ["compile", tlm, "--estimate", "--seq", "9" * 100],
        ["compile", tlm, "--estimate", "--seq", "Q=5"], ["compile", tlm, "--estimate", "--seq", "T=5,T=6"],
        ["compile", tlm, "--estimate", "--seq", "T=nan"], ["compile", tlm, "--estimate", "--seq", "inf"],
        ["compile", tlm, "--estimate", "--seq", "64..32"], ["compile", tlm, "--estimate", "--seq", "3..3"],
        ["compile", tlm, "--estimate", "--seq", ",".join(["64"] * 40_000)],
        ["compile", tlm, "--estimate", "--batch", "0"], ["compile", tlm, "--estimate", "--batch", "1e99"],
        ["compile", tlm, "--estimate", "--batch", "x"],
        ["compile", conv, "--estimate", "--seq", "64"], ["compile", conv, "--estimate"],
        ["compile", tlm, "--estimate", "--per-layer", "--formula", "--json", "--seq", "1..100000"],
        # hardware profiles
        *[["compile", lstm, "--estimate", "--seq", "64", "--hw", f"hw/{name}"] for name in HW_FILES],
        ["compile", lstm, "--estimate", "--hw", "hw"], ["compile", lstm, "--estimate", "--hw", "nope"],
        ["compare", lstm, tlm, "--metric", "latency", "--hw", "hw/deep.json"],
        # outputs over inputs, bad outputs
        ["compile", tlm, "-o", tlm], ["compile", "spec.py", "-o", "spec.py"], ["compile", "spec.py", "-o", "link.py"],
        ["compile", tlm, "-o", f"{s}/blocks/common.seq"], ["compile", tlm, "-o", s], ["compile", tlm, "-o", "nodir/x.py"],
        ["compile", tlm, "-o", "readonly/x.py"], ["compile", tlm, "-o", "/dev/full"],
        ["compare", lstm, tlm, "--plot", lstm], ["compare", lstm, tlm, "--plot", "x.txt"],
        ["compare", lstm, tlm, "--plot", s], ["compare", lstm, tlm, "--plot", "readonly/x.png"],
        ["compare", lstm, "--seq", "T=0..8"], ["compare", lstm, tlm, "--seq", "Q=5"],
        ["compare", lstm, tlm, "--metric", "nope"], ["compare", lstm],
        ["calibrate", "-o", s], ["calibrate", "-o", "x.txt"],
        ["fmt", "--check", s], ["fmt", "--stdout", "missing.seq"],
        # exports and measurements (torch)
        *([["export", tlm, "-o", f"{out}/m.txt"], ["export", tlm, "-o", f"{out}/m.pt2", "--seq", "T=-5"],
           ["export", tlm, "-o", f"{out}/m.pt2", "--seq", "T=100000000000"],
           ["export", tlm, "-o", f"{out}/m.pt2", "--seq", "Q=5"], ["export", tlm, "-o", tlm],
           ["verify", tlm, "--seq", "1000000"], ["bench", lstm, "--seq", "64", "--batch", "100000"],
           ["verify", conv, "--seq", "64"], ["bench", lstm, "--seq", "64", "--reps", "0"],
           ["verify", lstm, "--device", "tpu"], ["bench", lstm, "--seq", "64", "--backend", "nope"],
           ["verify", lstm, "--tolerance", "flops=x"]] if torch else []),
    ]
    out_cases = [{"argv": a, "stdout": None, "sigint": None} for a in cases]
    # stdout to a full device, and Ctrl-C at a few points
    if os.path.exists("/dev/full"):
        for a in (["check", tlm], ["graph", tlm], ["fmt", "--stdout", tlm],
                  ["compile", tlm, "--estimate", "--json", "--seq", "1..100000"]):
            out_cases.append({"argv": a, "stdout": "/dev/full", "sigint": None})
    for delay in (0.2, 0.4, 0.6, 1.0):
        out_cases.append({"argv": ["compile", tlm, "--estimate", "--seq", "1..1000000"], "stdout": None,
                          "sigint": delay})
    return out_cases


HW_FILES = {
    "deep.json": "[" * 200_000 + "]" * 200_000,
    "deepobj.json": '{"a":' * 10_000 + "1" + "}" * 10_000,
    "nan.json": '{"name":"x","peak_flops":{"float32":NaN},"bandwidth":1,"step_latency":0}',
    "inf.json": '{"name":"x","peak_flops":{"float32":1e999},"bandwidth":1,"step_latency":0}',
    "neg.json": '{"name":"x","peak_flops":{"float32":-1},"bandwidth":-1,"step_latency":0}',
    "types.json": '{"name":["x"],"peak_flops":"fast","bandwidth":"1","step_latency":null}',
    "empty.json": "",
    "list.json": "[]",
    "broken.json": '{"name": "x",',
    "binary.json": "\x00\xff\xfe",
}


def setup(work: Path) -> None:
    shutil.copytree(ROOT / "specs", work / "specs")
    (work / "out").mkdir()
    (work / "hw").mkdir()
    for name, text in HW_FILES.items():
        (work / "hw" / name).write_bytes(text.encode("latin-1"))
    (work / "conv.seq").write_text("model c {\n    input x: float[B, T, 4]\n"
                                   "    y = x -> conv1d(8, 100, padding=valid)\n    output y\n}\n")
    (work / "empty.seq").write_text("")
    (work / "binary.seq").write_bytes(bytes(range(256)) * 8)
    (work / "unreadable.seq").write_text("model m {}\n")
    os.chmod(work / "unreadable.seq", 0)
    shutil.copy(work / "specs" / "lstm_lm.seq", work / "spec.py")
    os.symlink("spec.py", work / "link.py")
    (work / "readonly").mkdir()
    os.chmod(work / "readonly", 0o555)


# ------------------------------------------------------------------ fuzzing
JUNK = ["\x00", "\x1b[31m", "\t", "\r", "\u202e", "é", "{", "}", "(", ")", "[", "]", "->", "=", ",", ":",
        "repeat(100000) {", "residual {", "segments(length=0, memory=-1) {", "#", "\"", "'", "\\",
        "import \"specs/transformer_lm.seq\"\n", "import \"/etc/passwd\"\n", "let x = 1 / 0\n"]
NUMBERS = ["0", "-1", "1" + "0" * 60, "99999999999", "2**64", "1e9", "0.5", "-0", "00"]


def mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 4)):
        op = rng.choice(("del_chars", "dup_chars", "insert", "number", "del_line", "dup_line",
                         "swap_lines", "del_token", "dup_token", "truncate"))
        n = len(text)
        if n == 0:
            text = rng.choice(JUNK)
            continue
        i = rng.randrange(n)
        if op == "del_chars":
            text = text[:i] + text[i + rng.randint(1, 8):]
        elif op == "dup_chars":
            j = min(n, i + rng.randint(1, 30))
            text = text[:j] + text[i:j] * rng.randint(1, 50) + text[j:]
        elif op == "insert":
            text = text[:i] + rng.choice(JUNK) + text[i:]
        elif op == "number":
            import re
            nums = list(re.finditer(r"\d+", text))
            if nums:
                m = rng.choice(nums)
                text = text[:m.start()] + rng.choice(NUMBERS) + text[m.end():]
        elif op in ("del_line", "dup_line", "swap_lines"):
            lines = text.split("\n")
            k = rng.randrange(len(lines))
            if op == "del_line":
                del lines[k]
            elif op == "dup_line":
                lines[k:k] = [lines[k]] * rng.randint(1, 200)
            else:
                m = rng.randrange(len(lines))
                lines[k], lines[m] = lines[m], lines[k]
            text = "\n".join(lines)
        elif op in ("del_token", "dup_token"):
            toks = text.split(" ")
            k = rng.randrange(len(toks))
            if op == "del_token":
                del toks[k]
            else:
                toks.insert(k, toks[k])
            text = " ".join(toks)
        else:
            text = text[:i]
    return text


FUZZ_COMMANDS = (["check"], ["graph"], ["graph", "--format", "json"], ["fmt", "--check"], ["fmt", "--stdout"],
                 ["compile", "--estimate", "--seq", "64,4096"], ["compile", "--estimate", "--json", "--per-layer"])


# ------------------------------------------------------------------ main
def write_results(a, results, flagged, t_start, planned) -> dict:
    """The summary and the flagged cases to --out (rewritten after every case,
    so an interrupted run still leaves its results)."""
    counts = {k: sum(k in r["flags"] for r in results)
              for k in ("traceback", "exit3", "hang", "memory", "changed", "leftover", "multiline", "signal",
                        "sigint")}
    rcs: dict[str, int] = {}
    for r in results:
        rcs[str(r["rc"])] = rcs.get(str(r["rc"]), 0) + 1
    summary = {"cases": len(results), "fixed": sum(not r["fuzz"] for r in results),
               "fuzzed": sum(r["fuzz"] for r in results), "seed": a.seed, "hang_s": a.hang, "flagged": len(flagged), "planned": planned,
               **counts, "exit_codes": rcs, "max_wall_s": max((r["wall_s"] for r in results), default=0),
               "max_peak_rss_mib": round(max((r["peak_rss"] for r in results), default=0) / 2 ** 20, 1),
               "total_s": round(time.monotonic() - t_start, 1)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"summary": summary, "flagged": flagged,
                                       "cases": [{k: r[k] for k in ("argv", "rc", "wall_s", "peak_rss", "flags")}
                                                 for r in results]}, indent=1) + "\n")
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description="hammer the seqdsl CLI with hostile input")
    ap.add_argument("--cases", type=int, default=200, help="fuzzed cases (the fixed ones always run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hang", type=float, default=10.0, help="seconds before a case counts as hung")
    ap.add_argument("--no-torch", action="store_true", help="skip the cases that import torch (export, verify, bench)")
    ap.add_argument("--no-fixed", action="store_true", help="only the fuzzed cases")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "hostile_cli.json"))
    a = ap.parse_args()
    rng = random.Random(a.seed)
    bundled = sorted((ROOT / "specs").glob("*.seq"))
    results, flagged = [], []
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hostile_cli.") as tmp:
        work = Path(tmp)
        setup(work)
        cases = [] if a.no_fixed else fixed_cases(work, not a.no_torch)
        fuzz_dir = work / "fuzz"
        fuzz_dir.mkdir()
        for k in range(a.cases):
            src = rng.choice(bundled)
            text = mutate(src.read_text(), rng)
            path = fuzz_dir / f"f{k}.seq"
            path.write_text(text, encoding="utf-8", errors="surrogateescape")
            cmd = rng.choice(FUZZ_COMMANDS)
            cases.append({"argv": [cmd[0], str(path.relative_to(work)), *cmd[1:]], "stdout": None, "sigint": None,
                          "fuzz": True})
        # imports in the fuzzed specs resolve against fuzz/: give them the blocks
        shutil.copytree(work / "specs" / "blocks", fuzz_dir / "blocks")
        for i, case in enumerate(cases):
            before = hash_tree(work)
            r = run_case(case["argv"], work, a.hang, case["stdout"], case["sigint"])
            after = hash_tree(work)
            # an input that differs or went missing; a new file left by a failed command
            changed = sorted(k for k in before if before[k] != after.get(k))
            left = sorted(k for k in after if k not in before and r["rc"] != 0)
            f = flags(r, expect_signal=case["sigint"] is not None)
            if case["sigint"] is not None and r["rc"] not in (0, 130):
                f.append("sigint")
            if changed:
                f.append("changed")
            if left:
                f.append("leftover")
            for k in after:              # outputs of a successful case: not inputs of the next
                if k not in before:
                    (work / k).unlink()
            r.update(flags=f, changed=changed, leftover=left, fuzz=bool(case.get("fuzz")))
            if case.get("fuzz") and f:
                r["spec_text"] = (work / case["argv"][1]).read_text(errors="replace")[:4000]
            if len(r["argv"]) and any(len(x) > 200 for x in r["argv"]):
                r["argv"] = [x if len(x) <= 200 else x[:100] + f"...({len(x)} chars)" for x in r["argv"]]
            results.append(r)
            if f:
                flagged.append(r)
                print(f"[{i + 1}/{len(cases)}] FLAG {','.join(f)}: seqdsl {' '.join(r['argv'])[:160]} "
                      f"-> rc {r['rc']}: {r['stderr'].strip().splitlines()[-1][:200] if r['stderr'].strip() else ''}",
                      flush=True)
            write_results(a, results, flagged, t_start, len(cases))
            if not f and (i + 1) % 25 == 0:
                print(f"[{i + 1}/{len(cases)}] ok so far ({len(flagged)} flagged)", flush=True)
        os.chmod(work / "readonly", 0o755)
    summary = write_results(a, results, flagged, t_start, len(cases))
    print(json.dumps(summary, indent=1))
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
