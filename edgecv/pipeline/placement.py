"""How many threads the runtime gets in a pipelined run, chosen by measuring, not by guessing.

The runtime's threads share the cores with capture, decoding, tracking, the sinks and the video encoder. Given
every core, inference fights the other stages and a preempted worker stalls its whole op; given too few, the
detector becomes the bottleneck. So the first frames of a run calibrate:

1. after :data:`WARMUP_FRAMES` frames, the CPU the other stages spend per frame (their threads' CPU time and
   the encoder process's) is measured over the next :data:`CALIBRATION_FRAMES`;
2. then, on the frame at hand, the inference stage (preprocessing and inference) is timed with each candidate
   thread count: its wall time ``W(t)`` and the CPU the process spends ``C(t)`` (the runtime's threads
   included);
3. each candidate's frame rate is predicted as ``min(1000 / W(t), cores x 1000 / (C(t) + others))``: the
   inference stage's own rate, or what the cores allow for all the work of a frame, whichever is lower; the
   fastest wins (the fewer threads on a tie within 3%), and the model is reloaded with it.

The measurement takes the inference stage a few hundred milliseconds once; the choice, the figures and the
reason go into the run's report (``threads``).

Example:
    >>> predicted_fps(infer_ms=4.0, cpu_ms=8.0, others_ms=6.0, cores=2)
    142.9
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

log = logging.getLogger(__name__)

WARMUP_FRAMES = 10
CALIBRATION_FRAMES = 30
MEASURE_RUNS = 12
TIE = 0.03  # predicted rates this close count as equal: the fewer threads win
OTHER_STAGES = ("capture", "decode", "tracking", "sinks")


def predicted_fps(*, infer_ms: float, cpu_ms: float, others_ms: float, cores: int) -> float:
    """The frame rate a pipeline can reach: its inference stage's own rate, or what ``cores`` allow for a frame's
    CPU (the inference stage's ``cpu_ms``, runtime threads included, plus the other stages' ``others_ms``)."""
    return round(min(1000.0 / infer_ms, cores * 1000.0 / (cpu_ms + others_ms)), 1)


def candidate_threads(cores: int) -> list[int]:
    """1 to 4 threads and every core, at most the cores there are.

    Example:
        >>> candidate_threads(2), candidate_threads(8)
        ([1, 2], [1, 2, 3, 4, 8])
    """
    return sorted({t for t in (1, 2, 3, 4, cores) if t <= cores})


@dataclass
class ThreadPlan:
    """The runtime's threads in a run and how they were chosen: ``calibrated``, ``given`` (``--threads``),
    ``sequential`` (no stage runs beside inference), or ``default`` (every core: the run was too short to
    calibrate)."""

    threads: int | None
    chosen_by: str
    why: str = ""
    others_cpu_ms: float | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"threads": self.threads, "chosen_by": self.chosen_by, "why": self.why,
                "others_cpu_ms": self.others_cpu_ms, "candidates": list(self.candidates)}


class ThreadPlacer:
    """The calibration above, run by the inference stage: :meth:`step` after every frame it prepared and ran.

    ``stats``: the pipeline's per-stage :class:`~edgecv.pipeline.stats.StageStats` (capture included); ``sinks``:
    those with a ``child_cpu_s()`` report their encoder process's CPU.
    """

    def __init__(self, detector: Any, *, cores: int, stats: dict[str, Any], sinks: Sequence[Any] = ()) -> None:
        self.detector = detector
        self.cores = cores
        self.stats = stats
        self.sinks = list(sinks)
        self.reset()

    def reset(self) -> None:
        self.frames = 0
        self._start: tuple[float, int] | None = None
        self.plan = ThreadPlan(self.detector.threads, "default",
                               f"the run ended before the calibration ({WARMUP_FRAMES + CALIBRATION_FRAMES} frames)")
        self.pending = True

    def _others(self) -> tuple[float, int]:
        """CPU seconds of the other stages and encoders so far, and the frames the sinks have finished."""
        cpu = sum(self.stats[name].cpu_s for name in OTHER_STAGES if name in self.stats)
        cpu += sum(s.child_cpu_s() for s in self.sinks if hasattr(s, "child_cpu_s"))
        return cpu, self.stats["sinks"].count

    def step(self, image: Any) -> None:
        """Count a frame; at the end of the calibration window, measure and choose (on ``image``)."""
        self.frames += 1
        if self.frames == WARMUP_FRAMES:
            self._start = self._others()
        elif self.frames >= WARMUP_FRAMES + CALIBRATION_FRAMES and self._start is not None:
            cpu, done = self._others()
            if done - self._start[1] < CALIBRATION_FRAMES // 2:
                return  # the stages after inference are far behind: wait for them to finish more frames
            self._choose(image, (cpu - self._start[0]) * 1000.0 / (done - self._start[1]))

    def _choose(self, image: Any, others_ms: float) -> None:
        det, before = self.detector, self.detector.threads
        time.sleep(0.05)  # let the stages after inference finish the frames they hold
        rows = []
        for t in candidate_threads(self.cores):
            det.set_threads(t)
            for _ in range(2):
                det.infer(det.prepare(image)[0])
            walls, c0 = [], time.process_time()
            for _ in range(MEASURE_RUNS):
                t0 = time.perf_counter()
                det.infer(det.prepare(image)[0])
                walls.append((time.perf_counter() - t0) * 1000.0)
            cpu = (time.process_time() - c0) * 1000.0 / MEASURE_RUNS
            wall = statistics.median(walls)
            rows.append({"threads": t, "infer_ms": round(wall, 3), "cpu_ms": round(cpu, 3),
                         "predicted_fps": predicted_fps(infer_ms=wall, cpu_ms=cpu, others_ms=others_ms, cores=self.cores)})
        top = max(r["predicted_fps"] for r in rows)
        best = next(r for r in rows if r["predicted_fps"] >= top * (1 - TIE))
        if det.threads != best["threads"]:
            det.set_threads(best["threads"])
        why = (f"{best['threads']} of {self.cores} cores: predicted {best['predicted_fps']:g} frames/s with the other "
               f"stages at {others_ms:.2f} CPU ms per frame (" +
               ", ".join(f"{r['threads']}: {r['predicted_fps']:g}" for r in rows) + ")")
        self.plan = ThreadPlan(best["threads"], "calibrated", why, round(others_ms, 3), rows)
        self.pending = False
        log.info("runtime threads: %s (was %s)", why, before)
