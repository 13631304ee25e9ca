"""Run a detector on one frame: preprocess, ``model.run``, decode and NMS, then map back to the frame.

A :class:`Detector` ties a loaded :class:`~edgecv.model.Model`, its :class:`DetectorSpec` and a
:class:`FramePreprocessor` together, and times each stage of every frame:

- ``preprocess``: resize (stretch or letterbox), illumination, colour order, normalization, layout;
- ``inference``: ``model.run`` alone;
- ``postprocess``: the NaN check of the outputs, ``spec.detect`` (decoder, score threshold, NMS) and the
  mapping of boxes and keypoints from model-input pixels back to frame pixels.

``detector.last_timing`` is the last frame's :class:`StageTimes`; ``detector.timings`` (a :class:`Timings`)
keeps every frame's, for medians, until :meth:`Timings.reset`.

The spec comes from, in order: the ``spec`` argument (a :class:`DetectorSpec`, a built-in spec name or a
spec YAML path), else the ``detector`` entry that ``edgecv.converters.export(..., detector=...)`` writes into the
artifact's manifest. Labels come from ``labels=``, else the spec, else the manifest.

Example:
    >>> det = Detector("face.fp32.tflite", spec="blazeface-short-range",
    ...                options=FrameOptions(resize="letterbox", frame_color="BGR"))      # doctest: +SKIP
    >>> faces = det.detect(cv2.imread("people.jpg"))                                     # doctest: +SKIP
    >>> faces.xyxy, det.class_names(faces), det.last_timing.inference_ms                 # doctest: +SKIP
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from edgecv.detection.detections import Detections
from edgecv.detection.frames import FrameOptions, FramePreprocessor, FrameTransform
from edgecv.detection.spec import DetectorSpec, load_spec, spec_names
from edgecv.errors import BackendError, ConfigError, InputError

if TYPE_CHECKING:
    from edgecv.model import Model

log = logging.getLogger(__name__)

STAGES = ("preprocess", "inference", "postprocess")
MANIFEST_KEY = "detector"  # where edgecv.converters.export puts spec.to_dict() in a manifest


# -- timings ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageTimes:
    """Milliseconds one frame spent in each stage."""

    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.inference_ms + self.postprocess_ms

    def to_dict(self) -> dict[str, float]:
        return {**dataclasses.asdict(self), "total_ms": self.total_ms}


class Timings:
    """Stage times of the frames a detector ran, for medians and percentiles.

    Only the last ``window`` frames are kept (a camera can run for days); ``count`` counts them all.

    Example:
        >>> t = Timings()
        >>> t.add(StageTimes(1.0, 4.0, 0.5)); t.add(StageTimes(3.0, 6.0, 0.5))
        >>> t.median()["inference_ms"], len(t)
        (5.0, 2)
    """

    def __init__(self, window: int = 100_000) -> None:
        if window < 1:
            raise ConfigError(f"Timings window: expected a positive integer, got {window!r}")
        self._rows: collections.deque[tuple[float, float, float]] = collections.deque(maxlen=window)
        self.count = 0

    def add(self, times: StageTimes) -> None:
        self._rows.append((times.preprocess_ms, times.inference_ms, times.postprocess_ms))
        self.count += 1

    def reset(self) -> None:
        """Forget every frame (after a warm-up, say)."""
        self._rows.clear()
        self.count = 0

    def __len__(self) -> int:
        return len(self._rows)

    def as_array(self) -> np.ndarray:
        """``[frames, 3]`` milliseconds: preprocess, inference, postprocess."""
        return np.asarray(self._rows, np.float64).reshape(-1, 3)

    def percentile(self, q: float) -> dict[str, float | None]:
        """The ``q``-th percentile (0..100) of each stage and of the per-frame total; None without frames."""
        a = self.as_array()
        keys = [f"{s}_ms" for s in STAGES] + ["total_ms"]
        if not len(a):
            return dict.fromkeys(keys)
        cols = np.concatenate([a, a.sum(axis=1, keepdims=True)], axis=1)
        return {k: float(v) for k, v in zip(keys, np.percentile(cols, q, axis=0))}

    def median(self) -> dict[str, float | None]:
        """The median of each stage, and the median per-frame total (not the sum of the medians)."""
        return self.percentile(50)

    def to_dict(self) -> dict[str, Any]:
        return {"frames": len(self), "median": self.median(), "p90": self.percentile(90)}


# -- resolving the spec ----------------------------------------------------------------------------------


def spec_from_manifest(model: Model) -> DetectorSpec | None:
    """The detector spec recorded in ``model``'s manifest, or None when it has none."""
    manifest = model.manifest
    data = manifest.extra.get(MANIFEST_KEY) if manifest is not None else None
    if data is None:
        return None
    where = f"{model.path.name} manifest '{MANIFEST_KEY}'"
    return DetectorSpec.from_dict(dict(data), base_dir=model.path.parent, where=where)


def resolve_spec(
    model: Model,
    spec: DetectorSpec | str | Path | None = None,
    *,
    labels: Sequence[str] | None = None,
    score_threshold: float | None = None,
) -> DetectorSpec:
    """The spec to run ``model`` with: ``spec`` (object, built-in name or YAML path), else the manifest's.

    ``labels`` and ``score_threshold`` replace the spec's. Labels missing from both come from the
    manifest's ``labels`` when it has them. No spec anywhere is a one-line ConfigError listing the
    built-in specs.
    """
    if spec is None:
        resolved = spec_from_manifest(model)
        if resolved is None:
            raise ConfigError(f"{model.path.name} has no detector spec in its manifest; pass a spec (--spec): "
                              f"a spec YAML file or one of the built-in specs {', '.join(spec_names())}")
    elif isinstance(spec, DetectorSpec):
        resolved = spec
    elif isinstance(spec, (str, Path)):
        resolved = load_spec(spec)
    else:
        raise ConfigError(f"spec: expected a DetectorSpec, a built-in spec name or a YAML path, "
                          f"got {type(spec).__name__}")
    changes: dict[str, Any] = {}
    if labels is not None:
        if isinstance(labels, str) or not all(isinstance(s, str) for s in labels):
            raise ConfigError("labels: expected a list of class names")
        changes["labels"] = tuple(labels)
    elif resolved.labels is None and model.labels:
        changes["labels"] = tuple(model.labels)
    if score_threshold is not None:
        if isinstance(score_threshold, bool) or not isinstance(score_threshold, (int, float)) \
                or not np.isfinite(score_threshold):
            raise ConfigError(f"score threshold: expected a finite number, got {score_threshold!r}")
        changes["score_threshold"] = float(score_threshold)
    return dataclasses.replace(resolved, **changes) if changes else resolved


def _preprocessor(model: Model, spec: DetectorSpec, options: FrameOptions) -> FramePreprocessor:
    """The model's FramePreprocessor. An integer input with no normalization in the spec or a manifest
    (a quantized ``.tflite`` as shipped, such as SSD MobileNet's uint8 input) takes raw pixels in its own
    dtype, even under ``float_io``: its quantization parameters are the normalization."""
    info = model.inputs[0] if model.inputs else None
    raw = (info is not None and model.float_io and np.dtype(info.dtype).kind in "iu" and spec.mean is None
           and model.manifest is None)
    if raw:  # from_model reads only these attributes; float_io off makes it keep the input's own dtype
        view = SimpleNamespace(inputs=model.inputs, path=model.path, manifest=None, float_io=False)
        return FramePreprocessor.from_model(view, spec=spec, options=options)  # type: ignore[arg-type]
    return FramePreprocessor.from_model(model, spec=spec, options=options)


# -- the detector ----------------------------------------------------------------------------------------


class Detector:
    """A model plus its spec: :meth:`detect` turns one uint8 frame into :class:`Detections` in frame pixels.

    ``model``: a loaded :class:`~edgecv.model.Model` (with ``float_io=True`` for quantized artifacts), or
    a path to load (float I/O, ``threads``, ``backend``, ``verify`` and ``shared_cores`` as :func:`edgecv.load`
    takes them). ``spec``,
    ``labels``, ``score_threshold``: see :func:`resolve_spec`. ``options``: how frames are resized and lit,
    and their colour order (``frame_color="BGR"`` for frames OpenCV decoded); a ``resize`` or ``pad_value``
    left None is the spec's (``detector.options`` holds the resolved ones). One detector per thread.
    """

    def __init__(
        self,
        model: Model | str | Path,
        *,
        spec: DetectorSpec | str | Path | None = None,
        options: FrameOptions = FrameOptions(),
        threads: int | None = None,
        backend: str | None = None,
        labels: Sequence[str] | None = None,
        score_threshold: float | None = None,
        verify: bool = True,
        shared_cores: bool = False,
    ) -> None:
        self.threads: int | None = None  # the runtime's threads, when this detector loaded the model
        self.shared_cores = shared_cores
        if isinstance(model, (str, Path)):
            from edgecv.backends.base import default_threads
            from edgecv.model import load

            model = load(model, float_io=True, threads=threads, backend=backend, verify=verify,
                         shared_cores=shared_cores)
            self.threads = default_threads(threads)
        self.model = model
        self.spec = resolve_spec(model, spec, labels=labels, score_threshold=score_threshold)
        self.options = options.resolved(self.spec)
        self.preprocessor = _preprocessor(model, self.spec, self.options)
        self.input_size = self.preprocessor.input_size
        self.last_timing: StageTimes | None = None
        self.timings = Timings()
        self._output_names = [t.name for t in model.outputs]
        self._run: Callable[[np.ndarray], list[np.ndarray]] | None = None  # set by sharing()

    def __repr__(self) -> str:
        return (f"Detector({self.model.path.name!r}, spec={self.spec.name or self.spec.decoder!r}, "
                f"input={self.input_size[0]}x{self.input_size[1]}, resize={self.options.resize})")

    @property
    def labels(self) -> tuple[str, ...] | None:
        return self.spec.labels

    def class_names(self, detections: Detections) -> list[str]:
        """Each detection's label (its class id as text where there is none)."""
        return self.spec.class_names(detections)

    def detect(self, frame: np.ndarray) -> Detections:
        """Detections in ``frame``'s pixels (boxes and keypoints clipped to the frame), best first.

        The frame is uint8 ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]``, and is not modified.
        Outputs with NaN, and a spec that does not fit the model's outputs, raise one-line errors.
        """
        t0 = time.perf_counter()
        x, transform = self.prepare(frame)
        t1 = time.perf_counter()
        outputs = self.infer(x)
        t2 = time.perf_counter()
        found = self.decode(outputs, transform)
        t3 = time.perf_counter()
        self.last_timing = StageTimes((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
        self.timings.add(self.last_timing)
        return found

    # The three steps of detect(), for pipelines that run them in different threads (each step keeps no
    # state between calls, so prepare, infer and decode may run concurrently on different frames).
    def set_threads(self, threads: int) -> None:
        """Run the model with ``threads`` runtime threads from the next frame on: the artifact (already checked
        when this detector loaded it) is loaded again with them, and replaces the model in one step."""
        from edgecv.model import load

        m = self.model
        self.model = load(m.path, float_io=m.float_io, threads=threads, backend=m.backend, isolate=False, verify=False,
                          shared_cores=self.shared_cores)
        self.threads = threads

    def clone(self, *, threads: int) -> "Detector":
        """A second detector over the same artifact and settings, with its own runtime (``threads`` threads): for
        a second thread that runs inference beside this one. Timings start empty.

        Example:
            >>> twin = detector.clone(threads=1)                     # doctest: +SKIP
        """
        twin = copy.copy(self)
        twin.timings, twin.last_timing = Timings(), None
        twin._run = None
        twin.set_threads(threads)
        twin.preprocessor = _preprocessor(twin.model, twin.spec, twin.options)  # one per thread (CLAHE state)
        return twin

    def prepare(self, frame: np.ndarray) -> tuple[np.ndarray, FrameTransform]:
        """``frame`` resized, lit and normalized into the model's input, and the mapping back to the frame."""
        return self.preprocessor.run(frame)

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        """The model's raw outputs for a prepared input."""
        return self.model.run(x) if self._run is None else self._run(x)

    def sharing(self, run: Callable[[np.ndarray], list[np.ndarray]]) -> "Detector":
        """A detector for another thread whose inference goes through ``run`` (for example a batcher that
        gathers the frames of several streams into one call of this detector's model): the same spec, its own
        preprocessor and timings, no runtime of its own.

        Example:
            >>> per_stream = detector.sharing(batcher.run)            # doctest: +SKIP
        """
        twin = copy.copy(self)
        twin.timings, twin.last_timing = Timings(), None
        twin.preprocessor = _preprocessor(twin.model, twin.spec, twin.options)
        twin._run = run
        return twin

    def decode(self, outputs: list[np.ndarray], transform: FrameTransform) -> Detections:
        """Raw outputs -> Detections in frame pixels (decoder, NMS, mapping back); NaN outputs and a spec that
        does not fit them raise one-line errors."""
        self._check_finite(outputs)
        try:
            found = self.spec.detect(outputs, input_size=self.input_size)
        except InputError as exc:
            raise InputError(f"detector spec {self.spec.name or self.spec.decoder!r} does not fit "
                             f"{self.model.path.name}: {exc}") from None
        return transform.to_frame(found)

    __call__ = detect

    def _check_finite(self, outputs: list[np.ndarray]) -> None:
        for i, out in enumerate(outputs):
            if out.dtype.kind == "f" and np.isnan(out).any():
                name = self._output_names[i] if i < len(self._output_names) else str(i)
                n = int(np.isnan(out).sum())
                raise BackendError(f"{self.model.path.name}: output {name!r} [{','.join(map(str, out.shape))}] has "
                                   f"{n} NaN value(s) of {out.size}; the model or its input normalization is broken")
