"""SORT (Bewley et al., 2016): Kalman prediction, then optimal IoU matching of every detection to every track.

The defaults are the reference tracker's (``max_age=1`` frame, ``min_hits=3``, ``iou_threshold=0.3``) and at
25 frames/s reproduce its output: the filter is SORT's ``[cx, cy, s, r, vcx, vcy, vs]`` with its noise
(:class:`~edgecv.tracking.kalman.SortMotion`), a track is reported in a frame when it was matched in that
frame and has ``min_hits`` matches in a row (or the stream is in its first ``min_hits`` frames), and the
reported box is the filter's. Time is in seconds: a track is dropped after ``max_lost_s`` seconds without a
match (0.04 s is one frame at 25 frames/s); at other frame rates the filter's motion and noise scale with the
time step.

Example:
    >>> import numpy as np
    >>> tracker = SortTracker(fps=25)
    >>> for k in range(5):
    ...     out = tracker.update(np.array([[10.0 + 2 * k, 10.0, 50.0 + 2 * k, 90.0, 0.9]]))
    >>> out.tracker_id.tolist(), out.xyxy.round(1).tolist()
    ([1], [[18.0, 10.0, 58.0, 90.0]])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgecv.config import check
from edgecv.tracking.association import iou_association
from edgecv.tracking.kalman import MotionModel, SortMotion
from edgecv.tracking.track import Tracker, TrackState, FrameInput

__all__ = ["SortOptions", "SortTracker"]

OUTPUT_BOXES = ("kalman", "detection")
GATES = ("after", "before")


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class SortOptions:
    """SORT's settings.

    ``max_lost_s``: seconds a track survives without a match (reference: 1 frame, 0.04 s at 25 frames/s).
    ``min_hits``: matches in a row, after the detection that started the track, before it is reported.
    ``iou_threshold``: the least IoU of a match. ``min_confidence``: detections scoring less are ignored (the
    reference keeps all). ``per_class``: match only within a class. ``class_vote``: show each track's class
    with the highest sum of scores over its detections (False: its last detection's, as the reference). ``output_boxes``: ``kalman`` (the filter's
    box, as the reference) or ``detection`` (the matched input box). ``gate``: ``after`` matches as the
    reference (largest total IoU over all pairs, then pairs below ``iou_threshold`` dropped), ``before`` lets
    only pairs at or above ``iou_threshold`` compete (see :func:`~edgecv.tracking.iou_association`).
    ``reference_fps``: the frame rate at which the filter's noise is SORT's per-frame noise.
    """

    max_lost_s: float = 0.04
    min_hits: int = 3
    iou_threshold: float = 0.3
    min_confidence: float | None = None
    per_class: bool = False
    class_vote: bool = True
    output_boxes: str = "kalman"
    gate: str = "after"
    reference_fps: float = 25.0

    def __post_init__(self) -> None:
        check(_finite(self.max_lost_s) and self.max_lost_s >= 0, "sort.max_lost_s", "seconds >= 0", self.max_lost_s)
        check(isinstance(self.min_hits, int) and not isinstance(self.min_hits, bool) and self.min_hits >= 0,
              "sort.min_hits", "an integer >= 0", self.min_hits)
        check(_finite(self.iou_threshold) and 0 <= self.iou_threshold <= 1, "sort.iou_threshold",
              "a number in [0, 1]", self.iou_threshold)
        check(self.min_confidence is None or _finite(self.min_confidence), "sort.min_confidence",
              "a number or null", self.min_confidence)
        check(isinstance(self.per_class, bool), "sort.per_class", "true or false", self.per_class)
        check(isinstance(self.class_vote, bool), "sort.class_vote", "true or false", self.class_vote)
        check(self.output_boxes in OUTPUT_BOXES, "sort.output_boxes", f"one of {', '.join(OUTPUT_BOXES)}",
              self.output_boxes)
        check(self.gate in GATES, "sort.gate", f"one of {', '.join(GATES)}", self.gate)
        check(_finite(self.reference_fps) and self.reference_fps > 0, "sort.reference_fps",
              "a positive number of frames per second", self.reference_fps)


class SortTracker(Tracker):
    """SORT over :class:`~edgecv.detection.Detections` (see the module docstring).

    States: a track matched in the latest frame is CONFIRMED once its hit streak reaches ``min_hits`` and
    TENTATIVE before (again after a miss, as SORT restarts the streak); one not matched is LOST until
    ``max_lost_s`` has passed, then REMOVED.
    """

    name = "sort"
    Options = SortOptions
    options: SortOptions

    def _motion(self) -> MotionModel:
        return SortMotion(self.options.reference_fps)

    @property
    def start_score(self) -> float | None:
        return self.options.min_confidence

    def _step(self, frame: FrameInput, dt: float) -> np.ndarray:
        o = self.options
        if o.min_confidence is not None:
            keep = frame.conf >= o.min_confidence
            frame = FrameInput(frame.xyxy[keep], frame.conf[keep], frame.cls[keep], frame.index[keep], frame.data)
        boxes = self._predict(dt)
        t = self._t
        classes = (t.cls, frame.cls) if o.per_class else (None, None)
        m = iou_association(boxes, frame.xyxy, min_iou=o.iou_threshold, track_class=classes[0], det_class=classes[1],
                            gate=o.gate)
        self._correct(m.rows, frame, m.cols)
        self._spawn(frame, m.unmatched_cols, TrackState.TENTATIVE)
        t = self._t
        matched = t.missed == 0
        trusted = t.streak >= o.min_hits
        t.state[:] = np.where(matched, np.where(trusted, TrackState.CONFIRMED, TrackState.TENTATIVE), TrackState.LOST)
        report = matched & (trusted | (self.frame_index <= o.min_hits))
        gone = self._expired(o.max_lost_s)
        if gone.any():
            self._remove(gone)
            report = report[~gone]
        return report
