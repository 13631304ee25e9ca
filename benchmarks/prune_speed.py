"""Channel pruning makes a CNN faster: the MNIST CNN, pruned 50% by channels, against itself unpruned, in
fp32 TFLite, ONNX and OpenVINO.

    .venv/bin/python benchmarks/prune_speed.py [--widths 1,4] [--epochs 4] [--fine-tune 2] [--rounds 5] [--json]

Data (the project's MNIST convention): the shared MNIST test set, images 0..7999 to train and fine-tune,
8000..9999 to evaluate. For each width (1 is ``train_mnist_cnn.build_cnn``, 236k parameters and 4.0M MACs;
width k multiplies every conv and the hidden dense layer by k) the script trains the CNN, prunes it with
``prune(method="channels", sparsity=0.5, epochs=--fine-tune)``, exports both models with
``export(..., quant="fp32", options=ExportOptions(bench_runs=0))`` (top-1 of each artifact on images
8000..9999 from the export report), then times each artifact with
``edgecv.bench.benchmark(path, runs=300, warmup=30, isolate=False)``, unpruned and pruned alternating, for
``--rounds`` rounds: latency is the median of the rounds' p50, the speed-up the median of the per-round
ratios. The machine is shared: compare ratios within one run.

The issue's target: latency at least 1.6x lower in at least two formats, losing at most 1 point of top-1.
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

import numpy as np

from train_mnist_cnn import EVAL, TRAIN, build_cnn, load_mnist

from edgecv.converters.export import ExportOptions, export
from edgecv.converters.prune import prune, top1
from edgecv.bench import benchmark
from edgecv.manifest import Preprocess

FORMATS = ("tflite", "onnx", "openvino")
PREPROCESS = Preprocess(mean=(0,), std=(255,))
TARGET_SPEEDUP, TARGET_FORMATS, TARGET_DROP = 1.6, 2, 1.0


def train(width: int, images: np.ndarray, labels: np.ndarray, epochs: int, seed: int):
    import keras

    model = build_cnn(seed, width=width)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    model.fit(images[TRAIN, :, :, None].astype(np.float32) / 255.0, labels[TRAIN], epochs=epochs, batch_size=64,
              shuffle=True, verbose=0)
    return model


def export_fp32(model, name: str, eval_npz: Path, out: Path) -> dict[str, tuple[Path, float]]:
    report = export(model, to=list(FORMATS), quant="fp32", eval_data=eval_npz, out=out, name=name,
                    preprocess=PREPROCESS, options=ExportOptions(bench_runs=0))
    if not report.ok:
        sys.exit(f"export of {name} failed: {[(a.format, a.reason) for a in report.artifacts]}")
    return {a.format: (a.path, a.scores.top1) for a in report.artifacts}


def time_pair(base: Path, pruned: Path, rounds: int, threads: int | None) -> dict:
    """Median p50 of each and the median per-round ratio, the two measured alternately."""
    p50s: dict[str, list[float]] = {"base": [], "pruned": []}
    for i in range(rounds):
        order = (("base", base), ("pruned", pruned)) if i % 2 == 0 else (("pruned", pruned), ("base", base))
        for key, path in order:
            p50s[key].append(benchmark(path, runs=300, warmup=30, isolate=False, threads=threads).p50_ms)
    ratios = [b / p for b, p in zip(p50s["base"], p50s["pruned"])]
    return {"base_ms": statistics.median(p50s["base"]), "pruned_ms": statistics.median(p50s["pruned"]),
            "speedup": statistics.median(ratios), "ratios": [round(r, 2) for r in ratios]}


def run_width(width: int, images, labels, eval_npz: Path, work: Path, args) -> dict:
    start = time.perf_counter()
    model = train(width, images, labels, args.epochs, args.seed)
    x_eval = images[EVAL, :, :, None].astype(np.float32) / 255.0
    result = prune(model, train=(images[TRAIN, :, :, None], labels[TRAIN]), method="channels", sparsity=0.5,
                   epochs=args.fine_tune, seed=args.seed, preprocess=PREPROCESS)
    row = {
        "width": width,
        "params": [result.params_before, result.params_after],
        "macs": [result.flops_before, result.flops_after],
        "filters_removed": round(result.sparsity, 3),
        "top1_keras": [top1(model, x_eval, labels[EVAL]), top1(result.model, x_eval, labels[EVAL])],
        "train_prune_s": round(time.perf_counter() - start, 1),
    }
    base = export_fp32(model, f"w{width}", eval_npz, work / f"w{width}")
    small = export_fp32(result.model, f"w{width}_pruned", eval_npz, work / f"w{width}_pruned")
    row["formats"] = {}
    for fmt in FORMATS:
        timing = time_pair(base[fmt][0], small[fmt][0], args.rounds, args.threads)
        row["formats"][fmt] = {**timing, "top1": [base[fmt][1], small[fmt][1]]}
    fast = [f for f, v in row["formats"].items() if v["speedup"] >= TARGET_SPEEDUP]
    drop = 100 * (row["top1_keras"][0] - row["top1_keras"][1])
    row["target_met"] = len(fast) >= TARGET_FORMATS and drop <= TARGET_DROP
    return row


def format_row(r: dict) -> str:
    (pb, pa), (mb, ma), (tb, ta) = r["params"], r["macs"], r["top1_keras"]
    lines = [
        f"width {r['width']}: params {pb:,} -> {pa:,} ({pa / pb:.2f}x), MACs {mb / 1e6:.2f}M -> {ma / 1e6:.2f}M "
        f"({ma / mb:.2f}x), {100 * r['filters_removed']:.0f}% of filters removed; top-1 (images 8000..9999) "
        f"{100 * tb:.2f}% -> {100 * ta:.2f}% ({100 * (ta - tb):+.2f} points); train+prune {r['train_prune_s']} s",
        f"  {'format':<9} {'p50 ms':>8} {'pruned':>8} {'speed-up':>9}  per round          top-1 fp32 artifacts",
    ]
    for fmt, v in r["formats"].items():
        lines.append(f"  {fmt:<9} {v['base_ms']:8.3f} {v['pruned_ms']:8.3f} {v['speedup']:8.2f}x  "
                     f"{' '.join(f'{x:.2f}' for x in v['ratios']):<18} {100 * v['top1'][0]:.2f}% -> {100 * v['top1'][1]:.2f}%")
    lines.append(f"  target (>= {TARGET_SPEEDUP}x in >= {TARGET_FORMATS} formats, <= {TARGET_DROP} point lost): "
                 f"{'met' if r['target_met'] else 'NOT met'}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", default="1,4", help="comma-separated width multipliers of the CNN")
    p.add_argument("--epochs", type=int, default=4, help="training epochs before pruning")
    p.add_argument("--fine-tune", type=int, default=2, help="fine-tuning epochs after pruning")
    p.add_argument("--rounds", type=int, default=5, help="alternating timing rounds per format")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    images, labels = load_mnist()
    rows = []
    with tempfile.TemporaryDirectory(prefix="prune-speed-") as tmp:
        work = Path(tmp)
        eval_npz = work / "eval.npz"
        np.savez(eval_npz, x=images[EVAL, :, :, None], y=labels[EVAL])
        for width in (int(w) for w in args.widths.split(",")):
            rows.append(run_width(width, images, labels, eval_npz, work, args))
            print(format_row(rows[-1]), flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
