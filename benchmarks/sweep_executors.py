"""``edgecv sweep`` on the local executor and on a Ray cluster started here: the same jobs, in one run.

    .venv/bin/python benchmarks/sweep_executors.py [--out DIR] [--workers 2] [--json]

The sweep: two MNIST models x two devices, on the shared MNIST test set (images 0..7999 train and calibrate,
8000..9999 evaluate; see ../shared/data/README.md):
- ``mnist_cnn``: the Keras CNN of ``benchmarks/train_mnist_cnn.py``, trained here; recipes ``ptq``, ``pruned``
  (channels, sparsity 0.5, 2 epochs) and ``student`` (distilled at width 0.5, 2 epochs);
- ``mnist8``: ``mnist-8.onnx`` of the ONNX Model Zoo (NCHW, raw pixels), recipe ``ptq`` only (the training
  recipes take a Keras model);
- devices ``android-phone`` (TFLite fp32, fp16, int8) and ``coral-edgetpu`` (full-integer TFLite): neither is
  reachable from here, so each choice rests on accuracy and size, and both executors must choose alike.
Budget: 1 point of top-1 against the source model, training and quantization together.

Each executor starts cold (its own output folder), local first, then Ray with as many CPUs as the local
pool has workers. Printed: each executor's wall time and jobs, the choice per model and device, and whether
every figure (each job's candidates' drops and sizes, each recipe's top-1, the choices) is the same.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from _common import shared_model, work_dir

SWEEP = """\
models:
  mnist_cnn: {{file: {cnn}, preprocess: {{mean: [0], std: [255]}}}}
  mnist8: {{file: {mnist8}, preprocess: {{layout: NCHW, mean: [0], std: [1]}}, recipes: [ptq]}}
devices: [android-phone, coral-edgetpu]
recipes:
  ptq: {{kind: ptq}}
  pruned: {{kind: prune, sparsity: 0.5, epochs: 2}}
  student: {{kind: distill, width: 0.5, epochs: 2}}
data: {{calib: calib.npy, eval: eval.npz, train: train.npz}}
budget: {{max_drop: 1.0}}
resources: {{cpus: 1, memory_mb: 3000}}
"""


def inputs(work: Path) -> Path:
    from train_mnist_cnn import EVAL, TRAIN, load_mnist, train_mnist_cnn

    cnn = work / "mnist_cnn.keras"
    if not cnn.is_file():
        train_mnist_cnn(cnn, epochs=4, seed=0)
    images, labels = load_mnist()
    np.save(work / "calib.npy", images[TRAIN][:300, :, :, None])
    np.savez(work / "train.npz", x=images[TRAIN][:, :, :, None], y=labels[TRAIN])
    np.savez(work / "eval.npz", x=images[EVAL][:, :, :, None], y=labels[EVAL])
    path = work / "sweep.yaml"
    path.write_text(SWEEP.format(cnn=cnn, mnist8=shared_model("mnist-8.onnx")))
    return path


def figures(result) -> list:
    rows = [(r["model"], r["device"], r["recipe"], r["candidate"], r["total_loss"], r["size_bytes"]) for r in result.chosen]
    for job in result.jobs:
        res = job.result or {}
        if job.stage == "recipe":
            rows.append((job.name, res.get("top1_source"), res.get("top1")))
        else:
            rows += [(job.name, c["format"], c["precision"], c["verdict"], c["drop_points"], c["size_bytes"])
                     for c in res.get("candidates") or []]
    return rows


def main() -> None:
    from edgecv.converters.sweep import sweep
    from edgecv.tables import fmt_float, human_bytes, render

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="keep the work here (default: a temporary folder)")
    p.add_argument("--workers", type=int, default=2, help="local workers and Ray CPUs (default 2)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with work_dir(args.out, "sweep-executors-") as work:
        file = inputs(work)
        runs = {}
        for executor in ("local", "ray"):
            out = work / f"out-{executor}"
            if out.exists():
                import shutil

                shutil.rmtree(out)  # cold: no job kept from an earlier run
            t0 = time.perf_counter()
            result = sweep(file, out=out, executor=executor, workers=args.workers)
            runs[executor] = (result, time.perf_counter() - t0)
    local, ray = runs["local"][0], runs["ray"][0]
    same = figures(local) == figures(ray)
    summary = {executor: {"wall_s": round(wall, 1), "jobs": len(r.jobs),
                          "failed": [j.name for j in r.failed]} for executor, (r, wall) in runs.items()}
    summary["same_figures"] = same
    summary["ray_over_local"] = round(runs["ray"][1] / runs["local"][1], 2)
    summary["chosen"] = [{k: row[k] for k in ("model", "device", "recipe", "candidate", "total_loss", "size_bytes")}
                         for row in local.chosen]
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    print(render(["model", "device", "recipe", "candidate", "points lost", "size"],
                 [[r["model"], r["device"], r["recipe"] or "-", r["candidate"] or "-", fmt_float(r["total_loss"], ".2f"),
                   human_bytes(r["size_bytes"]) if r["size_bytes"] else "-"] for r in summary["chosen"]], align="llllrr"))
    for executor in ("local", "ray"):
        s = summary[executor]
        print(f"{executor}: {s['wall_s']:.1f} s for {s['jobs']} jobs ({args.workers} at once), failed: {s['failed'] or 'none'}")
    print(f"Ray / local wall time: {summary['ray_over_local']:.2f}x; every figure the same: {same}")


if __name__ == "__main__":
    main()
