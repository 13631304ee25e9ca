"""Option parsers shared by several commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgecv.formats import FORMATS
from edgecv.labels import read_labels as read_names
from edgecv.manifest import COLOR_ORDERS, Preprocess


def floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in text.lower().replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shape like 1,224,224,3, got {text!r}") from None
    if any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"shape dimensions must be positive, got {text!r}")
    return dims


def add_data_options(p: argparse.ArgumentParser, *, eval_help: str) -> None:
    """--calib and --eval, as export and optimize take them (the reading rules are edgecv.converters.data's)."""
    p.add_argument("--calib", type=Path,
                   help="calibration data for int8: an image folder, an image, a quoted glob ('shots/*.jpg'), a video, or a .npy/.npz "
                   "(uint8 pixels, or float read by its value range: within what --mean/--std make of pixels 0..255, model inputs "
                   "used as-is; else within 0..255, pixels normalized once, with a warning; within both and spanning over 25, "
                   "refused as ambiguous)")
    p.add_argument("--eval", type=Path, dest="eval_data", help=eval_help)
    p.add_argument("--calib-include-eval", action="store_true",
                   help="add the --eval images (at most the calibration sample count, 300 by default) to the calibration data, for when --calib does "
                   "not look like them; the accuracy gate is then not independent, and the report and manifests say so")


def add_trust_option(p: argparse.ArgumentParser) -> None:
    """``--trust-source``: run the source model's own code (docs/security.md)."""
    p.add_argument("--trust-source", action="store_true",
                   help="run the source's own code: skip the scan that refuses a SavedModel whose graph writes or reads "
                   "files or calls Python, and load Keras Lambda layers (docs/security.md); only for models you trust")


def add_verify_option(p: argparse.ArgumentParser) -> None:
    """``--no-verify`` (``args.verify``): load artifacts whose files differ from their manifest's hashes."""
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="do not check the artifact's files against the SHA-256 hashes in its manifest (a changed, "
                   "corrupted or half-copied file then runs); the output says the check was skipped")


def add_preprocess_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("preprocessing (recorded in each manifest)")
    g.add_argument("--layout", choices=("NHWC", "NCHW"), help="input layout (default: guessed from the model)")
    g.add_argument("--color", choices=COLOR_ORDERS, default="RGB", help="colour order the model expects (default RGB)")
    g.add_argument("--mean", type=floats, default=(0.0,), help="input = (pixel - mean) / std; per channel or one value (default 0)")
    g.add_argument("--std", type=floats, default=(255.0,), help="default 255, i.e. inputs in [0, 1]")
    g.add_argument("--labels", type=Path, help="class names, one per line (line k is class k; see edgecv.labels)")


def preprocess_from(args, layout_default: str) -> Preprocess:
    return Preprocess(layout=args.layout or layout_default, color=args.color, mean=args.mean, std=args.std)


def read_labels(path: Path | None) -> list[str] | None:
    """The ``--labels`` file's class names (:func:`edgecv.labels.read_labels`: line k is class k), or None.

    Example:
        >>> read_labels(None) is None
        True
    """
    if path is None:
        return None
    return list(read_names(path))


def add_training_options(p: argparse.ArgumentParser, *, epochs: int, train_required: bool = True) -> None:
    """``--train`` and the fine-tuning settings shared by qat, prune, distill and cluster."""
    p.add_argument("--train", required=train_required,
                   help="labelled training data: a folder of class subfolders, or a .npz with x and y"
                        + ("" if train_required else " (not needed with --epochs 0)"))
    p.add_argument("--eval", dest="eval_data", metavar="DATA",
                   help="labelled data to score every model on (default: a seeded 10%% split of --train)")
    p.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default {epochs})")
    p.add_argument("--batch-size", type=int, default=64, help="default 64")
    p.add_argument("--seed", type=int, default=0, help="seed for data order, splits and initialization (default 0)")
    p.add_argument("--to", default=",".join(FORMATS), help=f"formats to export the result to (default: {','.join(FORMATS)})")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--runs", type=int, default=100, help="timed runs per artifact for latency p50 (default 100; 0 skips)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
