"""One served camera: its pipeline run in a thread for as long as the service lives.

A :class:`ServedStream` opens its source, builds the tracker, counters and sinks from its
:class:`~edgecv.service.config.StreamConfig`, and runs the :class:`~edgecv.pipeline.runner.Pipeline` with the
shared model's :meth:`~edgecv.detection.detector.Detector.sharing` detector. Live sources keep the newest
frame (a slow model drops frames of this stream only); a video file or the generator is paced at its own
frame rate, like a camera. When the source is lost or cannot be opened, the stream waits and opens it again
(``retry_s`` doubling up to ``max_retry_s``), for as long as the service runs; a file that ends, ends the
stream.

What the API shows comes from here: :meth:`status` (state, frame rate, drops, reconnects, latency, tracks
now, counts), :meth:`jpeg` (the newest frame drawn with boxes, ids, trails, lines and zones, drawn only when
asked), and the recent events.

Example:
    >>> stream = ServedStream(config, detector=shared.sharing(batcher.run), out=Path("runs/serve"))  # doctest: +SKIP
    >>> stream.start(); stream.status()["state"]                                                      # doctest: +SKIP
    'running'
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from edgecv.machine import batch_scheduling
from edgecv.service.config import StreamConfig
from edgecv.sources import redact

log = logging.getLogger(__name__)

RECENT_EVENTS = 50
#: Stream states: ``starting`` (opening the source, loading), ``running``, ``reconnecting`` (waiting to open the
#: source again), ``ended`` (a file or folder finished), ``stopped``, ``failed`` (a fault that retrying cannot fix).
STATES = ("starting", "running", "reconnecting", "ended", "stopped", "failed")


class _Latest:
    """A sink that keeps the newest result, the trails of the overlay and the recent events (no drawing
    until :meth:`jpeg` is called)."""

    name = "live"

    def __init__(self, counters: list[Any], on_event: Callable[[str, Any], None] | None, keep: int = 8) -> None:
        from edgecv.pipeline.sinks import Overlay

        self.overlay = Overlay(counters=counters)
        self.recent: collections.deque = collections.deque(maxlen=keep)  # the last frames, for a swap's check
        self.events: collections.deque = collections.deque(maxlen=RECENT_EVENTS)
        self.on_event = on_event
        self.result: Any = None
        self.results = 0
        self.last_at: float | None = None  # time.monotonic() of the newest result
        self._times: collections.deque = collections.deque(maxlen=256)  # of the recent results
        self.lock = threading.Lock()
        self.labels: tuple[str, ...] = ()

    def open(self, info: dict[str, Any]) -> None:
        self.labels = tuple(info.get("labels") or ())

    def write(self, result: Any) -> None:
        with self.lock:
            self.overlay.follow(result.detections, result.seq)
            self.recent.append(result.frame.image)
            self.result = result
            self.results += 1
            self.last_at = time.monotonic()
            self._times.append(self.last_at)
        for e in result.events:
            # its own kind (enter, exit, line_in, ...) is the record's "event"
            record = {("event" if k == "kind" else k): v for k, v in e.to_dict().items()}
            self.events.append(record)
            if self.on_event is not None:
                self.on_event("track", record)

    def close(self) -> None:
        pass

    def fps(self, window_s: float = 5.0) -> float | None:
        """Results per second over the last ``window_s`` seconds (a whole run's rate hides a stall); 0.0 when
        the newest result is older than that, None before two results."""
        now = time.monotonic()
        with self.lock:
            times = [t for t in self._times if now - t <= window_s]
            if len(self._times) < 2:
                return None
        if len(times) < 2:
            return 0.0
        return round((len(times) - 1) / max(times[-1] - times[0], 1e-6), 2)

    def jpeg(self, quality: int = 80) -> bytes | None:
        """The newest frame with the overlay drawn, as JPEG; None before the first frame."""
        import cv2

        with self.lock:
            result = self.result
            if result is None:
                return None
            shown = self.overlay.draw(result.frame.image, result.detections, labels=self.labels)
        ok, data = cv2.imencode(".jpg", shown, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return data.tobytes() if ok else None


class ServedStream:
    """One stream of ``edgecv serve`` (see the module docstring). ``detector``: the stream's detector over the
    shared model; ``out``: the service's folder (this stream writes its sinks to ``out/ID/``); ``on_event``:
    called with ``(kind, payload)`` for every track event and every change of state (``"state"``)."""

    def __init__(self, config: StreamConfig, *, detector: Any, out: Path, model_name: str = "",
                 on_event: Callable[[str, str, Any], None] | None = None, retry_s: float = 1.0,
                 max_retry_s: float = 30.0, keep_frames: int = 8) -> None:
        self.config = config
        self.keep_frames = keep_frames
        self.id = config.id
        self.detector = detector
        self.model_name = model_name
        self.out = Path(out) / config.id
        self.retry_s, self.max_retry_s = retry_s, max_retry_s
        self._on_event = on_event
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the figures of earlier runs (the stream must not be running)."""
        self.state = "starting"
        self.error: str | None = None
        self.started_at: float | None = None
        self.restarts = 0  # the source opened again after it was lost or failed to open
        self.pipeline: Any = None
        self.live: _Latest | None = None
        self._frames_before = 0  # frames of earlier runs of this stream (before a reconnection)
        self._dropped_before = 0
        self._reconnects_before = 0
        self._skipped_before = 0

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> "ServedStream":
        self._stop.clear()
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"stream-{self.id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the pipeline; every sink is closed before this returns (or ``timeout`` passes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.state not in ("ended", "failed"):
            self._set_state("stopped")

    def _set_state(self, state: str, error: str | None = None) -> None:
        changed = state != self.state
        self.state, self.error = state, error
        if changed:
            log.info("stream %s: %s%s", self.id, state, f" ({error})" if error else "")
            if self._on_event is not None:
                self._on_event(self.id, "state", {"state": state, "error": error})

    def _emit(self, kind: str, payload: Any) -> None:
        if self._on_event is not None:
            self._on_event(self.id, kind, payload)

    def _run(self) -> None:
        from edgecv.errors import ConfigError, EdgeCVError

        batch_scheduling()
        wait = self.retry_s
        while not self._stop.is_set():
            try:
                ended = self._run_once()
            except ConfigError as exc:  # the stream's own settings: opening the source again would not help
                self._set_state("failed", redact(str(exc)))
                return
            except EdgeCVError as exc:  # a source that cannot be opened or was lost: try again later
                ended = False
                self._set_state("reconnecting", redact(str(exc)))
            except BaseException as exc:  # a fault of ours or the model's: retrying would only repeat it
                log.exception("stream %s failed", self.id)
                self._set_state("failed", redact(f"{type(exc).__name__}: {exc}"))
                return
            if ended or self._stop.is_set():
                return
            if self.state != "reconnecting":
                self._set_state("reconnecting", self.error)
            if self._stop.wait(wait):
                return
            wait = min(wait * 2, self.max_retry_s)
            self.restarts += 1

    def _run_once(self) -> bool:
        """One run of the pipeline on a freshly opened source; True when the source ended for good."""
        from edgecv.fileio import ensure_writable_dir
        from edgecv.pipeline.capture import CaptureOptions
        from edgecv.pipeline.runner import Pipeline, PipelineOptions
        from edgecv.pipeline.sinks import SINKS
        from edgecv.pipeline.track import class_ids
        from edgecv.pipeline.zones import make_counters
        from edgecv.service.process_source import ProcessSource
        from edgecv.sources import open_source
        from edgecv.tracking.thresholds import ThresholdCalibration, ThresholdFit
        from edgecv.tracking.trackers import make_tracker, tracker_options

        c = self.config
        with (ProcessSource(c.source) if c.source_process else open_source(c.source)) as src:
            fps = src.fps or 15.0
            tracker = make_tracker(c.tracker, tracker_options(c.tracker, dict(c.tracker_options) or None), fps=fps)
            counters = make_counters(c.lines, c.zones)
            live = _Latest(counters, self._emit, keep=self.keep_frames)
            sinks: list[Any] = [live]
            if c.sinks:
                ensure_writable_dir(self.out)
                sinks += [SINKS[k](self.out / SINKS[k].default_file.format(name=src.name)) for k in c.sinks]
            keep = class_ids(c.classes, self.detector.labels)
            # the tracker's unset score thresholds follow the detector, as in edgecv track
            fit = ThresholdFit(tracker, user_keys=set(c.tracker_options), calibration=ThresholdCalibration(),
                               detector_threshold=getattr(self.detector.spec, "score_threshold", None))
            # the interpreter's default switch interval: with many streams' threads, 0.2 ms made them queue for
            # the lock (8 streams: 71.9 against 82.7 frames/s with the default, sources then read in threads)
            options = PipelineOptions(concurrent=True, window=2000, switch_interval_s=None)
            pipeline = Pipeline(self.detector, tracker=tracker, counters=counters, sinks=sinks, classes=keep,
                                thresholds=fit, options=options)
            before = self.pipeline.snapshot() if self.pipeline is not None else None
            if before is not None:  # the figures of the run before this reopening go on
                self._frames_before += before.frames
                self._dropped_before += before.capture.get("dropped", 0)
                self._reconnects_before += before.capture.get("reconnects", 0)
                self._skipped_before += before.skipped
            self.pipeline, self.live = pipeline, live
            self._set_state("running")
            paced = not src.live and src.is_video  # a file or the generator, run like a camera
            report = pipeline.run(src, capture=CaptureOptions(realtime=paced), stop=self._stop)
        if report.state in ("ended", "truncated") and not src.live:
            self._set_state("ended", src.truncated if report.state == "truncated" else None)
            return True
        if report.state == "stopped":
            return True
        self.error = redact(report.error or f"source {report.state}")
        return False

    def use_detector(self, detector: Any, model_name: str) -> None:
        """Run the next frames with ``detector`` (a hot swap: tracks, counts and figures go on)."""
        self.detector, self.model_name = detector, model_name
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.use_detector(detector)

    def recent_images(self) -> list[Any]:
        """The stream's last frames (up to ``keep_frames``), newest last."""
        live = self.live
        if live is None:
            return []
        with live.lock:
            return list(live.recent)

    # -- what the API shows -------------------------------------------------------------------------------
    def ready(self, now: float | None = None) -> bool:
        """Whether the stream produced a result within its ``ready_s`` window."""
        live = self.live
        if live is None or live.last_at is None or self.state != "running":
            return False
        return (now or time.monotonic()) - live.last_at <= self.config.ready_s

    def jpeg(self, quality: int = 80) -> bytes | None:
        live = self.live
        return None if live is None else live.jpeg(quality)

    def recent_events(self) -> list[dict[str, Any]]:
        live = self.live
        return [] if live is None else list(live.events)

    def status(self) -> dict[str, Any]:
        """The stream's figures (what ``GET /api/streams/{id}`` returns and ``/metrics`` exports)."""
        c = self.config
        report = self.pipeline.snapshot() if self.pipeline is not None else None
        live = self.live
        out: dict[str, Any] = {
            "id": self.id, "state": self.state, "error": self.error, "ready": self.ready(),
            "source": redact(c.source), "model": self.model_name, "tracker": c.tracker,
            "frames": self._frames_before, "dropped": self._dropped_before, "reconnects": self._reconnects_before,
            "restarts": self.restarts, "skipped": self._skipped_before, "fps": None, "latency_ms": None, "stages": {}, "tracks_now": 0,
            "tracks_total": 0, "counts": {}, "events": {},
            "uptime_s": round(time.monotonic() - self.started_at, 1) if self.started_at else None,
            "last_result_age_s": round(time.monotonic() - live.last_at, 3) if live and live.last_at else None,
        }
        if report is not None:
            out["frames"] += report.frames
            out["dropped"] += report.capture.get("dropped", 0)
            out["reconnects"] += report.capture.get("reconnects", 0)
            out["skipped"] += report.skipped
            out["fps"] = live.fps() if live is not None else None
            out["latency_ms"] = report.latency_ms
            out["stages"] = {k: {"median_ms": v.get("median_ms"), "p99_ms": v.get("p99_ms"),
                                 "queue_mean": v.get("queue_mean")} for k, v in report.stages.items()}
            out["tracks_total"] = report.tracks
            out["counts"] = report.counts
            out["events"] = report.events
        if live is not None and live.result is not None and live.result.detections.tracker_id is not None:
            out["tracks_now"] = len(live.result.detections)
        return out
