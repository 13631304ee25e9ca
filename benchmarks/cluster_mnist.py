"""Weight clustering on the MNIST CNN, next to the unclustered model and to magnitude pruning at the same accuracy.

    .venv/bin/python benchmarks/cluster_mnist.py [--out DIR] [--clusters 16,8] [--json]

Data (the project's MNIST convention, see train_mnist_cnn.py): the shared MNIST test set, images 0..7999 to
train and fine-tune, images 8000..9999 to evaluate. The model: ``train_mnist_cnn`` (4 epochs, seed 0).

Rows, each fine-tuned 2 epochs on the same data and exported fp32 to TFLite, ONNX and OpenVINO:
- ``original``: the CNN as trained;
- ``cluster N``: ``cluster(model, clusters=N)`` for each N of ``--clusters``;
- ``magnitude S``: ``prune(model, method="magnitude", sparsity=S)`` for S in 0.5, 0.75, 0.9; the table marks
  the sparsest whose top-1 is at least the first cluster row's (the pruning "at the same accuracy");
- ``magnitude S + cluster N``: that pruned model clustered with ``preserve_sparsity`` (the two composed).
Figures per artifact: top-1 on images 8000..9999, file size, zipped size (zlib, level 9, of every file), and
latency p50 (median of 3 alternating rounds of 200 runs, so machine noise hits every artifact alike).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from _common import work_dir

FORMATS = ("tflite", "onnx", "openvino")
SPARSITIES = (0.5, 0.75, 0.9)
ROUNDS, RUNS = 3, 200
SEED = 0


def main() -> None:
    from train_mnist_cnn import EVAL, TRAIN, load_mnist, train_mnist_cnn

    from edgecv.bench import benchmark
    from edgecv.converters.cluster import cluster
    from edgecv.converters.export import ExportOptions, export
    from edgecv.converters.footprint import measure_artifacts
    from edgecv.converters.prune import prune
    from edgecv.converters.train_data import open_training_data
    from edgecv.manifest import Preprocess
    from edgecv.tables import fmt_float, human_bytes, render

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path)
    p.add_argument("--clusters", default="16,8")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    pixels = Preprocess(mean=(0,), std=(255,))
    images, labels = load_mnist()
    x_eval, y_eval = images[EVAL, :, :, None].astype(np.float32) / 255.0, labels[EVAL]
    data = open_training_data((images[TRAIN, :, :, None], labels[TRAIN]), input_shape=(28, 28, 1), preprocess=pixels,
                              held_out=(images[EVAL, :, :, None], labels[EVAL]), seed=SEED)
    counts = [int(n) for n in args.clusters.split(",")]
    with work_dir(args.out, "cluster-mnist-") as work:
        started = time.perf_counter()
        model, _ = train_mnist_cnn(epochs=4, seed=SEED)
        models = {"original": (model, {})}
        for n in counts:
            r = cluster(model, train=data, clusters=n, epochs=2, seed=SEED, preprocess=pixels)
            models[f"cluster {n}"] = (r.model, {"top1_keras": r.top1_after, "max_values": max(r.unique_values.values())})
        pruned = {}
        for s in SPARSITIES:
            r = prune(model, train=data, method="magnitude", sparsity=s, epochs=2, seed=SEED, preprocess=pixels)
            pruned[s] = r
            models[f"magnitude {s:g}"] = (r.model, {"top1_keras": r.top1_after, "sparsity": round(r.sparsity, 3)})
        target = models[f"cluster {counts[0]}"][1]["top1_keras"]
        same = [s for s in SPARSITIES if pruned[s].top1_after >= target]
        match = max(same) if same else min(SPARSITIES)
        r = cluster(pruned[match].model, train=data, clusters=counts[0], epochs=2, seed=SEED, preprocess=pixels,
                    preserve_sparsity=True)
        models[f"magnitude {match:g} + cluster {counts[0]}"] = (r.model, {"top1_keras": r.top1_after,
                                                                          "max_values": max(r.unique_values.values()),
                                                                          "sparsity": round(r.sparsity_after, 3)})
        train_s = time.perf_counter() - started
        paths = {}
        for name, (m, _) in models.items():
            tag = name.replace(" ", "_").replace("+", "and")
            report = export(m, to=FORMATS, quant="fp32", out=work / tag, name=tag, preprocess=pixels,
                            options=ExportOptions(bench_runs=0))
            paths[name] = {a.format: a.path for a in report.artifacts if a.status == "passed"}
        figures = {(name, fmt): f for name in models for f in measure_artifacts(list(paths[name].values()), x=x_eval, y=y_eval, runs=0)
                   for fmt in [f.format]}
        p50s: dict[tuple[str, str], list[float]] = {k: [] for k in figures}
        for _ in range(ROUNDS):
            for (name, fmt) in figures:
                p50s[(name, fmt)].append(benchmark(paths[name][fmt], runs=RUNS, warmup=20, isolate=False).p50_ms)
        for k in figures:
            figures[k] = replace(figures[k], p50_ms=statistics.median(p50s[k]))
    rows = []
    for (name, fmt), f in figures.items():
        extra = models[name][1]
        rows.append({"model": name, "format": fmt, "top1": f.top1, "size_bytes": f.size_bytes, "zipped_bytes": f.zipped_bytes,
                     "p50_ms": round(f.p50_ms, 4), **extra, "same_accuracy_as_cluster": name == f"magnitude {match:g}"})
    if args.json:
        print(json.dumps({"rows": rows, "train_s": round(train_s, 1), "matched_sparsity": match}, indent=1))
        return
    table = [[r["model"] + (" (same top-1)" if r["same_accuracy_as_cluster"] else ""), r["format"],
              fmt_float(100 * r["top1"], ".2f"), human_bytes(r["size_bytes"]), human_bytes(r["zipped_bytes"]),
              fmt_float(r["p50_ms"], ".3f"), str(r.get("max_values", "")), fmt_float(r.get("sparsity"), ".2f", "")]
             for r in rows]
    print(render(["model", "format", "top-1 %", "size", "zipped", "p50 ms", "values/kernel", "zeros"], table,
                 align="llrrrrrr"))
    print(f"\nmagnitude pruning at the same accuracy as cluster {counts[0]}: the sparsest of {SPARSITIES} whose top-1 "
          f"is at least {100 * target:.2f}% = {match:g}; training and fine-tuning {train_s:.0f} s")


if __name__ == "__main__":
    main()
