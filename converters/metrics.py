"""How close an artifact is to its source on the user's data: top-1 against labels, and label-free
fidelity (top-1 agreement, output SQNR, cosine similarity) against the float model. For a detector (given
a detector spec), detection agreement with the float model: the F1 of the artifact's detections matched
to the float model's, and how far the matched detections' scores moved.

The source's outputs on the eval set are computed once and kept on disk, so each artifact is compared
chunk by chunk and memory stays bounded however large the set is.

Example:
    >>> import numpy as np
    >>> ref = np.array([1.0, -2.0, 3.0])
    >>> round(sqnr_db(ref, ref + 0.01), 1)
    46.7
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edgecv.errors import InputError

CHUNK = 64  # samples per batch when scoring

def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB: ``10 log10(sum ref^2 / sum (ref - got)^2)``; 100 if equal."""
    ref = np.asarray(ref, np.float64)
    noise = float(np.sum((ref - np.asarray(got, np.float64)) ** 2))
    if noise == 0:
        return 100.0
    return float(10.0 * np.log10(max(float(np.sum(ref**2)), 1e-30) / noise))


@dataclass(frozen=True)
class Scores:
    """One model's figures on the eval set. ``top1`` needs labels; the rest compare with the float source."""

    samples: int
    top1: float | None = None
    agreement: float | None = None
    sqnr_db: float | None = None
    cosine: float | None = None
    # Detectors: F1 of this model's detections against the float source's (IoU >= 0.5, same class), and
    # the mean |score change| of the matched ones (a face still found, but at 0.50 instead of 0.93).
    detection_f1: float | None = None
    score_error: float | None = None
    detections: int | None = None  # how many this model found on the eval set

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def class_output(shapes: list[tuple[int, ...]]) -> int | None:
    """Index of the first output that looks like class scores (``[N, C]``, C > 1), else None."""
    for i, shape in enumerate(shapes):
        if len(shape) == 2 and shape[1] > 1:
            return i
    return None


class Reference:
    """The source model's outputs on an eval set, to score artifacts against.

    ``chunks`` yields ``(inputs, labels)`` batches in the source's layout, the same ones on every call; it
    is called once here and once per scored artifact. Labels are an int array, or None when the set has
    none. The source's outputs are kept on disk in ``work``, one file per chunk and output.

    ``detect`` (for detectors) turns one sample's outputs (batch 1) into :class:`edgecv.detection.Detections`;
    artifacts are then also scored on how well their detections match the source's.
    """

    def __init__(self, chunks: Callable[[], Iterator[tuple[np.ndarray, np.ndarray | None]]], run_source, work: Path,
                 *, detect: Callable[[list[np.ndarray]], Any] | None = None) -> None:
        self._chunks = chunks
        self._work = work
        self._detect = detect
        self._detections: list = []  # the source's, one Detections per sample
        self._files: list[list[Path]] = []
        labels: list[np.ndarray] = []
        shapes: list[tuple[int, ...]] = []
        self.samples = 0
        for k, (x, y) in enumerate(chunks()):
            outs = [np.asarray(o, np.float32) for o in run_source(x)]
            shapes = [o.shape for o in outs]
            files = [work / f"reference-{k}-{i}.npy" for i in range(len(outs))]
            for f, o in zip(files, outs):
                np.save(f, o)
            if detect is not None:
                self._detections.extend(_per_sample(detect, outs))
            self._files.append(files)
            if y is not None:
                labels.append(np.asarray(y))
            self.samples += len(x)
        if self.samples == 0:
            raise InputError("the eval set is empty")
        self.labels = np.concatenate(labels) if labels and sum(len(lb) for lb in labels) == self.samples else None
        self.class_index = class_output(shapes)
        self.class_count = shapes[self.class_index][1] if self.class_index is not None else 0
        self.source = self._score(self._stored())

    def _stored(self) -> Iterator[list[np.ndarray]]:
        for files in self._files:
            yield [np.load(f) for f in files]

    def score(self, run: Callable[[np.ndarray], list[np.ndarray]]) -> Scores:
        """Run ``run`` (an artifact) on the same chunks and compare its outputs with the source's."""
        return self._score(run(x) for x, _ in self._chunks())

    @property
    def source_detections(self) -> int | None:
        """How many detections the source makes on the eval set (None when not a detector)."""
        return sum(len(d) for d in self._detections) if self._detect is not None else None

    def _score(self, outputs: Iterator[list[np.ndarray]]) -> Scores:
        signal = noise = cos_sum = None
        correct = agree = start = 0
        tp = fp = fn = found = 0
        score_err = 0.0
        for got, ref in zip(outputs, self._stored()):
            got = _align(got, [r.shape[1:] for r in ref])
            size = len(ref[0])
            if self._detect is not None:
                from edgecv.detection import match_detections

                for k, dets in enumerate(_per_sample(self._detect, got)):
                    ref_dets = self._detections[start + k]
                    m = match_detections(dets, ref_dets, iou_threshold=DETECTION_IOU)
                    tp, fp, fn, found = tp + m.tp, fp + m.fp, fn + m.fn, found + len(dets)
                    if m.tp:
                        score_err += float(np.abs(dets.confidence[m.pairs[:, 0]] - ref_dets.confidence[m.pairs[:, 1]]).sum())
            if signal is None:
                signal, noise, cos_sum = (np.zeros(len(ref)) for _ in range(3))
            for i, (g, r) in enumerate(zip(got, ref)):
                r = r.astype(np.float64).reshape(size, -1)
                q = np.asarray(g, np.float64).reshape(size, -1)
                signal[i] += np.sum(r**2)
                noise[i] += np.sum((r - q) ** 2)
                nr, nq = np.linalg.norm(r, axis=1), np.linalg.norm(q, axis=1)
                both_zero = (nr == 0) & (nq == 0)  # all-zero on both sides agrees; zero on one side does not
                cos = np.sum(r * q, axis=1) / np.maximum(nr * nq, 1e-30)
                cos_sum[i] += float(np.sum(np.where(both_zero, 1.0, cos)))
            if self.class_index is not None:
                pred = np.argmax(got[self.class_index].reshape(size, -1), axis=1)
                agree += int(np.sum(pred == np.argmax(ref[self.class_index].reshape(size, -1), axis=1)))
                if self.labels is not None:
                    correct += int(np.sum(pred == self.labels[start : start + size]))
            start += size
        n = self.samples
        sqnr = [100.0 if nz == 0 else float(10 * np.log10(max(s, 1e-30) / nz)) for s, nz in zip(signal, noise)]
        has_classes = self.class_index is not None
        return Scores(
            samples=n,
            top1=correct / n if has_classes and self.labels is not None else None,
            agreement=agree / n if has_classes else None,
            sqnr_db=min(sqnr),
            cosine=float(np.min(cos_sum / n)),
            detection_f1=(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0) if self._detect is not None else None,
            score_error=(score_err / tp if tp else 0.0) if self._detect is not None else None,
            detections=found if self._detect is not None else None,
        )


DETECTION_IOU = 0.5  # a detection agrees with the source's when IoU >= this and the classes are equal


def _per_sample(detect: Callable, outputs: list[np.ndarray]) -> list:
    """``detect`` applied to each sample of batched outputs."""
    return [detect([o[i : i + 1] for o in outputs]) for i in range(len(outputs[0]))]


def _align(got: list[np.ndarray], tails: list[tuple[int, ...]]) -> list[np.ndarray]:
    """An artifact's outputs in the source's order and layout (``tails``: the source's shapes without the batch)."""
    from converters.validate import match_outputs

    batch = len(got[0]) if got else 0
    matched = match_outputs([(batch, *t) for t in tails], got)
    for i, (m, t) in enumerate(zip(matched, tails)):
        if m is None:
            g = np.asarray(got[i]) if i < len(got) else None
            shape = list(g.shape) if g is not None else "missing"
            raise InputError(f"artifact output of shape {shape} does not match the source's {[None, *t]}")
    return matched


@dataclass(frozen=True)
class Verdict:
    """The accuracy gate's decision for one artifact. ``drop`` is in points of top-1, or of detection F1
    for detectors (None when neither applies)."""

    passed: bool
    drop: float | None
    reason: str = ""


def drop_points(reference: Reference, scores: Scores) -> float | None:
    """Points lost against the source. Detectors, when the source detects anything on the eval set:
    100 x (1 - detection F1 against the source's detections) plus 100 x the mean score change of the
    matched detections. Classifiers: top-1 against labels when there are some, else the share of samples
    whose top-1 differs from the source's. None otherwise."""
    if scores.detection_f1 is not None and reference.source_detections:
        return 100.0 * (1.0 - scores.detection_f1) + 100.0 * (scores.score_error or 0.0)
    if scores.top1 is not None and reference.source.top1 is not None:
        return 100.0 * (reference.source.top1 - scores.top1)
    if scores.agreement is not None:
        return 100.0 * (1.0 - scores.agreement)
    return None


def judge_quantized(reference: Reference, scores: Scores, *, max_drop: float, min_sqnr: float) -> Verdict:
    """Against labels when there are some; else top-1 agreement with the float model; else output SQNR."""
    drop = drop_points(reference, scores)
    if drop is None:
        if scores.detection_f1 is not None:
            return Verdict(False, None, "the float model detects nothing on the eval set, so detection agreement cannot be judged: "
                                        "give --eval images that contain the objects")
        if scores.sqnr_db is not None and scores.sqnr_db < min_sqnr:
            return Verdict(False, None, f"output SQNR {scores.sqnr_db:.1f} dB is below {min_sqnr:g} dB")
        return Verdict(True, None)
    if drop <= max_drop:
        return Verdict(True, drop)
    if scores.detection_f1 is not None:
        return Verdict(False, drop, f"detections lose {drop:.1f} points against the float model (max {max_drop:g}): F1 "
                                    f"{100 * scores.detection_f1:.1f}% ({scores.detections} found, {reference.source_detections} "
                                    f"by float), matched scores off by {100 * (scores.score_error or 0):.1f} points")
    if scores.top1 is not None and reference.source.top1 is not None:
        return Verdict(False, drop, f"top-1 {100 * scores.top1:.2f}% is {drop:.2f} points below the source (max {max_drop:g})")
    return Verdict(False, drop, f"top-1 agrees with the source on {100 * scores.agreement:.2f}% of samples (max drop {max_drop:g} points)")
