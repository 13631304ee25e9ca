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


def _parse_names(names, valid, what: str) -> list[str]:
    """``"a,b"`` or a list -> unique lower-case names in order, each checked against ``valid``."""
    if isinstance(names, str):
        names = names.split(",")
    out: list[str] = []
    for n in (n.strip().lower() for n in names):
        if not n:
            continue
        if n not in valid:
            raise ConfigError(f"unknown {what} {n!r}; choose from: {', '.join(valid)}")
        if n not in out:
            out.append(n)
    if not out:
        raise ConfigError(f"no {what} given; choose from: {', '.join(valid)}")
    return out


def parse_targets(names) -> list[Target]:
    """``"tflite,onnx"`` or a list of names -> targets, with an error listing the valid names."""
    return [TARGETS[n] for n in _parse_names(names, list(TARGETS), "export format")]


def parse_precisions(names) -> list[str]:
    return _parse_names(names, list(PRECISIONS), "precision")


def artifact_name(stem: str, target: Target, precision: str) -> str:
    return f"{stem}.{precision}{target.suffix}"


__all__ = ["TARGETS", "PRECISIONS", "Target", "parse_targets", "parse_precisions", "artifact_name", "Path"]
