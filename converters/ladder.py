"""The PTQ ladder: when a calibrated artifact fails the accuracy gate, try the quantization settings its
toolchain already has, cheapest first, and keep the first that passes; only then keep layers in float
(:mod:`edgecv.converters.fallback`, started from the best rung's settings).

Each rung is a few :class:`edgecv.converters.quant.QuantOptions` changes on top of the export's own
settings (the base), for the formats whose converter reads them:

- ONNX (ONNX Runtime ``quantize_static``): per-channel weights (when the base has them off), minmax ranges
  from the mean of each sample's min/max, percentile ranges (99.999, then 99.99), entropy ranges;
- OpenVINO (NNCF): full bias correction (when the base has the fast one), ranges from the extremes over
  every sample (NNCF's default is the mean of each sample's min/max), histogram ranges, SmoothQuant (only
  where NNCF applies it: MatMul-heavy models), and last, when ``ladder_accuracy_control`` asks for it,
  ``nncf.quantize_with_accuracy_control`` against the export's gate, which reverts layers to float itself;
- TFLite: the converter has no calibration choice besides per-channel weights on or off.

Every attempt (rung, passed, drop, SQNR, seconds, or why it was skipped) goes in the report.

Example:
    >>> [r.name for r in rungs_for("onnx")]
    ['per-channel', 'moving-average', 'percentile-99.999', 'percentile-99.99', 'entropy']
    >>> options_for(RUNG_BY_NAME["percentile-99.99"], QuantOptions()).calibration
    'percentile'
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import numpy as np

from edgecv.converters.build import Built, ExportContext, build, failure_text
from edgecv.converters.metrics import Reference, judge_quantized
from edgecv.converters.quant import QuantOptions
from edgecv.converters.targets import ExportTarget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rung:
    """One PTQ setting to try: ``changes`` are QuantOptions fields, applied to the export's own options.
    ``applies`` says why the rung does not apply to a model (None: it does)."""

    name: str
    formats: tuple[str, ...]
    description: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    applies: Callable[[ExportContext, ExportTarget], str | None] | None = None
    opt_in: str = ""  # a QuantOptions flag that must be on for the rung to run (an expensive one)


def _smooth_quant_applies(ctx: ExportContext, target: ExportTarget) -> str | None:
    """NNCF applies SmoothQuant to MatMuls with weights (its transformer recipe); a CNN has convolutions."""
    from collections import Counter

    from edgecv.converters.targets.openvino import float_model
    from edgecv.deps import require

    ov = require("openvino", extra="convert", purpose="inspect OpenVINO models")
    ops = Counter(op.get_type_name() for op in float_model(ov, ctx.source, ctx.work).get_ordered_ops())
    matmuls, convs = ops["MatMul"], ops["Convolution"] + ops["GroupConvolution"]
    if matmuls <= convs:
        return f"not applicable: {matmuls} MatMul and {convs} convolution layers (NNCF applies SmoothQuant to MatMul-heavy models)"
    return None


# Cheapest first: each costs one conversion and one scoring pass, except the last OpenVINO rung. On BlazeFace
# (300 calibration frames) the histogram rungs took 20-46 s each against 5 s for minmax, percentile and entropy
# trading places from run to run; NNCF's accuracy control took 80-100 s (100-250 s on YOLOv8n), hence opt-in.
RUNGS: tuple[Rung, ...] = (
    Rung("per-channel", ("onnx", "tflite"), "per-channel weight scales", {"per_channel": True}),
    Rung("moving-average", ("onnx",), "minmax ranges from the mean of each sample's min/max (CalibMovingAverage), "
         "not the extremes", {"calibration": "minmax", "onnx_moving_average": True}),
    Rung("percentile-99.999", ("onnx",), "percentile ranges, 99.999th", {"calibration": "percentile", "percentile": 99.999}),
    Rung("percentile-99.99", ("onnx",), "percentile ranges, 99.99th", {"calibration": "percentile", "percentile": 99.99}),
    Rung("entropy", ("onnx",), "entropy (KL) ranges from activation histograms", {"calibration": "entropy"}),
    Rung("bias-correction", ("openvino",), "NNCF's full bias correction", {"bias_correction": True}),
    Rung("global-minmax", ("openvino",), "ranges from the extremes over every sample (NNCF's default: the mean of "
         "each sample's min/max)", {"openvino_ranges": "minmax"}),
    Rung("histogram", ("openvino",), "NNCF's histogram ranges", {"openvino_ranges": "histogram"}),
    Rung("smooth-quant", ("openvino",), "NNCF's SmoothQuant (activation outliers moved into MatMul weights)",
         {"openvino_smooth_quant": True}, _smooth_quant_applies),
    Rung("accuracy-control", ("openvino",), "nncf.quantize_with_accuracy_control against the export's gate "
         "(reverts layers to float itself; the most expensive)", {"accuracy_control": True},
         opt_in="ladder_accuracy_control"),
)
RUNG_BY_NAME = {r.name: r for r in RUNGS}

NOTES = {"tflite": "the TFLite converter has no calibration choice besides per-channel weights on or off"}


def rungs_for(fmt: str, options: QuantOptions | None = None) -> list[Rung]:
    """The rungs for one format, cheapest first, that ``options`` (default: the defaults) turn on (see the
    module example)."""
    options = options or QuantOptions()
    return [r for r in RUNGS if fmt in r.formats and (not r.opt_in or getattr(options, r.opt_in))]


def options_for(rung: Rung, base: QuantOptions) -> QuantOptions:
    return replace(base, **rung.changes)


def with_options(ctx: ExportContext, options: QuantOptions) -> ExportContext:
    """``ctx`` with ``options`` as its quantization settings, in the export options and the quantization job."""
    return replace(ctx, options=replace(ctx.options, quant=options), quant=replace(ctx.quant, options=options))


@dataclass(frozen=True)
class GateMetric:
    """The export's accuracy gate as a number NNCF's accuracy-aware quantization can climb: 100 when the gate
    passes, else 100 minus the shortfall (drop points over the budget, or dB under ``min_sqnr``; never 0, which
    NNCF divides by). The float model passes, so NNCF's allowed drop is 0 (``max_drop``).

    ``metric(run_one)`` scores ``run_one`` (batch-1 inputs in the source's layout -> outputs) on the export's set.
    """

    scoring: Reference
    options: QuantOptions
    max_drop: float = 0.0

    def __call__(self, run_one: Callable[[np.ndarray], list[np.ndarray]]) -> float:
        def run(x: np.ndarray) -> list[np.ndarray]:  # one sample at a time: artifacts may fix the batch to 1
            outs = [run_one(x[i : i + 1]) for i in range(len(x))]
            return [np.concatenate(o) for o in zip(*outs)]

        scores = self.scoring.score(run)
        return 100.0 + shortfall(judge_quantized(self.scoring, scores, max_drop=self.options.max_drop, min_sqnr=self.options.min_sqnr),
                         scores.sqnr_db, self.options)


def shortfall(verdict, sqnr_db: float | None, options: QuantOptions) -> float:
    """0 for a passing verdict, else minus how far it is from passing (see :class:`GateMetric`).

    Example:
        >>> from edgecv.converters.metrics import Verdict
        >>> shortfall(Verdict(False, 7.5), None, QuantOptions(max_drop=5)), shortfall(Verdict(False, None), 12.0, QuantOptions())
        (-2.5, -8.0)
    """
    if verdict.passed:
        return 0.0
    if verdict.drop is not None:
        return -max(verdict.drop - options.max_drop, 0.0)
    if sqnr_db is not None:
        return -max(options.min_sqnr - sqnr_db, 0.0)
    return -100.0


@dataclass
class Climb:
    """What the ladder (and the fallback after it) made of one failing artifact: the build to keep, the
    context (settings) it was built with, and the report dicts."""

    built: Built
    ctx: ExportContext
    ladder: dict[str, Any] | None = None
    fallback: dict[str, Any] | None = None


def climb(ctx: ExportContext, target: ExportTarget, precision: str, plain: Built) -> Climb:
    """The ladder, then (when no rung passes and ``fallback`` is on) the float fallback from the best rung's
    settings, then the latency check of an artifact with float layers against fp32
    (:func:`edgecv.converters.fallback.no_useful_int8`)."""
    from edgecv.converters.fallback import check_against_fp32, keep_layers_in_float

    q = ctx.options.quant
    result = Climb(plain, ctx)
    if q.ladder:
        result = run_ladder(ctx, target, precision, plain)
    if not result.built.verdict.passed and q.fallback:
        result.built, result.fallback = keep_layers_in_float(result.ctx, target, precision, result.built)
    float_layers = len((result.fallback or {}).get("kept", []))
    chosen = (result.ladder or {}).get("chosen")
    if result.built.verdict.passed and (float_layers or chosen == "accuracy-control"):
        reverted = next((r.get("quantizers_reverted") for r in result.ladder["attempts"] if r["rung"] == chosen), None) if chosen else None
        what = (f"{float_layers} layer{'s' if float_layers > 1 else ''} in float" if float_layers
                else f"NNCF's accuracy control ({reverted} quantizers reverted to float)")
        info = result.fallback if result.fallback is not None else result.ladder
        result.built = check_against_fp32(result.ctx, target, result.built, what, info)
    return result


def run_ladder(ctx: ExportContext, target: ExportTarget, precision: str, plain: Built) -> Climb:
    """Try each rung for ``target`` in order; stop at the first that passes. Returns that build, else the best
    one (by the gate's shortfall), with the attempts."""
    base = ctx.options.quant
    start = time.perf_counter()
    attempts = [_row("base", "the export's own settings", {}, plain, None)]
    best = Climb(plain, ctx)
    best_score = shortfall(plain.verdict, plain.scores.sqnr_db, base)
    tried = [base]
    chosen = None
    for rung in rungs_for(target.name, base):
        options = options_for(rung, base)
        changes = {k: v for k, v in rung.changes.items() if getattr(base, k) != v}
        skip = "the base already uses it" if options in tried else (rung.applies(ctx, target) if rung.applies else None)
        if skip:
            attempts.append({"rung": rung.name, "description": rung.description, "changes": changes, "skipped": skip})
            continue
        tried.append(options)
        rung_ctx = with_options(ctx, options)
        if options.accuracy_control:
            rung_ctx = replace(rung_ctx, quant=replace(rung_ctx.quant, accuracy=GateMetric(ctx.scoring, options)))
        t0 = time.perf_counter()
        try:
            built = build(rung_ctx, target, precision, ctx.work / f"{target.name}-{precision}-{rung.name}")
        except Exception as exc:  # a setting the converter refuses is a failed rung, not a failed export
            log.debug("rung %s of %s %s failed", rung.name, target.name, precision, exc_info=True)
            attempts.append({"rung": rung.name, "description": rung.description, "changes": changes, "passed": False,
                             "error": failure_text(exc), "seconds": round(time.perf_counter() - t0, 1)})
            continue
        attempts.append(_row(rung.name, rung.description, changes, built, time.perf_counter() - t0))
        if options.accuracy_control and target.name == "openvino":
            attempts[-1]["quantizers_reverted"] = _fake_quantizers(plain.path) - _fake_quantizers(built.path)
        log.info("%s %s, rung %s: %s", target.name, precision, rung.name, built.verdict.reason or "passes")
        score = shortfall(built.verdict, built.scores.sqnr_db, options)
        # The fallback starts from the best rung, but not from accuracy control (each of its builds would run it again).
        if score > best_score and (built.verdict.passed or not options.accuracy_control):
            best, best_score = Climb(built, rung_ctx), score
        if built.verdict.passed:
            chosen = rung.name
            break
    best.ladder = {"chosen": chosen, "best": _name(best.ctx.options.quant, tried), "attempts": attempts,
                   "note": NOTES.get(target.name, ""), "seconds": round(time.perf_counter() - start, 1)}
    return best


def _fake_quantizers(xml) -> int:
    """FakeQuantize ops in an OpenVINO IR: NNCF's quantizers."""
    return xml.read_text(errors="replace").count('type="FakeQuantize"')


def _name(options: QuantOptions, tried: list[QuantOptions]) -> str:
    """The rung whose settings ``options`` are ("base" for the export's own)."""
    if options == tried[0]:
        return "base"
    return next((r.name for r in RUNGS if options_for(r, tried[0]) == options), "base")


def _row(name: str, description: str, changes: Mapping[str, Any], built: Built, seconds: float | None) -> dict[str, Any]:
    v = built.verdict
    return {"rung": name, "description": description, "changes": dict(changes), "passed": v.passed,
            "drop": None if v.drop is None else round(v.drop, 4), "sqnr_db": built.scores.sqnr_db,
            "reason": v.reason, "seconds": None if seconds is None else round(seconds, 1)}
