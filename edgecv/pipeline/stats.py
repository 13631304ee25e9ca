"""Run figures in fixed memory: a pipeline runs for hours, so nothing here grows with the number of frames.

:class:`Ring` keeps the last ``size`` values in a numpy array; :class:`Series` adds the first values of the
run, so that latency early and late in a run can be compared (is it bounded, or does it creep?).
:class:`StageStats` is one stage's busy time, CPU time and queue depth per frame. :class:`Histogram` counts
values into fixed buckets for the whole run (what Prometheus histograms export).

Example:
    >>> s = Series(size=4, head=2)
    >>> for v in [5, 6, 7, 8, 9, 10]:
    ...     s.add(v)
    >>> s.values().tolist(), s.first().tolist(), len(s)
    ([7.0, 8.0, 9.0, 10.0], [5.0, 6.0], 6)
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np

#: Upper bounds (ms) of the latency buckets: from a fast stage's 0.5 ms to a stalled stream's 10 s.
BUCKETS_MS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0)


class Histogram:
    """Values counted into buckets with upper bounds ``bounds`` (and one above them all), with their sum.

    Example:
        >>> h = Histogram((1.0, 10.0))
        >>> for v in (0.5, 3, 30):
        ...     h.add(v)
        >>> h.cumulative(), h.count, h.sum
        ([1, 2, 3], 3, 33.5)
    """

    def __init__(self, bounds: tuple[float, ...] = BUCKETS_MS) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def add(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> list[int]:
        """Values at or below each bound, then all values (Prometheus' ``le`` buckets, ``+Inf`` last)."""
        out, total = [], 0
        for c in self._counts:
            total += c
            out.append(total)
        return out


class Ring:
    """The last ``size`` floats added, oldest first from :meth:`values`."""

    def __init__(self, size: int) -> None:
        self._a = np.zeros(max(int(size), 1), np.float64)
        self._n = 0

    def add(self, value: float) -> None:
        self._a[self._n % len(self._a)] = value
        self._n += 1

    def __len__(self) -> int:
        """Values added in all (not only those kept)."""
        return self._n

    def values(self) -> np.ndarray:
        k = len(self._a)
        if self._n <= k:
            return self._a[: self._n].copy()
        i = self._n % k
        return np.concatenate([self._a[i:], self._a[:i]])


class Series(Ring):
    """A :class:`Ring` that also keeps the first ``head`` values of the run."""

    def __init__(self, size: int, head: int = 1000) -> None:
        super().__init__(size)
        self._head = np.zeros(max(int(head), 1), np.float64)
        self.histogram = Histogram()

    def add(self, value: float) -> None:
        if self._n < len(self._head):
            self._head[self._n] = value
        super().add(value)
        self.histogram.add(value)

    def first(self) -> np.ndarray:
        return self._head[: min(self._n, len(self._head))].copy()

    def summary(self) -> dict[str, Any]:
        """p50, p99 and max of the kept window; ``first_quarter_p50`` and ``last_quarter_p50``: the median of
        the run's first and last quarter, each at most ``head`` values (early against late, for drift)."""
        v = self.values()
        if not v.size:
            return {"p50": None, "p99": None, "max": None, "first_quarter_p50": None, "last_quarter_p50": None}
        q = max(min(self._n // 4, len(self._head)), 1)
        return {"p50": round(float(np.median(v)), 2), "p99": round(float(np.percentile(v, 99)), 2),
                "max": round(float(v.max()), 2), "first_quarter_p50": round(float(np.median(self.first()[:q])), 2),
                "last_quarter_p50": round(float(np.median(v[-q:])), 2)}


class StageStats:
    """Per-frame busy time (ms) of one stage and the depth of the queue in front of it when it took a frame
    (the last ``window`` frames), with the frame count, total busy time and total CPU time of the whole run.
    CPU time is the stage's own thread's (``time.thread_time``): threads a runtime starts for its work are
    not in it (the report counts them apart). ``histogram``: the busy times of the whole run, in buckets."""

    def __init__(self, name: str, window: int) -> None:
        self.name = name
        self.times = Ring(window)
        self.depths = Ring(window)
        self.count = 0
        self.busy_s = 0.0
        self.cpu_s = 0.0
        self.histogram = Histogram()

    def add(self, ms: float, depth: int, cpu_ms: float = 0.0) -> None:
        self.times.add(ms)
        self.histogram.add(ms)
        self.depths.add(depth)
        self.count += 1
        self.busy_s += ms / 1000.0
        self.cpu_s += cpu_ms / 1000.0

    def summary(self, wall_s: float) -> dict[str, Any]:
        t, d = self.times.values(), self.depths.values()
        return {
            "frames": self.count,
            "median_ms": round(float(np.median(t)), 3) if t.size else None,
            "p99_ms": round(float(np.percentile(t, 99)), 3) if t.size else None,
            "mean_ms": round(float(t.mean()), 3) if t.size else None,
            "busy": round(self.busy_s / wall_s, 3) if wall_s > 0 else None,
            "cpu_ms": round(1000.0 * self.cpu_s / self.count, 3) if self.count else None,
            "queue_mean": round(float(d.mean()), 2) if d.size else None,
            "queue_max": int(d.max()) if d.size else None,
        }
