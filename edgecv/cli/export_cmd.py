"""``edgecv export``: convert a model to TFLite, ONNX and OpenVINO, checking every artifact."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecv.cli.options import add_preprocess_options, preprocess_from, read_labels, shape
from edgecv.cli.table import fmt_float, human_bytes, render

EXAMPLES = """\
examples:
  edgecv export classifier.keras --out artifacts/
  edgecv export model.onnx --to tflite,openvino --precision fp32 --mean 0 --std 1
  edgecv export face.tflite --to onnx,openvino --mean 127.5 --std 127.5 --json
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="convert a model to edge artifacts, each checked against the source",
        description="Convert a Keras (.keras/.h5/SavedModel), ONNX or float TFLite model to TFLite, ONNX and "
        "OpenVINO IR. Every artifact is run on the same sample inputs as the source and compared; one that "
        "does not match is put in OUT/_failed/ and the command exits 1.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", type=Path, help="source model: .keras, .h5, SavedModel folder, .onnx or float .tflite")
    p.add_argument("--to", default="tflite,onnx,openvino", help="comma-separated formats (default: all three)")
    p.add_argument("--precision", default="fp32,fp16", help="comma-separated precisions (default: fp32,fp16)")
    p.add_argument("--out", type=Path, default=Path("export"), help="output folder (default: ./export)")
    p.add_argument("--name", help="artifact file stem (default: the model's file name)")
    p.add_argument("--input-shape", type=shape, help="fix dynamic input dims for validation, e.g. 1,224,224,3")
    p.add_argument("--samples", type=int, default=8, help="sample inputs used to check each artifact (default 8)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_preprocess_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from converters.export import ExportOptions, export
    from edgecv.errors import ConfigError

    if args.samples < 1:
        raise ConfigError(f"--samples must be at least 1, got {args.samples}")
    report = export(
        args.model,
        to=args.to,
        precisions=args.precision,
        out=args.out,
        name=args.name,
        preprocess=preprocess_from(args, "NHWC"),
        labels=read_labels(args.labels),
        input_shape=args.input_shape,
        layout=args.layout,
        options=ExportOptions(samples=args.samples),
        progress=not args.json,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report))
    return 0 if report.ok else 1


def format_report(report) -> str:
    rows = []
    for a in report.artifacts:
        rows.append(
            [
                a.format,
                a.precision,
                "ok" if a.status == "passed" else "FAILED",
                human_bytes(a.size_bytes) if a.size_bytes else "-",
                fmt_float(a.max_abs_diff, ".2e"),
                fmt_float(None if a.top1_agreement is None else 100 * a.top1_agreement, ".1f"),
                f"{a.seconds:.1f}",
                str(a.path) if a.path else "-",
            ]
        )
    text = render(
        ["format", "precision", "check", "size", "max|diff|", "top-1 %", "time s", "artifact"], rows, align="llrrrrrl"
    )
    failures = [f"  {a.format} {a.precision}: {a.reason}" for a in report.artifacts if a.status != "passed"]
    if failures:
        text += "\n\nfailed:\n" + "\n".join(failures)
    return text
