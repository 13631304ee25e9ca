"""Watching a model version in ``edgecv serve``: the check before a hot swap, the probation after it, and the
breach that rolls it back.

A swap (:meth:`edgecv.service.service.Service.swap`) loads the new version beside the running one and runs both
on each stream's last frames (:func:`compare`): the new one is refused when it fails, returns NaN or inf,
finds nothing where the running one found objects, or is slower than ``latency_ratio`` times the running one.
Once switched, every frame of the new version goes through a :class:`WatchedDetector`, which reports to the
version's :class:`Watch`: an exception or a non-finite output is a breach at once (that frame gets no result:
:class:`~edgecv.errors.FrameSkipped`); during ``probation_s`` the version must also keep its latency within
``latency_ratio`` of the old version's and must not go ``empty_frames`` frames in a row without a detection
where the old one found objects in most frames. A breach calls ``on_breach`` once (the service rolls back).
Outside probation, ``latency_ms`` (a fixed budget, for example a device profile's) still applies.

Example:
    >>> watch = Watch("det", 3, SwapOptions(), baseline_ms=4.1, baseline_found=0.9, on_breach=print)  # doctest: +SKIP
    >>> per_stream = WatchedDetector(detector.sharing(batcher.run), watch)                            # doctest: +SKIP
"""

from __future__ import annotations

import collections
import logging
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from edgecv.errors import ConfigError, EdgeCVError, FrameSkipped

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SwapOptions:
    """How a new model version is checked and watched (the serve config's ``swap`` section).

    ``probation_s``: how long the old version stays loaded and the comparisons with it apply; ``check_frames``:
    the last frames of each stream both versions run before the switch; ``latency_ratio``: the most the new
    version may take per frame, as a multiple of the old one's; ``latency_ms``: a fixed budget per frame
    (None: none), applied always; ``empty_frames``: frames in a row without a detection that count as finding
    nothing (when the old version found objects in at least half of its frames); ``poll_s``: how often the
    service looks for versions activated in the store by someone else (``edgecv models activate``).
    ``check_frames: 0`` switches without the check: the probation alone judges the new version; ``probation_s:
    0`` unloads the old version at once. ``fallback``: artifacts (or folders) tried in order when a rollback
    after probation cannot load the previous version (served as version 0 of the model, until another version
    is activated). ``device``: a device profile whose ``budgets.latency_ms`` is the budget when ``latency_ms``
    is not given."""

    def budget_ms(self) -> float | None:
        """``latency_ms``, else the device profile's latency budget."""
        if self.latency_ms is not None or self.device is None:
            return self.latency_ms
        from edgecv.devices import load_profile

        return load_profile(self.device).budgets.latency_ms

    probation_s: float = 30.0
    check_frames: int = 8
    latency_ratio: float = 3.0
    latency_ms: float | None = None
    empty_frames: int = 30
    poll_s: float = 1.0
    fallback: tuple[str, ...] = ()
    device: str | None = None


def check_swap_options(o: SwapOptions, at: str) -> None:
    if not o.probation_s >= 0:
        raise ConfigError(f"{at}: swap.probation_s: expected seconds >= 0, got {o.probation_s}")
    if not 0 <= o.check_frames <= 64:
        raise ConfigError(f"{at}: swap.check_frames: expected 0..64 (0: no check before the switch), got "
                          f"{o.check_frames}")
    if not o.latency_ratio > 1:
        raise ConfigError(f"{at}: swap.latency_ratio: expected a number > 1, got {o.latency_ratio}")
    if o.latency_ms is not None and not o.latency_ms > 0:
        raise ConfigError(f"{at}: swap.latency_ms: expected milliseconds > 0, got {o.latency_ms}")
    if not o.empty_frames >= 1:
        raise ConfigError(f"{at}: swap.empty_frames: expected >= 1, got {o.empty_frames}")
    if not o.poll_s > 0:
        raise ConfigError(f"{at}: swap.poll_s: expected seconds > 0, got {o.poll_s}")
    if o.device is not None:
        try:
            budget = o.budget_ms()
        except ConfigError as exc:
            raise ConfigError(f"{at}: swap.device: {exc}") from None
        if budget is None:
            raise ConfigError(f"{at}: swap.device: the profile {o.device!r} has no budgets.latency_ms; give "
                              "swap.latency_ms, or a profile with one")


# Latency is judged on the median of this many recent frames, once there are MIN_FRAMES of them.
RECENT = 15
MIN_FRAMES = 5
# A new version is never judged slow by less than this (sub-millisecond models jitter by more than 3x).
LATENCY_SLACK_MS = 2.0


def non_finite(outputs: list[np.ndarray]) -> bool:
    """Whether any float output holds NaN or inf."""
    return any(o.dtype.kind == "f" and not np.isfinite(o).all() for o in outputs)


def slow(ms: float, baseline_ms: float | None, o: SwapOptions, budget_ms: float | None = None) -> str | None:
    """Why ``ms`` per frame is too slow against ``baseline_ms`` and ``budget_ms`` (None: it is not)."""
    if budget_ms is not None and ms > budget_ms:
        return f"{ms:.1f} ms per frame, over the budget of {budget_ms:g} ms"
    if baseline_ms is not None and ms > max(o.latency_ratio * baseline_ms, baseline_ms + LATENCY_SLACK_MS):
        return f"{ms:.1f} ms per frame, {ms / max(baseline_ms, 1e-6):.1f}x the previous version's {baseline_ms:.1f} ms"
    return None


class Watch:
    """One version on probation (then watched for good): its figures and whether it breached. ``baseline_ms``
    and ``baseline_found`` are the old version's per-frame time and share of frames with a detection."""

    def __init__(self, name: str, version: int | None, options: SwapOptions, *, baseline_ms: float | None,
                 baseline_found: float | None, on_breach: Callable[[Watch, str], None]) -> None:
        self.name, self.version, self.options = name, version, options
        self.baseline_ms, self.baseline_found = baseline_ms, baseline_found
        self.on_breach = on_breach
        self.budget_ms = options.budget_ms()
        self.started = time.monotonic()
        self.frames = 0
        self.empty_run = 0
        self.breached: str | None = None
        self._ms: collections.deque = collections.deque(maxlen=RECENT)
        self._lock = threading.Lock()

    @property
    def on_probation(self) -> bool:
        return time.monotonic() - self.started < self.options.probation_s

    def timed(self, ms: float) -> None:
        """One frame the version prepared and ran in ``ms`` (as the stream saw it, batching included)."""
        with self._lock:
            self.frames += 1
            self._ms.append(ms)
            recent = statistics.median(self._ms) if len(self._ms) >= MIN_FRAMES else None
            probation = self.on_probation
        why = None if recent is None else slow(recent, self.baseline_ms if probation else None, self.options,
                                               self.budget_ms)
        if why:
            self.breach(why)

    def found(self, found: bool) -> None:
        """Whether the version's frame gave at least one detection."""
        with self._lock:
            self.empty_run = 0 if found else self.empty_run + 1
            run = self.empty_run
        if self.on_probation and run >= self.options.empty_frames and (self.baseline_found or 0) >= 0.5:
            self.breach(f"no detection in {run} frames in a row, where the previous version found objects "
                        f"in {100 * self.baseline_found:.0f}% of its frames")

    def breach(self, reason: str) -> None:
        """Record the first breach and hand it to ``on_breach`` (in a thread of its own: the caller is a stream)."""
        with self._lock:
            if self.breached is not None:
                return
            self.breached = reason
        log.warning("model %s version %s breached: %s", self.name, self.version, reason)
        threading.Thread(target=self.on_breach, args=(self, reason), name=f"rollback-{self.name}", daemon=True).start()

    def status(self) -> dict[str, Any]:
        with self._lock:
            recent = statistics.median(self._ms) if self._ms else None
        return {"version": self.version, "probation": self.on_probation, "frames": self.frames,
                "age_s": round(time.monotonic() - self.started, 1), "median_ms": None if recent is None else round(recent, 3),
                "baseline_ms": self.baseline_ms, "breached": self.breached}


class WatchedDetector:
    """A stream's detector over a watched version: ``inner`` (a :meth:`~edgecv.detection.detector.Detector.sharing`
    detector) does the work; each frame's time, outputs and detections go to ``watch``. A frame whose inference
    fails or gives NaN or inf raises :class:`~edgecv.errors.FrameSkipped` after the breach is reported, and so
    does every frame once the version has breached (until the stream is switched back)."""

    def __init__(self, inner: Any, watch: Watch) -> None:
        self.inner, self.watch = inner, watch
        self._local = threading.local()  # prepare's start time, for infer in the same thread

    def __getattr__(self, name: str) -> Any:  # labels, spec, model, timings, ...: the inner detector's
        return getattr(self.inner, name)

    def _gone(self) -> None:
        if self.watch.breached is not None:
            raise FrameSkipped(f"model {self.watch.name} version {self.watch.version} was rolled back "
                               f"({self.watch.breached})")

    def prepare(self, image: np.ndarray) -> Any:
        self._gone()
        self._local.started = time.perf_counter()
        return self.inner.prepare(image)

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        self._gone()
        try:
            outputs = self.inner.infer(x)
        except FrameSkipped:
            raise
        except EdgeCVError as exc:
            self.watch.breach(f"inference failed: {exc}")
            raise FrameSkipped(str(exc)) from None
        if non_finite(outputs):
            self.watch.breach("NaN or inf in its outputs")
            raise FrameSkipped(f"model {self.watch.name} version {self.watch.version} gave NaN or inf")
        started = getattr(self._local, "started", None)
        if started is not None:
            self.watch.timed((time.perf_counter() - started) * 1000.0)
        return outputs

    def decode(self, outputs: list[np.ndarray], transform: Any) -> Any:
        try:
            dets = self.inner.decode(outputs, transform)
        except EdgeCVError as exc:
            self.watch.breach(f"its outputs could not be decoded: {exc}")
            raise FrameSkipped(str(exc)) from None
        self.watch.found(len(dets) > 0)
        return dets

    def detect(self, image: np.ndarray) -> Any:
        """The inner detector's whole detection (for checks outside a pipeline)."""
        return self.inner.detect(image)


@dataclass
class Comparison:
    """Both versions on the same recent frames: per-frame medians, shares of frames with a detection, and why
    the new one is refused (None: it passed)."""

    frames: int
    old_ms: float | None
    new_ms: float | None
    old_found: float | None
    new_found: float | None
    refused: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def compare(old: Any, new: Any, images: list[np.ndarray], options: SwapOptions) -> Comparison:
    """Run ``old`` and ``new`` (detectors with ``detect``) on ``images`` and judge the new one (module docstring)."""
    if not images:
        return Comparison(0, None, None, None, None, None)
    old_ms, new_ms, old_found, new_found = [], [], [], []
    for image in images:
        t0 = time.perf_counter()
        found_old = len(old.detect(image)) > 0
        t1 = time.perf_counter()
        try:
            found_new = len(new.detect(image)) > 0
        except EdgeCVError as exc:
            return Comparison(len(images), None, None, None, None, f"it failed on a recent frame: {exc}")
        t2 = time.perf_counter()
        old_ms.append((t1 - t0) * 1000.0)
        new_ms.append((t2 - t1) * 1000.0)
        old_found.append(found_old)
        new_found.append(found_new)
    o, n = statistics.median(old_ms), statistics.median(new_ms)
    share_old, share_new = float(np.mean(old_found)), float(np.mean(new_found))
    refused = slow(n, o, options, options.budget_ms())
    missed = sum(1 for a, b in zip(old_found, new_found) if a and not b)
    if refused is None and sum(old_found) >= 2 and missed * 2 >= sum(old_found):
        refused = (f"it found nothing in {missed} of the {sum(old_found)} recent frames where the running version "
                   "found objects")
    return Comparison(len(images), round(o, 3), round(n, 3), round(share_old, 3), round(share_new, 3), refused)
