"""Building one artifact of an export and measuring it, shared by :mod:`edgecv.converters.export` and the float
fallback (:mod:`edgecv.converters.fallback`): the export's settings and shape plan, the context every artifact of
one export shares, converting and scoring one artifact (:func:`build`), and timing it as ``edgecv bench`` does (:func:`p50`).

Example:
    >>> shape_text((None, 3, None, 640))
    '?x3x?x640'
    >>> from edgecv.converters.targets import TARGETS
    >>> ShapePlan((None, 3, None, None), (1, 3, 480, 640)).fixed_for(TARGETS["tflite"])
    (1, 3, 480, 640)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgecv.backends.base import first_line
from edgecv.bench import RUNS, WARMUP
from edgecv.converters.metrics import Reference, Scores, Verdict, judge_quantized
from edgecv.converters.quant import PRECISIONS, QuantJob, QuantOptions
from edgecv.converters.sources import Source
from edgecv.converters.targets import ExportTarget, artifact_name
from edgecv.converters.validate import Tolerance, to_layout
from edgecv.errors import EdgeCVError
from edgecv.manifest import Preprocess
from edgecv.model import load


# Input elements per artifact call when scoring (~4 images of 640x480x3): a runtime's working memory grows
# with the batch it is given, and ONNX Runtime keeps its arena at the peak for the session's life.
RUN_ELEMENTS = 4_000_000


def shape_text(shape: tuple | list) -> str:
    """A shape as the reports and errors write it: ``?`` for a dynamic dim (see the module example)."""
    return "x".join("?" if d is None else str(d) for d in shape)


@dataclass(frozen=True)
class ExportOptions:
    """Expert settings for export and its validation."""

    samples: int = 8
    seed: int = 0
    fp32: Tolerance = Tolerance(rel=1e-3, min_top1=1.0, atol=1e-6)
    fp16: Tolerance = Tolerance(rel=2e-2, min_top1=0.875, atol=1e-4)
    quant: QuantOptions = QuantOptions()
    # Latency p50 of each artifact for the report, measured as `edgecv bench` does (its defaults, its own
    # process); 0 runs skips it.
    bench_runs: int = RUNS
    bench_warmup: int = WARMUP
    bench_threads: int | None = None  # None: every core, as edgecv bench
    # Batch dimension fixed to 1 in the artifact: the Edge TPU and NPUs take static shapes only.
    static_batch: bool = False
    # The export's input_shape fixed in every artifact (else dynamic dims stay dynamic in ONNX and OpenVINO).
    static_shape: bool = False

    def tolerance(self, precision: str) -> Tolerance:
        return getattr(self, precision)


@dataclass(frozen=True)
class ShapePlan:
    """The input shapes an export checks and calibrates at, and which artifacts get a fixed shape.

    ``source`` is the source's first input shape (None: dynamic), ``check`` the shape given (batch first,
    source layout; None when the source is static and none was given), ``second`` a second check shape for
    artifacts that keep dynamic dims, ``static`` whether ``check`` is fixed in every artifact.
    """

    source: tuple
    check: tuple | None = None
    second: tuple | None = None
    static: bool = False

    @property
    def dynamic_axes(self) -> list[int]:
        return [i for i, d in enumerate(self.source) if d is None]

    def fixed_for(self, target: ExportTarget) -> tuple | None:
        """The shape fixed in ``target``'s artifacts, or None when they keep the source's dims."""
        if self.check is None or not self.dynamic_axes:
            return None
        if self.static or (target.static_only and any(i > 0 for i in self.dynamic_axes)):
            return self.check
        return None

    def note_for(self, target: ExportTarget) -> str:
        fixed = self.fixed_for(target)
        if fixed is None:
            return ""
        if self.static:
            return f"input fixed to {shape_text(fixed)} (static shape asked)"
        return f"input fixed to {shape_text(fixed)}: {target.name} takes static shapes (dims {shape_text(self.source)} in the source)"

    def to_dict(self) -> dict[str, Any]:
        return {"source": list(self.source), "dynamic_axes": self.dynamic_axes, "check": list(self.check) if self.check else None,
                "second": list(self.second) if self.second else None, "static": self.static}


@dataclass(frozen=True)
class ExportContext:
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
    scoring: Reference
    quant: QuantJob
    plan: ShapePlan
    detector: Any = None  # edgecv.detection.DetectorSpec
    second_inputs: list[np.ndarray] | None = None  # sample inputs at plan.second, and the source's outputs on them
    second_reference: list[np.ndarray] | None = None
    # Whether the calibration set represents the eval set (edgecv.converters.calib_check.CalibrationCheck), or None.
    calibration_check: Any = None


@dataclass
class Built:
    """One converted file with its figures, before it is placed. It holds no runtime session: a session
    keeps its working memory (at full resolution, hundreds of MB) for as long as it lives, and the
    fallback keeps every build it tries."""

    path: Path
    scores: Scores
    verdict: Verdict


def build(ctx: ExportContext, target: ExportTarget, precision: str, staging: Path, keep_float: tuple[str, ...] = ()) -> Built:
    """Convert ``ctx.source`` to ``target`` in ``precision`` inside ``staging`` (the layers ``keep_float`` in
    float), load it and score it on the export's scoring set; a quantized precision is judged by the accuracy
    gate, a float one passes here (its checks against the source come after)."""
    staging.mkdir(parents=True, exist_ok=True)
    tmp_file = staging / artifact_name(ctx.stem, target, precision)
    job = ctx.quant.with_float(keep_float)
    target.convert(ctx.source, precision, tmp_file, ctx.work, job if PRECISIONS[precision].quantized else None,
                   static_batch=ctx.options.static_batch, input_shape=ctx.plan.fixed_for(target))
    model = load(tmp_file, float_io=True)
    src_layout = ctx.source.inputs[0].layout

    def run(x: np.ndarray) -> list[np.ndarray]:
        return in_parts(model.run, [to_layout(x, src_layout, model.inputs[0].layout)])

    scores = ctx.scoring.score(run)
    q = ctx.options.quant
    verdict = judge_quantized(ctx.scoring, scores, max_drop=q.max_drop, min_sqnr=q.min_sqnr) if PRECISIONS[precision].quantized else Verdict(True, None)
    return Built(tmp_file, scores, verdict)


def in_parts(run: Callable[[list[np.ndarray]], list[np.ndarray]], arrays: list[np.ndarray]) -> list[np.ndarray]:
    """``run(arrays)`` on slices of at most :data:`RUN_ELEMENTS` input elements, outputs joined: a runtime
    given a large batch at full resolution holds all of its activations at once.

    Example:
        >>> [a.shape for a in in_parts(lambda xs: [xs[0] * 2], [np.zeros((3, 4), np.float32)])]
        [(3, 4)]
    """
    n = len(arrays[0]) if arrays and arrays[0].ndim else 0
    per_sample = max(1, sum(int(np.prod(a.shape[1:])) for a in arrays))
    step = max(1, RUN_ELEMENTS // per_sample)
    if n <= step:
        return run(arrays)
    parts = [run([a[i : i + step] for a in arrays]) for i in range(0, n, step)]
    return [np.concatenate(p, axis=0) for p in zip(*parts)]


def bench_settings(options: ExportOptions) -> dict[str, Any] | None:
    """The ``edgecv bench`` settings artifacts are timed with, or None when ``options`` skip timing.

    Example:
        >>> bench_settings(ExportOptions(bench_runs=10, bench_warmup=2))
        {'runs': 10, 'warmup': 2, 'threads': None}
    """
    if options.bench_runs <= 0:
        return None
    return {"runs": options.bench_runs, "warmup": options.bench_warmup, "threads": options.bench_threads}


def p50(path: Path, ctx: ExportContext, target: ExportTarget) -> tuple[float | None, dict | None]:
    """Latency p50 of ``path`` with :func:`edgecv.bench.benchmark`, the code ``edgecv bench`` runs, with
    its settings (runs, warm-up, threads, batch 1, its own process), at the first check shape (batch 1)
    where the artifact keeps dynamic dims; and the settings with the command that reproduces the figure."""
    settings = bench_settings(ctx.options)
    if settings is None:
        return None, None
    from edgecv.bench import benchmark

    plan = ctx.plan
    keeps_dynamic = plan.check is not None and plan.fixed_for(target) is None and any(i > 0 for i in plan.dynamic_axes)
    shape = (1, *plan.check[1:]) if keeps_dynamic else None  # artifacts keeping dynamic dims keep the source's layout
    r = benchmark(path, **settings, input_shape=shape, isolate=True)
    command = f"edgecv bench {path.name} --runs {r.runs} --warmup {r.warmup}"
    command += f" --threads {settings['threads']}" if settings["threads"] is not None else ""
    command += f" --input-shape {shape_text(shape)}" if shape is not None else ""
    return r.p50_ms, {**settings, "input_shape_arg": list(shape) if shape is not None else None, "batch": r.batch,
                      "threads_used": r.threads, "input_shape": r.input_shape, "backend": r.backend, "own_process": True,
                      "command": command}


def failure_text(exc: BaseException) -> str:
    """One line for a failed step: the message of our own errors, the type and message of anyone else's.

    Example:
        >>> failure_text(ValueError("bad shape\\nmore"))
        'ValueError: bad shape'
    """
    return first_line(exc) if isinstance(exc, EdgeCVError) else f"{type(exc).__name__}: {first_line(exc)}"
