"""ByteTrack (Zhang et al., 2022): associate the confident detections first, then let the weak ones extend tracks.

Per frame, after the Kalman prediction of every track:

1. detections scoring at least ``track_thresh`` are matched to the confirmed and lost tracks (cost
   ``1 - IoU * score``, at most ``match_thresh``); a lost track matched here is found again;
2. detections scoring more than ``low_thresh`` but less than ``track_thresh`` are matched to the confirmed
   tracks still unmatched (cost ``1 - IoU``, at most ``low_match_thresh``); confirmed tracks left over are LOST;
3. the confident detections left are matched to the tentative tracks (at most ``tentative_match_thresh``);
   a tentative track not matched is removed, one matched ``min_hits`` times in a row is confirmed;
4. confident detections left over that score at least ``new_track_thresh`` start tentative tracks (confirmed
   at once in the first frame);
5. lost tracks unmatched for more than ``max_lost_s`` seconds are removed, and a lost track that overlaps a
   confirmed one by IoU > 0.85 is dropped (the younger of the two goes).

Appearance (off by default): with ``appearance_weight`` w > 0 every detection needs an embedding in
``data["embedding"]`` ``[N, D]`` (see :class:`~edgecv.tracking.appearance.Embedder`), and each track keeps an
exponential moving average of its detections' embeddings (``appearance_ema``; updated by confident
detections only, as weak ones are often partly hidden). Then:

- stage 1's cost is ``(1 - w) * motion + w * appearance``, the motion cost as above and the appearance cost
  the cosine distance of the detection's embedding to the track's; a pair must pass the IoU gate
  (``match_thresh``) and look alike: cosine distance at most ``appearance_gate``, or the stricter
  ``lost_appearance_gate`` for a lost track (so that a newcomer where a lost track is predicted does not
  take its identity);
- after stage 1, a lost track still unmatched is re-identified with a confident detection left over that
  looks very alike (cosine distance at most ``reid_gate``), has about the track's size (the two boxes put on
  one centre overlap by IoU >= 0.5) and whose centre is within ``reid_radius`` times the larger side of the
  track's predicted box, however little the boxes overlap: an object found again after an occlusion, where
  its predicted box has drifted off. ``reid_gate = 0`` turns this off.

With ``appearance_weight = 0`` embeddings are ignored and the tracker is ByteTrack as above, bit for bit.

The confirmed tracks matched in the frame are reported. The filter is
:class:`~edgecv.tracking.kalman.SizeMotion` (``[cx, cy, w, h]`` and velocities, noise proportional to the box
size, per second), so the same settings hold at any frame rate.

Scores: thresholds apply to ``(confidence - score_range[0]) / (score_range[1] - score_range[0])``. The default
``(0, 1)`` suits detectors whose scores are probabilities (the MOT15 public Faster R-CNN detections here are
in [0.5, 1]); for a detector scoring on another scale (older MOTChallenge detections reach ~100) give its
range. Detections without real scores (all 1.0, or a ``[N, 4]`` array) are all confident. Scores outside
``score_range`` are kept as they are, with one warning per tracker (the thresholds then mean little).

Example:
    >>> import numpy as np
    >>> tracker = ByteTracker(fps=30)
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
from edgecv.tracking.appearance import (
    centre_distance,
    cosine_distance,
    frame_embeddings,
    join_matches,
    normalize_rows,
    shape_similarity,
)
from edgecv.tracking.association import (
    DENSE_LIMIT,
    Matches,
    pairwise_iou,
    iou_association,
    linear_assignment,
    similarity_assignment,
)
from edgecv.tracking.kalman import MotionModel, SizeMotion
from edgecv.tracking.sort import OUTPUT_BOXES
from edgecv.tracking.track import Tracker, TrackState, FrameInput

__all__ = ["ByteTrackOptions", "ByteTracker"]

_DUPLICATE_IOU = 0.85
_REID_SHAPE_IOU = 0.5  # a re-identified detection's box, centred on the track's, overlaps it at least this much
_CONFIRMED, _LOST, _TENTATIVE = int(TrackState.CONFIRMED), int(TrackState.LOST), int(TrackState.TENTATIVE)


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class ByteTrackOptions:
    """ByteTrack's settings (see the module docstring for where each applies).

    Thresholds on scores are on the normalized score (``score_range``); ``*_match_thresh`` are the largest
    matching costs (1 - IoU, times the score where ``fuse_score``). ``max_lost_s`` is how long a lost track
    waits to be found again (ByteTrack: 30 frames at 30 frames/s). ``min_hits`` counts the detections a
    tentative track needs, its first included. ``per_class``: match only within a class (the track's shown
    class). ``class_vote``: show each track's class with the highest sum of scores over its detections (False:
    its last detection's). The ``noise_*`` settings are the filter's, in box sizes (see
    :class:`~edgecv.tracking.kalman.SizeMotion`).

    Appearance (see the module docstring; off while ``appearance_weight`` is 0): ``appearance_weight`` is the
    share of the cosine distance in stage 1's cost, ``appearance_gate`` the largest cosine distance of a
    stage-1 match (``lost_appearance_gate`` for a lost track), ``reid_gate`` the largest of a
    re-identification of a lost track beyond the IoU gate (0: none), ``reid_radius``
    how far (in the track box's larger side) a re-identified detection's centre may be from the track's
    predicted one, ``appearance_ema`` the weight of a track's embedding against a new detection's.
    """

    track_thresh: float = 0.6
    low_thresh: float = 0.1
    new_track_thresh: float = 0.7
    match_thresh: float = 0.8
    low_match_thresh: float = 0.5
    tentative_match_thresh: float = 0.7
    fuse_score: bool = True
    max_lost_s: float = 1.0
    min_hits: int = 2
    score_range: tuple[float, float] = (0.0, 1.0)
    per_class: bool = False
    class_vote: bool = True
    output_boxes: str = "kalman"
    noise_position: float = 0.27
    noise_velocity: float = 1.03
    noise_measurement: float = 0.05
    appearance_weight: float = 0.0
    appearance_gate: float = 1.0
    lost_appearance_gate: float = 0.5
    reid_gate: float = 0.15
    reid_radius: float = 1.5
    appearance_ema: float = 0.9

    def __post_init__(self) -> None:
        for name in ("track_thresh", "low_thresh", "new_track_thresh"):
            value = getattr(self, name)
            check(_finite(value), f"bytetrack.{name}", "a number", value)
        check(self.low_thresh <= self.track_thresh, "bytetrack.low_thresh", f"at most track_thresh "
              f"({self.track_thresh})", self.low_thresh)
        for name in ("match_thresh", "low_match_thresh", "tentative_match_thresh"):
            value = getattr(self, name)
            check(_finite(value) and 0 <= value <= 1, f"bytetrack.{name}", "a cost in [0, 1]", value)
        check(isinstance(self.fuse_score, bool), "bytetrack.fuse_score", "true or false", self.fuse_score)
        check(_finite(self.max_lost_s) and self.max_lost_s >= 0, "bytetrack.max_lost_s", "seconds >= 0",
              self.max_lost_s)
        check(isinstance(self.min_hits, int) and not isinstance(self.min_hits, bool) and self.min_hits >= 1,
              "bytetrack.min_hits", "an integer >= 1", self.min_hits)
        lo_hi = self.score_range
        ok = isinstance(lo_hi, (tuple, list)) and len(lo_hi) == 2 and all(_finite(v) for v in lo_hi)
        check(ok and lo_hi[0] < lo_hi[1], "bytetrack.score_range", "(low, high) with low < high", lo_hi)
        object.__setattr__(self, "score_range", tuple(float(v) for v in lo_hi))
        check(isinstance(self.per_class, bool), "bytetrack.per_class", "true or false", self.per_class)
        check(isinstance(self.class_vote, bool), "bytetrack.class_vote", "true or false", self.class_vote)
        check(self.output_boxes in OUTPUT_BOXES, "bytetrack.output_boxes", f"one of {', '.join(OUTPUT_BOXES)}",
              self.output_boxes)
        for name in ("noise_position", "noise_velocity", "noise_measurement"):
            value = getattr(self, name)
            check(_finite(value) and value > 0, f"bytetrack.{name}", "a positive number", value)
        check(_finite(self.appearance_weight) and 0 <= self.appearance_weight <= 1, "bytetrack.appearance_weight",
              "a share in [0, 1] (0 is off)", self.appearance_weight)
        check(_finite(self.appearance_gate) and 0 < self.appearance_gate <= 2, "bytetrack.appearance_gate",
              "a cosine distance in (0, 2]", self.appearance_gate)
        check(_finite(self.lost_appearance_gate) and 0 < self.lost_appearance_gate <= 2,
              "bytetrack.lost_appearance_gate", "a cosine distance in (0, 2]", self.lost_appearance_gate)
        check(_finite(self.reid_gate) and 0 <= self.reid_gate <= 2, "bytetrack.reid_gate",
              "a cosine distance in [0, 2] (0 is off)", self.reid_gate)
        check(_finite(self.reid_radius) and self.reid_radius >= 0, "bytetrack.reid_radius", "box sizes >= 0",
              self.reid_radius)
        check(_finite(self.appearance_ema) and 0 <= self.appearance_ema < 1, "bytetrack.appearance_ema",
              "a weight in [0, 1)", self.appearance_ema)


class ByteTracker(Tracker):
    """ByteTrack over :class:`~edgecv.detection.Detections` (see the module docstring)."""

    name = "bytetrack"
    Options = ByteTrackOptions
    options: ByteTrackOptions

    def _motion(self) -> MotionModel:
        o = self.options
        return SizeMotion(position=o.noise_position, velocity=o.noise_velocity, measurement=o.noise_measurement)

    @property
    def start_score(self) -> float | None:
        lo, hi = self.options.score_range
        return lo + self.options.new_track_thresh * (hi - lo)

    def reset(self) -> None:
        super().reset()
        self._emb: dict[int, np.ndarray] = {}  # track id -> its embedding (unit length), with appearance on

    def _step(self, frame: FrameInput, dt: float) -> np.ndarray:
        o = self.options
        appearance = o.appearance_weight > 0
        if appearance:
            dim = len(next(iter(self._emb.values()))) if self._emb else None
            emb = frame_embeddings(frame.data, frame.index, dim, "bytetrack")
        lo, hi = o.score_range
        self._check_score_range(frame.conf, o.score_range)
        score = (frame.conf - lo) / (hi - lo)
        high = (score >= o.track_thresh).nonzero()[0]
        low = ((score > o.low_thresh) & (score < o.track_thresh)).nonzero()[0]
        fused = np.minimum(np.maximum(score, 0.0), 1.0) if o.fuse_score else None

        boxes = self._predict(dt, frozen=self._t.state == _LOST)
        t = self._t
        state = t.state
        per_class = o.per_class

        # One IoU matrix for all three stages, unless it would be large (then each stage works in blocks).
        dense = len(t) * len(frame.xyxy) <= DENSE_LIMIT
        iou = pairwise_iou(boxes, frame.xyxy) if dense and len(t) and len(frame.xyxy) else None

        def match(rows: np.ndarray, dets: np.ndarray, max_cost: float, fuse: bool) -> Matches:
            if len(rows) == 0 or len(dets) == 0:
                return Matches(rows[:0], dets[:0], np.arange(len(rows)), np.arange(len(dets)))
            if iou is not None:
                sim = iou[rows][:, dets]
                if fuse and fused is not None:
                    sim *= fused[dets]
                if per_class:
                    sim[t.cls[rows][:, None] != frame.cls[dets][None, :]] = 0.0
                return similarity_assignment(sim, 1.0 - max_cost)
            return iou_association(
                boxes[rows], frame.xyxy[dets], min_iou=1.0 - max_cost,
                det_score=fused[dets] if fuse and fused is not None else None,
                track_class=t.cls[rows] if per_class else None, det_class=frame.cls[dets] if per_class else None,
            )

        # 1. confident detections against confirmed and lost tracks
        pool = ((state == _CONFIRMED) | (state == _LOST)).nonzero()[0]
        if appearance and len(pool) and len(high):
            track_emb = np.stack([self._emb[i] for i in t.id[pool].tolist()])
            m1 = self._appearance_match(boxes[pool], track_emb, t.cls[pool], state[pool] == _LOST, frame, high, emb,
                                        fused)
            lost = (state[pool[m1.unmatched_rows]] == _LOST).nonzero()[0]
            if o.reid_gate > 0 and len(lost) and len(m1.unmatched_cols):
                m1 = join_matches(m1, self._reidentify(boxes[pool], track_emb, t.cls[pool], frame, high, emb,
                                                       m1.unmatched_rows, lost, m1.unmatched_cols))
        else:
            m1 = match(pool, high, o.match_thresh, o.fuse_score)
        # 2. weak detections against the confirmed tracks left
        rest = pool[m1.unmatched_rows]
        rest = rest[state[rest] == _CONFIRMED]
        m2 = match(rest, low, o.low_match_thresh, False)
        # 3. confident detections left against tentative tracks
        tentative = (state == _TENTATIVE).nonzero()[0]
        left = high[m1.unmatched_cols]
        m3 = match(tentative, left, o.tentative_match_thresh, o.fuse_score)

        rows = np.concatenate([pool[m1.rows], rest[m2.rows], tentative[m3.rows]])
        dets = np.concatenate([high[m1.cols], low[m2.cols], left[m3.cols]])
        self._correct(rows, frame, dets)
        if appearance:  # confident detections update the tracks' looks; weak ones (stage 2) do not
            a = o.appearance_ema
            confident = np.concatenate([pool[m1.rows], tentative[m3.rows]])
            looks = np.concatenate([high[m1.cols], left[m3.cols]])
            if len(confident):
                ids = t.id[confident].tolist()
                mixed = normalize_rows(a * np.stack([self._emb[i] for i in ids]) + (1 - a) * emb[looks])
                self._emb.update(zip(ids, mixed))
        state[rest[m2.unmatched_rows]] = _LOST
        state[rows] = np.where(t.hits[rows] >= o.min_hits, _CONFIRMED, state[rows])
        state[pool[m1.rows]] = _CONFIRMED  # lost tracks found again
        gone = np.zeros(len(t), bool)
        gone[tentative[m3.unmatched_rows]] = True
        gone |= (state == _LOST) & self._expired(o.max_lost_s)
        gone |= self._duplicates(per_class)
        if gone.any():
            self._remove(gone)

        # 4. new tracks
        new = left[m3.unmatched_cols]
        new = new[score[new] >= o.new_track_thresh]
        first = self.frame_index == 1 or o.min_hits <= 1
        self._spawn(frame, new, TrackState.CONFIRMED if first else TrackState.TENTATIVE)
        t = self._t
        if appearance:
            if len(new):
                self._emb.update(zip(t.id[len(t) - len(new):].tolist(), emb[new]))
            if len(self._emb) > len(t):
                live = set(t.id.tolist())
                self._emb = {i: e for i, e in self._emb.items() if i in live}
        return (t.state == _CONFIRMED) & (t.missed == 0)

    def _appearance_match(self, boxes: np.ndarray, track_emb: np.ndarray, track_cls: np.ndarray, lost: np.ndarray,
                          frame: FrameInput, dets: np.ndarray, emb: np.ndarray, fused: np.ndarray | None) -> Matches:
        """Stage 1 with appearance: blended cost, IoU and appearance gates (dense, whatever the sizes)."""
        o = self.options
        w = o.appearance_weight
        sim = pairwise_iou(boxes, frame.xyxy[dets])
        if o.fuse_score and fused is not None:
            sim *= fused[dets]
        motion = 1.0 - sim
        looks = cosine_distance(track_emb, emb[dets], unit=True)
        gate = np.where(lost, o.lost_appearance_gate, o.appearance_gate)
        valid = (motion <= o.match_thresh) & (sim > 0) & (looks <= gate[:, None])
        if o.per_class:
            valid &= track_cls[:, None] == frame.cls[dets][None, :]
        cost = (1 - w) * motion + w * looks
        return linear_assignment(cost, (1 - w) * o.match_thresh + w * float(gate.max()), valid=valid)

    def _reidentify(self, boxes: np.ndarray, track_emb: np.ndarray, track_cls: np.ndarray, frame: FrameInput,
                    dets: np.ndarray, emb: np.ndarray, free_rows: np.ndarray, lost: np.ndarray,
                    free_cols: np.ndarray) -> Matches:
        """Lost tracks (``free_rows[lost]``) against the confident detections left (``dets[free_cols]``) by
        appearance, within ``reid_radius``: a Matches over ``free_rows`` and ``free_cols``."""
        o = self.options
        r, c = free_rows[lost], dets[free_cols]
        looks = cosine_distance(track_emb[r], emb[c], unit=True)
        valid = centre_distance(boxes[r], frame.xyxy[c]) <= o.reid_radius
        valid &= shape_similarity(boxes[r], frame.xyxy[c]) >= _REID_SHAPE_IOU
        if o.per_class:
            valid &= track_cls[r][:, None] == frame.cls[c][None, :]
        m = linear_assignment(looks, o.reid_gate, valid=valid)
        return Matches(lost[m.rows], m.cols, np.zeros(0, np.int64), np.zeros(0, np.int64))

    def _duplicates(self, per_class: bool) -> np.ndarray:
        """Lost tracks overlapping a confirmed one by IoU > 0.85: mark the younger of each pair."""
        t = self._t
        out = np.zeros(len(t), bool)
        lost = (t.state == _LOST).nonzero()[0]
        if len(lost) == 0:
            return out
        live = ((t.state == _CONFIRMED) & (t.missed == 0)).nonzero()[0]
        if len(live) == 0:
            return out
        xyxy = self.kf.boxes(t.x)
        iou = pairwise_iou(xyxy[live], xyxy[lost])
        if per_class:
            iou[t.cls[live][:, None] != t.cls[lost][None, :]] = 0.0
        i, j = np.nonzero(iou > _DUPLICATE_IOU)
        if len(i) == 0:
            return out
        span = self.frame_index - t.missed - t.born  # frames from the first to the latest match
        a, b = live[i], lost[j]
        older_live = span[a] > span[b]
        out[b[older_live]] = True
        out[a[~older_live]] = True
        return out
