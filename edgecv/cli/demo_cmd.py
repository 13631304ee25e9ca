"""``edgecv demo``: the main job on the built-in default model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecv.cli.table import human_bytes, render


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="export, quantize and benchmark the built-in model in all three formats",
        description="Train the built-in shapes classifier (seconds, nothing downloaded), export it to TFLite, "
        "ONNX and OpenVINO in fp32, fp16 and int8 (calibrated on synthetic images), score every artifact "
        "against the Keras model on held-out labelled images, and benchmark them side by side. Writes "
        "OUT/report.{json,md,png} (the export) and OUT/demo.json (everything).",
        epilog="examples:\n  edgecv demo\n  edgecv demo --out runs/demo --runs 200 --threads 1\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default: runs/demo)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per artifact (default 50)")
    p.add_argument("--threads", type=int, help="threads per runtime (default: every core)")
    p.add_argument("--retrain", action="store_true", help="train the model again even if OUT has one")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from converters.demo import run_demo

    report = run_demo(out=args.out, runs=args.runs, threads=args.threads, retrain=args.retrain, progress=not args.json)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
        return 0 if report.ok else 1
    from converters.report import format_text

    print(format_text(report.export))
    bench = {b.artifact: b for b in report.bench}
    rows = []
    for a in report.export.artifacts:
        b = bench.get(str(a.path))
        acc = report.accuracy.get(str(a.path))
        rows.append(
            [
                a.path.name if a.path else f"{a.format} {a.precision}",
                b.backend if b else "-",
                "-" if acc is None else f"{100 * acc:.1f}",
                human_bytes(a.size_bytes) if a.size_bytes else "-",
                f"{b.p50_ms:.3f}" if b else "-",
                f"{b.p99_ms:.3f}" if b else "-",
                f"{b.throughput:.0f}" if b else "-",
                f"{b.load_ms:.1f}" if b else "-",
                f"{b.peak_rss_mb:.0f}" if b and b.peak_rss_mb else "-",
            ]
        )
    print(f"\nKeras source: top-1 {100 * report.keras_top1:.1f}% on {report.export.eval_description}\n")
    print(render(["artifact", "backend", "top-1 %", "size", "p50 ms", "p99 ms", "img/s", "load ms", "peak MB"], rows, align="llrrrrrrr"))
    print(f"\nreport: {report.out / 'report.md'}, {report.out / 'demo.json'}")
    return 0 if report.ok else 1
