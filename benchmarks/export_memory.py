"""Peak memory of an int8 export with the float fallback, at 640x480, measured in a child process.

    .venv/bin/python benchmarks/export_memory.py [--model M.onnx] [--shape 1x3x480x640] [--to onnx]
                                                 [--samples 32] [--limit-gb 8] [--json]

The failure this guards against: int8 export of a ~5M-parameter model with dynamic dims at 640x480 with
the float fallback was killed by the kernel at 23.7 GB (1.4 GB without the fallback). The export runs in a
child process (edgecv's Python API, ``--input-shape`` semantics: dims stay dynamic, checks and calibration
at ``--shape``), whose peak resident memory is read from ``wait4`` when it ends (the largest process of
its tree); the parent also polls the tree's resident memory and kills it past ``--limit-gb``, so a
regression cannot take the machine down.

Model: by default a generated ~5M-parameter fully convolutional DB-style text detector (input
``?x3x?x?``, output ``?x1x?x?`` at full resolution, wide layers at 1/32, a 64-channel neck at 1/4),
deterministic weights. ``--model`` takes any one-input ONNX image model instead (e.g. the PP-OCRv4
detector in .corpus). Data: ``--samples`` deterministic 640x480 synthetic scenes (uint8 .npy), used as
calibration and as eval set. To make sure the fallback runs (the path that blew up), the gate asks for an
output SQNR int8 cannot reach (``--min-sqnr 60``), so every fallback attempt is built and scored.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import REPO

GB = 1024**3


def make_model(path: Path, seed: int = 0) -> int:
    """Write the ~5M-parameter DB-style detector; returns its parameter count."""
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    count = 0

    def conv(x: str, cin: int, cout: int, k: int, stride: int, name: str, relu: bool = True) -> str:
        nonlocal count
        w = rng.normal(0, np.sqrt(2.0 / (cin * k * k)), size=(cout, cin, k, k)).astype(np.float32)
        b = rng.normal(0, 0.05, size=(cout,)).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(b, f"{name}_b")])
        count += w.size + b.size
        pad = k // 2
        nodes.append(helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [f"{name}_c"], pads=[pad] * 4, strides=[stride] * 2))
        if not relu:
            return f"{name}_c"
        nodes.append(helper.make_node("Relu", [f"{name}_c"], [name]))
        return name

    def up(x: str, factor: int, name: str) -> str:
        scales = numpy_helper.from_array(np.array([1, 1, factor, factor], np.float32), f"{name}_s")
        inits.append(scales)
        nodes.append(helper.make_node("Resize", [x, "", f"{name}_s"], [name], mode="nearest"))
        return name

    h = conv("x", 3, 32, 3, 2, "stem")  # 1/2
    h = conv(h, 32, 64, 3, 2, "down4")  # 1/4
    c4 = conv(h, 64, 64, 3, 1, "c4")
    h = conv(c4, 64, 128, 3, 2, "down8")
    h = conv(h, 128, 256, 3, 2, "down16")
    h = conv(h, 256, 256, 3, 1, "c16")
    h = conv(h, 256, 512, 3, 2, "down32")
    h = conv(h, 512, 512, 3, 1, "c32")
    h = conv(h, 512, 64, 1, 1, "lat32")
    nodes.append(helper.make_node("Add", [up(h, 8, "up4"), c4], ["neck"]))
    h = conv("neck", 64, 64, 3, 1, "head")
    h = conv(h, 64, 1, 1, 1, "logit", relu=False)
    nodes.append(helper.make_node("Sigmoid", [up(h, 4, "up1")], ["prob"]))
    graph = helper.make_graph(
        nodes, "db_5m",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return count


def make_scenes(path: Path, count: int, height: int, width: int, seed: int = 1) -> None:
    """``count`` uint8 RGB scenes: smooth background, rectangles and bars of text-like stripes, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        img = np.stack([60 + 80 * np.sin(xx / rng.uniform(60, 200) + c) * np.cos(yy / rng.uniform(60, 200)) + 100 for c in range(3)], -1)
        for _ in range(12):
            y0, x0 = rng.integers(0, height - 40), rng.integers(0, width - 120)
            h, w = rng.integers(12, 40), rng.integers(40, 120)
            img[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0, 255, 3)
            img[y0 : y0 + h, x0 : x0 + w : 4] = 20  # stripes, like strokes of text
        img += rng.normal(0, 6, img.shape)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    np.save(path, out)


def child(args: argparse.Namespace) -> None:
    """Run the export here (the measured process) and print one JSON line."""
    from edgecv.converters.export import ExportOptions, export
    from edgecv.converters.quant import QuantOptions

    shape = tuple(int(d) for d in args.shape.lower().split("x"))
    quant = QuantOptions(calib_samples=args.samples, eval_samples=args.samples, min_sqnr=args.min_sqnr,
                         fallback=not args.no_fallback, max_float_layers=args.max_float_layers)
    start = time.perf_counter()
    report = export(args.model, to=args.to, quant="int8", calib=args.data, eval_data=args.data, out=args.out,
                    input_shape=shape, options=ExportOptions(quant=quant, bench_runs=args.bench_runs))
    rows = [{"format": a.format, "precision": a.precision, "status": a.status, "path": str(a.path) if a.path else None,
             "reason": a.reason, "float_layers": len((a.fallback or {}).get("kept", [])),
             "builds": len((a.fallback or {}).get("attempts", [])), "sqnr_db": a.scores.sqnr_db if a.scores else None}
            for a in report.artifacts]
    print(json.dumps({"seconds": round(time.perf_counter() - start, 1), "artifacts": rows}))


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants (0 once gone)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def measure(argv: list[str], limit: float) -> dict:
    """Run ``argv`` in a child; its peak RSS (wait4), the polled tree peak, and whether the limit killed it."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    tree_peak, killed = 0, False
    import threading

    out: dict[str, str] = {}
    readers = [threading.Thread(target=lambda k=k, s=s: out.__setitem__(k, s.read())) for k, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    while True:
        waited, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if waited:
            break
        rss = _tree_rss(proc.pid)
        tree_peak = max(tree_peak, rss)
        if rss > limit and not killed:
            killed = True
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join()
    lines = [ln for ln in out.get("out", "").splitlines() if ln.startswith("{")]
    return {
        "peak_rss_gb": round(usage.ru_maxrss * 1024 / GB, 3),  # Linux: KB
        "tree_peak_rss_gb": round(tree_peak / GB, 3),
        "killed_at_limit_gb": round(limit / GB, 1) if killed else None,
        "exit_code": proc.returncode,
        "result": json.loads(lines[-1]) if lines else None,
        "stderr_tail": out.get("err", "").strip().splitlines()[-3:],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="one-input ONNX image model (default: the generated 5M-parameter detector)")
    p.add_argument("--shape", default="1x3x480x640", help="check and calibration shape (default 1x3x480x640)")
    p.add_argument("--to", default="onnx", help="export formats (default onnx)")
    p.add_argument("--samples", type=int, default=32, help="calibration and eval samples (default 32)")
    p.add_argument("--min-sqnr", type=float, default=60.0, help="gate int8 cannot meet, so the fallback runs (default 60)")
    p.add_argument("--max-float-layers", type=int, default=16)
    p.add_argument("--no-fallback", action="store_true", help="measure plain int8 for comparison")
    p.add_argument("--bench-runs", type=int, default=20, help="latency runs per artifact (default 20)")
    p.add_argument("--limit-gb", type=float, default=8.0, help="kill the export past this resident memory (default 8)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="edgecv-export-memory-") as tmp:
        tmp = Path(tmp)
        params = None
        if args.model is None:
            args.model = tmp / "db_5m.onnx"
            params = make_model(args.model)
        _, _, h, w = (int(d) for d in args.shape.lower().split("x"))
        data = tmp / "scenes.npy"
        make_scenes(data, args.samples, h, w)
        argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--model", str(args.model), "--shape", args.shape,
                "--to", args.to, "--samples", str(args.samples), "--min-sqnr", str(args.min_sqnr),
                "--max-float-layers", str(args.max_float_layers), "--bench-runs", str(args.bench_runs),
                "--data", str(data), "--out", str(tmp / "out"), *(["--no-fallback"] if args.no_fallback else [])]
        result = measure(argv, args.limit_gb * GB)
        result.update({"model": str(args.model.name), "parameters": params, "shape": args.shape, "samples": args.samples,
                       "fallback": not args.no_fallback, "to": args.to})
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['model']} ({result['parameters'] or '?'} parameters) int8 at {args.shape}, fallback "
          f"{'on' if result['fallback'] else 'off'}, {args.samples} calibration/eval samples, to {args.to}")
    print(f"peak RSS {result['peak_rss_gb']:.2f} GB (process tree polled: {result['tree_peak_rss_gb']:.2f} GB)"
          + (f"; KILLED at the {result['killed_at_limit_gb']} GB limit" if result["killed_at_limit_gb"] else ""))
    if result["result"]:
        print(f"export took {result['result']['seconds']} s")
        for a in result["result"]["artifacts"]:
            print(f"  {a['format']} {a['precision']}: {a['status']} ({a['float_layers']} float layers, {a['builds']} builds, "
                  f"SQNR {a['sqnr_db']}) {a['path'] or a['reason']}")
    elif result["exit_code"]:
        print(f"export exited with {result['exit_code']}: {' / '.join(result['stderr_tail'])}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
