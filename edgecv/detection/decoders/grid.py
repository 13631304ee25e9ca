"""Anchor-free dense grid heads (the built-in detector's; FCOS/YOLOX-like), before NMS.

The model has two outputs on one stride-``s`` grid of ``H x W`` cells:
- ``scores [1, H, W, 1+nc]``: objectness, then the class probabilities, all already in [0, 1];
- ``boxes [1, H, W, 4]``: distances from the cell centre to the left, top, right and bottom box edges,
  in strides.

A cell's confidence is objectness times its best class probability. Outputs are told apart by their last
dimension (4 is the boxes), so their order does not matter; the stride is the input size over the grid.

Example:
    >>> scores, boxes = np.zeros((1, 2, 2, 3), np.float32), np.ones((1, 2, 2, 4), np.float32)
    >>> scores[0, 1, 0] = [0.9, 0.2, 0.8]                 # cell (row 1, col 0): object, class 1
    >>> det = GridDecoder(min_score_thresh=0.5).decode([scores, boxes], input_size=(16, 16))
    >>> det.xyxy.tolist(), det.class_id.tolist(), round(float(det.confidence[0]), 2)
    ([[-4.0, 4.0, 12.0, 20.0]], [1], 0.72)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from edgecv.config import check, from_mapping, to_plain
from edgecv.detection.decoders.base import OutputRole, check_input_size, check_outputs, describe
from edgecv.detection.detections import Detections
from edgecv.errors import InputError


@dataclass(frozen=True)
class GridDecoder:
    """``num_classes`` pins the score tensor's width (1 + nc); ``min_score_thresh`` drops weak cells
    before boxes are made (None keeps every cell)."""

    name: ClassVar[str] = "grid"

    num_classes: int | None = None
    min_score_thresh: float | None = 0.05

    def __post_init__(self) -> None:
        if self.num_classes is not None:
            check(isinstance(self.num_classes, int) and self.num_classes > 0 and self.num_classes != 3,
                  f"{self.name}.num_classes", "a positive integer other than 3 (1+3 would look like the box tensor)",
                  self.num_classes)
        if self.min_score_thresh is not None:
            check(0.0 <= self.min_score_thresh <= 1.0, f"{self.name}.min_score_thresh", "a number in [0, 1] or null",
                  self.min_score_thresh)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> GridDecoder:
        return from_mapping(cls, data, cls.name)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def _split(self, arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        grids = [a for a in arrays if a.ndim == 4]
        boxes = [a for a in grids if a.shape[-1] == 4]
        width = None if self.num_classes is None else 1 + self.num_classes
        scores = [a for a in grids if a.shape[-1] != 4 and a.shape[-1] >= 2 and (width is None or a.shape[-1] == width)]
        if len(arrays) != 2 or len(boxes) != 1 or len(scores) != 1:
            nc = "nc" if width is None else str(self.num_classes)
            raise InputError(f"{self.name}: expected two outputs, scores [1,H,W,1+{nc}] and boxes [1,H,W,4], "
                             f"got {describe(arrays)}")
        if scores[0].shape[1:3] != boxes[0].shape[1:3]:
            raise InputError(f"{self.name}: scores and boxes must share one grid, got {describe(arrays)}")
        return scores[0][0], boxes[0][0]

    def output_roles(self, shapes: Sequence[tuple[int, ...]]) -> tuple[OutputRole, ...]:
        """The score grid (objectness and class probabilities) and the box grid (distances in strides)."""
        try:
            scores, boxes = self._split([np.empty(s, np.float32) for s in shapes])
        except InputError:
            return ()
        isc = next(i for i, s in enumerate(shapes) if tuple(s[1:]) == scores.shape)
        ib = next(i for i, s in enumerate(shapes) if tuple(s[1:]) == boxes.shape and i != isc)
        return (OutputRole(ib, 3, 0, 4, "box"), OutputRole(isc, 3, 0, shapes[isc][3], "score"))

    def decode(self, outputs: Sequence[np.ndarray], *, input_size: tuple[int, int]) -> Detections:
        """Every cell (or those above ``min_score_thresh``) as a box in input pixels."""
        height, width = check_input_size(self.name, input_size)
        scores, boxes = self._split(check_outputs(self.name, outputs))
        rows, cols = scores.shape[:2]
        stride_y, stride_x = height / rows, width / cols
        if not (stride_y.is_integer() and stride_y == stride_x):
            raise InputError(f"{self.name}: a {rows}x{cols} grid does not divide the {height}x{width} input "
                             f"into square cells (strides {stride_y:g} and {stride_x:g})")
        cls_prob = scores[..., 1:].astype(np.float32)
        class_id = cls_prob.argmax(axis=-1)
        confidence = scores[..., 0] * np.take_along_axis(cls_prob, class_id[..., None], axis=-1)[..., 0]
        keep = np.ones(confidence.shape, bool) if self.min_score_thresh is None else confidence >= self.min_score_thresh
        r, c = np.nonzero(keep)
        centre = np.stack([(c + 0.5) * stride_x, (r + 0.5) * stride_y], axis=1)
        ltrb = boxes[r, c].astype(np.float32) * stride_x
        xyxy = np.concatenate([centre - ltrb[:, :2], centre + ltrb[:, 2:]], axis=1)
        return Detections(xyxy=xyxy, confidence=confidence[r, c], class_id=class_id[r, c].astype(np.int64))
