"""Score thresholds fitted to the detector (ThresholdFit) and a track's shown class (class_vote).

A detector scoring 0.5 to 0.68 (as TensorFlow's SSD MobileNet scores pedestrians on a shaking camera) starts no
track with OC-SORT's and ByteTrack's defaults (a track starts at 0.7); with the thresholds fitted to its first
2 s of scores it does. A detector that scores high keeps the defaults bit for bit; values the user set are
never changed.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgecv.detection.detections import Detections
from edgecv.errors import ConfigError
from edgecv.tracking import make_tracker
from edgecv.tracking.thresholds import ThresholdCalibration, ThresholdFit

FPS = 10.0
FITTED = ("ocsort", "bytetrack")


def walkers(k: int, scores: np.ndarray, *, n: int = 3) -> Detections:
    """``n`` people walking right, 100 px apart, in frame ``k``; person i scores ``scores[(k + i) % len]``."""
    x = 10.0 + 4.0 * k + 100.0 * np.arange(n)
    boxes = np.stack([x, np.full(n, 20.0), x + 40.0, np.full(n, 120.0)], axis=1)
    return Detections(boxes, scores[(k + np.arange(n)) % len(scores)], np.zeros(n, np.int64))


LOW = np.linspace(0.5, 0.68, 7)  # every score below 0.7: the defaults start nothing
HIGH = np.linspace(0.8, 0.99, 7)


def run(name: str, scores: np.ndarray, *, frames: int = 60, options=None, calibration=None,
        detector_threshold: float | None = 0.5):
    """Track ``frames`` frames of walkers; (fit, frames each track id was reported in, output per frame)."""
    tracker = make_tracker(name, options, fps=FPS)
    fit = ThresholdFit(tracker, user_keys=set(options or ()), detector_threshold=detector_threshold,
                       calibration=calibration or ThresholdCalibration())
    seen: dict[int, list[int]] = {}
    outputs = []
    for k in range(frames):
        det = walkers(k, scores)
        if fit.pending:
            fit.observe(det.confidence, k / FPS)
        out = tracker.update(det)
        outputs.append(out)
        for tid in out.tracker_id.tolist():
            seen.setdefault(tid, []).append(k)
    return fit, seen, outputs


@pytest.mark.parametrize("name", FITTED)
def test_low_scores_start_tracks_once_fitted_and_never_with_the_defaults(name):
    fit, seen, _ = run(name, LOW, calibration=ThresholdCalibration(mode="tracker"))
    assert fit.state == "off" and seen == {}  # the old behaviour: 60 frames of three people, no track
    assert fit.to_dict()["sources"] == {"track_thresh": "tracker default", "new_track_thresh": "tracker default"}

    fit, seen, _ = run(name, LOW)
    d = fit.to_dict()
    assert d["state"] == "calibrated" and d["detector_threshold"] == 0.5
    # 2 s at 10 frames/s: 20 frames, 60 scores, each of the 7 scores 8 or 9 times
    assert d["calibration"]["frames"] == 20 and d["calibration"]["detections"] == 60
    window = np.concatenate([walkers(k, LOW).confidence for k in range(20)]).astype(np.float64)
    expected = {"track_thresh": np.quantile(window, 0.25), "new_track_thresh": np.quantile(window, 0.5)}
    assert d["values"] == pytest.approx(expected, abs=1e-4)
    assert d["values"]["new_track_thresh"] < 0.68 and d["start_score"] == d["values"]["new_track_thresh"]
    assert d["sources"]["track_thresh"] == "calibrated: q25 of 60 detection scores in the first 2.0 s"
    assert d["sources"]["new_track_thresh"] == "calibrated: q50 of 60 detection scores in the first 2.0 s"
    # each person gets one track, reported from soon after the calibration to the end
    assert len(seen) == 3
    assert all(frames[0] <= 25 and frames[-1] == 59 and len(frames) >= 30 for frames in seen.values())


@pytest.mark.parametrize("name", FITTED)
def test_high_scores_keep_the_defaults_bit_for_bit(name):
    _, _, fitted = run(name, HIGH)
    _, _, plain = run(name, HIGH, calibration=ThresholdCalibration(mode="tracker"))
    fit, *_ = run(name, HIGH, frames=25)
    assert fit.state == "calibrated" and fit.to_dict()["values"] == {"track_thresh": 0.6, "new_track_thresh": 0.7}
    assert fit.to_dict()["sources"]["new_track_thresh"].startswith("tracker default (q50 of the first 2.0 s's")
    for a, b in zip(fitted, plain):
        assert a.tracker_id.tolist() == b.tracker_id.tolist()
        np.testing.assert_array_equal(a.xyxy, b.xyxy)


@pytest.mark.parametrize("name", FITTED)
def test_user_values_win_and_the_rest_is_fitted(name):
    fit, seen, _ = run(name, LOW, options={"new_track_thresh": 0.7})
    d = fit.to_dict()
    assert d["values"]["new_track_thresh"] == 0.7 and d["sources"]["new_track_thresh"] == "user"
    assert d["values"]["track_thresh"] < 0.6 and d["sources"]["track_thresh"].startswith("calibrated")
    assert seen == {}  # the user asked for 0.7
    fit, *_ = run(name, LOW, options={"low_thresh": 0.58})  # the fitted track_thresh (0.53) may not go below it
    assert fit.to_dict()["values"] == {"track_thresh": 0.58, "new_track_thresh": 0.59}
    assert fit.tracker.options.low_thresh == 0.58
    fit, *_ = run(name, LOW, options={"track_thresh": 0.3, "new_track_thresh": 0.9})
    assert fit.state == "off" and fit.to_dict()["values"] == {"track_thresh": 0.3, "new_track_thresh": 0.9}
    assert set(fit.to_dict()["sources"].values()) == {"user"}


def test_fitted_thresholds_never_go_below_the_detectors_own():
    fit, *_ = run("ocsort", LOW, detector_threshold=0.58)  # the scores' quartiles: 0.53 and 0.59
    assert fit.to_dict()["values"] == {"track_thresh": 0.58, "new_track_thresh": 0.59}
    assert fit.tracker.options.low_thresh == 0.1


def test_scores_on_another_scale_are_fitted_on_the_normalized_score():
    fit, seen, _ = run("bytetrack", LOW * 100, options={"score_range": (0.0, 100.0)}, detector_threshold=50.0)
    assert fit.state == "calibrated" and fit.to_dict()["values"]["new_track_thresh"] < 0.68
    assert fit.tracker.start_score == pytest.approx(100 * fit.to_dict()["values"]["new_track_thresh"])
    assert len(seen) == 3


def test_too_few_detections_keep_the_defaults():
    tracker = make_tracker("ocsort", fps=FPS)
    fit = ThresholdFit(tracker, detector_threshold=0.5)
    for k in range(100):  # 10 s, one detection every 10 frames: 10 scores, fewer than 20
        assert fit.observe(np.array([0.55]) if k % 10 == 0 else np.zeros(0), k / FPS) is False
    assert fit.state == "too few detections" and not fit.pending
    assert fit.to_dict()["calibration"] == {"seconds": 10.0, "frames": 100, "detections": 10}
    assert fit.to_dict()["values"] == {"track_thresh": 0.6, "new_track_thresh": 0.7}


def test_start_goes_back_to_the_defaults_for_a_new_run():
    fit, *_ = run("ocsort", LOW)
    assert fit.tracker.options.new_track_thresh < 0.7
    fit.start()
    assert fit.pending and fit.tracker.options.new_track_thresh == 0.7 and fit.tracker.options.track_thresh == 0.6


def test_sort_has_no_score_thresholds_to_fit():
    fit = ThresholdFit(make_tracker("sort"), detector_threshold=0.5)
    assert fit.state == "none" and not fit.pending and fit.to_dict()["values"] == {}
    assert fit.to_dict()["start_score"] is None
    assert make_tracker("sort", {"min_confidence": 0.4}).start_score == 0.4


@pytest.mark.parametrize("changes, error", [
    ({"mode": "calibrated"}, "thresholds: expected one of auto, tracker, got 'calibrated'"),
    ({"window_s": -1}, "thresholds.window_s: expected seconds >= 0"),
    ({"window_s": 5.0, "max_window_s": 4.0}, "thresholds.max_window_s: expected seconds >= window_s (5.0)"),
    ({"min_detections": 0}, "thresholds.min_detections: expected an integer >= 1"),
    ({"track_quantile": 1.5}, "thresholds.track_quantile: expected a number in [0, 1]"),
    ({"track_quantile": 0.8}, "thresholds.track_quantile: expected at most new_track_quantile (0.5)"),
])
def test_bad_calibration_options_are_one_line_config_errors(changes, error):
    with pytest.raises(ConfigError, match=error.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        ThresholdCalibration(**changes)


# -- the class a track shows -------------------------------------------------------------------------------------
PERSON, PHONE, REMOTE = 0, 67, 75
# one person, walking, whom the detector calls a cell phone or a remote one frame in three
LABELS = [PERSON, PERSON, PHONE, PERSON, REMOTE, PERSON, PERSON, PHONE, PERSON, REMOTE, PERSON, PHONE] * 3
LABEL_SCORES = [0.9, 0.85, 0.6, 0.88, 0.55, 0.9, 0.86, 0.62, 0.9, 0.58, 0.87, 0.6] * 3


def one_person(k: int) -> Detections:
    return Detections(np.array([[10.0 + 3 * k, 20.0, 50.0 + 3 * k, 120.0]]), [LABEL_SCORES[k]], [LABELS[k]])


@pytest.mark.parametrize("name", ["ocsort", "bytetrack", "sort"])
def test_class_vote_keeps_the_shown_class_stable_on_alternating_labels(name):
    options = {"min_confidence": None} if name == "sort" else {"track_thresh": 0.5, "new_track_thresh": 0.5}
    shown = {}
    for vote in (False, True):
        tracker = make_tracker(name, {**options, "class_vote": vote}, fps=FPS)
        out = [tracker.update(one_person(k)) for k in range(len(LABELS))]
        reported = [(o.tracker_id.tolist(), o.class_id.tolist()) for o in out if len(o)]
        assert {tuple(ids) for ids, _ in reported} == {(1,)}  # one track all along, either way
        shown[vote] = [c[0] for _, c in reported]
        assert [t.class_id for t in tracker.tracks] == [shown[vote][-1]]
    flips = {v: sum(a != b for a, b in zip(s, s[1:])) for v, s in shown.items()}
    assert flips[False] >= 12 and set(shown[False]) == {PERSON, PHONE, REMOTE}
    assert flips[True] == 0 and set(shown[True]) == {PERSON}


def test_class_vote_is_score_weighted_and_a_class_seen_more_takes_over():
    tracker = make_tracker("ocsort", {"min_hits": 1}, fps=FPS)
    box = np.array([[10.0, 20.0, 50.0, 120.0]])
    shown = [tracker.update(Detections(box, [s], [c])).class_id.tolist()
             for c, s in [(1, 0.95), (2, 0.75), (2, 0.75)] + [(2, 0.75)] * 3]
    # 0.95 for class 1 against 0.75, 1.5, then 2.25 for class 2: class 2 leads from its third frame
    assert shown == [[1], [1], [2], [2], [2], [2]]


def test_class_vote_with_more_classes_than_slots_still_shows_the_leader():
    tracker = make_tracker("ocsort", {"min_hits": 1}, fps=FPS)
    box = np.array([[10.0, 20.0, 50.0, 120.0]])
    classes = [7] * 5 + [1, 2, 3, 4, 5, 6] + [7]
    shown = [tracker.update(Detections(box, [0.9], [c])).class_id.tolist()[0] for c in classes]
    assert shown == [7] * len(classes)  # six one-off classes rotate through the spare slots; 7 keeps its 4.5


def test_doctests():
    import doctest

    import edgecv.tracking.thresholds

    assert doctest.testmod(edgecv.tracking.thresholds).failed == 0
