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
    convert: Callable  # (source, precision, out_file: Path, work: Path, quant: QuantJob | None) -> None
    # (source, precision, artifact: Path, work: Path, quant: QuantJob) -> list[LayerError], worst first
    layer_errors: Callable | None = None


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("tflite", ".tflite", ("fp32", "fp16", "dynamic", "int8", "int16x8"), tflite.convert, tflite.layer_errors),
        Target("onnx", ".onnx", ("fp32", "fp16", "dynamic", "int8"), onnx.convert, onnx.layer_errors),
        Target("openvino", ".xml", ("fp32", "fp16", "dynamic", "int8"), openvino.convert, openvino.layer_errors),
    )
}


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


def artifact_name(stem: str, target: Target, precision: str) -> str:
    return f"{stem}.{precision}{target.suffix}"


@dataclass(frozen=True)
class LayerError:
    """How much quantizing one layer hurts: ``sqnr_db`` of its output against float (lower is worse).

    ``clip_ratio`` is how far the layer's float activations on the eval set reach past their range on
    the calibration set (1.0: within it; 3.0: three times as far from zero): a quantizer calibrated on
    that range clips them. None where the format's tools do not give it.
    """

    name: str
    op_type: str
    sqnr_db: float
    clip_ratio: float | None = None

    def to_dict(self) -> dict:
        d = {"name": self.name, "op_type": self.op_type, "sqnr_db": round(self.sqnr_db, 2)}
        if self.clip_ratio is not None:
            d["clip_ratio"] = round(self.clip_ratio, 2)
        return d


def clip_ratio(calib: tuple[float, float], probe: tuple[float, float]) -> float:
    """How far ``probe`` (min, max) reaches past ``calib`` (min, max), as a ratio of the calibrated
    extent on that side (1.0 when inside). A side the calibration never reached (a logit that was
    always negative and now is positive) is measured against a twentieth of the calibrated width.

    Example:
        >>> clip_ratio((-10.0, 10.0), (-5.0, 30.0)), clip_ratio((-41.0, -1.0), (-30.0, 3.0))
        (3.0, 3.0)
    """
    lo, hi = calib
    floor = max((hi - lo) / 20.0, 1e-12)
    over_hi = max(probe[1] - hi, 0.0) / max(hi, floor)
    over_lo = max(lo - probe[0], 0.0) / max(-lo, floor)
    return 1.0 + max(over_hi, over_lo)


__all__ = ["TARGETS", "Target", "LayerError", "clip_ratio", "parse_targets", "artifact_name", "Path"]
