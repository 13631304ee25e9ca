"""One model shared by several streams: their frames gathered into one inference call.

A :class:`Batcher` owns a loaded model and one thread that runs it. Each stream's inference thread calls
:meth:`Batcher.run` with its prepared input and waits; the batcher takes the first waiting input, gathers
others for at most ``max_wait_ms`` (only while more streams are registered than inputs gathered, so a model
used by one stream never waits), up to ``max_size``, and runs them as one batch. A model with a fixed batch
of 1 runs the gathered inputs one after another in the same turn (:meth:`edgecv.model.Model.run`); a model
whose outputs do not follow the batch falls back to one input per call, for good.

Example:
    >>> batcher = Batcher(detector.model, max_size=4, max_wait_ms=5)        # doctest: +SKIP
    >>> per_stream = detector.sharing(batcher.run)                          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecv.errors import EdgeCVError
from edgecv.machine import batch_scheduling
from edgecv.pipeline.stats import Histogram

log = logging.getLogger(__name__)

#: Batch sizes counted by the batch-size histogram.
SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
_STOP = object()


@dataclass
class _Request:
    x: np.ndarray
    done: threading.Event = field(default_factory=threading.Event)
    outputs: list[np.ndarray] | None = None
    error: BaseException | None = None


class BatcherClosed(EdgeCVError):
    """The shared model was closed while a stream still waited on it."""


class Batcher:
    """Runs ``model`` (anything with ``run(x) -> list[np.ndarray]``) for several threads, gathering their inputs
    (see the module docstring). Figures: ``calls``, ``frames``, ``latency`` (ms per call, a
    :class:`~edgecv.pipeline.stats.Histogram`) and ``sizes`` (inputs per call)."""

    def __init__(self, model: Any, *, max_size: int = 4, max_wait_ms: float = 5.0, name: str = "") -> None:
        self.model = model
        self.name = name
        self.max_size = max_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.batchable = True
        self.users = 0
        self.calls = 0
        self.frames = 0
        self.latency = Histogram()
        self.sizes = Histogram(SIZE_BUCKETS)
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._figures_lock = threading.Lock()  # calls, frames and the histograms change together
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def figures(self) -> dict[str, Any]:
        """``calls``, ``frames``, and the ``latency`` and ``sizes`` histograms as (bounds, cumulative counts, sum),
        all of the same moment."""
        with self._figures_lock:
            return {"calls": self.calls, "frames": self.frames,
                    "latency": (self.latency.bounds, self.latency.cumulative(), self.latency.sum),
                    "sizes": (self.sizes.bounds, self.sizes.cumulative(), self.sizes.sum)}

    def register(self) -> None:
        """One more stream uses this model (the batcher waits for company only while there is some)."""
        with self._lock:
            self.users += 1

    def unregister(self) -> None:
        with self._lock:
            self.users = max(0, self.users - 1)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """The model's outputs for ``x`` (a batch of 1), computed in the batcher's thread with others'."""
        if self._closed:
            raise BatcherClosed(f"model {self.name} is closed")
        req = _Request(x)
        self._queue.put(req)
        req.done.wait()
        if req.error is not None or req.outputs is None:  # _serve sets one of the two before done
            raise req.error or BatcherClosed(f"model {self.name}: no output")
        return req.outputs

    def close(self) -> None:
        """Stop the thread; inputs still waiting get :class:`BatcherClosed`."""
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout=10.0)

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        """``first`` and the inputs that join it; True when the batcher was asked to stop meanwhile."""
        items = [first]
        deadline = time.perf_counter() + self.max_wait_s
        while len(items) < self.max_size:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.perf_counter()
                if left <= 0 or self.users <= len(items):
                    break
                try:
                    nxt = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if nxt is _STOP:
                return items, True
            items.append(nxt)
        return items, False

    def _loop(self) -> None:
        batch_scheduling()
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            items, stopping = self._gather(first)
            self._serve(items)
        while True:  # whoever still waits is told
            try:
                left = self._queue.get_nowait()
            except queue.Empty:
                break
            if left is not _STOP:
                left.error = BatcherClosed(f"model {self.name} is closed")
                left.done.set()

    def _serve(self, items: list[_Request]) -> None:
        t0 = time.perf_counter()
        try:
            if len(items) > 1 and self.batchable:
                outputs = self.model.run(np.concatenate([r.x for r in items]))
                if all(o.ndim and o.shape[0] == len(items) for o in outputs):
                    for i, r in enumerate(items):
                        r.outputs = [o[i:i + 1] for o in outputs]
                else:
                    self.batchable = False
                    log.info("model %s: outputs %s do not follow a batch of %d; running one frame per call",
                             self.name, [list(o.shape) for o in outputs], len(items))
            for r in items:
                if r.outputs is None:
                    r.outputs = self.model.run(r.x)
        except BaseException as exc:  # every waiting stream gets the failure; the batcher goes on
            for r in items:
                r.error = exc
        finally:
            ms = (time.perf_counter() - t0) * 1000.0
            with self._figures_lock:
                self.calls += 1
                self.frames += len(items)
                self.latency.add(ms)
                self.sizes.add(len(items))
            for r in items:
                if r.outputs is None and r.error is None:
                    r.error = BatcherClosed(f"model {self.name}: no output")
                r.done.set()
