"""How the commands print tables: sequence-length labels and a plain text
grid (numbers in human units: seqdsl.units)."""
from __future__ import annotations


def seq_label(seq: dict) -> str:
    values = set(seq.values())
    if len(values) == 1:
        return f"{next(iter(values)):,}"
    return ",".join(f"{k}={v}" for k, v in seq.items())


def grid(head, rows) -> str:
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    fmt = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])
