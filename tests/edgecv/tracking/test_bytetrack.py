"""ByteTrack: the two score stages, track activation, the lost buffer in seconds, score scales, and its MOTA on
MOT15 TUD-Campus."""

from __future__ import annotations

import numpy as np
import pytest

from edgecv.tracking import ByteTracker, TrackState
from tests.edgecv.tracking.tracking_helpers import MOT15, clear_mot, read_detections, read_truth, run_tracker

S = TrackState
NONE = np.zeros((0, 5))

# Measured with the defaults (fps=25): MOTA 0.6435, FP 23, FN 99, 6 ID switches; TrackEval IDF1 0.713, HOTA 0.522.
TUD_CAMPUS_MOTA = 0.643


def box(k: int, score: float = 0.9, x: float = 10.0) -> np.ndarray:
    return np.array([[x + 2 * k, 10.0, x + 40 + 2 * k, 90.0, score]])


def states(tracker: ByteTracker) -> dict[int, TrackState]:
    out = {t.track_id: t.state for t in tracker.tracks}
    out.update({t.track_id: t.state for t in tracker.removed})
    return out


def test_activation_loss_recovery_and_removal():
    tracker = ByteTracker(fps=10)
    # tracks in the first frame are confirmed at once
    assert tracker.update(box(0)).tracker_id.tolist() == [1] and states(tracker) == {1: S.CONFIRMED}
    # a later newcomer is tentative (not reported) until its second detection
    two = lambda k: np.concatenate([box(k), box(k, x=300)])  # noqa: E731
    assert tracker.update(two(1)).tracker_id.tolist() == [1] and states(tracker) == {1: S.CONFIRMED, 2: S.TENTATIVE}
    assert tracker.update(two(2)).tracker_id.tolist() == [1, 2] and states(tracker) == {1: S.CONFIRMED, 2: S.CONFIRMED}
    # a tentative track missing once is removed at once
    three = lambda k: np.concatenate([two(k), box(k, x=600)])  # noqa: E731
    assert tracker.update(three(3)).tracker_id.tolist() == [1, 2]
    assert tracker.update(two(4)).tracker_id.tolist() == [1, 2] and states(tracker)[3] is S.REMOVED
    # a confirmed track missing is lost (not reported), then found again with its identity
    assert tracker.update(box(5)).tracker_id.tolist() == [1] and states(tracker)[2] is S.LOST
    assert tracker.update(two(6)).tracker_id.tolist() == [1, 2] and states(tracker)[2] is S.CONFIRMED
    # ... unless it stays lost longer than max_lost_s (1 s = 10 frames at 10 frames/s)
    for k in range(7, 17):
        tracker.update(box(k))
    assert states(tracker)[2] is S.LOST
    tracker.update(box(17))
    assert states(tracker)[2] is S.REMOVED and [t.track_id for t in tracker.tracks] == [1]
    assert tracker.removed[0].frames_since_update == 11


def test_low_score_detections_extend_tracks_but_never_start_or_recover_them():
    tracker = ByteTracker(fps=25)
    for k in range(3):
        tracker.update(box(k))
    out = tracker.update(box(3, score=0.3))  # second stage: the weak detection keeps the track going
    assert out.tracker_id.tolist() == [1] and out.confidence.tolist() == [pytest.approx(0.3)]
    assert states(tracker) == {1: S.CONFIRMED}
    fresh = ByteTracker(fps=25)
    for k in range(3):
        assert len(fresh.update(box(k, score=0.3))) == 0 and fresh.tracks == []
    # detections below low_thresh are ignored altogether
    assert len(tracker.update(box(4, score=0.05))) == 0 and states(tracker)[1] is S.LOST
    # a lost track is not recovered by a weak detection (only confirmed tracks take them) ...
    assert len(tracker.update(box(5, score=0.3))) == 0 and states(tracker)[1] is S.LOST
    # ... but by a confident one
    assert tracker.update(box(6)).tracker_id.tolist() == [1]


def test_new_tracks_need_new_track_thresh():
    tracker = ByteTracker(fps=25)
    assert len(tracker.update(box(0, score=0.65))) == 0 and tracker.tracks == []  # confident, but not enough to start
    assert len(tracker.update(box(1, score=0.75))) == 0 and states(tracker) == {1: S.TENTATIVE}
    assert tracker.update(box(2, score=0.65)).tracker_id.tolist() == [1]  # a started track takes 0.65


def test_score_range_puts_thresholds_on_the_detectors_scale():
    plain, scaled = ByteTracker(), ByteTracker({"score_range": [0, 100]})
    for k, score in enumerate([0.9, 0.9, 0.65, 0.3, 0.3, 0.9]):
        a = plain.update(box(k, score=score))
        b = scaled.update(box(k, score=100 * score))
        assert a.tracker_id.tolist() == b.tracker_id.tolist()
        np.testing.assert_allclose(100 * a.confidence, b.confidence, rtol=1e-6)  # reported scores stay raw


@pytest.mark.parametrize("fps", [5, 10, 30])
def test_lost_buffer_is_in_seconds(fps):
    tracker = ByteTracker({"max_lost_s": 0.6}, fps=fps)
    tracker.update(box(0))
    missed = 0
    while tracker.tracks:
        tracker.update(NONE)
        missed += 1
    assert (missed - 1) / fps == pytest.approx(0.6, abs=1e-9)


def test_tud_campus_mota(shared_data):
    seq = MOT15 / "TUD-Campus"
    truth = read_truth(seq / "gt.txt")
    hyp = run_tracker(ByteTracker(fps=25), read_detections(seq, len(truth)))
    m = clear_mot(truth, hyp)
    assert m["MOTA"] >= TUD_CAMPUS_MOTA - 0.01, m
    assert m["IDSW"] <= 8, m
