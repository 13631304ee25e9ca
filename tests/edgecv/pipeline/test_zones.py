"""Lines and zones: parsing (a table of texts and the exact results or errors), point-in-polygon, and the
counters on hand-built tracks: direction of in and out, the margin against jitter, crossings of the infinite
line beyond the segment's ends, several tracks, anchors, forgetting, reset, bad inputs and untouched inputs."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

import edgecv.pipeline.zones
from edgecv.detection.detections import Detections
from edgecv.errors import ConfigError, InputError
from edgecv.pipeline.events import TrackEvent
from edgecv.pipeline.zones import Line, LineCounter, Zone, ZoneCounter

W, H = 20.0, 40.0  # the boxes of the hand-built tracks


def box(x: float, y: float) -> tuple[float, float, float, float]:
    """The box whose bottom centre (the default anchor) is at (x, y)."""
    return (x - W / 2, y - H, x + W / 2, y)


def tracks(*rows: tuple) -> Detections:
    """One frame: ``(tracker_id, x, y)`` or ``(tracker_id, x, y, class_id)`` rows, (x, y) the bottom centre;
    the arrays are read-only (Detections keeps arrays of its own dtypes as they are)."""
    ids = np.array([r[0] for r in rows], np.int64)
    xyxy = np.array([box(r[1], r[2]) for r in rows], np.float32).reshape(-1, 4)
    cls = np.array([r[3] if len(r) > 3 else 0 for r in rows], np.int64)
    conf = np.full(len(rows), 0.9, np.float32)
    for a in (ids, xyxy, cls, conf):
        a.flags.writeable = False
    return Detections(xyxy, conf, cls, tracker_id=ids)


def run(counter, frames: list[Detections], fps: float = 10.0) -> list[TrackEvent]:
    return [e for f, det in enumerate(frames) for e in counter.update(det, frame=f, time_s=f / fps)]


def path(tid: int, points: list[tuple[float, float]]) -> list[Detections]:
    return [tracks((tid, x, y)) for x, y in points]


def kinds(events: list[TrackEvent]) -> list[tuple[str, int, int]]:
    return [(e.kind, e.track_id, e.frame) for e in events]


HORIZONTAL = Line((0, 100), (200, 100), "gate")  # left to right on screen at y = 100


def test_doctests():
    assert doctest.testmod(edgecv.pipeline.zones).failed == 0


# -- parsing ---------------------------------------------------------------------------------------------
LINE_FORM = "expected 'x0,y0,x1,y1' or 'name=x0,y0,x1,y1' (pixels)"
ZONE_FORM = "expected 'x0,y0,x1,y1,x2,y2,...' or 'name=x0,y0,...' (pixels, 3 or more points)"


@pytest.mark.parametrize(
    "parse, text, expected, error",
    [
        (Line.parse, "0,100,200,100", Line((0, 100), (200, 100), "line"), None),
        (Line.parse, " door = 1.5, 2 ,3e2,4 ", Line((1.5, 2), (300, 4), "door"), None),
        (Line.parse, "-5,0,0,-5", Line((-5, 0), (0, -5)), None),
        (Line.parse, "0,1,2", None, f"line '0,1,2': {LINE_FORM}, got 3 numbers"),
        (Line.parse, "0,1,2,3,4", None, f"line '0,1,2,3,4': {LINE_FORM}, got 5 numbers"),
        (Line.parse, "a=0,1,2,x", None, f"line 'a=0,1,2,x': {LINE_FORM}, got 'x' for a number"),
        (Line.parse, "0,1,,3", None, f"line '0,1,,3': {LINE_FORM}, got '' for a number"),
        (Line.parse, "", None, f"line '': {LINE_FORM}, got '' for a number"),
        (Line.parse, " =0,1,2,3", None, f"line ' =0,1,2,3': {LINE_FORM}, got an empty name before '='"),
        (Line.parse, "a=b=0,1,2,3", None, f"line 'a=b=0,1,2,3': {LINE_FORM}, got 'b=0' for a number"),
        (Line.parse, "0,0,nan,1", None, f"line '0,0,nan,1': {LINE_FORM}, got 'nan' (not finite)"),
        (Line.parse, "1,1,1,1", None, "line '1,1,1,1': expected two different end points, got (1, 1) twice"),
        (Line.parse, None, None, "line: expected text like 'x0,y0,x1,y1' or 'name=x0,y0,x1,y1' (pixels), "
                                 "got NoneType None"),
        (Zone.parse, "0,0,10,0,10,10", Zone(((0, 0), (10, 0), (10, 10)), "zone"), None),
        (Zone.parse, "dock=0,0, 10,0, 10,10, 0,10", Zone(((0, 0), (10, 0), (10, 10), (0, 10)), "dock"), None),
        (Zone.parse, "0,0,10,0", None, f"zone '0,0,10,0': {ZONE_FORM}, got 4 numbers"),
        (Zone.parse, "0,0,10,0,10", None, f"zone '0,0,10,0,10': {ZONE_FORM}, got 5 numbers"),
        (Zone.parse, "0,0,5,5,10,10", None, "zone '0,0,5,5,10,10': expected a polygon with non-zero area, "
                                            "got zero area"),
        (Zone.parse, "z=0,0,1,inf,2,2", None, f"zone 'z=0,0,1,inf,2,2': {ZONE_FORM}, got 'inf' (not finite)"),
        (Zone.parse, "z=0,0;1,1;2,0", None, f"zone 'z=0,0;1,1;2,0': {ZONE_FORM}, got '0;1' for a number"),
    ],
)
def test_parse(parse, text, expected, error):
    if error is None:
        assert parse(text) == expected
    else:
        with pytest.raises(ConfigError) as info:
            parse(text)
        assert str(info.value) == error


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda: Line((0, 0), (0, 0)), "Line: expected start != end, got (0.0, 0.0) for both"),
        (lambda: Line((0, "a"), (1, 1)), "Line.start: expected (x, y) as two finite numbers, got (0, 'a')"),
        (lambda: Line((0, 0), (1, 1, 1)), "Line.end: expected (x, y) as two finite numbers, got (1, 1, 1)"),
        (lambda: Line((0, 0), (math.inf, 1)), "Line.end: expected (x, y) as two finite numbers, got (inf, 1)"),
        (lambda: Line((0, 0), (1, 1), ""), "Line.name: expected a non-empty string, got ''"),
        (lambda: Zone(((0, 0), (1, 1))), "Zone.points: expected 3 or more (x, y) pairs of finite numbers, "
                                         "got ((0, 0), (1, 1))"),
        (lambda: Zone(None), "Zone.points: expected 3 or more (x, y) pairs of finite numbers, got None"),
        (lambda: Zone(((0, 0), (1, 1), (2, 2))), "Zone.points: expected a polygon with non-zero area, "
                                                 "got ((0.0, 0.0), (1.0, 1.0), (2.0, 2.0))"),
        (lambda: Zone(((0, 0), (1, 0), (1, 1)), name=3), "Zone.name: expected a non-empty string, got 3"),
    ],
)
def test_construction_errors(make, error):
    with pytest.raises(ConfigError) as info:
        make()
    assert str(info.value) == error


def test_shapes_take_numpy_values():
    zone = Zone(np.array([[0, 0], [4, 0], [0, 4]], np.int32))
    assert zone.points == ((0.0, 0.0), (4.0, 0.0), (0.0, 4.0))
    assert Line(np.array([1, 2]), np.array([3.5, 4])) == Line((1, 2), (3.5, 4))


# -- point in polygon ------------------------------------------------------------------------------------
def test_contains_square_edges_and_corners():
    zone = Zone(((0, 0), (100, 0), (100, 100), (0, 100)))
    pts = [[50, 50], [150, 50], [100, 50], [0, 0], [100, 100], [50, 0], [100.001, 50], [-0.001, 0], [50, 100.01]]
    assert zone.contains(pts).tolist() == [True, False, True, True, True, True, False, False, False]
    assert zone.contains(np.zeros((0, 2))).shape == (0,)
    assert zone.contains([]).dtype == bool


def test_contains_concave_and_self_crossing():
    l_shape = Zone(((0, 0), (100, 0), (100, 40), (40, 40), (40, 100), (0, 100)))
    assert l_shape.contains([[20, 80], [80, 20], [80, 80], [40, 70], [41, 41]]).tolist() == [
        True, True, False, True, False]
    # a pentagram: its centre is wound twice, so outside by the even-odd rule; its tips are inside
    corners = [(100 * math.sin(2 * math.pi * k / 5), -100 * math.cos(2 * math.pi * k / 5)) for k in range(5)]
    star = Zone(tuple(corners[k] for k in (0, 2, 4, 1, 3)))
    tips = [(0.9 * x, 0.9 * y) for x, y in corners]
    assert star.contains([(0, 0)] + tips).tolist() == [False] + [True] * 5


def test_contains_matches_a_rectangle_on_random_and_edge_points():
    rng = np.random.default_rng(0)
    x0, y0, x1, y1 = 10, 20, 70, 50
    zone = Zone(((x0, y0), (x1, y0), (x1, y1), (x0, y1))[::-1])  # clockwise on screen this time
    pts = np.concatenate([rng.uniform(0, 80, (500, 2)), rng.integers(0, 80, (500, 2))])  # integers hit edges
    want = (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
    pts.flags.writeable = False
    np.testing.assert_array_equal(zone.contains(pts), want)
    assert want[500:].sum() > 0 and (~want[500:]).sum() > 0


@pytest.mark.parametrize("points", [[1, 2], np.zeros((3, 3)), [["a", "b"]], [[0, np.nan]]])
def test_contains_bad_points(points):
    with pytest.raises(InputError, match="^Zone.contains: expected"):
        Zone(((0, 0), (1, 0), (0, 1))).contains(points)


# -- line counter ----------------------------------------------------------------------------------------
def test_box_moving_down_across_the_line_is_one_line_in():
    counter = LineCounter(HORIZONTAL)
    events = run(counter, path(1, [(100, y) for y in range(80, 125, 5)]))  # bottoms at 80, 85, ..., 120
    # 100 is on the line, 105 the first bottom beyond the 2-pixel margin on the other side (frame 5)
    assert events == [TrackEvent("line_in", 1, 5, 0.5, 0, box(100, 105), "gate")]
    assert (counter.in_count, counter.out_count) == (1, 0)


def test_box_moving_up_across_the_line_is_one_line_out():
    counter = LineCounter(HORIZONTAL)
    events = run(counter, path(1, [(100, y) for y in range(120, 75, -5)]))
    assert events == [TrackEvent("line_out", 1, 5, 0.5, 0, box(100, 95), "gate")]
    assert (counter.in_count, counter.out_count) == (0, 1)


@pytest.mark.parametrize(
    "line, start, end, expected",
    [
        ("0,100,200,100", (100, 90), (100, 110), "line_in"),  # drawn left to right: down is in
        ("0,100,200,100", (100, 110), (100, 90), "line_out"),
        ("200,100,0,100", (100, 90), (100, 110), "line_out"),  # drawn right to left: down is out
        ("100,0,100,200", (150, 100), (50, 100), "line_in"),  # drawn top to bottom: right to left is in
        ("100,0,100,200", (50, 100), (150, 100), "line_out"),
        ("0,0,200,200", (150, 50), (50, 150), "line_in"),  # the diagonal: from upper right to lower left is in
        ("0,0,200,200", (50, 150), (150, 50), "line_out"),
    ],
)
def test_directions(line, start, end, expected):
    counter = LineCounter(Line.parse(line))
    assert kinds(run(counter, path(7, [start, end]))) == [(expected, 7, 1)]
    assert (counter.in_count, counter.out_count) == ((1, 0) if expected == "line_in" else (0, 1))


def test_jitter_on_the_line_counts_nothing_within_the_margin():
    jitter = [(100, y) for y in (90, 99, 101, 99, 101, 99, 101, 99)]
    assert run(LineCounter(HORIZONTAL), path(1, jitter)) == []
    # without a margin every pass counts: the test above is not empty by accident
    events = run(LineCounter(HORIZONTAL, margin=0), path(1, jitter))
    assert kinds(events) == [("line_in", 1, 2), ("line_out", 1, 3), ("line_in", 1, 4), ("line_out", 1, 5),
                             ("line_in", 1, 6), ("line_out", 1, 7)]


def test_jitter_then_a_real_crossing_counts_once():
    ys = (90, 99, 101, 99, 103, 99, 101, 110, 101)  # 103 is the first beyond the margin below
    assert kinds(run(LineCounter(HORIZONTAL), path(1, [(100, y) for y in ys]))) == [("line_in", 1, 4)]
    # exactly at the margin is not beyond it
    assert kinds(run(LineCounter(HORIZONTAL), path(1, [(100, y) for y in (90, 102, 102.5)]))) == [
        ("line_in", 1, 2)]


def test_crossing_the_infinite_line_beyond_the_segment_counts_nothing():
    counter = LineCounter(HORIZONTAL)
    assert run(counter, path(1, [(300, y) for y in range(80, 125, 5)])) == []
    assert run(LineCounter(HORIZONTAL), path(2, [(-10, 90), (-10, 110)])) == []
    # its side did change: going round the end and back up through the segment is one line_out
    counter = LineCounter(HORIZONTAL)
    assert kinds(run(counter, path(3, [(300, 90), (300, 110), (100, 110), (100, 90)]))) == [("line_out", 3, 3)]
    assert (counter.in_count, counter.out_count) == (0, 1)


def test_the_step_across_decides_not_the_step_out_of_the_margin():
    # across the segment into the margin band (at x = 109.5), then out of the band beyond the end: counted
    assert kinds(run(LineCounter(HORIZONTAL), path(1, [(300, 90), (100, 100.5), (300, 110)]))) == [
        ("line_in", 1, 2)]
    # along its side to beyond the end, across into the band there, then back along the band and out of it over
    # the segment: the step across was beyond the end, so nothing counts
    assert run(LineCounter(HORIZONTAL), path(2, [(100, 90), (300, 90), (300, 101), (100, 101), (100, 110)])) == []


def test_segment_end_points_count():
    assert kinds(run(LineCounter(HORIZONTAL), path(1, [(190, 90), (210, 110)]))) == [("line_in", 1, 1)]  # x 200
    assert run(LineCounter(HORIZONTAL), path(1, [(195, 90), (215, 110)])) == []  # meets at x = 205


def test_first_seen_on_the_line_has_no_side():
    assert run(LineCounter(HORIZONTAL), path(1, [(100, 100), (100, 110), (100, 120)])) == []
    assert run(LineCounter(HORIZONTAL), path(1, [(100, 101), (100, 110)])) == []
    assert kinds(run(LineCounter(HORIZONTAL), path(1, [(100, 101), (100, 95), (100, 110)]))) == [
        ("line_in", 1, 2)]


def test_two_tracks_and_one_beside_the_segment():
    frames = [
        tracks((1, 50, 80, 0), (3, 400, 80, 0)),
        tracks((1, 50, 95, 0), (3, 400, 95, 0)),
        tracks((1, 50, 110, 0), (2, 150, 120, 2), (3, 400, 110, 0)),
        tracks((2, 150, 105, 2), (3, 400, 130, 0)),
        tracks((2, 150, 90, 2)),
        tracks(),
        tracks((1, 50, 80, 0)),  # back up after a gap of three frames
    ]
    counter = LineCounter(HORIZONTAL)
    events = run(counter, [Detections.empty() if len(f) == 0 else f for f in frames])
    assert events == [
        TrackEvent("line_in", 1, 2, 0.2, 0, box(50, 110), "gate"),
        TrackEvent("line_out", 2, 4, 0.4, 2, box(150, 90), "gate"),
        TrackEvent("line_out", 1, 6, 0.6, 0, box(50, 80), "gate"),
    ]
    assert (counter.in_count, counter.out_count) == (1, 2)


@pytest.mark.parametrize(
    "anchor, line_y, crosses",
    [
        ("bottom_center", 100, True), ("center", 100, False), ("center", 80, True), ("top_center", 60, True),
        ("top_center", 80, False),
    ],
)
def test_anchors(anchor, line_y, crosses):
    frames = path(1, [(100, 90), (100, 110)])  # tops at 50 then 70, centres at 70 then 90, bottoms at 90 then 110
    events = run(LineCounter(Line((0, line_y), (200, line_y)), anchor=anchor), frames)
    assert kinds(events) == ([("line_in", 1, 1)] if crosses else [])


def test_forgetting_after_frames_without_a_report():
    frames = [tracks((1, 100, 90)), Detections.empty(), Detections.empty(), tracks((1, 100, 110))]
    # seen at frame 0, missing in frames 1 and 2: forgotten after frame 2 with forget_after=2, so no side at 3
    assert run(LineCounter(HORIZONTAL, forget_after=2), frames) == []
    assert kinds(run(LineCounter(HORIZONTAL, forget_after=3), frames)) == [("line_in", 1, 3)]


def test_memory_stays_bounded():
    counter = LineCounter(HORIZONTAL, forget_after=5)
    for f in range(200):  # a new track every frame, each seen once
        counter.update(tracks((f + 1, 100, 90)), frame=f)
    assert len(counter._side) == len(counter._prev) == len(counter._seen) == 5  # noqa: SLF001
    zones = ZoneCounter(Zone(((0, 0), (200, 0), (200, 200))), forget_after=5)
    for f in range(200):
        zones.update(tracks((f + 1, 150, 10)), frame=f)
    assert len(zones._seen) == len(zones._inside) == len(zones._last) == 5  # noqa: SLF001
    assert zones.entered == 200 and zones.count == 5


def test_line_counter_reset():
    counter = LineCounter(HORIZONTAL)
    run(counter, path(1, [(100, 90), (100, 110)]))
    counter.reset()
    assert (counter.in_count, counter.out_count) == (0, 0)
    # the track's side was forgotten: its next frame sets it without counting, and frames start again
    assert counter.update(tracks((1, 100, 90)), frame=0) == []
    assert kinds(counter.update(tracks((1, 100, 110)), frame=1)) == [("line_in", 1, 1)]


def test_counters_do_not_change_inputs():
    det = tracks((1, 100, 90, 3), (2, 50, 110, 1))
    later = tracks((1, 100, 110, 3), (2, 50, 90, 1))
    copies = [(d.xyxy.copy(), d.confidence.copy(), d.class_id.copy(), d.tracker_id.copy()) for d in (det, later)]
    line, zone = Line((0, 100), (200, 100)), Zone(((0, 0), (200, 0), (200, 100), (0, 100)))
    assert kinds(run(LineCounter(line), [det, later])) == [("line_in", 1, 1), ("line_out", 2, 1)]
    assert kinds(run(ZoneCounter(zone), [det, later])) == [("zone_enter", 1, 0), ("zone_exit", 1, 1),
                                                           ("zone_enter", 2, 1)]
    for d, (xyxy, conf, cls, ids) in zip((det, later), copies):
        for a, b in ((d.xyxy, xyxy), (d.confidence, conf), (d.class_id, cls), (d.tracker_id, ids)):
            np.testing.assert_array_equal(a, b)
            assert not a.flags.writeable
    assert line == Line((0, 100), (200, 100)) and zone.points[1] == (200.0, 0.0)


@pytest.mark.parametrize("make_counter", [lambda: LineCounter(HORIZONTAL),
                                          lambda: ZoneCounter(Zone.parse("0,0,1,0,0,1"))])
@pytest.mark.parametrize(
    "call, error",
    [
        (lambda c: c.update(Detections(np.array([[0, 0, 1, 1]]), [0.9], [0]), frame=1),
         "{who}.update: expected Detections with tracker_id (a tracker's output), got tracker_id None"),
        (lambda c: c.update(tracks((1, 0, 0), (1, 5, 5)), frame=1),
         "{who}.update: expected each tracker_id once per frame, got [1, 1]"),
        (lambda c: c.update(Detections.empty(), frame=0),
         "{who}.update: expected frame > 0 (frames increase), got 0"),
        (lambda c: c.update([[0, 0, 1, 1]], frame=1), "{who}.update: expected Detections, got list"),
        (lambda c: c.update(Detections.empty(), frame=1, time_s="1"),
         "{who}.update: expected time_s in seconds as a finite number or None, got '1'"),
    ],
)
def test_counter_bad_inputs(make_counter, call, error):
    counter = make_counter()
    assert counter.update(Detections.empty(), frame=0) == []
    with pytest.raises(InputError) as info:
        call(counter)
    assert str(info.value) == error.format(who=type(counter).__name__)


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda: LineCounter(HORIZONTAL, anchor="feet"),
         "LineCounter anchor: unknown name 'feet'; valid names: bottom_center, center, top_center"),
        (lambda: ZoneCounter(Zone.parse("0,0,1,0,0,1"), anchor="bottom"),
         "ZoneCounter anchor: unknown name 'bottom'; valid names: bottom_center, center, top_center"),
        (lambda: LineCounter(HORIZONTAL, margin=-1), "LineCounter margin: expected a finite number of pixels >= 0, "
                                                     "got -1"),
        (lambda: LineCounter(HORIZONTAL, margin=float("nan")),
         "LineCounter margin: expected a finite number of pixels >= 0, got nan"),
        (lambda: LineCounter(HORIZONTAL, forget_after=0),
         "LineCounter forget_after: expected an integer number of frames >= 1, got 0"),
        (lambda: ZoneCounter(Zone.parse("0,0,1,0,0,1"), forget_after=2.5),
         "ZoneCounter forget_after: expected an integer number of frames >= 1, got 2.5"),
        (lambda: LineCounter("0,100,200,100"), "LineCounter line: expected a Line, got str"),
        (lambda: ZoneCounter(((0, 0), (1, 0), (0, 1))), "ZoneCounter zone: expected a Zone, got tuple"),
    ],
)
def test_counter_options(make, error):
    with pytest.raises(ConfigError) as info:
        make()
    assert str(info.value) == error


# -- zone counter ----------------------------------------------------------------------------------------
SQUARE = Zone(((0, 0), (100, 0), (100, 100), (0, 100)), "dock")


def test_zone_enter_and_exit_frames():
    counter = ZoneCounter(SQUARE, anchor="center")  # the centre is 20 pixels above the bottom
    frames = [
        tracks((1, -50, 70)),
        tracks((1, -20, 70), (2, 50, 50, 4)),  # 2 is first seen inside: it enters
        tracks((1, 10, 70), (2, 50, 50, 4)),
        tracks((1, 50, 70)),  # 2 not reported: still inside
        tracks((1, 120, 70), (2, 50, 130, 4)),  # 2 back, with its centre at y = 110: outside
        tracks((1, 50, 70)),
    ]
    log = []
    for f, det in enumerate(frames):
        log.append((kinds(counter.update(det, frame=f, time_s=f / 10)), counter.inside, counter.count,
                    counter.entered))
    assert log == [
        ([], frozenset(), 0, 0),
        ([("zone_enter", 2, 1)], {2}, 1, 1),
        ([("zone_enter", 1, 2)], {1, 2}, 2, 2),
        ([], {1, 2}, 2, 2),
        ([("zone_exit", 1, 4), ("zone_exit", 2, 4)], frozenset(), 0, 2),
        ([("zone_enter", 1, 5)], {1}, 1, 2),  # enters again: entered counts distinct tracks
    ]
    counter.reset()
    assert (counter.inside, counter.count, counter.entered) == (frozenset(), 0, 0)
    assert counter.update(tracks((2, 50, 70, 4)), frame=0) == [
        TrackEvent("zone_enter", 2, 0, None, 4, box(50, 70), "dock")]


def test_zone_event_fields_and_edge():
    counter = ZoneCounter(SQUARE)
    # bottom centres (50, 100) on the edge: inside; then (50, 101): outside
    assert counter.update(tracks((5, 50, 100, 1)), frame=3, time_s=1.5) == [
        TrackEvent("zone_enter", 5, 3, 1.5, 1, box(50, 100), "dock")]
    assert counter.update(tracks((5, 50, 101, 1)), frame=4) == [
        TrackEvent("zone_exit", 5, 4, None, 1, box(50, 101), "dock")]


def test_zone_forgets_a_track_inside_with_an_exit():
    counter = ZoneCounter(SQUARE, forget_after=2)
    frames = [tracks((1, 50, 50, 3)), tracks((2, 150, 50)), Detections.empty(), tracks((1, 60, 50, 3))]
    log = [(kinds(counter.update(d, frame=f)), counter.count, counter.entered) for f, d in enumerate(frames)]
    assert log == [
        ([("zone_enter", 1, 0)], 1, 1),
        ([], 1, 1),
        ([("zone_exit", 1, 2)], 0, 1),  # not reported in frames 1 and 2: forgotten, exits with its last box
        ([("zone_enter", 1, 3)], 1, 2),  # a forgotten track is new again
    ]
    counter.reset()
    counter.update(tracks((1, 50, 50, 3)), frame=0)
    assert counter.update(Detections.empty(), frame=2) == [
        TrackEvent("zone_exit", 1, 2, None, 3, box(50, 50), "dock")]
