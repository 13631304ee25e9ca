"""Multi-object tracking on the device: SORT, ByteTrack and an OC-SORT-like tracker over :class:`~edgecv.detection.Detections`.

Trackers share one constant-velocity Kalman filter (:mod:`edgecv.tracking.kalman`, all tracks in one numpy
step) and one association core (:mod:`edgecv.tracking.association`, optimal IoU matching with a gate, SciPy
imported on first use). Each is configured by one frozen options dataclass, works in seconds (``fps`` or
per-frame timestamps), and returns a new Detections with ``tracker_id`` per frame. Score thresholds can be
fitted to the detector in use (:mod:`edgecv.tracking.thresholds`); a track shows the class most of its
detections had (``class_vote``).

Example:
    >>> import numpy as np
    >>> from edgecv.detection import Detections
    >>> from edgecv.tracking import make_tracker
    >>> tracker = make_tracker("sort", fps=25)
    >>> tracked = tracker.update(Detections(np.array([[10, 10, 50, 90]]), [0.9], [0]))
    >>> tracked.tracker_id.tolist(), [t.state.name for t in tracker.tracks]
    ([1], ['TENTATIVE'])
"""

from __future__ import annotations

from edgecv.tracking.association import Matches, iou_association, linear_assignment
from edgecv.tracking.bytetrack import ByteTrackOptions, ByteTracker
from edgecv.tracking.kalman import KalmanBoxFilter, SizeMotion, SortMotion
from edgecv.tracking.ocsort import OcSortOptions, OcSortTracker
from edgecv.tracking.sort import SortOptions, SortTracker
from edgecv.tracking.thresholds import ThresholdCalibration, ThresholdFit
from edgecv.tracking.track import Track, Tracker, TrackState
from edgecv.tracking.trackers import (
    TRACKERS,
    make_tracker,
    read_tracker_config,
    tracker_class,
    tracker_names,
    tracker_options,
)

__all__ = [
    "TRACKERS",
    "ByteTrackOptions",
    "ByteTracker",
    "KalmanBoxFilter",
    "Matches",
    "OcSortOptions",
    "OcSortTracker",
    "SizeMotion",
    "SortMotion",
    "SortOptions",
    "SortTracker",
    "ThresholdCalibration",
    "ThresholdFit",
    "Track",
    "TrackState",
    "Tracker",
    "iou_association",
    "linear_assignment",
    "make_tracker",
    "read_tracker_config",
    "tracker_class",
    "tracker_names",
    "tracker_options",
]
