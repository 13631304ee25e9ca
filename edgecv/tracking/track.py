"""What every tracker shares: track states, track snapshots, input checks, time steps and the track table.

A tracker is a stateful object configured by one frozen options dataclass. ``update(detections)`` takes one
frame's :class:`~edgecv.detection.Detections` (or a plain ``[N, 4|5|6]`` array: x1, y1, x2, y2, score, class)
and returns a NEW Detections of the tracks reported in that frame, with ``tracker_id`` set; the input is never
changed. Boxes with NaN or inf (or a score past float32's range), with zero or negative width or height, or with
a corner past +-1e6 pixels (:data:`~edgecv.detection.boxes.MAX_COORD`: a damaged box, and one that could
overflow the filter) are dropped: counted in :attr:`Tracker.dropped`, with ONE warning per tracker (later drops
are logged at DEBUG). A class id in column 5 of an array that is not a whole number from -1 to 2**63-1 is
refused (:func:`~edgecv.detection.detections.check_ids`).

A tracker never holds a non-finite state: a track whose Kalman state or covariance stops being finite (an
overflow, e.g. after a time step of 1e200 s) is dropped at once, in the prediction or after the frame's update
(state REMOVED, in :attr:`Tracker.removed`; counted in ``dropped["tracks with a non-finite state"]``), with ONE
warning per tracker. It is dropped rather than started again because nothing in it can be trusted: the next
detection of that object starts a new track, with a new id.
Time is in seconds: each update is ``1 / fps`` after the previous one, unless ``timestamp=`` (the frame's
time in seconds) or ``dt=`` says otherwise.

Tracks live in one table of arrays (state vectors, covariances, counters), so prediction, correction and
bookkeeping are numpy operations over all tracks; :attr:`Tracker.tracks` gives them as :class:`Track` objects.

A track's class: with ``class_vote`` (an option of every tracker, on by default) each track adds up the scores
of its detections per class and shows the class with the most (a detector that calls one person "person",
then "cell phone" for a frame, keeps showing "person"); without it, the class of its last detection.

Example:
    >>> import numpy as np
    >>> from edgecv.tracking import SortTracker, TrackState
    >>> tracker = SortTracker(fps=25)
    >>> out = tracker.update(np.array([[10.0, 10.0, 50.0, 90.0, 0.9]]))
    >>> out.tracker_id.tolist(), tracker.tracks[0].state is TrackState.TENTATIVE
    ([1], True)
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np

from edgecv.config import from_mapping
from edgecv.detection.boxes import MAX_COORD
from edgecv.detection.detections import Detections, check_ids
from edgecv.errors import ConfigError, InputError
from edgecv.tracking.kalman import KalmanBoxFilter, MotionModel

__all__ = ["FrameInput", "TrackState", "Track", "TrackTable", "Tracker"]

log = logging.getLogger(__name__)

# Seconds of slack when comparing accumulated time steps with lifetimes (1/25 * 2 is not exactly 0.08).
_TIME_EPS = 1e-6
_FLOAT32_MAX = float(np.finfo(np.float32).max)  # outputs are Detections: float32 scores
# Why an input box or a track is dropped: the keys of Tracker.dropped.
NON_FINITE, NO_SIZE, TOO_FAR, BROKEN = ("NaN or inf", "zero or negative size", f"a corner past {MAX_COORD:,.0f} px",
                                         "tracks with a non-finite state")
# Classes a track keeps votes for; a further class replaces the weakest (Space-Saving: it inherits its sum, so
# a class seen often enough still wins).
VOTE_SLOTS = 4


class TrackState(enum.IntEnum):
    """Life of a track: TENTATIVE (new, not yet trusted), CONFIRMED (matched and trusted in the latest frame),
    LOST (not matched in the latest frame but kept to be found again), REMOVED (gone for good)."""

    TENTATIVE = 0
    CONFIRMED = 1
    LOST = 2
    REMOVED = 3


@dataclass(frozen=True)
class Track:
    """One track as of the latest update (a snapshot: changing the tracker does not change it).

    ``xyxy`` is the filter's estimate in the latest frame; ``velocity`` the box centre's in pixels per second;
    ``confidence`` that of the last matched detection; ``class_id`` the class with the highest sum of scores
    over the track's detections with ``class_vote``, else the last detection's. ``hits`` counts matched detections,
    the first one included; ``hit_streak`` counts matches in a row since the last miss, the detection that
    started the track not included (SORT's counter); ``age`` counts frames since the track began;
    ``frames_since_update`` and ``time_since_update`` (seconds) are 0 when matched in the latest frame.
    """

    track_id: int
    state: TrackState
    xyxy: tuple[float, float, float, float]
    velocity: tuple[float, float]
    confidence: float
    class_id: int
    hits: int
    hit_streak: int
    age: int
    frames_since_update: int
    time_since_update: float


class TrackTable:
    """Tracks as parallel arrays (one row per track, in the order the tracks began); a tracker that keeps more
    per track subclasses it and adds its arrays to ``FIELDS`` (OC-SORT's observation history).

    Example:
        >>> t = TrackTable(8)
        >>> len(t), t.x.shape
        (0, (0, 8))
    """

    FIELDS = ("id", "state", "x", "P", "cls", "conf", "hits", "streak", "age", "missed", "since", "det", "born",
              "vcls", "vsum")

    def __init__(self, dim: int) -> None:
        self.id = np.zeros(0, np.int64)
        self.state = np.zeros(0, np.int8)
        self.x = np.zeros((0, dim))
        self.P = np.zeros((0, dim, dim))
        self.cls = np.zeros(0, np.int64)
        self.conf = np.zeros(0, np.float64)
        self.hits = np.zeros(0, np.int64)
        self.streak = np.zeros(0, np.int64)
        self.age = np.zeros(0, np.int64)  # frames since the track began
        self.missed = np.zeros(0, np.int64)  # frames since the last match
        self.since = np.zeros(0, np.float64)  # seconds since the last match
        self.det = np.zeros(0, np.int64)  # input row matched in the latest frame, -1 for none
        self.born = np.zeros(0, np.int64)  # frame index of the first detection
        self.vcls = np.zeros((0, VOTE_SLOTS), np.int64)  # classes voted for
        self.vsum = np.zeros((0, VOTE_SLOTS), np.float64)  # their sums of scores (0: an empty slot)

    def __len__(self) -> int:
        return len(self.id)

    def keep(self, mask: np.ndarray) -> None:
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name)[mask])

    def append(self, **rows: np.ndarray) -> None:
        for name in self.FIELDS:
            setattr(self, name, np.concatenate([getattr(self, name), rows[name]]))


@dataclass(frozen=True)
class FrameInput:
    """One frame's usable detections, as :meth:`Tracker.update` hands them to a tracker's ``_step``: float64
    boxes and scores, classes, their rows in the input, and the input's per-box ``data`` (embeddings)."""

    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray
    index: np.ndarray
    data: Mapping[str, np.ndarray]


def _read_input(detections: Any) -> tuple[FrameInput, dict[str, int]]:
    """Check the input's type and shape, then drop boxes that no tracker can use; returns the usable boxes and
    how many were dropped, by reason (only reasons with drops)."""
    data: Mapping[str, np.ndarray] = {}
    if isinstance(detections, Detections):
        xyxy = detections.xyxy.astype(np.float64)
        conf = detections.confidence.astype(np.float64)
        cls = detections.class_id
        data = detections.data
    elif isinstance(detections, (np.ndarray, list, tuple)):
        try:
            a = np.asarray(detections)
        except (ValueError, TypeError):
            raise InputError("tracker input: expected Detections or a real array [N, 4|5|6] (x1, y1, x2, y2, score, "
                             "class), got a ragged sequence") from None
        if a.size == 0:
            a = a.reshape(0, 5) if a.dtype.kind in "iuf" else a
        if a.dtype.kind not in "iuf" or a.ndim != 2 or a.shape[1] not in (4, 5, 6):
            got = f"dtype {a.dtype} shape {list(a.shape)}"
            raise InputError(f"tracker input: expected Detections or a real array [N, 4|5|6] (x1, y1, x2, y2, score, "
                             f"class), got {got}")
        a = a.astype(np.float64)
        xyxy = a[:, :4]
        conf = a[:, 4] if a.shape[1] > 4 else np.ones(len(a))
        if a.shape[1] > 5:
            col = a[:, 5]
            finite = np.isfinite(col)
            # NaN (a row without a class) is dropped below; every other value must be an id that cannot wrap
            cls = check_ids(np.where(finite, col, -1.0), what="tracker input: class ids in column 5")
            conf = np.where(finite, conf, np.nan)
        else:
            cls = np.zeros(len(a), np.int64)
    else:
        got = type(detections).__name__
        raise InputError(f"tracker input: expected Detections or a real array [N, 4|5|6], got {got}")
    with np.errstate(invalid="ignore", over="ignore"):
        w, h = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
        finite = np.isfinite(xyxy).all(axis=1) & np.isfinite(conf) & (np.abs(conf) <= _FLOAT32_MAX)
        near = (np.abs(xyxy) <= MAX_COORD).all(axis=1)
        sized = (w > 0) & (h > 0)
    ok = finite & near & sized
    if ok.all():
        return FrameInput(xyxy, conf, cls, np.arange(len(xyxy)), data), {}
    counts = {NON_FINITE: int((~finite).sum()), TOO_FAR: int((finite & ~near).sum()),
              NO_SIZE: int((finite & near & ~sized).sum())}
    keep = np.flatnonzero(ok)
    return FrameInput(xyxy[keep], conf[keep], cls[keep], keep, data), {k: v for k, v in counts.items() if v}


def _vote_weight(conf: np.ndarray) -> np.ndarray:
    """A detection's vote: its score (kept above 0, so that any score counts and 0 can mark an empty slot)."""
    return np.maximum(conf, 1e-6)


def _check_fps(fps: Any) -> float:
    ok = isinstance(fps, (int, float, np.integer, np.floating)) and not isinstance(fps, bool)
    if not ok or not math.isfinite(fps) or fps <= 0:
        raise ConfigError(f"fps: expected a positive number of frames per second, got {fps!r}")
    return float(fps)


def _seconds(value: Any, name: str) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value):
        raise InputError(f"update: expected {name} in seconds as a finite number, got {value!r}")
    return float(value)


class Tracker:
    """Base of every tracker (see the module docstring). Subclasses set ``name``, ``Options``, ``_motion``
    and implement ``_step``, which predicts, associates and updates the table and returns the rows to report.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = object

    def __init__(self, options: Any = None, *, fps: float = 30.0) -> None:
        self.options = self.check_options(options)
        self.fps = _check_fps(fps)
        self.kf = KalmanBoxFilter(self._motion())
        self.reset()

    @classmethod
    def check_options(cls, options: Any = None) -> Any:
        """``options`` as this tracker's ``Options``: a mapping (YAML) is read key by key, an ``Options`` is
        taken as it is, None gives the defaults. Unknown keys, wrong types and out-of-range values are
        one-line ConfigErrors naming the tracker (``sort options: unknown key(s) ...; valid keys: ...``).

        Example:
            >>> from edgecv.tracking import SortTracker
            >>> SortTracker.check_options({"max_lost_s": 2}).max_lost_s
            2.0
        """
        if options is None or isinstance(options, Mapping):
            return from_mapping(cls.Options, options, f"{cls.name} options")
        if not isinstance(options, cls.Options):
            raise ConfigError(f"{cls.name} options: expected a {cls.Options.__name__} or a mapping, "
                              f"got {type(options).__name__}")
        return options

    def _motion(self) -> MotionModel:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r}, fps={self.fps:g})"

    # -- public ------------------------------------------------------------------------------------------
    @property
    def start_score(self) -> float | None:
        """The least detection score (on the detector's own scale) that can start a track, or None when any
        detection can."""
        return None

    def reset(self) -> None:
        """Forget every track and the time; identities start again from 1; the drop counts and the
        once-per-tracker warnings start again."""
        #: What this tracker dropped since it was made or reset, by reason: input boxes (NaN or inf, zero or
        #: negative size, a corner past MAX_COORD) and tracks whose Kalman state stopped being finite.
        self.dropped: dict[str, int] = {}
        self._warned: set[str] = set()
        self._t = TrackTable(self.kf.dim)
        self._next_id = 1
        self._time: float | None = None
        self.frame_index = 0  # updates so far
        self._gone = TrackTable(self.kf.dim)  # tracks removed by the latest update

    @property
    def tracks(self) -> list[Track]:
        """The live tracks (tentative, confirmed and lost) as snapshots, oldest first."""
        return self._snapshots(self._t, np.arange(len(self._t)))

    def end_tracks(self) -> list[Track]:
        """Remove every track now, keeping the identity counter (unlike :meth:`reset`, no id is ever used
        again): for a break in the video, such as a stream that came back after an outage. Returns the
        removed tracks, as they were."""
        self._gone = TrackTable(self.kf.dim)
        self._remove(np.ones(len(self._t), bool))
        ended = self.removed
        self._gone = TrackTable(self.kf.dim)
        return ended

    @property
    def removed(self) -> list[Track]:
        """The tracks the latest update removed (state REMOVED), as they were when removed."""
        return self._snapshots(self._gone, np.arange(len(self._gone)))

    def update(
        self, detections: Detections | np.ndarray, *, timestamp: float | None = None, dt: float | None = None
    ) -> Detections:
        """Track one frame; return the tracks reported in it (see the module docstring).

        ``timestamp`` is the frame's time in seconds (must increase from update to update); ``dt`` the seconds
        since the previous frame. Without either, frames are ``1 / fps`` apart. Output boxes, scores and classes
        follow the tracker's options; ``data`` holds the matched input rows' ``data``.
        """
        frame, drops = _read_input(detections)
        step = self._time_step(timestamp, dt)
        if drops:
            self._count_drops(drops, len(frame.xyxy) + sum(drops.values()))
        self.frame_index += 1
        if len(self._gone):
            self._gone = TrackTable(self.kf.dim)
        # An overflow gives inf or NaN, which _drop_broken finds: numpy's RuntimeWarnings would only repeat it.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            report = self._step(frame, step)
            broken = self._drop_broken("update")
        if broken is not None:
            report = report[~broken]
        return self._output(report.nonzero()[0], frame)

    # -- warnings, once per tracker ----------------------------------------------------------------------
    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        """Log ``message`` as a WARNING the first time ``key`` comes up in this tracker, at DEBUG after."""
        level = logging.DEBUG if key in self._warned else logging.WARNING
        self._warned.add(key)
        log.log(level, message, *args)

    def _count_drops(self, drops: dict[str, int], total: int) -> None:
        for reason, n in drops.items():
            self.dropped[reason] = self.dropped.get(reason, 0) + n
        parts = ", ".join(f"{n} with {reason}" for reason, n in drops.items())
        self._warn_once("input", "%s: dropped %d of %d detection(s) in frame %d: %s (counted in tracker.dropped; "
                        "further drops are logged at DEBUG)", self.name, sum(drops.values()), total,
                        self.frame_index + 1, parts)

    def _check_score_range(self, conf: np.ndarray, score_range: tuple[float, float]) -> None:
        """Warn once when scores fall outside ``score_range``: thresholds on the normalized score then mean
        nothing (logits from a decoder without its sigmoid, MOTChallenge scores up to ~100 with the default
        (0, 1)). Scores are kept as they are: the detector's own scale is not an error."""
        if len(conf) == 0 or "score_range" in self._warned:
            return
        lo, hi = score_range
        slack = 1e-6 * (hi - lo)  # float32 rounding of a probability
        low, high = float(conf.min()), float(conf.max())
        if low < lo - slack or high > hi + slack:
            self._warn_once("score_range", "%s: detection scores from %.4g to %.4g fall outside score_range (%g, %g): "
                            "the score thresholds apply to (score - %g) / (%g - %g); set score_range to the "
                            "detector's scale (warned once)", self.name, low, high, lo, hi, lo, hi, lo)

    def _drop_broken(self, when: str) -> np.ndarray | None:
        """Remove the tracks whose state or covariance is not finite (an overflow); returns the mask of the
        rows removed, or None when every track is finite."""
        t = self._t
        if len(t) == 0:
            return None
        ok = self.kf.finite(t.x, t.P)
        if ok.all():
            return None
        broken = ~ok
        ids = t.id[broken].tolist()
        self.dropped[BROKEN] = self.dropped.get(BROKEN, 0) + len(ids)
        self._warn_once(BROKEN, "%s: dropped track(s) %s in frame %d: the Kalman state or covariance overflowed "
                        "(inf or NaN) in the %s (boxes near float limits or a huge time step?); a new detection "
                        "starts a new track (counted in tracker.dropped; further ones are logged at DEBUG)",
                        self.name, ", ".join(map(str, ids[:5])) + (", ..." if len(ids) > 5 else ""),
                        self.frame_index, when)
        self._remove(broken)
        return broken

    # -- shared steps ------------------------------------------------------------------------------------
    def _time_step(self, timestamp: float | None, dt: float | None) -> float:
        if timestamp is not None and dt is not None:
            raise InputError("update: expected timestamp or dt, not both")
        if dt is not None:
            step = _seconds(dt, "dt")
            if step <= 0:
                raise InputError(f"update: expected dt > 0 seconds, got {dt!r}")
        elif timestamp is not None:
            now = _seconds(timestamp, "timestamp")
            if self._time is not None and now <= self._time:
                raise InputError(f"update: expected timestamps to increase, got {now!r} after {self._time!r}")
            step = 1.0 / self.fps if self._time is None else now - self._time
            self._time = now
            return step
        else:
            step = 1.0 / self.fps
        if self._time is not None:
            self._time += step
        return step

    def _predict(self, dt: float, frozen: np.ndarray | None = None) -> np.ndarray:
        """Move every track ``dt`` seconds on; drop tracks whose box is no longer one. Returns boxes ``[N, 4]``."""
        t = self._t
        if len(t) == 0:
            return np.zeros((0, 4))
        t.x, t.P = self.kf.predict(t.x, t.P, dt, frozen=frozen)
        if self._drop_broken("prediction") is not None:
            t = self._t
            if len(t) == 0:
                return np.zeros((0, 4))
        t.streak[t.missed > 0] = 0  # SORT: a miss in the previous frame ends the streak
        t.age += 1
        t.missed += 1
        t.since += dt
        t.det[:] = -1
        boxes = self.kf.boxes(t.x)
        bad = ~np.isfinite(boxes).all(axis=1)  # a finite state that is no box (SORT's area below 0): as SORT
        if bad.any():
            self._remove(bad)
            boxes = boxes[~bad]
        return boxes

    def _correct(self, rows: np.ndarray, frame: FrameInput, dets: np.ndarray) -> None:
        """Update tracks ``rows`` with detections ``dets`` (positions in ``frame``), all in one filter step."""
        if len(rows) == 0:
            return
        t = self._t
        t.x[rows], t.P[rows] = self.kf.update(t.x[rows], t.P[rows], frame.xyxy[dets])
        t.conf[rows] = frame.conf[dets]
        if getattr(self.options, "class_vote", False):
            self._vote(rows, frame.cls[dets], frame.conf[dets])
        else:
            t.cls[rows] = frame.cls[dets]
        t.det[rows] = frame.index[dets]
        t.hits[rows] += 1
        t.streak[rows] += 1
        t.missed[rows] = 0
        t.since[rows] = 0.0

    def _spawn(self, frame: FrameInput, dets: np.ndarray, state: TrackState) -> None:
        """Start one track per detection ``dets`` (positions in ``frame``)."""
        n = len(dets)
        if n == 0:
            return
        x, P = self.kf.initiate(frame.xyxy[dets])
        zeros = np.zeros(n, np.int64)
        vcls = np.zeros((n, VOTE_SLOTS), np.int64)
        vcls[:, 0] = frame.cls[dets]
        vsum = np.zeros((n, VOTE_SLOTS))
        vsum[:, 0] = _vote_weight(frame.conf[dets])
        self._t.append(
            id=np.arange(self._next_id, self._next_id + n, dtype=np.int64),
            state=np.full(n, int(state), np.int8),
            x=x,
            P=P,
            cls=frame.cls[dets],
            conf=frame.conf[dets],
            hits=zeros + 1,
            streak=zeros,
            age=zeros,
            missed=zeros,
            since=np.zeros(n),
            det=frame.index[dets],
            born=zeros + self.frame_index,
            vcls=vcls,
            vsum=vsum,
        )
        self._next_id += n

    def _vote(self, rows: np.ndarray, cls: np.ndarray, conf: np.ndarray) -> None:
        """Add each detection's score to its class's sum in track ``rows``; each track shows its leading class
        (the earliest-voted one on a tie)."""
        t = self._t
        vc, vs = t.vcls[rows], t.vsum[rows]
        k = np.arange(len(rows))
        hit = (vc == cls[:, None]) & (vs > 0)
        has = hit.any(axis=1)
        slot = np.where(has, hit.argmax(axis=1), vs.argmin(axis=1))  # an empty slot (0) first, else the weakest
        vs[k, slot] += _vote_weight(conf)  # a replaced class's sum is inherited (Space-Saving)
        vc[k, slot] = cls
        t.vcls[rows], t.vsum[rows] = vc, vs
        t.cls[rows] = vc[k, vs.argmax(axis=1)]

    def _remove(self, mask: np.ndarray) -> None:
        """Remove the tracks in ``mask``, keeping their last snapshots (state REMOVED) in :attr:`removed`."""
        rows = mask.nonzero()[0]
        if len(rows) == 0:
            return
        self._t.state[rows] = int(TrackState.REMOVED)
        self._gone.append(**{name: getattr(self._t, name)[rows] for name in TrackTable.FIELDS})
        self._t.keep(~mask)

    def _expired(self, max_lost_s: float) -> np.ndarray:
        return self._t.since > max_lost_s + _TIME_EPS

    def _snapshots(self, t: TrackTable, rows: np.ndarray) -> list[Track]:
        with np.errstate(invalid="ignore"):
            boxes = self.kf.boxes(t.x[rows]).tolist()
        vel = t.x[rows][:, 4:6].tolist()
        return [
            Track(
                track_id=int(t.id[r]),
                state=TrackState(int(t.state[r])),
                xyxy=tuple(boxes[k]),  # type: ignore[arg-type]
                velocity=tuple(vel[k]),  # type: ignore[arg-type]
                confidence=float(t.conf[r]),
                class_id=int(t.cls[r]),
                hits=int(t.hits[r]),
                hit_streak=int(t.streak[r]),
                age=int(t.age[r]),
                frames_since_update=int(t.missed[r]),
                time_since_update=float(t.since[r]),
            )
            for k, r in enumerate(rows.tolist())
        ]

    def _output(self, rows: np.ndarray, frame: FrameInput) -> Detections:
        t = self._t
        det = t.det[rows]
        if getattr(self.options, "output_boxes", "kalman") == "detection":
            # the matched input boxes (every reported track was matched in this frame)
            pos = np.searchsorted(frame.index, det)
            boxes = frame.xyxy[pos]
        else:
            boxes = self.kf.boxes(t.x[rows])
        data = {k: v[det] for k, v in frame.data.items()} if frame.data else {}
        return Detections(
            xyxy=boxes.astype(np.float32),
            confidence=t.conf[rows].astype(np.float32),
            class_id=t.cls[rows].copy(),
            tracker_id=t.id[rows].copy(),
            data=data,
        )

    def _step(self, frame: FrameInput, dt: float) -> np.ndarray:
        raise NotImplementedError
