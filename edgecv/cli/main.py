"""``edgecv``: the command-line interface, a thin layer over the Python API.

Each subcommand is one module with ``add_parser(subparsers)`` and ``run(args) -> int``, listed in
:data:`edgecv.cli.commands.COMMANDS`. Only the command being run is imported: ``edgecv --help`` imports no
command module, so a device install starts fast and never touches the workstation side. User mistakes print
one line and exit non-zero; there is never a traceback for them.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import logging
import os
import sys
from importlib import import_module
from typing import TYPE_CHECKING, Iterator

from edgecv import __version__
from edgecv.cli.commands import COMMANDS, WORKSTATION, WORKSTATION_MODULES
from edgecv.errors import EdgeCVError, MissingDependencyError

if TYPE_CHECKING:
    from pathlib import Path  # imported where it is used: `edgecv --help` does without it

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


def library_log_path(command: str) -> Path:
    """Where a workstation command's library log goes: ``$EDGECV_CACHE_DIR`` (or ``~/.cache/edgecv``)
    ``/logs/COMMAND.log``, rewritten by each run of that command.

    Example:
        >>> library_log_path("demo").name
        'demo.log'
    """
    from pathlib import Path

    root = os.environ.get("EDGECV_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgecv"
    return Path(root) / "logs" / f"{command}.log"


@contextlib.contextmanager
def library_log(path: Path) -> Iterator[Path | None]:
    """Send file descriptor 2 to ``path`` while the block runs, keeping ``sys.stderr`` on the terminal.

    TensorFlow, absl and XLA log from C++ straight to fd 2 ("E0000 ... cuda_platform.cc:52] failed call to
    cuInit"), past Python's ``sys.stderr``; only moving fd 2 keeps those lines (and those of child processes,
    which inherit it) out of the command's output. edgecv's own messages, logging and progress bars write to
    ``sys.stderr``, which stays on the terminal through a duplicate of the original fd 2. Yields None, and
    moves nothing, when ``path`` cannot be written.

    Example:
        >>> with library_log(library_log_path("export")) as log:      # doctest: +SKIP
        ...     import tensorflow                                       # its start-up lines go to ``log``
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as exc:
        logging.getLogger(__name__).debug("library log %s not writable (%s): library lines stay on stderr", path, exc)
        yield None
        return
    try:
        attached = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # replaced by a test's capture: it never writes to fd 2
        attached = False
    sys.stderr.flush()
    terminal = os.dup(2)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    original = sys.stderr
    crash_traces = faulthandler.is_enabled()
    if attached:
        # Line-buffered like the original; left open afterwards, as logging handlers may still hold it.
        sys.stderr = open(os.dup(terminal), "w", buffering=1, encoding=original.encoding, errors=original.errors)
        # A library that crashes the process (SIGSEGV, abort) leaves no Python to name the log: its trace at
        # least reaches the terminal.
        faulthandler.enable(file=sys.stderr)
    try:
        yield path
    finally:
        sys.stderr.flush()
        sys.stderr = original
        os.dup2(terminal, 2)
        os.close(terminal)
        if attached and crash_traces:
            faulthandler.enable(file=original)
        elif attached:
            faulthandler.disable()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    workstation = COMMANDS[args.command].side == WORKSTATION
    if not workstation or args.verbose:
        return _run(args)
    # Without -v, the libraries' own log lines go to a file, named only when the command fails.
    code = 1
    with library_log(library_log_path(args.command)) as path:
        try:
            code = _run(args)
        finally:
            if code != 0 and path is not None and path.stat().st_size:
                print(f"edgecv: the libraries' log (TensorFlow and others) is in {path}", file=sys.stderr)
    return code


def _run(args: argparse.Namespace) -> int:
    from edgecv.sources import quiet_opencv

    _configure_logging(args.verbose)
    quiet_opencv()
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
