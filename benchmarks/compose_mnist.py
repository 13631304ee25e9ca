"""docs/compose.md's chain on MNIST: distill, then prune channels, then QAT, then export; what each step costs
and keeps, in one run.

    .venv/bin/python benchmarks/compose_mnist.py [--out DIR] [--json]

Data as in compress_mnist.py: images 0..7999 train every step, images 8000..9999 (``held_out=``) give every
top-1. Steps, each taking the previous step's model:
  teacher          ``train_mnist_cnn`` (8 epochs along a cosine, seed 0, as in compress_mnist.py), fp32.
  KD student       ``distill(teacher, width=0.5, T=4, alpha=0.1, epochs=6)``, fp32.
  pruned student   ``prune(student, method="channels", sparsity=0.5, epochs=2)``, fp32.
  QAT int8         ``qat(pruned, epochs=2)`` then ``qat_artifacts`` in TFLite, ONNX (QDQ) and OpenVINO.
Per step and format: top-1, parameters, MACs, file size, zipped size, latency p50 (median of 5 alternating
rounds of 200 runs, as in compress_mnist.py). The summary gives the final artifact against the teacher.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from _common import work_dir
from compress_mnist import (FORMATS, PIXELS, ROUNDS, RUNS, SEED, STUDENT_EPOCHS, TEACHER_EPOCHS, Row, counts, export_keras,
                            measure, table)
from train_mnist_cnn import EVAL, TRAIN, load_mnist, train_mnist_cnn

from edgecv.converters.distill import distill
from edgecv.converters.flops import count_macs
from edgecv.converters.prune import prune
from edgecv.converters.qat import qat, qat_artifacts
from edgecv.converters.train_data import open_training_data

log = logging.getLogger("compose_mnist")


def build_rows(work: Path) -> tuple[list[Row], dict[str, int]]:
    images, labels = load_mnist()
    data = open_training_data((images[TRAIN, :, :, None], labels[TRAIN]), input_shape=(28, 28, 1), preprocess=PIXELS,
                              held_out=(images[EVAL, :, :, None], labels[EVAL]), seed=SEED)
    teacher, _ = train_mnist_cnn(epochs=TEACHER_EPOCHS, cosine=True, seed=SEED)
    student = distill(teacher, train=data, width=0.5, temperature=4.0, alpha=0.1, epochs=STUDENT_EPOCHS, seed=SEED,
                      preprocess=PIXELS).model
    pruned = prune(student, train=data, method="channels", sparsity=0.5, epochs=2, seed=SEED, preprocess=PIXELS).model
    tuned = qat(pruned, train=data, epochs=2, seed=SEED, preprocess=PIXELS, out=work / "qat-job")
    arts = qat_artifacts(tuned, out=work / "qat", name="composed")
    rows, macs = [], {}
    for label, model in (("teacher", teacher), ("KD student", student), ("pruned student", pruned)):
        rows.append(Row(label, "fp32", *counts(model), export_keras(model, label.replace(" ", "_"), work).get("fp32", {})))
        macs[label] = count_macs(model)
    rows.append(Row("QAT int8", "int8", *counts(pruned), dict(arts.paths), note="of the pruned student"))
    macs["QAT int8"] = macs["pruned student"]
    for row in rows:
        row.note = f"MACs {macs[row.model] / 1e6:.2f}M" + (f", {row.note}" if row.note else "")
    measure(rows, x=data.x_val, y=data.y_val)
    return rows, macs


def summary(rows: list[Row], macs: dict[str, int]) -> dict[str, Any]:
    first, last = rows[0], rows[-1]
    return {
        "params": f"{first.params:,} -> {last.params:,} ({last.params / first.params:.3f}x)",
        "macs": f"{macs[first.model]:,} -> {macs[last.model]:,} ({macs[last.model] / macs[first.model]:.3f}x)",
        "by_format": {fmt: {"top1_change_points": round(100 * (last.figures[fmt].top1 - first.figures[fmt].top1), 2),
                            "speedup": round(first.figures[fmt].p50_ms / last.figures[fmt].p50_ms, 2),
                            "size_ratio": round(last.figures[fmt].size_bytes / first.figures[fmt].size_bytes, 3)}
                      for fmt in FORMATS if fmt in first.figures and fmt in last.figures},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help="folder for the artifacts (default: a temporary one)")
    p.add_argument("--json", action="store_true", help="print only JSON")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    start = time.perf_counter()
    with work_dir(args.out, "compose-mnist-") as work:
        rows, macs = build_rows(work)
    result = summary(rows, macs)
    seconds = round(time.perf_counter() - start)
    if args.json:
        print(json.dumps({"seconds": seconds, "summary": result, "rows": [
            {"step": r.model, "precision": r.precision, "params": r.params, "macs": macs[r.model],
             "formats": {k: v.to_dict() for k, v in r.figures.items()}} for r in rows]}, indent=1, default=str))
        return
    print(f"distill -> prune channels -> QAT on MNIST: train on images 0..7999, top-1 on 8000..9999; "
          f"p50: median of {ROUNDS} alternating rounds of {RUNS} runs\n")
    print(table(rows))
    print(f"\nQAT int8 against the teacher: parameters {result['params']}; MACs {result['macs']}")
    for fmt, v in result["by_format"].items():
        print(f"  {fmt:9s} top-1 {v['top1_change_points']:+.2f} points, {v['speedup']:.2f}x faster, {v['size_ratio']:.3f}x the size")
    print(f"\ntotal {seconds} s")


if __name__ == "__main__":
    main()
