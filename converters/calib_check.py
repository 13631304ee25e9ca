"""Does the calibration set represent the eval set? Checked once per export that calibrates (int8, int16x8)
and has an eval set apart from the calibration set.

The float source model (its ONNX view) runs over every calibration sample, then over up to
:data:`EVAL_SAMPLES` eval samples spread over the eval set, and each layer's eval activations are
compared with the range calibration gave it (:func:`edgecv.converters.targets.base.clip_ratio`: 3.0 means
they reach three times as far from zero). A quantizer calibrated on that range clips them. When at least
:data:`WARN_SHARE` of the layers reach :data:`LAYER_RATIO` times their calibrated range, the calibration
data does not represent the eval set, and one warning line says so, with the remedy.

Measured on MediaPipe BlazeFace (86 layers; benchmarks/ptq_blazeface.py's sets; 64 of faces_eval.npy's 200
images against 300 calibration images, about 3.5 s on 2 cores): calibrated on other close-up faces, no layer
reaches 2x (worst 1.07x); calibrated on street frames without close-up faces, 33 of 86 layers do (worst 15x,
the score head ``classificator_8``), and int8 ONNX and OpenVINO miss a 5-point budget (6.9 and 10.4 points).

``calib_include_eval`` (``--calib-include-eval``) adds the eval images to the calibration set instead
(:func:`include_eval`); the check is then skipped, and the report says the accuracy gate is not independent.

Example:
    >>> check = check_calibration(source, work, calib_set, eval_set)          # doctest: +SKIP
    >>> check.representative, check.worst_ratio, len(check.over), check.layers  # doctest: +SKIP
    (False, 15.0, 33, 86)
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import Any

from edgecv.errors import ConfigError

log = logging.getLogger(__name__)

EVAL_SAMPLES = 64  # eval samples the check runs on, spread over the eval set
LAYER_RATIO = 2.0  # a layer is out of range when eval activations reach this many times its calibrated range
WARN_SHARE = 0.10  # the calibration set is unrepresentative when this share of layers is out of range
NAMED = 3  # layers the warning names
KEPT = 10  # layers report.json and the manifests list
NOT_INDEPENDENT = "eval images were used for calibration: the accuracy gate is not independent"
REMEDY = ("calibrate on frames like the eval set, or pass --calib-include-eval (calib_include_eval=True; "
          "the accuracy gate is then not independent)")


def short_name(layer: str) -> str:
    """A layer's name as a warning line shows it: converters from TFLite join the names of fused ops with
    ``;`` (the report keeps the whole name); the first one names the layer.

    Example:
        >>> short_name("model/conv_3/BiasAdd;model/conv_3/Conv2D;model/conv_3/BiasAdd/ReadVariableOp")
        'model/conv_3/BiasAdd'
    """
    return layer.split(";", 1)[0]


@dataclass(frozen=True)
class CalibrationCheck:
    """What the check found. ``over`` holds ``(layer, ratio)`` for the layers whose eval activations reach
    :data:`LAYER_RATIO` times their calibrated range, worst first; ``worst_ratio`` is the largest ratio of any
    layer. ``independent`` is False when the eval images were calibrated on (then nothing is measured);
    ``note`` says why nothing was measured.

    Example:
        >>> c = CalibrationCheck(layers=10, over=(("conv_3", 9.0), ("conv_7", 2.5)), worst_ratio=9.0, measured=True)
        >>> c.share, c.representative
        (0.2, False)
        >>> CalibrationCheck(independent=False, note=NOT_INDEPENDENT).representative is None
        True
    """

    independent: bool = True
    measured: bool = False
    layers: int = 0
    over: tuple[tuple[str, float], ...] = ()
    worst_ratio: float | None = None
    worst_layer: str = ""
    calib_samples: int = 0
    eval_samples: int = 0
    seconds: float = 0.0
    note: str = ""

    @property
    def share(self) -> float:
        """The share of layers out of range (0 when nothing was measured)."""
        return len(self.over) / self.layers if self.layers else 0.0

    @property
    def representative(self) -> bool | None:
        """False when the calibration set does not represent the eval set; None when not measured."""
        return None if not self.measured else self.share < WARN_SHARE

    def summary(self) -> str:
        """One line: the warning when unrepresentative, else what was found (or why nothing was measured).

        Example:
            >>> CalibrationCheck(layers=4, over=(("conv_3", 9.04),), worst_ratio=9.04, measured=True).summary()
            'calibration data does not represent the eval set: eval activations reach 2x to 9x their calibrated range in 1 of 4 layers (worst: conv_3 9x); calibrate on frames like the eval set, or pass --calib-include-eval (calib_include_eval=True; the accuracy gate is then not independent)'
        """
        if not self.independent:
            return NOT_INDEPENDENT
        if not self.measured:
            return f"calibration check not run: {self.note}"
        worst = ", ".join(f"{short_name(name)} {_x(ratio)}" for name, ratio in self.over[:NAMED])
        if self.representative is False:
            return (f"calibration data does not represent the eval set: eval activations reach {_x(LAYER_RATIO)} to "
                    f"{_x(self.worst_ratio)} their calibrated range in {len(self.over)} of {self.layers} layers (worst: {worst}); {REMEDY}")
        measured = f"{self.eval_samples} eval samples against {self.calib_samples} calibration samples"
        if self.over:
            return (f"calibration data represents the eval set: {len(self.over)} of {self.layers} layers reach "
                    f"{_x(LAYER_RATIO)} their calibrated range (worst: {worst}), under {WARN_SHARE:.0%} ({measured})")
        worst_text = f"; worst {_x(self.worst_ratio)}, {short_name(self.worst_layer)}" if self.worst_ratio is not None and self.worst_ratio > 1.0 else ""
        return (f"calibration data represents the eval set: eval activations stay within {_x(LAYER_RATIO)} their calibrated "
                f"range in all {self.layers} layers{worst_text} ({measured})")

    def to_dict(self) -> dict[str, Any]:
        if not self.measured:
            return {"independent": self.independent, "measured": False, "note": self.summary()}
        return {
            "independent": True,
            "measured": True,
            "representative": self.representative,
            "layers": self.layers,
            "layers_over": len(self.over),
            "share": round(self.share, 3),
            "layer_ratio": LAYER_RATIO,
            "warn_share": WARN_SHARE,
            "worst_ratio": None if self.worst_ratio is None else round(self.worst_ratio, 2),
            "over": [{"layer": n, "ratio": round(r, 2)} for n, r in self.over[:KEPT]],
            "calib_samples": self.calib_samples,
            "eval_samples": self.eval_samples,
            "seconds": round(self.seconds, 2),
            "note": self.summary(),
        }


def _x(ratio: float) -> str:
    """``9x``, ``14.6x``, ``1.2x``: two significant figures."""
    return f"{ratio:.2g}x" if ratio < 10 else f"{ratio:.0f}x"


def check_calibration(source, work, calib, eval_set, *, eval_samples: int = EVAL_SAMPLES) -> CalibrationCheck:
    """Measure how far ``eval_set``'s activations in the float ``source`` leave the ranges of ``calib``'s
    (both :class:`edgecv.converters.data.Dataset`), and log one warning line when the calibration set does not
    represent the eval set. ``seconds`` counts the measurement, not the source's ONNX view (cached in ``work``
    for the builds that start from it). Never raises for a model it cannot measure: the result's ``note`` says why.

    Example:
        >>> check_calibration(source, work, calib_set, eval_set).summary()          # doctest: +SKIP
        'calibration data does not represent the eval set: eval activations reach 2x to 15x ...'
    """
    probe = eval_set.spread(eval_samples)
    try:
        view = source.view("onnx", work)  # cached: the ONNX, OpenVINO and TFLite-from-TFLite builds start from it
        started = time.perf_counter()
        layers = _layer_ratios(view, work, calib, probe)
    except Exception as exc:  # a source the ONNX view or ONNX Runtime cannot take: the export goes on unchecked
        from edgecv.converters.build import failure_text

        why = failure_text(exc)
        log.info("calibration check skipped: %s", why, exc_info=log.isEnabledFor(logging.DEBUG))
        return CalibrationCheck(note=f"the float model could not be measured ({why})")
    ranked = sorted(layers.items(), key=lambda kv: -kv[1])
    over = tuple((name, ratio) for name, ratio in ranked if ratio >= LAYER_RATIO)
    check = CalibrationCheck(measured=True, layers=len(layers), over=over, worst_ratio=ranked[0][1] if ranked else None,
                             worst_layer=ranked[0][0] if ranked else "", calib_samples=len(calib), eval_samples=len(probe),
                             seconds=time.perf_counter() - started)
    if check.representative is False:
        log.warning("%s", check.summary())
    else:
        log.info("%s (%.1f s)", check.summary(), check.seconds)
    return check


def _layer_ratios(view, work, calib, probe) -> dict[str, float]:
    """Layer (ONNX node) -> the largest clip ratio of its outputs; nodes that only move values are left out."""
    import onnx

    from edgecv.converters.quant import QuantJob
    from edgecv.converters.targets.onnx import SHAPE_ONLY, float_clip_meter

    meter = float_clip_meter(view, work, QuantJob(calib, probe=probe), probe_limit=None)
    graph = onnx.load(str(view), load_external_data=False).graph
    ratios: dict[str, float] = {}
    for i, node in enumerate(graph.node):
        if node.op_type in SHAPE_ONLY:
            continue
        measured = [meter.ratio(t) for t in node.output if t and t in meter]
        if measured:
            ratios[node.name or f"{node.op_type}_{i}"] = max(measured)
    if not ratios:
        raise ConfigError("the float model exposes no float activations to measure")
    return ratios


def include_eval(calib, eval_set, limit: int):
    """The calibration set with up to ``limit`` eval samples (spread over the eval set) added; the eval samples
    alone when there is no calibration set. Raises :class:`ConfigError` without an eval set.

    Example:
        >>> include_eval(calib_set, eval_set, 300).description                    # doctest: +SKIP
        '300 samples of street.mp4 + 200 samples of faces_eval.npy (the eval set)'
    """
    from edgecv.converters.data import chain

    if eval_set is None:
        raise ConfigError("--calib-include-eval (calib_include_eval=True) adds the eval images to calibration: pass --eval DATA")
    added = eval_set.spread(limit)
    if calib is None:
        alone = copy.copy(added)  # not the eval set itself, whose description the report uses
        alone.description = f"{added.description} (the eval set)"
        return alone
    return chain(calib, added, f"{calib.description} + {added.description} (the eval set)")


__all__ = ["CalibrationCheck", "check_calibration", "include_eval", "NOT_INDEPENDENT", "EVAL_SAMPLES", "LAYER_RATIO", "WARN_SHARE"]
