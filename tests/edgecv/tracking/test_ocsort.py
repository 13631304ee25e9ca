"""OC-SORT: its three observation-centric parts (re-update, momentum, recovery), the weak-detection stage, the
large-problem path, its options, and its figures on TUD-Campus. Also the association helpers it added
(candidate pairs, matching over pairs) and the filter's diagonal update (the same numbers, faster)."""

from __future__ import annotations

import numpy as np
import pytest

from edgecv.errors import ConfigError
from edgecv.tracking import association, make_tracker
from edgecv.tracking.association import iou_candidates, pair_assignment, similarity_assignment
from edgecv.tracking.kalman import KalmanBoxFilter, SizeMotion, SortMotion
from edgecv.tracking.ocsort import OcSortOptions, OcSortTracker, _direction_term, _rerun
from tests.edgecv.tracking.tracking_helpers import MOT15

NONE = np.zeros((0, 5))


def box(x: float, y: float = 20.0, w: float = 30.0, h: float = 60.0, score: float = 0.9) -> list[float]:
    return [x, y, x + w, y + h, score]


# -- options -------------------------------------------------------------------------------------------------


def test_defaults_and_bad_options():
    o = OcSortOptions()
    assert (o.iou_threshold, o.inertia, o.momentum_window_s, o.max_lost_s) == (0.3, 0.2, 0.1, 1.0)
    assert o.oru and not o.ocr and o.motion == "xysr"
    for bad, message in [
        ({"motion": "xyah"}, "ocsort.motion: expected one of xywh, xysr"),
        ({"inertia": -0.1}, "ocsort.inertia: expected a number >= 0"),
        ({"momentum_window_s": -1}, "ocsort.momentum_window_s: expected seconds >= 0"),
        ({"low_thresh": 0.9}, "ocsort.low_thresh: expected at most track_thresh"),
        ({"oru": 1}, "ocsort options.oru: expected true or false"),
        ({"min_hits": 0}, "ocsort.min_hits: expected an integer >= 1"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
            make_tracker("ocsort", bad)


# -- ORU -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("motion", ["xysr", "xywh"])
def test_reupdate_reruns_the_filter_along_the_virtual_trajectory(motion):
    """A track unseen for 5 frames and found again ends as the filter run from its last detection through one
    virtual box per missed frame (on the straight line to the new detection), then the new detection."""
    fps, dt = 25.0, 1 / 25
    tracker = make_tracker("ocsort", {"motion": motion}, fps=fps)
    kf = KalmanBoxFilter(SortMotion() if motion == "xysr" else SizeMotion())
    seen = [np.array([box(50 + 3 * k + 0.2 * k * k, 20 + k, 40, 90)])[:, :4] for k in range(20)]
    x = P = None
    for k in range(20):
        if 10 <= k < 15:
            tracker.update(NONE)
            continue
        tracker.update(np.concatenate([seen[k], [[0.9]]], axis=1))
        if k == 0:
            x, P = kf.initiate(seen[0])
        elif k < 10:
            x, P = kf.update(*kf.predict(x, P, dt), seen[k])
        else:
            if k == 15:  # re-found after frames 10..14: virtual boxes at 1/6 .. 5/6 of the way from frame 9's box
                for i in range(1, 6):
                    x, P = kf.update(*kf.predict(x, P, dt), seen[9] + (seen[15] - seen[9]) * i / 6)
            x, P = kf.update(*kf.predict(x, P, dt), seen[k])
        track = tracker.tracks[0]
        assert track.track_id == 1
        np.testing.assert_allclose(track.xyxy, kf.boxes(x)[0], atol=1e-6)
        np.testing.assert_allclose(track.velocity, x[0, 4:6], atol=1e-6)


def test_reupdate_keeps_the_uncertainty_of_a_track_seen_all_along():
    traces = {}
    for oru in (True, False):
        tracker = make_tracker("ocsort", {"oru": oru}, fps=25)
        for k in range(33):
            tracker.update(NONE if 25 <= k < 32 else np.array([box(50 + 4 * k, 20, 100, 200)]))
        traces[oru] = np.trace(tracker._t.P[0])
    assert traces[True] < 0.95 * traces[False], traces


@pytest.mark.parametrize("model", [SortMotion(), SizeMotion()], ids=lambda m: m.name)
def test_component_filter_equals_the_matrix_filter(model):
    kf = KalmanBoxFilter(model)
    rng = np.random.default_rng(0)
    b = rng.uniform(0, 100, (5, 2))
    b = np.concatenate([b, b + rng.uniform(10, 50, (5, 2))], axis=1)
    x, P = kf.initiate(b)
    for k in range(3):
        x, P = kf.update(*kf.predict(x, P, 0.04), b + k + rng.normal(0, 1, b.shape))
    zs = np.stack([b + 2 * k + rng.normal(0, 1, b.shape) for k in range(7)])
    x1, P1 = _rerun(kf, x, P, zs, 0.04)
    for z in zs:
        x, P = kf.update(*kf.predict(x, P, 0.04), z)
    np.testing.assert_allclose(x1, x, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(P1, P, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("model", [SortMotion(), SizeMotion()], ids=lambda m: m.name)
def test_the_filters_diagonal_update_gives_the_same_numbers(model):
    """The built-in models keep H P H' + R diagonal; dividing by its diagonal equals inverting it, bit for bit."""
    fast, general = KalmanBoxFilter(model), KalmanBoxFilter(model)
    general._diagonal = False
    rng = np.random.default_rng(1)
    b = rng.uniform(0, 100, (20, 2))
    b = np.concatenate([b, b + rng.uniform(10, 50, (20, 2))], axis=1)
    x, P = fast.initiate(b)
    x2, P2 = x.copy(), P.copy()
    for k in range(50):
        z = b + rng.normal(0, 2, b.shape) + k
        x, P = fast.update(*fast.predict(x, P, 0.04), z)
        x2, P2 = general.update(*general.predict(x2, P2, 0.04), z)
    assert np.array_equal(x, x2) and np.array_equal(P, P2)


# -- OCM -----------------------------------------------------------------------------------------------------


def test_direction_term():
    v = np.array([1.0, 0.0])
    d = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, 0.0], [3.0, 3.0]])
    got = _direction_term(v[0], v[1], d[:, 0], d[:, 1])
    np.testing.assert_allclose(got, [0.5, -0.5, 0.0, 0.0, 0.25], atol=1e-6)
    assert _direction_term(0.0, 0.0, 5.0, 1.0) == 0.0  # no direction yet


def test_momentum_gives_an_ambiguous_detection_to_the_track_moving_towards_it():
    """Two tracks meet at x = 100, A coming from the left and B from the right. Their predictions are put 2 px
    back the way each came, standing still: detections either side (at 94 and 106) overlap each a little more
    with the track coming from that side, so IoU alone turns both back; the direction term sends each track
    on the way it was going."""
    got = {}
    for inertia in (0.2, 0.0):
        tracker = make_tracker("ocsort", {"inertia": inertia}, fps=25)
        for k in range(6):
            tracker.update(np.array([box(100 - 2 * (5 - k), 20, 60, 120), box(100 + 2 * (5 - k), 20, 60, 120)]))
        t = tracker._t
        t.x[:, :4] = t.x[0, :4]
        t.x[:, 0] += [-2.0, 2.0]
        t.x[:, 4:] = 0.0
        out = tracker.update(np.array([box(94, 20, 60, 120), box(106, 20, 60, 120)]))
        got[inertia] = {int(i): "right" if b[0] > 100 else "left" for i, b in zip(out.tracker_id, out.xyxy)}
    assert got[0.2] == {1: "right", 2: "left"}
    assert got[0.0] == {1: "left", 2: "right"}


# -- OCR and the weak-detection stage -------------------------------------------------------------------------


def test_recovery_finds_a_track_that_stopped_while_unseen():
    """Walking right at 120 px/s, it stops as it goes out of sight for 0.3 s: the prediction walks on and no
    longer overlaps it, its last detection still does."""
    for ocr, ids in ((True, {1}), (False, {1, 2})):
        tracker = make_tracker("ocsort", {"ocr": ocr}, fps=25)
        seen = set()
        for k in range(60):
            t = k / 25
            out = tracker.update(NONE if 1.0 < t <= 1.3 else np.array([box(50 + 120 * min(t, 1.0))]))
            seen.update(out.tracker_id.tolist())
        assert seen == ids, (ocr, seen)


def test_weak_detections_extend_tracks_but_never_start_or_recover_them():
    tracker = make_tracker("ocsort", fps=25)
    for k in range(3):
        tracker.update(np.array([box(10 + k)]))
    out = tracker.update(np.array([box(13, score=0.3), box(200, score=0.3)]))  # weak: extends track 1 only
    assert out.tracker_id.tolist() == [1] and len(tracker.tracks) == 1
    tracker.update(NONE)  # lost
    out = tracker.update(np.array([box(15, score=0.3)]))
    assert len(out) == 0 and tracker.tracks[0].frames_since_update == 2  # a weak box does not recover it
    out = tracker.update(np.array([box(16, score=0.9)]))
    assert out.tracker_id.tolist() == [1]  # a confident one does, reported at once


def test_tentative_tracks_need_min_hits_and_die_on_a_miss():
    tracker = make_tracker("ocsort", {"min_hits": 3}, fps=25)
    tracker.update(NONE)
    assert len(tracker.update(np.array([box(10)]))) == 0
    assert len(tracker.update(np.array([box(11)]))) == 0
    assert tracker.update(np.array([box(12)])).tracker_id.tolist() == [1]
    tracker.update(np.array([box(13), box(300)]))
    tracker.update(np.array([box(14)]))  # the new one missed: gone
    assert [t.track_id for t in tracker.tracks] == [1]


# -- large problems --------------------------------------------------------------------------------------------


def test_large_problems_match_as_small_ones(monkeypatch):
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 600, (80, 2))
    frames = []
    for k in range(8):
        b = np.concatenate([xy + 3 * k, xy + 3 * k + 40, np.full((80, 1), 0.9)], axis=1)
        b[:, :4] += rng.normal(0, 1.5, (80, 4))
        frames.append(b[rng.random(80) > 0.1])
    dense = make_tracker("ocsort", fps=25)
    want = [dense.update(f) for f in frames]
    import edgecv.tracking.ocsort as ocsort

    monkeypatch.setattr(ocsort, "DENSE_LIMIT", 10)  # every frame takes the candidate-pair path
    sparse = make_tracker("ocsort", fps=25)
    for f, w in zip(frames, want):
        got = sparse.update(f)
        assert got.tracker_id.tolist() == w.tracker_id.tolist()
        np.testing.assert_allclose(got.xyxy, w.xyxy, atol=1e-4)


def test_candidate_pairs_and_matching_over_pairs_equal_the_dense_matching():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.uniform(0, 100, (12, 2))
        a = np.concatenate([a, a + rng.uniform(5, 30, (12, 2))], axis=1)
        b = a[rng.permutation(12)[:9]] + rng.normal(0, 4, (9, 4))
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
        i, j, v = iou_candidates(a, b, 0.2, block=17)  # blocks of one row
        dense = association.pairwise_iou(a, b)
        keep = dense >= 0.2
        assert sorted(zip(i.tolist(), j.tolist())) == sorted(zip(*np.nonzero(keep)))
        np.testing.assert_allclose(v, dense[i, j])
        m1, m2 = pair_assignment(i, j, v, 12, 9, 0.2), similarity_assignment(dense, 0.2)
        assert m1.rows.tolist() == m2.rows.tolist() and m1.cols.tolist() == m2.cols.tolist()
        assert m1.unmatched_cols.tolist() == m2.unmatched_cols.tolist()


# -- real data ----------------------------------------------------------------------------------------------------


def test_tud_campus_beats_the_reference_trackers(shared_data):
    """TrackEval's figures at 25 frames/s against those of the SORT reference (MOTA 62.7, HOTA 45.3, IDF1 60.7)
    and of supervision's ByteTrack with its defaults (59.6, 48.1, 66.6): benchmarks/track_mot15.py."""
    pytest.importorskip("trackeval")
    from edgecv.tracking.evaluate import evaluate_tracking
    from edgecv.tracking.mot import MotSequence, read_mot

    gt = read_mot(MOT15 / "TUD-Campus" / "gt.txt", kind="gt")
    det = read_mot(MOT15 / "TUD-Campus" / "det.txt", kind="det")
    tracker = OcSortTracker(fps=25)
    out = {f: tracker.update(det.frames[f]) for f in range(1, gt.num_frames + 1)}
    m = evaluate_tracking(gt, MotSequence.from_frames(out, seq_length=gt.num_frames))
    assert m.mota > 0.627 and m.hota > 0.481 and m.idf1 > 0.666, m
