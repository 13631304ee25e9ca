"""``edgecv optimize``: the right artifact for a device, chosen by building, checking and measuring every
candidate its profile allows."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecv.cli.commands import COMMANDS
from edgecv.cli.options import add_data_options, add_preprocess_options, add_trust_option, preprocess_from, read_labels

EXAMPLES = """\
examples:
  edgecv optimize model.keras --device ci-x86-64-avx2 --calib frames/ --eval labelled/ --out runs/opt
  edgecv optimize model.keras --device raspberry-pi-5 --calib frames/ --eval labelled/ --remote pi@raspberrypi.local \\
      --python /home/pi/venv/bin/python --out runs/pi5
  edgecv optimize face_detection_short_range.tflite --device coral-edgetpu --spec blazeface-short-range \\
      --calib street.mp4 --eval faces/ --max-drop 5 --mean 127.5 --std 127.5 --out runs/coral
  edgecv devices list

Candidates are the formats and precisions the device profile allows (edgecv devices list). Each is built
with post-training quantization (calibrated on --calib) and gated on --eval (points of top-1, or of detection
agreement with --spec), then checked against the device (edgecv devices check), then benchmarked here (a
'host: local' profile) or on the device over SSH (--remote). Builds run in parallel on the local cores and are
kept in OUT/candidates/: run the same command again and finished candidates are reused. OUT receives the
chosen artifact with its manifest, optimize.md (every candidate, and why it won or lost), optimize.json and
report.png (accuracy against latency and size). Exit 1 when no candidate fits the device.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "optimize",
        help=COMMANDS["optimize"].summary,
        description="Turn a model into the best artifact for one device: the device profile's candidate formats "
        "and precisions are built (int8 calibrated on your images, gated on your eval set), checked for what "
        "would not run or would fall back on the device, benchmarked where the device is reachable, and the "
        "fastest that passes is chosen.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", type=Path, help="source model: .keras, .h5, SavedModel folder, .onnx or float .tflite")
    p.add_argument("--device", required=True, help="device profile name (edgecv devices list) or YAML file")
    add_data_options(p, eval_help="evaluation data, the same kinds as --calib (class subfolders or .npz labels give top-1; "
                                  "for a detector, YOLO label files beside the images give its mAP)")
    p.add_argument("--max-drop", type=float, default=1.0, help="accuracy budget in points (default 1.0)")
    p.add_argument("--spec", help="detector spec: judge candidates on their detections")
    p.add_argument("--out", type=Path, default=Path("optimize"), help="output folder (default: ./optimize)")
    p.add_argument("--remote", metavar="USER@HOST", help="benchmark on the device over SSH (key authentication)")
    p.add_argument("--python", default="python3", help="the device's Python with edgecv installed (default python3)")
    p.add_argument("--port", type=int, help="the device's SSH port (default: ssh's)")
    p.add_argument("--identity", type=Path, help="SSH private key file (default: ssh's)")
    p.add_argument("--workers", type=int, help="parallel candidate builds (default: one per core)")
    p.add_argument("--runs", type=int, default=50, help="timed benchmark runs per candidate (default 50)")
    p.add_argument("--threads", type=int, help="threads per runtime (default: every core)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_trust_option(p)
    add_preprocess_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from edgecv.converters.optimize import OptimizeOptions, optimize
    from edgecv.errors import ConfigError

    for flag, value in (("--workers", args.workers), ("--runs", args.runs), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    result = optimize(args.model, device=args.device, calib=args.calib, eval_data=args.eval_data,
                      max_drop=args.max_drop, out=args.out, detector=args.spec, preprocess=preprocess_from(args, "NHWC"),
                      labels=read_labels(args.labels), remote=args.remote,
                      options=OptimizeOptions(runs=args.runs, threads=args.threads, workers=args.workers,
                                              python=args.python, port=args.port, identity=args.identity),
                      progress=not args.json, trust_source=args.trust_source, calib_include_eval=args.calib_include_eval)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print(format_result(result))
    return 0


def format_result(result) -> str:
    from edgecv.tables import fmt_float, human_bytes, render

    rows = []
    for c in result.candidates:
        fallbacks = len((c.compat or {}).get("fallbacks") or [])
        rows.append([c.name, c.verdict, fmt_float(c.build.get("drop_points"), ".2f"),
                     human_bytes(c.build["size_bytes"]) if c.build.get("size_bytes") else "-", fmt_float(c.p50_ms, ".3f"),
                     str(fallbacks), c.why + (" (resumed)" if c.resumed else "")])
    lines = [render(["candidate", "verdict", "drop", "size", "p50 ms", "CPU fallbacks", "why"], rows,
                    align="llrrrrl"), ""]
    where = {"local": "here", None: "nowhere (device not reachable: --remote)"}.get(result.benchmarked_on,
                                                                                     f"on {result.benchmarked_on}")
    chosen = result.chosen
    lines.append(f"{result.device}: chose {chosen.path.name if chosen and chosen.path else 'nothing'}; benchmarked "
                 f"{where}; {result.seconds:.0f} s. Drop: points of {result.metric or 'accuracy'} lost against the source.")
    lines.append(f"written to {result.out}: the artifact and its manifest, optimize.md, optimize.json, report.png")
    check = result.calibration_check or {}
    if check.get("representative") is False or check.get("independent") is False:
        lines.append(check["note"])
    return "\n".join(lines)
