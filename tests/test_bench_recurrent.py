"""Smoke test of benchmarks/recurrent_layers.py --quick: the results files
have their structure and every layer appears, with its reference or the
reason it was skipped. Timings are not asserted (speed lives in benchmarks/)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from test_backend_build import one_thread  # noqa: E402,F401  (autouse)

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "recurrent_layers.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_recurrent_layers", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _check_layer(row, lengths):
    assert row["params"] > 0 and row["wall_s"] >= 0
    if row["reference"] is None:                              # skipped, never silently
        assert row["reference_skipped"]
    for t in lengths:
        step = row["steps"][str(t)]
        for col in ("seqdsl_ms", "attention_ms") + (("reference_ms",) if row["reference"] else ()):
            assert step[col]["best"] > 0 and step[col]["median"] >= step[col]["best"]
        if row["reference"]:       # the same weights: the same function
            assert step["max_abs_diff_vs_reference"] < 1e-3, (row["kind"], step)


@pytest.fixture(scope="module")
def quick_all(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("quick_all")
    return bench.main(["--quick", "--no-compile", "--out", str(out)]), out


@pytest.fixture(scope="module")
def quick_compiled(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("quick_compiled")
    return bench.main(["--quick", "--layers", "mingru", "--out", str(out)]), out


def test_quick_run_covers_every_layer(bench, quick_all):
    res, out = quick_all
    saved = json.loads((out / "recurrent_layers.json").read_text())
    assert saved == json.loads(json.dumps(res))
    assert saved["complete"] and saved["quick"] and saved["reps"] == 1 and saved["threads"] == 1
    assert len(saved["loadavg_start"]) == 3 and len(saved["loadavg_end"]) == 3
    assert [r["kind"] for r in saved["layers"]] == list(bench.CALLS)
    md = (out / "recurrent_layers.md").read_text()
    for row in saved["layers"]:
        _check_layer(row, saved["lengths"])
        assert row["compile"]["skipped"] == "--no-compile" and "compiled_ms" not in row["steps"]["32"]
        assert f"`{row['call']}`" in md
    assert "Incomplete" not in md and "## One compile across five lengths" in md


def test_quick_run_with_compile(quick_compiled):
    """The compiled columns and the five-length compile (eager backend in --quick)."""
    (row,) = quick_compiled[0]["layers"]
    c = row["compile"]
    assert c["backend"] == "eager" and len(c["first_step_s"]) == len(c["lengths"]) == 5
    assert c["graphs"] >= 1 and c["graphs"] == c["graphs_after_each"][-1] and c["compile_s"] > 0
    step = row["steps"]["32"]
    assert step["compiled_ms"]["best"] > 0 and step["max_abs_diff_compiled"] < 1e-4


def test_merge_takes_each_layer_from_the_first_run_that_has_it(bench, quick_all, quick_compiled, tmp_path):
    res = bench.main(["--merge", str(quick_compiled[1] / "recurrent_layers.json"),
                      str(quick_all[1] / "recurrent_layers.json"), "--out", str(tmp_path)])
    assert res["complete"] and [r["kind"] for r in res["layers"]] == list(bench.CALLS)
    runs = {r["kind"]: r["run"] for r in res["layers"]}
    assert runs == {k: 1 if k == "mingru" else 2 for k in bench.CALLS}
    assert "compiled_ms" in res["layers"][list(bench.CALLS).index("mingru")]["steps"]["32"]
    md = (tmp_path / "recurrent_layers.md").read_text()
    assert "Merged from 2 runs" in md and "`mingru` (run 1)" in md and "(run 2)" in md


@pytest.fixture(scope="module")
def quick_one_length(bench, tmp_path_factory):
    """mingru alone at T = 24, compiled at that one length."""
    out = tmp_path_factory.mktemp("quick_one_length")
    return bench.main(["--quick", "--layers", "mingru", "--lengths", "24", "--compile-lengths", "24",
                       "--out", str(out)]), out


def test_merge_takes_each_length_from_the_first_run_that_timed_it(bench, quick_all, quick_compiled,
                                                                   quick_one_length, tmp_path):
    (row,) = quick_one_length[0]["layers"]
    assert list(row["steps"]) == ["24"] and row["compile"]["lengths"] == [24]
    runs = [str(quick_one_length[1] / "recurrent_layers.json"), str(quick_compiled[1] / "recurrent_layers.json"),
            str(quick_all[1] / "recurrent_layers.json")]
    res = bench.main(["--merge", *runs, "--out", str(tmp_path / "a")])
    assert res["lengths"] == [24, 32] and not res["complete"]      # seven layers were not timed at 24
    by_kind = {r["kind"]: r for r in res["layers"]}
    mingru = by_kind["mingru"]
    assert {t: s["run"] for t, s in mingru["steps"].items()} == {"24": 1, "32": 2}
    assert "compiled_ms" in mingru["steps"]["24"]
    assert mingru["compile_run"] == 2 and len(mingru["compile"]["lengths"]) == 5   # the most lengths wins
    assert list(by_kind["gla"]["steps"]) == ["32"] and by_kind["gla"]["steps"]["32"]["run"] == 3
    md = (tmp_path / "a" / "recurrent_layers.md").read_text()
    t24 = md.split("## T = 24")[1].split("## T = 32")[0]
    assert "`mingru` (run 1)" in t24 and "| `gla(1)` | " in t24 and "not run at this length" in t24
    assert "`mingru` (run 2, T = 16, 32, 40, 24, 48)" in md

    # a merged report merged again stands for its runs: the same report
    again = bench.main(["--merge", str(tmp_path / "a" / "recurrent_layers.json"), "--out", str(tmp_path / "b")])
    assert again["layers"] == json.loads(json.dumps(res["layers"])) and again["runs"] == res["runs"]
    assert (tmp_path / "b" / "recurrent_layers.md").read_text() == md


def test_bad_arguments_are_refused(bench, capsys):
    assert bench.parse_args(["--lengths", "1024"]).lengths == [1024]
    for argv, words in ((["--layers", "mamba,lstm"], "unknown kind(s) lstm"), (["--reps", "0"], "--reps"),
                        (["--lengths", "1024,4k"], "--lengths: '1024,4k' is not comma-separated integers"),
                        (["--lengths", "1"], "--lengths: give lengths of at least 2")):
        with pytest.raises(SystemExit) as e:
            bench.parse_args(argv)
        assert e.value.code == 2 and words in capsys.readouterr().err


def test_reference_max_length_leaves_the_reference_out_above_it_and_says_so(bench, tmp_path):
    res = bench.main(["--quick", "--no-compile", "--layers", "mingru", "--lengths", "16,32",
                      "--reference-max-length", "16", "--out", str(tmp_path)])
    (row,) = res["layers"]
    assert "reference_ms" in row["steps"]["16"] and "reference_skipped" not in row["steps"]["16"]
    assert "reference_ms" not in row["steps"]["32"] and "16" in row["steps"]["32"]["reference_skipped"]
    md = (tmp_path / "recurrent_layers.md").read_text()
    assert "not run (--reference-max-length)" in md.split("## T = 32")[1].split("##")[0]


def test_merge_leaves_out_runs_no_row_is_from(bench, quick_all, tmp_path):
    path = str(quick_all[1] / "recurrent_layers.json")
    res = bench.main(["--merge", path, path, "--out", str(tmp_path)])
    assert len(res["runs"]) == 1
    assert {r["run"] for r in res["layers"]} == {r["compile_run"] for r in res["layers"]} == {1}
    assert "run 2" not in (tmp_path / "recurrent_layers.md").read_text()
