"""The pipeline: capture -> preprocess + inference -> decode + NMS -> tracking -> sinks, each stage in its
own thread with bounded queues between them, so the frame rate approaches the slowest stage's, not the sum.

Every stage is timed per frame, with the depth of the queue in front of it; each frame's end-to-end latency
runs from the moment capture read it to the moment its tracked result existed (``latency_ms``) and to the
moment the sinks had written it (``written_ms``). ``concurrent=False`` runs the same stages one after the
other in the calling thread (the plain loop the concurrent one is measured against).

The caller's thread waits, calls ``progress`` a few times a second, and can stop the run by setting the
``stop`` event (the CLI does on Ctrl-C and SIGTERM): capture stops, frames already taken are finished, and
every sink is closed. A failure in any stage stops the run and is raised from :meth:`Pipeline.run` once all
sinks are closed, except :class:`~edgecv.errors.FrameSkipped`: that frame gets no result (counted in the
report's ``skipped``) and the run goes on. :meth:`Pipeline.use_detector` swaps the detector between two
frames. Before closing, every sink with an ``end(record)`` method is told how the run ended (the JSON lines
get a last line ``{"end": "ended", ...}``); a file without it is from a run that was killed.
:meth:`Pipeline.snapshot` gives the report of a run while it goes (what ``summary.json`` is rewritten
from).

Example:
    >>> pipeline = Pipeline(Detector("model.onnx"), tracker=make_tracker("ocsort", fps=30),
    ...                     sinks=[JsonlSink("out/tracks.jsonl")])                 # doctest: +SKIP
    >>> report = pipeline.run(open_source("synthetic"))                            # doctest: +SKIP
    >>> report.fps, report.stages["inference"]["median_ms"]                        # doctest: +SKIP
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from edgecv.deps import optional
from edgecv.detection.detections import Detections
from edgecv.errors import ConfigError, FrameSkipped
from edgecv.machine import batch_scheduling
from edgecv.pipeline.capture import Capture, CaptureOptions, Captured
from edgecv.pipeline.events import TrackEvent, TrackEvents
from edgecv.pipeline.stats import Series, StageStats
from edgecv.sources import Frame, FrameSource

log = logging.getLogger(__name__)

STAGES = ("inference", "decode", "tracking", "sinks")
_END = object()


@dataclass(frozen=True)
class PipelineOptions:
    """``concurrent``: one thread per stage (False: all stages in the caller's thread, one frame at a time).
    ``place_threads``: in a concurrent run, choose the runtime's threads and the inference workers on the first
    frames (:mod:`edgecv.pipeline.placement`; the detector needs ``set_threads`` and ``clone``).
    ``workers``: inference workers in a concurrent run, each with its own copy of the model, taking frames in
    turn (results go on in capture order); the calibration may raise it. ``queue_size``: frames that may wait
    between two stages. ``progress_interval_s``: how often ``progress`` is called. ``window``: how many recent
    frames the per-stage and latency figures keep. ``switch_interval_s``: the interpreter's thread switch
    interval while a concurrent run lasts (``sys.setswitchinterval``; None leaves it): the stages hand the GIL
    over sooner than the default 5 ms, which was worth +9% fps for the built-in detector on vtest.avi.
    ``opencv_threads``: OpenCV's own threads while a concurrent run lasts (``cv2.setNumThreads``; None leaves
    them): the stages already keep the cores busy, and OpenCV's pool splitting each resize and colour conversion
    cost the built-in detector 0.55-0.9 CPU ms a frame on vtest.avi (7-10%) and 3-5% of its frames/s
    (``benchmarks/pipeline_layouts.py``)."""

    concurrent: bool = True
    place_threads: bool = False
    workers: int = 1
    queue_size: int = 2
    progress_interval_s: float = 0.25
    window: int = 10_000
    switch_interval_s: float | None = 0.0002
    opencv_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.switch_interval_s is not None and not 0 < self.switch_interval_s <= 0.1:
            raise ConfigError(f"pipeline switch_interval_s: expected a number in (0, 0.1] or None, "
                              f"got {self.switch_interval_s!r}")
        if self.opencv_threads is not None and (not isinstance(self.opencv_threads, int)
                                                or isinstance(self.opencv_threads, bool) or self.opencv_threads < 1):
            raise ConfigError(f"pipeline opencv_threads: expected an integer >= 1 or None, got {self.opencv_threads!r}")
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1:
            raise ConfigError(f"pipeline workers: expected an integer >= 1, got {self.workers!r}")
        if not isinstance(self.queue_size, int) or self.queue_size < 1:
            raise ConfigError(f"pipeline queue_size: expected an integer >= 1, got {self.queue_size!r}")
        if not self.progress_interval_s > 0:
            raise ConfigError(f"pipeline progress_interval_s: expected > 0, got {self.progress_interval_s!r}")


@dataclass
class FrameResult:
    """One processed frame: its tracks (``detections`` with ``tracker_id``; without a tracker, the raw
    detections), the events they made, and its timing (``perf_counter`` seconds)."""

    frame: Frame
    seq: int
    detections: Detections
    events: list[TrackEvent]
    captured_at: float
    result_at: float
    time_s: float | None = None

    @property
    def latency_ms(self) -> float:
        return (self.result_at - self.captured_at) * 1000.0


@dataclass
class _Packet:
    item: Captured
    x: Any = None
    transform: Any = None
    outputs: Any = None
    detections: Detections | None = None
    result: FrameResult | None = None
    detector: Any = None  # the detector that prepared and ran the frame decodes it (one may be swapped in meanwhile)
    skipped: bool = False  # the detector gave up on this frame (FrameSkipped): no result, the run goes on


@dataclass
class RunStatus:
    """What ``progress`` sees: frames done, frames dropped so far, elapsed seconds, recent fps and latency,
    the capture state."""

    frames: int
    dropped: int
    elapsed_s: float
    fps: float | None
    latency_ms: float | None
    state: str
    total: int | None


@dataclass
class RunReport:
    """The figures of one run (``to_dict()`` for JSON). ``state`` is how it ended: ``ended`` (the source
    finished), ``truncated`` (a file source finished short of the frames it declares), ``stopped`` (stop was
    asked), ``lost`` (a live source could not be reopened); ``running`` in a :meth:`Pipeline.snapshot`.
    ``input``: the frames the source declared (``expected_frames``, None when unknown or live) and gave
    (``read_frames``), the images it could not decode (``undecodable``, the first ten named in
    ``undecodable_files``) and the ``truncated`` message (None unless the state is ``truncated``).
    ``tracker_dropped``: what the tracker refused (boxes it could not use, tracks whose state stopped being
    finite), by reason (:attr:`edgecv.tracking.track.Tracker.dropped`)."""

    source: dict[str, Any]
    state: str
    frames: int
    wall_s: float
    fps: float
    stages: dict[str, dict[str, Any]]
    latency_ms: dict[str, Any]
    written_ms: dict[str, Any]
    capture: dict[str, Any]
    concurrent: bool
    counts: dict[str, Any] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    tracks: int = 0
    detections: dict[str, Any] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    error: str | None = None
    input: dict[str, Any] = field(default_factory=dict)
    tracker_dropped: dict[str, int] = field(default_factory=dict)  # input boxes and tracks dropped, by reason
    skipped: int = 0  # frames the detector gave up on (FrameSkipped): captured, never given a result
    cpu: dict[str, Any] = field(default_factory=dict)  # CPU time per frame, by thread group (see cpu_report)
    threads: dict[str, Any] = field(default_factory=dict)  # the runtime's threads and how they were chosen

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Pipeline:
    """Detection, tracking, events and sinks over a frame source (see the module docstring).

    ``detector``: an :class:`~edgecv.detection.detector.Detector`. ``tracker``: a tracker from
    :func:`edgecv.tracking.make_tracker`, or None to only detect. ``counters``: line and zone counters
    (:mod:`edgecv.pipeline.zones`). ``sinks``: objects with ``open(info)``, ``write(result)`` and ``close()``
    (:mod:`edgecv.pipeline.sinks`). ``classes``: the class ids to keep (None keeps every class).
    ``record_frames``: keep the index of every processed frame in ``processed`` (for scoring against ground
    truth; off by default, since it grows with the run). ``thresholds``: a
    :class:`~edgecv.tracking.thresholds.ThresholdFit` of ``tracker``, fed each frame's detection scores before
    the tracker sees them. All other state stays within fixed memory.

    The tracker's input is counted in the report's ``detections``: ``count``, ``frames`` (with at least one),
    ``max_score`` and ``startable`` (those scoring at least the tracker's :attr:`start_score` in force then).
    """

    def __init__(self, detector: Any, *, tracker: Any = None, counters: Sequence[Any] = (), sinks: Sequence[Any] = (),
                 classes: Sequence[int] | None = None, record_frames: bool = False, thresholds: Any = None,
                 options: PipelineOptions = PipelineOptions()) -> None:
        self.detector = detector
        self.thresholds = thresholds
        self.record_frames = record_frames
        self.classes = None if classes is None else np.asarray(sorted(set(classes)), np.int64)
        self.tracker = tracker
        self.counters = list(counters)
        self.sinks = list(sinks)
        self.options = options
        self.reset()

    def reset(self) -> None:
        """Forget tracks, events, counts and figures, for a new run."""
        if self.tracker is not None:
            self.tracker.reset()
        if self.thresholds is not None:
            self.thresholds.start()
        self.seen = {"count": 0, "frames": 0, "max_score": None, "startable": 0}
        for counter in self.counters:
            counter.reset()
        self.track_events = TrackEvents()
        self.stats = {name: StageStats(name, self.options.window) for name in STAGES}
        self.latencies = Series(self.options.window)
        self.written = Series(self.options.window)
        self.event_counts: collections.Counter[str] = collections.Counter()
        self._last_time: float | None = None
        self._last_frame = 0
        self._done = 0
        self.skipped = 0  # frames the detector gave up on
        # source indices of the frames processed, in order (only with record_frames: it grows with the run)
        self.processed: list[int] = []
        self._current: tuple[dict[str, Any], Capture, float] | None = None  # the run going on, for snapshot()
        self._cpu0 = cpu_clock()
        self._placer: Any = None
        self._running = False

    # -- the stages ---------------------------------------------------------------------------------------
    def use_detector(self, detector: Any) -> None:
        """Run the frames prepared from now on with ``detector`` (a frame already prepared is decoded by the
        detector that ran it): a swap between two frames, with tracks, events and figures going on."""
        self.detector = detector

    def _infer(self, p: _Packet, detector: Any = None) -> None:
        det = p.detector = self.detector if detector is None else detector
        try:
            p.x, p.transform = det.prepare(p.item.frame.image)
            p.outputs = det.infer(p.x)
        except FrameSkipped as exc:
            p.skipped = True
            log.debug("frame %d skipped: %s", p.item.frame.index, exc)
        p.x = None
        if detector is None and self._placer is not None and self._placer.pending and not p.skipped:
            self._placer.step(p.item.frame.image)

    def _decode(self, p: _Packet) -> None:
        if not p.skipped:
            try:
                dets = p.detector.decode(p.outputs, p.transform)
            except FrameSkipped as exc:
                p.skipped = True
                log.debug("frame %d skipped: %s", p.item.frame.index, exc)
            else:
                p.detections = dets if self.classes is None else dets[np.isin(dets.class_id, self.classes)]
        p.outputs = p.detector = None

    def _frame_time(self, frame: Frame, fps: float | None) -> float | None:
        if frame.time_ms is None:
            return None
        t = frame.time_ms / 1000.0
        if self._last_time is not None and t <= self._last_time:  # a repeated or rewound container timestamp
            t = self._last_time + (1.0 / fps if fps else 1e-3)
        self._last_time = t
        return t

    def _track(self, p: _Packet, fps: float | None) -> None:
        if p.skipped:
            return
        frame, dets = p.item.frame, p.detections
        previous = self._last_time
        t = self._frame_time(frame, fps)
        self._last_frame = frame.index
        if self.record_frames:
            self.processed.append(frame.index)
        events: list[TrackEvent] = []
        if self.tracker is not None and p.item.resumed and previous is not None and t is not None \
                and t - previous > getattr(self.tracker.options, "max_lost_s", 1.0):
            # the source came back after an outage longer than a track may stay lost: whatever is seen now
            # is a new track, with a new id (the tracker's counter goes on)
            ended = [tr.track_id for tr in self.tracker.end_tracks()]
        else:
            ended = []
        if self.tracker is not None:
            if self.thresholds is not None and self.thresholds.pending:
                self.thresholds.observe(dets.confidence, t)
            self._count(dets.confidence)
            dets = self.tracker.update(dets, timestamp=t) if t is not None else self.tracker.update(dets)
            removed = ended + [tr.track_id for tr in self.tracker.removed]
            events += self.track_events.update(dets, frame=frame.index, time_s=t, removed_ids=removed)
            for counter in self.counters:
                events += counter.update(dets, frame=frame.index, time_s=t)
        self.event_counts.update(e.kind for e in events)
        p.result = FrameResult(frame, p.item.seq, dets, events, p.item.captured_at, time.perf_counter(), t)
        self.latencies.add(p.result.latency_ms)

    def _count(self, conf: np.ndarray) -> None:
        """Count the tracker's input (for the report's ``detections``)."""
        conf = conf[np.isfinite(conf)]
        if not len(conf):
            return
        seen = self.seen
        seen["count"] += len(conf)
        seen["frames"] += 1
        top = float(conf.max())
        seen["max_score"] = top if seen["max_score"] is None else max(seen["max_score"], top)
        start = self.tracker.start_score
        seen["startable"] += len(conf) if start is None else int((conf >= start).sum())

    def _sinks(self, p: _Packet) -> None:
        if p.skipped:
            self.skipped += 1
            return
        for sink in self.sinks:
            sink.write(p.result)
        self.written.add((time.perf_counter() - p.item.captured_at) * 1000.0)
        self._done += 1

    def _stage_fns(self, fps: float | None) -> list[tuple[str, Callable[[_Packet], None]]]:
        return [("inference", self._infer), ("decode", self._decode),
                ("tracking", lambda p: self._track(p, fps)), ("sinks", self._sinks)]

    # -- running ------------------------------------------------------------------------------------------
    def run(self, source: FrameSource, *, capture: CaptureOptions = CaptureOptions(),
            stop: threading.Event | None = None, progress: Callable[[RunStatus], None] | None = None) -> RunReport:
        """Process ``source`` until it ends, ``stop`` is set, or a live source is lost; returns the figures.
        Sinks are opened first and always closed; a stage's failure is raised after that. Each run starts
        from :meth:`reset` (no tracks, no figures); identities start again from 1."""
        self.reset()
        if self.tracker is not None:
            from edgecv.tracking.association import preload

            preload()  # before the first frame, not at the first frame whose boxes compete (a 0.6-0.8 s stall)
        stop = stop or threading.Event()
        cap = Capture(source, options=capture)
        info = {"kind": source.kind, "text": source.text, "name": source.name, "fps": source.fps,
                "size": list(source.size) if source.size else None, "live": source.live, "length": source.length,
                "labels": list(self.detector.labels or ()), "policy": cap.policy}
        opened: list[Any] = []
        failure: list[BaseException] = []
        start = time.perf_counter()
        self._cpu0 = cpu_clock()
        self._placer = self._thread_placer(cap)
        self._current, self._running = (info, cap, start), True
        try:
            for sink in self.sinks:
                sink.open(info)
                opened.append(sink)
            if self.options.concurrent:
                cap.start()
            if self.options.concurrent:
                with SWITCH_INTERVAL.held(self.options.switch_interval_s), \
                        OPENCV_THREADS.held(self.options.opencv_threads):
                    self._run_concurrent(cap, source.fps, stop, failure, progress, start)
            else:
                self._run_sequential(cap, source.fps, stop, failure, progress, start)
        except BaseException as exc:
            failure.append(exc)
        finally:
            cap.stop()
            cap.join(timeout=10.0)
            if self.tracker is not None and not failure:
                t = self._last_time
                for e in self.track_events.finish(frame=self._last_frame, time_s=t):
                    self.event_counts[e.kind] += 1
            record = self._end_record(cap, failure)
            for sink in opened:
                try:
                    if hasattr(sink, "end"):
                        sink.end(record)
                except BaseException as exc:
                    failure.append(exc)
                finally:
                    try:
                        sink.close()
                    except BaseException as exc:
                        failure.append(exc)
            self._running = False
        wall = time.perf_counter() - start
        if failure:
            raise failure[0]
        if cap.state == "failed" and cap.error is not None:
            raise cap.error
        return self._report(info, cap, wall)

    def _thread_placer(self, cap: Capture) -> Any:
        """The calibration of the runtime's threads for this run, or None (not asked, sequential, one core)."""
        from edgecv.machine import usable_cores

        cores = usable_cores()
        if not (self.options.place_threads and self.options.concurrent and cores > 1
                and hasattr(self.detector, "set_threads") and getattr(self.detector, "threads", None)):
            return None
        from edgecv.pipeline.placement import ThreadPlacer

        return ThreadPlacer(self.detector, cores=cores, stats={"capture": cap.read_stats, **self.stats},
                             sinks=self.sinks, reads_per_frame=cap.reads_per_frame,
                             pause=cap.paused)

    def _thread_plan(self, cap: Capture) -> dict[str, Any]:
        if self._placer is not None:
            return self._placer.plan.to_dict()
        threads = getattr(self.detector, "threads", None)
        how = "sequential" if not self.options.concurrent else "given"
        workers = self.options.workers if self.options.concurrent else 1
        return {"threads": threads, "workers": workers, "inline": False, "chosen_by": how, "why": "",
                "others_cpu_ms": None, "candidates": []}

    def _end_record(self, cap: Capture, failure: list[BaseException]) -> dict[str, Any]:
        """How the run ended, for the sinks' ``end``: state, frames processed, frames the source declared and
        gave, and the message that explains a ``truncated`` or ``failed`` end."""
        src = cap.source
        error = failure[0] if failure else cap.error if cap.state in ("failed", "lost") else None
        state = "failed" if failure else cap.state if cap.finished else "ended"
        message = str(error) if error is not None else src.truncated if state == "truncated" else None
        return {"end": state, "frames": self._done, "expected_frames": None if src.live else src.length,
                "read_frames": cap.stats.read, "message": message}

    def snapshot(self) -> RunReport | None:
        """The report of the current (or last) run with the figures so far, in state ``running`` until every
        sink is closed; None before the first run. Safe to call from ``progress``."""
        if self._current is None:
            return None
        info, cap, start = self._current
        report = self._report(info, cap, time.perf_counter() - start)
        if self._running:
            report.state = "running"
        return report

    def stage_stats(self) -> dict[str, StageStats]:
        """Each stage's figures (with their histograms) of the current or last run, capture first."""
        cap = self._current[1] if self._current is not None else None
        return {**({"capture": cap.read_stats} if cap is not None else {}), **self.stats}

    def _status(self, cap: Capture, start: float, total: int | None) -> RunStatus:
        recent = self.written.values()[-30:]
        elapsed = time.perf_counter() - start
        fps = self._done / elapsed if elapsed > 0 and self._done else None
        return RunStatus(self._done, cap.stats.dropped, elapsed, fps,
                         float(np.median(recent)) if recent.size else None, cap.state, total)

    def _run_sequential(self, cap: Capture, fps, stop, failure, progress, start) -> None:
        stages = self._stage_fns(fps)
        total = cap.options.max_frames or cap.source.length
        last = 0.0
        for item in cap.inline():
            p = _Packet(item)
            for name, fn in stages:
                t0, c0 = time.perf_counter(), time.thread_time()
                fn(p)
                self.stats[name].add((time.perf_counter() - t0) * 1000.0, 0, (time.thread_time() - c0) * 1000.0)
            if progress and time.perf_counter() - last >= self.options.progress_interval_s:
                last = time.perf_counter()
                progress(self._status(cap, start, total))
            if stop.is_set():
                cap.stop()

    def _run_concurrent(self, cap: Capture, fps, stop, failure, progress, start) -> None:
        stages = self._stage_fns(fps)
        queues = [queue.Queue(maxsize=self.options.queue_size) for _ in stages[1:]]
        halt = threading.Event()  # a stage failed: everyone drains and ends
        in_order = _InOrder(queues[0])  # the inference workers' results, in capture order
        pool = {"live": 0, "started": 0}  # inference workers running, and started
        pool_lock = threading.Lock()
        threads: list[threading.Thread] = []
        inline = {"on": False}  # the calibration chose one thread for inference and the stages after it

        def feed() -> Any:
            while True:
                if stop.is_set() or halt.is_set():
                    cap.stop()
                item = cap.get(timeout=0.25)
                if item is not None:
                    return _Packet(item)
                if cap.finished:
                    return _END

        def fail(exc: BaseException) -> None:
            failure.append(exc)
            halt.set()
            cap.stop()

        def worker(index: int, fn: Callable[[_Packet], None]) -> None:
            batch_scheduling()
            stat = self.stats[stages[index][0]]
            inq = queues[index - 1] if index else None
            outq = queues[index] if index < len(queues) else None
            while True:
                depth = cap.depth if inq is None else inq.qsize()
                p = feed() if inq is None else inq.get()
                if p is _END:
                    break
                if halt.is_set():
                    continue  # drain without work so that upstream never blocks
                t0, c0 = time.perf_counter(), time.thread_time()
                try:
                    fn(p)
                except BaseException as exc:
                    fail(exc)
                    continue
                wall, cpu = (time.perf_counter() - t0) * 1000.0, (time.thread_time() - c0) * 1000.0
                if index == 0:
                    with pool_lock:  # several inference workers share the stage's figures
                        stat.add(wall, depth, cpu)
                else:
                    stat.add(wall, depth, cpu)
                if index == 0 and inline["on"]:
                    run_later_stages(p)
                elif index == 0:
                    in_order.put(p)
                    grow()
                elif outq is not None:
                    outq.put(p)
            if index == 0:
                with pool_lock:
                    pool["live"] -= 1
                    last = pool["live"] == 0
                if not last:
                    return
            if outq is not None:
                outq.put(_END)

        def start_inference(workers: int, threads_each: int | None) -> None:
            """Start inference workers up to ``workers`` (each extra one on its own copy of the model)."""
            with pool_lock:
                extra = workers - pool["started"]
                pool["started"] = max(workers, pool["started"])
            for _ in range(extra):
                if not threads:
                    fn = stages[0][1]
                else:
                    twin = self.detector.clone(threads=threads_each or self.detector.threads or 1)
                    fn = functools.partial(self._infer, detector=twin)
                with pool_lock:
                    if threads and pool["live"] == 0:  # the source has ended and the inference stage with it
                        return
                    pool["live"] += 1
                t = threading.Thread(target=worker, args=(0, fn), name=f"stage-inference-{len(threads)}", daemon=True)
                threads.append(t)
                t.start()

        def grow() -> None:
            """After the calibration, start the workers it chose, or go inline (once, from a worker's thread)."""
            plan = None if self._placer is None or self._placer.pending else self._placer.plan
            if plan is not None and plan.workers > pool["started"]:
                try:
                    start_inference(plan.workers, plan.threads)
                except BaseException as exc:
                    fail(exc)
            elif plan is not None and plan.inline and not inline["on"]:
                # the frames already passed on go through the stage threads first, so tracking keeps their order
                while self.stats[stages[-1][0]].count < in_order.passed and not halt.is_set():
                    time.sleep(0.0005)
                inline["on"] = True

        def run_later_stages(p: _Packet) -> None:
            """Decode, track and write one frame in the inference worker's thread (the inline layout)."""
            for name, fn in stages[1:]:
                if halt.is_set():
                    return
                t0, c0 = time.perf_counter(), time.thread_time()
                try:
                    fn(p)
                except BaseException as exc:
                    fail(exc)
                    return
                self.stats[name].add((time.perf_counter() - t0) * 1000.0, 0, (time.thread_time() - c0) * 1000.0)

        start_inference(1, None)
        for i, (name, fn) in enumerate(stages[1:], start=1):
            t = threading.Thread(target=worker, args=(i, fn), name=f"stage-{name}", daemon=True)
            threads.append(t)
            t.start()
        if self.options.workers > 1:
            start_inference(self.options.workers, None)
        sink_thread = next(t for t in threads if t.name == f"stage-{stages[-1][0]}")
        total = cap.options.max_frames or cap.source.length
        try:
            while sink_thread.is_alive():
                sink_thread.join(self.options.progress_interval_s)
                if stop.is_set():
                    cap.stop()
                if progress:
                    progress(self._status(cap, start, total))
        finally:
            # also when this thread is interrupted: no stage may still write once the sinks are closed
            if any(t.is_alive() for t in list(threads)):
                halt.set()
                cap.stop()
            for t in list(threads):
                t.join()

    @staticmethod
    def _capture_summary(cap: Capture, wall: float) -> dict[str, Any]:
        """Capture as a stage: time to read each frame (for a live source, mostly waiting for the camera)."""
        d = cap.read_stats.summary(wall)
        d["queue_mean"] = d["queue_max"] = None
        return d

    def _report(self, info: dict[str, Any], cap: Capture, wall: float) -> RunReport:
        from edgecv.machine import rss_mb as _rss_mb

        counts = {}
        for c in self.counters:
            name = getattr(getattr(c, "line", None), "name", None) or getattr(getattr(c, "zone", None), "name", "")
            if hasattr(c, "in_count"):
                counts[name] = {"in": c.in_count, "out": c.out_count}
            else:
                counts[name] = {"inside": c.count, "entered": c.entered}
        return RunReport(
            source=info, state=cap.state if cap.state != "running" else "ended", frames=self._done,
            wall_s=round(wall, 3), fps=round(self._done / wall, 2) if wall > 0 else 0.0,
            stages={"capture": self._capture_summary(cap, wall), **{name: s.summary(wall) for name, s in self.stats.items()}},
            latency_ms=self.latencies.summary(), written_ms=self.written.summary(),
            capture=cap.stats.to_dict(), concurrent=self.options.concurrent, counts=counts,
            events=dict(self.event_counts), tracks=self.event_counts["enter"],
            detections=dict(self.seen) if self.tracker is not None else {}, peak_rss_mb=_rss_mb()[1],
            tracker_dropped=dict(self.tracker.dropped) if self.tracker is not None else {},
            skipped=self.skipped,
            error=str(cap.error) if cap.error is not None else None,
            input={**cap.source.input_report(), "read_frames": cap.stats.read},  # counted here for any source
            cpu=cpu_report(self._cpu0, cpu_clock(), self._done, {"capture": cap.read_stats, **self.stats}),
            threads=self._thread_plan(cap))


class SharedSetting:
    """A process-wide setting held at a value while any concurrent run lasts: runs in other threads share it, the
    first saves the setting and the last puts it back. ``pick(wanted, saved)``: the value to hold. A setting
    that ``get`` gives as None (its library is missing) is left alone.

    Example:
        >>> with SWITCH_INTERVAL.held(0.0002):
        ...     sys.getswitchinterval() <= 0.0002
        True
    """

    def __init__(self, get: Callable[[], Any], set_: Callable[[Any], Any],
                 pick: Callable[[Any, Any], Any] = lambda wanted, saved: wanted) -> None:
        self._get, self._set, self._pick = get, set_, pick
        self._lock = threading.Lock()
        self._users = 0
        self._saved: Any = None

    @contextlib.contextmanager
    def held(self, value: Any) -> Iterator[None]:
        if value is None:
            yield
            return
        with self._lock:
            if self._users == 0:
                self._saved = self._get()
            if self._saved is not None:
                self._set(self._pick(value, self._saved))
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._saved is not None:
                    self._set(self._saved)


def _opencv_threads() -> int | None:
    cv2 = optional("cv2")
    return None if cv2 is None else cv2.getNumThreads()


#: the interpreter's switch interval (never raised above what it was)
SWITCH_INTERVAL = SharedSetting(sys.getswitchinterval, sys.setswitchinterval, min)
#: OpenCV's own thread pool
OPENCV_THREADS = SharedSetting(_opencv_threads, lambda n: optional("cv2").setNumThreads(n))


class _InOrder:
    """Packets finished by parallel inference workers, passed on to ``out`` in capture order (``seq`` 0, 1, ...).

    Example:
        >>> from types import SimpleNamespace as Packet
        >>> q = queue.Queue(); order = _InOrder(q)
        >>> order.put(Packet(item=Packet(seq=1))); q.qsize(), order.held
        (0, 1)
        >>> order.put(Packet(item=Packet(seq=0))); [q.get().item.seq for _ in range(q.qsize())]
        [0, 1]
    """

    def __init__(self, out: queue.Queue) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._held: dict[int, _Packet] = {}
        self._next = 0

    @property
    def held(self) -> int:
        return len(self._held)

    @property
    def passed(self) -> int:
        """Packets passed on so far."""
        return self._next

    def put(self, p: _Packet) -> None:
        # Passed on under the lock, so that two workers never interleave; a full queue holds both back.
        with self._lock:
            self._held[p.item.seq] = p
            while self._next in self._held:
                self._out.put(self._held.pop(self._next))
                self._next += 1


def cpu_clock() -> tuple[float, float]:
    """(CPU seconds of this process, all threads; CPU seconds of its finished child processes)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time(), children.ru_utime + children.ru_stime


def cpu_report(start: tuple[float, float], end: tuple[float, float], frames: int, stages: dict[str, StageStats]) -> dict[str, Any]:
    """CPU milliseconds per frame: each stage's own thread (``stages_ms``), the rest of this process
    (``runtime_threads_ms``: the threads a runtime starts for inference, and whatever else ran), finished child
    processes (``children_ms``: the video encoder, counted once it has finished the file), their ``total_ms``, the
    cores this process may run on, and ``limit_fps``: the frame rate those cores allow at that cost, when every
    core is busy all the time.

    Example:
        >>> r = cpu_report((0.0, 0.0), (3.0, 1.0), 1000, {})
        >>> r["total_ms"], r["runtime_threads_ms"], r["limit_fps"] == round(r["cores"] * 1000 / 4.0, 1)
        (4.0, 3.0, True)
    """
    from edgecv.machine import usable_cores

    cores = usable_cores()
    if not frames:
        return {"cores": cores, "stages_ms": {}, "runtime_threads_ms": None, "children_ms": None, "total_ms": None,
                "limit_fps": None}
    per = 1000.0 / frames
    stages_ms = {name: round(st.cpu_s * per, 3) for name, st in stages.items()}
    process = (end[0] - start[0]) * per
    children = (end[1] - start[1]) * per
    total = process + children
    return {"cores": cores, "stages_ms": stages_ms, "runtime_threads_ms": round(max(process - sum(stages_ms.values()), 0.0), 3),
            "children_ms": round(children, 3), "total_ms": round(total, 3),
            "limit_fps": round(cores * 1000.0 / total, 1) if total > 0 else None}
