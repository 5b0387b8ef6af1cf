"""The mistakes a newcomer makes first, one bad spec each in tests/bad_specs/:
`seqdsl check` refuses it (exit 1, no traceback) with the first diagnostic at
the `# expect: LINE:COLLO-COLHI words` of its header (the conformance corpus's
format; the words may be in the help), and none of the words of an optional
`# not: words` second line (a suggestion that would mislead). An `# also:
LINE:COL ...` second line lists where the diagnostics after the first point:
the check goes on past the first error."""
import re
from pathlib import Path

import pytest

from seqdsl.cli import main
from seqdsl.errors import suggest

BAD = sorted((Path(__file__).resolve().parent / "bad_specs").glob("*.seq"))
DIAG = re.compile(r"^(?P<path>[^\n:]+):(?P<line>\d+):(?P<col>\d+): error: (?P<msg>.*)$", re.M)
EXPECT = re.compile(r"^# expect: (?P<line>\d+):(?P<lo>\d+)-(?P<hi>\d+) (?P<words>.+)$")
NOT = re.compile(r"^# not: (?P<text>.+)$")
ALSO = re.compile(r"^# also: (?P<spots>.+)$")


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_spec_is_refused_at_the_spot(path, capsys):
    lines = path.read_text().splitlines()
    header = EXPECT.match(lines[0])
    assert header, f"{path.name}: malformed expect header"
    code = main(["check", str(path)])
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 1, text
    assert "Traceback" not in text
    diag = DIAG.search(text)
    assert diag, text
    assert int(diag["line"]) == int(header["line"]), text
    assert int(header["lo"]) <= int(diag["col"]) <= int(header["hi"]), text
    for word in header["words"].split():
        assert word.lower() in text.lower(), (word, text)
    absent = NOT.match(lines[1])
    if absent:
        assert absent["text"].lower() not in text.lower(), text
    also = ALSO.match(lines[1])
    spots = [f"{m['line']}:{m['col']}" for m in DIAG.finditer(text)]
    assert spots[1:] == (also["spots"].split() if also else []), text


def test_the_corpus_is_there():
    assert len(BAD) >= 20


@pytest.mark.parametrize("name, candidates, expected", [
    ("atention", ["attention", "linear"], "attention"),
    ("attn", ["attention", "linear"], "attention"),
    ("lienar", ["linear", "layernorm"], "linear"),
    ("baias", ["out", "bias"], "bias"),
    ("dd", ["d", "h"], "d"),
    ("scr", ["src", "x"], "src"),
    ("reshape", ["repeat", "residual"], None),
    ("layout", ["out", "bias", "tie"], None),
    ("prelu", ["relu", "gelu", "silu"], None),
    ("x", ["y"], None),
])
def test_suggestions_only_when_close(name, candidates, expected):
    assert suggest(name, candidates) == (f"did you mean '{expected}'?" if expected else None)
