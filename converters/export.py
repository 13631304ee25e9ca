"""Export a source model to TFLite, ONNX and OpenVINO, float or quantized, each artifact checked against
the source on the user's data.

Example:
    >>> report = export("classifier.keras", to=["tflite", "onnx"], quant="int8", calib="photos/",
    ...                 eval_data="labelled/", max_drop=1.0, out="artifacts")          # doctest: +SKIP
    >>> report.ok                                                                      # doctest: +SKIP
    True

Each artifact is converted in a private work folder, loaded with edgecv's runtime and run on the same
inputs as the source:
- float artifacts (fp32, fp16) must match the source's outputs within a tolerance on sample inputs;
- quantized ones (dynamic, int8, int16x8) pass an accuracy gate on the eval set: top-1 drop against
  labels, else top-1 agreement with the source, else output SQNR. An int8 artifact that fails is rebuilt
  with the layers that cause the loss kept in float (:mod:`edgecv.converters.fallback`).
Every artifact is scored on the eval set (or the calibration set) for the report, and timed with
``edgecv bench``'s own code and settings (:func:`edgecv.bench.benchmark`, in its own process). Only then is
it placed, with its manifest (the SHA-256 of each of its files), in a staging folder that mirrors ``out``;
``out/report.{json,md,png}`` join them, and the whole set is published at once
(:mod:`edgecv.converters.publish`): killed at any moment, ``out`` holds the old set or the new one, and the
user's other files in it stay. An artifact that fails goes to ``out/_failed/`` instead and never replaces a
good one. An artifact is "passed" only when its files are on disk in ``out``, it loaded, ran and passed every check.

Dynamic input dims (``?x3x?x?``): ``input_shape`` is the shape checks and calibration run at. The dims
stay dynamic in ONNX and OpenVINO artifacts, which are also checked at a second shape (the dynamic height
and width one stride multiple larger); ``ExportOptions.static_shape`` fixes ``input_shape`` in every
artifact instead. TFLite always gets the static shape (its converters need one), noted in the report.
Each manifest records which input dims are dynamic and the shapes checked.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgecv.converters.build import (
    ExportContext,
    ExportOptions,
    ShapePlan,
    bench_settings,
    build,
    failure_text,
    in_parts,
    p50,
    shape_text,
)
from edgecv.converters.metrics import Reference, Scores, drop_points
from edgecv.converters.output_ranges import detector_ranges
from edgecv.converters.place import place_artifact
from edgecv.converters.publish import Publication
from edgecv.converters.quant import PRECISIONS, QuantJob, parse_precisions
from edgecv.formats import FORMATS
from edgecv.converters.sources import Source, open_source, source_from_keras
from edgecv.converters.targets import TARGETS, ExportTarget, parse_targets
from edgecv.converters.toolchain import toolchain_versions
from edgecv.converters.validate import compare_outputs, judge, sample_inputs, to_layout
from edgecv.bench import example_shape, fit_shape
from edgecv.errors import ConfigError, EdgeCVError, InputError
from edgecv.fileio import ensure_writable_dir, file_size, sha256_of
from edgecv.manifest import Manifest, Preprocess
from edgecv.model import load
from edgecv.stages import stage

log = logging.getLogger(__name__)

FAILED_DIR = "_failed"


@dataclass
class ArtifactResult:
    """What happened to one (format, precision) artifact."""

    format: str
    precision: str
    path: Path | None = None
    status: str = "failed"  # passed | failed
    reason: str = ""
    size_bytes: int = 0
    seconds: float = 0.0
    diffs: list = field(default_factory=list)
    scores: Scores | None = None
    drop: float | None = None  # top-1 points lost against the source (labels, else agreement)
    p50_ms: float | None = None
    bench: dict | None = None  # the edgecv bench settings p50_ms was measured with, and the command
    fallback: dict | None = None  # layers kept in float and what they cost
    ladder: dict | None = None  # the PTQ settings tried before the float fallback (converters/ladder.py)
    shapes: dict | None = None  # the artifact's input dims (None: dynamic), whether fixed and why, shapes checked

    @property
    def max_abs_diff(self) -> float | None:
        return max((d.max_abs_diff for d in self.diffs), default=None)

    @property
    def top1_agreement(self) -> float | None:
        values = [d.top1_agreement for d in self.diffs if d.top1_agreement is not None]
        return min(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "precision": self.precision,
            "path": str(self.path) if self.path else None,
            "status": self.status,
            "reason": self.reason,
            "size_bytes": self.size_bytes,
            "seconds": round(self.seconds, 3),
            "max_abs_diff": self.max_abs_diff,
            "top1_agreement": self.top1_agreement,
            "scores": self.scores.to_dict() if self.scores else None,
            "drop_points": None if self.drop is None else round(self.drop, 4),
            "p50_ms": self.p50_ms,
            "bench": self.bench,
            "fallback": self.fallback,
            "ladder": self.ladder,
            "shapes": self.shapes,
            "outputs": [d.to_dict() for d in self.diffs],
        }


def _as_is(path: Path) -> Path:
    return path


@dataclass
class ExportReport:
    source: str
    out: Path
    artifacts: list[ArtifactResult]
    source_scores: Scores | None = None
    source_size: int = 0
    eval_description: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    report_files: list[Path] = field(default_factory=list)  # out/report.{json,md,png}, when written
    # Where an artifact's file is now: in the staging folder until the set is published (for report.json's "ok").
    locate: Callable[[Path], Path] = field(default=_as_is, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """Every artifact passed and its file is on disk."""
        return all(a.status == "passed" and a.path is not None and self.locate(a.path).is_file() for a in self.artifacts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "out": str(self.out),
            "ok": self.ok,
            "eval": self.eval_description,
            "source_scores": self.source_scores.to_dict() if self.source_scores else None,
            "source_size_bytes": self.source_size,
            "settings": self.settings,
            "artifacts": [a.to_dict() for a in self.artifacts],
        }


def export(
    model,
    *,
    to: Sequence[str] | str = tuple(TARGETS),
    quant: Sequence[str] | str = ("fp32", "fp16"),
    calib=None,
    eval_data=None,
    max_drop: float | None = None,
    out: str | Path = "export",
    name: str | None = None,
    preprocess: Preprocess | None = None,
    labels: list[str] | None = None,
    input_shape: tuple[int, ...] | None = None,
    layout: str | None = None,
    detector=None,
    options: ExportOptions = ExportOptions(),
    progress: bool = False,
    trust_source: bool = False,
    reports: bool = True,
    calib_include_eval: bool = False,
    cut_decode: bool = False,
) -> ExportReport:
    """Export ``model`` (a path, or an in-memory Keras model) to every format in ``to``, in every
    precision of ``quant`` (``none``/``fp32``, ``fp16``, ``dynamic``, ``int8``, ``int16x8``).

    ``calib`` (needed by int8) and ``eval_data`` are a folder of images, a video, a ``.npy``/``.npz`` or
    an iterable of arrays; ``eval_data`` with labels (class subfolders, or ``y`` in a ``.npz``) gives
    top-1. ``max_drop`` is the accuracy budget in top-1 points (default ``options.quant.max_drop``).
    ``detector`` (a built-in spec name, a YAML path, or a :class:`edgecv.detection.DetectorSpec`) marks a
    detector: quantized artifacts are then judged on their detections on the eval set, in mAP points: against
    its boxes when YOLO label files sit beside its images (:mod:`edgecv.converters.box_truth`), else against the
    float model's detections (:func:`edgecv.converters.metrics.drop_points`); the spec goes into every manifest.
    ``input_shape`` (the first input's full shape, batch first, in the source's layout) is the shape
    checks and calibration run at; a source with dynamic dims besides the batch needs it. Dynamic dims
    stay dynamic in ONNX and OpenVINO artifacts unless ``options.static_shape``; TFLite artifacts get
    ``input_shape`` (see the module docstring).
    A SavedModel whose graph holds ops with side effects (writing or reading files, Python calls) and a
    Keras file holding Python code are refused unless ``trust_source`` (docs/security.md).
    ``reports`` writes ``out/report.{json,md,png}`` (:func:`edgecv.converters.report.write_report`) into the
    published set, so they always describe the artifacts beside them.
    A calibrated precision with an eval set apart from ``calib`` first checks that the calibration set
    represents the eval set (:mod:`edgecv.converters.calib_check`; one warning line when it does not);
    ``calib_include_eval`` adds the eval images to the calibration set instead, and the report and manifests
    then say that the accuracy gate is not independent.
    ``cut_decode`` exports an ONNX detector cut before its box decoding (:mod:`edgecv.converters.decode_cut`):
    every artifact then ends with the layers an integer-only accelerator runs, and its manifest's spec names the
    decoder that finishes the job on the CPU; the cut is checked against the full model first.
    Returns an :class:`ExportReport`; ``report.ok`` is False when any artifact failed. Bad arguments and
    bad data raise :class:`edgecv.errors.EdgeCVError` before anything is written; an error or a kill later
    leaves ``out`` as it was.
    """
    targets = parse_targets(to)
    precision_list = parse_precisions(quant)
    qopts = options.quant if max_drop is None else replace(options.quant, max_drop=max_drop)
    options = replace(options, quant=qopts)
    _check_precisions(targets, precision_list, eval_data if calib is None and calib_include_eval else calib)
    spec = _detector_spec(detector)
    source = model if isinstance(model, Source) else (
        open_source(model, trust_source=trust_source) if isinstance(model, (str, Path)) else source_from_keras(model))
    stem = name or _stem(source)
    if layout is not None:
        source.inputs = [replace(t, layout=layout) if len(t.shape) == 4 else t for t in source.inputs]
    source_layout = source.layout if source.layout in ("NHWC", "NCHW") else "NHWC"
    preprocess = replace(preprocess or Preprocess(), layout=source_layout)
    plan = _shape_plan(source, input_shape, static=options.static_shape)
    input_shape = plan.check
    inputs = sample_inputs(source.inputs, preprocess, count=options.samples, seed=options.seed, input_shape=input_shape)
    calib_set = _open_data(calib, source, preprocess, input_shape, labels, qopts.calib_samples, options.seed, "calibration")
    eval_set = _open_data(eval_data, source, preprocess, input_shape, labels, qopts.eval_samples, options.seed, "eval")
    calibrates = any(PRECISIONS[p].needs_calibration for p in precision_list)
    if calib_include_eval and calibrates:
        from edgecv.converters.calib_check import include_eval

        calib_set = include_eval(calib_set, eval_set, qopts.calib_samples)
    reference = in_parts(source.reference, inputs)
    source_info = {"path": str(source.path), "kind": source.kind, "sha256": _source_hash(source)}
    cut = None
    if cut_decode:
        from edgecv.converters.decode_cut import cut_source

        source, spec, reference, cut = cut_source(source, spec, inputs=inputs, reference=reference)
        source_info["decode_cut"] = cut.to_dict()
    second_inputs, second_reference = _second_check(source, preprocess, plan, options)
    detect = _detect_fn(spec, inputs[0].shape, source.layout)
    if detect is not None:  # a spec that does not fit the model's outputs fails here, before anything is written
        detect([o[:1] for o in reference])
    out = ensure_writable_dir(out)
    toolchain = toolchain_versions()

    jobs = [(t, p) for t in targets for p in precision_list if p in t.precisions]
    # A precision a format cannot be written in, for a reason it states, fails as that artifact, in one line.
    results = [ArtifactResult(t.name, p, reason=FORMATS[t.name].cannot_write[p])
               for t in targets for p in precision_list if p not in t.precisions and p in FORMATS[t.name].cannot_write]
    for refused in results:
        log.error("%s %s: %s", refused.format, refused.precision, refused.reason)
    with Publication(out) as pub:
        work = pub.work
        scoring, description = _scoring_set(eval_set, calib_set, inputs)
        truth, boxes = _eval_boxes(spec, eval_set, inputs[0].shape, source.layout)
        if truth is not None:
            detect = _detect_fn(spec, inputs[0].shape, source.layout, clip=True)
        ref = Reference(scoring, lambda x: in_parts(source.reference, [x]), work, detect=detect,
                        rank=_rank_fn(spec, inputs[0].shape, source.layout, clip=truth is not None), truth=truth,
                        names=[t.name for t in source.outputs])
        _check_labels(ref, labels)
        if truth is not None and not ref.source.truth_f1:
            raise InputError(f"the float model finds none of the eval set's boxes at its score threshold ({boxes}): do the "
                             "label files' class ids and boxes belong to this model's classes?")
        calib_check = _calibration_check(source, work, calib_set, eval_set, calibrates, calib_include_eval)
        quant_job = QuantJob(calib_set, qopts, probe=eval_set,
                             output_ranges=detector_ranges(spec, source, calib_set, precision_list, qopts))
        ctx = ExportContext(source=source, stem=stem, out=pub.staging, work=work, inputs=inputs, reference=reference, preprocess=preprocess,
                            labels=labels, source_info=source_info, toolchain=toolchain, options=options, scoring=ref,
                            quant=quant_job, plan=plan, detector=spec, second_inputs=second_inputs,
                            second_reference=second_reference, calibration_check=calib_check)
        bar = _progress(jobs, progress)
        for target, precision in bar:
            if hasattr(bar, "set_description"):
                bar.set_description(f"{target.name} {precision}")
            result = _export_one(ctx, target, precision)
            if result.path is not None:
                result.path = pub.final(result.path)
            results.append(result)
            stage(f"built:{target.name}.{precision}")
        settings = {"max_drop": qopts.max_drop, "min_sqnr": qopts.min_sqnr, "calibration": qopts.calibration,
                    "calib": calib_set.description if calib_set is not None else None,
                    "detector": spec.name if spec is not None else None, "source_detections": ref.source_detections,
                    "eval_boxes": boxes,
                    "shapes": plan.to_dict(), "bench": bench_settings(options), "calib_include_eval": calib_include_eval,
                    "calibration_check": calib_check.to_dict() if calib_check is not None else None,
                    "output_ranges": quant_job.output_ranges.to_dict() if quant_job.output_ranges is not None else None,
                    "decode_cut": cut.to_dict() if cut is not None else None}
        report = ExportReport(source_info["path"], out, results, ref.source, _source_size(source), description, settings,
                              locate=pub.locate)
        if reports:
            report.report_files = _write_reports(report, pub)
        pub.publish()
    return report


def _calibration_check(source: Source, work: Path, calib_set, eval_set, calibrates: bool, include_eval: bool):
    """Whether the calibration set represents the eval set (:mod:`edgecv.converters.calib_check`), for an export
    that calibrates; None without calibration or without an eval set apart from it."""
    from edgecv.converters.calib_check import NOT_INDEPENDENT, CalibrationCheck, check_calibration

    if not calibrates or eval_set is None or calib_set is None:
        return None
    if include_eval:
        return CalibrationCheck(independent=False, note=NOT_INDEPENDENT)
    return check_calibration(source, work, calib_set, eval_set)


def _write_reports(report: ExportReport, pub: Publication) -> list[Path]:
    """report.{json,md,png} into the staging folder; an old report.png the new run has no figures for goes."""
    from edgecv.converters.report import write_report

    written = write_report(report, pub.staging)
    if not any(w.name == "report.png" for w in written):
        pub.discard("report.png")
    return [pub.final(w) for w in written]


SECOND_SHAPE_STEP = 32  # the second check shape: each dynamic height/width this much larger (a stride multiple)


def _shape_plan(source: Source, input_shape, *, static: bool) -> ShapePlan:
    """Check ``input_shape`` against the source's first input and decide the check shapes (one line errors)."""
    info = source.inputs[0]
    dims = tuple(info.shape)
    if input_shape is None:
        if any(d is None for d in dims[1:]):
            raise ConfigError(f"input {info.name!r} is {shape_text(dims)}, with dynamic dims: give the shape to check and calibrate at "
                              f"with --input-shape (input_shape=), e.g. {example_shape(dims)}; the dims stay dynamic in ONNX "
                              "and OpenVINO artifacts unless --static-shape (ExportOptions.static_shape)")
        if static and dims and dims[0] is None:
            raise ConfigError("--static-shape (ExportOptions.static_shape) needs --input-shape (input_shape=) to fix")
        return ShapePlan(dims)
    check = fit_shape(info, input_shape)
    spatial = {"NCHW": (2, 3), "NHWC": (1, 2)}.get(source.layout if len(dims) == 4 else "", tuple(range(1, len(dims))))
    grow = [i for i in spatial if dims[i] is None]
    second = None
    if grow and not static:
        second = tuple(d + SECOND_SHAPE_STEP if i in grow else d for i, d in enumerate(check))
    return ShapePlan(dims, check, second, static)


def _second_check(source: Source, preprocess: Preprocess, plan: ShapePlan, options: ExportOptions):
    """Sample inputs at the second check shape and the source's outputs on them (None, None without one)."""
    if plan.second is None:
        return None, None
    inputs = sample_inputs(source.inputs, preprocess, count=SECOND_SAMPLES, seed=options.seed + 1, input_shape=plan.second)
    try:
        return inputs, in_parts(source.reference, inputs)
    except Exception as exc:  # the source's own runtime refuses the shape: nothing to check artifacts against
        why = failure_text(exc)
        raise ConfigError(f"the source does not run at the second check shape {shape_text(plan.second)} ({why}); "
                          "fix the shape in the artifacts with --static-shape (ExportOptions.static_shape)") from None


SECOND_SAMPLES = 2


def _detector_spec(detector):
    if detector is None:
        return None
    from edgecv.detection import DetectorSpec, load_spec

    return detector if isinstance(detector, DetectorSpec) else load_spec(detector)


def _detect_fn(spec, input_shape: tuple[int, ...], layout: str, *, clip: bool = False):
    """One sample's outputs -> its detections, in the model input's pixels (``input_shape`` is a sample input's,
    so dynamic dims are already fixed); ``clip``: boxes clipped to the input, as the runtime's Detector gives
    them (to compare with true boxes, which lie within the image)."""
    if spec is None:
        return None
    if len(input_shape) != 4:
        raise ConfigError(f"a detector spec needs an image input [N, H, W, C] or [N, C, H, W]; this model's is {list(input_shape)}")
    from edgecv.detection.boxes import clip_boxes

    size = _image_size(input_shape, layout)

    def detect(outputs):
        found = spec.detect(outputs, input_size=size)
        return replace(found, xyxy=clip_boxes(found.xyxy, size=size)) if clip else found

    return detect


def _eval_boxes(spec, eval_set, input_shape: tuple[int, ...], layout: str):
    """A detector's eval set's true boxes (YOLO label files beside its images) and where they came from, or
    (None, None)."""
    files = eval_set.files() if spec is not None and eval_set is not None else None
    if not files:
        return None, None
    from edgecv.converters.box_truth import yolo_truth

    found = yolo_truth(files, input_size=_image_size(input_shape, layout), classes=len(spec.labels) if spec.labels else None)
    return found if found is not None else (None, None)


def _image_size(input_shape: tuple[int, ...], layout: str) -> tuple[int, int]:
    """(height, width) of a 4-D image input of ``layout``."""
    h_axis, w_axis = (2, 3) if layout == "NCHW" else (1, 2)
    return int(input_shape[h_axis]), int(input_shape[w_axis])


def _rank_fn(spec, input_shape: tuple[int, ...], layout: str, *, clip: bool = False):
    """As :func:`_detect_fn`, down to the score mAP ranks from (:data:`edgecv.converters.metrics.RANK_SCORE`)."""
    from edgecv.converters.metrics import RANK_SCORE

    if spec is None:
        return None
    return _detect_fn(replace(spec, score_threshold=min(RANK_SCORE, spec.score_threshold)), input_shape, layout, clip=clip)


def _check_precisions(targets: list[ExportTarget], precisions: list[str], calib) -> None:
    for p in precisions:
        if not any(p in t.precisions for t in targets):
            offered = ", ".join(t.name for t in TARGETS.values() if p in t.precisions)
            why = "; ".join(f"{t.name}: {FORMATS[t.name].cannot_write[p]}" for t in targets if p in FORMATS[t.name].cannot_write)
            raise ConfigError(f"precision {p} is not written for {', '.join(t.name for t in targets)}"
                              f"{' (' + why + ')' if why else ''}; it is for: {offered}")
        if PRECISIONS[p].needs_calibration and calib is None:
            raise ConfigError(f"{p} needs calibration data: pass --calib DATA (a folder of images, a video, or a .npy/.npz)")


def _open_data(data, source: Source, preprocess: Preprocess, input_shape, labels, limit: int, seed: int, what: str):
    """Open and read through a calibration or eval set once, so bad data fails before any work."""
    if data is None:
        return None
    from edgecv.converters.data import InputSpec, open_dataset

    if len(source.inputs) != 1:
        raise ConfigError(f"{what} data is supported for models with one image input; this one has {len(source.inputs)}")
    info = source.inputs[0]
    if input_shape is not None:
        info = replace(info, shape=tuple(input_shape))
    dataset = open_dataset(data, spec=InputSpec.from_tensor(info, preprocess), limit=limit, seed=seed, labels=labels, what=what)
    for _ in dataset:  # decodes every selected sample: unreadable files, NaN, wrong shapes fail here
        pass
    return dataset


def _scoring_set(eval_set, calib_set, inputs: list[np.ndarray]):
    """What every artifact is scored on: the eval set, else the calibration set, else the sample inputs."""
    from edgecv.converters.metrics import CHUNK

    if eval_set is not None:
        dataset, description = eval_set, f"eval set: {eval_set.description}"
    elif calib_set is not None:
        dataset, description = calib_set, f"calibration set (no --eval given): {calib_set.description}"
    else:
        samples = inputs[0]

        def chunks():
            yield samples, None

        return chunks, f"{len(samples)} synthetic sample inputs (no --calib or --eval given)"

    def chunks():
        xs, ys = [], []
        for x, y in dataset:
            xs.append(x)
            ys.append(-1 if y is None else y)
            if len(xs) == CHUNK:
                yield np.concatenate(xs), (np.asarray(ys) if dataset.has_labels else None)
                xs, ys = [], []
        if xs:
            yield np.concatenate(xs), (np.asarray(ys) if dataset.has_labels else None)

    return chunks, description


def _check_labels(ref: Reference, labels: list[str] | None) -> None:
    if ref.labels is None:
        return
    if ref.class_index is None:
        raise InputError("the eval set has labels but the model has no class-score output ([N, classes]) to check them against")
    classes = ref.class_count
    if labels is not None and len(labels) != classes:
        raise InputError(f"{len(labels)} labels were given but the model has {classes} classes")
    if ref.labels.min() < 0 or ref.labels.max() >= classes:
        raise InputError(f"eval labels go from {ref.labels.min()} to {ref.labels.max()} but the model has {classes} classes (0..{classes - 1})")


def _checks(ctx: ExportContext, target: ExportTarget, precision: str, model, result: ArtifactResult) -> str | None:
    """Run ``model`` on the sample inputs at each check shape and compare with the source; the reason it
    fails, or None. Float artifacts must match within their tolerance at every shape; quantized ones
    (judged on the eval set) must give every output, finite, at the second shape. Sets ``result.shapes``."""
    source, options = ctx.source, ctx.options
    names = [t.name for t in source.outputs]
    quantized = PRECISIONS[precision].quantized
    checked = [{"shape": [1, *ctx.inputs[0].shape[1:]], "samples": int(ctx.inputs[0].shape[0])}]
    result.shapes = {"input": list(model.inputs[0].shape), "dynamic_axes": [i for i, d in enumerate(model.inputs[0].shape) if d is None],
                     "fixed": ctx.plan.fixed_for(target) is not None, "note": ctx.plan.note_for(target), "checked": checked}

    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        fed = [to_layout(a, i.layout, m.layout) for a, i, m in zip(inputs, source.inputs, model.inputs)]
        return in_parts(model.run, fed)

    reason = None
    if not quantized:
        result.diffs = compare_outputs(ctx.reference, run(ctx.inputs), names=names)
        reason = judge(result.diffs, options.tolerance(precision))
    if ctx.second_inputs is None or ctx.plan.fixed_for(target) is not None:
        return reason
    second = [1, *ctx.second_inputs[0].shape[1:]]
    try:
        got = run(ctx.second_inputs)
    except EdgeCVError as exc:  # e.g. a converter fixed a dim the source leaves dynamic
        return reason or f"does not run at the second check shape {shape_text(second)}: {failure_text(exc)}"
    diffs = compare_outputs(ctx.second_reference, got, names=names)
    checked.append({"shape": second, "samples": int(ctx.second_inputs[0].shape[0]), "outputs": [d.to_dict() for d in diffs]})
    if quantized:
        why = next((f"output {d.name!r} has no counterpart of the same shape" for d in diffs if not np.isfinite(d.rel_diff)), None)
        why = why or next(("an output is not finite" for g in got if not np.all(np.isfinite(np.asarray(g, np.float64)))), None)
    else:
        why = judge(diffs, options.tolerance(precision))
    return reason or (f"at the second check shape {shape_text(second)}: {why}" if why else None)


def _export_one(ctx: ExportContext, target: ExportTarget, precision: str) -> ArtifactResult:
    inputs, options = ctx.inputs, ctx.options
    result = ArtifactResult(target.name, precision)
    start = time.perf_counter()
    try:
        built = build(ctx, target, precision, ctx.work / f"{target.name}-{precision}")
        if not built.verdict.passed and PRECISIONS[precision].needs_calibration and (options.quant.ladder or options.quant.fallback):
            from edgecv.converters.ladder import climb  # other PTQ settings first, float layers last

            climbed = climb(ctx, target, precision, built)
            built, ctx, result.ladder, result.fallback = climbed.built, climbed.ctx, climbed.ladder, climbed.fallback
        model = load(built.path, float_io=True)
        checks_reason = _checks(ctx, target, precision, model, result)
        reason = checks_reason if built.verdict.passed else (built.verdict.reason or "fails the accuracy gate")  # the gate first
        result.scores, result.drop = built.scores, drop_points(ctx.scoring, built.scores)
        io = ([t.to_dict() for t in model.inputs], [t.to_dict() for t in model.outputs], model.backend, model.inputs[0].layout)
        del model
    except Exception as exc:  # any converter failure becomes this artifact's failed row, never a crash
        log.debug("export of %s %s failed", target.name, precision, exc_info=True)
        result.reason = failure_text(exc)
        result.seconds = time.perf_counter() - start
        return result
    try:
        result.p50_ms, result.bench = p50(built.path, ctx, target)
    except Exception as exc:  # a file the benchmark cannot run has not passed
        log.debug("benchmark of %s %s failed", target.name, precision, exc_info=True)
        reason = reason or f"benchmark failed: {failure_text(exc)}"
    result.seconds = time.perf_counter() - start
    tmp_file = built.path
    result.size_bytes = file_size(tmp_file)
    result.status = "passed" if reason is None else "failed"  # decided here; placing it may still fail it
    result.reason = reason or ""

    manifest = Manifest(
        format=target.name,
        precision=precision,
        artifact=tmp_file.name,
        quantization=_quantization_info(ctx, target, precision, io[0], result),
        inputs=io[0],
        outputs=io[1],
        preprocess=Preprocess(
            layout=io[3] if io[3] in ("NHWC", "NCHW") else ctx.preprocess.layout,
            color=ctx.preprocess.color,
            mean=ctx.preprocess.mean,
            std=ctx.preprocess.std,
        ),
        labels=ctx.labels,
        source=ctx.source_info,
        toolchain=ctx.toolchain,
        validation={
            "status": result.status,
            "reason": result.reason,
            "backend": io[2],
            "samples": int(inputs[0].shape[0]) if inputs and inputs[0].ndim else 1,
            "seed": options.seed,
            "tolerance": {"max_drop": options.quant.max_drop, "min_sqnr": options.quant.min_sqnr}
            if PRECISIONS[precision].quantized
            else asdict(options.tolerance(precision)),
            "outputs": [d.to_dict() for d in result.diffs],
            "eval": {"scores": result.scores.to_dict() if result.scores else None, "source": ctx.scoring.source.to_dict(),
                     "drop_points": result.drop},
            "shapes": result.shapes,
            "bench": result.bench,
        },
        extra={"detector": ctx.detector.to_dict()} if ctx.detector is not None else {},
    )
    dest_dir = ctx.out if result.status == "passed" else ctx.out / FAILED_DIR
    try:
        dest_dir.mkdir(exist_ok=True)
        result.path = place_artifact(tmp_file, dest_dir, manifest)
    except Exception as exc:
        log.debug("placing %s %s failed", target.name, precision, exc_info=True)
        result.status, result.reason = "failed", f"could not write the artifact to {dest_dir}: {failure_text(exc)}"
    return result


def _quantization_info(ctx: ExportContext, target: ExportTarget, precision: str, inputs: list[dict],
                       result: ArtifactResult) -> dict[str, Any] | None:
    if precision == "fp32":
        return None
    info: dict[str, Any] = {"precision": precision, "description": PRECISIONS[precision].description}
    q = ctx.options.quant
    if PRECISIONS[precision].needs_calibration:
        info.update({"calibration_set": ctx.quant.calib.description, "calibration_samples": len(ctx.quant.calib),
                     "method": target.calibration_method(q), "per_channel": q.per_channel, **target.quantization_settings(q)})
        if ctx.calibration_check is not None:
            info["calibration_check"] = ctx.calibration_check.to_dict()
        if ctx.quant.output_ranges is not None:
            info["output_ranges"] = ctx.quant.output_ranges.to_dict()
    info["float_layers"] = (result.fallback or {}).get("kept", [])
    info["io"] = [t["dtype"] for t in inputs]
    return info


def _source_size(source: Source) -> int:
    try:
        return file_size(source.path) if source.path.is_file() else 0
    except OSError:
        return 0


def _stem(source: Source) -> str:
    """The source's file name without its suffix (a SavedModel folder's name as it is)."""
    return source.path.name if source.path.is_dir() else source.path.stem


def _source_hash(source: Source) -> str:
    if source.path.exists():
        return sha256_of(source.path)
    # An in-memory Keras model: hash its weights, so the same weights give the same hash.
    import hashlib

    h = hashlib.sha256()
    for w in source.model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def _progress(jobs, enabled: bool):
    if not enabled:
        return jobs
    from tqdm import tqdm

    return tqdm(jobs, unit="artifact", leave=False)


__all__ = ["export", "ExportOptions", "ExportReport", "ArtifactResult", "ShapePlan", "FAILED_DIR"]
