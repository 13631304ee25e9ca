"""Does the scene generator keep up with the demo? Frames rendered per second by ``synthetic:`` (the source
``edgecv demo`` tracks) against the rate the demo's detector and pipeline consume them.

    .venv/bin/python benchmarks/scene_generator.py [--frames 600] [--repeat 3] [--artifacts DIR] [--json]

1. generator alone: every frame of ``synthetic:frames=N,seed=7`` (the demo's video), rendered and read
   with nothing else running; wall ms per frame, median of ``--repeat`` passes;
2. the demo's tracking run (``edgecv track`` on the built-in detector's fastest artifact, OC-SORT with the
   demo's settings, sinks included), ``--repeat`` times: its frame rate, and the inference stage's own rate
   (1000 / its median ms per frame: preprocessing and inference);
3. the ratios: generator rate / pipelined rate and generator rate / inference rate. The aim is 3x the
   pipelined rate, so that the demo measures the pipeline and not the generator.

``--artifacts``: the built-in detector's artifacts (default: exported to a temporary folder first, as in
``pipeline_vtest.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

from _common import REPO  # noqa: F401  (puts the checkout on sys.path)
from pipeline_vtest import builtin_artifacts

from edgecv.pipeline.track import track
from edgecv.sources import open_source
from edgecv.tables import render

VIDEO_SEED = 7  # converters/track_demo.py


def generator_alone(frames: int) -> float:
    """Wall ms per frame to render and read every frame of the demo's video."""
    with open_source(f"synthetic:frames={frames},seed={VIDEO_SEED}") as src:
        t0, n = time.perf_counter(), 0
        for _ in src:
            n += 1
        return (time.perf_counter() - t0) * 1000.0 / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=600)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--artifacts", type=Path)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from converters.track_demo import TRACKER, TRACKER_OPTIONS

    with tempfile.TemporaryDirectory(prefix="scene-generator-") as tmp_name:
        tmp = Path(tmp_name)
        artifacts = builtin_artifacts(args.artifacts, tmp)
        gen, runs = [], []
        for k in range(args.repeat):
            gen.append(generator_alone(args.frames))
            s = track(artifacts, f"synthetic:frames={args.frames},seed={VIDEO_SEED}", out=tmp / f"track{k}",
                      tracker=TRACKER, tracker_options=TRACKER_OPTIONS).summary
            runs.append({"fps": s["fps"], "inference_ms": s["stages"]["inference"]["median_ms"],
                         "capture_ms": s["stages"]["capture"]["median_ms"], "model": Path(s["model"]).name})
    gen_ms = statistics.median(gen)
    fps = statistics.median(r["fps"] for r in runs)
    infer_ms = statistics.median(r["inference_ms"] for r in runs)
    result = {"frames": args.frames, "generator_ms": round(gen_ms, 3), "generator_fps": round(1000 / gen_ms, 1),
              "generator_ms_runs": [round(g, 3) for g in gen], "pipelined_fps": fps,
              "pipelined_fps_runs": [r["fps"] for r in runs], "inference_ms": infer_ms,
              "inference_fps": round(1000 / infer_ms, 1), "capture_ms_in_pipeline": statistics.median(r["capture_ms"] for r in runs),
              "model": runs[0]["model"],
              "generator_vs_pipelined": round(1000 / gen_ms / fps, 2),
              "generator_vs_inference": round(infer_ms / gen_ms, 2)}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(render(["", "ms per frame", "frames/s"], [
        ["generator alone", f"{gen_ms:.2f}", f"{1000 / gen_ms:.1f}"],
        ["demo pipelined (whole run)", f"{1000 / fps:.2f}", f"{fps:.1f}"],
        [f"demo inference stage ({result['model']})", f"{infer_ms:.2f}", f"{1000 / infer_ms:.1f}"]], align="lrr"))
    print(f"generator / pipelined {result['generator_vs_pipelined']:.2f}x, generator / inference stage "
          f"{result['generator_vs_inference']:.2f}x (aim: 3x the pipelined rate); generator ms of each pass "
          f"{result['generator_ms_runs']}, pipelined fps {result['pipelined_fps_runs']}")


if __name__ == "__main__":
    main()
