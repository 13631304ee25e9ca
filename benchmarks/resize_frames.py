"""What shrinking a camera frame to a model's input costs: OpenCV's one-pass ``INTER_AREA`` against edgecv's
``resize_image`` (bilinear to k times the size, then the exact k x k average), on the frames of
../shared/data/video/vtest.avi (768x576), and how far apart their pixels are.

    .venv/bin/python benchmarks/resize_frames.py [--frames 200] [--repeat 5] [--json]

Sizes: the built-in detector's 160x160, SSD MobileNet's 300x300, 320x240 (exactly 2.4x) and 640x480 (under
2x: one area pass, the same in both). Milliseconds per frame are the median over ``--repeat`` passes of each
pass's median, the two methods alternating pass by pass so both see the same machine; the difference is in
grey levels over every pixel of every frame.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from _common import SHARED_DATA

from edgecv.detection.frames import resize_image
from edgecv.tables import fmt_float, render

SIZES = ((160, 160), (300, 300), (320, 240), (640, 480))


def main() -> None:
    import cv2
    import numpy as np

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    video = SHARED_DATA / "video" / "vtest.avi"
    if not video.is_file():
        sys.exit(f"needs {video}")
    cap = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < args.frames:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()

    def area(image, size):
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    def timed(fn, size) -> float:
        times = []
        for image in frames:
            t0 = time.perf_counter()
            fn(image, size)
            times.append((time.perf_counter() - t0) * 1000.0)
        return statistics.median(times)

    rows = []
    for size in SIZES:
        runs = {"area": [], "edgecv": []}
        for _ in range(args.repeat):
            runs["area"].append(timed(area, size))
            runs["edgecv"].append(timed(resize_image, size))
        diffs = np.concatenate([np.abs(resize_image(f, size).astype(np.int16) - area(f, size)).ravel() for f in frames])
        a, e = statistics.median(runs["area"]), statistics.median(runs["edgecv"])
        rows.append({"size": f"{size[0]}x{size[1]}", "inter_area_ms": round(a, 3), "resize_image_ms": round(e, 3),
                     "ratio": round(a / e, 2), "mean_diff": round(float(diffs.mean()), 3),
                     "p99_diff": int(np.percentile(diffs, 99)), "max_diff": int(diffs.max())})
    if args.json:
        print(json.dumps({"frames": len(frames), "opencv": cv2.__version__, "rows": rows}, indent=2))
        return
    print(f"{len(frames)} frames of {video.name}, OpenCV {cv2.__version__}")
    print(render(["size", "INTER_AREA ms", "resize_image ms", "ratio", "mean diff", "p99 diff", "max diff"],
                 [[r["size"], fmt_float(r["inter_area_ms"], ".3f"), fmt_float(r["resize_image_ms"], ".3f"),
                   fmt_float(r["ratio"], ".2f"), fmt_float(r["mean_diff"], ".3f"), r["p99_diff"], r["max_diff"]]
                  for r in rows]))


if __name__ == "__main__":
    main()
