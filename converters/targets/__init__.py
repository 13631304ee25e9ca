"""Export targets, one per format of :data:`edgecv.formats.FORMATS` that names a target module: each
module defines an :class:`ExportTarget` subclass and its instance ``TARGET``.

Example:
    >>> list(TARGETS)
    ['tflite', 'onnx', 'openvino']
    >>> [t.name for t in parse_targets("onnx,tflite")]
    ['onnx', 'tflite']
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from edgecv.converters.choices import parse_names
from edgecv.converters.targets.base import ClipMeter, ExportTarget, LayerError, QatModel, artifact_name, clip_ratio
from edgecv.errors import ConfigError
from edgecv.formats import FORMATS, ArtifactFormat


def _target(fmt: ArtifactFormat) -> ExportTarget:
    """The ``TARGET`` of the module ``fmt.target`` names, checked to be that format's :class:`ExportTarget`."""
    target = getattr(importlib.import_module(fmt.target), "TARGET", None)
    if not isinstance(target, ExportTarget) or target.name != fmt.name:
        raise ConfigError(f"{fmt.target}.TARGET is not the {fmt.name} ExportTarget (got {target!r})")
    return target


TARGETS: dict[str, ExportTarget] = {name: _target(fmt) for name, fmt in FORMATS.items() if fmt.target}


def parse_targets(names: str | Iterable[str]) -> list[ExportTarget]:
    """``"tflite,onnx"`` or a list of names -> targets, with an error listing the valid names."""
    return [TARGETS[n] for n in parse_names(names, list(TARGETS), "export format")]


__all__ = ["TARGETS", "ExportTarget", "QatModel", "LayerError", "ClipMeter", "clip_ratio", "parse_targets", "parse_names",
           "artifact_name"]
