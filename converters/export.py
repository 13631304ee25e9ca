"""Float export of a source model to TFLite, ONNX and OpenVINO, each artifact checked against the source.

Example:
    >>> report = export("classifier.keras", to=["tflite", "onnx"], out="artifacts")   # doctest: +SKIP
    >>> report.ok                                                                      # doctest: +SKIP
    True

Each artifact is converted in a private work folder, loaded with edgecv's runtime, run on the same
sample inputs as the source, and compared. Only then is it moved into ``out`` (by rename, so readers
never see half a file), with its manifest beside it. An artifact that does not match goes to
``out/_failed/`` instead and never replaces a good one.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from converters.sources import Source, open_source, source_from_keras
from converters.targets import Target, artifact_name, parse_precisions, parse_targets
from converters.toolchain import toolchain_versions
from converters.validate import Tolerance, compare_outputs, judge, sample_inputs, to_layout
from edgecv.errors import EdgeCVError
from edgecv.fileio import ensure_writable_dir, file_size, sha256_of
from edgecv.formats import FORMATS
from edgecv.manifest import Manifest, Preprocess, manifest_path
from edgecv.backends.base import first_line
from edgecv.model import load

log = logging.getLogger(__name__)

FAILED_DIR = "_failed"


@dataclass(frozen=True)
class ExportOptions:
    """Expert settings for export and its validation."""

    samples: int = 8
    seed: int = 0
    fp32: Tolerance = Tolerance(rel=1e-3, min_top1=1.0)
    fp16: Tolerance = Tolerance(rel=2e-2, min_top1=0.875)

    def tolerance(self, precision: str) -> Tolerance:
        return getattr(self, precision)


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
            "outputs": [d.to_dict() for d in self.diffs],
        }


@dataclass
class ExportReport:
    source: str
    out: Path
    artifacts: list[ArtifactResult]

    @property
    def ok(self) -> bool:
        return all(a.status == "passed" for a in self.artifacts)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "out": str(self.out), "ok": self.ok, "artifacts": [a.to_dict() for a in self.artifacts]}


def export(
    model,
    *,
    to: Sequence[str] | str = ("tflite", "onnx", "openvino"),
    precisions: Sequence[str] | str = ("fp32", "fp16"),
    out: str | Path = "export",
    name: str | None = None,
    preprocess: Preprocess | None = None,
    labels: list[str] | None = None,
    input_shape: tuple[int, ...] | None = None,
    layout: str | None = None,
    options: ExportOptions = ExportOptions(),
    progress: bool = False,
) -> ExportReport:
    """Export ``model`` (a path, or an in-memory Keras model) to every format in ``to``.

    Returns an :class:`ExportReport`; ``report.ok`` is False when any artifact failed to convert or to
    match the source. Bad arguments raise :class:`edgecv.errors.EdgeCVError` before any work starts.
    ``layout`` (``NHWC``/``NCHW``) overrides the guessed layout of the source's 4-D inputs.
    """
    targets = parse_targets(to)
    precision_list = parse_precisions(precisions)
    out = ensure_writable_dir(out)
    source = model if isinstance(model, Source) else (open_source(model) if isinstance(model, (str, Path)) else source_from_keras(model))
    stem = name or _stem(source)
    if layout is not None:
        source.inputs = [replace(t, layout=layout) if len(t.shape) == 4 else t for t in source.inputs]
    source_layout = source.layout if source.layout in ("NHWC", "NCHW") else "NHWC"
    preprocess = replace(preprocess or Preprocess(), layout=source_layout)
    inputs = sample_inputs(source.inputs, preprocess, count=options.samples, seed=options.seed, input_shape=input_shape)
    reference = source.reference(inputs)
    source_info = {"path": str(source.path), "kind": source.kind, "sha256": _source_hash(source)}
    toolchain = toolchain_versions()

    jobs = [(t, p) for t in targets for p in precision_list if p in t.precisions]
    results = []
    work = Path(tempfile.mkdtemp(prefix=".edgecv-work-", dir=out))
    ctx = _Context(source, stem, out, work, inputs, reference, preprocess, labels, source_info, toolchain, options)
    try:
        bar = _progress(jobs, progress)
        for target, precision in bar:
            if hasattr(bar, "set_description"):
                bar.set_description(f"{target.name} {precision}")
            results.append(_export_one(ctx, target, precision))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportReport(str(source.path), out, results)


@dataclass(frozen=True)
class _Context:
    """What every artifact of one export shares: the source, its sample inputs and reference outputs."""

    source: Source
    stem: str
    out: Path
    work: Path
    inputs: list[np.ndarray]
    reference: list[np.ndarray]
    preprocess: Preprocess
    labels: list[str] | None
    source_info: dict[str, Any]
    toolchain: dict[str, str]
    options: ExportOptions


def _export_one(ctx: _Context, target: Target, precision: str) -> ArtifactResult:
    source, inputs, options = ctx.source, ctx.inputs, ctx.options
    result = ArtifactResult(target.name, precision)
    filename = artifact_name(ctx.stem, target, precision)
    staging = ctx.work / f"{target.name}-{precision}"
    staging.mkdir()
    tmp_file = staging / filename
    start = time.perf_counter()
    try:
        target.convert(source, precision, tmp_file, ctx.work)
        model = load(tmp_file)
        fed = [to_layout(a, i.layout, m.layout) for a, i, m in zip(inputs, source.inputs, model.inputs)]
        got = model.run(fed)
        result.diffs = compare_outputs(ctx.reference, got, names=[t.name for t in source.outputs])
        reason = judge(result.diffs, options.tolerance(precision))
        result.status = "passed" if reason is None else "failed"
        result.reason = reason or ""
    except Exception as exc:  # any converter failure becomes this artifact's failed row, never a crash
        log.debug("export of %s %s failed", target.name, precision, exc_info=True)
        result.reason = first_line(exc) if isinstance(exc, EdgeCVError) else f"{type(exc).__name__}: {first_line(exc)}"
        result.seconds = time.perf_counter() - start
        return result
    result.seconds = time.perf_counter() - start
    result.size_bytes = file_size(tmp_file)

    manifest = Manifest(
        format=target.name,
        precision=precision,
        artifact=filename,
        inputs=[t.to_dict() for t in model.inputs],
        outputs=[t.to_dict() for t in model.outputs],
        preprocess=Preprocess(
            layout=model.inputs[0].layout if model.inputs[0].layout in ("NHWC", "NCHW") else ctx.preprocess.layout,
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
            "backend": model.backend,
            "samples": int(inputs[0].shape[0]) if inputs and inputs[0].ndim else 1,
            "seed": options.seed,
            "tolerance": {"rel": options.tolerance(precision).rel, "min_top1": options.tolerance(precision).min_top1},
            "outputs": [d.to_dict() for d in result.diffs],
        },
    )
    dest_dir = ctx.out if result.status == "passed" else ctx.out / FAILED_DIR
    dest_dir.mkdir(exist_ok=True)
    result.path = _place(tmp_file, dest_dir, manifest)
    return result


def _place(tmp_file: Path, dest_dir: Path, manifest: Manifest) -> Path:
    """Move the artifact's files into ``dest_dir`` by rename (companions first), then write the manifest."""
    fmt = FORMATS[manifest.format]
    files = fmt.files(tmp_file)
    for f in reversed(files):  # .bin before .xml: an .xml is never visible without its weights
        os.replace(f, dest_dir / f.name)
    final = dest_dir / tmp_file.name
    manifest.write(manifest_path(final))
    return final


def _stem(source: Source) -> str:
    name = source.path.name
    for suffix in (".keras", ".h5", ".hdf5", ".onnx", ".tflite"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


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
