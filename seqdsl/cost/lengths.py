"""The lengths a command is asked about: `--seq` (`64,1024`, `64..65536`,
`T=1024,S=256`) and `--batch`, parsed and bounded, for every command and the
library functions that take the same text."""
from __future__ import annotations

import re

from ..errors import UsageError
from ..limits import MAX_LENGTH

_INT = re.compile(r"^[0-9][0-9_]*$")
MAX_POINTS = 100_000


def parse_int(text: str, what: str) -> int:
    t = text.strip()
    if not _INT.match(t) and not re.match(r"^[0-9]+e[0-9]+$", t):
        raise UsageError(f"{what} '{text}' is not a positive integer")
    if len(t) > 40:
        raise UsageError(f"{what} '{text[:20]}...' is too long to be a length")
    if "e" in t:
        mantissa, _, exp = t.partition("e")
        if int(exp) > 15:
            raise UsageError(f"{what} '{text}' is past the largest length, {MAX_LENGTH:.0e}")
        value = int(mantissa) * 10 ** int(exp)
    else:
        value = int(t.replace("_", ""))
    if value < 1:
        raise UsageError(f"{what} must be at least 1, got {value}")
    if value > MAX_LENGTH:
        raise UsageError(f"{what} {value:,} is past the largest length, {MAX_LENGTH:.0e}")
    return value


def log_spaced(lo: int, hi: int, n: int) -> list[int]:
    """n lengths from lo to hi (both included), evenly spaced on a log scale
    and rounded to integers (fewer where rounding makes two equal)."""
    if n > MAX_POINTS:
        raise UsageError(f"--seq asks for {n:,} points, past the limit of {MAX_POINTS:,}")
    if n == 1 or lo == hi:
        return [lo] if n == 1 else sorted({lo, hi})
    ratio = (hi / lo) ** (1 / (n - 1))
    out = sorted({min(hi, max(lo, round(lo * ratio ** i))) for i in range(n)} | {lo, hi})
    return out


def parse_seq(text: str | None, dims: tuple[str, ...]):
    """`64,1024` (every sequence dim), `64..65536` (powers of two),
    `16..10000000:50` (50 points, log-spaced), `T=1024,S=256`.
    Returns a list of ints or of {dim: int}."""
    if text is None:
        return None
    text = text.strip()
    if not text:
        raise UsageError("--seq is empty")
    if "=" in text:
        axes: dict[str, list[int]] = {}
        for part in text.split(","):
            name, _, value = part.partition("=")
            name = name.strip()
            if not name.isidentifier() or not value.strip():
                raise UsageError(f"--seq '{part}' is not DIM=LENGTH or DIM=LO..HI")
            if name not in dims:
                raise UsageError(f"--seq names dim '{name}', which the model does not have "
                                 f"(its sequence dims: {', '.join(dims) or 'none'})")
            if name in axes:
                raise UsageError(f"--seq gives dim '{name}' twice")
            axes[name] = (_lengths(value.strip(), f"--seq {name}={value.strip()}") if ".." in value
                          else [parse_int(value, f"--seq {name}")])
        missing = [d for d in dims if d not in axes]
        if missing:
            raise UsageError(f"--seq gives no length for dim '{missing[0]}'")
        total = 1
        for values in axes.values():
            total *= len(values)
        if total > MAX_POINTS:
            raise UsageError(f"--seq asks for {total:,} points (every combination of the dims' "
                             f"lengths), past the limit of {MAX_POINTS:,}")
        # every combination, the last dim varying fastest (dims in the model's order)
        points: list[dict[str, int]] = [{}]
        for d in dims:
            points = [{**p, d: v} for p in points for v in axes[d]]
        return points
    if ".." in text:
        return _lengths(text, f"--seq {text}")
    parts = text.split(",")
    if len(parts) > MAX_POINTS:
        raise UsageError(f"--seq lists {len(parts)} lengths, past the limit of {MAX_POINTS}")
    return [parse_int(p, "--seq length") for p in parts]


def _lengths(text: str, what: str) -> list[int]:
    """`LO..HI` (the powers of two between) or `LO..HI:N` (N log-spaced points)."""
    lo_s, _, hi_s = text.partition("..")
    hi_s, colon, n_s = hi_s.partition(":")
    lo, hi = parse_int(lo_s, "--seq"), parse_int(hi_s, "--seq")
    if lo > hi:
        raise UsageError(f"{what}: the range is empty (write the smaller length first)")
    if colon:
        return log_spaced(lo, hi, parse_int(n_s, f"{what}: the number of points"))
    out, p = [], 1
    while p <= hi:
        if p >= lo:
            out.append(p)
        p *= 2
    if not out:
        raise UsageError(f"{what} contains no power of two (write LO..HI:N for N log-spaced lengths)")
    return out
