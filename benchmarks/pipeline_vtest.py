"""The camera pipeline on ../shared/data/video/vtest.avi (768x576, 10 fps, 795 frames): pipelined against a
plain sequential loop over the same stages, against inference alone, against the limit the CPU sets.

    .venv/bin/python benchmarks/pipeline_vtest.py [--frames 795] [--cores N] [--threads T] [--workers W]
                                                   [--artifacts DIR] [--repeat 3] [--json]

Detectors:
- ``ssd``: SSD MobileNet v1 COCO, the quantized .tflite as shipped (LiteRT; its TFLite_Detection_PostProcess
  op runs inside the model), ``--classes person``, tracked with OC-SORT;
- ``builtin``: the built-in scene detector, the artifact of ``--artifacts`` measured fastest here (default:
  exported to a temporary folder first, fp32 and int8 in three formats). It finds shapes, not people, so
  on vtest it shows the speed of the pipeline with a detector of that cost, not tracking quality.

``--cores N`` pins the process to N cores (``os.sched_setaffinity``) before anything loads, as on a board with N
cores; the runtime's threads then default to what ``edgecv track`` chooses for N cores (``--threads`` fixes them).

For each detector, in one run, on the same frames (``--frames`` from the start): ``--repeat`` rounds of the
sequential, one-thread sequential and pipelined runs one after another (so that each round's runs see the same
machine), then one realtime run; the run of median frame rate shown with each CPU column's median:
1. inference alone: ``detector.infer`` on frames prepared beforehand, with the runtime's threads on every core
   (median ms, and 1000 / median: the most the detector allows);
2. sequential: every stage one after another in one thread (``edgecv track --sequential``), sinks included
   (annotated MP4, JSONL, MOT txt to a temporary folder);
3. pipelined: the same stages in their own threads with bounded queues (``edgecv track``);
4. realtime: pipelined, with the file paced at its own 10 fps like a camera (``--realtime``): frames dropped
   by the latest-frame policy, and latency in the first and last quarter of the run (bounded if they agree).
Figures: frames/s over the whole run; per stage, CPU ms per frame of its own thread (capture includes decoding
the video), the runtime's own threads and the video encoder process; their total, and the CPU limit: cores x
1000 / the lower total CPU ms per frame of two sequential runs, with the runtime's default threads and with one
runtime thread and one OpenCV thread (``sequential-1t``: the work a frame costs, done once, with no thread
waiting on another); capture-to-result latency
p50/p99; peak RSS. The verdict line gives the pipelined rate as a fraction of the lower of the CPU limit and the
inference-alone rate, taken within each round (median of the rounds), and the share of the cores' time the
pipelined run kept busy (its frame rate x its own CPU ms per frame / (cores x 1000)).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from _common import SHARED_DATA, shared_model

from edgecv.tables import fmt_float, render
from edgecv.pipeline.capture import CaptureOptions
from edgecv.pipeline.placement import layout
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


def pin(cores: int | None) -> int:
    """Pin this process to the first ``cores`` cores it may use; the number of cores it runs on."""
    allowed = sorted(os.sched_getaffinity(0))
    if cores is None:
        return len(allowed)
    if not 1 <= cores <= len(allowed):
        sys.exit(f"--cores {cores}: this machine lets the process use {len(allowed)} core(s)")
    os.sched_setaffinity(0, allowed[:cores])
    return cores


@contextlib.contextmanager
def one_opencv_thread(on: bool) -> Iterator[None]:
    """OpenCV's own pool at one thread while the block lasts (as a pipelined run sets it), when ``on``."""
    import cv2

    before = cv2.getNumThreads()
    if on:
        cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


STAGE_COLUMNS = ("capture", "inference", "runtime", "decode", "tracking", "sinks", "encoder")


def cpu_columns(cpu: dict) -> dict:
    """CPU ms per frame by column: the stages' own threads, the runtime's threads, the encoder process."""
    stages = cpu.get("stages_ms") or {}
    return {**{k: stages.get(k) for k in ("capture", "inference", "decode", "tracking", "sinks")},
            "runtime": cpu.get("runtime_threads_ms"), "encoder": cpu.get("children_ms"), "total": cpu.get("total_ms")}


def median_run(repeats: list[dict]) -> dict:
    """The run with the median frame rate, its CPU columns replaced by each column's median over the runs,
    and every run's frame rate."""
    ordered = sorted(repeats, key=lambda r: r["fps"])
    row = dict(ordered[len(ordered) // 2])
    columns = {k: [r["cpu"][k] for r in repeats] for k in row["cpu"]}
    row["cpu"] = {k: statistics.median(v) if None not in v else None for k, v in columns.items()}
    row["fps_runs"] = [r["fps"] for r in repeats]
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=795)
    p.add_argument("--cores", type=int, help="pin the process to this many cores (default: all it may use)")
    p.add_argument("--threads", type=int, help="the runtime's threads in every run (default: edgecv's choice)")
    p.add_argument("--workers", type=int, help="inference workers in the pipelined runs (default: edgecv's choice)")
    p.add_argument("--artifacts", type=Path, help="the built-in detector's artifacts (default: exported here)")
    p.add_argument("--only", choices=("ssd", "builtin"))
    p.add_argument("--repeat", type=int, default=3, help="sequential and pipelined runs each (medians; default 3)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("edgecv.integrity").setLevel(logging.ERROR)  # every run says the artifacts are not re-hashed
    cores = pin(args.cores)
    video = SHARED_DATA / "video" / "vtest.avi"
    if not video.is_file():
        sys.exit(f"needs {video}")
    ssd_dir = shared_model("ssd_mobilenet_v1_coco_quant/detect.tflite").parent
    from edgecv.labels import read_labels

    ssd_labels = read_labels(ssd_dir / "labelmap.txt")
    results: dict[str, dict] = {"cores": cores}
    with tempfile.TemporaryDirectory(prefix="pipeline-vtest-") as tmp_name:
        tmp = Path(tmp_name)
        setups = {
            "ssd": (ssd_dir / "detect.tflite",
                    DetectorSettings(spec="ssd-mobilenet-v1-coco", labels=ssd_labels, classes=["person"],
                                     threads=args.threads, workers=args.workers)),
            "builtin": (None, DetectorSettings(threads=args.threads, workers=args.workers)),
        }
        for name, (model, settings) in setups.items():
            if args.only and name != args.only:
                continue
            if model is None:
                model = builtin_artifacts(args.artifacts, tmp)
            detector, chosen = build_detector(model, replace(settings, threads=None))
            row: dict = {"model": str(detector.model.path), "backend": detector.model.backend,
                         "inference_alone": inference_alone(detector, video, args.frames)}
            runs = {"sequential": dict(concurrent=False, capture=CaptureOptions(max_frames=args.frames)),
                    "sequential-1t": dict(concurrent=False, capture=CaptureOptions(max_frames=args.frames)),
                    "pipelined": dict(concurrent=True, capture=CaptureOptions(max_frames=args.frames)),
                    "realtime": dict(concurrent=True, capture=CaptureOptions(max_frames=args.frames, realtime=True))}
            # Rounds of sequential, sequential-1t and pipelined, one after another, so that every round's three
            # runs see the same machine (a shared machine's speed drifts by 10-50% over minutes): the fraction of
            # the bound is taken within each round, and its median quoted.
            repeats: dict[str, list[dict]] = {mode: [] for mode in runs}
            rounds = [[m for m in runs if m != "realtime"]] * args.repeat + [["realtime"]]  # realtime: the video's 80 s
            for modes in rounds:
                for mode in modes:
                    given = replace(settings, threads=1, workers=None) if mode == "sequential-1t" else settings
                    with one_opencv_thread(mode == "sequential-1t"):
                        result = track(detector.model.path, str(video), out=tmp / f"{name}-{mode}", tracker="ocsort",
                                       detector=given, **runs[mode])
                    s = result.summary
                    repeats[mode].append({"fps": s["fps"], "frames": s["frames"], "dropped": s["capture"]["dropped"],
                                          "latency_ms": s["latency_ms"], "peak_rss_mb": round(s["peak_rss_mb"] or 0, 1),
                                          "stages": {k: v["median_ms"] for k, v in s["stages"].items()},
                                          "tracks": s["tracks"], "cpu": cpu_columns(s["cpu"]), "threads": s.get("threads")})
            for mode in runs:
                row[mode] = median_run(repeats[mode])
            alone = row["inference_alone"]["fps"]
            fractions, limits = [], []
            for seq, seq1, pipe in zip(repeats["sequential"], repeats["sequential-1t"], repeats["pipelined"]):
                # the least CPU a frame costs: one runtime thread spends none of it waiting on another
                limits.append(cores * 1000.0 / min(seq["cpu"]["total"], seq1["cpu"]["total"]))
                fractions.append(pipe["fps"] / min(limits[-1], alone))
            limit = statistics.median(limits)
            row["cpu_limit_fps"] = round(limit, 1)
            row["bound_fps"] = round(min(limit, alone), 1)
            row["fraction_of_bound"] = round(statistics.median(fractions), 3)
            row["fraction_of_bound_runs"] = [round(f, 3) for f in fractions]
            # the pipelined run against its own CPU: how much of the cores' time it kept busy
            row["busy_fraction"] = round(statistics.median(p["fps"] * p["cpu"]["total"] / (cores * 1000.0)
                                                           for p in repeats["pipelined"]), 3)
            row["speedup_vs_sequential"] = round(row["pipelined"]["fps"] / row["sequential"]["fps"], 2)
            row["realtime_p99_vs_sequential"] = round(row["realtime"]["latency_ms"]["p99"] / row["sequential"]["latency_ms"]["p99"], 2)
            results[name] = row
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for name, row in results.items():
        if name == "cores":
            continue
        threads = row["pipelined"].get("threads") or {}
        print(f"\n{name}: {Path(row['model']).name} ({row['backend']}), {cores} core(s); inference alone "
              f"{row['inference_alone']['median_ms']:.2f} ms/frame = {row['inference_alone']['fps']:.0f} frames/s; "
              f"pipelined: {layout(threads.get('workers', 1), threads.get('threads', 0), bool(threads.get('inline')))} "
              f"({threads.get('chosen_by', '')}{': ' + threads['why'] if threads.get('why') else ''})")
        table = []
        for mode in ("sequential", "sequential-1t", "pipelined", "realtime"):
            r = row[mode]
            cpu, lat = r["cpu"], r["latency_ms"]
            table.append([mode, str(r["frames"]), str(r["dropped"]), f"{r['fps']:.1f}",
                          *(fmt_float(cpu[k], ".2f") for k in (*STAGE_COLUMNS, "total")),
                          fmt_float(lat["p50"], ".1f"), fmt_float(lat["p99"], ".1f"),
                          f"{fmt_float(lat['first_quarter_p50'], '.1f')}/{fmt_float(lat['last_quarter_p50'], '.1f')}",
                          f"{r['peak_rss_mb']:.0f}"])
        print(render(["run", "frames", "dropped", "fps", *(f"{k} cpu" for k in STAGE_COLUMNS), "total cpu",
                      "lat p50", "lat p99", "q1/q4 p50", "peak MB"], table, align="l" + "r" * 15))
        print(f"fps of each run: sequential {row['sequential']['fps_runs']}, pipelined {row['pipelined']['fps_runs']}")
        print(f"CPU limit {row['cpu_limit_fps']:.1f} frames/s (median over rounds of {cores} x 1000 / the cheaper "
              f"sequential run's CPU ms per frame); bound = min(CPU limit, inference alone) = {row['bound_fps']:.1f}; "
              f"pipelined / bound within each round {row['fraction_of_bound_runs']}: median "
              f"{row['fraction_of_bound']:.2f}; pipelined {row['speedup_vs_sequential']:.2f}x sequential (medians); "
              f"the pipelined run kept {row['busy_fraction']:.2f} of the cores busy; realtime p99 latency "
              f"{row['realtime_p99_vs_sequential']:.2f}x sequential's")

if __name__ == "__main__":
    main()
