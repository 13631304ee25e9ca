"""Runs a reference tracker over MOTChallenge detections; run by track_mot15.py in a separate venv.

    <ref-venv>/bin/python benchmarks/_track_reference.py REQUEST.json

Needs only numpy and the reference package, never edgecv (the reference venv has no edgecv): the original
SORT (``pip install sort-tracker-py``: Bewley's sort.py, packaged) or supervision's ``ByteTrack``
(``pip install "supervision<0.31"``; 0.31 moved it out to the ``trackers`` package).

The request is JSON: ``{"tracker": "sort" | "supervision", "runs": [{"det": PATH, "fps": F, "step": S,
"frames": N, "key": K}, ...], "timing": [{"det": PATH, "fps": F}, ...], "repeats": R}``. Every run tracks
frames 1, 1+S, 1+2S, ... of the det file (``frames`` of them, renumbered 1, 2, ...) with the reference's
defaults (supervision's ``frame_rate`` set to F); the timing set is tracked ``repeats`` times after one
untimed warm-up pass, timing only the trackers' ``update`` calls (inputs are made beforehand). Prints JSON: per
run key the output rows ``[frame, id, x, y, w, h, score]``, the reference's version, and the frames per
second of each repeat, by the wall clock and by the process's CPU time.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from importlib import metadata


def read_det(path: str, step: int = 1, frames: int | None = None) -> list:
    import numpy as np

    a = np.loadtxt(path, delimiter=",", ndmin=2)
    a = a[(a[:, 0] - 1) % step == 0]
    last = int(a[:, 0].max()) if len(a) else 0
    n = (last - 1) // step + 1 if frames is None else frames
    out = []
    for k in range(n):
        r = a[a[:, 0] == 1 + k * step]
        out.append(np.concatenate([r[:, 2:4], r[:, 2:4] + r[:, 4:6], r[:, 6:7]], axis=1))
    return out


class SortRef:
    def __init__(self, fps: float) -> None:
        from sort_tracker import Sort

        self.t = Sort()  # max_age=1, min_hits=3, iou_threshold=0.3: the reference's defaults

    def prepare(self, dets):
        import numpy as np

        return dets if len(dets) else np.empty((0, 5))

    def update(self, prepared):
        return self.t.update(prepared)

    @staticmethod
    def rows(out) -> list:
        # [x1, y1, x2, y2, score, id]
        return [[r[-1], r[0], r[1], r[2] - r[0], r[3] - r[1], r[4]] for r in out.tolist()]


class SupervisionRef:
    def __init__(self, fps: float) -> None:
        import supervision as sv

        self.sv = sv
        self.t = sv.ByteTrack(frame_rate=fps)  # every other setting at its default

    def prepare(self, dets):
        import numpy as np

        return self.sv.Detections(
            xyxy=dets[:, :4].astype(np.float32), confidence=dets[:, 4].astype(np.float32),
            class_id=np.zeros(len(dets), int),
        )

    def update(self, prepared):
        return self.t.update_with_detections(prepared)

    @staticmethod
    def rows(out) -> list:
        return [
            [int(i), b[0], b[1], b[2] - b[0], b[3] - b[1], float(c)]
            for i, b, c in zip(out.tracker_id.tolist(), out.xyxy.tolist(), out.confidence.tolist())
        ]


def main() -> int:
    warnings.filterwarnings("ignore")
    req = json.loads(open(sys.argv[1]).read())
    if req["tracker"] == "sort":
        cls, version = SortRef, "sort-tracker-py " + metadata.version("sort-tracker-py")
    else:
        cls, version = SupervisionRef, "supervision " + metadata.version("supervision")
    result = {"version": version, "runs": {}, "frames_per_second": [], "cpu_frames_per_second": []}
    for run in req["runs"]:
        frames = read_det(run["det"], run.get("step", 1), run.get("frames"))
        tracker = cls(run["fps"])
        rows = []
        for f, dets in enumerate(frames, 1):
            rows += [[f] + r for r in cls.rows(tracker.update(tracker.prepare(dets)))]
        result["runs"][run["key"]] = rows
    timing = [(t["fps"], read_det(t["det"])) for t in req.get("timing", [])]
    if timing:
        prepared = []
        for fps, frames in timing:
            maker = cls(fps)
            prepared.append((fps, [maker.prepare(d) for d in frames]))
        for repeat in range(int(req.get("repeats", 3)) + 1):  # the first pass warms up
            elapsed = cpu = 0.0
            count = 0
            for fps, frames in prepared:
                tracker = cls(fps)
                start, start_cpu = time.perf_counter(), time.process_time()
                for d in frames:
                    tracker.update(d)
                elapsed += time.perf_counter() - start
                cpu += time.process_time() - start_cpu
                count += len(frames)
            if repeat:
                result["frames_per_second"].append(count / elapsed)
                result["cpu_frames_per_second"].append(count / cpu if cpu > 0 else None)
        result["timed_frames"] = count
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
