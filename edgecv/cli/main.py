"""``edgecv``: the command-line interface, a thin layer over the Python API.

Each subcommand is one module with ``add_parser(subparsers)`` and ``run(args) -> int``, listed in
:data:`edgecv.cli.commands.COMMANDS`. Only the command being run is imported: ``edgecv --help`` imports no
command module, so a device install starts fast and never touches the workstation side. User mistakes print
one line and exit non-zero; there is never a traceback for them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import import_module

from edgecv import __version__
from edgecv.cli.commands import COMMANDS, WORKSTATION, WORKSTATION_MODULES
from edgecv.errors import EdgeCVError, MissingDependencyError

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


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: the command it names gets its full parser, the others only a name and a
    summary, which is all ``edgecv --help`` shows. ``argv=None`` builds every command's full parser."""
    parser = argparse.ArgumentParser(
        prog="edgecv",
        description="Turn trained vision models into checked edge artifacts, and run them on the device.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgecv {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None if argv is None else _command_in(argv)
    for name, command in COMMANDS.items():
        if argv is None or name == wanted:
            import_module(command.module).add_parser(sub)
        else:
            sub.add_parser(name, help=command.summary)
    return parser


def _command_in(argv: list[str]) -> str | None:
    """The first argument that names a command (options before it, such as -v, take no value)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def _check_workstation(name: str) -> None:
    """A workstation command on a device install: one line naming the extra, before anything runs."""
    from edgecv.deps import is_installed

    missing = [m for m in WORKSTATION_MODULES if not is_installed(m)]
    if missing:
        raise MissingDependencyError(", ".join(missing), "convert", f"run 'edgecv {name}' (a workstation command)")


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    _configure_logging(args.verbose)
    try:
        if COMMANDS[args.command].side == WORKSTATION:
            _check_workstation(args.command)
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
