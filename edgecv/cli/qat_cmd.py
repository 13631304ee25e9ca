"""``edgecv qat``: quantization-aware training, exported to int8 in every format, next to PTQ."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecv.cli.commands import COMMANDS
from edgecv.cli.options import add_preprocess_options, add_training_options

EXAMPLES = """\
examples:
  edgecv qat classifier.keras --train digits.npz --eval held_out.npz --epochs 2 --out runs/qat
  edgecv qat classifier.keras --train photos/ --to tflite,onnx --mean 127.5 --std 127.5 --out runs/qat --json

The model (a Keras 3 or tf_keras functional/Sequential classifier) is rebuilt in tf_keras in a child
process, fine-tuned with fake quantization (tfmot), and written as int8 TFLite, ONNX (QDQ) and OpenVINO
(FakeQuantize). The same float model also goes through post-training int8 (edgecv export) in the same run,
so the table compares fp32, PTQ int8 and QAT int8 on the same --eval data (default: a held-out split of
--train). The given model never changes.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "qat",
        help=COMMANDS["qat"].summary,
                       description="Fine-tune a Keras classifier with quantization-aware training and export it to int8 TFLite, "
                       "ONNX and OpenVINO, next to post-training int8 of the same model.", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="Keras model (.keras or .h5)")
    add_training_options(p, epochs=2)
    p.add_argument("--no-ptq", action="store_true", help="skip the post-training int8 comparison")
    add_preprocess_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from edgecv.converters.export import ExportOptions, export
    from edgecv.converters.qat import qat, qat_artifacts
    from edgecv.cli.compress_table import artifacts_json, format_rows, model_and_data, with_figures
    from edgecv.converters.publish import Publication

    _, pre, labels, data = model_and_data(args.model, "QAT", args)
    name = args.model.stem
    x_val, y_val = data.x_val, data.y_val
    rows = []
    # The command's whole output (qat-job/, the QAT artifacts, ptq/) is published at once; figures are
    # measured on the published files.
    with Publication(args.out) as pub:
        result = qat(args.model, train=data, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                     preprocess=pre, out=pub.staging / "qat-job")
        arts = qat_artifacts(result, out=pub.staging, name=name, to=args.to, labels=labels)
        if not args.no_ptq:
            report = export(args.model, to=args.to, quant="fp32,int8", calib=args.train, eval_data=list(zip(x_val, y_val.tolist())),
                            out=pub.staging / "ptq", name=name, preprocess=pre, labels=labels, options=ExportOptions(bench_runs=0))
            rows += [{"name": a.path.name, "method": "float" if a.precision == "fp32" else "PTQ", "path": a.path}
                     for a in report.artifacts if a.path is not None and a.status == "passed"]
        rows += [{"name": p.name, "method": "QAT", "path": p} for p in arts.paths.values()]
        pub.publish()
    rows = with_figures(rows, x=x_val, y=y_val, runs=args.runs)
    if args.json:
        print(json.dumps({"top1_float": result.top1_float, "top1_qat": result.top1_qat, "seconds": round(result.seconds, 1),
                          "artifacts": artifacts_json(rows)}, indent=2))
    else:
        print(f"QAT: {args.epochs} epochs, validation top-1 {100 * (result.top1_float or 0):.2f}% float -> "
              f"{100 * (result.top1_qat or 0):.2f}% with fake quantization ({result.seconds:.0f} s)\n")
        print(format_rows(rows))
    return 0
