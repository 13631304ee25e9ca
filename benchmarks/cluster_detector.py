"""Weight clustering on the built-in detector: mAP against the true boxes, size, zipped size and latency, per
format and precision, next to the unclustered detector.

    .venv/bin/python benchmarks/cluster_detector.py [--out DIR] [--clusters 32,16,8] [--json]

The detector (``converters/assets/scene_detector.keras``, two outputs, an UpSampling2D) is clustered without
training (``cluster(..., epochs=0)``: k-means on each Conv2D kernel): its training loop is its own, not a
classifier's, so tfmot's fine-tuning does not apply. Each model is exported by ``edgecv export`` to TFLite,
ONNX and OpenVINO in fp32 and int8 (calibrated on 300 generated frames, seed 2000) with the detector's spec,
and scored on 200 other generated frames (seed 1000) whose true boxes are written as YOLO label files beside
them, so every row's mAP@[.5:.95] and mAP@0.5 are against the truth, not against another model. Zipped: zlib
level 9 of every file. Latency: the median of 3 alternating rounds of each artifact's p50 over 200 runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from dataclasses import replace
from pathlib import Path

import numpy as np

from _common import work_dir

FORMATS = ("tflite", "onnx", "openvino")
ROUNDS, RUNS = 3, 200


def write_eval(folder: Path, frames: np.ndarray, truth: list) -> Path:
    """``frames`` as PNGs in ``folder/images/val`` and their boxes as YOLO labels in ``folder/labels/val``."""
    import cv2

    images, labels = folder / "images" / "val", folder / "labels" / "val"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for i, (frame, dets) in enumerate(zip(frames, truth)):
        h, w = frame.shape[:2]
        cv2.imwrite(str(images / f"{i:04d}.png"), frame[..., ::-1])
        lines = []
        for (x1, y1, x2, y2), c in zip(dets.xyxy.tolist(), dets.class_id.tolist()):
            lines.append(f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
        (labels / f"{i:04d}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    return images


def main() -> None:
    from edgecv.bench import benchmark
    from edgecv.converters.builtin_detector import PREPROCESS, SPEC, WEIGHTS, make_frames
    from edgecv.converters.cluster import cluster
    from edgecv.converters.export import ExportOptions, export
    from edgecv.converters.footprint import measure_artifacts
    from edgecv.scenes import CLASSES
    from edgecv.tables import fmt_float, human_bytes, render

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path)
    p.add_argument("--clusters", default="32,16,8")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with work_dir(args.out, "cluster-detector-") as work:
        frames, truth = make_frames(200, seed=1000)
        images = write_eval(work / "eval", frames, truth)
        calib, _ = make_frames(300, seed=2000)
        models = {"original": (WEIGHTS, None)}
        for n in (int(c) for c in args.clusters.split(",")):
            r = cluster(WEIGHTS, clusters=n, epochs=0)
            models[f"cluster {n}"] = (r.model, max(r.unique_values.values()))
        scores, paths = {}, {}
        for name, (model, _) in models.items():
            tag = name.replace(" ", "")
            report = export(model, to=FORMATS, quant="fp32,int8", calib=list(calib), eval_data=images, detector=SPEC,
                            max_drop=100.0, preprocess=PREPROCESS, labels=list(CLASSES), out=work / tag, name=tag,
                            options=ExportOptions(bench_runs=0))
            for a in report.artifacts:
                if a.status == "passed":
                    paths[(name, a.format, a.precision)] = a.path
                    scores[(name, a.format, a.precision)] = a.scores
        figures = {key: measure_artifacts([path], runs=0)[0] for key, path in paths.items()}
        p50s: dict[tuple, list[float]] = {k: [] for k in paths}
        for _ in range(ROUNDS):
            for key, path in paths.items():
                p50s[key].append(benchmark(path, runs=RUNS, warmup=20, isolate=False).p50_ms)
        for key in figures:
            figures[key] = replace(figures[key], p50_ms=statistics.median(p50s[key]))
    rows = [{"model": k[0], "format": k[1], "precision": k[2], "map": scores[k].map, "map50": scores[k].map50,
             "size_bytes": f.size_bytes, "zipped_bytes": f.zipped_bytes, "p50_ms": round(f.p50_ms, 4),
             "values_per_kernel": models[k[0]][1]} for k, f in figures.items()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(render(["model", "format", "precision", "mAP", "mAP@0.5", "size", "zipped", "p50 ms"],
                 [[r["model"], r["format"], r["precision"], fmt_float(r["map"], ".4f"), fmt_float(r["map50"], ".4f"),
                   human_bytes(r["size_bytes"]), human_bytes(r["zipped_bytes"]), fmt_float(r["p50_ms"], ".3f")]
                  for r in rows], align="lllrrrrr"))


if __name__ == "__main__":
    main()
