"""The artifact formats edgecv reads, in one table: suffixes, backends that run them, structural checks.

Example:
    >>> format_for_path("model.fp32.tflite").name
    'tflite'
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgecv.errors import ModelFileError, UnsupportedFormatError


@dataclass(frozen=True)
class ArtifactFormat:
    """One artifact format: its suffix, the backends that run it (preferred first), and a cheap check."""

    name: str
    suffix: str
    backends: tuple[str, ...]
    check: Callable[[Path], None]
    # The precisions edgecv writes in this format, and the module of its workstation-side export target
    # (imported only by edgecv.converters, by name, so the device side never imports it).
    precisions: tuple[str, ...] = ()
    target: str = ""
    companion: str | None = None  # a second file that belongs to the artifact, e.g. OpenVINO's .bin
    # Load in a child process first: its runtime can crash on corrupted files that pass the cheap check.
    isolate: bool = False

    def files(self, path: Path) -> list[Path]:
        """Every file that makes up the artifact at ``path``."""
        return [path] + ([path.with_suffix(self.companion)] if self.companion else [])


def _check_tflite(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(8)
    size = path.stat().st_size
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise ModelFileError(f"{path} is not a TFLite flatbuffer (no 'TFL3' identifier); the file is corrupted or not a .tflite")
    (root,) = struct.unpack("<I", head[:4])
    if root + 4 > size:
        raise ModelFileError(f"{path} is truncated: its flatbuffer root points past the end of the file ({size} bytes)")
    from edgecv.flatbuffer import verify_tflite

    verify_tflite(path)


def _check_onnx(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(1)
    # An ONNX ModelProto starts with a protobuf tag; field 1 (ir_version, varint) is 0x08 in every writer.
    if head not in (b"\x08", b"\x12", b"\x1a", b"\x22", b"\x2a", b"\x32", b"\x3a", b"\x42"):
        raise ModelFileError(f"{path} is not an ONNX protobuf; the file is corrupted or not a .onnx")


def _check_openvino(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(256).lstrip()
    if not (head.startswith(b"<?xml") or head.startswith(b"<net")):
        raise ModelFileError(f"{path} is not an OpenVINO IR .xml file; the file is corrupted or not an IR")
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise ModelFileError(f"{path}: the weights file {weights.name} is missing beside it")


FORMATS: dict[str, ArtifactFormat] = {
    f.name: f
    for f in (
        ArtifactFormat("tflite", ".tflite", ("litert",), _check_tflite, isolate=True,
                       precisions=("fp32", "fp16", "dynamic", "int8", "int16x8"), target="edgecv.converters.targets.tflite"),
        ArtifactFormat("onnx", ".onnx", ("onnxruntime", "openvino"), _check_onnx,
                       precisions=("fp32", "fp16", "dynamic", "int8"), target="edgecv.converters.targets.onnx"),
        ArtifactFormat("openvino", ".xml", ("openvino",), _check_openvino, companion=".bin",
                       precisions=("fp32", "fp16", "dynamic", "int8"), target="edgecv.converters.targets.openvino"),
    )
}


def format_for_path(path: str | Path) -> ArtifactFormat:
    """The format of ``path`` by its suffix, or an error listing the suffixes edgecv reads."""
    suffix = Path(path).suffix.lower()
    for fmt in FORMATS.values():
        if fmt.suffix == suffix:
            return fmt
    known = ", ".join(f"{f.suffix} ({f.name})" for f in FORMATS.values())
    raise UnsupportedFormatError(f"{path}: unknown model extension {suffix or '(none)'!r}; edgecv reads {known}")


def check_model_file(path: str | Path) -> ArtifactFormat:
    """Check that ``path`` exists, is non-empty and looks like its format; return that format."""
    path = Path(path)
    fmt = format_for_path(path)
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelFileError(f"model path is not a file: {path}")
    if path.stat().st_size == 0:
        raise ModelFileError(f"model file is empty: {path}")
    fmt.check(path)
    return fmt
