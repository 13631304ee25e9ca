"""The pipeline's inference layouts side by side on ../shared/data/video/vtest.avi, in paired rounds: what the
calibration chooses against the layouts it chooses among, and OpenCV's pool at one thread against left as is.

    .venv/bin/python benchmarks/pipeline_layouts.py [--model builtin|ssd] [--artifacts DIR] [--rounds 8]
                                                     [--frames 795] [--json]

Runs, each ``edgecv track`` on the first ``--frames`` frames (OC-SORT; annotated MP4, JSON lines and MOT txt to
a temporary folder), one of each per round so that every round's runs see the same machine:
- ``calibrated``: the defaults (the layout chosen on the first 40 frames; for the built-in detector, inline);
- ``2 workers x 1 thread``: given (``--workers 2 --threads 1``), as the calibration chose before inline existed;
- ``calibrated, OpenCV pool as is``: the defaults, but OpenCV's own threads left at its default
  (``PipelineOptions(opencv_threads=None)``);
- ``sequential, 1 thread``: every stage in one thread, one runtime thread.
Figures: each run's median frames/s and CPU ms per frame over the rounds, and the median over rounds of its
rate divided by the calibrated run's in the same round (with every round's ratio).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from _common import SHARED_DATA, shared_model
from pipeline_vtest import builtin_artifacts

from edgecv.pipeline.capture import CaptureOptions
from edgecv.pipeline.placement import layout
from edgecv.pipeline.runner import PipelineOptions
from edgecv.pipeline.track import DetectorSettings, track
from edgecv.tables import render

RUNS = {
    "calibrated": dict(concurrent=True),
    "2 workers x 1 thread": dict(concurrent=True, workers=2, threads=1),
    "calibrated, OpenCV pool as is": dict(concurrent=True, options=PipelineOptions(opencv_threads=None)),
    "sequential, 1 thread": dict(concurrent=False, threads=1),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("builtin", "ssd"), default="builtin")
    p.add_argument("--artifacts", type=Path, help="the built-in detector's artifacts (default: exported here)")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--frames", type=int, default=795)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("edgecv.integrity").setLevel(logging.ERROR)
    video = SHARED_DATA / "video" / "vtest.avi"
    if not video.is_file():
        sys.exit(f"needs {video}")
    with tempfile.TemporaryDirectory(prefix="pipeline-layouts-") as tmp_name:
        tmp = Path(tmp_name)
        if args.model == "ssd":
            from edgecv.labels import read_labels

            model = shared_model("ssd_mobilenet_v1_coco_quant/detect.tflite")
            base = DetectorSettings(spec="ssd-mobilenet-v1-coco", labels=read_labels(model.parent / "labelmap.txt"),
                                    classes=["person"])
        else:
            model, base = builtin_artifacts(args.artifacts, tmp), DetectorSettings()
        runs: dict[str, list[dict]] = {name: [] for name in RUNS}
        for _ in range(args.rounds):
            for name, how in RUNS.items():
                settings = replace(base, threads=how.get("threads"), workers=how.get("workers"))
                s = track(model, str(video), out=tmp / "out", tracker="ocsort", detector=settings,
                          concurrent=how["concurrent"], options=how.get("options"),
                          capture=CaptureOptions(max_frames=args.frames)).summary
                t = s["threads"]
                runs[name].append({"fps": s["fps"], "cpu_ms": s["cpu"]["total_ms"],
                                   "layout": layout(t["workers"], t["threads"], bool(t.get("inline")))})
    first = runs["calibrated"]
    results = {}
    for name, rs in runs.items():
        ratios = [r["fps"] / c["fps"] for r, c in zip(rs, first)]
        results[name] = {"fps": statistics.median(r["fps"] for r in rs),
                         "cpu_ms": statistics.median(r["cpu_ms"] for r in rs),
                         "layouts": sorted({r["layout"] for r in rs}),
                         "vs_calibrated": round(statistics.median(ratios), 3),
                         "vs_calibrated_rounds": [round(x, 2) for x in ratios]}
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"{args.model} on vtest.avi, {args.frames} frames, {args.rounds} paired rounds (medians)")
    print(render(["run", "layout", "fps", "cpu ms/frame", "fps / calibrated's", "each round"],
                 [[name, ", ".join(r["layouts"]), f"{r['fps']:.1f}", f"{r['cpu_ms']:.2f}", f"{r['vs_calibrated']:.3f}",
                   " ".join(f"{x:.2f}" for x in r["vs_calibrated_rounds"])] for name, r in results.items()],
                 align="llrrrl"))


if __name__ == "__main__":
    main()
