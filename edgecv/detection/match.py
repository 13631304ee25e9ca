"""Match predicted detections to reference ones (ground truth, or a float model's detections).

Matching is greedy by score, as in COCO evaluation: predictions are taken by descending confidence, and
each takes the still-unmatched reference box it overlaps most, if that IoU is at least ``iou_threshold``
(and above 0), and, when ``class_aware``, the classes agree. It is not an optimal assignment: a
confident prediction may take a box that a weaker one fitted better.

Example:
    >>> import numpy as np
    >>> from edgecv.detection.detections import Detections
    >>> ref = Detections(np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), [1.0, 1.0], [0, 1])
    >>> pred = Detections(np.array([[1, 0, 11, 10], [50, 50, 60, 60]]), [0.9, 0.8], [0, 1])
    >>> m = match_detections(pred, ref)
    >>> m.tp, m.fp, m.fn, m.pairs.tolist(), round(m.f1, 3)
    (1, 1, 1, [[0, 0]], 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecv.detection.boxes import box_iou
from edgecv.detection.detections import Detections
from edgecv.errors import ConfigError, InputError


@dataclass(frozen=True, eq=False)
class Match:
    """Counts and pairs of a matching.

    ``pairs [tp, 2]`` holds (prediction index, reference index) in the order they were made (descending
    prediction confidence) and ``ious [tp]`` their IoU. With nothing on one side, precision or recall
    counts as perfect only when the other side is empty too.
    """

    tp: int
    fp: int
    fn: int
    pairs: np.ndarray
    ious: np.ndarray

    @property
    def precision(self) -> float:
        if self.tp + self.fp == 0:
            return 1.0 if self.fn == 0 else 0.0
        return self.tp / (self.tp + self.fp)

    @property
    def recall(self) -> float:
        if self.tp + self.fn == 0:
            return 1.0 if self.fp == 0 else 0.0
        return self.tp / (self.tp + self.fn)

    @property
    def f1(self) -> float:
        """``2 tp / (2 tp + fp + fn)``; 1.0 when both sides are empty."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 1.0 if denominator == 0 else 2 * self.tp / denominator

    @property
    def mean_iou(self) -> float:
        """Mean IoU of the matched pairs (0.0 with none)."""
        return float(self.ious.mean()) if len(self.ious) else 0.0


def match_detections(
    pred: Detections,
    ref: Detections,
    *,
    iou_threshold: float = 0.5,
    class_aware: bool = True,
) -> Match:
    """Greedy-by-score matching of ``pred`` to ``ref``; see the module docstring."""
    for name, d in (("pred", pred), ("ref", ref)):
        if not isinstance(d, Detections):
            raise InputError(f"match_detections {name}: expected Detections, got {type(d).__name__}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ConfigError(f"match_detections iou_threshold: expected a number in [0, 1], got {iou_threshold!r}")
    iou = box_iou(pred.xyxy, ref.xyxy)
    allowed = (iou >= iou_threshold) & (iou > 0)
    if class_aware:
        allowed &= pred.class_id[:, None] == ref.class_id[None, :]
    candidates = np.where(allowed, iou, -1.0)
    taken = np.zeros(len(ref), bool)
    pairs = []
    for p in np.argsort(-pred.confidence, kind="stable"):
        row = np.where(taken, -1.0, candidates[p])
        if not len(row):
            break
        r = int(row.argmax())
        if row[r] >= 0:
            taken[r] = True
            pairs.append((int(p), r))
    pair_array = np.asarray(pairs, np.int64).reshape(-1, 2)
    tp = len(pairs)
    return Match(
        tp=tp,
        fp=len(pred) - tp,
        fn=len(ref) - tp,
        pairs=pair_array,
        ious=iou[pair_array[:, 0], pair_array[:, 1]],
    )
