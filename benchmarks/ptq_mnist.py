"""Post-training int8 quantization on MNIST: edgecv's int8 against fp32 and against each tool's plain defaults.

    .venv/bin/python benchmarks/ptq_mnist.py [--out DIR] [--json] [--quick]

Data (the project's MNIST convention): the shared MNIST test set, images 0..7999 to train and calibrate,
8000..9999 to evaluate. Models: ``mnist-8.onnx`` (NCHW, raw pixels 0..255) and a Keras CNN trained here by
``train_mnist_cnn.py`` (NHWC, inputs in [0, 1]). For each, ``export()`` writes TFLite, ONNX and OpenVINO in
fp32 and int8 (default QuantOptions: 300 calibration samples, drawn by edgecv from images 0..7999), then
the same 300 samples (picked with edgecv's own ``open_dataset``) go through each tool's plain defaults:
``TFLiteConverter`` with ``Optimize.DEFAULT`` and a representative dataset (from the SavedModel edgecv
quantizes from), ``quantize_static(in, out, reader)`` on edgecv's fp32 ONNX, ``nncf.quantize(model,
Dataset)`` on edgecv's fp32 IR (saved with ``ov.save_model`` defaults). Every artifact's top-1 on the eval
images is measured here with ``edgecv.load(path, float_io=True)``. Last, ONNX int8 speed on the Keras CNN:
static QDQ built by edgecv's ONNX target with u8s8 (edgecv's default), s8s8 and u8u8, timed interleaved
with fp32 in one loop (median latency). The machine is shared: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from _common import shared_model
from train_mnist_cnn import EVAL, TRAIN, load_mnist, train_mnist_cnn

from edgecv.converters.data import Dataset, InputSpec, open_dataset
from edgecv.converters.export import ArtifactResult, ExportOptions, export
from edgecv.converters.quant import QuantJob, QuantOptions, fit_layout
from edgecv.converters.sources import Source, open_source
from edgecv.converters.targets import TARGETS
from edgecv.converters.tf_env import import_tensorflow
from edgecv.converters.toolchain import toolchain_versions
from edgecv.fileio import file_size
from edgecv.manifest import Preprocess
from edgecv.model import load

FORMATS = ("tflite", "onnx", "openvino")
ONNX_TYPES = {"u8s8": ("uint8", "int8"), "s8s8": ("int8", "int8"), "u8u8": ("uint8", "uint8")}
TARGET_DROP, TARGET_RATIO = 0.3, 0.3  # the targets: points of top-1, int8/fp32 size


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    preprocess: Preprocess
    layout: str


def top1(path: Path, images: np.ndarray, labels: np.ndarray, std: float) -> float:
    """Top-1 (%) of an artifact on uint8 [N, 28, 28] images, fed as float (quantized I/O handled by edgecv)."""
    model = load(path, float_io=True)
    shape = model.inputs[0].shape
    x = images[:, :, :, None].astype(np.float32) / std  # NHWC
    if tuple(shape[1:]) != x.shape[1:]:
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    preds = [np.argmax(model.run(x[i : i + 256])[0].reshape(len(x[i : i + 256]), -1), axis=1) for i in range(0, len(x), 256)]
    return 100.0 * float(np.mean(np.concatenate(preds) == labels))


def calibration(source: Source, case: Case, calib_npz: Path, options: ExportOptions) -> Dataset:
    """The calibration samples export() uses: same spec, limit and seed through edgecv's open_dataset."""
    source.inputs = [replace(t, layout=case.layout) if len(t.shape) == 4 else t for t in source.inputs]
    spec = InputSpec.from_tensor(source.inputs[0], replace(case.preprocess, layout=case.layout))
    return open_dataset(calib_npz, spec=spec, limit=options.quant.calib_samples, seed=options.seed)


def tflite_default(saved_model: Path, calib: Dataset, out: Path) -> None:
    tf = import_tensorflow()
    shape = list(next(iter(tf.saved_model.load(str(saved_model)).signatures["serving_default"].structured_input_signature[1].values())).shape)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([fit_layout(x, shape)] for x in calib.inputs())
    out.write_bytes(converter.convert())


class _OrtReader:
    def __init__(self, model: Path, calib: Dataset) -> None:
        import onnx

        graph = onnx.load(str(model)).graph
        weights = {i.name for i in graph.initializer}
        inp = next(i for i in graph.input if i.name not in weights)
        self.name, self.shape = inp.name, [d.dim_value or None for d in inp.type.tensor_type.shape.dim]
        self.samples: Iterator[np.ndarray] = calib.inputs()

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self.samples, None)
        return None if x is None else {self.name: fit_layout(x, self.shape)}


def onnx_default(fp32: Path, calib: Dataset, out: Path) -> None:
    from onnxruntime.quantization import quantize_static

    with contextlib.redirect_stdout(sys.stderr):
        quantize_static(str(fp32), str(out), _OrtReader(fp32, calib))


def openvino_default(fp32_xml: Path, calib: Dataset, out: Path) -> None:
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(fp32_xml))
    shape = [d.get_length() if d.is_static else None for d in model.inputs[0].get_partial_shape()]
    with contextlib.redirect_stdout(sys.stderr):
        quantized = nncf.quantize(model, nncf.Dataset([fit_layout(x, shape) for x in calib.inputs()]))
    ov.save_model(quantized, str(out))  # the default compress_to_fp16=True, as a plain user would call it


def run_case(case: Case, calib_npz: Path, eval_npz: Path, out: Path, options: ExportOptions, max_drop: float | None,
             images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    report = export(case.path, to=list(FORMATS), quant=["fp32", "int8"], calib=calib_npz, eval_data=eval_npz,
                    max_drop=max_drop, out=out / case.name, name=case.name, preprocess=case.preprocess,
                    layout=case.layout, options=options)
    source = open_source(case.path)
    calib = calibration(source, case, calib_npz, options)
    if calib.description != report.settings["calib"]:
        raise SystemExit(f"calibration sets differ: {calib.description!r} vs export's {report.settings['calib']!r}")
    std = case.preprocess.std[0]
    got: dict[tuple[str, str], ArtifactResult] = {(a.format, a.precision): a for a in report.artifacts}
    defaults_dir = out / case.name / "defaults"
    defaults_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="work-", dir=defaults_dir))
    rows = []
    for fmt in FORMATS:
        fp32, int8 = got[(fmt, "fp32")], got[(fmt, "int8")]
        row: dict[str, Any] = {"format": fmt}
        for a in (fp32, int8):
            row[a.precision] = {"status": a.status, "reason": a.reason, "path": str(a.path), "size_bytes": a.size_bytes,
                                "p50_ms": a.p50_ms, "report_top1": None if a.scores is None or a.scores.top1 is None else 100 * a.scores.top1,
                                "top1": top1(a.path, images, labels, std) if a.path else None,
                                "report_drop_vs_source": a.drop, "float_layers": (a.fallback or {}).get("kept", [])}
        both = row["fp32"]["top1"] is not None and row["int8"]["top1"] is not None
        row["drop_points"] = row["fp32"]["top1"] - row["int8"]["top1"] if both else None
        row["size_ratio"] = int8.size_bytes / fp32.size_bytes if fp32.size_bytes and int8.size_bytes else None
        dest = defaults_dir / f"{case.name}.int8.default{TARGETS[fmt].suffix}"
        try:
            if fmt == "tflite":
                tflite_default(source.view("saved_model", work), calib, dest)
            elif fmt == "onnx":
                onnx_default(fp32.path, calib, dest)
            else:
                openvino_default(fp32.path, calib, dest)
            size = file_size(dest)
            row["default"] = {"path": str(dest), "top1": top1(dest, images, labels, std), "size_bytes": size,
                              "size_ratio": size / fp32.size_bytes, "error": None}
        except Exception as exc:  # a tool's default failing is a result, not a crash
            row["default"] = {"path": None, "top1": None, "size_bytes": None, "size_ratio": None,
                              "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"}
        rows.append(row)
    shutil.rmtree(work, ignore_errors=True)
    return {"model": case.name, "source": str(case.path), "report_ok": report.ok, "calib": report.settings["calib"],
            "eval": report.eval_description, "max_drop": report.settings["max_drop"],
            "source_top1": None if report.source_scores is None else 100 * report.source_scores.top1, "rows": rows}


def onnx_types(keras_path: Path, case: Case, calib_npz: Path, fp32_onnx: Path, out: Path, options: ExportOptions,
               images: np.ndarray, labels: np.ndarray, runs: int, threads: int) -> dict[str, Any]:
    """u8s8 / s8s8 / u8u8 static QDQ (edgecv's ONNX target, only the types changed), timed interleaved with fp32."""
    source = open_source(keras_path)
    calib = calibration(source, case, calib_npz, options)
    folder = out / case.name / "onnx_types"
    work = Path(tempfile.mkdtemp(prefix="work-", dir=out / case.name))
    paths = {"fp32": fp32_onnx}
    errors: dict[str, str] = {}
    for name, (act, weight) in ONNX_TYPES.items():
        paths[name] = folder / f"{case.name}.{name}.onnx"
        folder.mkdir(parents=True, exist_ok=True)
        job = QuantJob(calib, replace(options.quant, onnx_activation_type=act, onnx_weight_type=weight))
        try:
            TARGETS["onnx"].convert(source, "int8", paths[name], work, job)
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
            del paths[name]
    shutil.rmtree(work, ignore_errors=True)
    models = {k: load(p, backend="onnxruntime", threads=threads) for k, p in paths.items()}
    x = images[:1, :, :, None].astype(np.float32) / 255.0
    times: dict[str, list[float]] = {k: [] for k in models}
    for m in models.values():
        for _ in range(30):
            m.run(x)
    order = list(models)
    for r in range(runs):  # interleaved, rotating the order, so load drifts hit every variant alike
        for k in order[r % len(order):] + order[: r % len(order)]:
            t = time.perf_counter()
            models[k].run(x)
            times[k].append((time.perf_counter() - t) * 1e3)
    p50 = {k: statistics.median(v) for k, v in times.items()}
    result = {k: {"p50_ms": p50[k], "vs_fp32": p50[k] / p50["fp32"], "size_bytes": file_size(paths[k]),
                  "top1": top1(paths[k], images, labels, 255.0)} for k in models}
    return {"runs": runs, "threads": threads, "reduce_range": options.quant.onnx_reduce_range,
            "per_channel": options.quant.per_channel, "variants": result, "errors": errors}


def _pct(v: float | None) -> str:
    return "   -  " if v is None else f"{v:6.2f}"


def format_case(c: dict[str, Any]) -> str:
    lines = [f"== {c['model']}  (source top-1 {_pct(c['source_top1'])}%; eval: {c['eval']}; calib: {c['calib']}; "
             f"edgecv max_drop {c['max_drop']})",
             f"{'format':9}{'prec':5}{'edgecv%':>8}{'drop':>7}{'size B':>10}{'ratio':>7}{'p50 ms':>8} | "
             f"{'default%':>8}{'size B':>10}{'ratio':>7} | float layers / notes"]
    for r in c["rows"]:
        for prec in ("fp32", "int8"):
            a = r[prec]
            drop = f"{r['drop_points']:7.2f}" if prec == "int8" and r["drop_points"] is not None else " " * 7
            ratio = f"{r['size_ratio']:7.3f}" if prec == "int8" and r["size_ratio"] else f"{'':7}"
            p50 = "     -  " if a["p50_ms"] is None else f"{a['p50_ms']:8.3f}"
            d = r["default"]
            dflt = " " * 25 if prec == "fp32" else (f"{'failed':>25}" if d["top1"] is None else f"{d['top1']:8.2f}{d['size_bytes']:10d}{d['size_ratio']:7.3f}")
            notes = [a["status"]] if a["status"] != "passed" else []
            notes += [f"{len(a['float_layers'])} float: {', '.join(a['float_layers'])}"] if a["float_layers"] else []
            if a["report_top1"] is not None and a["top1"] is not None and abs(a["report_top1"] - a["top1"]) > 0.05:
                notes.append(f"report says {a['report_top1']:.2f}")
            if prec == "int8" and d["error"]:
                notes.append(f"default: {d['error'][:120]}")
            lines.append(f"{r['format']:9}{prec:5}{_pct(a['top1']):>8}{drop}{a['size_bytes']:10d}{ratio}{p50} | {dflt} | {'; '.join(notes)}")
    return "\n".join(lines)


def targets(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for c in cases:
        for r in c["rows"]:
            d = r["default"]["top1"]
            out.append({"model": c["model"], "format": r["format"], "drop_ok": r["drop_points"] is not None and r["drop_points"] <= TARGET_DROP,
                        "size_ok": r["size_ratio"] is not None and r["size_ratio"] <= TARGET_RATIO,
                        "beats_default": None if d is None or r["int8"]["top1"] is None else r["int8"]["top1"] >= d})
    return out


@contextlib.contextmanager
def stdout_to_stderr(active: bool) -> Iterator[None]:
    """With --json, everything the tools print (even from C++) goes to stderr; only the JSON to stdout."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: a new temp folder)")
    p.add_argument("--epochs", type=int, default=4, help="Keras CNN training epochs")
    p.add_argument("--quick", action="store_true", help="smoke run: 400 eval images, 1 epoch, 50 timing runs")
    p.add_argument("--calib-samples", type=int, default=QuantOptions().calib_samples)
    p.add_argument("--max-drop", type=float, default=None, help="edgecv's accuracy gate (default QuantOptions().max_drop)")
    p.add_argument("--runs", type=int, default=300, help="timed runs per ONNX variant")
    p.add_argument("--threads", type=int, default=1, help="threads for the ONNX speed comparison")
    p.add_argument("--json", action="store_true", help="print only the JSON")
    args = p.parse_args()
    out = (args.out or Path(tempfile.mkdtemp(prefix="ptq-mnist-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    n_eval, epochs, runs = (400, 1, 50) if args.quick else (EVAL.stop - EVAL.start, args.epochs, args.runs)
    options = ExportOptions(quant=QuantOptions(calib_samples=args.calib_samples))
    start = time.perf_counter()
    with stdout_to_stderr(args.json):
        images, labels = load_mnist()
        calib_npz, eval_npz = out / "calib_0_7999.npz", out / f"eval_8000_{8000 + n_eval - 1}.npz"
        np.savez(calib_npz, x=images[TRAIN], y=labels[TRAIN])  # uint8 [N, 28, 28]: edgecv adds the channel axis
        ev_x, ev_y = images[EVAL][:n_eval], labels[EVAL][:n_eval]
        np.savez(eval_npz, x=ev_x, y=ev_y)
        keras_path = out / "mnist_cnn.keras"
        model, keras_top1 = train_mnist_cnn(keras_path, epochs=epochs)
        cases = [Case("mnist-8", shared_model("mnist-8.onnx"), Preprocess(mean=(0,), std=(1,)), "NCHW"),
                 Case("mnist_cnn", keras_path, Preprocess(mean=(0,), std=(255,)), "NHWC")]
        results = [run_case(c, calib_npz, eval_npz, out, options, args.max_drop, ev_x, ev_y) for c in cases]
        fp32_onnx = Path(next(r["fp32"]["path"] for r in results[1]["rows"] if r["format"] == "onnx"))
        speed = onnx_types(keras_path, cases[1], calib_npz, fp32_onnx, out, options, ev_x, ev_y, runs, args.threads)
    blob = {"command": " ".join(sys.argv), "out": str(out), "seconds": round(time.perf_counter() - start),
            "eval_images": f"8000..{8000 + n_eval - 1}", "calib_samples": args.calib_samples,
            "keras_cnn": {"params": int(model.count_params()), "epochs": epochs, "keras_top1": 100 * keras_top1},
            "models": results, "onnx_types": speed, "targets": targets(results), "toolchain": toolchain_versions()}
    if not args.json:
        print("\n\n".join(format_case(c) for c in results))
        print(f"\n== ONNX int8 speed, {blob['keras_cnn']['params']:,}-parameter Keras CNN, batch 1, {speed['threads']} thread(s), "
              f"median of {runs} interleaved runs (per-channel, reduce_range={speed['reduce_range']})")
        for k, v in speed["variants"].items():
            print(f"  {k:5} p50 {v['p50_ms']:.4f} ms  x{v['vs_fp32']:.2f} of fp32  size {v['size_bytes']:8d}  top-1 {v['top1']:.2f}")
        for k, e in speed["errors"].items():
            print(f"  {k:5} failed: {e}")
        print(f"\n== targets: int8 drop <= {TARGET_DROP} pts, int8/fp32 size <= {TARGET_RATIO}, edgecv int8 >= default")
        for t in blob["targets"]:
            print(f"  {t['model']:10}{t['format']:9} drop {'met' if t['drop_ok'] else 'NOT met':8} size {'met' if t['size_ok'] else 'NOT met':8}"
                  f" vs default {'n/a' if t['beats_default'] is None else ('met' if t['beats_default'] else 'NOT met')}")
        print()
    print(json.dumps(blob, default=str))


if __name__ == "__main__":
    main()
