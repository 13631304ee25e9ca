"""How close an artifact is to its source on the user's data: top-1 against labels, and label-free
fidelity (top-1 agreement, output SQNR, cosine similarity) against the float model. For a detector (given
a detector spec), COCO mAP: against the eval set's own boxes when it has them (``truth``), else mAP@0.5 against
the float model's detections (those it keeps at the spec's score threshold are the boxes; the artifact's are
ranked down to a score of 0.001, as COCO evaluates, so a detection whose score crossed the threshold is ranked
lower, not lost), plus the mean signed change of the matched detections' scores: mAP only ranks, and a
detector whose scores all sink (a face still found, but at 0.40 instead of 0.94) loses its detections at the
threshold it runs with, while quantization noise that moves scores both ways cancels out. With truth boxes the
threshold is judged directly: the F1 at the score threshold against the truth. Also, as figures: the F1 of the
artifact's detections matched to the float model's at the threshold, and the mean |score change|.

The source's outputs on the eval set are computed once and kept on disk, so each artifact is compared
chunk by chunk and memory stays bounded however large the set is.

SQNR and cosine are figures of one output over the whole set: each output's values on every sample form
one vector, compared with the source's (``sum ref^2 / sum (ref - got)^2`` and ``sum ref*got /
sqrt(sum ref^2 * sum got^2)``). Both weigh a sample by its energy, so they always agree: cosine >=
``sqrt(1 - 10^(-SQNR/10))`` whenever SQNR > 0. A sample whose output is ~0 everywhere (a text map
without text, a sigmoid far from its threshold) can no longer make cosine look bad while SQNR looks
perfect, as it did when cosine was a mean over samples. SQNR lies in [-100, 100] dB: 100 means identical
within float rounding, -100 that the artifact gives NaN/inf where the source does not (or nothing like
it). A multi-output model is summarized by its worst output for each figure; ``Scores.outputs`` keeps
every output's.

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

SQNR_MAX_DB = 100.0  # identical within float rounding; higher figures are shown as this
SQNR_MIN_DB = -100.0  # NaN/inf where the source is finite, or noise 10^10 times the signal


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB: ``10 log10(sum ref^2 / sum (ref - got)^2)``, in
    [-100, 100] (100: equal within float rounding)."""
    acc = _Fidelity()
    acc.add(np.ravel(ref), np.ravel(got))
    return acc.sqnr_db


def cosine_similarity(ref: np.ndarray, got: np.ndarray) -> float:
    """``sum ref*got / sqrt(sum ref^2 * sum got^2)`` over all values; 1 when both are all zero, 0 when one is."""
    acc = _Fidelity()
    acc.add(np.ravel(ref), np.ravel(got))
    return acc.cosine


class _Fidelity:
    """Running sums for one output's SQNR and cosine over a whole set, added chunk by chunk."""

    def __init__(self) -> None:
        self.ref2 = self.got2 = self.dot = self.noise = 0.0
        self.nonfinite = 0  # values that are NaN/inf in the artifact but not the same in the source

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        r, q = np.asarray(ref, np.float64), np.asarray(got, np.float64)
        finite = np.isfinite(r) & np.isfinite(q)
        if not finite.all():
            same = (r == q) | (np.isnan(r) & np.isnan(q))  # the same inf or NaN on both sides agrees
            self.nonfinite += int(np.count_nonzero(~finite & ~same))
            r, q = np.where(finite, r, 0.0), np.where(finite, q, 0.0)
        self.ref2 += float(np.sum(r * r))
        self.got2 += float(np.sum(q * q))
        self.dot += float(np.sum(r * q))
        self.noise += float(np.sum((r - q) ** 2))

    @property
    def sqnr_db(self) -> float:
        if self.nonfinite:
            return SQNR_MIN_DB
        if self.noise == 0:
            return SQNR_MAX_DB
        db = 10.0 * np.log10(max(self.ref2, 1e-300) / self.noise)
        return float(min(max(db, SQNR_MIN_DB), SQNR_MAX_DB))

    @property
    def cosine(self) -> float:
        if self.nonfinite:
            return 0.0
        if self.ref2 == 0 or self.got2 == 0:
            return 1.0 if self.ref2 == self.got2 else 0.0  # all-zero on both sides agrees; on one side does not
        return float(np.clip(self.dot / np.sqrt(self.ref2 * self.got2), -1.0, 1.0))


@dataclass(frozen=True)
class OutputScores:
    """One output's fidelity to the source over the whole eval set (see the module docstring)."""

    name: str
    sqnr_db: float
    cosine: float
    nonfinite: int = 0  # values NaN/inf in the artifact where the source's are finite (or differ)

    def to_dict(self) -> dict:
        return {"name": self.name, "sqnr_db": round(self.sqnr_db, 3), "cosine": round(self.cosine, 6), "nonfinite": self.nonfinite}


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
    score_shift: float | None = None  # the mean signed score change of the matched ones (< 0: scores sank)
    detections: int | None = None  # how many this model found on the eval set
    # Detectors: mAP@0.5 of the ranked detections against the float source's; with truth boxes, COCO mAP
    # (@[.5:.95]) and mAP@0.5 against them.
    map50_float: float | None = None
    map: float | None = None
    map50: float | None = None
    truth_f1: float | None = None  # F1 of the detections at the score threshold against the truth boxes
    # Every output's SQNR and cosine; ``sqnr_db`` and ``cosine`` above are the worst output's of each.
    outputs: tuple[OutputScores, ...] = ()

    def to_dict(self) -> dict:
        d = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items() if k != "outputs"}
        d["outputs"] = [o.to_dict() for o in self.outputs]
        return d


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
    artifacts are then also scored on how well their detections match the source's. ``rank`` does the same
    down to a low score (the detections mAP ranks), and ``truth`` gives each sample's true boxes, in the
    model input's pixels, when the eval set has them.
    """

    def __init__(self, chunks: Callable[[], Iterator[tuple[np.ndarray, np.ndarray | None]]], run_source, work: Path,
                 *, detect: Callable[[list[np.ndarray]], Any] | None = None, rank: Callable[[list[np.ndarray]], Any] | None = None,
                 truth: list | None = None, names: list[str] | None = None) -> None:
        self._chunks = chunks
        self._names = names
        self._work = work
        self._detect = detect
        self._rank = rank if detect is not None else None
        self.truth = truth if self._rank is not None else None
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
        if self.truth is not None and len(self.truth) != self.samples:
            raise InputError(f"the eval set's boxes are for {len(self.truth)} images, its images {self.samples}")
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
        fidelity: list[_Fidelity] = []
        correct = agree = start = 0
        tp = fp = fn = found = 0
        score_err = shift = 0.0
        ranked: list = []
        truth_tp = truth_fp_fn = 0
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
                        moved = dets.confidence[m.pairs[:, 0]] - ref_dets.confidence[m.pairs[:, 1]]
                        score_err, shift = score_err + float(np.abs(moved).sum()), shift + float(moved.sum())
                    if self.truth is not None:
                        t = match_detections(dets, self.truth[start + k], iou_threshold=DETECTION_IOU)
                        truth_tp, truth_fp_fn = truth_tp + t.tp, truth_fp_fn + t.fp + t.fn
                if self._rank is not None:
                    ranked.extend(_per_sample(self._rank, got))
            fidelity = fidelity or [_Fidelity() for _ in ref]
            for acc, g, r in zip(fidelity, got, ref):
                acc.add(r.ravel(), np.ravel(g))
            if self.class_index is not None:
                pred = np.argmax(got[self.class_index].reshape(size, -1), axis=1)
                agree += int(np.sum(pred == np.argmax(ref[self.class_index].reshape(size, -1), axis=1)))
                if self.labels is not None:
                    correct += int(np.sum(pred == self.labels[start : start + size]))
            start += size
        n = self.samples
        if start != n:  # a run that stops early must not be scored on the samples it reached
            raise InputError(f"the artifact was scored on {start} of the {n} eval samples: the set or the run stopped early")
        names = self._names if self._names is not None and len(self._names) == len(fidelity) else [f"output {i}" for i in range(len(fidelity))]
        per_output = tuple(OutputScores(nm, a.sqnr_db, a.cosine, a.nonfinite) for nm, a in zip(names, fidelity))
        has_classes = self.class_index is not None
        maps = self._maps(ranked) if self._rank is not None else {}
        if self.truth is not None:
            maps["truth_f1"] = 2 * truth_tp / (2 * truth_tp + truth_fp_fn) if truth_tp + truth_fp_fn else 1.0
        return Scores(
            samples=n,
            top1=correct / n if has_classes and self.labels is not None else None,
            agreement=agree / n if has_classes else None,
            sqnr_db=min(o.sqnr_db for o in per_output),
            cosine=min(o.cosine for o in per_output),
            detection_f1=(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0) if self._detect is not None else None,
            score_error=(score_err / tp if tp else 0.0) if self._detect is not None else None,
            score_shift=(shift / tp if tp else 0.0) if self._detect is not None else None,
            detections=found if self._detect is not None else None,
            outputs=per_output,
            **maps,
        )

    def _maps(self, ranked: list) -> dict[str, float]:
        """mAP@0.5 of ``ranked`` against the source's detections (when it has any), and against the truth."""
        from edgecv.detection.evaluate import evaluate_detections

        out = {}
        if any(len(d) for d in self._detections):
            out["map50_float"] = evaluate_detections(self._detections, ranked).map50
        if self.truth is not None:
            m = evaluate_detections(self.truth, ranked)
            out["map"], out["map50"] = m.map, m.map50
        return out


DETECTION_IOU = 0.5  # a detection agrees with the source's when IoU >= this and the classes are equal
RANK_SCORE = 0.001  # the lowest score of the detections mAP ranks (COCO's evaluations use the same)


def _per_sample(detect: Callable, outputs: list[np.ndarray]) -> list:
    """``detect`` applied to each sample of batched outputs."""
    return [detect([o[i : i + 1] for o in outputs]) for i in range(len(outputs[0]))]


def _align(got: list[np.ndarray], tails: list[tuple[int, ...]]) -> list[np.ndarray]:
    """An artifact's outputs in the source's order and layout (``tails``: the source's shapes without the batch)."""
    from edgecv.converters.validate import match_outputs

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
    """Points lost against the source. Detectors: with truth boxes, the larger of the source's COCO mAP
    (@[.5:.95]) minus the artifact's and the source's F1 at the score threshold minus the artifact's, both
    against the truth; else, when the source detects anything on the eval set, 100 x (1 - mAP@0.5 against the
    source's detections) + 100 x |the mean signed score change of the matched detections|. Classifiers: top-1
    against labels when there are some, else the share of samples whose top-1 differs from the source's. None
    otherwise."""
    src = reference.source
    if scores.map is not None and src.map is not None:
        return 100.0 * max(src.map - scores.map, (src.truth_f1 or 0.0) - (scores.truth_f1 or 0.0))
    if scores.map50_float is not None and reference.source_detections:
        return 100.0 * (1.0 - scores.map50_float) + 100.0 * abs(scores.score_shift or 0.0)
    if scores.detection_f1 is not None and reference.source_detections:  # a Reference without ranked detections
        return 100.0 * (1.0 - scores.detection_f1) + 100.0 * (scores.score_error or 0.0)
    if scores.top1 is not None and reference.source.top1 is not None:
        return 100.0 * (reference.source.top1 - scores.top1)
    if scores.agreement is not None:
        return 100.0 * (1.0 - scores.agreement)
    return None


def judge_quantized(reference: Reference, scores: Scores, *, max_drop: float, min_sqnr: float) -> Verdict:
    """Against labels when there are some; else top-1 agreement with the float model; else output SQNR.
    An artifact with NaN/inf outputs where the float model's are finite fails whatever the rest."""
    broken = next((o for o in scores.outputs if o.nonfinite), None)
    if broken is not None:
        return Verdict(False, drop_points(reference, scores),
                       f"output {broken.name!r} is NaN or infinite at {broken.nonfinite} values where the float model's is finite")
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
    if scores.map is not None and reference.source.map is not None:
        src = reference.source
        return Verdict(False, drop, f"detections lose {drop:.1f} points (max {max_drop:g}) on the eval set's boxes: mAP@[.5:.95] "
                                    f"{100 * scores.map:.1f} against the float model's {100 * src.map:.1f}, F1 at the score "
                                    f"threshold {100 * (scores.truth_f1 or 0):.1f} against {100 * (src.truth_f1 or 0):.1f}")
    if scores.map50_float is not None:
        return Verdict(False, drop, f"detections lose {drop:.1f} points (max {max_drop:g}): mAP@0.5 against the float model's "
                                    f"detections {100 * scores.map50_float:.1f}, scores moved {100 * (scores.score_shift or 0):+.1f} "
                                    f"points; {scores.detections} found at the score threshold, {reference.source_detections} by float")
    if scores.detection_f1 is not None:
        return Verdict(False, drop, f"detections lose {drop:.1f} points against the float model (max {max_drop:g}): F1 "
                                    f"{100 * scores.detection_f1:.1f}% ({scores.detections} found, {reference.source_detections} "
                                    f"by float), matched scores off by {100 * (scores.score_error or 0):.1f} points")
    if scores.top1 is not None and reference.source.top1 is not None:
        return Verdict(False, drop, f"top-1 {100 * scores.top1:.2f}% is {drop:.2f} points below the source (max {max_drop:g})")
    return Verdict(False, drop, f"top-1 agrees with the source on {100 * scores.agreement:.2f}% of samples (max drop {max_drop:g} points)")
