"""Export's latency p50 against `edgecv bench` on the same files with the same settings.

    .venv/bin/python benchmarks/export_p50.py [--model M.onnx] [--shape 1x3x480x640] [--to onnx,openvino]
                                              [--repeats 3] [--json]

The failure this guards against: export reported p50 167 ms for an ONNX model that `edgecv bench`
measured at 41.5 ms (export timed in its own process, beside TensorFlow, with its own warm-up and runs).
Export now calls :func:`edgecv.bench.benchmark` with bench's defaults in a child process and records the
command; this script exports (fp32, dims kept dynamic, checked at ``--shape``), then runs that command's
settings ``--repeats`` times on each artifact and prints export's p50, bench's, and their ratio. Timings
on a shared machine are noisy: the ratio of the median bench run is what to read.

Model: the PP-OCRv4 text detector from .corpus when installed, else the generated 5M-parameter detector
of export_memory.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from _common import REPO
from export_memory import make_model

from edgecv.converters.export import export
from edgecv.bench import benchmark

PPOCR = REPO / ".corpus" / "rapidocr_onnxruntime" / "models" / "ch_PP-OCRv4_det_infer.onnx"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="ONNX image model (default: PP-OCRv4 det from .corpus, else a generated one)")
    p.add_argument("--shape", default="1x3x480x640")
    p.add_argument("--to", default="onnx,openvino")
    p.add_argument("--repeats", type=int, default=3, help="bench runs per artifact (default 3)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    shape = tuple(int(d) for d in args.shape.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="edgecv-export-p50-") as tmp:
        model = args.model or (PPOCR if PPOCR.is_file() else None)
        if model is None:
            model = Path(tmp) / "db_5m.onnx"
            make_model(model)
        report = export(model, to=args.to, quant="fp32", out=Path(tmp) / "out", input_shape=shape)
        rows = []
        for a in report.artifacts:
            if a.bench is None or a.path is None:
                rows.append({"artifact": f"{a.format} {a.precision}", "status": a.status, "reason": a.reason})
                continue
            settings = {k: a.bench[k] for k in ("runs", "warmup", "threads")}
            bench_shape = a.bench["input_shape_arg"]
            p50s = [benchmark(a.path, **settings, input_shape=bench_shape).p50_ms for _ in range(args.repeats)]
            median = statistics.median(p50s)
            rows.append({"artifact": a.path.name, "status": a.status, "export_p50_ms": round(a.p50_ms, 3),
                         "bench_p50_ms": [round(v, 3) for v in p50s], "ratio_to_median": round(a.p50_ms / median, 3),
                         "command": a.bench["command"]})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{model.name} at {args.shape}: export's p50 against edgecv bench's on the same file and settings")
    for r in rows:
        if "export_p50_ms" not in r:
            print(f"  {r['artifact']}: {r['status']} {r['reason']}")
            continue
        print(f"  {r['artifact']}: export {r['export_p50_ms']:.1f} ms, bench {', '.join(f'{v:.1f}' for v in r['bench_p50_ms'])} ms "
              f"-> ratio {r['ratio_to_median']:.2f}  ({r['command']})")


if __name__ == "__main__":
    main()
