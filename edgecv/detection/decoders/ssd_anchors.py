"""Anchor-based SSD heads decoded as MediaPipe's ``TensorsToDetectionsCalculator`` does (BlazeFace ...).

Outputs: boxes ``[1, A, num_coords]`` (box, then keypoints) and scores ``[1, A, C]`` (or ``[1, A]``), told
apart by their last dimension. Per anchor (cx, cy, w, h) the box coder gives
``x = raw_x / x_scale * w + cx``, ``w = raw_w / w_scale * w`` (or ``exp(raw_w / w_scale) * w``).

Example:
    >>> from edgecv.detection.anchors import SsdAnchorOptions
    >>> anchors = SsdAnchorOptions(input_size_height=8, input_size_width=8, min_scale=0.5, max_scale=0.5,
    ...     num_layers=1, strides=(8,), interpolated_scale_aspect_ratio=0.0, fixed_anchor_size=True)
    >>> dec = SsdAnchorsDecoder(anchors=anchors, reverse_output_order=True, x_scale=8, y_scale=8,
    ...     w_scale=8, h_scale=8, sigmoid_score=True)
    >>> det = dec.decode([np.array([[[0, 0, 4, 4]]], np.float32), np.zeros((1, 1, 1), np.float32)],
    ...     input_size=(8, 8))
    >>> det.xyxy.tolist(), det.confidence.tolist()
    ([[2.0, 2.0, 6.0, 6.0]], [0.5])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from edgecv.config import check, from_mapping, to_plain
from edgecv.detection.anchors import SsdAnchorOptions, generate_anchors
from edgecv.detection.decoders.base import OutputRole, check_input_size, check_outputs, describe
from edgecv.detection.detections import Detections
from edgecv.errors import InputError


BOX_FORMATS = ("YXHW", "XYWH", "XYXY")


def sigmoid(x: np.ndarray) -> np.ndarray:
    """A logistic function that does not overflow for large negative logits."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@dataclass(frozen=True)
class SsdAnchorsDecoder:
    """Options named as in MediaPipe's ``TensorsToDetectionsCalculatorOptions`` (docs/specs.md maps each).

    ``num_coords`` defaults to what the box and keypoints need. ``box_format`` (MediaPipe's names) is the
    order of the four box values: ``YXHW`` (centre, size), ``XYWH``, or ``XYXY`` (distances from the
    anchor centre to the left, top, right and bottom edges); keypoints are (y, x) under ``YXHW`` and
    (x, y) otherwise. Without ``box_format``, ``reverse_output_order`` picks ``XYWH``, else ``YXHW``.
    Scores go through a sigmoid when ``sigmoid_score``, after clipping to +-``score_clipping_thresh`` when
    set. ``num_boxes`` and ``num_classes``, when given, must match the anchors and the score tensor.
    ``allow_classes`` / ``ignore_classes`` restrict the classes a box may take (one of the two).
    ``flip_vertically`` mirrors boxes and keypoints top to bottom. Boxes with a negative or NaN size are
    dropped, as MediaPipe does.
    """

    name: ClassVar[str] = "ssd_anchors"

    anchors: SsdAnchorOptions
    num_coords: int | None = None
    box_coord_offset: int = 0
    keypoint_coord_offset: int = 4
    num_keypoints: int = 0
    num_values_per_keypoint: int = 2
    reverse_output_order: bool = False
    x_scale: float = 1.0
    y_scale: float = 1.0
    w_scale: float = 1.0
    h_scale: float = 1.0
    apply_exponential_on_box_size: bool = False
    sigmoid_score: bool = False
    score_clipping_thresh: float | None = None
    min_score_thresh: float | None = None
    box_format: str | None = None
    num_boxes: int | None = None
    num_classes: int | None = None
    allow_classes: tuple[int, ...] = ()
    ignore_classes: tuple[int, ...] = ()
    flip_vertically: bool = False
    _anchors: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        w = self.name
        for s in ("x_scale", "y_scale", "w_scale", "h_scale"):
            check(getattr(self, s) > 0, f"{w}.{s}", "a positive number", getattr(self, s))
        check(self.num_keypoints >= 0, f"{w}.num_keypoints", "0 or more", self.num_keypoints)
        check(self.num_values_per_keypoint >= 2, f"{w}.num_values_per_keypoint", "2 or more",
              self.num_values_per_keypoint)
        check(self.box_coord_offset >= 0, f"{w}.box_coord_offset", "0 or more", self.box_coord_offset)
        need = self.box_coord_offset + 4
        if self.num_keypoints:
            need = max(need, self.keypoint_coord_offset + self.num_keypoints * self.num_values_per_keypoint)
        if self.num_coords is None:
            object.__setattr__(self, "num_coords", need)
        check(self.num_coords >= need, f"{w}.num_coords", f"at least {need} (box and keypoints)", self.num_coords)
        if self.score_clipping_thresh is not None:
            check(self.score_clipping_thresh > 0, f"{w}.score_clipping_thresh", "a positive number or null",
                  self.score_clipping_thresh)
        if self.box_format is not None:
            check(self.box_format in BOX_FORMATS, f"{w}.box_format", f"one of {', '.join(BOX_FORMATS)} or null",
                  self.box_format)
        if self.num_classes is not None:
            check(self.num_classes > 0, f"{w}.num_classes", "a positive integer or null", self.num_classes)
        for name in ("allow_classes", "ignore_classes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
            check(all(c >= 0 for c in getattr(self, name)), f"{w}.{name}", "class ids 0 or more",
                  list(getattr(self, name)))
        check(not (self.allow_classes and self.ignore_classes), f"{w}.allow_classes/ignore_classes",
              "at most one of the two", (list(self.allow_classes), list(self.ignore_classes)))
        anchors = generate_anchors(self.anchors)
        if self.num_boxes is not None:
            check(self.num_boxes == len(anchors), f"{w}.num_boxes",
                  f"{len(anchors)}, the number of anchors the anchor options make", self.num_boxes)
        object.__setattr__(self, "_anchors", anchors)

    @property
    def format(self) -> str:
        """The box format in effect: ``box_format``, else XYWH under ``reverse_output_order``, else YXHW."""
        return self.box_format or ("XYWH" if self.reverse_output_order else "YXHW")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SsdAnchorsDecoder:
        return from_mapping(cls, data, cls.name)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the anchors were made for: the model input this decoder fits."""
        return (self.anchors.input_size_height, self.anchors.input_size_width)

    @property
    def num_anchors(self) -> int:
        return len(self._anchors)

    def _find(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        a, c = self.num_anchors, self.num_coords
        boxes = [o for o in outputs if o.ndim == 3 and o.shape[1] == a and o.shape[2] == c]
        scores = [o for o in outputs if o.ndim in (2, 3) and o.shape[1] == a and not any(o is b for b in boxes)]
        if len(boxes) != 1 or len(scores) != 1:
            raise InputError(f"{self.name}: expected outputs [1,{a},{c}] (boxes) and [1,{a},C] (scores), "
                             f"got {describe(outputs)}")
        return boxes[0], scores[0]

    def output_roles(self, shapes: Sequence[tuple[int, ...]]) -> tuple[OutputRole, ...]:
        """The box tensor's coordinates (box and keypoints) and the score tensor (logits under ``sigmoid_score``)."""
        try:
            boxes, scores = self._find([np.empty(s, np.float32) for s in shapes])
        except InputError:
            return ()
        ib = next(i for i, s in enumerate(shapes) if tuple(s) == boxes.shape)
        isc = next(i for i, s in enumerate(shapes) if tuple(s) == scores.shape and i != ib)
        classes = shapes[isc][2] if len(shapes[isc]) == 3 else 1  # a [1, A] score tensor: one value per anchor
        return (OutputRole(ib, 2, 0, self.num_coords, "box"),
                OutputRole(isc, 2, 0, classes, "logit" if self.sigmoid_score else "score"))

    def decode(self, outputs: Sequence[np.ndarray], *, input_size: tuple[int, int]) -> Detections:
        """Detections in input pixels for one image; keypoints ``[N, K, 2]`` (x, y) in ``data["keypoints"]``."""
        height, width = check_input_size(self.name, input_size)
        raw_boxes, raw_scores = self._find(check_outputs(self.name, outputs))
        raw = raw_boxes[0].astype(np.float64)
        anchors = self._anchors.astype(np.float64)
        ax, ay, aw, ah = anchors.T
        o = self.box_coord_offset
        fmt = self.format
        if fmt == "XYWH":
            x, y, w, h = raw[:, o], raw[:, o + 1], raw[:, o + 2], raw[:, o + 3]
        elif fmt == "YXHW":
            y, x, h, w = raw[:, o], raw[:, o + 1], raw[:, o + 2], raw[:, o + 3]
        else:  # XYXY: distances to the left, top, right and bottom edges
            left, top, right, bottom = raw[:, o], raw[:, o + 1], raw[:, o + 2], raw[:, o + 3]
            x, y, w, h = (right - left) / 2, (bottom - top) / 2, left + right, top + bottom
        cx = x / self.x_scale * aw + ax
        cy = y / self.y_scale * ah + ay
        if self.apply_exponential_on_box_size:
            w, h = np.exp(w / self.w_scale) * aw, np.exp(h / self.h_scale) * ah
        else:
            w, h = w / self.w_scale * aw, h / self.h_scale * ah
        if self.flip_vertically:
            cy = 1.0 - cy
        xyxy = np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], 1)

        scores = raw_scores[0].reshape(self.num_anchors, -1).astype(np.float64)
        if self.num_classes is not None and scores.shape[1] != self.num_classes:
            raise InputError(f"{self.name}: expected scores for num_classes={self.num_classes}, got "
                             f"{describe([raw_scores])}")
        if self.sigmoid_score:
            if self.score_clipping_thresh is not None:
                scores = np.clip(scores, -self.score_clipping_thresh, self.score_clipping_thresh)
            scores = sigmoid(scores)
        allowed = self._allowed(scores.shape[1])
        if allowed is not None:
            scores = np.where(allowed, scores, -np.inf)
        class_id = scores.argmax(axis=1)
        confidence = scores[np.arange(self.num_anchors), class_id]

        data = {}
        if self.num_keypoints:
            k, v, ko = self.num_keypoints, self.num_values_per_keypoint, self.keypoint_coord_offset
            kp = raw[:, ko : ko + k * v].reshape(-1, k, v)
            kx, ky = (kp[..., 1], kp[..., 0]) if fmt == "YXHW" else (kp[..., 0], kp[..., 1])
            kx = kx / self.x_scale * aw[:, None] + ax[:, None]
            ky = ky / self.y_scale * ah[:, None] + ay[:, None]
            if self.flip_vertically:
                ky = 1.0 - ky
            data["keypoints"] = np.stack([kx * width, ky * height], axis=-1).astype(np.float32)
        det = Detections(xyxy=xyxy, confidence=confidence, class_id=class_id.astype(np.int64), data=data)
        keep = (w >= 0) & (h >= 0) & np.isfinite(confidence)  # NaN sizes compare False
        if self.min_score_thresh is not None:
            keep &= confidence >= self.min_score_thresh
        return det if keep.all() else det[keep]

    def _allowed(self, num_classes: int) -> np.ndarray | None:
        """Which class columns a box may take, or None for all."""
        if self.allow_classes:
            allowed = np.zeros(num_classes, bool)
            allowed[[c for c in self.allow_classes if c < num_classes]] = True
            return allowed
        if self.ignore_classes:
            allowed = np.ones(num_classes, bool)
            allowed[[c for c in self.ignore_classes if c < num_classes]] = False
            return allowed
        return None
