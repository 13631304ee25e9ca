"""Frames taken from a source in their own thread, under a policy that keeps live video live.

Two policies:

- ``latest``: a slot that holds one frame. A newer frame replaces an unread one, which counts as dropped,
  so a consumer slower than the camera always gets the newest frame and never falls behind. Used for live
  sources (cameras, streams) and for files read with ``realtime=True`` (paced at their own frame rate, as
  if they were a camera).
- ``every``: a bounded buffer that the capture thread waits on; nothing is dropped. Used for files.

A live source that stops delivering (a dropped stream, an unplugged camera) is reopened with exponential
backoff, ``backoff_s`` doubling up to ``max_backoff_s``, at most ``reconnect_attempts`` times in a row;
after that the capture ends with :class:`~edgecv.errors.SourceError` in ``capture.error`` and state
``"lost"``. The end of a file ends the capture cleanly (state ``"ended"``), or in the state ``"truncated"``
when the file ended short of the frames it declares (``source.truncated`` says by how much).

Example:
    >>> capture = Capture(open_source("rtsp://cam/stream"))               # doctest: +SKIP
    >>> capture.start()                                                    # doctest: +SKIP
    >>> while (item := capture.get()) is not None:                         # doctest: +SKIP
    ...     handle(item.frame)
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from edgecv.errors import ConfigError, SourceError
from edgecv.machine import batch_scheduling
from edgecv.pipeline.stats import Ring, StageStats
from edgecv.sources import Frame, FrameSource

log = logging.getLogger(__name__)

POLICIES = ("latest", "every")
#: The states a capture ends in.
ENDS = ("ended", "truncated", "stopped", "lost", "failed")


@dataclass(frozen=True)
class CaptureOptions:
    """How frames are taken from a source.

    ``policy``: ``"latest"`` or ``"every"`` (None: latest for live sources and ``realtime``, every otherwise).
    ``stride``: keep one frame in ``stride``. ``realtime``: pace a file at its frame rate, like a camera.
    ``buffer``: frames read ahead under the every policy. ``max_frames``: stop after delivering this many.
    ``reconnect_attempts``, ``backoff_s``, ``max_backoff_s``: how a dropped live source is reopened.
    """

    policy: str | None = None
    stride: int = 1
    realtime: bool = False
    buffer: int = 4
    max_frames: int | None = None
    reconnect_attempts: int = 8
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def __post_init__(self) -> None:
        if self.policy is not None and self.policy not in POLICIES:
            raise ConfigError(f"capture policy: unknown {self.policy!r}; valid policies: {', '.join(POLICIES)}")
        for name, low in (("stride", 1), ("buffer", 1), ("reconnect_attempts", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"capture {name}: expected an integer >= {low}, got {value!r}")
        if self.max_frames is not None and (not isinstance(self.max_frames, int) or isinstance(self.max_frames, bool)
                                            or self.max_frames < 1):
            raise ConfigError(f"capture max_frames: expected an integer >= 1 or None, got {self.max_frames!r}")
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (self.backoff_s, self.max_backoff_s))
        if not numbers or not 0 < self.backoff_s <= self.max_backoff_s:
            raise ConfigError(f"capture backoff: expected 0 < backoff_s <= max_backoff_s, got "
                              f"{self.backoff_s!r} and {self.max_backoff_s!r}")


@dataclass
class Captured:
    """A frame as delivered: ``seq`` counts delivered frames from 0; ``captured_at`` is the
    ``time.perf_counter()`` at which it was read, the start of its end-to-end latency."""

    frame: Frame
    seq: int
    captured_at: float
    resumed: bool = False  # the first frame after a reconnection


@dataclass
class CaptureStats:
    """Frames ``read`` from the source, ``delivered``, ``dropped`` by the latest-frame policy, ``strided``
    (left out by ``stride``), ``reconnects`` that succeeded and ``outages`` (seconds spent reconnecting)."""

    read: int = 0
    delivered: int = 0
    dropped: int = 0
    strided: int = 0
    reconnects: int = 0
    outage_s: float = 0.0
    events: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"read": self.read, "delivered": self.delivered, "dropped": self.dropped, "strided": self.strided,
                "reconnects": self.reconnects, "outage_s": round(self.outage_s, 3), "events": list(self.events)}


class Capture:
    """Reads ``source`` in a thread and hands frames out through :meth:`get` (see the module docstring).

    ``state`` is ``"idle"``, ``"running"``, ``"reconnecting"``, then ``"ended"`` (the source finished),
    ``"truncated"`` (a file source finished short of its declared frames), ``"stopped"`` (:meth:`stop` was
    called), ``"lost"`` (a live source could not be reopened) or ``"failed"`` (reading raised; the error is
    in ``error``).
    """

    def __init__(self, source: FrameSource, *, options: CaptureOptions = CaptureOptions(),
                 sleep: Callable[[float], bool] | None = None) -> None:
        if options.realtime and not source.is_video:
            raise ConfigError(f"realtime needs a timed source (video, camera, stream), not {source.kind} {source.text}")
        self.source = source
        self.options = options
        self.policy = options.policy or ("latest" if source.live or options.realtime else "every")
        self._capacity = 1 if self.policy == "latest" else options.buffer
        self._stop = threading.Event()
        # waits that stop() cuts short; a test can pass its own
        self._sleep = sleep or (lambda seconds: self._stop.wait(seconds))
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._may_read = threading.Event()  # cleared while paused()
        self._may_read.set()
        self._reading = threading.Lock()  # held by the capture thread for each read
        self.reset()

    def reset(self) -> None:
        """Forget delivered frames and statistics (the source itself is not rewound)."""
        if self._thread is not None and self._thread.is_alive():
            raise ConfigError("capture: reset() while running; stop() it first")
        self._buf: collections.deque[Captured] = collections.deque()
        self.stats = CaptureStats()
        self.read_stats = StageStats("capture", 10_000)  # time to read each frame
        self.state = "idle"
        self.error: BaseException | None = None
        self._stop.clear()
        self._thread = None

    @contextlib.contextmanager
    def paused(self, *, timeout: float = 0.5) -> Iterator[bool]:
        """Hold the capture thread between two reads for the duration of the block, so that the process's CPU
        time in it is not capture's (the calibration of the runtime's threads times the model in one). Yields
        whether it holds: False when the read in progress outlasted ``timeout`` seconds (a live source waiting
        for its next frame spends no CPU meanwhile). A live source's frames that arrive meanwhile wait in the
        source, as they would behind a busy capture.

        Example:
            >>> with capture.paused():                                     # doctest: +SKIP
            ...     timed = time_the_model()
        """
        self._may_read.clear()
        held = self._reading.acquire(timeout=timeout)
        try:
            yield held
        finally:
            if held:
                self._reading.release()
            self._may_read.set()

    def reads_per_frame(self) -> float:
        """Frames read for each frame delivered so far (1.0 before any): what a ``stride`` and the newest-frame
        policy leave out, and not the frames read ahead into the buffer."""
        st = self.stats
        return (st.delivered + st.dropped + st.strided) / st.delivered if st.delivered else 1.0

    @property
    def read_ms(self) -> Ring:
        """Milliseconds to read each frame (the last 10,000)."""
        return self.read_stats.times

    @property
    def depth(self) -> int:
        """Frames waiting to be taken."""
        return len(self._buf)

    def start(self) -> Capture:
        """Start the capture thread (once)."""
        if self._thread is not None:
            raise ConfigError("capture: already started")
        self.state = "running"
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.source.kind}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the capture thread to finish; :meth:`get` then returns what is buffered, then None."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def finished(self) -> bool:
        return self.state in ENDS

    def get(self, timeout: float | None = None) -> Captured | None:
        """The next frame; None once the capture has finished and nothing is left (or after ``timeout``
        seconds without one, when given)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._buf:
                if self.finished:
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left if left is not None else 0.5)
            item = self._buf.popleft()
            item.seq = self.stats.delivered  # counted when handed out: a frame in the slot may still be dropped
            self.stats.delivered += 1
            self._cond.notify_all()
            return item

    def __iter__(self):
        while (item := self.get()) is not None:
            yield item

    # -- the capture thread ------------------------------------------------------------------------------
    def _put(self, item: Captured) -> None:
        with self._cond:
            if self.policy == "latest":
                if self._buf:
                    self._buf.popleft()
                    self.stats.dropped += 1
            else:
                while len(self._buf) >= self._capacity and not self._stop.is_set():
                    self._cond.wait(0.5)
                if self._stop.is_set():
                    return
            self._buf.append(item)
            self._cond.notify_all()

    def _finish(self, state: str, error: BaseException | None = None) -> None:
        with self._cond:
            self.error = error
            self.state = "stopped" if self._stop.is_set() and state == "ended" else state
            self._cond.notify_all()

    def _run(self) -> None:
        batch_scheduling()
        try:
            for item in self._produce():
                self._put(item)
        except BaseException as exc:  # handed to the consumer through .error; nothing is swallowed
            log.debug("capture failed", exc_info=True)
            self._finish("failed", exc)

    def inline(self) -> Iterator[Captured]:
        """The frames read in the caller's thread instead (no capture thread, no dropping): the plain loop
        that the threaded capture is measured against. Ends as :meth:`get` does; errors are raised."""
        if self._thread is not None:
            raise ConfigError("capture: inline() after start()")
        self.state = "running"
        for item in self._produce():
            item.seq = self.stats.delivered
            self.stats.delivered += 1
            yield item

    def _produce(self) -> Iterator[Captured]:
        o, src = self.options, self.source
        start = time.perf_counter()
        resumed = False
        while True:
            frames = iter(src)
            while True:
                while not self._may_read.wait(0.5) and not self._stop.is_set():
                    pass
                with self._reading:
                    t0, c0 = time.perf_counter(), time.thread_time()
                    frame = next(frames, None)
                    if frame is not None:
                        self.read_stats.add((time.perf_counter() - t0) * 1000.0, 0,
                                            (time.thread_time() - c0) * 1000.0)
                if frame is None:
                    break
                if self._stop.is_set():
                    self._finish("ended")
                    return
                self.stats.read += 1
                if (self.stats.read - 1) % o.stride:
                    self.stats.strided += 1
                    continue
                if o.realtime and not src.live and frame.time_ms is not None:
                    wait = start + frame.time_ms / 1000.0 - time.perf_counter()
                    if wait > 0 and self._sleep(wait):
                        self._finish("ended")
                        return
                yield Captured(frame, -1, time.perf_counter(), resumed)  # seq is set when handed out
                resumed = False
                if o.max_frames is not None and self.stats.delivered + len(self._buf) >= o.max_frames:
                    self._finish("ended")
                    return
            if not src.live or self._stop.is_set():
                # a file that ended short is "truncated" even if a stop came at the same moment
                self._finish("truncated" if src.truncated else "ended")
                return
            if not self._reconnect():
                return
            resumed = True

    def _reconnect(self) -> bool:
        o, src = self.options, self.source
        self.state = "reconnecting"
        began = time.perf_counter()
        log.warning("%s %s stopped delivering frames; reconnecting", src.kind, src.shown)
        last: Exception | None = None
        for attempt in range(o.reconnect_attempts):
            delay = min(o.backoff_s * 2**attempt, o.max_backoff_s)
            if self._sleep(delay):
                self._finish("ended")
                return False
            try:
                src.reopen()
            except SourceError as exc:
                last = exc
                log.info("reconnect attempt %d/%d failed: %s", attempt + 1, o.reconnect_attempts, exc)
                continue
            took = time.perf_counter() - began
            self.stats.reconnects += 1
            self.stats.outage_s += took
            del self.stats.events[:-99]  # the latest 100 are enough, and memory stays bounded
            self.stats.events.append({"event": "reconnected", "after_frames": self.stats.read,
                                      "attempts": attempt + 1, "outage_s": round(took, 3)})
            log.warning("%s %s reconnected after %.1f s (%d attempt(s))", src.kind, src.shown, took, attempt + 1)
            self.state = "running"
            return True
        took = time.perf_counter() - began
        self.stats.outage_s += took
        reason = f": {last}" if last else ""
        self._finish("lost", SourceError(f"{src.kind} {src.shown} lost: {o.reconnect_attempts} reconnect attempts "
                                         f"over {took:.0f} s failed{reason}"))
        return False
