"""``edgecv demo``: the main job on the built-in default, with nothing downloaded.

Two demos, one table (``DEMOS``): ``track`` (the default: the built-in detector exported, validated,
benchmarked, then tracking a generated video with ground truth) and ``classify`` (the built-in shapes
classifier exported to every format and precision).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecv.cli.commands import COMMANDS
from edgecv.tables import fmt_float, human_bytes, render

DEMOS = {
    "track": "export the built-in detector to TFLite, ONNX and OpenVINO (fp32, int8), score and benchmark every "
             "artifact, then detect and track a generated video with exact ground truth (MOTA, IDF1, HOTA)",
    "classify": "train the built-in shapes classifier, export it in fp32, fp16 and int8, score and benchmark",
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help=COMMANDS["demo"].summary,
        description="Run the whole product on the built-in default, with nothing downloaded. " + "; ".join(
            f"{name}: {what}" for name, what in DEMOS.items()) + ". Writes OUT/report.md and OUT/demo.json.",
        epilog="examples:\n  edgecv demo\n  edgecv demo --out runs/demo --frames 900 --threads 2\n"
               "  edgecv demo --task classify --runs 200\n\n"
               "then, on your own model and camera:\n"
               "  edgecv export my_detector.keras --spec my-spec.yaml --quant fp32,int8 --calib frames/ --out art/\n"
               "  edgecv track --model art/ --source 0 --out runs/cam\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", choices=list(DEMOS), default="track", help="which demo (default: track)")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default: runs/demo)")
    p.add_argument("--frames", type=int, default=600, help="generated video frames to track (default 600)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per artifact (default 50)")
    p.add_argument("--threads", type=int, help="threads per runtime (default: every core)")
    p.add_argument("--retrain", action="store_true", help="classify: train the model again even if OUT has one")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from edgecv.errors import ConfigError

    if args.frames < 1 or args.runs < 1:
        raise ConfigError(f"--frames and --runs must be at least 1, got {args.frames} and {args.runs}")
    return _run_track(args) if args.task == "track" else _run_classify(args)


def _run_track(args) -> int:
    from edgecv.converters.track_demo import run_track_demo
    from edgecv.cli.track_cmd import format_summary

    demo = run_track_demo(out=args.out, frames=args.frames, runs=args.runs, threads=args.threads,
                          progress=not args.json)
    if args.json:
        print(json.dumps(demo.to_dict(), indent=2, default=str))
        return 0 if demo.ok else 1
    rows = []
    for a in demo.export.artifacts:
        name = a.path.name if a.path else f"{a.format} {a.precision}"
        m = demo.artifact_map.get(name, {})
        rows.append([name, a.status, human_bytes(a.size_bytes) if a.size_bytes else "-", fmt_float(a.p50_ms, ".3f"),
                     fmt_float(m.get("map50"), ".3f"), fmt_float(m.get("map"), ".3f")])
    print(render(["artifact", "status", "size", "p50 ms", "mAP@0.5", "mAP@[.5:.95]"], rows, align="llrrrr"))
    k = demo.keras_map
    print(f"\nKeras source: mAP@0.5 {k['map50']:.3f}, mAP@[.5:.95] {k['map']:.3f} on held-out generated frames\n")
    print(format_summary(demo.summary))
    print(f"\nreport: {demo.out / 'report.md'}; annotated video, tracks and events in {demo.out / 'track'}")
    return 0 if demo.ok else 1


def _run_classify(args) -> int:
    from edgecv.converters.demo import run_demo

    report = run_demo(out=args.out, runs=args.runs, threads=args.threads, retrain=args.retrain, progress=not args.json)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
        return 0 if report.ok else 1
    from edgecv.converters.report import format_text

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
