"""Precisions edgecv writes, and the settings and data a quantizing converter needs.

Example:
    >>> parse_precisions("none,int8")
    ['fp32', 'int8']
    >>> PRECISIONS["int8"].needs_calibration
    True
    >>> list(PRECISIONS)  # every precision some format of edgecv.formats is written in, in order
    ['fp32', 'fp16', 'dynamic', 'int8', 'int16x8', 'int4']
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np

from edgecv.converters.choices import parse_names
from edgecv.errors import ConfigError
from edgecv.formats import PRECISIONS as FORMAT_PRECISIONS


@dataclass(frozen=True)
class Precision:
    """One precision an artifact can have."""

    name: str
    description: str
    needs_calibration: bool = False
    quantized: bool = False  # judged by the accuracy gate, not by a float tolerance


_DESCRIBED: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("fp32", "float32, as the source"),
        Precision("fp16", "float16 weights"),
        Precision("dynamic", "int8 weights, float activations (dynamic range)", quantized=True),
        Precision("int8", "int8 weights and activations, calibrated", needs_calibration=True, quantized=True),
        Precision("int16x8", "int16 activations, int8 weights (TFLite)", needs_calibration=True, quantized=True),
        Precision("int4", "4-bit weights in blocks of 32 on MatMul/linear layers, float activations", quantized=True),
    )
}


def _written() -> dict[str, Precision]:
    """The precisions the formats are written in (:data:`edgecv.formats.PRECISIONS`, their ordered union),
    each with its description."""
    undescribed = [n for n in FORMAT_PRECISIONS if n not in _DESCRIBED]
    if undescribed:
        raise ConfigError(f"edgecv.formats names precision(s) {', '.join(undescribed)} that edgecv.converters.quant does not describe")
    return {n: _DESCRIBED[n] for n in FORMAT_PRECISIONS}


PRECISIONS: dict[str, Precision] = _written()
ALIASES = {"none": "fp32", "float32": "fp32", "float16": "fp16", "dynamic-range": "dynamic"}

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
IO_TYPES = ("float", "int8", "uint8")
FALLBACK_RANKINGS = ("auto", "clipping", "error", "leave-one-out")
OPENVINO_RANGES = ("default", "minmax", "histogram")


#: Precisions users ask for that edgecv does not write, each with its one-line reason.
REFUSED = {
    "binary": "binarized networks run only in Larq Compute Engine's runtime, which edgecv cannot load: its "
              "interpreter needs NumPy 1 (edgecv needs NumPy 2) and LiteRT lacks its ops; the evidence and how "
              "to run them anyway: docs/precisions.md",
}


def parse_precisions(names) -> list[str]:
    """``"none,int8"`` or a list -> precision names in order; ``none`` means fp32.

    Example:
        >>> parse_precisions("none,int8")
        ['fp32', 'int8']
        >>> "binary" in REFUSED  # asked for, refused in one line naming why (docs/precisions.md)
        True
    """
    if isinstance(names, str):
        names = names.split(",")
    refused = [n.strip().lower() for n in names if n.strip().lower() in REFUSED]
    if refused:
        raise ConfigError(f"precision {refused[0]}: {REFUSED[refused[0]]}")
    return parse_names([ALIASES.get(n.strip().lower(), n) for n in names], list(PRECISIONS), "precision (--quant)")


@dataclass(frozen=True)
class QuantOptions:
    """Expert settings for quantization and its accuracy gate.

    ``max_drop`` is in points of top-1 (against labels when the eval set has them, else against the float
    model's own top-1). ``min_sqnr`` (dB) gates models whose outputs are not class scores.
    """

    calib_samples: int = 300
    eval_samples: int = 2000
    calibration: str = "minmax"  # ONNX Runtime: minmax | entropy | percentile
    percentile: float = 99.999
    per_channel: bool = True
    # ONNX activations/weights: u8s8 measured faster than s8s8 on x86-64 AVX2 (benchmarks/ptq_mnist.py, part 4).
    onnx_activation_type: str = "uint8"
    onnx_weight_type: str = "int8"
    # 7-bit weights: uint8 x int8 kernels on CPUs without VNNI (AVX2) saturate their 16-bit sums; on
    # BlazeFace this took score SQNR from +9 to -17 dB. (A device profile can turn it off on VNNI CPUs.)
    onnx_reduce_range: bool = True
    io_type: str = "float"  # TFLite int8 model inputs/outputs: float | int8 | uint8
    bias_correction: bool = True  # OpenVINO: NNCF's full bias correction rather than the fast one
    # ONNX Runtime minmax: a moving average of each sample's min/max (CalibMovingAverage) rather than the extremes.
    onnx_moving_average: bool = False
    # OpenVINO: NNCF's activation range estimator: default (its own: the mean of each sample's min/max) | minmax | histogram
    openvino_ranges: str = "default"
    openvino_smooth_quant: bool = False  # OpenVINO: NNCF's SmoothQuant (its transformer recipe), for MatMul-heavy models
    # OpenVINO: nncf.quantize_with_accuracy_control against the export's gate (it reverts layers to float itself).
    accuracy_control: bool = False
    max_drop: float = 1.0
    min_sqnr: float = 20.0
    # Before the float fallback, try the toolchain's other PTQ settings in order of cost (converters/ladder.py).
    ladder: bool = True
    # The ladder's last OpenVINO rung, nncf.quantize_with_accuracy_control: opt-in, as it took 100-250 s on
    # BlazeFace and YOLOv8n and never passed where the cheaper rungs and the float fallback failed.
    ladder_accuracy_control: bool = False
    fallback: bool = True
    # How the fallback finds culprit layers (converters/fallback.py): auto | clipping | error | leave-one-out
    fallback_ranking: str = "auto"
    max_float_layers: int = 16
    # A detector's outputs quantized with ranges from what they hold (converters/output_ranges.py): score
    # logits within +-8, scores in [0, 1], boxes of scoring candidates, a box+score concatenation in float.
    detector_ranges: bool = True

    def __post_init__(self) -> None:
        choices = {
            "calibration": CALIBRATION_METHODS,
            "io_type": IO_TYPES,
            "fallback_ranking": FALLBACK_RANKINGS,
            "onnx_activation_type": ("uint8", "int8"),
            "onnx_weight_type": ("uint8", "int8"),
            "openvino_ranges": OPENVINO_RANGES,
        }
        for key, valid in choices.items():
            if getattr(self, key) not in valid:
                raise ConfigError(f"{key}: expected one of {', '.join(valid)}, got {getattr(self, key)!r}")
        if self.calib_samples < 1 or self.eval_samples < 1:
            raise ConfigError("calib_samples and eval_samples must be at least 1")
        if self.max_drop < 0:
            raise ConfigError(f"max_drop must be at least 0 points, got {self.max_drop}")


@dataclass(frozen=True)
class QuantJob:
    """What a converter needs to quantize: calibration samples, settings, and layers to keep in float.

    ``calib`` yields single samples (batch 1) in the source model's input layout; ``keep_float`` holds
    layer names in the target format's own naming.
    """

    calib: object  # edgecv.converters.data.Dataset, or None for precisions without calibration
    options: QuantOptions = QuantOptions()
    keep_float: tuple[str, ...] = ()
    # The eval set, when it is not the calibration set: where the fallback looks for layers whose
    # activations leave their calibrated range, and measures per-layer error.
    probe: object = None
    # A detector's output ranges from its spec (edgecv.converters.output_ranges.OutputRanges), or None.
    output_ranges: object = None
    # The export's accuracy gate as a metric, for NNCF's accuracy-aware quantization
    # (edgecv.converters.ladder.GateMetric), or None.
    accuracy: object = None

    def samples(self, shape: tuple | list | None = None, *, limit: int | None = None) -> Iterator[np.ndarray]:
        """Calibration samples (the first ``limit`` when given), transposed NCHW<->NHWC when the
        converter's graph wants the other layout."""
        if self.calib is None:
            raise ConfigError("this precision needs calibration data; pass --calib DATA")
        return _fitted(self.calib, shape, limit)

    def probe_samples(self, shape: tuple | list | None = None, *, limit: int | None = None) -> Iterator[np.ndarray]:
        """Samples to diagnose an artifact on: the eval set's when there is one, else calibration samples."""
        return self.samples(shape, limit=limit) if self.probe is None else _fitted(self.probe, shape, limit)

    def with_float(self, names) -> QuantJob:
        return replace(self, keep_float=tuple(names))


def _fitted(dataset, shape, limit: int | None) -> Iterator[np.ndarray]:
    for i, x in enumerate(dataset.inputs()):
        if limit is not None and i >= limit:
            return
        yield fit_layout(x, shape)


def fit_layout(x: np.ndarray, shape) -> np.ndarray:
    """``x`` as is when it fits ``shape`` (None dims match anything), else its NCHW<->NHWC transpose."""
    if shape is None or x.ndim != 4 or _fits(x.shape, shape):
        return x
    for perm in ((0, 2, 3, 1), (0, 3, 1, 2)):
        if _fits(tuple(x.shape[i] for i in perm), shape):
            return np.ascontiguousarray(x.transpose(perm))
    raise ConfigError(f"calibration sample shape {list(x.shape)} does not fit the model input {list(shape)}")


def _fits(got, want) -> bool:
    return len(got) == len(want) and all(w in (None, -1, 0) or w == g or isinstance(w, str) for g, w in zip(got, want))
