"""How many threads the runtime gets in a pipelined run, and in how many inference workers, chosen by measuring.

The runtime's threads share the cores with capture, decoding, tracking, the sinks and the video encoder. Given
every core, inference fights the other stages and a preempted worker stalls its whole op; given too few, the
detector becomes the bottleneck. A second way to use the cores is frame-level: ``w`` inference workers, each
with its own copy of the model on ``t`` threads, take frames in turn (their results are put back in order
before tracking); a preempted worker then delays only its own frame. So the first frames of a run calibrate:

1. after :data:`WARMUP_FRAMES` frames, the CPU the other stages spend per frame (their threads' CPU time and
   the encoder process's, each over the frames it finished) is measured over the next
   :data:`CALIBRATION_FRAMES`;
2. then, on the frame at hand, the inference stage (preprocessing and inference) is timed with each candidate
   thread count: its wall time ``W(t)`` and the CPU the process spends ``C(t)`` (the runtime's threads
   included), with the stages after inference idle and capture held between two reads (otherwise capture's
   reads ahead land in ``C(t)``: 3 ms reads beside a 0.5 ms model swung ``C(t)`` by 15% between thread counts);
3. each layout of ``w`` workers by ``t`` threads (``w x t`` at most the cores) is predicted to reach
   ``min(w x 1000 / W(t), cores x 1000 / (C(t) + others))``: the inference stage's own rate, or what the cores
   allow for all the work of a frame, whichever is lower. So is each thread count's *inline* layout: one
   worker that also runs decoding, tracking and the sinks (``L`` CPU ms a frame in their threads), at
   ``min(1000 / (W(t) + L), cores x 1000 / (C(t) + others))``; capture keeps its own thread. The fastest wins;
   on a tie within 3%, inline on one thread, then more workers, then fewer threads in all. The prediction
   leaves out what stage threads cost (hand-offs, the interpreter's lock passed among five threads), which
   inline on one thread does not pay (on more, its runtime threads wait while it decodes, tracks and writes:
   SSD MobileNet inline x 2 ran at 0.85x of 2 x 1 in 5 paired rounds); a worker on one thread never waits
   for a preempted sibling thread, and a second worker absorbs the preemption the calibration cannot see.
   Measured side by side on vtest.avi, 2 cores, 795 frames, medians of 3-4 runs: SSD MobileNet 2 workers x
   1 thread 128.3 frames/s (0.97 of the run's CPU limit), 1 x 2 106.4 (0.84), 1 x 1 97.5 (0.74); the
   built-in detector, whose layouts are all bound by the cores, 2 x 1 321.7 (0.90), 1 x 1 308.6 (0.89),
   1 x 2 301.0 (0.89); later, inline x 1 against 2 x 1 gave 1.04x and 1.00x in two runs of 8 paired rounds
   (``benchmarks/pipeline_layouts.py``). The model is reloaded with the chosen threads, and each extra
   worker loads its own copy (memory grows by one model per worker).

The measurement stops the inference stage once: (2 + MEASURE_RUNS) frames at each thread count and the
reloads, about 50 ms for the built-in detector on 2 cores. The choice, the figures and the reason go into
the run's report (``threads``).

Example:
    >>> predicted_fps(infer_ms=4.0, cpu_ms=8.0, others_ms=6.0, cores=2)
    142.9
    >>> predicted_fps(infer_ms=8.0, cpu_ms=8.0, others_ms=6.0, cores=2, workers=2)
    142.9
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Sequence

log = logging.getLogger(__name__)

WARMUP_FRAMES = 10
CALIBRATION_FRAMES = 30
MEASURE_RUNS = 8
SETTLE_S = 0.05  # the longest the calibration waits for the stages after inference to finish their frames
TIE = 0.03  # predicted rates this close count as equal: inline on 1 thread, then more workers, then fewer threads
LATER_STAGES = ("decode", "tracking", "sinks")  # what an inline layout runs in the inference thread
OTHER_STAGES = ("capture", *LATER_STAGES)


def predicted_fps(*, infer_ms: float, cpu_ms: float, others_ms: float, cores: int, workers: int = 1,
                  inline_ms: float | None = None) -> float:
    """The frame rate a pipeline can reach: its ``workers`` inference workers' rate, or what ``cores`` allow for
    a frame's CPU (the inference stage's ``cpu_ms``, runtime threads included, plus the other stages'
    ``others_ms``). ``inline_ms``: the layout runs the stages after inference in the inference thread, at that
    many ms a frame (one worker)."""
    own = infer_ms + (inline_ms or 0.0)
    return round(min(workers * 1000.0 / own, cores * 1000.0 / (cpu_ms + others_ms)), 1)


def candidate_threads(cores: int) -> list[int]:
    """1 to 4 threads and every core, at most the cores there are.

    Example:
        >>> candidate_threads(2), candidate_threads(8)
        ([1, 2], [1, 2, 3, 4, 8])
    """
    return sorted({t for t in (1, 2, 3, 4, cores) if t <= cores})


def candidate_layouts(cores: int, *, max_workers: int = 4) -> list[tuple[int, int]]:
    """``(workers, threads)`` pairs with at most ``cores`` threads in all.

    Example:
        >>> candidate_layouts(2)
        [(1, 1), (1, 2), (2, 1)]
    """
    return [(w, t) for w in range(1, min(cores, max_workers) + 1) for t in candidate_threads(cores) if w * t <= cores]


@dataclass
class ThreadPlan:
    """The runtime's threads per inference worker, the workers, and how they were chosen: ``calibrated``,
    ``given`` (``--threads``/``--workers``), ``sequential`` (no stage runs beside inference), or ``default``
    (every core: the run was too short to calibrate)."""

    threads: int | None
    chosen_by: str
    why: str = ""
    others_cpu_ms: float | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    workers: int = 1
    inline: bool = False  # decoding, tracking and the sinks run in the inference thread (capture keeps its own)

    def to_dict(self) -> dict[str, Any]:
        return {"threads": self.threads, "workers": self.workers, "inline": self.inline, "chosen_by": self.chosen_by,
                "why": self.why, "others_cpu_ms": self.others_cpu_ms, "candidates": list(self.candidates)}


class ThreadPlacer:
    """The calibration above, run by the inference stage: :meth:`step` after every frame it prepared and ran.

    ``stats``: the pipeline's per-stage :class:`~edgecv.pipeline.stats.StageStats` (capture included); ``sinks``:
    those with a ``child_cpu_s()`` report their encoder process's CPU; ``reads_per_frame``: the frames capture reads
    for each it delivers, so far (more than 1 when a ``stride`` or the newest-frame policy leaves reads out; without
    it, 1). Capture's CPU per frame is its CPU per read in the window times that: dividing its window's CPU by the
    frames delivered meanwhile would misjudge it whenever its read-ahead buffer fills or drains in the window.
    ``pause``: a context manager that holds capture between reads while the model is timed
    (:meth:`~edgecv.pipeline.capture.Capture.paused`).
    """

    def __init__(self, detector: Any, *, cores: int, stats: dict[str, Any], sinks: Sequence[Any] = (),
                 reads_per_frame: Callable[[], float] | None = None,
                 pause: Callable[[], ContextManager[bool]] | None = None) -> None:
        self.detector = detector
        self.cores = cores
        self.stats = stats
        self.sinks = list(sinks)
        self.reads_per_frame = reads_per_frame
        self.pause = pause
        self.reset()

    def reset(self) -> None:
        self.frames = 0
        self._start: dict[str, tuple[float, int]] | None = None
        self.plan = ThreadPlan(self.detector.threads, "default",
                               f"the run ended before the calibration ({WARMUP_FRAMES + CALIBRATION_FRAMES} frames)")
        self.pending = True

    def _snapshot(self) -> dict[str, tuple[float, int]]:
        """Each other stage's CPU seconds and frames so far; ``encoder``: the sinks' encoder processes' CPU
        against the sinks' frames."""
        snap = {name: (self.stats[name].cpu_s, self.stats[name].count) for name in OTHER_STAGES if name in self.stats}
        snap["encoder"] = (sum(s.child_cpu_s() for s in self.sinks if hasattr(s, "child_cpu_s")),
                           self.stats["sinks"].count)
        return snap

    def step(self, image: Any) -> None:
        """Count a frame; at the end of the calibration window, measure and choose (on ``image``).

        Each stage's CPU per frame is its own CPU over its own frames in the window: the stages lag inference by
        different numbers of frames at its two ends (under load the sinks can be several frames behind at the
        start and caught up at the end), so dividing every stage's CPU by one stage's frames misjudges them."""
        self.frames += 1
        if self.frames == WARMUP_FRAMES:
            self._start = self._snapshot()
        elif self.frames >= WARMUP_FRAMES + CALIBRATION_FRAMES and self._start is not None:
            now = self._snapshot()
            if now["encoder"][1] - self._start["encoder"][1] < CALIBRATION_FRAMES // 2:
                return  # the stages after inference are far behind: wait for them to finish more frames
            per_frame = {name: (cpu - self._start[name][0]) * 1000.0 / (n - self._start[name][1])
                         for name, (cpu, n) in now.items() if n > self._start[name][1]}
            if "capture" in per_frame and self.reads_per_frame is not None:
                per_frame["capture"] *= max(1.0, self.reads_per_frame())
            self._choose(image, sum(per_frame.values()), sum(per_frame.get(name, 0.0) for name in LATER_STAGES))

    def _settle(self) -> None:
        """Wait (:data:`SETTLE_S` at most) until the stages after inference have finished every frame it passed on
        (all but the one at hand), so that the process's CPU time during the measurement is inference's alone.
        It takes a few ms; the fixed 50 ms pause it replaced cost a 795-frame run 1.5% of its time."""
        end = time.perf_counter() + SETTLE_S
        while self.stats["sinks"].count < self.frames - 1 and time.perf_counter() < end:
            time.sleep(0.0005)

    def _choose(self, image: Any, others_ms: float, later_ms: float) -> None:
        det, before = self.detector, self.detector.threads
        self._settle()
        measured = {}
        with self.pause() if self.pause is not None else contextlib.nullcontext(True) as held:
            if not held:
                log.debug("capture's read outlasted the pause; timing the model beside it")
            for t in candidate_threads(self.cores):
                det.set_threads(t)
                for _ in range(2):
                    det.infer(det.prepare(image)[0])
                walls, c0 = [], time.process_time()
                for _ in range(MEASURE_RUNS):
                    t0 = time.perf_counter()
                    det.infer(det.prepare(image)[0])
                    walls.append((time.perf_counter() - t0) * 1000.0)
                measured[t] = (statistics.median(walls), (time.process_time() - c0) * 1000.0 / MEASURE_RUNS)
        rows = layout_rows(measured, others_ms=others_ms, cores=self.cores, inline_ms=later_ms)
        best = best_layout(rows)
        if det.threads != best["threads"]:
            det.set_threads(best["threads"])
        why = (f"{layout(best['workers'], best['threads'], best['inline'])} of {self.cores} cores: predicted "
               f"{best['predicted_fps']:g} frames/s with the other stages at {others_ms:.2f} CPU ms per frame, "
               f"{later_ms:.2f} after inference (" +
               ", ".join(f"{layout(r['workers'], r['threads'], r['inline'])}: {r['predicted_fps']:g}"
                         for r in rows) + ")")
        self.plan = ThreadPlan(best["threads"], "calibrated", why, round(others_ms, 3), rows, best["workers"],
                               best["inline"])
        self.pending = False
        log.info("inference layout: %s (was %s threads)", why, before)


def layout_rows(measured: dict[int, tuple[float, float]], *, others_ms: float, cores: int,
                inline_ms: float | None = None) -> list[dict[str, Any]]:
    """Each ``(workers, threads)`` layout with its predicted rate, from ``measured[threads] = (W, C)``: the
    inference stage's wall and CPU milliseconds per frame on that many threads. With ``inline_ms`` (the CPU ms
    per frame of the stages after inference), also each thread count's inline layout: one worker that runs
    those stages itself."""
    shapes = [(w, t, False) for w, t in candidate_layouts(cores)]
    if inline_ms is not None:
        shapes += [(1, t, True) for t in candidate_threads(cores)]
    return [{"workers": w, "threads": t, "inline": inline, "infer_ms": round(measured[t][0], 3),
             "cpu_ms": round(measured[t][1], 3),
             "predicted_fps": predicted_fps(infer_ms=measured[t][0], cpu_ms=measured[t][1], others_ms=others_ms,
                                            cores=cores, workers=w, inline_ms=inline_ms if inline else None)}
            for w, t, inline in shapes if t in measured]


def best_layout(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The fastest predicted layout; within :data:`TIE` of it, inline on one thread, then the most workers,
    then the fewest threads in all. The prediction leaves out what threads cost: the hand-offs between stages
    and the interpreter's lock passed among them. Inline on one thread has none of it, and on a tie it is the
    faster. Inline on more threads is not: its runtime threads wait while it decodes, tracks and writes (SSD
    MobileNet on vtest, predicted within 2% of two workers on one thread, ran at 0.85x of them).

    Example:
        >>> rows = layout_rows({1: (7.5, 7.5), 2: (3.8, 9.0)}, others_ms=4.9, cores=2, inline_ms=2.0)
        >>> shown = [(layout(r["workers"], r["threads"], r["inline"]), r["predicted_fps"]) for r in rows]
        >>> shown  # doctest: +NORMALIZE_WHITESPACE
        [('1 worker x 1 thread', 133.3), ('1 worker x 2 threads', 143.9), ('2 workers x 1 thread', 161.3),
         ('inline x 1 thread', 105.3), ('inline x 2 threads', 143.9)]
        >>> best = best_layout(rows); layout(best["workers"], best["threads"], best["inline"])
        '2 workers x 1 thread'
    """
    top = max(r["predicted_fps"] for r in rows)
    return min((r for r in rows if r["predicted_fps"] >= top * (1 - TIE)),
               key=lambda r: (not (r.get("inline", False) and r["threads"] == 1), -r["workers"],
                              r["workers"] * r["threads"]))


def layout(workers: int, threads: int, inline: bool = False) -> str:
    """``"2 workers x 1 thread"``, ``"1 worker x 2 threads"``; ``"inline x 1 thread"``: one worker that also
    decodes, tracks and writes the sinks (capture keeps its own thread)."""
    if inline:
        return f"inline x {threads} thread{'s' * (threads != 1)}"
    return f"{workers} worker{'s' * (workers != 1)} x {threads} thread{'s' * (threads != 1)}"
