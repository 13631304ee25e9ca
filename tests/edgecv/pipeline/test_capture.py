"""Capture: the latest-frame policy (a gated live source, so that which frames are dropped is exact), the
every-frame policy (order, bounded buffer), stride and max_frames, realtime pacing of a timed file, reconnect
with exponential backoff (a recording ``sleep``, so no test waits out a backoff), "lost", stop(), inline(),
a failing source, and the options' validation."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgecv.errors import ConfigError, SourceError
from edgecv.pipeline.capture import Capture, CaptureOptions
from edgecv.sources import Frame, FrameSource

WAIT_S = 5.0  # upper bound for a background thread to reach a state (never reached when things work)


def frame(i: int, time_ms: float | None = None) -> Frame:
    """Frame ``i``: a tiny gray image whose pixels are ``i`` (so the image names the frame too)."""
    return Frame(np.full((6, 8), i % 256, np.uint8), i, f"f{i}", time_ms=time_ms)


def wait_until(condition, timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


class ListSource(FrameSource):
    """``n`` frames, as fast as they are asked for; ``fps`` None makes it an untimed (image) source; frames are
    ``step_ms`` apart in time when given. ``pulled`` counts frames made; ``threads`` records who read them."""

    kind = "fake"

    def __init__(self, n: int, *, fps: float | None = 25.0, step_ms: float | None = None, fail_after: int | None = None,
                 error: BaseException | None = None) -> None:
        super().__init__("fake0")
        self.n, self.fps, self.step_ms = n, fps, step_ms
        self.fail_after, self.error = fail_after, error
        self.length = n
        self.pulled = 0
        self.threads: set[str] = set()

    def __iter__(self):
        for i in range(self.n):
            if self.fail_after is not None and i == self.fail_after:
                raise self.error
            self.pulled += 1
            self.threads.add(threading.current_thread().name)
            yield frame(i, None if self.step_ms is None else i * self.step_ms)


class GatedLive(FrameSource):
    """A live source that makes frame ``i`` only when the test releases ``gate`` once more. ``waiting`` is the
    index of the frame it waits to make: when it is ``k``, the capture has taken (and handed on) frames < k."""

    kind = "gated"
    live = True

    def __init__(self) -> None:
        super().__init__("cam0")
        self.fps = 30.0
        self.gate = threading.Semaphore(0)
        self.waiting = -1

    def __iter__(self):
        i = 0
        while True:
            self.waiting = i
            self.gate.acquire()
            yield frame(i)
            i += 1

    def make(self, count: int) -> None:
        """Let ``count`` more frames be made and wait until the capture has handled them."""
        assert wait_until(lambda: self.waiting >= 0), "capture never started reading"
        target = self.waiting + count
        self.gate.release(count)
        assert wait_until(lambda: self.waiting == target), f"capture stuck before frame {target}"


class FlakyLive(FrameSource):
    """A live source that drops after each burst of ``bursts[k]`` frames; the k-th reconnection fails
    ``failures[k]`` times (SourceError) before it succeeds; once ``failures`` is used up, every reopen fails."""

    kind = "flaky"
    live = True

    def __init__(self, bursts: list[int], failures: list[int]) -> None:
        super().__init__("rtsp://cam/1")
        self.fps = 25.0
        self.bursts, self.failures = list(bursts), list(failures)
        self.opening = 0  # which burst the source is on
        self.failed = 0  # failed reopens in the current outage
        self.next_index = 0
        self.reopens = 0

    def __iter__(self):
        for _ in range(self.bursts[self.opening] if self.opening < len(self.bursts) else 0):
            yield frame(self.next_index)
            self.next_index += 1

    def reopen(self) -> None:
        self.reopens += 1
        k = self.opening
        if k >= len(self.failures) or self.failed < self.failures[k]:
            self.failed += 1
            raise SourceError(f"cannot open stream {self.text} (attempt {self.reopens})")
        self.failed = 0
        self.opening += 1


class RecordingSleep:
    """Stands in for the capture's wait: records each delay and the capture state, returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.states: list[str] = []
        self.capture: Capture | None = None

    def __call__(self, seconds: float) -> bool:
        self.delays.append(seconds)
        if self.capture is not None:
            self.states.append(self.capture.state)
        return False


def indices(items) -> list[int]:
    return [c.frame.index for c in items]


# -- the latest-frame policy -------------------------------------------------------------------------------
def test_latest_policy_hands_out_the_newest_frame_and_counts_the_dropped():
    src = GatedLive()
    cap = Capture(src, options=CaptureOptions(reconnect_attempts=0))
    assert cap.policy == "latest"
    cap.start()
    try:
        src.make(3)  # frames 0, 1, 2 arrive before the consumer asks: 0 and 1 are dropped
        assert cap.depth == 1 and cap.stats.dropped == 2
        taken = [cap.get(timeout=1.0)]
        assert cap.get(timeout=0.02) is None  # nothing newer yet; still running
        src.make(1)  # frame 3 is taken in time: nothing dropped
        taken.append(cap.get(timeout=1.0))
        src.make(4)  # frames 4..7: 4, 5 and 6 are dropped
        taken.append(cap.get(timeout=1.0))
        assert indices(taken) == [2, 3, 7]
        assert [int(c.frame.image[0, 0]) for c in taken] == [2, 3, 7]
        assert cap.stats.dropped == 5 and cap.stats.read == 8 and cap.stats.strided == 0
        assert cap.state == "running" and cap.error is None
    finally:
        cap.stop()
        src.gate.release()  # frame 8 is read, sees the stop and is not handed out
        cap.join(WAIT_S)
    assert cap.state == "stopped" and cap.get() is None
    assert cap.stats.read == 8 and cap.stats.dropped == 5


def test_latest_policy_counts_add_up_to_the_frames_read():
    src = GatedLive()
    cap = Capture(src, options=CaptureOptions(stride=2, reconnect_attempts=0))
    cap.start()
    try:
        src.make(6)  # frames 0..5: 1, 3, 5 left out by stride; 0 and 2 dropped; 4 waits
        taken = [cap.get(timeout=1.0)]
        src.make(2)  # frames 6, 7: 7 left out by stride; 6 taken
        taken.append(cap.get(timeout=1.0))
    finally:
        cap.stop()
        src.gate.release()
        cap.join(WAIT_S)
    s = cap.stats
    assert indices(taken) == [4, 6]
    assert (s.read, s.strided, s.dropped) == (8, 4, 2)
    assert s.delivered == len(taken) == 2
    assert s.delivered + s.dropped == s.read - s.strided
    assert [c.seq for c in taken] == [0, 1]  # "seq counts delivered frames from 0"


def test_latest_policy_max_frames_counts_frames_handed_out():
    src = GatedLive()
    cap = Capture(src, options=CaptureOptions(max_frames=2, reconnect_attempts=0))
    cap.start()
    try:
        src.gate.release(2)  # frames 0 and 1 before the consumer asks: 0 is dropped
        wait_until(lambda: src.waiting == 2 or cap.finished)
        taken = [cap.get(timeout=1.0)]
        src.gate.release(1)
        taken += list(cap)
    finally:
        cap.stop()
        src.gate.release()
        cap.join(WAIT_S)
    assert indices(taken) == [1, 2] and cap.stats.dropped == 1 and cap.state == "ended"


# -- the every-frame policy --------------------------------------------------------------------------------
def test_every_policy_keeps_order_drops_nothing_and_reads_ahead_only_buffer_frames():
    src = ListSource(20)
    cap = Capture(src, options=CaptureOptions(buffer=3))
    assert cap.policy == "every"
    cap.start()
    assert wait_until(lambda: cap.depth == 3 and src.pulled == 4)
    time.sleep(0.05)  # give an unbounded reader the time to run ahead
    assert cap.depth == 3 and src.pulled == 4 and cap.state == "running"  # the 4th waits for room
    got = list(cap)
    cap.join(WAIT_S)
    assert indices(got) == list(range(20)) and [c.seq for c in got] == list(range(20))
    assert [int(c.frame.image[0, 0]) for c in got] == list(range(20))
    assert cap.stats.to_dict() == {"read": 20, "delivered": 20, "dropped": 0, "strided": 0, "reconnects": 0,
                                   "outage_s": 0.0, "events": []}
    assert cap.state == "ended" and cap.error is None and cap.get() is None
    assert len(cap.read_ms) == 20  # the time to read each frame


STRIDE_TABLE = [
    # (stride, max_frames, frames delivered, read, strided)
    (1, None, list(range(10)), 10, 0),
    (3, None, [0, 3, 6, 9], 10, 6),
    (1, 4, [0, 1, 2, 3], 4, 0),
    (2, 3, [0, 2, 4], 5, 2),
    (4, 10, [0, 4, 8], 10, 7),
    (20, None, [0], 10, 9),
]


@pytest.mark.parametrize("mode", ["thread", "inline"])
@pytest.mark.parametrize("stride, max_frames, expected, read, strided", STRIDE_TABLE)
def test_stride_and_max_frames(mode, stride, max_frames, expected, read, strided):
    cap = Capture(ListSource(10), options=CaptureOptions(stride=stride, max_frames=max_frames))
    if mode == "thread":
        got = list(cap.start())
        cap.join(WAIT_S)
    else:
        got = list(cap.inline())
    assert indices(got) == expected and [c.seq for c in got] == list(range(len(expected)))
    s = cap.stats
    assert (s.read, s.strided, s.delivered, s.dropped) == (read, strided, len(expected), 0)
    assert s.delivered + s.dropped == s.read - s.strided
    assert cap.state == "ended"


# -- realtime --------------------------------------------------------------------------------------------
def test_realtime_paces_a_timed_file_at_its_timestamps():
    sleep = RecordingSleep()
    cap = Capture(ListSource(5, step_ms=1000.0), options=CaptureOptions(realtime=True), sleep=sleep)
    assert cap.policy == "latest"  # a file read in real time behaves like a camera
    got = list(cap.inline())
    assert indices(got) == [0, 1, 2, 3, 4]
    # frame i is due i seconds after the start; the recording sleep does not wait, so each wait is ~i s
    assert sleep.delays == pytest.approx([1.0, 2.0, 3.0, 4.0], abs=0.25)
    assert cap.state == "ended"


def test_realtime_in_the_thread_and_untimed_frames_are_not_paced():
    sleep = RecordingSleep()
    cap = Capture(ListSource(4, step_ms=500.0), options=CaptureOptions(realtime=True), sleep=sleep)
    cap.start()
    cap.join(WAIT_S)
    assert sleep.delays == pytest.approx([0.5, 1.0, 1.5], abs=0.2) and cap.state == "ended"
    assert indices(cap) == [3] and cap.stats.read == 4 and cap.stats.dropped == 3  # nobody took 0, 1, 2 in time
    # frames without a time (step_ms None) are handed on as they come
    sleep = RecordingSleep()
    cap = Capture(ListSource(4), options=CaptureOptions(realtime=True), sleep=sleep)
    assert indices(cap.inline()) == [0, 1, 2, 3] and sleep.delays == []


def test_realtime_wait_is_cut_short_by_stop():
    src = ListSource(3, step_ms=60_000.0)  # frame 1 is due in a minute
    cap = Capture(src, options=CaptureOptions(realtime=True)).start()
    assert cap.get(timeout=WAIT_S).frame.index == 0
    assert wait_until(lambda: cap.stats.read == 2)  # frame 1 read, its wait begun
    cap.stop()
    cap.join(WAIT_S)
    assert not cap._thread.is_alive()
    assert cap.state == "stopped" and cap.get() is None and cap.stats.read == 2


def test_realtime_needs_a_timed_source():
    with pytest.raises(ConfigError) as exc:
        Capture(ListSource(3, fps=None), options=CaptureOptions(realtime=True))
    assert str(exc.value) == "realtime needs a timed source (video, camera, stream), not fake fake0"


# -- reconnecting ------------------------------------------------------------------------------------------
def test_reconnect_with_exponential_backoff_then_lost():
    src = FlakyLive(bursts=[3, 2], failures=[3])
    sleep = RecordingSleep()
    cap = Capture(src, options=CaptureOptions(policy="every", buffer=16), sleep=sleep)
    sleep.capture = cap
    cap.start()
    cap.join(WAIT_S)
    got = list(cap)
    assert indices(got) == [0, 1, 2, 3, 4]
    # first outage: 3 failures then success (0.5, 1, 2 fail; 4 succeeds); second: 8 failures, capped at 8 s
    assert sleep.delays == [0.5, 1.0, 2.0, 4.0] + [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert set(sleep.states) == {"reconnecting"}
    assert src.reopens == 12
    assert cap.stats.reconnects == 1 and cap.stats.read == 5 and cap.stats.outage_s >= 0
    [event] = cap.stats.events
    assert event["event"] == "reconnected" and event["after_frames"] == 3 and event["attempts"] == 4
    assert cap.state == "lost"
    assert isinstance(cap.error, SourceError)
    msg = str(cap.error)
    assert "\n" not in msg
    assert msg.startswith("flaky rtsp://cam/1 lost: 8 reconnect attempts over ")
    assert msg.endswith(" s failed: cannot open stream rtsp://cam/1 (attempt 12)")


@pytest.mark.parametrize("backoff_s, max_backoff_s, attempts, expected", [
    (0.5, 8.0, 6, [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]),
    (1.0, 3.0, 4, [1.0, 2.0, 3.0, 3.0]),
    (0.25, 0.25, 3, [0.25, 0.25, 0.25]),
    (2.0, 8.0, 1, [2.0]),
    (0.5, 8.0, 0, []),
])
def test_backoff_delays_are_capped(backoff_s, max_backoff_s, attempts, expected):
    sleep = RecordingSleep()
    options = CaptureOptions(reconnect_attempts=attempts, backoff_s=backoff_s, max_backoff_s=max_backoff_s)
    cap = Capture(FlakyLive(bursts=[1], failures=[]), options=options, sleep=sleep)
    got = list(cap.inline())
    assert indices(got) == [0] and sleep.delays == expected
    assert cap.state == "lost" and isinstance(cap.error, SourceError)
    assert f"lost: {attempts} reconnect attempts over" in str(cap.error)


def test_stop_cuts_a_backoff_short():
    cap = Capture(FlakyLive(bursts=[2], failures=[]), options=CaptureOptions(backoff_s=30.0, max_backoff_s=30.0))
    cap.start()
    assert wait_until(lambda: cap.state == "reconnecting")
    cap.stop()
    cap.join(WAIT_S)
    assert not cap._thread.is_alive()
    assert cap.state == "stopped" and cap.error is None
    assert cap.stats.reconnects == 0


# -- stop, inline, failures, misuse ------------------------------------------------------------------------
def test_stop_hands_out_what_is_buffered_then_ends():
    src = ListSource(1000)
    cap = Capture(src, options=CaptureOptions(buffer=4)).start()
    first = [cap.get(timeout=WAIT_S), cap.get(timeout=WAIT_S)]
    cap.stop()
    cap.join(WAIT_S)
    rest = list(cap)
    got = indices(first + rest)
    assert got == list(range(len(got))) and len(got) <= 2 + 4 + 1
    assert cap.state == "stopped" and cap.error is None and cap.stats.read < 1000


def test_paused_holds_the_capture_between_reads_and_lets_it_go_after():
    """A source read as fast as it goes (the newest-frame policy never waits): no frame is read inside the
    block, reading goes on after it, and a stop meanwhile still ends the capture."""
    cap = Capture(ListSource(10**9, fps=None), options=CaptureOptions(policy="latest")).start()
    try:
        assert wait_until(lambda: cap.stats.read > 5)
        with cap.paused() as held:
            before = cap.stats.read
            time.sleep(0.1)
            assert held and cap.stats.read == before
        assert wait_until(lambda: cap.stats.read > before + 5)
        with cap.paused():
            cap.stop()
        cap.join(WAIT_S)
        assert cap.state == "stopped"
    finally:
        cap.stop()
        cap.join(WAIT_S)


def test_paused_gives_up_on_a_read_that_outlasts_its_timeout():
    """A live source waiting for its next frame holds the read: the pause yields False after ``timeout`` and
    the capture reads on afterwards."""
    src = GatedLive()
    cap = Capture(src).start()
    try:
        src.make(1)
        t0 = time.monotonic()
        with cap.paused(timeout=0.05) as held:
            assert not held and time.monotonic() - t0 >= 0.05
        src.make(2)
        assert cap.stats.read == 3
    finally:
        cap.stop()
        src.gate.release(10)
        cap.join(WAIT_S)


def test_inline_reads_in_the_callers_thread_without_dropping():
    src = FlakyLive(bursts=[6], failures=[])  # live: the latest policy, yet inline drops nothing
    cap = Capture(src, options=CaptureOptions(reconnect_attempts=0))
    assert cap.policy == "latest"
    got = list(cap.inline())
    assert indices(got) == [0, 1, 2, 3, 4, 5] and [c.seq for c in got] == [0, 1, 2, 3, 4, 5]
    assert cap.stats.dropped == 0 and cap.stats.delivered == 6
    assert cap.state == "lost"
    src = ListSource(3)
    assert indices(Capture(src).inline()) == [0, 1, 2]
    assert src.threads == {threading.current_thread().name}


@pytest.mark.parametrize("mode", ["thread", "inline"])
def test_a_source_that_raises_fails_the_capture(mode):
    boom = RuntimeError("decoder exploded")
    cap = Capture(ListSource(5, fail_after=2, error=boom))
    if mode == "thread":
        got = list(cap.start())
        cap.join(WAIT_S)
        assert indices(got) == [0, 1]
        assert cap.state == "failed" and cap.error is boom
    else:
        got = []
        with pytest.raises(RuntimeError, match="decoder exploded"):
            for item in cap.inline():
                got.append(item)
        assert indices(got) == [0, 1]


def test_source_error_while_reading_a_file_fails_the_capture():
    err = SourceError("video clip.mp4: read error")
    cap = Capture(ListSource(5, fail_after=0, error=err)).start()
    assert cap.get(timeout=WAIT_S) is None
    cap.join(WAIT_S)
    assert cap.state == "failed" and cap.error is err


def test_misuse_is_a_config_error_and_reset_starts_over():
    cap = Capture(ListSource(4), options=CaptureOptions(buffer=1))
    assert cap.state == "idle" and cap.depth == 0
    cap.start()
    with pytest.raises(ConfigError, match=r"^capture: already started$"):
        cap.start()
    with pytest.raises(ConfigError, match=r"^capture: inline\(\) after start\(\)$"):
        next(cap.inline())
    assert wait_until(lambda: cap.depth == 1)
    with pytest.raises(ConfigError, match=r"^capture: reset\(\) while running; stop\(\) it first$"):
        cap.reset()
    assert indices(cap) == [0, 1, 2, 3]
    cap.join(WAIT_S)
    cap.reset()
    assert cap.state == "idle" and cap.stats.read == 0 and cap.error is None and len(cap.read_ms) == 0
    assert indices(cap.start()) == [0, 1, 2, 3]  # this source starts again when iterated again
    cap.join(WAIT_S)
    assert cap.stats.read == 4 and cap.state == "ended"


# -- options -----------------------------------------------------------------------------------------------
OPTION_CASES = [
    # (options, expected error message; None: valid)
    ({}, None),
    ({"policy": "every", "stride": 3, "buffer": 1, "max_frames": 1, "reconnect_attempts": 0}, None),
    ({"backoff_s": 8.0, "max_backoff_s": 8.0}, None),
    ({"policy": "newest"}, "capture policy: unknown 'newest'; valid policies: latest, every"),
    ({"stride": 0}, "capture stride: expected an integer >= 1, got 0"),
    ({"stride": 1.5}, "capture stride: expected an integer >= 1, got 1.5"),
    ({"stride": True}, "capture stride: expected an integer >= 1, got True"),
    ({"buffer": 0}, "capture buffer: expected an integer >= 1, got 0"),
    ({"reconnect_attempts": -1}, "capture reconnect_attempts: expected an integer >= 0, got -1"),
    ({"max_frames": 0}, "capture max_frames: expected an integer >= 1 or None, got 0"),
    ({"max_frames": 2.0}, "capture max_frames: expected an integer >= 1 or None, got 2.0"),
    ({"backoff_s": 0.0}, "capture backoff: expected 0 < backoff_s <= max_backoff_s, got 0.0 and 8.0"),
    ({"backoff_s": -1.0}, "capture backoff: expected 0 < backoff_s <= max_backoff_s, got -1.0 and 8.0"),
    ({"backoff_s": 9.0}, "capture backoff: expected 0 < backoff_s <= max_backoff_s, got 9.0 and 8.0"),
    ({"backoff_s": float("nan")}, "capture backoff: expected 0 < backoff_s <= max_backoff_s, got nan and 8.0"),
    ({"max_frames": True}, "capture max_frames: expected an integer >= 1 or None, got True"),
    ({"backoff_s": "1"}, "capture backoff: expected 0 < backoff_s <= max_backoff_s, got '1' and 8.0"),
]


@pytest.mark.parametrize("changes, error", OPTION_CASES)
def test_capture_options(changes, error):
    if error is None:
        o = CaptureOptions(**changes)
        for key, value in changes.items():
            assert getattr(o, key) == value
        return
    with pytest.raises(ConfigError) as exc:
        CaptureOptions(**changes)
    assert str(exc.value) == error
