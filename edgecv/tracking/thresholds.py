"""Score thresholds that fit the detector: a tracker's unset thresholds follow the scores the detector gives.

ByteTrack's and OC-SORT's thresholds (``track_thresh`` 0.6, ``new_track_thresh`` 0.7) were tuned for detectors
whose true detections mostly score 0.8 or more (YOLOX and Faster R-CNN on MOTChallenge). Many detectors score
lower: TensorFlow's SSD MobileNet v1 gives the pedestrians of OpenCV's ``vtest.avi`` 0.5 to 0.77 (median 0.63),
and on a blurred, handheld-like video almost none reach 0.7: with the papers' thresholds it starts no track at
all. Supervision and Ultralytics answer with lower fixed thresholds (0.25), set for their own detectors.

:class:`ThresholdFit` fits every score threshold the user did not set to the detector in use:

- until it has seen ``window_s`` seconds of the stream with at least ``min_detections`` detections (at
  most ``max_window_s``): the tracker's defaults;
- then, from the scores seen: ``track_thresh`` = their ``track_quantile`` (lower quartile) and
  ``new_track_thresh`` = their ``new_track_quantile`` (median), each capped at the tracker's default and never
  below the detector's own score threshold (the spec's, or ``--score``). A detector that scores high keeps
  the defaults, bit for bit (the MOT15 public detections here: lower quartile 0.75 or more in the first
  second of every sequence); one that scores low gets thresholds that most of its detections reach.

Why not lower the thresholds to the detector's own threshold from the first frame: that threshold says where
the detector stops reporting, not where its objects score. MOT15's public detections are cut at 0.5 and mostly
score above 0.9; OC-SORT starting tracks at 0.6 in the first second cost TUD-Campus 3.6 HOTA points (53.6 to
50.0), the weak detections' tracks living on.

Values the user set (tracker options, ``--tracker-config``) are never changed. Where each value came from is in
:meth:`ThresholdFit.to_dict` (``summary.json``'s ``tracker_thresholds``). Trackers without score thresholds
(SORT starts a track from every detection unless ``min_confidence`` is set) are left alone.

Example:
    >>> from edgecv.tracking import make_tracker
    >>> tracker = make_tracker("ocsort", fps=10)
    >>> fit = ThresholdFit(tracker, user_keys=(), detector_threshold=0.5)
    >>> tracker.options.track_thresh, tracker.options.new_track_thresh
    (0.6, 0.7)
    >>> [fit.observe(np.array([0.52, 0.55, 0.58, 0.6, 0.62]), k / 10) for k in range(30)].index(True)  # 2 s
    19
    >>> fit.state, tracker.options.track_thresh, tracker.options.new_track_thresh
    ('calibrated', 0.55, 0.58)
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, Collection

import numpy as np

from edgecv.config import check

__all__ = ["FIT_MODES", "ThresholdCalibration", "ThresholdFit"]

log = logging.getLogger(__name__)

#: ``auto``: fit the unset thresholds to the detector; ``tracker``: the tracker's own defaults.
FIT_MODES = ("auto", "tracker")
# The thresholds fitted, with the quantile option that sets each.
_FITTED = (("track_thresh", "track_quantile"), ("new_track_thresh", "new_track_quantile"))
# Scores kept for the calibration (the window is short; this bounds memory on a crowded scene).
_MAX_SCORES = 100_000


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class ThresholdCalibration:
    """How :class:`ThresholdFit` works (see the module docstring).

    ``mode``: ``auto`` or ``tracker`` (no fitting). ``window_s``, ``min_detections``, ``max_window_s``: the
    calibration window (seconds of the stream, and detections) that the thresholds are fitted on: 2 s, since
    the first second of ``vtest.avi`` (people near the camera) scores above the video as a whole.
    ``track_quantile``, ``new_track_quantile``: the quantiles of the window's scores that set ``track_thresh``
    and ``new_track_thresh``.
    """

    mode: str = "auto"
    window_s: float = 2.0
    min_detections: int = 20
    max_window_s: float = 10.0
    track_quantile: float = 0.25
    new_track_quantile: float = 0.5

    def __post_init__(self) -> None:
        check(self.mode in FIT_MODES, "thresholds", f"one of {', '.join(FIT_MODES)}", self.mode)
        check(_finite(self.window_s) and self.window_s >= 0, "thresholds.window_s", "seconds >= 0", self.window_s)
        check(_finite(self.max_window_s) and self.max_window_s >= self.window_s, "thresholds.max_window_s",
              f"seconds >= window_s ({self.window_s})", self.max_window_s)
        check(isinstance(self.min_detections, int) and not isinstance(self.min_detections, bool)
              and self.min_detections >= 1, "thresholds.min_detections", "an integer >= 1", self.min_detections)
        for name in ("track_quantile", "new_track_quantile"):
            value = getattr(self, name)
            check(_finite(value) and 0 <= value <= 1, f"thresholds.{name}", "a number in [0, 1]", value)
        check(self.track_quantile <= self.new_track_quantile, "thresholds.track_quantile",
              f"at most new_track_quantile ({self.new_track_quantile})", self.track_quantile)


class ThresholdFit:
    """Fits ``tracker``'s score thresholds that are not in ``user_keys`` to the detector (module docstring).

    ``detector_threshold``: the detector's own score threshold (None when unknown). Call :meth:`start` before
    the first frame and :meth:`observe` with each frame's detection scores (before the tracker's update) until
    :attr:`pending` is False; both change ``tracker.options`` in place.
    """

    def __init__(self, tracker: Any, *, user_keys: Collection[str] = (), detector_threshold: float | None = None,
                 calibration: ThresholdCalibration = ThresholdCalibration()) -> None:
        self.tracker = tracker
        self.calibration = calibration
        self.user_keys = frozenset(user_keys)
        self.detector_threshold = None if detector_threshold is None else float(detector_threshold)
        self.defaults = type(tracker.options)()
        fields = {f.name for f in dataclasses.fields(tracker.options)}
        self.keys = tuple(k for k, _ in _FITTED if k in fields)  # the thresholds this tracker has
        self.fitted = tuple(k for k in self.keys if k not in self.user_keys)
        self.start()

    # -- state -----------------------------------------------------------------------------------------------
    @property
    def pending(self) -> bool:
        """True while the calibration still takes scores."""
        return self.state == "calibrating"

    def start(self) -> None:
        """Back to the start of a run: the tracker's default thresholds, the calibration window open."""
        self._scores: list[np.ndarray] = []
        self._count = 0
        self._t0: float | None = None
        self._frames = 0
        self.window: dict[str, Any] | None = None
        self.sources: dict[str, str] = {}
        if not self.keys:
            self.state = "none"
            return
        for k in self.user_keys & set(self.keys):
            self.sources[k] = "user"
        if self.calibration.mode == "tracker" or not self.fitted:
            self.state = "off"
            for k in self.fitted:
                self.sources[k] = "tracker default"
            return
        self.state = "calibrating"
        for k in self.fitted:
            self.sources[k] = "tracker default (calibrating)"
        self._apply({k: getattr(self.defaults, k) for k in self.fitted})

    def observe(self, confidence: np.ndarray, time_s: float | None = None) -> bool:
        """Take one frame's detection scores (at ``time_s`` seconds, else frames at the tracker's ``fps``);
        True when this frame closed the calibration window and the thresholds were set from the scores."""
        if not self.pending:
            return False
        self._frames += 1
        now = time_s if time_s is not None else (self._frames - 1) / self.tracker.fps
        if self._t0 is None:
            self._t0 = now
        conf = np.asarray(confidence, np.float64).ravel()
        conf = conf[np.isfinite(conf)]
        if len(conf) and self._count < _MAX_SCORES:
            self._scores.append(conf[: _MAX_SCORES - self._count])
            self._count += len(self._scores[-1])
        # the window covers frames up to ``window_s`` after the first one; this frame may close it
        elapsed = now - self._t0 + 1.0 / self.tracker.fps
        c = self.calibration
        if elapsed + 1e-9 < c.window_s or (self._count < c.min_detections and elapsed + 1e-9 < c.max_window_s):
            return False
        if self._count < c.min_detections:
            self.state = "too few detections"
            self.window = {"seconds": round(elapsed, 3), "frames": self._frames, "detections": self._count}
            log.info("tracker thresholds: %d detection(s) in the first %.1f s, fewer than %d: not calibrated",
                     self._count, elapsed, c.min_detections)
            self._scores = []
            return False
        self._calibrate(elapsed)
        return True

    def _calibrate(self, elapsed: float) -> None:
        c = self.calibration
        scores = np.concatenate(self._scores)
        self._scores = []
        norm = self._normalized(scores)
        floor = self._normalized(self.detector_threshold)
        values: dict[str, float] = {}
        quantiles: dict[str, float] = {}
        for k, q_name in _FITTED:
            if k not in self.fitted:
                continue
            q = getattr(c, q_name)
            value = float(np.quantile(norm, q))
            quantiles[k] = round(value, 4)
            default = getattr(self.defaults, k)
            if floor is not None:
                value = max(value, floor)
            if value < default:
                values[k] = round(value, 4)
                self.sources[k] = f"calibrated: q{100 * q:g} of {len(scores)} detection scores in the first " \
                                  f"{elapsed:.1f} s"
            else:
                values[k] = default
                self.sources[k] = f"tracker default (q{100 * q:g} of the first {elapsed:.1f} s's scores is " \
                                  f"{quantiles[k]:g}, not lower)"
        self.window = {"seconds": round(elapsed, 3), "frames": self._frames, "detections": int(len(scores)),
                       "quantiles": quantiles}
        self.state = "calibrated"
        self._apply(values)
        log.info("tracker thresholds: %s",
                 ", ".join(f"{k} {self.value(k):g} ({self.sources[k]})" for k in self.fitted))

    # -- values ------------------------------------------------------------------------------------------------
    def value(self, key: str) -> float:
        return float(getattr(self.tracker.options, key))

    def _normalized(self, value: Any) -> Any:
        if value is None:
            return None
        lo, hi = getattr(self.tracker.options, "score_range", (0.0, 1.0))
        return value if (lo, hi) == (0.0, 1.0) else (value - lo) / (hi - lo)

    def _apply(self, values: dict[str, float]) -> None:
        o = self.tracker.options
        if "track_thresh" in values and "low_thresh" in self.user_keys:
            values["track_thresh"] = max(values["track_thresh"], o.low_thresh)  # the user's weak-detection band
        if "new_track_thresh" in values and "track_thresh" in self.keys:
            # a track that may start must be able to continue: new_track_thresh >= track_thresh
            floor = values.get("track_thresh", o.track_thresh)
            if values["new_track_thresh"] < floor:
                values["new_track_thresh"] = floor
                self.sources["new_track_thresh"] += ", raised to track_thresh"
        if "track_thresh" in values and hasattr(o, "low_thresh") and "low_thresh" not in self.user_keys:
            values["low_thresh"] = min(self.defaults.low_thresh, values["track_thresh"])
        if values:
            self.tracker.options = dataclasses.replace(o, **values)  # checked by the options' own rules

    def to_dict(self) -> dict[str, Any]:
        """The thresholds now in force, where each came from, and the calibration window (for summary.json)."""
        return {
            "state": self.state,
            "values": {k: self.value(k) for k in self.keys},
            "sources": {k: self.sources.get(k, "tracker default") for k in self.keys},
            "detector_threshold": self.detector_threshold,
            "start_score": self.tracker.start_score,
            "calibration": self.window,
        }
