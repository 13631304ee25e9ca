"""Export targets, in one table: each format's converter and the precisions it writes.

Example:
    >>> sorted(TARGETS)
    ['onnx', 'openvino', 'tflite']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgecv.converters.targets import onnx, openvino, tflite
from edgecv.errors import ConfigError


@dataclass(frozen=True)
class Target:
    """One artifact format edgecv writes."""

    name: str
    suffix: str
    precisions: tuple[str, ...]
    # (source, precision, out_file: Path, work: Path, quant: QuantJob | None, *, static_batch, input_shape) -> None;
    # input_shape (in the source's layout) fixes the artifact's input shape, else dynamic dims stay dynamic
    convert: Callable
    # (source, precision, artifact: Path, work: Path, quant: QuantJob, *, input_shape) -> list[LayerError], worst first
    layer_errors: Callable | None = None
    # The format takes static shapes only (its converters need fixed spatial dims): a source with dynamic
    # dims other than the batch is written at the export's input shape, and the report says so.
    static_only: bool = False


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("tflite", ".tflite", ("fp32", "fp16", "dynamic", "int8", "int16x8"), tflite.convert, tflite.layer_errors,
               static_only=True),
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
    the calibration set (1.0: within it; 3.0: three times as far from zero), and ``clip_db`` the SQNR of
    those activations clipped to that range (100: nothing clipped): a quantizer calibrated on that range
    clips them, and ``clip_db`` says how much of the signal that destroys. None where the format's tools
    do not give them. ``head`` marks a layer that produces a model output (through shape-only ops), whose
    quantization error reaches the task metric directly.
    """

    name: str
    op_type: str
    sqnr_db: float
    clip_ratio: float | None = None
    clip_db: float | None = None
    head: bool = False

    def to_dict(self) -> dict:
        d = {"name": self.name, "op_type": self.op_type, "sqnr_db": round(self.sqnr_db, 2)}
        if self.clip_ratio is not None:
            d["clip_ratio"] = round(self.clip_ratio, 2)
        if self.clip_db is not None:
            d["clip_db"] = round(self.clip_db, 1)
        if self.head:
            d["head"] = True
        return d


class ClipMeter:
    """Per tensor: the calibration range, then how far eval activations leave it and how much signal
    clipping to it destroys. Feed ``calib`` with every calibration sample first, then ``probe``.

    Example:
        >>> m = ClipMeter()
        >>> m.calib("t", np.array([-1.0, 2.0])); m.probe("t", np.array([1.0, 4.0]))
        >>> round(m.ratio("t"), 2), round(m.db("t"), 1)
        (2.0, 6.3)
    """

    def __init__(self) -> None:
        self._range: dict[str, tuple[float, float]] = {}
        self._probe: dict[str, list[float]] = {}  # min, max, signal, clipped-away energy

    def calib(self, name: str, values: np.ndarray) -> None:
        lo, hi = float(np.min(values)), float(np.max(values))
        old = self._range.get(name, (lo, hi))
        self._range[name] = (min(old[0], lo), max(old[1], hi))

    def probe(self, name: str, values: np.ndarray) -> None:
        if name not in self._range:
            return
        v = np.asarray(values, np.float64)
        lo, hi = self._range[name]
        acc = self._probe.setdefault(name, [np.inf, -np.inf, 0.0, 0.0])
        acc[0], acc[1] = min(acc[0], float(v.min())), max(acc[1], float(v.max()))
        acc[2] += float(np.sum(v**2))
        acc[3] += float(np.sum((v - np.clip(v, lo, hi)) ** 2))

    def __contains__(self, name: str) -> bool:
        return name in self._probe

    def ratio(self, name: str) -> float:
        acc = self._probe[name]
        return clip_ratio(self._range[name], (acc[0], acc[1]))

    def db(self, name: str) -> float:
        _, _, signal, lost = self._probe[name]
        return 100.0 if lost == 0 else float(10 * np.log10(max(signal, 1e-30) / lost))


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


__all__ = ["TARGETS", "Target", "LayerError", "ClipMeter", "clip_ratio", "parse_targets", "artifact_name", "Path"]
