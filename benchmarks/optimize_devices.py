"""``edgecv optimize`` on the MNIST Keras CNN and on BlazeFace, for the CI machine's profile and for Coral.

    .venv/bin/python benchmarks/optimize_devices.py [--out DIR] [--only mnist|blazeface] [--json]

- MNIST: the Keras CNN of ``benchmarks/train_mnist_cnn.py`` (trained here on MNIST test images 0..7999),
  calibrated on 300 of those images, scored on images 8000..9999 (top-1), budget 1 point.
- BlazeFace: ``face_detection_short_range.tflite`` (float, from shared data), calibrated on 300 and judged on
  200 other portraits of ``benchmarks/ptq_blazeface.py`` (faces the model must find; ``--spec
  blazeface-short-range``: points of mAP@0.5 against the float model's detections plus their mean signed score
  change), budget 5 points.
For each model and device: the chosen artifact, its accuracy (or agreement) drop and latency, the candidate
table, and the wall time. ``ci-x86-64-avx2`` is this machine (benchmarked here); Coral is not reachable, so
its candidates are compared by the compatibility check, size and the profile's preferred recipe. The
optimize runs reuse finished candidates from ``--out`` when it is given (delete it for a cold run).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from _common import shared_model, work_dir

DEVICES = ("ci-x86-64-avx2", "coral-edgetpu")


def mnist_inputs(work: Path) -> dict:
    from train_mnist_cnn import EVAL, TRAIN, load_mnist, train_mnist_cnn

    model = work / "mnist_cnn.keras"
    if not model.is_file():
        train_mnist_cnn(model, epochs=4, seed=0)
    images, labels = load_mnist()
    np.save(work / "mnist_calib.npy", images[TRAIN][:300, :, :, None])
    np.savez(work / "mnist_eval.npz", x=images[EVAL][:, :, :, None], y=labels[EVAL])
    return {"model": model, "calib": work / "mnist_calib.npy", "eval_data": work / "mnist_eval.npz", "max_drop": 1.0,
            "labels": [str(i) for i in range(10)]}


def blazeface_inputs(work: Path) -> dict:
    from ptq_blazeface import PRE, SPEC, face_images, frames

    video = frames()
    np.save(work / "faces_calib.npy", face_images(300, seed=2, video=video))
    np.save(work / "faces_eval.npy", face_images(200, seed=1, video=video))
    return {"model": shared_model("face_detection_short_range.tflite"), "calib": work / "faces_calib.npy",
            "eval_data": work / "faces_eval.npy", "max_drop": 5.0, "detector": SPEC, "preprocess": PRE}


def main() -> None:
    from edgecv.converters.optimize import OptimizeOptions, optimize
    from edgecv.cli.optimize_cmd import format_result
    from edgecv.errors import ValidationError

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path)
    p.add_argument("--only", choices=("mnist", "blazeface"))
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = {}
    with work_dir(args.out, "optimize-devices-") as work:
        for name, make in (("mnist", mnist_inputs), ("blazeface", blazeface_inputs)):
            if args.only and name != args.only:
                continue
            inputs = make(work)
            for device in DEVICES:
                started = time.perf_counter()
                try:
                    r = optimize(**inputs, device=device, out=work / f"{name}-{device}",
                                 options=OptimizeOptions(runs=args.runs))
                    results[f"{name} on {device}"] = {"result": r.to_dict(), "seconds": round(time.perf_counter() - started)}
                    if not args.json:
                        print(f"\n== {name} on {device} ({time.perf_counter() - started:.0f} s)\n{format_result(r)}")
                except ValidationError as exc:  # no candidate fits: the reasons are the result
                    results[f"{name} on {device}"] = {"error": str(exc), "seconds": round(time.perf_counter() - started)}
                    if not args.json:
                        print(f"\n== {name} on {device} ({time.perf_counter() - started:.0f} s)\nno candidate fits: {exc}")
    if args.json:
        print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
