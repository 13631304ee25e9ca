"""Outputs of TensorFlow Lite's ``TFLite_Detection_PostProcess`` op (SSD MobileNet and other TF1 SSDs).

Outputs: boxes ``[1, N, 4]`` (ymin, xmin, ymax, xmax, relative), classes ``[1, N]``, scores ``[1, N]`` and
count ``[1]``. Classes and scores share a shape, so they are told apart by content: class ids are whole
numbers and scores lie in [0, 1]; when both fit (all zeros, say) the op's order, classes first, decides.
``label_offset`` is added to every class id, so that a label map whose first line is a background
placeholder (``???``) is indexed by class id directly.

Example:
    >>> boxes = np.array([[[0.25, 0.25, 0.5, 0.75], [0, 0, 0, 0]]], np.float32)
    >>> outs = [boxes, np.array([[2.0, 0.0]]), np.array([[0.8, 0.0]]), np.array([1.0])]
    >>> det = TflitePostprocessDecoder(label_offset=1).decode(outs, input_size=(100, 200))
    >>> det.xyxy.tolist(), det.class_id.tolist()
    ([[50.0, 25.0, 150.0, 50.0]], [3])
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from edgecv.config import from_mapping, to_plain
from edgecv.detection.decoders.base import check_input_size, check_outputs, describe
from edgecv.detection.detections import Detections, check_ids
from edgecv.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TflitePostprocessDecoder:
    """``label_offset``: added to the op's class ids (1 for label maps that start with ``???``)."""

    name: ClassVar[str] = "tflite_postprocess"

    label_offset: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TflitePostprocessDecoder:
        return from_mapping(cls, data, cls.name)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def _find(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        boxes = [o for o in outputs if o.ndim == 3 and o.shape[2] == 4]
        n = boxes[0].shape[1] if len(boxes) == 1 else -1
        pair = [o for o in outputs if o.ndim == 2 and o.shape[1] == n]
        count = [o for o in outputs if o.shape == (1,)]
        if len(outputs) != 4 or len(boxes) != 1 or len(pair) != 2 or len(count) != 1:
            raise InputError(f"{self.name}: expected outputs [1,N,4] (boxes), [1,N] (classes), [1,N] (scores) "
                             f"and [1] (count), got {describe(outputs)}")
        first, second = pair
        if _is_class_ids(second) and not _is_class_ids(first):
            first, second = second, first
        elif _is_class_ids(first) and _is_class_ids(second):
            log.debug("%s: classes and scores both look like class ids; using the op's order", self.name)
        return boxes[0], first, second, count[0]

    def output_roles(self, shapes: Sequence[tuple[int, ...]]) -> tuple:
        """None: the op's outputs are final detections, made inside an already quantized model."""
        return ()

    def decode(self, outputs: Sequence[np.ndarray], *, input_size: tuple[int, int]) -> Detections:
        """The first ``count`` detections, in input pixels."""
        height, width = check_input_size(self.name, input_size)
        boxes, classes, scores, count = self._find(check_outputs(self.name, outputs))
        n = int(np.clip(count[0], 0, boxes.shape[1]))
        y0, x0, y1, x1 = boxes[0, :n].astype(np.float64).T
        return Detections(
            xyxy=np.stack([x0 * width, y0 * height, x1 * width, y1 * height], axis=1),
            confidence=scores[0, :n],
            # checked before the conversion: a damaged model's NaN or 1e20 would wrap to int64's minimum
            class_id=check_ids(np.rint(classes[0, :n].astype(np.float64)) + self.label_offset,
                               what=f"{self.name} classes (+ label_offset {self.label_offset})"),
            data={},
        )


def _is_class_ids(a: np.ndarray) -> bool:
    """Non-negative whole numbers: what a classes tensor holds, and scores only when all are 0 or 1."""
    return bool(np.all(a >= 0) and np.all(a == np.rint(a)))
