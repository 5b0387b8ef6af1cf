"""FLOPs, bytes and seconds in human units, for tables and messages."""
from __future__ import annotations


def human_flops(v) -> str:
    if v is None:
        return "-"
    for unit, scale in (("E", 10 ** 18), ("P", 10 ** 15), ("T", 10 ** 12), ("G", 10 ** 9), ("M", 10 ** 6),
                        ("k", 10 ** 3)):
        if v >= scale:
            return f"{v / scale:.3g} {unit}"
    return str(v)


def human_bytes(v) -> str:
    if v is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if v < 1024 or unit == "PiB":
            if unit == "B":
                return f"{v:.0f} B"
            # 3 significant digits, but never "1.01e+03": 1000-1023 print whole
            return f"{v:.0f} {unit}" if v >= 999.5 else f"{v:.3g} {unit}"
        v /= 1024
    return str(v)  # pragma: no cover


def human_seconds(v) -> str:
    """Seconds in the unit that keeps 1-3 digits before the point: ns, µs, ms, s."""
    if v is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if v >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v / 1e-9:.3g} ns"
