"""int4 weights against int8 and fp32 on the same models, per format: size, top-1 and latency on this machine.

    .venv/bin/python benchmarks/int4_weights.py [--out DIR] [--json]

Models (MNIST test set: images 0..7999 calibrate and train, 8000..9999 evaluate; see train_mnist_cnn.py):
- ``mnist_cnn``: the Keras CNN of ``train_mnist_cnn`` (4 epochs): five convolutions and two Dense layers,
  85% of its weights in the Dense layers;
- ``mnist-8``: the ONNX Model Zoo's MNIST CNN (third-party; NCHW, raw pixels), its one large layer a MatMul;
- ``mlp``: three 2048-wide Dense layers on the flattened image (trained 1 epoch here), the case weight-only
  int4 is made for: at batch 1 every weight is read once per inference, so the bytes read set the time.
Each is exported by ``edgecv export --quant fp32,int8,int4`` (int8 calibrated on 300 images) to TFLite, ONNX and
OpenVINO; TFLite's int4 row gives its one-line refusal. Top-1 is export's own, on images 8000..9999. Latency: the median of 3 alternating rounds of each
artifact's p50 over 200 runs (2 threads), so machine noise hits every artifact alike.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

import numpy as np

from _common import shared_model, work_dir

FORMATS = ("tflite", "onnx", "openvino")
ROUNDS, RUNS = 3, 200


def mlp(x: np.ndarray, y: np.ndarray):
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((28, 28, 1), name="image")
    h = keras.layers.Flatten()(inp)
    for i in range(3):
        h = keras.layers.Dense(2048, activation="relu", name=f"fc{i}")(h)
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax", name="probs")(h))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(x.astype(np.float32) / 255.0, y, epochs=1, batch_size=128, verbose=0)
    return model


def main() -> None:
    from train_mnist_cnn import EVAL, TRAIN, load_mnist, train_mnist_cnn

    from edgecv.bench import benchmark
    from edgecv.converters.export import ExportOptions, export
    from edgecv.converters.footprint import measure_artifacts
    from edgecv.manifest import Preprocess
    from edgecv.tables import fmt_float, human_bytes, render

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    images, labels = load_mnist()
    x_eval, y_eval = images[EVAL, :, :, None], labels[EVAL]
    rows = []
    with work_dir(args.out, "int4-") as work:
        np.save(work / "calib.npy", images[TRAIN][:300, :, :, None])
        np.savez(work / "eval.npz", x=x_eval, y=y_eval)
        cnn, _ = train_mnist_cnn(epochs=4, seed=0)
        sources = {"mnist_cnn": (cnn, Preprocess(mean=(0,), std=(255,))),
                   "mnist-8": (shared_model("mnist-8.onnx"), Preprocess(layout="NCHW", mean=(0,), std=(1,))),
                   "mlp": (mlp(images[TRAIN][:, :, :, None], labels[TRAIN]), Preprocess(mean=(0,), std=(255,)))}
        paths: dict[tuple[str, str, str], Path] = {}
        top1: dict[tuple[str, str, str], float | None] = {}
        for name, (model, pre) in sources.items():
            report = export(model, to=FORMATS, quant="fp32,int8,int4", calib=work / "calib.npy", eval_data=work / "eval.npz",
                            out=work / name, name=name, preprocess=pre, options=ExportOptions(bench_runs=0))
            for a in report.artifacts:
                if a.status == "passed":
                    paths[(name, a.format, a.precision)] = a.path
                    top1[(name, a.format, a.precision)] = a.scores.top1 if a.scores else None  # export's own, on eval.npz
                else:
                    rows.append({"model": name, "format": a.format, "precision": a.precision, "refused": a.reason})
        figures = {key: measure_artifacts([path], runs=0)[0] for key, path in paths.items()}
        p50s: dict[tuple, list[float]] = {k: [] for k in paths}
        for _ in range(ROUNDS):
            for key, path in paths.items():
                p50s[key].append(benchmark(path, runs=RUNS, warmup=20, threads=2, isolate=False).p50_ms)
        for key, f in figures.items():
            int8 = statistics.median(p50s[(key[0], key[1], "int8")]) if (key[0], key[1], "int8") in p50s else None
            p50 = statistics.median(p50s[key])
            rows.append({"model": key[0], "format": key[1], "precision": key[2], "top1": top1[key], "size_bytes": f.size_bytes,
                         "p50_ms": round(p50, 4), "p50_vs_int8": round(p50 / int8, 2) if int8 else None})
    order = {n: i for i, n in enumerate(sources)}
    rows.sort(key=lambda r: (order[r["model"]], FORMATS.index(r["format"]), ("fp32", "int8", "int4").index(r["precision"])))
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    table = [[r["model"], r["format"], r["precision"], fmt_float(100 * r["top1"], ".2f") if r.get("top1") is not None else "-",
              human_bytes(r["size_bytes"]) if r.get("size_bytes") else "-", fmt_float(r.get("p50_ms"), ".3f"),
              fmt_float(r.get("p50_vs_int8"), ".2f"), r.get("refused", "")] for r in rows]
    print(render(["model", "format", "precision", "top-1 %", "size", "p50 ms", "p50 / int8", "refused"], table,
                 align="lllrrrrl"))


if __name__ == "__main__":
    main()
