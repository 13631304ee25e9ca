"""`edgecv bench` on mnist-8.onnx exported to TFLite, ONNX and OpenVINO (fp32 and fp16), side by side.

    .venv/bin/python benchmarks/bench_mnist_formats.py [--runs 500] [--threads 2] [--out runs/mnist]

Each artifact is benchmarked in its own process (load time and peak memory are its own).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import shared_model

from edgecv.converters.export import export
from edgecv.bench import benchmark
from edgecv.cli.bench_cmd import format_results
from edgecv.cli.export_cmd import format_report
from edgecv.manifest import Preprocess


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="edgecv-mnist-"))
    report = export(shared_model("mnist-8.onnx"), out=out, name="mnist", preprocess=Preprocess(mean=(0,), std=(1,)))
    print(format_report(report), "\n")
    results = [benchmark(a.path, threads=args.threads, runs=args.runs, warmup=50) for a in report.artifacts if a.status == "passed"]
    # The source itself on OpenVINO, too: same file, other runtime.
    results.append(benchmark(out / "mnist.fp32.onnx", backend="openvino", threads=args.threads, runs=args.runs, warmup=50))
    print(format_results(results))
    print("\n" + json.dumps([r.to_dict() for r in results]))


if __name__ == "__main__":
    main()
