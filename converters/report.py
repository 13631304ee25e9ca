"""The export report: one table (terminal and Markdown), the JSON, and a PNG of accuracy against latency
and size.

Example:
    >>> write_report(report, Path("artifacts"))      # doctest: +SKIP
    [PosixPath('artifacts/report.json'), PosixPath('artifacts/report.md'), PosixPath('artifacts/report.png')]
"""

from __future__ import annotations

import json
from pathlib import Path

from edgecv.tables import fmt_float, human_bytes, render
from edgecv.fileio import atomic_write_bytes, atomic_write_text
from edgecv.formats import FORMATS

FIDELITY_NOTE = ("SQNR dB and cosine: each output against the source's over the whole set (100 dB: identical within "
                 "float rounding); a row shows its worst output, report.json every output")
HEADERS = ["format", "precision", "check", "size", "x size", "metric", "drop pts", "SQNR dB", "cosine", "p50 ms", "float layers"]
ALIGN = "lllrrrrrrrr"
LADDER_HEADERS = ["rung", "changes", "result", "drop pts", "SQNR dB", "seconds"]
MARKERS = "os^Dv<>p"  # plot markers, one per format in edgecv.formats.FORMATS order


def metric_name(report) -> str:
    s = report.source_scores
    if s is not None and s.map is not None:
        return "mAP %"
    if s is not None and s.map50_float is not None:
        return "mAP50 vs float %"
    if s is not None and s.detection_f1 is not None:
        return "det F1 %"
    if s is not None and s.top1 is not None:
        return "top-1 %"
    if s is not None and s.agreement is not None:
        return "agree %"
    return "metric"


def _metric(scores) -> float | None:
    if scores is None:
        return None
    if scores.map is not None:
        return 100 * scores.map
    if scores.map50_float is not None:
        return 100 * scores.map50_float
    if scores.detection_f1 is not None:
        return 100 * scores.detection_f1
    if scores.top1 is not None:
        return 100 * scores.top1
    if scores.agreement is not None:
        return 100 * scores.agreement
    return None


def rows(report) -> list[list[str]]:
    """One row for the source, then one per artifact."""
    src = report.source_scores
    out = [["source", "-", "", human_bytes(report.source_size) if report.source_size else "-", "1.00" if report.source_size else "-",
            fmt_float(_metric(src), ".2f"), "", "", "", "", ""]]
    for a in report.artifacts:
        s = a.scores
        ratio = a.size_bytes / report.source_size if report.source_size and a.size_bytes else None
        kept = (a.fallback or {}).get("kept")
        out.append([
            a.format,
            a.precision,
            "ok" if a.status == "passed" else "FAILED",
            human_bytes(a.size_bytes) if a.size_bytes else "-",
            fmt_float(ratio, ".2f"),
            fmt_float(_metric(s), ".2f"),
            fmt_float(a.drop, "+.2f"),
            fmt_float(None if s is None else s.sqnr_db, ".1f"),
            fmt_float(None if s is None else s.cosine, ".4f"),
            fmt_float(a.p50_ms, ".3f"),
            str(len(kept)) if kept else ("0" if a.precision in ("int8", "int16x8") and s is not None else ""),
        ])
    return out


def _fallback_summary(fallback: dict) -> str:
    tries = len(fallback.get("attempts", []))
    return f"layers ranked by {fallback.get('ranking_method')}, {tries} builds tried, {fallback.get('seconds')} s"


def _ladder_rows(ladder: dict) -> list[list[str]]:
    """One row per rung of the PTQ ladder (converters/ladder.py): rung, changes, result, drop, SQNR, seconds."""
    out = []
    for r in ladder.get("attempts", []):
        changes = ", ".join(f"{k}={v}" for k, v in r.get("changes", {}).items()) or "-"
        failed = f"failed: {r['error']}" if r.get("error") else "failed"
        result = f"skipped: {r['skipped']}" if "skipped" in r else ("passed" if r.get("passed") else failed)
        out.append([r["rung"], changes, result, fmt_float(r.get("drop"), "+.2f"), fmt_float(r.get("sqnr_db"), ".1f"),
                    fmt_float(r.get("seconds"), ".1f")])
    return out


def _ladder_summary(ladder: dict) -> str:
    tried = [r for r in ladder.get("attempts", []) if "skipped" not in r and r["rung"] != "base"]
    head = f"passed with {ladder['chosen']}" if ladder.get("chosen") else f"no rung passed (best: {ladder.get('best')})"
    return f"{head}, {len(tried)} settings tried, {ladder.get('seconds')} s" + (f"; {ladder['note']}" if ladder.get("note") else "")


def _latency_verdict(fallback: dict) -> str:
    """``latency p50 0.86 ms with the float layers, fp32 0.70 ms``, or "" when either was not measured."""
    if fallback.get("p50_ms") is None or fallback.get("fp32_p50_ms") is None:
        return ""
    return f"latency p50 {fallback['p50_ms']:.3g} ms with the float layers, fp32 {fallback['fp32_p50_ms']:.3g} ms"


def _why(row: dict) -> str:
    """``conv2d_16 (Conv): eval activations reach 6.7x their calibrated range; 15.6 dB alone``"""
    parts = []
    if row.get("head"):
        parts.append("makes a model output")
    if row.get("clip_ratio") is not None and row["clip_ratio"] > 1.0:
        parts.append(f"eval activations reach {row['clip_ratio']:.1f}x their calibrated range, "
                     f"clipping leaves {row.get('clip_db', 100):.1f} dB")
    if row.get("sqnr_db") is not None and row["sqnr_db"] < 100:
        parts.append(f"{row['sqnr_db']:.1f} dB SQNR quantized alone")
    return f"{row['name']} ({row['op_type']}): " + ("; ".join(parts) or "found by the search")


def _cost(cost: dict | None) -> str:
    """`` (costs +1.2 KB, +0.05 ms p50)``: what keeping the layer in float adds to plain int8."""
    if not cost:
        return ""
    ms = cost.get("added_p50_ms")
    return f" (costs {cost['added_bytes'] / 1024:+.1f} KB" + (f", {ms:+.3f} ms p50)" if ms is not None else ")")


def _dims(shape) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def notes(report) -> list[str]:
    """One line each: whether the calibration set represents the eval set (or that the eval images were
    calibrated on), a detector's int8 output ranges, the input shapes checked, the artifacts whose shape was fixed and why, and how p50
    was measured (``edgecv bench``'s code and settings, with the command that reproduces it)."""
    lines = []
    check = report.settings.get("calibration_check")
    if check and check.get("note"):
        lines.append(check["note"])
    ranges = (report.settings.get("output_ranges") or {}).get("outputs")
    if ranges:
        lines.append("int8 output ranges from the detector spec: " + "; ".join(
            f"{r['output']} {r['kind']} [{r['range'][0]:.4g}, {r['range'][1]:.4g}] (calibration saw "
            f"[{r['calibrated'][0]:.4g}, {r['calibrated'][1]:.4g}])" for r in ranges)
            + "; SQNR counts the values outside them, which change no detection")
    checked: dict[str, list[str]] = {}
    for a in report.artifacts:
        shapes = a.shapes or {}
        if shapes.get("checked"):
            text = " and ".join(f"{_dims(c['shape'])} ({c['samples']} samples)" for c in shapes["checked"])
            checked.setdefault(text, []).append(f"{a.format} {a.precision}")
        if shapes.get("note"):
            lines.append(f"{a.format} {a.precision}: {shapes['note']}")
    source = (report.settings.get("shapes") or {}).get("source")
    if source and None in source:
        head = f"input dims {_dims(source)} in the source; kept dynamic unless noted"
        lines.insert(0, head + "".join(f"; checked at {k}: {', '.join(v)}" for k, v in checked.items()))
    bench = next((a.bench for a in report.artifacts if a.bench), None)
    if bench:
        lines.append(f"p50 ms: measured as edgecv bench measures it (own process, {bench['runs']} runs after {bench['warmup']} "
                     f"warm-up, {bench['threads_used']} threads, batch {bench['batch']}); e.g. {bench['command']}")
    return lines


def headers(report) -> list[str]:
    return [metric_name(report) if h == "metric" else h for h in HEADERS]


def detector_gate(report) -> str | None:
    """What a detector's drop points measure on this run's eval set, or None (not a detector)."""
    found, boxes = report.settings.get("source_detections"), report.settings.get("eval_boxes")
    if boxes is not None:
        return (f"judged on its boxes: {boxes} (drop pts: the larger of the mAP@[.5:.95] and the F1-at-threshold "
                "points lost against the float model)")
    if found is not None:
        return (f"detections of the float model on it: {found} (drop pts: 100 x (1 - mAP@0.5 against these) plus the "
                "mean signed score change of the matched ones, x100)")
    return None


def format_text(report) -> str:
    text = f"scored on {report.eval_description}\n" if report.eval_description else ""
    if gate := detector_gate(report):
        text += gate + "\n"
    text += "\n" if text else ""
    text += render(headers(report), rows(report), align=ALIGN) + f"\n{FIDELITY_NOTE}"
    text += "".join(f"\n{n}" for n in notes(report))
    for a in report.artifacts:
        if getattr(a, "ladder", None):
            text += f"\n\n{a.format} {a.precision}: PTQ ladder, {_ladder_summary(a.ladder)}:\n"
            text += render(LADDER_HEADERS, _ladder_rows(a.ladder), align="lllrrr")
        if a.fallback and a.fallback.get("kept"):
            text += f"\n\n{a.format} {a.precision}: kept in float to meet the budget ({_fallback_summary(a.fallback)}):"
            costs = {c["layer"]: c for c in a.fallback.get("costs", [])}
            text += "".join(f"\n  {_why(w)}{_cost(costs.get(w['name']))}" for w in a.fallback.get("why", []))
            if "(all kept layers)" in costs:
                text += f"\n  all kept layers together{_cost(costs['(all kept layers)'])}"
            if _latency_verdict(a.fallback):
                text += f"\n  {_latency_verdict(a.fallback)}"
    failures = [f"  {a.format} {a.precision}: {a.reason}" for a in report.artifacts if a.status != "passed"]
    if failures:
        text += "\n\nfailed:\n" + "\n".join(failures)
    return text


def format_markdown(report) -> str:
    head = headers(report)
    gate = detector_gate(report)
    lines = [f"# Export report: {Path(report.source).name}", "", f"Scored on {report.eval_description}."
             + (f" {gate[0].upper()}{gate[1:]}." if gate else ""), "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" if a == "l" else "---:" for a in ALIGN) + "|"]
    lines += ["| " + " | ".join(c or " " for c in r) + " |" for r in rows(report)]
    lines += ["", f"{FIDELITY_NOTE}."]
    lines += [f"- {n}" for n in notes(report)]
    for a in report.artifacts:
        ladder = getattr(a, "ladder", None)
        if ladder:
            summary = _ladder_summary(ladder)
            lines += ["", f"## {a.format} {a.precision}: PTQ ladder", "", f"{summary[0].upper()}{summary[1:]}.", "",
                      "| " + " | ".join(LADDER_HEADERS) + " |", "|---|---|---|---:|---:|---:|"]
            lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in _ladder_rows(ladder)]
    for a in report.artifacts:
        fb = a.fallback
        if not fb:
            continue
        lines += ["", f"## {a.format} {a.precision}: float fallback", "",
                  f"Ranking by `{fb['ranking_method']}`; {'passed' if fb['passed'] else 'no set within the cap passed'} "
                  f"with {len(fb['kept'])} layer(s) in float, after {len(fb['attempts'])} builds ({fb['seconds']} s).", ""]
        lines += [f"{_latency_verdict(fb)[0].upper()}{_latency_verdict(fb)[1:]}.", ""] if _latency_verdict(fb) else []
        if fb["costs"]:
            why = {w["name"]: _why(w).split(": ", 1)[1] for w in fb.get("why", [])}
            lines += ["| layer kept in float | why | adds bytes | adds p50 ms |", "|---|---|---:|---:|"]
            lines += [f"| `{c['layer']}` | {why.get(c['layer'], '')} | {c['added_bytes']} | {fmt_float(c['added_p50_ms'], '+.4f')} |"
                      for c in fb["costs"]]
    failures = [f"- {a.format} {a.precision}: {a.reason}" for a in report.artifacts if a.status != "passed"]
    if failures:
        lines += ["", "## Failed", ""] + failures
    return "\n".join(lines) + "\n"


def plot_png(report) -> bytes | None:
    """Accuracy (or agreement, or SQNR) against latency p50 and against size; None without figures."""
    points = [a for a in report.artifacts if a.scores is not None and a.p50_ms is not None]
    if not points:
        return None
    import io

    import matplotlib

    matplotlib.use("Agg")  # no display on a device or in CI
    import matplotlib.pyplot as plt

    use_sqnr = _metric(points[0].scores) is None
    ylabel = "output SQNR (dB)" if use_sqnr else metric_name(report)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    markers = dict(zip(FORMATS, MARKERS))
    for ax, xkey, xlabel in ((axes[0], "p50_ms", "latency p50 (ms)"), (axes[1], "size_bytes", "size (KB)")):
        for a in points:
            x = a.p50_ms if xkey == "p50_ms" else a.size_bytes / 1024
            y = a.scores.sqnr_db if use_sqnr else _metric(a.scores)
            ax.scatter([x], [y], marker=markers.get(a.format, "x"), color="tab:red" if a.status != "passed" else "tab:blue")
            ax.annotate(f"{a.format} {a.precision}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{Path(report.source).name}: accuracy against latency and size (red: failed)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_report(report, out: Path, *, plot: bool = True) -> list[Path]:
    """Write ``report.json``, ``report.md`` and (when there are figures) ``report.png`` into ``out``."""
    written = [out / "report.json", out / "report.md"]
    atomic_write_text(written[0], json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    atomic_write_text(written[1], format_markdown(report))
    png = plot_png(report) if plot else None
    if png is not None:
        written.append(out / "report.png")
        atomic_write_bytes(written[-1], png)
    return written
