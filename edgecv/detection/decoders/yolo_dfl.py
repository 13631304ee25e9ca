"""YOLOv8/v11 heads cut before their box decoding: DFL bin logits and class scores, decoded here on the CPU.

An integer-only accelerator (Edge TPU, many NPUs) runs a quantized model's layers; YOLOv8's box decoding
after them (a softmax over distance bins, their expectation, anchor grids, strides) either runs in float on
the CPU between accelerator calls or loses box precision in int8. Cut before it (``edgecv export
--cut-decode``), the model ends with two tensors the accelerator computes well in int8:

- ``boxes [1, 4*reg_max, N]``: per candidate, ``reg_max`` bin logits for each of the left, top, right and
  bottom distances from its anchor point, in strides;
- ``scores [1, nc, N]``: class scores, already in [0, 1].

Either may come transposed (``[1, N, C]``); the candidate axis is the one of length N, the number of anchor
points the strides give at the input size (``(H/8)*(W/8) + (H/16)*(W/16) + (H/32)*(W/32)`` by default, in
that order, each grid row by row). Only candidates whose best score reaches ``min_score_thresh`` get their
bins decoded.

Example:
    >>> boxes, scores = np.zeros((1, 64, 21), np.float32), np.zeros((1, 2, 21), np.float32)
    >>> boxes[0, [1, 17, 33, 49], 0] = 9.0                # anchor (4, 4) at stride 8: each edge ~1 stride away
    >>> scores[0, 1, 0] = 0.9
    >>> det = YoloDflDecoder(min_score_thresh=0.5).decode([boxes, scores], input_size=(32, 32))
    >>> [round(v, 1) for v in det.xyxy[0].tolist()], det.class_id.tolist()
    ([-4.1, -4.1, 12.1, 12.1], [1])
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Sequence

import numpy as np

from edgecv.config import check, from_mapping, to_plain
from edgecv.detection.decoders.base import OutputRole, check_input_size, check_outputs, describe
from edgecv.detection.detections import Detections
from edgecv.errors import InputError


@dataclass(frozen=True)
class YoloDflDecoder:
    """``reg_max``: bins per box edge; ``strides``: the heads' strides in output order; ``num_classes`` tells
    the score tensor apart when it could be taken for the boxes; ``min_score_thresh`` skips weak candidates
    before their bins are decoded (None decodes all)."""

    name: ClassVar[str] = "yolo_dfl"

    reg_max: int = 16
    strides: tuple[int, ...] = (8, 16, 32)
    num_classes: int | None = None
    min_score_thresh: float | None = None

    def __post_init__(self) -> None:
        check(isinstance(self.reg_max, int) and self.reg_max > 1, f"{self.name}.reg_max", "an integer above 1", self.reg_max)
        check(len(self.strides) > 0 and all(isinstance(s, int) and s > 0 for s in self.strides), f"{self.name}.strides",
              "a list of positive integers", list(self.strides))
        if self.num_classes is not None:
            check(self.num_classes > 0, f"{self.name}.num_classes", "a positive integer or null", self.num_classes)
        if self.min_score_thresh is not None:
            check(0.0 <= self.min_score_thresh <= 1.0, f"{self.name}.min_score_thresh", "a number in [0, 1] or null",
                  self.min_score_thresh)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> YoloDflDecoder:
        return from_mapping(cls, data, cls.name)

    def to_dict(self) -> dict[str, Any]:
        d = to_plain(self)
        d["strides"] = list(self.strides)
        return d

    def _heads(self, shapes: Sequence[tuple[int, ...]]) -> tuple[int, int, int, int] | None:
        """(box output, its values axis, score output, its values axis), or None when the shapes do not fit."""
        if len(shapes) != 2 or any(len(s) != 3 for s in shapes):
            return None
        width = 4 * self.reg_max
        found = []
        for box in (0, 1):
            score = 1 - box
            for b_axis in (1, 2):
                for s_axis in (1, 2):
                    b, s = shapes[box], shapes[score]
                    if b[b_axis] != width or b[3 - b_axis] != s[3 - s_axis]:
                        continue
                    if self.num_classes is not None and s[s_axis] != self.num_classes:
                        continue
                    found.append((box, b_axis, score, s_axis))
        return found[0] if len(found) == 1 else (_prefer_channels_first(found) if found else None)

    def output_roles(self, shapes: Sequence[tuple[int, ...]]) -> tuple[OutputRole, ...]:
        """The class scores (in [0, 1]); the bin logits have no fixed range and are left to calibration.

        Example:
            >>> [(r.output, r.kind) for r in YoloDflDecoder().output_roles([(1, 64, 2100), (1, 4, 2100)])]
            [(1, 'score')]
        """
        heads = self._heads([tuple(s) for s in shapes])
        if heads is None:
            return ()
        _, _, score, s_axis = heads
        return (OutputRole(score, s_axis, 0, shapes[score][s_axis], "score"),)

    def decode(self, outputs: Sequence[np.ndarray], *, input_size: tuple[int, int]) -> Detections:
        """Every candidate (or those above ``min_score_thresh``), in input pixels, in anchor order."""
        height, width = check_input_size(self.name, input_size)
        arrays = check_outputs(self.name, outputs)
        heads = self._heads([a.shape for a in arrays])
        if heads is None:
            nc = str(self.num_classes) if self.num_classes is not None else "nc"
            raise InputError(f"{self.name}: expected two outputs [1,{4 * self.reg_max},N] and [1,{nc},N] (or [1,N,C]), "
                             f"got {describe(arrays)}")
        box, b_axis, score, s_axis = heads
        points, stride = anchor_points((int(height), int(width)), self.strides)
        bins = arrays[box][0] if b_axis == 2 else arrays[box][0].T  # [N, 4*reg_max]
        scores = arrays[score][0] if s_axis == 2 else arrays[score][0].T  # [N, nc]
        if len(bins) != len(points):
            raise InputError(f"{self.name}: expected {len(points)} candidates at input {height}x{width} with strides "
                             f"{list(self.strides)}, got {len(bins)} ({describe(arrays)})")
        class_id = scores.argmax(axis=1)
        confidence = scores[np.arange(len(scores)), class_id].astype(np.float64)
        keep = np.arange(len(scores)) if self.min_score_thresh is None else np.flatnonzero(confidence >= self.min_score_thresh)
        logits = bins[keep].astype(np.float64).reshape(len(keep), 4, self.reg_max)
        logits -= logits.max(axis=2, keepdims=True)
        weights = np.exp(logits)
        distance = (weights @ np.arange(self.reg_max, dtype=np.float64)) / weights.sum(axis=2)  # [n, 4] in strides
        centre = points[keep]
        xyxy = np.concatenate([centre - distance[:, :2], centre + distance[:, 2:]], axis=1) * stride[keep, None]
        return Detections(xyxy=xyxy, confidence=confidence[keep], class_id=class_id[keep].astype(np.int64), data={})


def _prefer_channels_first(found: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int] | None:
    """Of several readings of the shapes, the one with values on axis 1 (the ONNX layout), else None."""
    first = [f for f in found if f[1] == 1 and f[3] == 1]
    return first[0] if len(first) == 1 else None


@lru_cache(maxsize=8)
def anchor_points(input_size: tuple[int, int], strides: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Anchor points ``[N, 2]`` (x, y in strides, cell centres) and each one's stride ``[N]``, grid by grid.

    Example:
        >>> points, stride = anchor_points((16, 16), (8, 16))
        >>> points.tolist(), stride.tolist()
        ([[0.5, 0.5], [1.5, 0.5], [0.5, 1.5], [1.5, 1.5], [0.5, 0.5]], [8.0, 8.0, 8.0, 8.0, 16.0])
    """
    height, width = input_size
    points, stride = [], []
    for s in strides:
        rows, cols = -(-height // s), -(-width // s)
        y, x = np.meshgrid(np.arange(rows) + 0.5, np.arange(cols) + 0.5, indexing="ij")
        points.append(np.stack([x.ravel(), y.ravel()], axis=1))
        stride.append(np.full(rows * cols, float(s)))
    points_all, stride_all = np.concatenate(points), np.concatenate(stride)
    points_all.setflags(write=False)
    stride_all.setflags(write=False)
    return points_all, stride_all
