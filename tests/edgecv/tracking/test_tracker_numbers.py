"""Numbers at the trackers' edges, for every registered tracker: boxes past MAX_COORD dropped with one warning
and no effect on the other tracks, Kalman overflow (a huge time step) dropping the track with one warning, scores
off the configured scale warned once, class ids that would wrap refused, a seeded fuzz of garbage input, and
every real MOT15 det file tracked without a single drop."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edgecv.detection import Detections
from edgecv.detection.boxes import MAX_COORD
from edgecv.errors import EdgeCVError, InputError
from edgecv.tracking import TRACKERS, KalmanBoxFilter, SizeMotion, SortMotion, make_tracker
from edgecv.tracking.mot import read_mot

NAMES = sorted(TRACKERS)
LOGGER = "edgecv.tracking"
GOOD = [10.0, 10.0, 50.0, 90.0, 0.9]
NAN = float("nan")


def moving(k: int, n: int = 3) -> np.ndarray:
    """Frame ``k`` of ``n`` well separated boxes moving right by 2 px a frame, as ``[n, 5]`` rows."""
    x = 100.0 * np.arange(n) + 2.0 * k
    return np.stack([x, np.full(n, 10.0), x + 40, np.full(n, 90.0), np.full(n, 0.9)], axis=1)


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith(LOGGER) and r.levelno >= logging.WARNING]


# one extra row beside a good one -> ("drop", reason counted in tracker.dropped) | ("ok", None) | (error, regex)
EDGE_ROWS = [
    ("corner at 1e200", [1e200, 1e200, 3e200, 3e200, 0.9], ("drop", "a corner past 1,000,000 px")),
    ("w = 1e38 (x2 = 100 + 1e38)", [100, 100, 100 + 1e38, 200, 0.9], ("drop", "a corner past 1,000,000 px")),
    ("x2 just past 1e6", [200, 10, MAX_COORD * (1 + 1e-9), 90, 0.9], ("drop", "a corner past 1,000,000 px")),
    ("x2 at 1e6 exactly", [200, 10, MAX_COORD, 90, 0.9], ("ok", None)),
    ("negative corner at -1e6", [-MAX_COORD, 10, 250, 90, 0.9], ("ok", None)),
    ("score 1e39 (inf as float32)", [200, 10, 250, 90, 1e39], ("drop", "NaN or inf")),
    ("score -inf", [200, 10, 250, 90, -np.inf], ("drop", "NaN or inf")),
    ("NaN corner", [NAN, 10, 250, 90, 0.9], ("drop", "NaN or inf")),
    ("inverted box", [250, 10, 200, 90, 0.9], ("drop", "zero or negative size")),
    ("zero height", [200, 10, 250, 10, 0.9], ("drop", "zero or negative size")),
    ("negative score, kept", [200, 10, 250, 90, -2.0], ("ok", None)),
    ("class 7", [200, 10, 250, 90, 0.9, 7], ("ok", None)),
    ("class -1: no class", [200, 10, 250, 90, 0.9, -1], ("ok", None)),
    ("class NaN: the row is dropped", [200, 10, 250, 90, 0.9, NAN], ("drop", "NaN or inf")),
    ("class 1e20", [200, 10, 250, 90, 0.9, 1e20],
     (InputError, r"tracker input: class ids in column 5: expected whole numbers from -1 to 2\*\*63-1, got 1e\+20 at index 1")),
    ("class 2**64", [200, 10, 250, 90, 0.9, 2.0**64], (InputError, r"got 1\.8446744073709552e\+19")),
    ("class -2", [200, 10, 250, 90, 0.9, -2], (InputError, r"got -2\.0 at index 1")),
    ("class 1.5", [200, 10, 250, 90, 0.9, 1.5], (InputError, r"got 1\.5 at index 1")),
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("row, expected", [c[1:] for c in EDGE_ROWS], ids=[c[0] for c in EDGE_ROWS])
def test_edge_rows(name, row, expected, caplog):
    width = len(row)
    good = (GOOD + [0])[:width]
    rows = np.array([good, row], np.float64)
    tracker = make_tracker(name)
    if isinstance(expected[0], type):
        with pytest.raises(expected[0], match=expected[1]) as info:
            tracker.update(rows)
        assert "\n" not in str(info.value)
        return
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        out = tracker.update(rows)
    warned = warnings_of(caplog)
    if expected[0] == "drop":
        assert tracker.dropped == {expected[1]: 1}
        assert len(warned) == 1 and f"1 with {expected[1]}" in warned[0], warned
    else:
        assert tracker.dropped == {} and not [w for w in warned if "dropped" in w]
    assert np.isfinite(out.xyxy).all() and (np.abs(out.xyxy) <= MAX_COORD).all()


@pytest.mark.parametrize(
    "value, message",
    [
        ([[0, 0, 1, 1, 0.5], [0, 0, 1]], r"tracker input: expected Detections or a real array .*got a ragged sequence"),
        ([[0, 0, 1, "a", 0.5]], r"tracker input: expected Detections or a real array .*got dtype <U"),
        (np.zeros((2, 7)), r"got dtype float64 shape \[2, 7\]"),
    ],
)
def test_malformed_arrays_are_one_line_input_errors(value, message):
    for name in NAMES:
        with pytest.raises(InputError, match=message) as info:
            make_tracker(name).update(value)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_huge_boxes_among_normal_ones_change_nothing_else(name, caplog):
    """1e200 and 1e38 boxes (and an inverted one) in most frames: dropped, ONE warning in all, and the normal
    tracks come out exactly as in a run without them (same ids, same boxes)."""
    clean, dirty = make_tracker(name, fps=25), make_tracker(name, fps=25)
    junk = np.array([[1e200, 1e200, 3e200, 3e200, 0.9], [100, 100, 100 + 1e38, 200, 0.95], [-1e200, 5, 20, 30, 0.8]])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for k in range(12):
            rows = moving(k)
            want = clean.update(rows)
            noisy = np.concatenate([junk[: k % 4], rows, junk[k % 4 :]]) if 1 <= k <= 9 else rows
            got = dirty.update(noisy)
            assert got.tracker_id.tolist() == want.tracker_id.tolist(), k
            np.testing.assert_array_equal(got.xyxy, want.xyxy)
            assert np.isfinite(got.xyxy).all()
    assert sorted(got.tracker_id.tolist()) == [1, 2, 3]  # the normal tracks kept their ids to the end
    warned = warnings_of(caplog)
    assert len(warned) == 1, warned  # once per tracker, not once per frame
    assert "dropped 3 of 6 detection(s) in frame 2" in warned[0] and "past 1,000,000 px" in warned[0]
    assert dirty.dropped == {"a corner past 1,000,000 px": 27}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("how", ["dt", "timestamp"])
def test_kalman_overflow_drops_the_track_and_warns_once(name, how, caplog):
    """A time step of 1e200 s overflows every track's covariance (dt**2 * P): the tracks are dropped (not
    kept with inf, not restarted under the same id), once warned; the objects then get new tracks."""
    tracker = make_tracker(name, fps=25)
    for k in range(4):
        tracker.update(moving(k), timestamp=k * 0.04 if how == "timestamp" else None)
    before = [t.track_id for t in tracker.tracks]
    assert before == [1, 2, 3]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for jump in (1e200, 2e200, 3e200):
            kw = {"dt": 1e200} if how == "dt" else {"timestamp": jump}
            out = tracker.update(moving(4), **kw)
            assert np.isfinite(out.xyxy).all()
            tracks = tracker.tracks
            assert all(np.isfinite(t.xyxy).all() and np.isfinite(t.velocity).all() for t in tracks)
            assert not set(before) & {t.track_id for t in tracks}  # the old ids are gone for good
    warned = [w for w in warnings_of(caplog) if "Kalman" in w]
    assert len(warned) == 1, warnings_of(caplog)
    assert "dropped track(s) 1, 2, 3 in frame 5" in warned[0] and "overflowed" in warned[0]
    assert tracker.dropped["tracks with a non-finite state"] == 9  # 3 tracks in each of the 3 jumps
    out = tracker.update(moving(5), dt=0.04)  # (after 3e200 s no timestamp is 0.04 s later: float64 has no such number)
    assert np.isfinite(out.xyxy).all() and set(t.track_id for t in tracker.tracks) == {10, 11, 12}


@pytest.mark.parametrize("model", [SortMotion(), SizeMotion()], ids=lambda m: m.name)
def test_filter_overflow_shows_in_finite_and_spares_other_rows(model):
    kf = KalmanBoxFilter(model)
    b = np.array([[10.0, 10.0, 50.0, 90.0], [1e200, 1e200, 3e200, 3e200]])
    with np.errstate(over="ignore", invalid="ignore"):
        x, P = kf.initiate(b)
        x, P = kf.predict(x, P, 0.04)
        x, P = kf.update(x, P, b + 1.0)
    assert kf.finite(x, P).tolist() == [True, False]
    ref_x, ref_P = kf.initiate(b[:1])
    ref_x, ref_P = kf.update(*kf.predict(ref_x, ref_P, 0.04), b[:1] + 1.0)
    np.testing.assert_array_equal(x[0], ref_x[0])  # rows are independent: the overflow touched nothing else
    np.testing.assert_array_equal(P[0], ref_P[0])


# score_range of the tracker (None: SORT, which has none), scores -> warned about the scale?
SCORES = [
    (None, [-3.0, 0.5, 4.0], False),
    ((0.0, 1.0), [0.2, 0.9, 1.0], False),
    ((0.0, 1.0), [-3.0, 0.5, 4.0], True),  # logits from a decoder without its sigmoid
    ((0.0, 1.0), [0.5, 0.9, 97.0], True),  # an older MOTChallenge detector's scale
    ((0.0, 100.0), [0.5, 0.9, 97.0], False),
]


@pytest.mark.parametrize("score_range, scores, warned", SCORES)
def test_scores_off_the_scale_are_kept_and_warned_once(score_range, scores, warned, caplog):
    names = ["sort"] if score_range is None else ["bytetrack", "ocsort"]
    for name in names:
        caplog.clear()
        tracker = make_tracker(name, None if score_range is None else {"score_range": list(score_range)})
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            for k in range(5):
                rows = moving(k)
                rows[:, 4] = scores
                tracker.update(rows)
        got = [w for w in warnings_of(caplog) if "score_range" in w]
        assert len(got) == int(warned), (name, got)
        if warned:
            lo, hi = min(scores), max(scores)
            assert f"scores from {lo:.4g} to {hi:.4g} fall outside score_range (0, 1)" in got[0]


# --- seeded fuzz ----------------------------------------------------------------------------------------------

SPECIALS = np.array([np.nan, np.inf, -np.inf, 1e200, -1e200, 1e38, 3.5e38, 1e6, -1e6, 0.0, -1.0, 1.5, 2.0**64])


def fuzz_input(rng: np.random.Generator):
    kind = rng.integers(10)
    n = int(rng.integers(0, 6))
    if kind <= 4:  # plausible boxes, some cells replaced by special values, any width 4..6
        xy = rng.uniform(0, 600, size=(n, 2))
        a = np.concatenate([xy, xy + rng.uniform(-5, 80, size=(n, 2)), rng.uniform(-1, 2, size=(n, 1)),
                            rng.integers(-1, 3, size=(n, 1))], axis=1)[:, : int(rng.integers(4, 7))]
        mask = rng.random(a.shape) < 0.15
        a[mask] = rng.choice(SPECIALS, size=int(mask.sum()))
        with np.errstate(over="ignore"):  # 1e200 as float32 is inf: one more kind of garbage
            return a.astype([np.float64, np.float32, np.float16][int(rng.integers(3))]) if kind < 4 else a
    if kind == 5:
        return [[1.0] * int(rng.integers(3, 7)) for _ in range(max(n, 2))]  # ragged (or, by luck, not)
    if kind == 6:
        return rng.integers(-(2**62), 2**62, size=(n, int(rng.integers(3, 8))))
    if kind == 7:
        good = rng.uniform(0, 500, size=(n, 4))
        good[:, 2:] = good[:, :2] + 20
        det = Detections(good, rng.uniform(0, 1, n), rng.integers(0, 3, n))
        if n and rng.random() < 0.5:
            det.xyxy[0, int(rng.integers(4))] = rng.choice([np.nan, np.inf, 3e38])  # arrays are writable
        return det
    if kind == 8:
        return np.array([["x"] * 5] * n)
    return {"boxes": [1, 2, 3, 4]}


@pytest.mark.parametrize("name", NAMES)
def test_fuzz_tracker_update_never_raises_anything_but_edgecv_errors(name, caplog):
    rng = np.random.default_rng(16)
    tracker = make_tracker(name, fps=25)
    outcomes = {"tracked": 0, "refused": 0}
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for case in range(300):
            value = fuzz_input(rng)
            step = {} if rng.random() < 0.9 else {"dt": float(rng.choice([1e-300, 1e300, 0.04, 1e5]))}
            try:
                out = tracker.update(value, **step)
            except EdgeCVError as exc:
                assert "\n" not in str(exc), (case, str(exc))
                outcomes["refused"] += 1
                continue
            except Exception as exc:  # noqa: BLE001 - the point of the test
                pytest.fail(f"case {case}: {type(exc).__name__}: {exc} from {value!r:.300}")
            outcomes["tracked"] += 1
            assert out.tracker_id is not None and np.isfinite(out.xyxy).all() and np.isfinite(out.confidence).all()
            assert (np.abs(out.xyxy) <= 10 * MAX_COORD).all(), (case, out.xyxy)  # nothing absurd from an overflow
            for t in tracker.tracks:
                assert np.isfinite(t.velocity).all(), (case, t)
    assert outcomes["tracked"] >= 150 and outcomes["refused"] >= 20, outcomes
    dropping = [w for w in warnings_of(caplog) if "dropped" in w and "detection(s)" in w]
    assert len(dropping) == 1  # many frames with drops, one warning
    assert sum(tracker.dropped.values()) > 100


# --- real data: nothing real is dropped -----------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_real_mot15_det_file_is_tracked_without_a_drop(shared_data, name, caplog):
    files = sorted((shared_data / "mot15").glob("*/det.txt"))
    assert len(files) == 11
    with caplog.at_level(logging.WARNING, logger="edgecv"):
        for path in files:
            seq = read_mot(path, kind="det")
            tracker = make_tracker(name, fps=25)
            for frame in seq.frames.values():
                out = tracker.update(frame)
                assert np.isfinite(out.xyxy).all()
            assert tracker.dropped == {}, (path, tracker.dropped)
    assert warnings_of(caplog) == [] and [r.getMessage() for r in caplog.records] == []
