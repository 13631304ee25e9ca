"""Track events: TrackEvent records and their JSON form; TrackEvents' enter on first report, exit on removal with
the last box and class seen, finish() at the end of a run, bad inputs, untouched inputs, and a real tracker's
output and removed tracks turned into events."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest

import edgecv.pipeline.events
from edgecv.detection.detections import Detections
from edgecv.errors import InputError
from edgecv.pipeline.events import TrackEvent, TrackEvents
from edgecv.tracking import SortTracker


def tracked(rows: list[tuple[int, float, float, float, float, int]]) -> Detections:
    """Detections of ``(tracker_id, x0, y0, x1, y1, class_id)`` rows, with read-only arrays (Detections keeps
    arrays of its own dtypes as they are, so any write by the code under test raises)."""
    a = np.array(rows, np.float64).reshape(-1, 6)
    arrays = [a[:, 1:5].astype(np.float32), np.full(len(a), 0.9, np.float32), a[:, 5].astype(np.int64),
              a[:, 0].astype(np.int64)]
    for arr in arrays:
        arr.flags.writeable = False
    det = Detections(*arrays)
    assert not det.xyxy.flags.writeable and not det.tracker_id.flags.writeable
    return det


def kinds(events: list[TrackEvent]) -> list[tuple[str, int, int]]:
    return [(e.kind, e.track_id, e.frame) for e in events]


def test_doctests():
    assert doctest.testmod(edgecv.pipeline.events).failed == 0


def test_event_to_dict_is_plain_json():
    event = TrackEvent("zone_exit", np.int64(4), np.int64(9), np.float32(0.5), np.int64(2),
                       np.array([1.234, 5.676, 10, 20.999], np.float32), "dock")
    d = event.to_dict()
    assert d == {"kind": "zone_exit", "track_id": 4, "frame": 9, "time_s": 0.5, "class_id": 2,
                 "xyxy": [1.23, 5.68, 10.0, 21.0], "where": "dock"}
    assert json.loads(json.dumps(d)) == d
    assert all(type(d[k]) is int for k in ("track_id", "frame", "class_id"))
    assert TrackEvent("enter", 1, 0, None, 0, (0, 0, 1, 1)).to_dict()["time_s"] is None
    assert TrackEvent("enter", 1, 0, None, 0, (0, 0, 1, 1)).where == ""


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"kind": "arrive"}, "TrackEvent.kind: expected one of enter, exit, line_in, line_out, zone_enter, "
                             "zone_exit, got 'arrive'"),
        ({"xyxy": (0, 0, 1)}, "TrackEvent.xyxy: expected 4 numbers (x0, y0, x1, y1), got 3"),
    ],
)
def test_event_checks(kwargs, error):
    args = {"kind": "enter", "track_id": 1, "frame": 0, "time_s": None, "class_id": 0, "xyxy": (0, 0, 1, 1)}
    with pytest.raises(InputError) as info:
        TrackEvent(**(args | kwargs))
    assert str(info.value) == error


def test_enter_exit_and_finish():
    events = TrackEvents()
    f0 = tracked([(1, 0, 0, 10, 10, 0), (2, 50, 50, 60, 70, 3)])
    f1 = tracked([(2, 52, 50, 62, 70, 3), (3, 5, 5, 6, 6, 1)])  # 1 is lost (not reported), not removed yet
    f2 = tracked([(3, 7, 5, 8, 6, 1)])

    assert events.update(f0, frame=0, time_s=0.0) == [
        TrackEvent("enter", 1, 0, 0.0, 0, (0, 0, 10, 10)),
        TrackEvent("enter", 2, 0, 0.0, 3, (50, 50, 60, 70)),
    ]
    assert events.update(f1, frame=1, time_s=0.1) == [TrackEvent("enter", 3, 1, 0.1, 1, (5, 5, 6, 6))]
    assert events.present == {1, 2, 3}
    # the exit carries the last box and class seen (frame 0 for id 1)
    assert events.update(f2, frame=2, time_s=0.2, removed_ids=[1]) == [
        TrackEvent("exit", 1, 2, 0.2, 0, (0, 0, 10, 10))]
    # ids removed that never entered (99) are ignored; removed_ids may be a numpy array
    assert events.update(Detections.empty(), frame=3, time_s=0.3, removed_ids=np.array([99, 2])) == [
        TrackEvent("exit", 2, 3, 0.3, 3, (52, 50, 62, 70))]
    assert events.present == {3}
    assert events.finish(frame=4, time_s=0.4) == [TrackEvent("exit", 3, 4, 0.4, 1, (7, 5, 8, 6))]
    assert events.present == frozenset()
    assert events.finish(frame=4) == []


def test_enter_and_exit_in_one_frame_then_enter_again():
    events = TrackEvents()
    det = tracked([(5, 0, 0, 4, 4, 0)])
    assert kinds(events.update(det, frame=0, removed_ids=[5])) == [("enter", 5, 0), ("exit", 5, 0)]
    assert kinds(events.update(det, frame=1)) == [("enter", 5, 1)]  # reported again after its exit: enters again
    assert kinds(events.update(det, frame=2)) == []


def test_reset_forgets_tracks_and_frames():
    events = TrackEvents()
    det = tracked([(1, 0, 0, 4, 4, 0)])
    events.update(det, frame=7)
    events.reset()
    assert events.present == frozenset()
    assert kinds(events.update(det, frame=0)) == [("enter", 1, 0)]


def test_inputs_are_not_changed():
    det = tracked([(1, 0, 0, 10, 10, 0), (2, 50, 50, 60, 70, 3)])
    before = [a.copy() for a in (det.xyxy, det.confidence, det.class_id, det.tracker_id)]
    removed = np.array([2], np.int64)
    removed.flags.writeable = False
    events = TrackEvents()
    events.update(det, frame=0)
    events.update(det, frame=1, removed_ids=removed)
    events.finish(frame=2)
    for a, b in zip((det.xyxy, det.confidence, det.class_id, det.tracker_id), before):
        np.testing.assert_array_equal(a, b)
    assert removed.tolist() == [2]


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda e: e.update(Detections(np.array([[0, 0, 1, 1]]), [0.9], [0]), frame=1),
         "TrackEvents.update: expected Detections with tracker_id (a tracker's output), got tracker_id None"),
        (lambda e: e.update(np.zeros((1, 5)), frame=1), "TrackEvents.update: expected Detections, got ndarray"),
        (lambda e: e.update(tracked([(1, 0, 0, 1, 1, 0), (1, 2, 2, 3, 3, 0)]), frame=1),
         "TrackEvents.update: expected each tracker_id once per frame, got [1, 1]"),
        (lambda e: e.update(Detections.empty(), frame=0),
         "TrackEvents.update: expected frame > 0 (frames increase), got 0"),
        (lambda e: e.update(Detections.empty(), frame=1.0), "TrackEvents.update: expected frame as an integer "
                                                            "index, got 1.0"),
        (lambda e: e.update(Detections.empty(), frame=1, time_s=float("nan")),
         "TrackEvents.update: expected time_s in seconds as a finite number or None, got nan"),
        (lambda e: e.update(Detections.empty(), frame=1, removed_ids=[1.5]),
         "TrackEvents.update: expected removed_ids as integer track ids, got [1.5]"),
        (lambda e: e.finish(frame=-1), "TrackEvents.finish: expected frame >= 0 (frames increase), got -1"),
    ],
)
def test_bad_inputs(call, error):
    events = TrackEvents()
    events.update(Detections.empty(), frame=0)  # an empty frame needs no tracker_id
    with pytest.raises(InputError) as info:
        call(events)
    assert str(info.value) == error
    assert events.finish(frame=0) == []  # the failed call changed nothing


def test_a_real_tracker_output_and_removed_tracks():
    """SORT (reported from the first match, removed once unmatched for more than 0.04 s: the second frame without
    it at 25 fps) on one box that moves in frames 0-5 and a second that appears at frame 2 and stays; removals
    come from tracker.removed."""
    tracker = SortTracker({"min_hits": 0, "output_boxes": "detection"}, fps=25)
    events = TrackEvents()
    log = []
    for f in range(10):
        rows = []
        if f < 6:
            rows.append([10 + 2 * f, 10, 30 + 2 * f, 50, 0.9, 0])
        if f >= 2:
            rows.append([100, 100, 120, 140, 0.8, 1])
        out = tracker.update(np.array(rows, np.float64).reshape(-1, 6))
        removed = [t.track_id for t in tracker.removed]
        log += events.update(out, frame=f, time_s=f / 25, removed_ids=removed)
    log += events.finish(frame=9, time_s=9 / 25)
    assert kinds(log) == [("enter", 1, 0), ("enter", 2, 2), ("exit", 1, 7), ("exit", 2, 9)]
    assert log[2].xyxy == (20.0, 10.0, 40.0, 50.0) and log[2].class_id == 0  # its last box, frame 5
    assert log[3].xyxy == (100.0, 100.0, 120.0, 140.0) and log[3].class_id == 1
