"""Non-maximum suppression on :class:`Detections`: hard (keep the best box) or weighted (MediaPipe).

Boxes are taken by descending confidence; a box whose IoU with a kept box is above ``iou_threshold`` is
suppressed. Class-aware NMS shifts each class's boxes by its own offset so that classes never overlap,
and then runs one pass. ``weighted`` is MediaPipe's ``WeightedNonMaxSuppression``: the kept box, and
every floating-point ``data`` array (keypoints ...), are the confidence-weighted mean of the boxes it
suppresses (itself included); confidence, class and track id stay those of the best box.

Example:
    >>> import numpy as np
    >>> det = Detections(np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]]), [0.9, 0.8, 0.7], [0, 0, 0])
    >>> nms(det, iou_threshold=0.5).xyxy.tolist()
    [[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]]
    >>> nms(det, method="weighted").xyxy[0].astype(float).round(2).tolist()
    [0.47, 0.0, 10.47, 10.0]
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from edgecv.detection.boxes import box_area
from edgecv.detection.detections import Detections
from edgecv.errors import ConfigError, InputError


class _Boxes:
    """Boxes as four contiguous float64 columns plus areas: cheap IoU of one box against many."""

    def __init__(self, xyxy: np.ndarray) -> None:
        self.x1, self.y1, self.x2, self.y2 = (np.ascontiguousarray(c) for c in xyxy.T)
        self.area = box_area(xyxy)

    def overlaps(self, i: int, others: np.ndarray, iou_threshold: float) -> np.ndarray:
        """Which of ``others`` have IoU above ``iou_threshold`` with box ``i``."""
        iw = np.minimum(self.x2[i], self.x2[others]) - np.maximum(self.x1[i], self.x1[others])
        ih = np.minimum(self.y2[i], self.y2[others]) - np.maximum(self.y1[i], self.y1[others])
        inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
        return _suppresses(inter, self.area[i] + self.area[others] - inter, iou_threshold)


def _suppresses(inter: np.ndarray, union: np.ndarray, iou_threshold: float) -> np.ndarray:
    # inter > t * union is IoU > t without a division; an empty union (inter 0) never passes.
    return (inter > iou_threshold * union) & (union > 0)


# Above this many candidate pairs, or this many overlapping ones, NMS runs box by box instead: the pair
# lists would take too much memory, and that many overlaps mean most boxes get suppressed early.
_MAX_PAIRS = 40_000_000
_MAX_EDGES = 4_000_000
_CHUNK_PAIRS = 500_000


def _overlap_graph(xyxy: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray] | None:
    """For boxes in rank order, CSR lists ``(starts, targets)`` of the lower-ranked boxes each one suppresses.

    Candidate pairs come from a sweep along x or y (whichever gives fewer): sorted by low edge, box p can
    only reach IoU > t with boxes q > p whose low edge lies before ``high[p] - t * size[p]``, because the
    IoU of two boxes is never above the IoU of their extents along one axis. None when there are too many.
    """
    n = len(xyxy)
    best = None
    for axis in (0, 1):
        sort = np.argsort(xyxy[:, axis], kind="stable")
        low, high = xyxy[sort, axis], xyxy[sort, axis + 2]
        reach = high - iou_threshold * (high - low)
        reach = reach + 1e-9 * (np.abs(reach) + 1.0)  # rounding must never drop a candidate
        counts = np.clip(np.searchsorted(low, reach, side="left") - np.arange(n) - 1, 0, None)
        total = int(counts.sum())
        if best is None or total < best[0]:
            best = (total, sort, counts, axis)
    total, sort, counts, axis = best
    if total > _MAX_PAIRS:
        return None
    sorted_boxes = xyxy[sort]
    # The other axis's extents, to drop most candidates with a cheap one-dimensional IoU test first.
    other = 1 - axis
    o_low = np.ascontiguousarray(sorted_boxes[:, other])
    o_high = np.ascontiguousarray(sorted_boxes[:, other + 2])
    table = np.concatenate([sorted_boxes, box_area(sorted_boxes)[:, None]], axis=1)
    firsts = np.cumsum(counts) - counts
    src_parts, dst_parts = [], []
    edges = 0
    p0 = 0
    while p0 < n:
        # As many sweep positions as fit in one chunk of pairs (always at least one).
        p1 = max(p0 + 1, int(np.searchsorted(firsts, firsts[p0] + _CHUNK_PAIRS, side="right")))
        c = counts[p0:p1]
        a = np.repeat(np.arange(p0, p1), c)
        b = a + 1 + np.arange(len(a)) - np.repeat(np.cumsum(c) - c, c)
        la, ha, lb, hb = o_low[a], o_high[a], o_low[b], o_high[b]
        inter_1d = np.minimum(ha, hb) - np.maximum(la, lb)
        union_1d = np.maximum(ha, hb) - np.minimum(la, lb)
        near = inter_1d > iou_threshold * union_1d * (1 - 1e-9)  # slack: rounding must never drop a pair
        a, b = a[near], b[near]
        ta, tb = table[a], table[b]
        inter_w = np.minimum(ta[:, 2], tb[:, 2]) - np.maximum(ta[:, 0], tb[:, 0])
        inter_h = np.minimum(ta[:, 3], tb[:, 3]) - np.maximum(ta[:, 1], tb[:, 1])
        inter = np.clip(inter_w, 0, None) * np.clip(inter_h, 0, None)
        hit = _suppresses(inter, ta[:, 4] + tb[:, 4] - inter, iou_threshold)
        ra, rb = sort[a[hit]], sort[b[hit]]  # back to ranks
        src_parts.append(np.minimum(ra, rb))
        dst_parts.append(np.maximum(ra, rb))
        edges += len(ra)
        if edges > _MAX_EDGES:
            return None
        p0 = p1
    src = np.concatenate(src_parts) if src_parts else np.zeros(0, np.int64)
    dst = np.concatenate(dst_parts) if dst_parts else np.zeros(0, np.int64)
    by_src = np.argsort(src, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))])
    return starts, dst[by_src]


def _all_pairs(xyxy: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_overlap_graph` for a few boxes: every pair at once, which is cheaper below :data:`_FEW` boxes
    than the sweep's fixed cost (0.08 ms)."""
    n = len(xyxy)
    x1, y1, x2, y2 = xyxy.T
    inter = np.clip(np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1), 0, None) \
        * np.clip(np.minimum(y2[:, None], y2) - np.maximum(y1[:, None], y1), 0, None)
    area = box_area(xyxy)
    src, dst = np.nonzero(np.triu(_suppresses(inter, area[:, None] + area - inter, iou_threshold), 1))
    return np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))]), dst


#: Below this many boxes NMS compares every pair at once (:func:`_all_pairs`).
_FEW = 64


def _groups(xyxy: np.ndarray, iou_threshold: float, top_k: int | None, *, first_only: bool) -> list[np.ndarray]:
    """Greedy NMS over boxes in rank order: each group is a kept box (first) and the boxes it suppresses.

    With ``first_only`` (hard NMS) the suppressed members are left out.
    """
    n = len(xyxy)
    limit = n if top_k is None else top_k
    graph = _all_pairs(xyxy, iou_threshold) if n < _FEW else _overlap_graph(xyxy, iou_threshold)
    groups: list[np.ndarray] = []
    if graph is not None:
        starts, targets = graph
        done = np.zeros(n, bool)
        for i in range(n):
            if done[i]:
                continue
            hits = targets[starts[i] : starts[i + 1]]
            hits = hits[~done[hits]]
            done[hits] = True
            groups.append(np.array([i]) if first_only else np.concatenate([[i], np.sort(hits)]))
            if len(groups) >= limit:
                break
        return groups
    boxes = _Boxes(xyxy)
    rest = np.arange(n)
    while rest.size and len(groups) < limit:
        overlap = boxes.overlaps(rest[0], rest, iou_threshold)
        overlap[0] = True  # a zero-area box has IoU 0 with itself but still stands for itself
        groups.append(rest[:1] if first_only else rest[overlap])
        rest = rest[~overlap]
    return groups


def _hard(det: Detections, xyxy: np.ndarray, order: np.ndarray, thr: float, top_k: int | None) -> Detections:
    groups = _groups(xyxy[order], thr, top_k, first_only=True)
    return det[order[np.concatenate(groups)]]


def _weighted(det: Detections, xyxy: np.ndarray, order: np.ndarray, thr: float, top_k: int | None) -> Detections:
    groups = [order[g] for g in _groups(xyxy[order], thr, top_k, first_only=False)]
    top = np.asarray([g[0] for g in groups], np.int64)
    members = np.concatenate(groups)
    starts = np.cumsum([0] + [len(g) for g in groups[:-1]])
    weights = det.confidence[members].astype(np.float64)
    total = np.add.reduceat(weights, starts)
    usable = total > 0  # all-zero scores: fall back to the best box's own values

    def average(values: np.ndarray) -> np.ndarray:
        flat = values.reshape(len(values), -1).astype(np.float64)
        summed = np.add.reduceat(flat[members] * weights[:, None], starts, axis=0)
        mean = np.where(usable[:, None], summed / np.where(usable, total, 1.0)[:, None], flat[top])
        return mean.reshape((len(top),) + values.shape[1:]).astype(values.dtype)

    return Detections(
        xyxy=average(det.xyxy),
        confidence=det.confidence[top],
        class_id=det.class_id[top],
        tracker_id=None if det.tracker_id is None else det.tracker_id[top],
        data={k: average(v) if v.dtype.kind == "f" else v[top] for k, v in det.data.items()},
    )


NmsMethod = Callable[[Detections, np.ndarray, np.ndarray, float, int | None], Detections]

NMS_METHODS: dict[str, NmsMethod] = {"hard": _hard, "weighted": _weighted}


def nms(
    detections: Detections,
    *,
    iou_threshold: float = 0.5,
    class_agnostic: bool = False,
    method: str = "hard",
    top_k: int | None = None,
) -> Detections:
    """Suppress overlapping detections; the result is sorted by descending confidence.

    ``method``: ``hard`` or ``weighted``. ``class_agnostic``: let boxes of different classes suppress each
    other. ``top_k``: stop after that many detections.
    """
    if not isinstance(detections, Detections):
        raise InputError(f"nms: expected Detections, got {type(detections).__name__}")
    if method not in NMS_METHODS:
        raise ConfigError(f"unknown NMS method {method!r}; valid methods: {', '.join(NMS_METHODS)}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ConfigError(f"nms iou_threshold: expected a number in [0, 1], got {iou_threshold!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ConfigError(f"nms top_k: expected a positive integer or None, got {top_k!r}")
    if len(detections) == 0:
        return detections[np.zeros(0, np.int64)]
    xyxy = detections.xyxy.astype(np.float64)
    if not class_agnostic:
        span = float(xyxy.max() - xyxy.min()) + 1.0
        xyxy = xyxy + (detections.class_id.astype(np.float64) * span)[:, None]
    order = np.argsort(-detections.confidence, kind="stable")
    return NMS_METHODS[method](detections, xyxy, order, float(iou_threshold), top_k)
