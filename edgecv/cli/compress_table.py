"""The table the compression commands (qat, prune, distill) print: one row per artifact."""

from __future__ import annotations

from edgecv.cli.table import fmt_float, human_bytes, render

HEADERS = ["artifact", "method", "top-1 %", "size", "zipped", "p50 ms"]


def format_rows(rows: list[dict]) -> str:
    """``rows``: dicts with ``name``, ``method`` and a :class:`converters.footprint.Footprint` under ``figures``."""
    table = []
    for r in rows:
        f = r["figures"]
        table.append([r["name"], r["method"], fmt_float(None if f.top1 is None else 100 * f.top1, ".2f"),
                      human_bytes(f.size_bytes), human_bytes(f.zipped_bytes), fmt_float(f.p50_ms, ".3f")])
    return render(HEADERS, table, align="llrrrr")
