"""SORT: its reporting rule and states, lifetimes in seconds, and the reference tracker's exact figures on MOT15
TUD-Campus (MOTA 62.7, FP 15, FN 113, 6 ID switches; HOTA 45.3 with TrackEval)."""

from __future__ import annotations

import numpy as np
import pytest

from edgecv.detection import Detections
from edgecv.tracking import SortTracker, TrackState
from tests.edgecv.tracking.tracking_helpers import (
    MOT15,
    clear_mot,
    read_detections,
    read_truth,
    run_tracker,
    trackeval_scores,
)

S = TrackState


def box(k: int) -> np.ndarray:
    return np.array([[10.0 + 2 * k, 10.0, 50.0 + 2 * k, 90.0, 0.9]])


NONE = np.zeros((0, 5))


def test_reporting_rule_and_states():
    tracker = SortTracker(fps=25)
    seen = []
    for k, det in enumerate([box(0), box(1), box(2), box(3), NONE, box(5), box(6), box(7), box(8), NONE, NONE]):
        out = tracker.update(det)
        state = tracker.tracks[0].state if tracker.tracks else (tracker.removed[0].state if tracker.removed else None)
        seen.append((out.tracker_id.tolist(), state))
    assert seen == [
        ([1], S.TENTATIVE),  # the first min_hits frames report every matched track
        ([1], S.TENTATIVE),
        ([1], S.TENTATIVE),
        ([1], S.CONFIRMED),  # three matches after the first detection
        ([], S.LOST),  # one missed frame (0.04 s) is survived ...
        ([], S.TENTATIVE),  # ... but the streak starts again
        ([], S.TENTATIVE),
        ([1], S.CONFIRMED),
        ([1], S.CONFIRMED),
        ([], S.LOST),
        ([], S.REMOVED),  # two missed frames: gone
    ]
    (gone,) = tracker.removed
    assert gone.track_id == 1 and gone.hits == 8 and gone.frames_since_update == 2
    assert gone.time_since_update == pytest.approx(0.08)


def test_a_new_track_after_the_first_frames_waits_for_min_hits():
    tracker = SortTracker(fps=25)
    for k in range(5):
        tracker.update(NONE)
    reported = [tracker.update(box(k)).tracker_id.tolist() for k in range(5)]
    assert reported == [[], [], [], [1], [1]]
    quick = SortTracker({"min_hits": 0}, fps=25)
    assert quick.update(NONE).tracker_id.tolist() == [] and quick.update(box(0)).tracker_id.tolist() == [1]


def test_lifetime_is_in_seconds():
    """max_lost_s = 0.04: one missed frame at 25 frames/s, two at 50, none at 20."""
    for fps, survives in ((25, 1), (50, 2), (20, 0)):
        tracker = SortTracker({"min_hits": 0}, fps=fps)
        tracker.update(box(0))
        missed = 0
        while tracker.tracks:
            tracker.update(NONE)
            missed += 1
        assert missed - 1 == survives, fps


def test_min_confidence_and_gate_options():
    tracker = SortTracker({"min_confidence": 0.5, "min_hits": 0})
    assert tracker.update(np.array([[0, 0, 10, 10, 0.4], [20, 0, 30, 10, 0.6]])).tracker_id.tolist() == [1]
    assert len(tracker.tracks) == 1
    assert SortTracker({"gate": "before"}).options.gate == "before"


@pytest.fixture(scope="module")
def tud_campus(shared_data):
    seq = MOT15 / "TUD-Campus"
    truth = read_truth(seq / "gt.txt")
    return truth, read_detections(seq, len(truth))


def test_reproduces_the_reference_sort_on_tud_campus(tud_campus):
    truth, dets = tud_campus
    assert len(truth) == 71 and sum(len(d) for d in dets) == 321
    # MOT15 public detections carry scores in [0.5, 1]; the reference tracks all of them, unfiltered
    assert min(float(d.confidence.min()) for d in dets if len(d)) >= 0.5
    hyp = run_tracker(SortTracker(fps=25), dets)
    m = clear_mot(truth, hyp)
    assert (m["FP"], m["FN"], m["IDSW"]) == (15, 113, 6)
    assert round(100 * m["MOTA"], 1) == 62.7
    assert round(100 * m["recall"], 1) == 68.5 and round(100 * m["precision"], 1) == 94.3
    # the same with the detections as a plain array, and at the stream's own frame rate given by timestamps
    arrays = [np.concatenate([d.xyxy, d.confidence[:, None]], axis=1).astype(np.float64) for d in dets]
    tracker = SortTracker(fps=1000)
    again = [tracker.update(a, timestamp=k / 25) for k, a in enumerate(arrays)]
    for (ids, boxes), out in zip(hyp, again):
        assert out.tracker_id.tolist() == ids.tolist()
        np.testing.assert_allclose(out.xyxy, boxes, atol=1e-3)


def test_clear_mot_helper_agrees_with_trackeval(tud_campus):
    pytest.importorskip("trackeval")
    truth, dets = tud_campus
    hyp = run_tracker(SortTracker(fps=25), dets)
    ours, theirs = clear_mot(truth, hyp), trackeval_scores(truth, hyp)
    for key in ("FP", "FN", "IDSW"):
        assert ours[key] == theirs[key]
    for key in ("MOTA", "recall", "precision"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-12)
    assert round(100 * theirs["MOTA"], 1) == 62.7 and round(100 * theirs["HOTA"], 1) == 45.3
    # and on another tracker's output, with more switches: drop every 4th frame's detections
    thin = [d if k % 4 else Detections.empty() for k, d in enumerate(dets)]
    hyp = run_tracker(SortTracker({"max_lost_s": 0.2}, fps=25), thin)
    ours, theirs = clear_mot(truth, hyp), trackeval_scores(truth, hyp)
    assert (ours["FP"], ours["FN"], ours["IDSW"]) == (theirs["FP"], theirs["FN"], theirs["IDSW"])
