"""``edgecv``: the command-line interface, a thin layer over the Python API.

Each subcommand is one module with ``add_parser(subparsers)`` and ``run(args) -> int``, listed in
``COMMANDS``. User mistakes print one line and exit non-zero; there is never a traceback for them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import import_module

from edgecv import __version__
from edgecv.errors import EdgeCVError

# name -> module holding add_parser() and run(); modules are imported only when needed.
COMMANDS = {
    "demo": "edgecv.cli.demo_cmd",
    "export": "edgecv.cli.export_cmd",
    "bench": "edgecv.cli.bench_cmd",
    "info": "edgecv.cli.info_cmd",
    "qat": "edgecv.cli.qat_cmd",
    "prune": "edgecv.cli.prune_cmd",
    "distill": "edgecv.cli.distill_cmd",
    "eval-det": "edgecv.cli.eval_det_cmd",
    "detect": "edgecv.cli.detect_cmd",
    "specs": "edgecv.cli.specs_cmd",
    "track-eval": "edgecv.cli.track_eval_cmd",
    "track": "edgecv.cli.track_cmd",
    "devices": "edgecv.cli.devices_cmd",
    "optimize": "edgecv.cli.optimize_cmd",
}

EPILOG = """\
examples:
  edgecv demo                                     the main job on the built-in detector
  edgecv optimize model.keras --device raspberry-pi-5 --calib frames/ --eval labelled/ --out runs/pi5
  edgecv track --model artifacts/ --source 0      detect and track on a camera, fastest artifact
  edgecv export model.keras --to tflite,onnx,openvino --out artifacts/
  edgecv bench artifacts/                         every artifact in a folder, side by side
  edgecv info artifacts/model.fp32.tflite         inputs, outputs and manifest
  edgecv qat model.keras --train digits.npz --out runs/qat
  edgecv prune model.keras --train digits.npz --method channels --sparsity 0.5 --out runs/prune
  edgecv distill --teacher model.keras --width 0.5 --train digits.npz --out runs/distill
  edgecv eval-det --gt instances_val.json --pred results.json --json
  edgecv detect --model face.tflite --spec blazeface-short-range --source photos/ --out runs/faces
  edgecv specs list                               the built-in detector specs; 'specs show NAME' prints one
  edgecv track-eval --gt gt.txt --det det.txt --tracker bytetrack --fps 25
  edgecv devices check model.int8.tflite --device coral-edgetpu   will it run there?

Run 'edgecv COMMAND --help' for a command's options.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgecv",
        description="Turn trained vision models into checked edge artifacts, and run them on the device.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgecv {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        import_module(module).add_parser(sub)
    return parser


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    _configure_logging(args.verbose)
    try:
        return int(args.run(args) or 0)
    except EdgeCVError as exc:
        print(f"edgecv: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edgecv: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
