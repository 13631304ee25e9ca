"""The tracker contract, for every registered tracker: options and registry errors, a new output per frame with
the input untouched, stable ids, reset, time steps, per-class matching, and bad or unusual input."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import numpy as np
import pytest

from edgecv.config import to_plain
from edgecv.detection import Detections
from edgecv.errors import ConfigError, InputError
from edgecv.tracking import (
    TRACKERS,
    ByteTrackOptions,
    ByteTracker,
    SortOptions,
    SortTracker,
    Track,
    TrackState,
    make_tracker,
    read_tracker_config,
    tracker_class,
    tracker_names,
    tracker_options,
)
from edgecv.tracking.ocsort import OcSortOptions, OcSortTracker

NAMES = sorted(TRACKERS)


def moving(k: int, n: int = 3, step: float = 2.0) -> Detections:
    """Frame ``k`` of ``n`` well separated boxes, each moving right by ``step`` px per frame."""
    x = 100.0 * np.arange(n) + step * k
    xyxy = np.stack([x, np.full(n, 10.0), x + 40, np.full(n, 90.0)], axis=1)
    return Detections(xyxy, np.full(n, 0.9), np.zeros(n, np.int64))


# -- registry and options ------------------------------------------------------------------------------------


def test_registry_names_and_classes():
    assert tracker_names() == ["bytetrack", "ocsort", "sort"]
    assert TRACKERS["sort"] is SortTracker and TRACKERS["bytetrack"] is ByteTracker
    assert SortTracker.Options is SortOptions and ByteTracker.Options is ByteTrackOptions
    assert TRACKERS["ocsort"] is OcSortTracker and OcSortTracker.Options is OcSortOptions


@pytest.mark.parametrize("name", NAMES)
def test_make_tracker_from_none_dict_and_dataclass(name):
    cls = TRACKERS[name]
    default = make_tracker(name)
    assert isinstance(default, cls) and default.options == cls.Options() and default.fps == 30.0
    from_dict = make_tracker(name, {"max_lost_s": 2, "per_class": True}, fps=12.5)
    assert from_dict.options.max_lost_s == 2.0 and from_dict.options.per_class and from_dict.fps == 12.5
    assert make_tracker(name, from_dict.options).options == from_dict.options
    # options survive a trip through plain data (YAML/JSON)
    assert make_tracker(name, to_plain(from_dict.options)).options == from_dict.options
    assert name in repr(default).lower() or cls.__name__ in repr(default)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: make_tracker("deepsort"), "tracker: unknown name 'deepsort'; valid names: bytetrack, ocsort, sort"),
        (lambda: make_tracker("sort", {"max_age": 1}), "sort options: unknown key(s) max_age; valid keys: max_lost_s"),
        (lambda: make_tracker("sort", {"iou_threshold": "high"}), "sort options.iou_threshold: expected a number"),
        (lambda: make_tracker("sort", {"iou_threshold": 1.5}), "sort.iou_threshold: expected a number in [0, 1]"),
        (lambda: make_tracker("sort", {"min_hits": -1}), "sort.min_hits: expected an integer >= 0"),
        (lambda: make_tracker("sort", {"gate": "middle"}), "sort.gate: expected one of after, before"),
        (lambda: make_tracker("bytetrack", {"low_thresh": 0.9}), "bytetrack.low_thresh: expected at most track_thresh"),
        (lambda: make_tracker("bytetrack", {"score_range": [1, 0]}), "bytetrack.score_range: expected (low, high)"),
        (lambda: make_tracker("bytetrack", {"output_boxes": "raw"}), "bytetrack.output_boxes: expected one of kalman"),
        (lambda: make_tracker("bytetrack", {"max_lost_s": -1}), "bytetrack.max_lost_s: expected seconds >= 0"),
        (lambda: make_tracker("bytetrack", SortOptions()), "bytetrack options: expected a ByteTrackOptions or a"),
        (lambda: make_tracker("sort", [1, 2]), "sort options: expected a SortOptions or a mapping, got list"),
        (lambda: make_tracker("sort", fps=0), "fps: expected a positive number of frames per second, got 0"),
        (lambda: make_tracker("sort", fps=float("nan")), "fps: expected a positive number"),
    ],
)
def test_bad_names_options_and_fps_are_one_line_config_errors(call, message):
    with pytest.raises(ConfigError) as err:
        call()
    text = str(err.value)
    assert message in text and "\n" not in text


TRACKER_CONFIGS = [
    # (case, tracker, --tracker-config text or None for no file, expected error or None)
    ("good", "sort", "max_lost_s: 0.2\nmin_hits: 1\n", None),
    ("empty mapping", "ocsort", "{}\n", None),
    ("unknown tracker", "deepsort", "max_lost_s: 1\n", "tracker: unknown name 'deepsort'; valid names: bytetrack, ocsort, sort"),
    ("unknown key", "sort", "max_lost: 3\n", "--tracker-config c.yaml: sort options: unknown key(s) max_lost; valid keys: max_lost_s"),
    ("out of range", "bytetrack", "match_thresh: 2\n", "--tracker-config c.yaml: bytetrack.match_thresh: expected a cost"),
    ("wrong type", "sort", "min_hits: many\n", "--tracker-config c.yaml: sort options.min_hits: expected an integer"),
    ("a list", "sort", "- 1\n", "--tracker-config c.yaml: expected a mapping of tracker options, got list"),
    ("empty file", "sort", "", "--tracker-config c.yaml: expected a mapping of tracker options, got NoneType"),
    ("bad YAML", "sort", "a: [1\n", "--tracker-config c.yaml: cannot read it (ParserError)"),
    ("missing", "sort", None, "--tracker-config c.yaml: cannot read it (not found)"),
]


@pytest.mark.parametrize("case, name, text, error", TRACKER_CONFIGS, ids=[c[0] for c in TRACKER_CONFIGS])
def test_read_tracker_config_table(tmp_path, monkeypatch, case, name, text, error):
    """The one check of a --tracker-config file that edgecv track and edgecv track-eval both use."""
    monkeypatch.chdir(tmp_path)
    if text is not None:
        (tmp_path / "c.yaml").write_text(text)
    if error is None:
        data = read_tracker_config("c.yaml", tracker=name, what="--tracker-config")
        assert make_tracker(name, data).options == tracker_options(name, data)
        return
    with pytest.raises(ConfigError) as err:
        read_tracker_config("c.yaml", tracker=name, what="--tracker-config")
    assert str(err.value).startswith(error) and "\n" not in str(err.value)


def test_tracker_class_names_the_option_that_gave_the_name():
    assert tracker_class("sort") is SortTracker
    with pytest.raises(ConfigError, match=r"^--tracker: unknown name 'nope'; valid names: bytetrack, ocsort, sort$"):
        tracker_class("nope", where="--tracker")


# -- the update contract -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_update_returns_a_new_detections_and_never_changes_the_input(name):
    tracker = make_tracker(name, fps=25)
    for k in range(6):
        det = moving(k)
        det = Detections(det.xyxy, det.confidence, det.class_id, data={"keypoints": np.ones((3, 2, 2)) * k})
        arrays = [det.xyxy, det.confidence, det.class_id, det.data["keypoints"]]
        before = [a.copy() for a in arrays]
        for a in arrays:
            a.flags.writeable = False  # any write into the input would raise
        out = tracker.update(det)
        assert out is not det and det.tracker_id is None
        for a, b in zip(arrays, before):
            assert np.array_equal(a, b)
        assert out.tracker_id is not None and out.tracker_id.dtype == np.int64
        assert not any(np.shares_memory(o, a) for o in (out.xyxy, out.confidence, out.class_id) for a in arrays)
    assert out.tracker_id.tolist() == [1, 2, 3]
    assert np.array_equal(out.data["keypoints"], np.full((3, 2, 2), 5.0))  # the matched rows' extras ride along
    np.testing.assert_allclose(out.xyxy, moving(5).xyxy, atol=0.5)
    np.testing.assert_allclose(out.confidence, 0.9)


@pytest.mark.parametrize("name", NAMES)
def test_ids_stay_with_their_objects_in_any_input_order_and_reset_starts_over(name):
    tracker = make_tracker(name, fps=25)
    rng = np.random.default_rng(0)
    first = rng.permutation(4)
    want = {int(obj): i + 1 for i, obj in enumerate(first)}  # ids are given in input order
    for k in range(10):
        out = tracker.update(moving(k, n=4)[first if k == 0 else rng.permutation(4)])
        assert out.tracker_id.tolist() == sorted(out.tracker_id.tolist())  # output rows in id order
        got = dict(zip(np.round(out.xyxy[:, 0] / 100).astype(int).tolist(), out.tracker_id.tolist()))
        assert got == want  # object -> id, the same in every frame
    assert [t.track_id for t in tracker.tracks] == [1, 2, 3, 4]
    assert all(isinstance(t, Track) and t.state is TrackState.CONFIRMED for t in tracker.tracks)
    vx = [t.velocity[0] for t in tracker.tracks]
    np.testing.assert_allclose(vx, 2.0 * 25, rtol=0.1)  # pixels per second
    tracker.reset()
    assert tracker.tracks == [] and tracker.frame_index == 0
    assert tracker.update(moving(0, n=2)).tracker_id.tolist() == [1, 2]


@pytest.mark.parametrize("name", NAMES)
def test_end_tracks_removes_every_track_but_never_reuses_an_id(name):
    tracker = make_tracker(name, fps=25)
    for k in range(5):
        tracker.update(moving(k, n=3))
    ended = tracker.end_tracks()
    assert sorted(t.track_id for t in ended) == [1, 2, 3] and all(t.state is TrackState.REMOVED for t in ended)
    assert tracker.tracks == [] and tracker.removed == []
    # the same objects, in the same places: new tracks, with new ids
    ids: list[int] = []
    for k in range(5, 10):
        ids = tracker.update(moving(k, n=3)).tracker_id.tolist()
    assert ids == [4, 5, 6]


@pytest.mark.parametrize("name", NAMES)
def test_output_boxes_detection_returns_the_matched_input_boxes(name):
    tracker = make_tracker(name, {"output_boxes": "detection"})
    for k in range(5):
        det = moving(k)
        out = tracker.update(det)
    assert np.array_equal(out.xyxy, det.xyxy)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("per_class, class_vote, same, classes", [
    (False, False, True, {1: 1}),  # one track, showing its last detection's class
    (False, True, True, {1: 0}),  # one track, showing the class it was seen as four times out of five
    (True, True, False, {1: 0, 2: 1}),  # a new track for the new class
])
def test_per_class_and_class_vote(name, per_class, class_vote, same, classes):
    def frame(cls: int) -> Detections:
        return Detections(np.array([[10.0, 10.0, 50.0, 90.0]]), [0.9], [cls])

    tracker = make_tracker(name, {"per_class": per_class, "class_vote": class_vote})
    for _ in range(4):
        first = tracker.update(frame(0))
    second = tracker.update(frame(1))
    shown = {t.track_id: t.class_id for t in tracker.tracks}
    assert shown == classes
    if same:
        assert second.tracker_id.tolist() == first.tracker_id.tolist() == [1]
        assert second.class_id.tolist() == [classes[1]]


@pytest.mark.parametrize("name", NAMES)
def test_time_steps_from_fps_timestamps_or_dt(name):
    a, b, c = make_tracker(name, fps=10), make_tracker(name, fps=99), make_tracker(name, fps=99)
    for k in range(6):
        det = moving(k)
        oa = a.update(det)
        ob = b.update(det, timestamp=100.0 + k / 10)
        oc = c.update(det, dt=0.1)
    np.testing.assert_allclose(ob.xyxy, oa.xyxy, atol=1e-4)
    np.testing.assert_allclose(oc.xyxy, oa.xyxy, atol=1e-4)
    np.testing.assert_allclose(a.tracks[0].velocity[0], 20.0, rtol=0.1)  # 2 px per 0.1 s
    with pytest.raises(InputError, match="expected timestamps to increase, got 100.5 after 100.5"):
        b.update(moving(6), timestamp=100.5)
    with pytest.raises(InputError, match="timestamp or dt, not both"):
        b.update(moving(6), timestamp=101, dt=0.1)
    with pytest.raises(InputError, match="dt > 0"):
        b.update(moving(6), dt=0)
    with pytest.raises(InputError, match="finite number"):
        b.update(moving(6), timestamp=float("nan"))


# -- bad and unusual input -----------------------------------------------------------------------------------

GOOD = [10.0, 10.0, 50.0, 90.0, 0.9]
NAN = float("nan")
INF = float("inf")

# (input, what happens: "ok" | "warn" (rows dropped with a logged warning) | an exception, rows tracked)
BAD_INPUT = [
    ("empty Detections", Detections.empty(), "ok", 0),
    ("empty array", np.zeros((0, 5)), "ok", 0),
    ("empty list", [], "ok", 0),
    ("boxes only [N, 4]: all confident", np.array([GOOD[:4]]), "ok", 1),
    ("box, score, class [N, 6]", np.array([GOOD + [3]]), "ok", 1),
    ("NaN coordinate", np.array([GOOD, [NAN, 10, 50, 90, 0.9]]), "warn", 1),
    ("inf coordinate", np.array([GOOD, [10, 10, INF, 90, 0.9]]), "warn", 1),
    ("NaN score", np.array([GOOD, [200, 10, 250, 90, NAN]]), "warn", 1),
    ("zero width", np.array([GOOD, [200, 10, 200, 90, 0.9]]), "warn", 1),
    ("negative height", np.array([GOOD, [200, 90, 250, 10, 0.9]]), "warn", 1),
    ("only bad rows", np.array([[NAN, NAN, NAN, NAN, NAN]]), "warn", 0),
    ("NaN written into a Detections", "mutated", "warn", 1),
    ("fractional class", np.array([GOOD + [1.5]]), InputError, 0),
    ("wrong width [N, 3]", np.zeros((2, 3)), InputError, 0),
    ("1-D array", np.zeros(5), InputError, 0),
    ("strings", np.array([["a", "b", "c", "d"]]), InputError, 0),
    ("a dict", {"xyxy": GOOD}, InputError, 0),
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_dropped_with_a_warning_or_refused(name, case, caplog):
    _, value, expect, tracked = case
    if isinstance(value, str):  # Detections are checked on construction, but their arrays stay writable
        value = Detections(np.array([GOOD[:4], [200, 10, 250, 90]]), [0.9, 0.9], [0, 0])
        value.xyxy[1, 0] = np.nan
    tracker = make_tracker(name)
    if isinstance(expect, type):
        with pytest.raises(expect) as err:
            tracker.update(value)
        assert "\n" not in str(err.value)
        return
    with caplog.at_level(logging.WARNING, logger="edgecv.tracking"):
        out = tracker.update(value)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert bool(warned) == (expect == "warn")
    if warned:
        assert "dropped" in warned[0].getMessage()
    assert len(out) == tracked == len(tracker.tracks)
    assert out.tracker_id is not None and out.tracker_id.shape == (tracked,)
    assert np.isfinite(out.xyxy).all()
    assert len(tracker.update(Detections.empty())) == 0  # and the next (empty) frame is fine too


@pytest.mark.parametrize("name", NAMES)
def test_detections_without_real_scores_are_tracked(name):
    tracker = make_tracker(name)
    for k in range(4):
        det = moving(k)
        ones = Detections(det.xyxy, np.ones(len(det)), det.class_id)  # e.g. ground truth, or a scoreless detector
        assert tracker.update(ones).tracker_id.tolist() == [1, 2, 3]
        assert tracker.update(det.xyxy[:, :4] + 2).tracker_id.tolist() == [1, 2, 3]  # a bare [N, 4] array


@pytest.mark.parametrize("name", NAMES)
def test_many_empty_frames_remove_every_track(name):
    tracker = make_tracker(name, fps=25)
    for k in range(5):
        tracker.update(moving(k))
    removed = []
    for _ in range(60):  # 2.4 s, longer than any default lifetime
        assert len(tracker.update(Detections.empty())) == 0
        removed += tracker.removed
    assert tracker.tracks == []
    assert sorted(t.track_id for t in removed) == [1, 2, 3]
    assert all(t.state is TrackState.REMOVED for t in removed)


@pytest.mark.parametrize("name", NAMES)
def test_five_thousand_boxes_in_a_frame(name):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 4000, (5000, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(10, 60, (5000, 2)), np.full((5000, 1), 0.9)], axis=1)
    tracker = make_tracker(name)
    for k in range(4):
        moved = boxes.copy()
        moved[:, :4] += 2.0 * k
        start = time.perf_counter()
        out = tracker.update(moved)
        assert time.perf_counter() - start < 5.0  # generous: a loaded 2-core machine; ~0.3 s when idle
    assert len(tracker.tracks) == 5000
    assert len(out) == 5000 and len(np.unique(out.tracker_id)) == 5000
    assert out.tracker_id.max() == 5000  # nobody lost, nobody started anew


def test_importing_and_building_trackers_does_not_import_scipy():
    code = (
        "import sys, numpy as np\n"
        "from edgecv.tracking import make_tracker\n"
        "t = make_tracker('bytetrack'); t.update(np.array([[0, 0, 10, 10, 0.9]]))\n"
        "assert 'scipy' not in sys.modules, 'scipy imported'\n"
        "t.update(np.array([[0, 0, 10, 10, 0.9], [1, 0, 11, 10, 0.9]]))\n"  # two candidates for one track
        "assert 'scipy.optimize' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
