"""Pipeline: a fake detector that boxes the one bright square of each frame, a real tracker, line and zone
counters and recording sinks. Concurrent and sequential runs agree frame by frame; every frame reaches the
sinks in order; the report's figures; stop; a failing stage (raised after every sink is closed, never a hang);
a failing source; a lost live source; reset; events and counts."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgecv.detection.detections import Detections
from edgecv.errors import ConfigError, InputError, OutputError, SourceError
from edgecv.pipeline.capture import CaptureOptions
from edgecv.pipeline.runner import STAGES, Pipeline, PipelineOptions, RunReport
from edgecv.pipeline.zones import Line, LineCounter, Zone, ZoneCounter
from edgecv.sources import Frame, FrameSource
from edgecv.tracking import make_tracker

RUN_TIMEOUT_S = 30.0  # a run that takes this long has hung
H, W, SIDE = 48, 96, 10
FPS = 10.0


def square_x(i: int) -> int:
    return 4 + 3 * i  # the square's left edge in frame i: 3 px to the right per frame


def square_box(i: int) -> list[float]:
    return [float(square_x(i)), 20.0, float(square_x(i) + SIDE), 30.0]


class Squares(FrameSource):
    """``n`` gray frames 96x48 at 10 frames/s with a white 10x10 square moving right (none in ``absent``);
    ``fail_after``: raise that error instead of making frame ``fail_after``."""

    kind = "squares"

    def __init__(self, n: int, *, absent=(), fail_after: int | None = None, error: BaseException | None = None,
                 stuck_clock: bool = False) -> None:
        super().__init__("squares:test")
        self.stuck_clock = stuck_clock  # every frame stamped 0 ms, as some containers do
        self.name = "squares"
        self.fps, self.size, self.length = FPS, (W, H), n
        self.n, self.absent = n, set(absent)
        self.fail_after, self.error = fail_after, error

    def image(self, i: int) -> np.ndarray:
        img = np.zeros((H, W), np.uint8)
        if i not in self.absent:
            img[20:30, square_x(i) : square_x(i) + SIDE] = 255
        return img

    def __iter__(self):
        for i in range(self.n):
            if i == self.fail_after:
                raise self.error
            yield Frame(self.image(i), i, f"squares_{i:06d}", time_ms=0.0 if self.stuck_clock else 1000.0 * i / FPS)


class SquareDetector:
    """prepare/infer/decode over the bright pixels: one box (class 0, score 0.9) around them, none without.
    ``fail``: {stage name: (call number, error)} makes that stage raise on that call (0-based)."""

    labels = ("square",)

    def __init__(self, fail: dict | None = None) -> None:
        self.fail = fail or {}
        self.calls = {"prepare": 0, "infer": 0, "decode": 0}

    def _maybe_fail(self, stage: str) -> None:
        n = self.calls[stage]
        self.calls[stage] += 1
        if stage in self.fail and self.fail[stage][0] == n:
            raise self.fail[stage][1]

    def prepare(self, image):
        self._maybe_fail("prepare")
        return image.astype(np.float32), {"shape": image.shape}

    def infer(self, x):
        self._maybe_fail("infer")
        ys, xs = np.nonzero(x > 128)
        return [np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)] if len(xs) else []

    def decode(self, outputs, transform):
        self._maybe_fail("decode")
        assert transform == {"shape": (H, W)}
        if not outputs:
            return Detections.empty()
        return Detections(outputs[0][None], [0.9], [0])


class RecordingSink:
    """Keeps every result; counts open and close; ``fail_at``: raise ``error`` when asked to write that frame;
    ``stop_at``: set ``stop`` once that frame is written."""

    name = "recording"

    def __init__(self, *, fail_at: int | None = None, error: BaseException | None = None,
                 stop_at: int | None = None, stop: threading.Event | None = None) -> None:
        self.results = []
        self.ended = []  # the end records (one per run)
        self.opened = self.closed = 0
        self.info = None
        self.fail_at, self.error, self.stop_at, self.stop = fail_at, error, stop_at, stop

    def open(self, info):
        self.opened += 1
        self.info = info

    def write(self, result):
        assert self.opened == 1 and self.closed == 0
        if result.frame.index == self.fail_at:
            raise self.error
        self.results.append(result)
        if result.frame.index == self.stop_at:
            self.stop.set()

    def end(self, record):
        self.ended.append(record)

    def close(self):
        self.closed += 1

    @property
    def frames(self) -> list[int]:
        return [r.frame.index for r in self.results]


def per_frame(sink: RecordingSink) -> list[tuple]:
    """What must not depend on how the stages were run: frame, seq, tracks, boxes and events of each frame."""
    return [(r.frame.index, r.seq, r.detections.tracker_id.tolist(), r.detections.xyxy.tolist(), r.time_s,
             [e.to_dict() for e in r.events]) for r in sink.results]


def pipeline(*, concurrent: bool = True, tracker: str = "sort", counters=(), sinks=(), detector=None,
             record_frames: bool = False, **options) -> Pipeline:
    return Pipeline(detector or SquareDetector(), tracker=make_tracker(tracker, fps=FPS), counters=list(counters),
                    sinks=list(sinks), record_frames=record_frames,
                    options=PipelineOptions(concurrent=concurrent, **options))


def run_with_timeout(p: Pipeline, source: FrameSource, **kwargs) -> tuple[RunReport | None, BaseException | None]:
    """``p.run(source)`` in a thread: (report, None) or (None, the error raised); fails if the run hangs."""
    out: dict = {}

    def target():
        try:
            out["report"] = p.run(source, **kwargs)
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(RUN_TIMEOUT_S)
    assert not t.is_alive(), "Pipeline.run hung"
    return out.get("report"), out.get("error")


# -- results -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tracker", ["sort", "ocsort"])
def test_tracks_follow_the_square_and_reach_the_sinks_in_order(tracker):
    first, second = RecordingSink(), RecordingSink()
    p = pipeline(tracker=tracker, sinks=[first, second], record_frames=True)
    report = p.run(Squares(20))
    assert first.frames == second.frames == list(range(20)) and p.processed == list(range(20))
    for r in first.results:
        i = r.frame.index
        assert r.seq == i and r.time_s == pytest.approx(i / FPS, abs=1e-9)
        assert r.detections.tracker_id.tolist() == [1] and r.detections.class_id.tolist() == [0]
        np.testing.assert_allclose(r.detections.xyxy, [square_box(i)], atol=0.05)
        assert r.result_at >= r.captured_at and r.latency_ms >= 0
    assert [r is s for r, s in zip(first.results, second.results)] == [True] * 20  # one result, every sink
    assert first.opened == first.closed == second.opened == second.closed == 1
    info = first.info
    assert info == {"kind": "squares", "text": "squares:test", "name": "squares", "fps": FPS, "size": [W, H],
                    "live": False, "length": 20, "labels": ["square"], "policy": "every"}
    assert report.state == "ended" and report.frames == 20 and report.tracks == 1 and report.error is None


def test_concurrent_and_sequential_runs_agree_frame_by_frame():
    counters = lambda: [LineCounter(Line.parse("door=48,0,48,48")), ZoneCounter(Zone.parse("right=48,0,96,0,96,48,48,48"))]
    runs = {}
    for concurrent in (True, False):
        sink = RecordingSink()
        report = pipeline(concurrent=concurrent, counters=counters(), sinks=[sink]).run(Squares(30, absent=range(10, 15)))
        runs[concurrent] = (per_frame(sink), report)
    (frames_c, rep_c), (frames_s, rep_s) = runs[True], runs[False]
    assert frames_c == frames_s and [f[0] for f in frames_c] == list(range(30))
    assert rep_c.concurrent is True and rep_s.concurrent is False
    for key in ("state", "frames", "counts", "events", "tracks", "capture"):
        a, b = getattr(rep_c, key), getattr(rep_s, key)
        if key == "capture":
            a, b = {k: v for k, v in a.items() if k != "outage_s"}, {k: v for k, v in b.items() if k != "outage_s"}
        assert a == b, key
    assert {name: s["frames"] for name, s in rep_c.stages.items()} == \
        {name: s["frames"] for name, s in rep_s.stages.items()}


@pytest.mark.parametrize("concurrent", [True, False])
def test_report_figures(concurrent):
    sink = RecordingSink()
    ticks = []
    p = pipeline(concurrent=concurrent, sinks=[sink], progress_interval_s=0.001)
    report = p.run(Squares(25), progress=ticks.append)
    assert list(report.stages) == ["capture", *STAGES] == ["capture", "inference", "decode", "tracking", "sinks"]
    for name, stage in report.stages.items():
        assert stage["frames"] == 25, name
        assert stage["median_ms"] >= 0 and stage["p99_ms"] >= stage["median_ms"] and stage["mean_ms"] >= 0, name
    for name in STAGES:
        q = report.stages[name]
        if concurrent:
            assert q["queue_max"] >= 0 and q["queue_mean"] >= 0
        else:
            assert q["queue_max"] == 0 and q["queue_mean"] == 0.0  # one frame at a time: nothing waits
    assert report.stages["capture"]["queue_max"] is None
    for figures in (report.latency_ms, report.written_ms):
        assert set(figures) == {"p50", "p99", "max", "first_quarter_p50", "last_quarter_p50"}
        assert all(v > 0 for v in figures.values()), figures
        assert figures["p50"] <= figures["p99"] <= figures["max"]
    # a frame is written after its result exists
    assert report.written_ms["p50"] >= report.latency_ms["p50"] and report.written_ms["max"] >= report.latency_ms["max"]
    assert report.frames == 25 and report.fps > 0 and report.wall_s > 0
    assert report.capture["read"] == report.capture["delivered"] == 25 and report.capture["dropped"] == 0
    assert report.concurrent is concurrent and report.state == "ended"
    d = report.to_dict()
    assert d["frames"] == 25 and d["stages"] is report.stages
    # progress: RunStatus with frames that never go back, the total known from the source
    assert ticks and all(t.total == 25 for t in ticks)
    assert [t.frames for t in ticks] == sorted(t.frames for t in ticks) and ticks[-1].frames <= 25


@pytest.mark.parametrize("concurrent", [True, False])
def test_no_tracker_passes_raw_detections(concurrent):
    sink = RecordingSink()
    p = Pipeline(SquareDetector(), sinks=[sink], options=PipelineOptions(concurrent=concurrent))
    report = p.run(Squares(5, absent=[2]))
    assert sink.frames == [0, 1, 2, 3, 4]
    assert [len(r.detections) for r in sink.results] == [1, 1, 0, 1, 1]
    assert all(r.detections.tracker_id is None and r.events == [] for r in sink.results)
    assert report.events == {} and report.tracks == 0 and report.frames == 5


def test_repeated_timestamps_advance_by_one_frame():
    sink = RecordingSink()
    report = pipeline(sinks=[sink]).run(Squares(6, stuck_clock=True))
    assert [r.time_s for r in sink.results] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5], abs=1e-9)
    assert [r.detections.tracker_id.tolist() for r in sink.results] == [[1]] * 6 and report.tracks == 1


@pytest.mark.parametrize("classes, tracks", [(None, 1), ([0], 1), ([0, 3], 1), ([3], 0), ([], 0)])
def test_classes_keep_only_those_detections(classes, tracks):
    sink = RecordingSink()
    p = Pipeline(SquareDetector(), tracker=make_tracker("sort", fps=FPS), sinks=[sink], classes=classes)
    report = p.run(Squares(5))
    assert [len(r.detections) for r in sink.results] == [tracks] * 5
    assert report.tracks == tracks and report.frames == 5


# -- events and counts -------------------------------------------------------------------------------------
def test_enter_and_exit_events_are_counted():
    # the square leaves for frames 10..19: SORT (0.04 s to stay lost) removes track 1 at frame 10, and the
    # square that comes back is track 2, reported from its third match on (frame 23)
    sink = RecordingSink()
    report = pipeline(sinks=[sink]).run(Squares(30, absent=range(10, 20)))
    events = [(e.kind, e.track_id, e.frame) for r in sink.results for e in r.events]
    assert events == [("enter", 1, 0), ("exit", 1, 10), ("enter", 2, 23)]
    assert report.events == {"enter": 2, "exit": 2}  # track 2 exits when the run ends
    assert report.tracks == 2 and report.counts == {}


def test_line_and_zone_counters_make_counts_and_events():
    sink = RecordingSink()
    counters = [LineCounter(Line.parse("door=48,0,48,48")),  # top to bottom: left to right is "out"
                ZoneCounter(Zone.parse("right=48,0,96,0,96,48,48,48"))]
    report = pipeline(counters=counters, sinks=[sink]).run(Squares(20))
    # bottom centre x = 9 + 3 i: on the zone's edge (inside) at i = 13, past the line's 2 px margin at i = 14
    events = [(e.kind, e.track_id, e.frame, e.where) for r in sink.results for e in r.events]
    assert events == [("enter", 1, 0, ""), ("zone_enter", 1, 13, "right"), ("line_out", 1, 14, "door")]
    assert report.counts == {"door": {"in": 0, "out": 1}, "right": {"inside": 1, "entered": 1}}
    assert report.events == {"enter": 1, "zone_enter": 1, "line_out": 1, "exit": 1}
    [line_out] = [e for r in sink.results for e in r.events if e.kind == "line_out"]
    assert line_out.xyxy == pytest.approx(tuple(square_box(14)), abs=0.05) and line_out.time_s == pytest.approx(1.4)


def test_reset_makes_a_second_run_like_the_first():
    counters = [LineCounter(Line.parse("door=48,0,48,48"))]
    sink = RecordingSink()
    p = pipeline(counters=counters, sinks=[sink], record_frames=True)
    first = p.run(Squares(20, absent=[5]))
    assert p.processed == list(range(20))
    first_frames = per_frame(sink)
    sink.results.clear()
    sink.opened = sink.closed = 0
    p.reset()
    assert p.processed == [] and p.event_counts == {} and counters[0].out_count == 0
    second = p.run(Squares(20, absent=[5]))
    assert per_frame(sink) == first_frames  # same ids too: reset() restarts the tracker
    assert second.frames == first.frames == 20
    assert second.events == first.events and second.counts == first.counts == {"door": {"in": 0, "out": 1}}
    assert all(s["frames"] == 20 for s in second.stages.values())


# -- stopping and failures ---------------------------------------------------------------------------------
@pytest.mark.parametrize("concurrent", [True, False])
def test_stop_event_ends_the_run_cleanly(concurrent):
    stop = threading.Event()
    sink, other = RecordingSink(stop_at=5, stop=stop), RecordingSink()
    p = pipeline(concurrent=concurrent, sinks=[sink, other])
    report, error = run_with_timeout(p, Squares(1000), stop=stop)
    assert error is None
    assert report.state == "stopped" and stop.is_set()
    done = sink.frames
    assert done == list(range(len(done))) and other.frames == done
    if concurrent:
        assert 6 <= len(done) < 60  # frames already taken are finished; capture reads ahead only a few
    else:
        assert done == [0, 1, 2, 3, 4, 5]
    assert report.frames == len(done) and report.capture["read"] < 1000
    assert sink.closed == other.closed == 1
    assert report.events == {"enter": 1, "exit": 1}  # the open track exits when the run ends


STAGE_FAILURES = [
    # (stage, how it fails; the error run() must raise)
    ("inference", InputError("model input: bad frame 5")),
    ("decode", InputError("decode: NaN scores at frame 5")),
    ("tracking", InputError("tracker: bad boxes at frame 5")),
    ("sinks", OutputError("cannot write out/tracks.jsonl: No space left on device")),
]


class FailingTracker:
    """A real tracker that raises on its 6th update (frame 5)."""

    def __init__(self, error: BaseException) -> None:
        self.inner, self.error, self.updates = make_tracker("sort", fps=FPS), error, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def update(self, dets, **kwargs):
        self.updates += 1
        if self.updates == 6:
            raise self.error
        return self.inner.update(dets, **kwargs)


@pytest.mark.parametrize("concurrent", [True, False])
@pytest.mark.parametrize("stage, error", STAGE_FAILURES, ids=[s for s, _ in STAGE_FAILURES])
def test_a_failing_stage_is_raised_after_every_sink_is_closed(stage, error, concurrent):
    method = {"inference": "infer", "decode": "decode"}.get(stage)
    detector = SquareDetector(fail={method: (5, error)} if method else None)
    tracker = FailingTracker(error) if stage == "tracking" else make_tracker("sort", fps=FPS)
    failing = RecordingSink(fail_at=5, error=error) if stage == "sinks" else RecordingSink()
    recorder = RecordingSink()
    p = Pipeline(detector, tracker=tracker, sinks=[failing, recorder], options=PipelineOptions(concurrent=concurrent))
    report, raised = run_with_timeout(p, Squares(200))
    assert report is None and raised is error
    assert failing.closed == recorder.closed == 1
    done = recorder.frames
    assert done == list(range(len(done))) and len(done) <= 5  # nothing from frame 5 on
    if not concurrent:
        assert done == [0, 1, 2, 3, 4]
    if stage == "inference":
        assert detector.calls["infer"] == 6  # the run stopped at the failure instead of going through 200 frames


@pytest.mark.parametrize("concurrent", [True, False])
def test_a_failing_source_is_raised_after_every_sink_is_closed(concurrent):
    boom = RuntimeError("demuxer exploded")
    sink = RecordingSink()
    report, raised = run_with_timeout(pipeline(concurrent=concurrent, sinks=[sink]), Squares(50, fail_after=7, error=boom))
    assert report is None and raised is boom
    assert sink.frames == list(range(7)) and sink.closed == 1


def test_a_sink_that_cannot_open_closes_the_ones_already_open():
    opened = RecordingSink()

    class Unopenable(RecordingSink):
        def open(self, info):
            raise OutputError("cannot write /read-only/tracks.jsonl: Read-only file system")

    bad, never = Unopenable(), RecordingSink()
    report, raised = run_with_timeout(pipeline(sinks=[opened, bad, never]), Squares(5))
    assert isinstance(raised, OutputError) and "Read-only file system" in str(raised)
    assert (opened.opened, opened.closed) == (1, 1) and opened.frames == []
    assert (never.opened, never.closed) == (0, 0)


class SlowCountingSink(RecordingSink):
    """Takes 5 ms a frame and counts the writes that come after close()."""

    def __init__(self) -> None:
        super().__init__()
        self.after_close = 0

    def write(self, result):
        time.sleep(0.005)
        self.after_close += self.closed > 0
        self.results.append(result)


def test_an_error_in_the_callers_thread_stops_the_stages_before_the_sinks_close():
    sink = SlowCountingSink()

    def progress(status):
        raise RuntimeError("progress display broke")

    p = pipeline(sinks=[sink], progress_interval_s=0.005)
    report, raised = run_with_timeout(p, Squares(60), progress=progress)
    assert isinstance(raised, RuntimeError) and sink.closed == 1
    stages = lambda: [t for t in threading.enumerate() if t.name.startswith("stage-")]
    deadline = time.monotonic() + 10
    while stages() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.after_close == 0


# -- a live source that drops -----------------------------------------------------------------------------
class DroppingCamera(FrameSource):
    """A live camera: ``bursts[k]`` frames per connection, the k-th reopen succeeds (after one SourceError);
    later reopens all fail. Frame times jump by ``gap_s`` across an outage."""

    kind = "camera"
    live = True

    def __init__(self, bursts: list[int], gap_s: float) -> None:
        super().__init__("7")
        self.name, self.fps, self.size = "camera7", FPS, (W, H)
        self.bursts, self.gap_s = bursts, gap_s
        self.opening, self.failed, self.index, self.t = 0, 0, 0, 0.0
        self.squares = Squares(1000)

    def __iter__(self):
        for _ in range(self.bursts[self.opening] if self.opening < len(self.bursts) else 0):
            yield Frame(self.squares.image(self.index), self.index, f"camera7_{self.index}", time_ms=self.t * 1000)
            self.index += 1
            self.t += 1 / FPS
        self.t += self.gap_s

    def reopen(self) -> None:
        if self.opening + 1 >= len(self.bursts) or self.failed == 0:
            self.failed += 1
            raise SourceError("cannot open camera 7 (no such device, or it is busy)")
        self.failed = 0
        self.opening += 1


def test_a_lost_live_source_ends_the_run_with_state_lost():
    sink = RecordingSink()
    capture = CaptureOptions(reconnect_attempts=3, backoff_s=0.001, max_backoff_s=0.002)
    p = pipeline(concurrent=False, sinks=[sink])  # sequential: nothing dropped, so the frames are exact
    report, raised = run_with_timeout(p, DroppingCamera([6, 6], gap_s=5.0), capture=capture)
    assert raised is None
    assert report.state == "lost" and report.source["live"] is True and report.source["policy"] == "latest"
    assert report.error.startswith("camera 7 lost: 3 reconnect attempts over ")
    assert report.error.endswith(" s failed: cannot open camera 7 (no such device, or it is busy)")
    assert sink.frames == list(range(12)) and sink.closed == 1
    assert report.capture["reconnects"] == 1 and report.capture["events"][0]["after_frames"] == 6
    # a 5 s outage is longer than a track may stay lost: the square after it is a new track
    ids = [r.detections.tracker_id.tolist() for r in sink.results]
    assert ids[:6] == [[1]] * 6 and all(i in ([], [2]) for i in ids[6:]) and [2] in ids[6:]
    assert report.tracks == 2 and report.events == {"enter": 2, "exit": 2}


# -- options -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, error", [
    ({"queue_size": 0}, "pipeline queue_size: expected an integer >= 1, got 0"),
    ({"queue_size": 2.5}, "pipeline queue_size: expected an integer >= 1, got 2.5"),
    ({"progress_interval_s": 0}, "pipeline progress_interval_s: expected > 0, got 0"),
    ({"progress_interval_s": float("nan")}, "pipeline progress_interval_s: expected > 0, got nan"),
    ({"switch_interval_s": 0}, "pipeline switch_interval_s: expected a number in (0, 0.1] or None, got 0"),
    ({"switch_interval_s": 1.0}, "pipeline switch_interval_s: expected a number in (0, 0.1] or None, got 1.0"),
    ({"queue_size": 1, "progress_interval_s": 0.01, "concurrent": False}, None),
    ({"queue_size": 1, "switch_interval_s": None}, None),
])
def test_pipeline_options(changes, error):
    if error is None:
        assert PipelineOptions(**changes).queue_size == 1
        return
    with pytest.raises(ConfigError) as exc:
        PipelineOptions(**changes)
    assert str(exc.value) == error


class SwitchIntervalSink(RecordingSink):
    def write(self, result):
        self.seen_interval = sys.getswitchinterval()
        super().write(result)


@pytest.mark.parametrize("concurrent, interval, during", [
    (True, 0.0002, 0.0002),
    (True, None, 0.005),
    (False, 0.0002, 0.005),  # a sequential run has no stage threads to hand over to
])
def test_the_switch_interval_is_set_while_a_concurrent_run_lasts_and_put_back(concurrent, interval, during):
    sink = SwitchIntervalSink()
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        pipeline(sinks=[sink], concurrent=concurrent, switch_interval_s=interval).run(Squares(3))
        assert sink.seen_interval == pytest.approx(during) and sys.getswitchinterval() == pytest.approx(0.005)
    finally:
        sys.setswitchinterval(before)


class OpenCVThreadsSink(RecordingSink):
    def write(self, result):
        import cv2

        self.seen_threads = cv2.getNumThreads()
        super().write(result)


@pytest.mark.parametrize("concurrent, threads, during", [
    (True, 1, 1),
    (True, None, 2),
    (False, 1, 2),  # a sequential run leaves OpenCV's pool to split its work over the idle cores
])
def test_opencv_threads_are_set_while_a_concurrent_run_lasts_and_put_back(concurrent, threads, during):
    cv2 = pytest.importorskip("cv2")
    sink = OpenCVThreadsSink()
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        pipeline(sinks=[sink], concurrent=concurrent, opencv_threads=threads).run(Squares(3))
        assert sink.seen_threads == during and cv2.getNumThreads() == 2
    finally:
        cv2.setNumThreads(before)


@pytest.mark.parametrize("options, error", [
    ({"opencv_threads": 0}, "pipeline opencv_threads: expected an integer >= 1 or None, got 0"),
    ({"opencv_threads": 1.5}, "pipeline opencv_threads: expected an integer >= 1 or None, got 1.5"),
    ({"switch_interval_s": 0}, "pipeline switch_interval_s: expected a number in (0, 0.1] or None, got 0"),
])
def test_process_wide_settings_are_checked(options, error):
    with pytest.raises(ConfigError) as exc:
        PipelineOptions(**options)
    assert str(exc.value) == error


def test_queue_size_one_still_processes_every_frame():
    sink = RecordingSink()
    report = pipeline(sinks=[sink], queue_size=1).run(Squares(15))
    assert sink.frames == list(range(15)) and report.frames == 15
    assert all(report.stages[s]["queue_max"] <= 1 for s in ("decode", "tracking", "sinks"))


# -- how a run ended: the sinks' end record, a cut-short source, the report while it runs ------------------
class ShortSquares(Squares):
    """Declares ``declared`` frames and gives ``n``, then says it was cut short, as a cut video file does."""

    def __init__(self, n: int, declared: int) -> None:
        super().__init__(n)
        self.length = declared

    def __iter__(self):
        for frame in super().__iter__():
            self.read += 1
            yield frame
        if self.read < self.length:
            self.truncated = f"squares: expected {self.length} frames, read {self.read}"


ENDINGS = [
    # (source, stop at frame, the end record's state and message, the run's error)
    (lambda: Squares(12), None, "ended", None, None),
    (lambda: ShortSquares(7, declared=12), None, "truncated", "squares: expected 12 frames, read 7", None),
    (lambda: Squares(1000), 5, "stopped", None, None),
    (lambda: Squares(50, fail_after=7, error=InputError("frame 7: bad data")), None, "failed", "frame 7: bad data",
     InputError),
]


@pytest.mark.parametrize("concurrent", [True, False])
@pytest.mark.parametrize("make, stop_at, state, message, error", ENDINGS, ids=[e[2] for e in ENDINGS])
def test_every_sink_is_told_how_the_run_ended(make, stop_at, state, message, error, concurrent):
    stop = threading.Event()
    sink = RecordingSink(stop_at=stop_at, stop=stop)
    report, raised = run_with_timeout(pipeline(concurrent=concurrent, sinks=[sink]), make(), stop=stop)
    assert sink.closed == 1 and len(sink.ended) == 1
    end = sink.ended[0]
    assert end["end"] == state and end["message"] == message and end["frames"] == len(sink.frames)
    if error is not None:
        assert isinstance(raised, error) and report is None
        return
    assert raised is None and report.state == state
    assert report.input["truncated"] == message and report.input["read_frames"] == end["read_frames"]
    if state == "truncated":
        assert (report.input["expected_frames"], report.input["read_frames"], report.frames) == (12, 7, 7)


def test_the_report_while_the_run_goes_has_every_field_in_state_running():
    seen = []
    p = pipeline(concurrent=True, sinks=[SlowCountingSink()], progress_interval_s=0.01)
    assert p.snapshot() is None
    report, error = run_with_timeout(p, Squares(40), progress=lambda status: seen.append(p.snapshot()))
    assert error is None and seen
    assert all(r.state == "running" and set(r.to_dict()) == set(report.to_dict()) for r in seen)
    assert report.state == "ended" and p.snapshot().state == "ended"


class FlatBoxDetector(SquareDetector):
    """The square, plus a box of no height on every frame: a box the tracker cannot follow."""

    def decode(self, outputs, transform):
        square = super().decode(outputs, transform)
        flat = Detections(np.array([[5.0, 40.0, 15.0, 40.0]], np.float32), [0.9], [0])
        return Detections.merge([square, flat]) if len(square) else flat


def test_what_the_tracker_drops_is_in_the_report():
    n = 12
    report, error = run_with_timeout(pipeline(detector=FlatBoxDetector()), Squares(n))
    assert error is None and report.tracker_dropped == {"zero or negative size": n}
    assert report.to_dict()["tracker_dropped"] == {"zero or negative size": n}


# -- CPU per frame and the runtime's threads ---------------------------------------------------------------


def burn(ms: float) -> None:
    """Keep this thread's CPU busy for ``ms`` milliseconds of its own CPU time."""
    end = time.thread_time() + ms / 1000.0
    while time.thread_time() < end:
        pass


class BusyDetector(SquareDetector):
    """SquareDetector whose inference costs ``own_ms`` of the calling thread's CPU and ``pool_ms`` of a helper
    thread's (a runtime's own threads), one after the other."""

    def __init__(self, own_ms: float = 2.0, pool_ms: float = 0.0) -> None:
        super().__init__()
        self.own_ms, self.pool_ms = own_ms, pool_ms

    def infer(self, x):
        burn(self.own_ms)
        if self.pool_ms:
            helper = threading.Thread(target=burn, args=(self.pool_ms,))
            helper.start()
            helper.join()
        return super().infer(x)


class BusySink(RecordingSink):
    def write(self, result):
        burn(1.0)
        super().write(result)


@pytest.mark.parametrize("concurrent", [True, False])
def test_cpu_per_frame_is_split_by_stage_and_the_runtimes_threads(concurrent):
    p = pipeline(concurrent=concurrent, sinks=[BusySink()], detector=BusyDetector(own_ms=2.0, pool_ms=1.5))
    report = p.run(Squares(30))
    cpu = report.cpu
    assert cpu["cores"] >= 1 and set(cpu["stages_ms"]) == {"capture", "inference", "decode", "tracking", "sinks"}
    assert 1.9 <= cpu["stages_ms"]["inference"] <= 4.0  # its own thread: the 2 ms burnt plus the squares' work
    assert 0.95 <= cpu["stages_ms"]["sinks"] <= 2.5
    assert 1.4 <= cpu["runtime_threads_ms"] <= 3.5  # the helper thread's 1.5 ms, outside every stage's thread
    assert cpu["children_ms"] == 0.0
    assert cpu["total_ms"] >= sum(cpu["stages_ms"].values()) + 1.4
    assert cpu["limit_fps"] == pytest.approx(cpu["cores"] * 1000 / cpu["total_ms"], rel=0.01)
    for name in ("inference", "sinks"):
        assert report.stages[name]["cpu_ms"] == pytest.approx(cpu["stages_ms"][name], rel=0.01)


class ThreadedDetector(BusyDetector):
    """A detector whose runtime threads can be set: with t threads, inference burns ``cost[t]`` ms."""

    def __init__(self, cost: dict[int, float], threads: int = 2) -> None:
        super().__init__(own_ms=cost[threads])
        self.cost, self.threads, self.set_calls = cost, threads, []

    def set_threads(self, threads: int) -> None:
        self.threads, self.own_ms = threads, self.cost[threads]
        self.set_calls.append(threads)

    def clone(self, *, threads: int) -> "ThreadedDetector":
        twin = ThreadedDetector(self.cost, threads)
        self.twins = getattr(self, "twins", []) + [twin]
        return twin


@pytest.mark.parametrize("cost, chosen, workers", [
    ({1: 1.0, 2: 3.0}, 1, 2),  # 1 x 1 and 2 x 1 tie (the other stages bound both): the more workers
    ({1: 3.0, 2: 1.0}, 2, 1),
])
def test_the_runtimes_threads_are_chosen_by_measuring_on_the_first_frames(monkeypatch, cost, chosen, workers):
    import edgecv.machine
    from edgecv.pipeline import placement

    monkeypatch.setattr(edgecv.machine, "usable_cores", lambda: 2)
    monkeypatch.setattr(placement, "WARMUP_FRAMES", 3)
    monkeypatch.setattr(placement, "CALIBRATION_FRAMES", 6)
    det = ThreadedDetector(cost)
    sink = BusySink()  # 1 ms a frame: the other stages bound a second worker's rate
    report = pipeline(sinks=[sink], detector=det, place_threads=True).run(Squares(40))
    plan = report.threads
    assert plan["chosen_by"] == "calibrated" and plan["threads"] == chosen == det.threads
    assert plan["workers"] == workers == 1 + len(getattr(det, "twins", []))
    layouts = [(c["workers"], c["threads"], c["inline"]) for c in plan["candidates"]]
    assert layouts == [(1, 1, False), (1, 2, False), (2, 1, False), (1, 1, True), (1, 2, True)]
    assert plan["others_cpu_ms"] > 0 and not plan["inline"]
    by = {(c["workers"], c["threads"]): c for c in plan["candidates"] if not c["inline"]}
    assert by[1, chosen]["predicted_fps"] > by[1, 3 - chosen]["predicted_fps"]
    assert by[1, chosen]["infer_ms"] < by[1, 3 - chosen]["infer_ms"]
    shown = f"{workers} worker{'s' * (workers > 1)} x {chosen} thread{'s' * (chosen > 1)} of 2 cores"
    assert shown in plan["why"]
    assert sink.frames == list(range(40))  # the calibration loses no frame, and the frames stay in order


class SlowSink(RecordingSink):
    def write(self, result):
        burn(4.0)
        super().write(result)


def test_the_calibration_measures_once_the_later_stages_have_caught_up(monkeypatch):
    """Inference (1 ms) outruns the sinks (4 ms), so frames wait in the queues when the calibration starts: it
    measures only once the sinks have written every frame but the one at hand, so the process's CPU time is
    inference's alone."""
    import edgecv.machine
    from edgecv.pipeline import placement

    monkeypatch.setattr(edgecv.machine, "usable_cores", lambda: 2)
    monkeypatch.setattr(placement, "WARMUP_FRAMES", 3)
    monkeypatch.setattr(placement, "CALIBRATION_FRAMES", 6)
    monkeypatch.setattr(placement, "SETTLE_S", 10.0)  # a loaded machine must not end the wait early
    sink, at_start = SlowSink(), []

    class Watching(ThreadedDetector):
        def set_threads(self, threads):
            if not at_start:
                at_start.append((len(sink.results), self.calls["infer"]))
            super().set_threads(threads)

    det = Watching({1: 1.0, 2: 1.0})
    report = pipeline(sinks=[sink], detector=det, place_threads=True).run(Squares(30))
    assert report.threads["chosen_by"] == "calibrated"
    (written, inferred), = at_start
    assert inferred >= 9 and written == inferred - 1, at_start


def test_a_second_inference_worker_is_started_when_the_calibration_predicts_it_faster(monkeypatch):
    """Two threads do not speed this model up (3 ms either way), so one worker per core doubles the stage's rate."""
    import edgecv.machine
    from edgecv.pipeline import placement

    monkeypatch.setattr(edgecv.machine, "usable_cores", lambda: 2)
    monkeypatch.setattr(placement, "WARMUP_FRAMES", 3)
    monkeypatch.setattr(placement, "CALIBRATION_FRAMES", 6)
    det = ThreadedDetector({1: 3.0, 2: 3.0})
    sink = RecordingSink()
    report = pipeline(sinks=[sink], detector=det, place_threads=True).run(Squares(80))
    plan = report.threads
    assert (plan["workers"], plan["threads"]) == (2, 1), plan
    by = {(c["workers"], c["threads"]): c["predicted_fps"] for c in plan["candidates"]}
    assert by[2, 1] > 1.03 * max(by[1, 1], by[1, 2]), by
    assert "2 workers x 1 thread of 2 cores" in plan["why"]
    (twin,) = det.twins
    assert twin.threads == 1 and twin.calls["infer"] > 0 and det.calls["infer"] > 0
    assert sink.frames == list(range(80))  # in capture order, none lost
    assert report.stages["inference"]["frames"] == 80


class JitteryDetector(SquareDetector):
    """Inference that takes 0 to 3 ms at random, so that two workers finish frames out of order."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.rng, self.threads, self.twins = np.random.default_rng(seed), 1, []

    def infer(self, x):
        time.sleep(float(self.rng.uniform(0, 0.003)))
        return super().infer(x)

    def clone(self, *, threads: int) -> "JitteryDetector":
        twin = JitteryDetector(len(self.twins) + 1)
        self.twins.append(twin)
        return twin


def test_parallel_inference_workers_give_the_tracks_of_one_worker_in_capture_order():
    one, two = RecordingSink(), RecordingSink()
    pipeline(sinks=[one], detector=JitteryDetector()).run(Squares(120, absent=range(40, 44)))
    det = JitteryDetector()
    report = pipeline(sinks=[two], detector=det, workers=3).run(Squares(120, absent=range(40, 44)))
    assert len(det.twins) == 2 and all(t.calls["infer"] > 0 for t in det.twins) and det.calls["infer"] > 0
    assert two.frames == one.frames == list(range(120))
    for a, b in zip(one.results, two.results):
        np.testing.assert_array_equal(a.detections.tracker_id, b.detections.tracker_id)
        np.testing.assert_allclose(a.detections.xyxy, b.detections.xyxy, atol=1e-6)
    assert report.threads["workers"] == 3 and report.threads["chosen_by"] == "given"


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_workers_must_be_a_positive_integer(workers):
    with pytest.raises(ConfigError, match=r"pipeline workers: expected an integer >= 1, got"):
        PipelineOptions(workers=workers)


@pytest.mark.parametrize("measured, others_ms, inline_ms, cores, best", [
    # SSD-like: one thread per worker, no waiting on a sibling; inline, the later stages would slow inference
    ({1: (7.5, 7.5), 2: (3.8, 9.0)}, 4.9, 2.0, 2, (2, 1, False)),
    ({1: (0.3, 0.3), 2: (0.2, 0.4)}, 6.8, None, 2, (2, 1, False)),  # a tiny model: the cores bound all alike
    ({1: (0.3, 0.3), 2: (0.2, 0.4)}, 6.8, 1.4, 2, (1, 1, True)),    # ... so no thread hand-offs: inline
    ({1: (0.3, 0.3), 2: (0.2, 0.4)}, 6.8, 1.4, 1, (1, 1, True)),    # one core: one thread does it all
    ({1: (0.3, 0.3), 2: (0.2, 0.4)}, 1.0, 1.4, 2, (2, 1, False)),   # inline at 588/s, two workers at 1333/s
    ({1: (20.0, 20.0), 2: (10.0, 20.0)}, 1.0, None, 2, (2, 1, False)),  # a tie in rate and threads: more workers
    ({1: (8.0, 8.0), 2: (4.0, 8.0), 4: (2.2, 9.0)}, 1.0, 0.5, 4, (4, 1, False)),
    # SSD as calibrated on vtest: inline x 2 threads (98.4/s) ties with 2 x 1 (99.5/s) but ran at 0.85x of it,
    # its runtime threads idle while it decodes, tracks and writes: inline wins a tie on one thread only
    ({1: (14.9, 15.1), 2: (8.0, 15.0)}, 5.01, 2.16, 2, (2, 1, False)),
])
def test_the_fastest_layout_wins_and_a_tie_goes_to_inline_then_more_workers_then_fewer_threads(
        measured, others_ms, inline_ms, cores, best):
    from edgecv.pipeline.placement import best_layout, layout_rows

    rows = layout_rows(measured, others_ms=others_ms, cores=cores, inline_ms=inline_ms)
    chosen = best_layout(rows)
    assert (chosen["workers"], chosen["threads"], chosen["inline"]) == best, rows
    assert len(rows) == len({(r["workers"], r["threads"], r["inline"]) for r in rows})


class SlowSquares(Squares):
    """Squares whose every frame costs ``ms`` of the capture thread's CPU, with the interpreter's lock released
    as a video decoder releases it (hashing 64 KB at a time)."""

    def __init__(self, n: int, ms: float) -> None:
        super().__init__(n)
        self.ms = ms

    def image(self, i: int) -> np.ndarray:
        burn_unlocked(self.ms)
        return super().image(i)


def burn_unlocked(ms: float, block: bytes = bytes(1 << 16)) -> None:
    """Keep this thread's CPU busy for ``ms`` milliseconds with the interpreter's lock released, as decoders
    and runtimes release it (hashing 64 KB at a time)."""
    import hashlib

    end = time.thread_time() + ms / 1000.0
    while time.thread_time() < end:
        hashlib.sha256(block).digest()


class UnlockedDetector(ThreadedDetector):
    """ThreadedDetector whose inference releases the interpreter's lock while it burns, as a runtime does."""

    def infer(self, x):
        burn_unlocked(self.own_ms)
        return SquareDetector.infer(self, x)


class ThreadNoting(RecordingSink):
    """RecordingSink that notes the thread each frame was written from."""

    def write(self, result):
        self.thread_names = getattr(self, "thread_names", []) + [threading.current_thread().name]
        super().write(result)


def test_a_cheap_model_bound_by_the_cores_runs_the_later_stages_in_its_inference_thread(monkeypatch):
    """Capture costs 3 ms a frame, inference 0.5: every layout is bound by the cores alike, so the calibration
    goes inline (no hand-offs between stage threads), once the frames already handed off have been written.
    The tracks are those of a sequential run."""
    import edgecv.machine
    from edgecv.pipeline import placement

    monkeypatch.setattr(edgecv.machine, "usable_cores", lambda: 2)
    monkeypatch.setattr(placement, "WARMUP_FRAMES", 3)
    monkeypatch.setattr(placement, "CALIBRATION_FRAMES", 6)
    alone = RecordingSink()
    pipeline(concurrent=False, sinks=[alone]).run(Squares(60, absent=range(30, 33)))
    sink = ThreadNoting()
    source = SlowSquares(60, 3.0)
    source.absent = set(range(30, 33))
    report = pipeline(sinks=[sink], detector=ThreadedDetector({1: 0.5, 2: 0.5}), place_threads=True).run(source)
    plan = report.threads
    assert plan["chosen_by"] == "calibrated" and plan["inline"] and plan["workers"] == 1, plan["why"]
    assert plan["why"].startswith(f"inline x {plan['threads']} thread")
    assert per_frame(sink) == per_frame(alone)  # every frame, in order, with the same tracks and events
    names = sink.thread_names
    switch = names.index("stage-inference-0")
    assert switch >= placement.WARMUP_FRAMES + placement.CALIBRATION_FRAMES
    assert set(names[:switch]) == {"stage-sinks"} and set(names[switch:]) == {"stage-inference-0"}
    assert report.stages["sinks"]["frames"] == report.stages["decode"]["frames"] == 60


def test_the_model_is_timed_with_capture_held_so_its_cpu_is_its_own(monkeypatch):
    """Capture reads without pause (the newest-frame policy), 3 CPU ms a frame, beside a 0.5 ms model, both
    with the interpreter's lock released: the process's CPU over the timed runs is the model's alone. Timed beside
    capture, each run took 1.19 ms here, and CI once saw two thread counts of one model predicted 326.9 and 373
    frames/s."""
    import edgecv.machine
    from edgecv.pipeline import placement

    monkeypatch.setattr(edgecv.machine, "usable_cores", lambda: 2)
    monkeypatch.setattr(placement, "WARMUP_FRAMES", 3)
    monkeypatch.setattr(placement, "CALIBRATION_FRAMES", 6)
    report = pipeline(detector=UnlockedDetector({1: 0.5, 2: 0.5}), place_threads=True).run(
        SlowSquares(80, 3.0), capture=CaptureOptions(policy="latest"))
    assert report.threads["chosen_by"] == "calibrated", report.threads["why"]
    # each run's preparation and Python add about 0.1 ms
    for row in report.threads["candidates"]:
        assert 0.5 <= row["cpu_ms"] <= 0.8, report.threads["candidates"]


@pytest.mark.parametrize("concurrent, place, how", [(True, False, "given"), (False, True, "sequential")])
def test_threads_are_not_calibrated_when_given_or_sequential(concurrent, place, how):
    det = ThreadedDetector({1: 1.0, 2: 1.0})
    report = pipeline(concurrent=concurrent, detector=det, place_threads=place).run(Squares(30))
    assert report.threads["chosen_by"] == how and report.threads["threads"] == 2 and det.set_calls == []


def test_predicted_fps_is_the_lower_of_the_stages_rate_and_what_the_cores_allow():
    from edgecv.pipeline.placement import candidate_threads, predicted_fps

    assert predicted_fps(infer_ms=10.0, cpu_ms=10.0, others_ms=2.0, cores=2) == 100.0  # the stage is the bottleneck
    assert predicted_fps(infer_ms=2.0, cpu_ms=8.0, others_ms=12.0, cores=2) == 100.0  # the cores are
    assert candidate_threads(1) == [1] and candidate_threads(4) == [1, 2, 3, 4] and candidate_threads(6) == [1, 2, 3, 4, 6]


@pytest.mark.parametrize("later_at_start, ahead_at_start, reads_per_frame", [
    (10, 1, 1),  # every stage keeps up with inference
    (2, 1, 1),  # the stages after inference are 8 frames behind at the window's start and caught up at its end
    (10, 5, 1),  # capture's buffer is full at the window's start and drains: it reads fewer frames than it hands on
    (10, 1, 3),  # a stride of 3: capture reads three frames for each it delivers
])
def test_each_stage_cpu_per_frame_is_its_own_cpu_over_its_own_frames(monkeypatch, later_at_start, ahead_at_start,
                                                                      reads_per_frame):
    """Capture costs 3 ms a delivered frame and each later stage 0.2, the encoder 1 ms. Neither a lag of the
    later stages at the window's start nor capture's buffer draining in the window (both seen under CI load)
    spreads a stage's CPU over frames it did not handle, and the reads a stride leaves out count."""
    from types import SimpleNamespace

    from edgecv.pipeline import placement

    monkeypatch.setattr(placement, "WARMUP_FRAMES", 10)
    monkeypatch.setattr(placement, "CALIBRATION_FRAMES", 30)
    stats = {name: SimpleNamespace(cpu_s=0.0, count=0) for name in placement.OTHER_STAGES}
    encoder = SimpleNamespace(cpu_s=0.0, child_cpu_s=lambda: encoder.cpu_s)

    def done(captured: int, later: int) -> None:
        reads = captured * reads_per_frame
        stats["capture"].count, stats["capture"].cpu_s = reads, reads * 3.0 / reads_per_frame / 1000.0
        for name in placement.LATER_STAGES:
            stats[name].count, stats[name].cpu_s = later, later * 0.2 / 1000.0
        encoder.cpu_s = later * 1.0 / 1000.0

    placer = placement.ThreadPlacer(ThreadedDetector({1: 0.1, 2: 0.1}), cores=2, stats=stats, sinks=[encoder],
                                    reads_per_frame=lambda: float(reads_per_frame))
    image = Squares(1).image(0)
    for frame in range(1, 41):
        done(frame + (ahead_at_start if frame == 10 else 1), later_at_start if frame == 10 else frame)
        placer.step(image)
    assert placer.plan.chosen_by == "calibrated"
    assert placer.plan.others_cpu_ms == pytest.approx(3.0 + 3 * 0.2 + 1.0, abs=1e-6)


# -- swapping the detector, skipped frames -------------------------------------------------------------------
class ShiftedDetector(SquareDetector):
    """SquareDetector whose boxes are ``dx`` px to the right, and whose prepare takes ``delay_s`` (so that frames
    are in flight when a swap happens); its transform names it, so a frame decoded by the other detector fails.
    ``skip``: frames whose inference raises FrameSkipped."""

    def __init__(self, dx: float, *, delay_s: float = 0.0, skip=()) -> None:
        super().__init__()
        self.dx, self.delay_s, self.skip = dx, delay_s, set(skip)

    def prepare(self, image):
        time.sleep(self.delay_s)
        return image.astype(np.float32), {"shape": image.shape, "dx": self.dx}

    def infer(self, x):
        out = super().infer(x)
        frame = (int(out[0][0]) - square_x(0)) // 3 if out else None  # the square's place tells the frame
        if frame in self.skip:
            from edgecv.errors import FrameSkipped

            raise FrameSkipped(f"frame {frame} skipped")
        return out

    def decode(self, outputs, transform):
        assert transform["dx"] == self.dx, "decoded by a detector that did not run the frame"
        if not outputs:
            return Detections.empty()
        return Detections(outputs[0][None] + np.float32([self.dx, 0, self.dx, 0]), [0.9], [0])


class SwappingSink(RecordingSink):
    """Swaps ``pipeline``'s detector to ``new`` once frame ``at`` is written."""

    def __init__(self, at: int, new) -> None:
        super().__init__()
        self.at, self.new, self.pipeline = at, new, None

    def write(self, result):
        super().write(result)
        if result.frame.index == self.at:
            self.pipeline.use_detector(self.new)


@pytest.mark.parametrize("concurrent", [True, False])
def test_a_detector_swapped_between_frames_keeps_the_tracks_and_decodes_each_frame_with_its_own(concurrent):
    for tracker in ("sort", None):
        sink = SwappingSink(5, ShiftedDetector(1.0, delay_s=0.005))
        p = Pipeline(ShiftedDetector(0.0, delay_s=0.005), tracker=make_tracker(tracker, fps=FPS) if tracker else None,
                     sinks=[sink], options=PipelineOptions(concurrent=concurrent))
        sink.pipeline = p
        report = p.run(Squares(30))
        assert sink.frames == list(range(30)) and report.skipped == 0
        if tracker:  # the same track across the swap
            assert {int(r.detections.tracker_id[0]) for r in sink.results} == {1}
            continue
        shifts = [float(r.detections.xyxy[0, 0]) - square_x(r.frame.index) for r in sink.results]
        first_new = shifts.index(1.0)
        assert set(shifts[:first_new]) == {0.0} and set(shifts[first_new:]) == {1.0}  # one switch, between frames
        # frames already past inference finish on the old detector (the queues hold at most 2 each)
        assert 5 < first_new <= 6 + (3 * 2 if concurrent else 0)


@pytest.mark.parametrize("concurrent", [True, False])
def test_frames_a_detector_skips_get_no_result_and_the_run_goes_on(concurrent):
    sink = RecordingSink()
    p = pipeline(concurrent=concurrent, sinks=[sink], detector=ShiftedDetector(0.0, skip={3, 4, 10}))
    report = p.run(Squares(20))
    assert sink.frames == [i for i in range(20) if i not in (3, 4, 10)]
    assert report.state == "ended" and report.skipped == 3 and report.frames == 17 and report.error is None
    assert {int(r.detections.tracker_id[0]) for r in sink.results} == {1}


def test_a_run_with_a_tracker_imports_the_solvers_before_its_first_frame():
    """The assignment solvers cost 0.6-0.8 s to import: paid before the first frame, not in the middle of a
    live stream at the first frame whose boxes compete (one square here: they never do)."""
    import subprocess

    code = (
        "import sys\n"
        "from tests.edgecv.pipeline.test_runner import Squares, pipeline\n"
        "assert 'scipy.optimize' not in sys.modules\n"
        "seen = []\n"
        "class Sink:\n"
        "    name = 'probe'\n"
        "    def open(self, info): pass\n"
        "    def write(self, r): seen.append('scipy.optimize' in sys.modules)\n"
        "    def close(self): pass\n"
        "pipeline(sinks=[Sink()]).run(Squares(5))\n"
        "assert seen == [True] * 5, seen\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(Path(__file__).resolve().parents[3]))


class PolicySink(RecordingSink):
    """Records the scheduling policy of the thread that writes each frame."""

    def __init__(self) -> None:
        super().__init__()
        self.policies = set()

    def write(self, result):
        self.policies.add(os.sched_getscheduler(0))
        super().write(result)


class PolicySquares(Squares):
    """Squares that record the scheduling policy of the thread reading them."""

    def __iter__(self):
        self.policies = {os.sched_getscheduler(0)}
        yield from super().__iter__()


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
def test_a_concurrent_run_works_under_batch_scheduling_and_leaves_the_callers_thread_alone():
    before = os.sched_getscheduler(0)
    sink, source = PolicySink(), PolicySquares(12)
    report = pipeline(concurrent=True, sinks=[sink]).run(source)
    assert report.frames == 12
    assert source.policies == {os.SCHED_BATCH}  # the capture thread
    assert sink.policies == {os.SCHED_BATCH}  # the stage threads
    assert os.sched_getscheduler(0) == before
