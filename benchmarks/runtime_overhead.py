"""Time edgecv's Model.run adds over calling each raw runtime directly, same artifact, same process.

    .venv/bin/python benchmarks/runtime_overhead.py [--rounds 30] [--calls 200] [--model PATH.onnx]

Raw and wrapped calls alternate in rounds; the figure is the median per-call time over rounds, so machine
noise hits both sides alike. Goal: overhead under 3% or 20 µs, whichever is larger.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import shared_model

import edgecv
from edgecv.converters.export import export
from edgecv.tables import render
from edgecv.manifest import Preprocess


def raw_caller(model):
    """The plain runtime call a user would write, on the runtime object edgecv opened."""
    raw = model.raw
    if model.backend == "litert":
        i_idx = raw.get_input_details()[0]["index"]
        o_idx = [d["index"] for d in raw.get_output_details()]

        def call(x):
            raw.set_tensor(i_idx, x)
            raw.invoke()
            return [raw.get_tensor(i) for i in o_idx]

        return call
    if model.backend == "onnxruntime":
        name = raw.get_inputs()[0].name
        return lambda x: raw.run(None, {name: x})
    request = raw.create_infer_request()
    return lambda x: list(request.infer({0: x}, share_inputs=True).to_tuple())


def per_call(fn, x, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn(x)
    return (time.perf_counter() - start) / calls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model", type=Path, default=None, help="an ONNX model (default: mnist-8.onnx)")
    args = p.parse_args()
    src = args.model or shared_model("mnist-8.onnx")
    out = Path(tempfile.mkdtemp(prefix="edgecv-overhead-"))
    report = export(src, out=out, name="m", quant="fp32", preprocess=Preprocess(mean=(0,), std=(1,)))
    rows = []
    for path, backend in [(out / "m.fp32.tflite", "litert"), (out / "m.fp32.onnx", "onnxruntime"), (out / "m.fp32.xml", "openvino")]:
        model = edgecv.load(path, backend=backend, threads=args.threads)
        shape = [d or 1 for d in model.inputs[0].shape]
        x = np.random.default_rng(0).uniform(0, 255, size=shape).astype(np.float32)
        raw = raw_caller(model)
        np.testing.assert_array_equal(raw(x)[0], model.run(x)[0])
        for _ in range(100):
            raw(x), model.run(x)
        raws, wraps = [], []
        for _ in range(args.rounds):
            raws.append(per_call(raw, x, args.calls))
            wraps.append(per_call(model.run, x, args.calls))
        r, w = statistics.median(raws) * 1e6, statistics.median(wraps) * 1e6
        goal = max(0.03 * r, 20.0)
        rows.append([path.name, backend, f"{r:.1f}", f"{w:.1f}", f"{w - r:+.1f}", f"{100 * (w - r) / r:+.1f}%", "yes" if w - r <= goal else "NO"])
    print(render(["artifact", "backend", "raw µs", "edgecv µs", "added µs", "added %", "within goal"], rows, align="llrrrrl"))
    print(f"\nmedian of {args.rounds} rounds x {args.calls} calls, threads {args.threads}; all outputs identical to the raw call's")
    del report


if __name__ == "__main__":
    main()
