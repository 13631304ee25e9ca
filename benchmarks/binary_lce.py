"""Binary networks on this machine: a Larq model converted by Larq Compute Engine (LCE) and run by its
binary kernels, against the same network in float, and what edgecv's own runtimes make of the file.

    .venv/bin/python benchmarks/binary_lce.py --setup     # once: benchmarks/.venv-larq (TF 2.16.2, LCE 0.16.0)
    .venv/bin/python benchmarks/binary_lce.py [--json]

The network (64x64x3 input): a float Conv2D stem, then four 3x3 convolutions of 128, 128, 256 and 256 filters,
each followed by batch norm and 2x2 max pooling, then global pooling and a Dense softmax. The binary version
makes the four convolutions ``larq.layers.QuantConv2D`` with ``ste_sign`` inputs and weights (the Bi-Real /
QuickNet building block); the float version keeps them Conv2D + ReLU. Both are converted by
``lce.convert_keras_model`` and timed in LCE's interpreter (2 threads, 200 runs after 10, median); the float one
also in TF 2.16's own TFLite interpreter (XNNPACK). Weights are random: this measures speed and size, not
accuracy. Then, in the project's venv, the binary file is given to ``edgecv.load`` (LiteRT), which has none of
LCE's custom ops.

Why a venv of its own: LCE 0.16.0 (the newest on the registry) converts under the project's TF 2.21, but its
interpreter is built against NumPy 1 and fails under edgecv's NumPy 2 (docs/precisions.md has the errors).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-larq"
PINS = ["tensorflow==2.16.2", "tf-keras==2.16.0", "larq==0.14.0", "larq-compute-engine==0.16.0"]


def setup() -> None:
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *PINS], check=True)


def inside(out: Path) -> None:
    """Run in .venv-larq: build, convert and time both networks; write the files and ``lce.json`` into ``out``."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import time

    import numpy as np
    import tensorflow as tf
    import larq as lq
    import larq_compute_engine as lce
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    binary_kw = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                     use_bias=False, padding="same", pad_values=1.0)

    def network(binary: bool):
        tf.keras.utils.set_random_seed(0)
        inp = tf.keras.Input((64, 64, 3))
        x = tf.keras.layers.BatchNormalization()(tf.keras.layers.Conv2D(64, 3, padding="same", use_bias=False)(inp))
        for filters in (128, 128, 256, 256):
            if binary:
                x = lq.layers.QuantConv2D(filters, 3, **binary_kw)(x)
            else:
                x = tf.keras.layers.ReLU()(tf.keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x))
            x = tf.keras.layers.MaxPool2D()(tf.keras.layers.BatchNormalization()(x))
        x = tf.keras.layers.GlobalAveragePooling2D()(x)
        return tf.keras.Model(inp, tf.keras.layers.Dense(10, activation="softmax")(x))

    def p50(predict) -> float:
        x = np.random.default_rng(0).random((1, 64, 64, 3), dtype=np.float32)
        for _ in range(10):
            predict(x)
        times = []
        for _ in range(200):
            t0 = time.perf_counter()
            predict(x)
            times.append((time.perf_counter() - t0) * 1000)
        return float(np.median(times))

    result = {"versions": {"tensorflow": tf.__version__, "larq": lq.__version__ if hasattr(lq, "__version__") else "0.14.0",
                           "numpy": np.__version__}}
    for name in ("binary", "float"):
        flat = lce.convert_keras_model(network(name == "binary"))
        path = out / f"{name}.tflite"
        path.write_bytes(flat)
        lce_interp = Interpreter(flat, num_threads=2)
        result[name] = {"bytes": len(flat), "lce_p50_ms": round(p50(lce_interp.predict), 3)}
        if name == "float":
            tfl = tf.lite.Interpreter(model_content=flat, num_threads=2)
            tfl.allocate_tensors()
            i, o = tfl.get_input_details()[0]["index"], tfl.get_output_details()[0]["index"]

            def run(x):
                tfl.set_tensor(i, x)
                tfl.invoke()
                return tfl.get_tensor(o)

            result[name]["tflite_p50_ms"] = round(p50(run), 3)
    (out / "lce.json").write_text(json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setup", action="store_true", help="make benchmarks/.venv-larq")
    p.add_argument("--inside", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.setup:
        setup()
        return
    if args.inside:
        inside(args.inside)
        return
    if not (VENV / "bin" / "python").is_file():
        sys.exit(f"needs {VENV}: run {Path(sys.argv[0]).name} --setup first")
    with tempfile.TemporaryDirectory(prefix="binary-lce-") as tmp:
        out = Path(tmp)
        proc = subprocess.run([str(VENV / "bin" / "python"), __file__, "--inside", str(out)], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"the LCE run failed:\n{proc.stderr[-3000:]}")
        result = json.loads((out / "lce.json").read_text())
        from collections import Counter

        from edgecv.compat import read_graph

        ops = Counter(op.type for op in read_graph(out / "binary.tflite").ops)
        result["binary"]["ops"] = dict(ops)
        import edgecv

        try:
            edgecv.load(out / "binary.tflite")
            result["edgecv_load"] = "loaded"
        except Exception as exc:  # the point: what edgecv's runtime says about LCE's ops
            result["edgecv_load"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    if args.json:
        print(json.dumps(result, indent=1))
        return
    b, f = result["binary"], result["float"]
    print(f"versions: {result['versions']}")
    print(f"binary: {b['bytes'] / 1024:.0f} KB, LCE p50 {b['lce_p50_ms']:.2f} ms; ops {b['ops']}")
    print(f"float:  {f['bytes'] / 1024:.0f} KB, LCE p50 {f['lce_p50_ms']:.2f} ms, TFLite (XNNPACK) p50 {f['tflite_p50_ms']:.2f} ms")
    print(f"binary / float: size {b['bytes'] / f['bytes']:.3f}x; time {b['lce_p50_ms'] / f['lce_p50_ms']:.2f}x (LCE), "
          f"{b['lce_p50_ms'] / f['tflite_p50_ms']:.2f}x (against float in TFLite)")
    print(f"edgecv.load(binary.tflite): {result['edgecv_load']}")


if __name__ == "__main__":
    main()
