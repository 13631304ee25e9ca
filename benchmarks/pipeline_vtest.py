"""The camera pipeline on ../shared/data/video/vtest.avi (768x576, 10 fps, 795 frames): pipelined against a
plain sequential loop over the same stages, against inference alone; per-stage split; latency; --realtime.

    .venv/bin/python benchmarks/pipeline_vtest.py [--frames 795] [--artifacts runs/demo/artifacts] [--json]

Detectors:
- ``ssd``: SSD MobileNet v1 COCO, the quantized .tflite as shipped (LiteRT; its TFLite_Detection_PostProcess
  op runs inside the model), ``--classes person``, tracked with OC-SORT;
- ``builtin``: the built-in scene detector, the artifact of ``--artifacts`` measured fastest here (default:
  exported to a temporary folder first, fp32 and int8 in three formats). It finds shapes, not people, so
  on vtest it shows the speed of the pipeline with a detector of that cost, not tracking quality.

For each detector, in one run, one after another on the same frames (``--frames`` from the start):
1. inference alone: ``detector.infer`` on frames prepared beforehand (median ms, and 1000 / median);
2. sequential: every stage one after another in one thread (``edgecv track --sequential``), sinks included
   (annotated MP4, JSONL, MOT txt to a temporary folder);
3. pipelined: the same stages in their own threads with bounded queues (``edgecv track``);
4. realtime: pipelined, with the file paced at its own 10 fps like a camera (``--realtime``): frames dropped
   by the latest-frame policy, and latency in the first and last quarter of the run (bounded if they agree).
Figures: frames/s over the whole run, per-stage median ms, capture-to-result latency p50/p99, peak RSS.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import SHARED_DATA, shared_model

from edgecv.tables import fmt_float, render
from edgecv.pipeline.capture import CaptureOptions
from edgecv.pipeline.track import DetectorSettings, build_detector, track


def builtin_artifacts(folder: Path | None, tmp: Path) -> Path:
    if folder is not None:
        return folder
    from edgecv.converters.builtin_detector import PREPROCESS, SPEC, WEIGHTS, make_frames
    from edgecv.converters.export import ExportOptions, export
    from edgecv.scenes import CLASSES

    calib, _ = make_frames(300, seed=2000)
    images, _ = make_frames(100, seed=1000)
    export(WEIGHTS, to=("tflite", "onnx", "openvino"), quant="fp32,int8", calib=list(calib), eval_data=list(images),
           detector=SPEC, max_drop=10.0, preprocess=PREPROCESS, labels=list(CLASSES), out=tmp / "builtin",
           name="scene_detector", options=ExportOptions(bench_runs=0))
    return tmp / "builtin"


def inference_alone(detector, video: Path, frames: int) -> dict:
    import cv2

    cap = cv2.VideoCapture(str(video))
    xs = []
    while len(xs) < min(frames, 200):
        ok, image = cap.read()
        if not ok:
            break
        xs.append(detector.prepare(image)[0])
    cap.release()
    for x in xs[:5]:
        detector.infer(x)
    times = []
    for x in xs:
        t0 = time.perf_counter()
        detector.infer(x)
        times.append((time.perf_counter() - t0) * 1000)
    med = statistics.median(times)
    return {"median_ms": round(med, 3), "fps": round(1000 / med, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=795)
    p.add_argument("--artifacts", type=Path, help="the built-in detector's artifacts (default: exported here)")
    p.add_argument("--only", choices=("ssd", "builtin"))
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    video = SHARED_DATA / "video" / "vtest.avi"
    if not video.is_file():
        sys.exit(f"needs {video}")
    ssd_dir = shared_model("ssd_mobilenet_v1_coco_quant/detect.tflite").parent
    from edgecv.labels import read_labels

    ssd_labels = read_labels(ssd_dir / "labelmap.txt")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="pipeline-vtest-") as tmp_name:
        tmp = Path(tmp_name)
        setups = {
            "ssd": (ssd_dir / "detect.tflite",
                    DetectorSettings(spec="ssd-mobilenet-v1-coco", labels=ssd_labels, classes=["person"])),
            "builtin": (None, DetectorSettings()),
        }
        for name, (model, settings) in setups.items():
            if args.only and name != args.only:
                continue
            if model is None:
                model = builtin_artifacts(args.artifacts, tmp)
            detector, chosen = build_detector(model, settings)
            row: dict = {"model": str(detector.model.path), "backend": detector.model.backend,
                         "inference_alone": inference_alone(detector, video, args.frames)}
            runs = {"sequential": dict(concurrent=False, capture=CaptureOptions(max_frames=args.frames)),
                    "pipelined": dict(concurrent=True, capture=CaptureOptions(max_frames=args.frames)),
                    "realtime": dict(concurrent=True, capture=CaptureOptions(max_frames=args.frames, realtime=True))}
            for mode, kw in runs.items():
                detector, _ = build_detector(detector.model.path, settings)  # a fresh model per run
                result = track(detector, str(video), out=tmp / f"{name}-{mode}", tracker="ocsort",
                               detector=settings, **kw)
                s = result.summary
                row[mode] = {"fps": s["fps"], "frames": s["frames"], "dropped": s["capture"]["dropped"],
                             "latency_ms": s["latency_ms"], "peak_rss_mb": round(s["peak_rss_mb"] or 0, 1),
                             "stages": {k: v["median_ms"] for k, v in s["stages"].items()}, "tracks": s["tracks"]}
            row["speedup_vs_sequential"] = round(row["pipelined"]["fps"] / row["sequential"]["fps"], 2)
            results[name] = row
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for name, row in results.items():
        print(f"\n{name}: {Path(row['model']).name} ({row['backend']}); inference alone "
              f"{row['inference_alone']['median_ms']:.2f} ms/frame = {row['inference_alone']['fps']:.0f} frames/s")
        table = []
        for mode in ("sequential", "pipelined", "realtime"):
            r = row[mode]
            st, lat = r["stages"], r["latency_ms"]
            table.append([mode, str(r["frames"]), str(r["dropped"]), f"{r['fps']:.1f}",
                          *(fmt_float(st[k], ".2f") for k in ("capture", "inference", "decode", "tracking", "sinks")),
                          fmt_float(lat["p50"], ".1f"), fmt_float(lat["p99"], ".1f"),
                          f"{fmt_float(lat['first_quarter_p50'], '.1f')}/{fmt_float(lat['last_quarter_p50'], '.1f')}",
                          f"{r['peak_rss_mb']:.0f}"])
        print(render(["run", "frames", "dropped", "fps", "capture", "infer", "decode", "track", "sinks",
                      "lat p50", "lat p99", "q1/q4 p50", "peak MB"], table, align="lrrrrrrrrrrrr"))
        print(f"pipelined / sequential: {row['speedup_vs_sequential']:.2f}x")


if __name__ == "__main__":
    main()
