"""Export targets, in one table: each format's converter and the precisions it writes.

Example:
    >>> sorted(TARGETS)
    ['onnx', 'openvino', 'tflite']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from converters.targets import onnx, openvino, tflite
from edgecv.errors import ConfigError


@dataclass(frozen=True)
class Target:
    """One artifact format edgecv writes."""

    name: str
    suffix: str
    precisions: tuple[str, ...]
    convert: Callable  # (source, precision, out_file: Path, work: Path) -> None


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("tflite", ".tflite", ("fp32", "fp16"), tflite.convert),
        Target("onnx", ".onnx", ("fp32", "fp16"), onnx.convert),
        Target("openvino", ".xml", ("fp32", "fp16"), openvino.convert),
    )
}

PRECISIONS = ("fp32", "fp16")


def parse_targets(names) -> list[Target]:
    """``"tflite,onnx"`` or a list of names -> targets, with an error listing the valid names."""
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    out = []
    for n in names:
        n = n.strip().lower()
        if n not in TARGETS:
            raise ConfigError(f"unknown export format {n!r}; choose from: {', '.join(TARGETS)}")
        if TARGETS[n] not in out:
            out.append(TARGETS[n])
    if not out:
        raise ConfigError(f"no export format given; choose from: {', '.join(TARGETS)}")
    return out


def parse_precisions(names) -> list[str]:
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    out = []
    for n in names:
        n = n.strip().lower()
        if n not in PRECISIONS:
            raise ConfigError(f"unknown precision {n!r}; choose from: {', '.join(PRECISIONS)}")
        if n not in out:
            out.append(n)
    if not out:
        raise ConfigError(f"no precision given; choose from: {', '.join(PRECISIONS)}")
    return out


def artifact_name(stem: str, target: Target, precision: str) -> str:
    return f"{stem}.{precision}{target.suffix}"


__all__ = ["TARGETS", "PRECISIONS", "Target", "parse_targets", "parse_precisions", "artifact_name", "Path"]
