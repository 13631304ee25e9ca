"""What each video encoder the installed FFmpeg and OpenCV offer costs per frame on this machine, for the annotated
video of ``edgecv track``: CPU milliseconds per frame (the encoder's own process for ffmpeg, this process for
OpenCV), wall time, and file size, on the frames of ../shared/data/video/vtest.avi (768x576) with boxes drawn.

    .venv/bin/python benchmarks/video_encoders.py [--frames 400] [--json]

Candidates: ffmpeg libx264 at the presets ultrafast, superfast and veryfast (edgecv's writer, fragmented MP4,
frames converted to YUV 4:2:0 by OpenCV in its feeder thread), ultrafast with BGR frames into the pipe for
ffmpeg to convert (``feed="bgr24"``),
ffmpeg's MPEG-4 part 2, and OpenCV's mp4v (.mkv) and MJPG (.avi) writers. The frames are decoded and drawn
once before timing; each candidate then encodes the same frames. Medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import SHARED_DATA

from edgecv.tables import render


def frames(video: Path, count: int) -> list:
    import cv2
    import numpy as np

    from edgecv.annotate import annotate
    from edgecv.detection import Detections

    cap = cv2.VideoCapture(str(video))
    out, rng = [], np.random.default_rng(0)
    while len(out) < count:
        ok, image = cap.read()
        if not ok:
            break
        xy = rng.uniform(0, 600, (6, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(30, 160, (6, 2))], axis=1)
        out.append(annotate(image, Detections(boxes, rng.uniform(0.3, 1, 6), np.zeros(6, np.int64),
                                              tracker_id=np.arange(1, 7))))
    cap.release()
    return out


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_ffmpeg(images: list, folder: Path, encoder: str, preset: str | None, feed: str | None = None) -> dict:
    from edgecv.pipeline.sinks import FfmpegMp4

    path = folder / f"{encoder}-{preset}-{feed}.mp4"
    h, w = images[0].shape[:2]
    c0, p0, t0 = children_cpu(), time.process_time(), time.perf_counter()
    video = FfmpegMp4(path, fps=10.0, size=(w, h), encoder=encoder, preset=preset, feed=feed)
    for image in images:
        video.write(image)
    video.release()
    wall = time.perf_counter() - t0
    cpu = children_cpu() - c0 + time.process_time() - p0
    return {"cpu_ms": 1000 * cpu / len(images), "wall_ms": 1000 * wall / len(images), "bytes": path.stat().st_size}


def run_opencv(images: list, folder: Path, fourcc: str, suffix: str) -> dict:
    import cv2

    path = folder / f"opencv-{fourcc}{suffix}"
    h, w = images[0].shape[:2]
    p0, t0 = time.process_time(), time.perf_counter()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, (w, h))
    if not writer.isOpened():
        return {"error": "OpenCV has no encoder for it here"}
    for image in images:
        writer.write(image)
    writer.release()
    return {"cpu_ms": 1000 * (time.process_time() - p0) / len(images),
            "wall_ms": 1000 * (time.perf_counter() - t0) / len(images), "bytes": path.stat().st_size}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=400)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    video = SHARED_DATA / "video" / "vtest.avi"
    if not video.is_file():
        sys.exit(f"needs {video}")
    images = frames(video, args.frames)
    import cv2

    cv2.setNumThreads(1)  # as a pipelined run holds it: the YUV conversion runs in the feeder thread alone
    candidates = {
        "ffmpeg libx264 ultrafast (.mp4)": lambda d: run_ffmpeg(images, d, "libx264", "ultrafast"),
        "ffmpeg libx264 ultrafast, BGR into the pipe": lambda d: run_ffmpeg(images, d, "libx264", "ultrafast", "bgr24"),
        "ffmpeg libx264 superfast (.mp4)": lambda d: run_ffmpeg(images, d, "libx264", "superfast"),
        "ffmpeg libx264 veryfast (.mp4)": lambda d: run_ffmpeg(images, d, "libx264", "veryfast"),
        "ffmpeg mpeg4 q4 (.mp4)": lambda d: run_ffmpeg(images, d, "mpeg4", None),
        "opencv mp4v (.mkv)": lambda d: run_opencv(images, d, "mp4v", ".mkv"),
        "opencv MJPG (.avi)": lambda d: run_opencv(images, d, "MJPG", ".avi"),
    }
    rows = {}
    with tempfile.TemporaryDirectory(prefix="encoders-") as tmp:
        for name, fn in candidates.items():
            runs = [fn(Path(tmp)) for _ in range(args.repeat)]
            if "error" in runs[0]:
                rows[name] = runs[0]
                continue
            rows[name] = {k: statistics.median(r[k] for r in runs) for k in ("cpu_ms", "wall_ms", "bytes")}
    if args.json:
        print(json.dumps({"frames": len(images), "size": list(images[0].shape[:2]), "rows": rows}, indent=1))
        return
    h, w = images[0].shape[:2]
    print(f"{len(images)} annotated frames {w}x{h}, median of {args.repeat} runs")
    table = [[name, f"{r['cpu_ms']:.2f}", f"{r['wall_ms']:.2f}", f"{r['bytes'] / len(images) / 1024:.1f}"]
             if "error" not in r else [name, "-", "-", r["error"]] for name, r in rows.items()]
    print(render(["encoder", "CPU ms/frame", "wall ms/frame", "KB/frame"], table, align="lrrr"))


if __name__ == "__main__":
    main()
