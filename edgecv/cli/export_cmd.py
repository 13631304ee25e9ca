"""``edgecv export``: convert a model to TFLite, ONNX and OpenVINO, checking every artifact."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecv.cli.commands import COMMANDS
from edgecv.cli.options import add_data_options, add_preprocess_options, add_trust_option, preprocess_from, read_labels, shape
from edgecv.formats import FORMATS

EXAMPLES = """\
examples:
  edgecv export classifier.keras --out artifacts/
  edgecv export classifier.keras --quant int8 --calib photos/ --eval labelled/ --max-drop 0.5
  edgecv export model.onnx --to onnx,openvino --quant int8,dynamic --calib frames.npy --mean 0 --std 1
  edgecv export text_det.onnx --input-shape 1x3x480x640 --quant none,int8 --calib pages/
  edgecv export text_det.onnx --input-shape 1x3x480x640 --static-shape --to onnx,openvino
  edgecv export face.tflite --to onnx,openvino --quant int8 --calib street.mp4 --mean 127.5 --std 127.5 --json
  edgecv export face.tflite --to onnx,openvino --quant int8 --calib street.mp4 --eval faces/ \
      --spec blazeface-short-range --max-drop 5 --mean 127.5 --std 127.5
  edgecv export yolov8n.onnx --to tflite --quant int8 --io-type int8 --calib frames/ --eval val/ \
      --spec yolov8n.yaml --cut-decode --max-drop 5 --mean 0 --std 255   # whole model on an Edge TPU

--calib and --eval take an image folder, an image, a glob, a video (sampled evenly) or a .npy/.npz array. An --eval
folder of class subfolders (or an .npz with 'x' and 'y') gives top-1; without labels each artifact is
compared with the float model (top-1 agreement, output SQNR, cosine). An int8 artifact that loses more
than --max-drop points (or, for outputs that are not class scores, falls below --min-sqnr) is rebuilt
with the layers that cause the loss kept in float. For a detector, --spec (a built-in name or a YAML
detector spec) makes the gate score detections on the --eval images: with YOLO label files beside them
(images/val/a.jpg -> labels/val/a.txt) the drop is the larger of the mAP@[.5:.95] points and the F1-at-threshold
points lost against the float model, on those boxes; without, it is 100 x (1 - mAP@0.5 against the float model's
detections) plus the mean signed change of their scores (x100). OUT/report.{json,md,png} describe the run.
Before an int8 build, the float model runs on --calib and on --eval: when the eval activations reach twice their
calibrated range in 10% of the layers or more, one warning line names them; calibrate on images like the eval set,
or add the eval images with --calib-include-eval (the gate is then not independent, and the report says so).
A model with dynamic input dims (?x3x?x?) needs --input-shape: checks and calibration run at it, the dims stay
dynamic in ONNX and OpenVINO artifacts (also checked at the shape with height and width 32 larger), and TFLite
gets that static shape; --static-shape fixes it in every artifact. Each artifact's latency p50 is measured as
`edgecv bench` measures it (same code, defaults and own process); the report gives the command.
"""


def add_parser(sub) -> None:
    from edgecv.converters.quant import CALIBRATION_METHODS, FALLBACK_RANKINGS, IO_TYPES, PRECISIONS

    precision_choices = ", ".join(["none", *[name for name in PRECISIONS if name != "fp32"]])
    p = sub.add_parser(
        "export",
        help=COMMANDS["export"].summary,
        description="Convert a Keras (.keras/.h5/SavedModel), ONNX or float TFLite model to TFLite, ONNX and "
        "OpenVINO IR, in float or quantized precisions. Every artifact is run on the same inputs as the source "
        "and scored; one that fails goes to OUT/_failed/ and the command exits 1.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", type=Path, help="source model: .keras, .h5, SavedModel folder, .onnx or float .tflite")
    p.add_argument("--to", default=",".join(FORMATS), help=f"comma-separated formats (default: {','.join(FORMATS)})")
    p.add_argument("--quant", "--precision", dest="quant", default="none,fp16",
                   help=f"comma-separated precisions: {precision_choices} (default: none,fp16)")
    add_data_options(p, eval_help="evaluation data, the same kinds as --calib; class subfolders or .npz labels give top-1; "
                                  "for a detector, YOLO label files (images/x.jpg -> labels/x.txt) give its mAP")
    p.add_argument("--max-drop", type=float, help="accuracy budget for quantized artifacts, in points of top-1 (of mAP with --spec; default 1.0)")
    p.add_argument("--min-sqnr", type=float, help="output SQNR floor in dB for models without class scores (default 20)")
    p.add_argument("--spec", help="detector spec (built-in name or YAML file): judge quantized artifacts on their detections")
    p.add_argument("--cut-decode", action="store_true",
                   help="ONNX detectors whose spec decoder has a cut (yolo: Ultralytics v8/v11): cut the box decoding off "
                   "the graph, so an integer-only accelerator runs every op; edgecv's decoder (yolo_dfl) does it on the CPU, "
                   "and each manifest's spec names it. The cut is checked against the full model first")
    p.add_argument("--out", type=Path, default=Path("export"), help="output folder (default: ./export)")
    p.add_argument("--name", help="artifact file stem (default: the model's file name)")
    p.add_argument("--input-shape", type=shape, metavar="SHAPE",
                   help="the shape to check and calibrate at, batch first, e.g. 1x3x480x640: needed for dynamic dims, "
                   "which stay dynamic in ONNX and OpenVINO artifacts (checked at a second shape too); TFLite gets it fixed")
    p.add_argument("--static-shape", action="store_true", help="fix --input-shape in every artifact (the manifest records it)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_trust_option(p)
    q = p.add_argument_group("quantization (expert)")
    q.add_argument("--calib-samples", type=int, default=300, help="calibration samples, chosen deterministically (default 300)")
    q.add_argument("--eval-samples", type=int, default=2000, help="eval samples (default 2000)")
    q.add_argument("--calibration", choices=CALIBRATION_METHODS, default="minmax", help="ONNX activation calibration (default minmax)")
    q.add_argument("--io-type", choices=IO_TYPES, default="float", help="TFLite int8 model inputs/outputs (default float)")
    q.add_argument("--no-ladder", action="store_true",
                   help="do not try the toolchain's other PTQ settings (percentile, entropy, NNCF modes) before the float fallback")
    q.add_argument("--accuracy-control", action="store_true",
                   help="add NNCF's accuracy-aware quantization as the OpenVINO ladder's last rung (minutes per model)")
    q.add_argument("--no-fallback", action="store_true", help="do not keep failing layers in float")
    q.add_argument("--fallback-ranking", choices=FALLBACK_RANKINGS, default="auto",
                   help="how culprit layers are found: clipping against the eval set, per-layer error, or leave-one-out (default auto)")
    q.add_argument("--samples", type=int, default=8, help="sample inputs used to check float artifacts (default 8)")
    add_preprocess_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from edgecv.converters.export import ExportOptions, export
    from edgecv.converters.quant import QuantOptions
    from edgecv.converters.report import format_text
    from edgecv.errors import ConfigError

    if args.samples < 1:
        raise ConfigError(f"--samples must be at least 1, got {args.samples}")
    quant = QuantOptions(
        calib_samples=args.calib_samples,
        eval_samples=args.eval_samples,
        calibration=args.calibration,
        io_type=args.io_type,
        ladder=not args.no_ladder,
        ladder_accuracy_control=args.accuracy_control,
        fallback=not args.no_fallback,
        fallback_ranking=args.fallback_ranking,
        **({"min_sqnr": args.min_sqnr} if args.min_sqnr is not None else {}),
    )
    report = export(
        args.model,
        to=args.to,
        quant=args.quant,
        calib=args.calib,
        eval_data=args.eval_data,
        max_drop=args.max_drop,
        out=args.out,
        name=args.name,
        preprocess=preprocess_from(args, "NHWC"),
        labels=read_labels(args.labels),
        input_shape=args.input_shape,
        layout=args.layout,
        detector=args.spec,
        options=ExportOptions(samples=args.samples, quant=quant, static_shape=args.static_shape),
        progress=not args.json,
        trust_source=args.trust_source,
        calib_include_eval=args.calib_include_eval,
        cut_decode=args.cut_decode,
    )
    written = report.report_files  # published with the artifacts: never stale
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(format_text(report))
        print("\nreport: " + ", ".join(str(w) for w in written))
    return 0 if report.ok else 1
