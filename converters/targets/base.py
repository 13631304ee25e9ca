"""The interface every export target implements, and the types the targets share.

A target is the workstation half of one artifact format: :data:`edgecv.formats.FORMATS` holds the format's
name, suffix, backends and precisions (and names the target's module); the target converts a source into
that format and knows what export, the float fallback, QAT and optimize need to know about it.

Example:
    >>> from edgecv.converters.targets import TARGETS
    >>> t = TARGETS["openvino"]
    >>> t.suffix, t.static_only, artifact_name("model", t, "int8")
    ('.xml', False, 'model.int8.xml')
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgecv.converters.quant import QuantJob, QuantOptions
from edgecv.converters.sources import Source
from edgecv.errors import ConfigError
from edgecv.formats import ArtifactFormat


@dataclass(frozen=True)
class QatModel:
    """A quantization-aware-trained model as :mod:`edgecv.converters.qat` made it: the QAT SavedModel
    (fake-quant ops in its graph), the int8 TFLite file converted from it, and the 8-bit type its ONNX
    weights are stored in (``uint8`` | ``int8``)."""

    saved_model: Path
    tflite_int8: Path
    onnx_weight_type: str = "uint8"


class ExportTarget(ABC):
    """One artifact format edgecv writes. Name, suffix and precisions come from its
    :class:`edgecv.formats.ArtifactFormat`; subclasses implement the conversion and say what differs.

    ``convert`` and ``layer_errors`` must keep the signatures declared here (checked when a subclass is defined).

    Example:
        >>> from edgecv.converters.targets import TARGETS
        >>> TARGETS["tflite"].precisions
        ('fp32', 'fp16', 'dynamic', 'int8', 'int16x8')
    """

    # The format takes static shapes only (its converters need fixed spatial dims): a source with dynamic
    # dims other than the batch is written at the export's input shape, and the report says so.
    static_only: ClassVar[bool] = False
    # Its int8 artifacts can take and give integer tensors (QuantOptions.io_type); else their I/O stays float.
    integer_io: ClassVar[bool] = False
    # It writes a QAT model (:meth:`write_qat`).
    writes_qat: ClassVar[bool] = False

    def __init__(self, fmt: ArtifactFormat) -> None:
        self.format = fmt

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for method in ("convert", "layer_errors", "write_qat", "calibration_method", "quantization_settings"):
            want, got = inspect.signature(getattr(ExportTarget, method)), inspect.signature(getattr(cls, method))
            shape = [(p.name, p.kind, p.default) for p in want.parameters.values()]
            if [(p.name, p.kind, p.default) for p in got.parameters.values()] != shape:
                raise TypeError(f"{cls.__name__}.{method}{got} does not match ExportTarget.{method}{want}")

    @property
    def name(self) -> str:
        return self.format.name

    @property
    def suffix(self) -> str:
        return self.format.suffix

    @property
    def precisions(self) -> tuple[str, ...]:
        return self.format.precisions

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    @abstractmethod
    def convert(self, source: Source, precision: str, out_file: Path, work: Path, quant: QuantJob | None = None, *,
                static_batch: bool = False, input_shape: tuple[int, ...] | None = None) -> None:
        """Write ``source`` in ``precision`` to ``out_file``, with scratch files in ``work`` (shared by the
        export's artifacts, so views and float models can be cached there). ``quant`` is given for quantized
        precisions. ``input_shape`` (in the source's layout) fixes the artifact's input shape, else dynamic
        dims stay dynamic; ``static_batch`` fixes only the batch, to 1."""

    @abstractmethod
    def layer_errors(self, source: Source, precision: str, artifact: Path, work: Path, quant: QuantJob, *,
                     input_shape: tuple[int, ...] | None = None) -> list[LayerError]:
        """How much quantizing each layer of ``artifact`` hurts, worst first, named the way the format's
        quantizer takes layers to keep in float (:attr:`QuantJob.keep_float`); [] where the format's tools
        give no per-layer figures (the float fallback then has nothing to keep in float)."""

    @abstractmethod
    def calibration_method(self, options: QuantOptions) -> str:
        """The calibration method a calibrated artifact's manifest names (``quantization.method``)."""

    def quantization_settings(self, options: QuantOptions) -> dict[str, Any]:
        """The format's own quantization settings a calibrated artifact's manifest records, beside the method."""
        return {}

    def write_qat(self, model: QatModel, out_file: Path, work: Path) -> None:
        """Write the QAT ``model`` as an int8 artifact at ``out_file`` (scratch files in ``work``)."""
        raise ConfigError(f"edgecv writes no QAT {self.name} artifact")


def artifact_name(stem: str, target: ExportTarget, precision: str) -> str:
    """The artifact's file name: ``{stem}.{precision}{suffix}``.

    Example:
        >>> from edgecv.converters.targets import TARGETS
        >>> artifact_name("net", TARGETS["onnx"], "fp16")
        'net.fp16.onnx'
    """
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


__all__ = ["ExportTarget", "QatModel", "LayerError", "ClipMeter", "clip_ratio", "artifact_name"]
