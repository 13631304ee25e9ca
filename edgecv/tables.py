"""Plain-text tables people can read in a terminal.

Example:
    >>> print(render(["name", "ms"], [["a", "1.50"], ["bb", "12.00"]], align="lr"))
    name     ms
    ----  -----
    a      1.50
    bb    12.00
"""

from __future__ import annotations


def render(headers: list[str], rows: list[list[str]], *, align: str | None = None) -> str:
    """Columns padded to their widest cell; ``align`` is one ``l``/``r`` per column (default: left)."""
    align = align or "l" * len(headers)
    cells = [list(map(str, headers))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        parts = [c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(row, widths, align)]
        return "  ".join(parts).rstrip()

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def human_bytes(n: int | float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def fmt_float(x: float | None, spec: str = ".2f", missing: str = "-") -> str:
    return missing if x is None else format(x, spec)
