"""YOLO heads before NMS: Ultralytics v8/v11 ``[1, 4+nc, N]`` and YOLOv5 ``[1, N, 5+nc]``.

v8/v11 rows are (cx, cy, w, h, class scores...) with no objectness; v5 rows are (cx, cy, w, h, objectness,
class scores...) and a detection's confidence is objectness times its best class score. Coordinates are
input pixels, or relative to the input when ``normalized``. With ``layout: auto`` the layout comes from
the shape: from ``num_classes`` when it is given, else the smaller of the two dimensions holds the values.

Example:
    >>> out = np.zeros((1, 6, 10), np.float32)          # v8 layout: 2 classes, 10 candidates
    >>> out[0, :, 3] = [50, 40, 20, 10, 0.1, 0.9]
    >>> det = YoloDecoder().decode([out], input_size=(640, 640))
    >>> det[det.confidence > 0.5].xyxy.tolist(), int(det.class_id[3])
    ([[40.0, 35.0, 60.0, 45.0]], 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from edgecv.config import check, from_mapping, to_plain
from edgecv.detection.boxes import cxcywh_to_xyxy
from edgecv.detection.decoders.base import OutputRole, check_input_size, check_outputs, describe
from edgecv.detection.detections import Detections
from edgecv.errors import InputError

# layout -> (description, values before the class scores)
LAYOUTS: dict[str, tuple[str, int]] = {
    "v8": ("[1,4+nc,N] (Ultralytics v8/v11)", 4),
    "v5": ("[1,N,5+nc] (YOLOv5)", 5),
}


@dataclass(frozen=True)
class YoloDecoder:
    """``layout``: auto, v8 or v5. ``num_classes`` pins the layout when auto; ``normalized``: coordinates in
    [0, 1] of the input rather than pixels; ``min_score_thresh`` drops weak candidates early."""

    name: ClassVar[str] = "yolo"

    layout: str = "auto"
    num_classes: int | None = None
    normalized: bool = False
    min_score_thresh: float | None = None

    def __post_init__(self) -> None:
        valid = ["auto", *LAYOUTS]
        check(self.layout in valid, f"{self.name}.layout", f"one of {', '.join(valid)}", self.layout)
        if self.num_classes is not None:
            check(self.num_classes > 0, f"{self.name}.num_classes", "a positive integer or null", self.num_classes)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> YoloDecoder:
        return from_mapping(cls, data, cls.name)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def _fits(self, layout: str, shape: tuple[int, ...]) -> bool:
        head = LAYOUTS[layout][1]
        values = shape[1] if layout == "v8" else shape[2]
        return values > head and (self.num_classes is None or values == head + self.num_classes)

    def _layout(self, shape: tuple[int, ...]) -> str:
        if self.layout != "auto":
            return self.layout if self._fits(self.layout, shape) else ""
        fits = [name for name in LAYOUTS if self._fits(name, shape)]
        if self.num_classes is None and len(fits) == 2 and shape[1] != shape[2]:
            return "v8" if shape[1] < shape[2] else "v5"
        if len(fits) == 2:
            raise InputError(f"{self.name}: output {describe([np.zeros(shape)])} fits both layouts v8 and v5; "
                             f"set layout (or num_classes) in the decoder options")
        return fits[0] if fits else ""

    def output_roles(self, shapes: Sequence[tuple[int, ...]]) -> tuple[OutputRole, ...]:
        """Box coordinates, then (v5) objectness and class scores, along the values axis of the one head.

        Example:
            >>> [(r.axis, r.start, r.stop, r.kind) for r in YoloDecoder().output_roles([(1, 84, 2100)])]
            [(1, 0, 4, 'box'), (1, 4, 84, 'score')]
        """
        heads = [i for i, s in enumerate(shapes) if len(s) == 3]
        layout = self._layout(tuple(shapes[heads[0]])) if len(heads) == 1 else ""
        if not layout:
            return ()
        axis = 1 if layout == "v8" else 2
        i = heads[0]
        return (OutputRole(i, axis, 0, 4, "box"), OutputRole(i, axis, 4, shapes[i][axis], "score"))

    def decode(self, outputs: Sequence[np.ndarray], *, input_size: tuple[int, int]) -> Detections:
        """Every candidate (or those above ``min_score_thresh``), in input pixels."""
        height, width = check_input_size(self.name, input_size)
        arrays = check_outputs(self.name, outputs)
        heads = [a for a in arrays if a.ndim == 3]
        layout = self._layout(heads[0].shape) if len(heads) == 1 else ""
        if not layout:
            names = [self.layout] if self.layout != "auto" else list(LAYOUTS)
            want = " or ".join(LAYOUTS[n][0] for n in names)
            nc = f" with nc={self.num_classes}" if self.num_classes is not None else ""
            raise InputError(f"{self.name}: expected one output {want}{nc}, got {describe(arrays)}")
        rows = heads[0][0].astype(np.float64)
        rows = rows.T if layout == "v8" else rows
        head = LAYOUTS[layout][1]
        scores = rows[:, head:]
        class_id = scores.argmax(axis=1)
        confidence = scores[np.arange(len(rows)), class_id]
        if layout == "v5":
            confidence = confidence * rows[:, 4]
        if self.min_score_thresh is not None:
            keep = confidence >= self.min_score_thresh
            rows, class_id, confidence = rows[keep], class_id[keep], confidence[keep]
        xyxy = cxcywh_to_xyxy(rows[:, :4])
        if self.normalized:
            xyxy = xyxy * np.array([width, height, width, height], np.float64)
        return Detections(xyxy=xyxy, confidence=confidence, class_id=class_id.astype(np.int64), data={})
