"""OC-SORT (Cao et al., 2023): a Kalman tracker that trusts the detector's boxes over its own filter through
occlusions, with ByteTrack's second stage for weak detections.

A plain Kalman tracker loses people behind occluders twice over: while nobody is seen its velocity error
grows with every prediction (so the track ends up far from where the person comes back), and when the person
is found again the filter, fed one box after a long gap, keeps a wrong velocity for a while. OC-SORT's three
observation-centric parts answer that with the detections themselves:

- **ORU, observation-centric re-update**: when a track missed some frames and is matched again, its filter
  goes back to its state at the last detection and is run again along a virtual trajectory, boxes on the
  straight line from the last detection to the new one, one per missed frame, before the new detection
  updates it. Velocity and covariance come out as if the person had been seen all along.
- **OCM, observation-centric momentum**: each track keeps the direction in which its detections moved over
  the last ``momentum_window_s`` seconds. In the first association a pair's similarity is its IoU plus
  ``inertia * score * (1/2 - angle / pi)``, where ``angle`` is between that direction and the direction from
  the track's detection ``momentum_window_s`` ago to the candidate detection (0 when the track has no
  direction yet), so tracks crossing each other keep their own person.
- **OCR, observation-centric recovery** (``ocr``, off by default): confident detections still unmatched
  after the first two stages are matched to the tracks still unmatched by the IoU with each track's *last
  detection* rather than its prediction: it finds a person who stopped behind an occluder, or a track whose
  prediction drifted off. On crowds walking past each other (TUD-Stadtmitte, with and without simulated
  occlusions) it gave a stale last detection to the next passer-by more often than it recovered a track.

What each part is worth is measured by ``benchmarks/track_mot15.py`` (each one switched off in turn). On the
MOT15 pedestrian sequences here, whose people mostly walk straight, they change little; the tracker's edge over
ByteTrack there comes mostly from SORT's filter (``motion="xysr"``, whose velocity changes slowly).

Per frame, after the Kalman prediction of every track (scores normalized by ``score_range`` as in
:class:`~edgecv.tracking.ByteTracker`, with one warning per tracker for scores outside it):

1. detections scoring at least ``track_thresh`` against the confirmed and lost tracks: IoU with the
   prediction plus the OCM term, pairs with IoU below ``iou_threshold`` never matched;
2. detections scoring more than ``low_thresh`` but less than ``track_thresh`` against the confirmed tracks
   still unmatched that were matched in the previous frame, by IoU (at least ``low_iou_threshold``);
3. with ``ocr``: confident detections left against the confirmed and lost tracks left, IoU with the last
   detection (at least ``iou_threshold``); confirmed tracks still unmatched become LOST;
4. confident detections left against tentative tracks, by IoU (at least ``iou_threshold``); a tentative track
   not matched is removed, one with ``min_hits`` detections is confirmed;
5. confident detections left over scoring at least ``new_track_thresh`` start tentative tracks (confirmed at
   once in the first frame); lost tracks unmatched for more than ``max_lost_s`` seconds are removed.

Matched tracks are updated (with ORU first where they missed frames) and the confirmed tracks matched in the
frame are reported; a track found again is reported at once. The filter is SORT's by default
(:class:`~edgecv.tracking.kalman.SortMotion`, ``motion="xysr"``, OC-SORT's own; its noise is in pixels, as
SORT's at 25 frames/s, scaled in seconds) or :class:`~edgecv.tracking.kalman.SizeMotion` (``"xywh"``, noise
proportional to the box size, ByteTrack's: for objects much smaller or larger than MOT's pedestrians). Every
time-related setting is in seconds, so the same settings hold at any frame rate.

Example:
    >>> import numpy as np
    >>> tracker = OcSortTracker(fps=30)
    >>> for k in range(3):
    ...     out = tracker.update(np.array([[10.0 + k, 10.0, 50.0 + k, 90.0, 0.9], [60, 0, 80, 40, 0.3]]))
    >>> out.tracker_id.tolist(), len(tracker.tracks)
    ([1], 1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgecv.config import check
from edgecv.tracking.association import (
    DENSE_LIMIT,
    Matches,
    pairwise_iou,
    matches_from_pairs,
    iou_association,
    iou_candidates,
    linear_assignment,
    pair_assignment,
    similarity_assignment,
)
from edgecv.tracking.kalman import KalmanBoxFilter, MotionModel, SizeMotion, SortMotion
from edgecv.tracking.sort import OUTPUT_BOXES
from edgecv.tracking.track import Tracker, TrackState, FrameInput, TrackTable

__all__ = ["OcSortOptions", "OcSortTracker"]

MOTIONS = ("xywh", "xysr")
_CONFIRMED, _LOST, _TENTATIVE = int(TrackState.CONFIRMED), int(TrackState.LOST), int(TrackState.TENTATIVE)
_EPS = 1e-6  # seconds of slack when comparing accumulated time steps
_NONE = np.zeros(0, np.int64)


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class OcSortOptions:
    """OC-SORT's settings (see the module docstring for where each applies).

    Scores: ``track_thresh``, ``low_thresh`` and ``new_track_thresh`` are on the normalized score
    (``score_range``), as in ByteTrack (same defaults). ``iou_threshold``: the least IoU of a match in the first
    stage, OCR and for tentative tracks (OC-SORT: 0.3); ``low_iou_threshold`` that of a weak detection
    (ByteTrack: 0.5). ``inertia``: the weight of the direction term (OC-SORT: 0.2; 0 turns OCM off);
    ``momentum_window_s``: how far back in seconds the direction is taken (OC-SORT: 3 frames at 30 frames/s).
    ``oru`` and ``ocr`` turn the re-update and the recovery stage on or off. ``max_lost_s``: seconds a lost
    track waits to be found again (OC-SORT: 30 frames at 30 frames/s). ``min_hits``: detections a tentative
    track needs, its first included (ByteTrack's 2). ``per_class``: match only within a class (the track's shown
    class). ``class_vote``: show each track's class with the highest sum of scores over its detections (False:
    its last detection's). ``motion``: ``xysr`` (SORT's filter, its noise as at 25
    frames/s) or ``xywh`` (:class:`~edgecv.tracking.kalman.SizeMotion` with the ``noise_*`` settings, in box
    sizes).

    The defaults are the papers' (OC-SORT's and, for the weak-detection stage and the track life cycle,
    ByteTrack's as in :class:`~edgecv.tracking.ByteTrackOptions`), in seconds. Two choices were made on
    TUD-Stadtmitte (not on TUD-Campus, the test sequence): ``motion="xysr"`` over ``"xywh"`` and ``ocr`` off.
    """

    track_thresh: float = 0.6
    low_thresh: float = 0.1
    new_track_thresh: float = 0.7
    iou_threshold: float = 0.3
    low_iou_threshold: float = 0.5
    inertia: float = 0.2
    momentum_window_s: float = 0.1
    oru: bool = True
    ocr: bool = False
    max_lost_s: float = 1.0
    min_hits: int = 2
    score_range: tuple[float, float] = (0.0, 1.0)
    per_class: bool = False
    class_vote: bool = True
    output_boxes: str = "kalman"
    motion: str = "xysr"
    noise_position: float = 0.27
    noise_velocity: float = 1.03
    noise_measurement: float = 0.05

    def __post_init__(self) -> None:
        for name in ("track_thresh", "low_thresh", "new_track_thresh"):
            value = getattr(self, name)
            check(_finite(value), f"ocsort.{name}", "a number", value)
        check(self.low_thresh <= self.track_thresh, "ocsort.low_thresh", f"at most track_thresh "
              f"({self.track_thresh})", self.low_thresh)
        for name in ("iou_threshold", "low_iou_threshold"):
            value = getattr(self, name)
            check(_finite(value) and 0 <= value <= 1, f"ocsort.{name}", "a number in [0, 1]", value)
        check(_finite(self.inertia) and self.inertia >= 0, "ocsort.inertia", "a number >= 0", self.inertia)
        check(_finite(self.momentum_window_s) and self.momentum_window_s >= 0, "ocsort.momentum_window_s",
              "seconds >= 0", self.momentum_window_s)
        for name in ("oru", "ocr", "per_class", "class_vote"):
            value = getattr(self, name)
            check(isinstance(value, bool), f"ocsort.{name}", "true or false", value)
        check(_finite(self.max_lost_s) and self.max_lost_s >= 0, "ocsort.max_lost_s", "seconds >= 0",
              self.max_lost_s)
        check(isinstance(self.min_hits, int) and not isinstance(self.min_hits, bool) and self.min_hits >= 1,
              "ocsort.min_hits", "an integer >= 1", self.min_hits)
        lo_hi = self.score_range
        ok = isinstance(lo_hi, (tuple, list)) and len(lo_hi) == 2 and all(_finite(v) for v in lo_hi)
        check(ok and lo_hi[0] < lo_hi[1], "ocsort.score_range", "(low, high) with low < high", lo_hi)
        object.__setattr__(self, "score_range", tuple(float(v) for v in lo_hi))
        check(self.output_boxes in OUTPUT_BOXES, "ocsort.output_boxes", f"one of {', '.join(OUTPUT_BOXES)}",
              self.output_boxes)
        check(self.motion in MOTIONS, "ocsort.motion", f"one of {', '.join(MOTIONS)}", self.motion)
        for name in ("noise_position", "noise_velocity", "noise_measurement"):
            value = getattr(self, name)
            check(_finite(value) and value > 0, f"ocsort.{name}", "a positive number", value)


class _OcTable(TrackTable):
    """The track table plus what OC-SORT keeps of each track's detections.

    ``obs``: the last detection (x1, y1, x2, y2); ``hist`` / ``hist_t``: the centres of the latest few
    detections and their times (a ring of ``slots``, time -inf for none); ``vdir``: the unit direction of the
    detections' motion (0 when unknown); ``xs`` / ``Ps``: the filter's state and covariance right after the
    last detection (for ORU).
    """

    EXTRA = ("obs", "hist", "hist_t", "vdir", "xs", "Ps")
    FIELDS = TrackTable.FIELDS + EXTRA

    def __init__(self, dim: int, slots: int) -> None:
        super().__init__(dim)
        self.obs = np.zeros((0, 4))
        self.hist = np.zeros((0, slots, 2))
        self.hist_t = np.zeros((0, slots))
        self.vdir = np.zeros((0, 2))
        self.xs = np.zeros((0, dim))
        self.Ps = np.zeros((0, dim, dim))

    def append(self, **rows: np.ndarray) -> None:
        n = len(rows["id"])
        for name in self.EXTRA:  # the tracker fills them in after the base table's own append
            if name not in rows:
                fill = -np.inf if name == "hist_t" else 0.0
                rows[name] = np.full((n,) + getattr(self, name).shape[1:], fill)
        super().append(**rows)


def _centers(xyxy: np.ndarray) -> np.ndarray:
    c = xyxy[:, 0:2] + xyxy[:, 2:4]
    c *= 0.5
    return c


class OcSortTracker(Tracker):
    """OC-SORT over :class:`~edgecv.detection.Detections` (see the module docstring)."""

    name = "ocsort"
    Options = OcSortOptions
    options: OcSortOptions

    def _motion(self) -> MotionModel:
        o = self.options
        if o.motion == "xysr":
            return SortMotion()
        return SizeMotion(position=o.noise_position, velocity=o.noise_velocity, measurement=o.noise_measurement)

    @property
    def start_score(self) -> float | None:
        lo, hi = self.options.score_range
        return lo + self.options.new_track_thresh * (hi - lo)

    def reset(self) -> None:
        super().reset()
        # ring slots: the detections within the momentum window at the nominal frame rate, and one more
        self._slots = max(1, math.ceil(self.options.momentum_window_s * self.fps - 1e-9) + 1)
        self._t = _OcTable(self.kf.dim, self._slots)
        self._now = 0.0
        self._centre = np.zeros((0, 2))  # this frame's detection centres
        self._prev: np.ndarray | None = None  # this frame's previous centres of the tracks (when worked out)
        self._boxes = np.zeros((0, 4))  # this frame's predictions

    # -- OC-SORT's per-track bookkeeping ------------------------------------------------------------------
    def _spawn(self, frame: FrameInput, dets: np.ndarray, state: TrackState) -> None:
        n = len(dets)
        if n == 0:
            return
        super()._spawn(frame, dets, state)
        t = self._t
        new = slice(len(t) - n, len(t))
        box = frame.xyxy[dets]
        t.obs[new] = box
        t.hist[new, 0] = _centers(box)
        t.hist_t[new, 0] = self._now
        t.xs[new] = t.x[new]
        t.Ps[new] = t.P[new]

    def _previous_centres(self) -> np.ndarray:
        """Per track, the centre of its oldest detection within the momentum window before now, else of its
        last detection: where its direction to a new detection is measured from (OC-SORT's ``k_previous_obs``).
        Worked out once per frame, when first needed."""
        if self._prev is None:
            t = self._t
            if self._slots == 1:
                self._prev = t.hist[:, 0]
            else:
                times = t.hist_t
                inside = times >= self._now - self.options.momentum_window_s - _EPS
                oldest = np.where(inside, times, np.inf).argmin(axis=1)
                none = ~inside.any(axis=1)
                if none.any():  # the last detection instead
                    oldest[none] = times[none].argmax(axis=1)
                self._prev = t.hist[np.arange(len(t)), oldest]
        return self._prev

    def _reupdate(self, rows: np.ndarray, box: np.ndarray) -> None:
        """ORU: tracks ``rows`` (each missed frames) back to their last detection, then along a straight
        virtual trajectory to ``box``, one virtual detection per missed frame; ends predicted to now."""
        t, kf = self._t, self.kf
        gaps = t.missed[rows]
        for g in np.unique(gaps).tolist() if len(rows) > 1 else [int(gaps[0])]:
            sel = (gaps == g).nonzero()[0] if len(rows) > 1 else slice(None)
            r = rows[sel]
            dt = float(t.since[r[0]]) / g  # tracks with the same gap were last seen in the same frame
            last = t.obs[r]
            virtual = last + (box[sel] - last) * (np.arange(1, g)[:, None, None] / g)  # [g - 1, n, 4]
            x, P = _rerun(kf, t.xs[r], t.Ps[r], virtual, dt)
            t.x[r], t.P[r] = kf.predict(x, P, dt)

    def _correct(self, rows: np.ndarray, frame: FrameInput, dets: np.ndarray) -> None:
        if len(rows) == 0:
            return
        t = self._t
        box = frame.xyxy[dets]
        if self.options.oru:
            again = t.missed[rows] > 1
            if again.any():
                self._reupdate(rows[again], box[again])
        # OCM: the direction of motion, from the detection a momentum window ago to this one
        centre = self._centre[dets]
        d = centre - self._previous_centres()[rows]
        norm = np.hypot(d[:, 0], d[:, 1])
        moved = norm > 1e-6
        if moved.all():
            t.vdir[rows] = d / norm[:, None]
        elif moved.any():
            t.vdir[rows[moved]] = d[moved] / norm[moved, None]
        slot = t.hits[rows] % self._slots
        t.hist[rows, slot] = centre
        t.hist_t[rows, slot] = self._now
        t.obs[rows] = box
        super()._correct(rows, frame, dets)
        t.xs[rows] = t.x[rows]
        t.Ps[rows] = t.P[rows]

    # -- one frame -------------------------------------------------------------------------------------------
    def _step(self, frame: FrameInput, dt: float) -> np.ndarray:
        o = self.options
        self._now += dt
        lo, hi = o.score_range
        self._check_score_range(frame.conf, o.score_range)
        score = frame.conf if (lo, hi) == (0.0, 1.0) else (frame.conf - lo) / (hi - lo)
        confident = score >= o.track_thresh
        high = confident.nonzero()[0]

        self._boxes = boxes = self._predict(dt, frozen=self._t.state == _LOST)
        t = self._t
        state = t.state
        n, m = len(t), len(frame.xyxy)
        self._centre = _centers(frame.xyxy)
        self._prev = None
        iou = pairwise_iou(boxes, frame.xyxy) if n and m and n * m <= DENSE_LIMIT else None
        is_tentative = state == _TENTATIVE
        if is_tentative.any():
            pool, tentative = (~is_tentative).nonzero()[0], is_tentative.nonzero()[0]
        else:
            pool, tentative = np.arange(n), _NONE

        # 1. confident detections against confirmed and lost tracks: IoU plus the direction term (OCM)
        m1 = self._first_stage(pool, high, boxes, iou, frame, score)
        rows, dets = [pool[m1.rows]], [high[m1.cols]]
        left = high[m1.unmatched_cols]
        rest = pool[m1.unmatched_rows]
        # 2. weak detections against the confirmed tracks left that were matched in the previous frame (BYTE)
        if len(rest) and not confident.all():
            low = ((score > o.low_thresh) & ~confident).nonzero()[0]
            tracked = rest[state[rest] == _CONFIRMED]
            if len(low) and len(tracked):
                m2 = self._by_iou(tracked, low, o.low_iou_threshold, frame, iou)
                if len(m2.rows):
                    rows.append(tracked[m2.rows])
                    dets.append(low[m2.cols])
                    done = np.zeros(n, bool)
                    done[rows[-1]] = True
                    rest = rest[~done[rest]]
        # 3. OCR: confident detections left against the tracks left, by their last detections
        if o.ocr and len(rest) and len(left):
            m3 = self._by_iou(rest, left, o.iou_threshold, frame, None, t.obs[rest])
            rows.append(rest[m3.rows])
            dets.append(left[m3.cols])
            left = left[m3.unmatched_cols]
        # 4. confident detections left against tentative tracks
        if len(tentative) and len(left):
            m4 = self._by_iou(tentative, left, o.iou_threshold, frame, iou)
            rows.append(tentative[m4.rows])
            dets.append(left[m4.cols])
            left = left[m4.unmatched_cols]

        if len(rows) > 1:
            self._correct(np.concatenate(rows), frame, np.concatenate(dets))
        else:
            self._correct(rows[0], frame, dets[0])
        matched = t.missed == 0
        state[matched & (t.hits >= o.min_hits)] = _CONFIRMED
        state[matched & ~is_tentative] = _CONFIRMED  # lost tracks found again
        state[(state == _CONFIRMED) & ~matched] = _LOST
        gone = is_tentative & ~matched
        gone |= (state == _LOST) & self._expired(o.max_lost_s)
        if gone.any():
            self._remove(gone)

        # 5. new tracks
        if len(left):
            new = left[score[left] >= o.new_track_thresh]
            first = self.frame_index == 1 or o.min_hits <= 1
            self._spawn(frame, new, TrackState.CONFIRMED if first else TrackState.TENTATIVE)
        t = self._t
        return (t.state == _CONFIRMED) & (t.missed == 0)

    def _by_iou(
        self, rows: np.ndarray, dets: np.ndarray, min_iou: float, frame: FrameInput, iou: np.ndarray | None,
        ref: np.ndarray | None = None,
    ) -> Matches:
        """IoU matching of tracks ``rows`` to detections ``dets``, at least ``min_iou``: against boxes ``ref``
        (one per row) when given, else the predictions (from ``iou``, every prediction against every detection,
        when given)."""
        t, per_class = self._t, self.options.per_class
        if ref is None and iou is not None:
            sim = iou[rows][:, dets]
            if per_class:
                sim[t.cls[rows][:, None] != frame.cls[dets][None, :]] = 0.0
            return similarity_assignment(sim, min_iou)
        return iou_association(
            self._boxes[rows] if ref is None else ref, frame.xyxy[dets], min_iou=min_iou,
            track_class=t.cls[rows] if per_class else None, det_class=frame.cls[dets] if per_class else None,
        )

    def _first_stage(
        self, rows: np.ndarray, dets: np.ndarray, boxes: np.ndarray, iou: np.ndarray | None, frame: FrameInput,
        score: np.ndarray,
    ) -> Matches:
        """Tracks ``rows`` to detections ``dets``: IoU (at least ``iou_threshold``) plus OC-SORT's direction
        term; the matching maximises the sum of the similarities (past a floor every allowed pair clears).
        Where no track and no detection has two candidates the direction term cannot change the matching and
        is not computed."""
        o, t = self.options, self._t
        if len(rows) == 0 or len(dets) == 0:
            return Matches(_NONE, _NONE, np.arange(len(rows)), np.arange(len(dets)))
        # every allowed pair is at least iou_threshold - inertia / 2: a floor just below keeps all of them
        floor = o.iou_threshold - 0.5 * o.inertia - 1e-9
        if iou is not None:
            sim = iou[rows][:, dets] if len(rows) < len(iou) or len(dets) < iou.shape[1] else iou
            valid = sim >= o.iou_threshold if o.iou_threshold > 0 else sim > 0
            if o.per_class:
                valid &= t.cls[rows][:, None] == frame.cls[dets][None, :]
            if valid.sum(axis=0).max() <= 1 and valid.sum(axis=1).max() <= 1:  # nobody competes
                i, j = valid.nonzero()
                return matches_from_pairs(i, j, len(rows), len(dets))
            if o.inertia > 0:
                centre = self._centre[dets]
                vdir, prev = t.vdir[rows], self._previous_centres()[rows]
                dx = centre[None, :, 0] - prev[:, None, 0]
                dy = centre[None, :, 1] - prev[:, None, 1]
                w = o.inertia * np.clip(score[dets], 0.0, 1.0)
                sim = sim + w * _direction_term(vdir[:, None, 0], vdir[:, None, 1], dx, dy)
            return linear_assignment(-sim, -floor, valid=valid)
        # large: candidate pairs block by block, the direction term on those pairs only
        i, j, sim = iou_candidates(boxes[rows], frame.xyxy[dets], o.iou_threshold)
        if o.per_class:
            keep = t.cls[rows[i]] == frame.cls[dets[j]]
            i, j, sim = i[keep], j[keep], sim[keep]
        if o.inertia > 0 and len(i):
            d = self._centre[dets[j]] - self._previous_centres()[rows[i]]
            v = t.vdir[rows[i]]
            w = o.inertia * np.clip(score[dets[j]], 0.0, 1.0)
            sim = sim + w * _direction_term(v[:, 0], v[:, 1], d[:, 0], d[:, 1])
        return pair_assignment(i, j, sim, len(rows), len(dets), floor)


def _rerun(kf: KalmanBoxFilter, x: np.ndarray, P: np.ndarray, boxes: np.ndarray, dt: float):
    """The filter from states ``x``, ``P``: predict ``dt`` on, update with ``boxes[k]``, for each k in turn.

    Where the motion model keeps its components independent (both built-in models) every measured component
    and its velocity form their own 2-state filter, run here on ``[N, 4]`` arrays: the same numbers as
    :class:`KalmanBoxFilter`'s matrix form, in a fraction of the numpy calls (ORU runs one step per missed frame).
    """
    model = kf.model
    if not model.independent or kf._moving_slice is None or len(boxes) == 0:
        for z in boxes:
            x, P = kf.predict(x, P, dt)
            x, P = kf.update(x, P, z)
        return x, P
    n, d = P.shape[:2]
    k = d - 4  # components with a velocity: the first k (``_moving_slice``)
    flat = P.reshape(n, d * d)
    a = flat[:, 0 : 4 * (d + 1) : d + 1].copy()  # variance of each measured component
    b = flat[:, 4 : 4 + k * (d + 1) : d + 1].copy()  # its covariance with its velocity
    c = flat[:, 4 * (d + 1) :: d + 1].copy()  # the velocity's variance
    x = x.copy()
    zs = model.to_measurement(boxes.reshape(-1, 4)).reshape(len(boxes), n, 4)
    # noise given as one row for every track (SORT's) does not depend on the state: work it out once
    q = model.process_variance(x, dt)
    r = model.measurement_variance(x)
    fixed_q, fixed_r = np.ndim(q) == 1, np.ndim(r) == 1
    for z in zs:
        model.before_predict(x, dt, None)
        if not fixed_q:
            q = model.process_variance(x, dt)
        x[:, :k] += dt * x[:, 4:]
        a[:, :k] += dt * (2.0 * b + dt * c)
        b += dt * c
        a += q[..., :4]
        c += q[..., 4:]
        s = a + (r if fixed_r else model.measurement_variance(x))
        gain_p = a / s
        gain_v = b / s[:, :k]
        y = z - x[:, :4]
        x[:, :4] += gain_p * y
        x[:, 4:] += gain_v * y[:, :k]
        c -= gain_v * b
        keep = 1.0 - gain_p
        a *= keep
        b *= keep[:, :k]
    P = np.zeros_like(P)
    flat = P.reshape(n, d * d)
    flat[:, 0 : 4 * (d + 1) : d + 1] = a
    flat[:, 4 : 4 + k * (d + 1) : d + 1] = b
    flat[:, 4 * d : 4 * d + k * (d + 1) : d + 1] = b
    flat[:, 4 * (d + 1) :: d + 1] = c
    return x, P


def _direction_term(vx: np.ndarray, vy: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """``1/2 - angle / pi`` between unit directions ``(vx, vy)`` and displacements ``(dx, dy)`` (broadcast):
    1/2 when they agree, -1/2 when opposite, 0 when either is zero."""
    cos = np.clip((vx * dx + vy * dy) / np.maximum(np.hypot(dx, dy), 1e-9), -1.0, 1.0)
    return 0.5 - np.arccos(cos) / np.pi
