"""Knowledge distillation on MNIST: a quarter-size student trained with and without the teacher.

    .venv/bin/python benchmarks/distill_mnist.py [--epochs 3,6] [--seeds 0,1] [--settings 4:0.1,2:0.5] [--json]

Data (the project's MNIST convention, see train_mnist_cnn.py): images 0..7999 to train, 8000..9999 to
evaluate. The teacher is ``build_cnn`` (about 237k parameters) trained here for ``--teacher-epochs`` with Adam
2e-3 decayed along a cosine (about 99.1% top-1). The student is ``narrow_copy(teacher, width=0.5)``: every
conv and dense layer but the classifier at half width, a quarter of the parameters. For each seed it is
trained by ``distill`` twice or more with the same initial weights, batch order, epochs and learning-rate
schedule: with ``alpha=1`` (plain cross-entropy: the teacher's term weighs 0) and with knowledge
distillation at each ``T:alpha`` setting, for each number of student epochs. ``distill`` holds out 10% of images 0..7999 for its own figures;
those images trained the teacher, so they are not used here: every top-1 printed is on images
8000..9999 (2000 images: one image is 0.05 points). Last, the first KD student is exported to
fp32 TFLite, ONNX and OpenVINO and the artifact sizes are printed. The issue's target: the KD student beats
the same student trained without KD.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from train_mnist_cnn import EVAL, TRAIN, build_cnn, load_mnist

from edgecv.converters.distill import DistillOptions, distill
from edgecv.converters.export import ExportOptions, export
from edgecv.manifest import Preprocess

FORMATS = ("tflite", "onnx", "openvino")
PIXELS = Preprocess(mean=(0,), std=(255,))  # uint8 pixels -> [0, 1], as build_cnn expects


def train_teacher(x: np.ndarray, y: np.ndarray, *, epochs: int, seed: int):
    """build_cnn trained on float inputs ``x`` with Adam 2e-3 along a cosine, batch 64."""
    import keras

    model = build_cnn(seed)
    steps = -(-len(x) // 64) * epochs
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps)),
                  loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=64, shuffle=True, verbose=0)
    return model


def top1(model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(model.predict(x, batch_size=256, verbose=0), axis=1) == y))


def parse_settings(text: str) -> list[tuple[float, float]]:
    """``"4:0.1,2:0.5"`` -> ``[(4.0, 0.1), (2.0, 0.5)]`` (temperature, alpha)."""
    return [(float(t), float(a)) for t, a in (item.split(":") for item in text.split(","))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher-epochs", type=int, default=8)
    p.add_argument("--epochs", default="3,6", help="student epochs, comma-separated (every student)")
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--settings", default="4:0.1", help="KD runs as temperature:alpha, comma-separated")
    p.add_argument("--seeds", default="0,1", help="student seeds (initial weights, split and batch order)")
    p.add_argument("--lr", type=float, default=DistillOptions().learning_rate)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--no-export", action="store_true")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="log each epoch")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    start = time.perf_counter()

    images, labels = load_mnist()
    train = (images[TRAIN, :, :, None], labels[TRAIN])
    x_eval, y_eval = images[EVAL, :, :, None].astype(np.float32) / 255.0, labels[EVAL]
    teacher = train_teacher(train[0].astype(np.float32) / 255.0, train[1], epochs=args.teacher_epochs, seed=0)
    teacher_top1 = top1(teacher, x_eval, y_eval)
    print(f"teacher: {teacher.count_params():,} params, top-1 {100 * teacher_top1:.2f}% "
          f"({args.teacher_epochs} epochs, {time.perf_counter() - start:.0f} s)")

    runs = [("plain CE", 1.0, 1.0)] + [("KD", t, a) for t, a in parse_settings(args.settings)]
    rows = []
    for epochs in (int(e) for e in args.epochs.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            for label, temperature, alpha in runs:
                result = distill(teacher, train=train, width=args.width, temperature=temperature, alpha=alpha,
                                 epochs=epochs, batch_size=args.batch_size, seed=seed, preprocess=PIXELS,
                                 options=DistillOptions(learning_rate=args.lr))
                row = {"student": label, "temperature": temperature, "alpha": alpha, "epochs": epochs, "seed": seed,
                       "params": result.params_student, "top1": top1(result.model, x_eval, y_eval),
                       "seconds": round(result.seconds, 1), "model": result.model}
                rows.append(row)
                print(f"{epochs} epochs, seed {seed}: {label:8s} T={temperature:<4g} alpha={alpha:<4g} "
                      f"{row['params']:,} params ({row['params'] / teacher.count_params():.2f}x)  "
                      f"top-1 {100 * row['top1']:.2f}%  {row['seconds']:.0f} s")

    gains = {}
    for epochs in (int(e) for e in args.epochs.split(",")):
        print(f"{epochs} student epochs, mean over seeds {args.seeds}:")
        means = {}
        for run in runs:
            same = [r["top1"] for r in rows if r["epochs"] == epochs and (r["student"], r["temperature"], r["alpha"]) == run]
            means[run] = statistics.mean(same)
            print(f"  {run[0]:8s} T={run[1]:<4g} alpha={run[2]:<4g} top-1 {100 * means[run]:.2f}% "
                  f"(min {100 * min(same):.2f}, max {100 * max(same):.2f})")
        best = max(runs[1:], key=lambda r: means[r])
        gain = 100 * (means[best] - means[runs[0]])
        gains[epochs] = round(gain, 2)
        print(f"  KD (T={best[1]:g}, alpha={best[2]:g}) against plain CE: {gain:+.2f} points -> "
              f"{'KD wins' if gain > 0 else 'KD does NOT win'}")

    sizes = {}
    if not args.no_export:
        model = next(r["model"] for r in rows if r["student"] == "KD")  # sizes do not depend on the training
        with tempfile.TemporaryDirectory() as out:
            report = export(model, to=FORMATS, quant="fp32", out=Path(out), name="mnist_student",
                            preprocess=PIXELS, options=ExportOptions(bench_runs=0))
            for a in report.artifacts:
                sizes[a.format] = a.size_bytes
                print(f"KD student fp32 {a.format:9s} {a.size_bytes / 1024:7.1f} KiB  {a.status} {a.reason}".rstrip())
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.json:
        figures = {"teacher": {"params": teacher.count_params(), "top1": teacher_top1},
                   "students": [{k: v for k, v in r.items() if k != "model"} for r in rows],
                   "kd_gain_points_by_epochs": gains, "fp32_bytes": sizes}
        print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
