"""Device-side detection: decode raw detector outputs, suppress overlaps, compare detection sets.

Everything here is numpy only (frame resizing and CLAHE import cv2 when first used; mAP imports
pycocotools). One type flows through: :class:`Detections`.

Example:
    >>> from edgecv.detection import load_spec
    >>> spec = load_spec("blazeface-short-range")
    >>> faces = spec.detect(model.run(x), input_size=(128, 128))        # doctest: +SKIP
    >>> faces.xyxy, faces.confidence, faces.data["keypoints"]             # doctest: +SKIP
"""

from __future__ import annotations

from edgecv.detection.anchors import SsdAnchorOptions, generate_anchors
from edgecv.detection.decoders import DECODERS
from edgecv.detection.detections import Detections
from edgecv.detection.detector import Detector, StageTimes, Timings
from edgecv.detection.frames import FrameOptions, FramePreprocessor, FrameTransform
from edgecv.detection.match import Match, match_detections
from edgecv.detection.nms import NMS_METHODS, nms
from edgecv.detection.spec import DetectorSpec, NmsOptions, load_spec, spec_names

__all__ = [
    "DECODERS",
    "NMS_METHODS",
    "Detections",
    "Detector",
    "DetectorSpec",
    "FrameOptions",
    "FramePreprocessor",
    "FrameTransform",
    "Match",
    "NmsOptions",
    "SsdAnchorOptions",
    "StageTimes",
    "Timings",
    "generate_anchors",
    "load_spec",
    "match_detections",
    "nms",
    "spec_names",
]
