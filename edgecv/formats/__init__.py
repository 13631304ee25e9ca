"""The artifact formats edgecv reads, in one table. Each format is one module here (its suffix, companion
file, backends, precisions, cheap check, graph reader and weighted ops, and the name of its workstation
export target), implementing :class:`~edgecv.formats.base.ArtifactFormat`. Add a format by adding a module
and a row in :data:`FORMATS`.

Example:
    >>> format_for_path("model.fp32.tflite").name
    'tflite'
    >>> PRECISIONS
    ('fp32', 'fp16', 'dynamic', 'int8', 'int16x8')
"""

from __future__ import annotations

from pathlib import Path

from edgecv.errors import ModelFileError, UnsupportedFormatError
from edgecv.formats.base import ArtifactFormat
from edgecv.formats.onnx import ONNX
from edgecv.formats.openvino import OpenVINO
from edgecv.formats.tflite import TFLite
from edgecv.graph import Graph

FORMATS: dict[str, ArtifactFormat] = {f.name: f for f in (TFLite(), ONNX(), OpenVINO())}

# Every precision edgecv writes, in the formats' order (what a device profile may list).
PRECISIONS: tuple[str, ...] = tuple(dict.fromkeys(p for f in FORMATS.values() for p in f.precisions))


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


def read_graph(path: str | Path) -> Graph:
    """The ops and tensors of the model at ``path`` (any format of :data:`FORMATS`), read from the file alone.
    A missing, unknown or damaged file raises a one-line :class:`~edgecv.errors.ModelFileError`.

    Example:
        >>> g = read_graph("model.int8.tflite")   # doctest: +SKIP
        >>> [op.type for op in g.ops][:3], g.precision   # doctest: +SKIP
        (['QUANTIZE', 'CONV_2D', 'MEAN'], 'int8')
    """
    path = Path(path)
    return check_model_file(path).read_graph(path)


__all__ = ["FORMATS", "PRECISIONS", "ArtifactFormat", "check_model_file", "format_for_path", "read_graph"]
