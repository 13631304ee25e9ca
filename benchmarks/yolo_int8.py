"""YOLOv8n int8, edgecv side by side with Ultralytics' own exporter, scored by mAP on held-out generated frames.

    .venv/bin/python benchmarks/yolo_int8.py --setup                  # once: the YOLO venv, TFLite and int8 packages
    .venv/bin/python benchmarks/yolo_int8.py [--out runs/yolo_int8] [--train-frames 1500] [--epochs 12]
    .venv/bin/python benchmarks/yolo_int8.py --stage score            # only score what OUT holds

Issue 17, item 1. Nothing is downloaded. The model is Ultralytics' YOLOv8n, built from its own YAML and trained
briefly on edgecv's generated scenes by benchmarks/yolo_ultralytics.py (its YOLO venv, offline; see there).
Stages (``--stage all`` runs them in order):

- ``data``: the YOLO dataset (320x240 frames: train seed 1, val seed 2 held out, calib seed 3).
- ``train``: Ultralytics trains, vals and exports the static ONNX ``[1,3,320,320]`` OUT/yolov8n_scenes.onnx.
- ``ultralytics``: Ultralytics' own exports of the trained weights, all calibrated on the calib split
  (``data=`` OUT/data/calib.yaml, whose ``val`` is images/calib): ``format="tflite"`` (LiteRT route, fp32 and
  ``int8=True``: ai-edge-quantizer, float I/O), ``format="saved_model", int8=True`` (onnx2tf: ``*_float32``,
  ``*_integer_quant`` with float I/O and ``*_full_integer_quant``, int8 in and out) and ``format="openvino"``
  (fp32 and ``int8=True``: NNCF).
- ``edgecv``: ``edgecv export`` of the same static ONNX to TFLite, ONNX and OpenVINO, float and int8, calibrated
  on the same calib frames, gated with benchmarks/yolov8n-scenes.yaml on the held-out frames' own boxes (the
  val split's YOLO label files: mAP@[.5:.95] and F1-at-threshold points lost, ``--max-drop``); then the TFLite int8 again with ``--io-type int8``, and both without float fallback
  (``--no-fallback``: the int8 of the PTQ ladder's best rung alone); then all three cut before the DFL
  (``--cut-decode``: the box decoding in edgecv's yolo_dfl decoder on the CPU, TFLite with int8 I/O), and the
  cut full-integer TFLite without fallback (what ``edgecv optimize --device coral-edgetpu`` builds). Artifacts
  that fail the gate stay in _failed/.
- ``score``: every artifact (artifacts that failed edgecv's gate too, from ``_failed/``) on the same held-out
  frames, through edgecv: ``edgecv.detection.Detector`` (edgecv's runtime with float I/O, its letterbox, its
  YOLO v8 decoder and class-aware NMS at IoU 0.7, score threshold 0.001), mAP@0.5 and mAP@[.5:.95] by
  pycocotools (``edgecv.detection.evaluate.evaluate_detections``) against the exact truth boxes. Ultralytics' LiteRT
  files give boxes normalized to [0, 1] (decoded with benchmarks/yolov8n-scenes-litert.yaml); which spec fits a
  file is read off its output on one frame; a cut artifact is decoded by its manifest's spec. Latency: ``edgecv
  bench`` p50 (``--no-bench`` skips it). Every int8 TFLite also gets ``edgecv devices check``'s count of its ops
  on the Edge TPU.

The table: artifact, maker, format, precision (and I/O type), size, mAP@0.5, mAP@[.5:.95], the change in
mAP@[.5:.95] and mAP@0.5 points against the same maker's fp32 artifact of the same format (and route), and p50.
OUT/yolo_int8.json holds the rows, the commands and the verdicts (edgecv int8 within ``--aim`` points of fp32 in
every format; ahead of Ultralytics' int8 where that loses more). Too heavy for CI: run it by hand.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import yolo_ultralytics as yu  # noqa: E402

REPO = yu.REPO
sys.path.insert(0, str(REPO))
STAGES = ("data", "train", "ultralytics", "edgecv", "score")

# Ultralytics' files under OUT: (key, file, format, precision, I/O, key of the fp32 twin)
ULTRALYTICS = [
    ("ul_onnx_fp32", yu.ONNX_STATIC, "onnx", "fp32", "float", None),
    ("ul_onnx_int8", "yolov8n_scenes_onnx_int8.onnx", "onnx", "int8", "float", "ul_onnx_fp32"),
    ("ul_openvino_fp32", "ultralytics_openvino_fp32/yolov8n_scenes.xml", "openvino", "fp32", "float", None),
    ("ul_openvino_int8", "ultralytics_openvino_int8/yolov8n_scenes.xml", "openvino", "int8", "float",
     "ul_openvino_fp32"),
    ("ul_litert_fp32", "yolov8n_scenes_litert.tflite", "tflite (litert)", "fp32", "float", None),
    ("ul_litert_int8", "yolov8n_scenes_litert_int8.tflite", "tflite (litert)", "int8", "float", "ul_litert_fp32"),
    ("ul_onnx2tf_fp32", "yolov8n_scenes_float32.tflite", "tflite (onnx2tf)", "fp32", "float", None),
    ("ul_onnx2tf_int8", "yolov8n_scenes_integer_quant.tflite", "tflite (onnx2tf)", "int8", "float",
     "ul_onnx2tf_fp32"),
    ("ul_onnx2tf_full_int8", "yolov8n_scenes_full_integer_quant.tflite", "tflite (onnx2tf)", "int8", "int8",
     "ul_onnx2tf_fp32"),
]
FORMAT_OF = {".tflite": "tflite", ".onnx": "onnx", ".xml": "openvino"}


def log(msg: str) -> None:
    yu.log(msg)


# -- stages that run Ultralytics (in its venv, through yolo_ultralytics.py) --------------------------------


def run_ultralytics(args: argparse.Namespace, stage: str, extra: list[str] = ()) -> int:
    cmd = [str(yu.VENV_PY), yu.__file__, "--stage", stage, "--out", str(args.out.resolve()), "--epochs",
           str(args.epochs), "--imgsz", "320", "--batch", "16", "--workers", "2", "--threads", str(args.threads), *extra]
    log("$ " + " ".join(cmd))
    start = time.perf_counter()
    rc = subprocess.run(cmd).returncode
    log(f"{stage}: exit {rc} in {time.perf_counter() - start:.0f} s")
    return rc


# -- edgecv export (project venv) --------------------------------------------------------------------------


def edgecv_exports(args: argparse.Namespace) -> list[dict]:
    out, data = args.out, args.out / "data"
    onnx = out / yu.ONNX_STATIC
    if not onnx.exists():
        sys.exit(f"needs {onnx}: run the train stage first")
    common = ["--calib", yu._rel(data / "images" / "calib"), "--spec", yu._rel(yu.SPEC),
              "--eval", yu._rel(data / "images" / "val"), "--eval-samples", str(args.eval_samples),
              "--max-drop", str(args.max_drop), "--json"]
    runs = [("export", out / "edgecv_export",
             ["--to", "tflite,onnx,openvino", "--quant", "none,int8"]),
            ("export_int8io", out / "edgecv_export_int8io", ["--to", "tflite", "--quant", "int8", "--io-type", "int8"]),
            # pure PTQ, full integer: what the TFLite int8 is before any layer goes back to float
            ("export_int8io_nofallback", out / "edgecv_export_int8io_nofallback",
             ["--to", "tflite", "--quant", "int8", "--io-type", "int8", "--no-fallback"]),
            ("export_nofallback", out / "edgecv_export_nofallback",
             ["--to", "tflite,onnx,openvino", "--quant", "int8", "--no-fallback"]),
            # cut before the DFL: the whole model int8 (Edge TPU), the box decoding in edgecv's yolo_dfl decoder
            ("export_cut", out / "edgecv_export_cut",
             ["--to", "tflite,onnx,openvino", "--quant", "none,int8", "--io-type", "int8", "--cut-decode"]),
            # what `edgecv optimize --device coral-edgetpu` builds: cut, full integer, no float fallback
            ("export_cut_int8io_nofallback", out / "edgecv_export_cut_int8io_nofallback",
             ["--to", "tflite", "--quant", "int8", "--io-type", "int8", "--cut-decode", "--no-fallback"])]
    previous = out / "edgecv_int8_steps.json"
    steps: list[dict] = json.loads(previous.read_text()) if args.reuse_export and previous.exists() else []
    for name, folder, argv in runs:
        if args.reuse_export and (folder / "report.json").exists():
            log(f"{name}: reusing {folder} (--reuse-export)")
            continue
        steps = [s for s in steps if s["step"] != name]
        shutil.rmtree(folder, ignore_errors=True)
        yu.edgecv_step(steps, out / "logs", name,
                       ["export", yu._rel(onnx), *argv, *common, "--out", yu._rel(folder)], timeout=args.export_timeout)
    for s in steps:
        s.pop("stdout", None)
    (out / "edgecv_int8_steps.json").write_text(json.dumps(steps, indent=2))
    return steps


# -- scoring (project venv) --------------------------------------------------------------------------------


def held_out(count: int):  # type: ignore[no-untyped-def]
    """The val split's frames (RGB) and truth, regenerated exactly as write_dataset wrote them."""
    from edgecv.scenes import CLASSES, SceneOptions, scene_frames

    frames, truth = scene_frames(count, seed=yu.SEEDS["val"], options=SceneOptions(size=yu.FRAME_SIZE))
    return frames, truth, list(CLASSES)


def spec_for(path: Path, frame) -> Path | None:  # type: ignore[no-untyped-def]
    """None (the manifest's spec) for an artifact edgecv cut before its box decoding (``--cut-decode``: its
    manifest names the yolo_dfl decoder); else benchmarks/yolov8n-scenes-litert.yaml when the model's boxes are
    normalized to [0, 1] (its largest output on a frame is below 2: scores are at most 1, pixel boxes reach tens
    to hundreds), else yolov8n-scenes.yaml."""
    import numpy as np

    from edgecv.detection import Detector

    manifest = path.with_name(path.name + ".json")
    if manifest.exists() and (json.loads(manifest.read_text()).get("detector") or {}).get("decoder") == "yolo_dfl":
        return None

    det = Detector(path, spec=yu.SPEC, threads=2)
    x, _ = det.prepare(frame)
    top = max(float(np.abs(o).max()) for o in det.infer(x))
    return yu.SPEC_NORMALIZED if top < 2 else yu.SPEC


def score_one(path: Path, frames, truth, labels: list[str]) -> dict:  # type: ignore[no-untyped-def]
    from edgecv.detection import Detector
    from edgecv.detection.evaluate import evaluate_detections
    from edgecv.detection.frames import FrameOptions

    spec = spec_for(path, frames[0])
    det = Detector(path, spec=spec, score_threshold=0.001, options=FrameOptions(resize="letterbox"), threads=2)
    start = time.perf_counter()
    preds = [det.detect(f) for f in frames]
    seconds = time.perf_counter() - start
    m = evaluate_detections(truth, preds, labels=labels)
    return {"spec": yu._rel(spec) if spec is not None else "manifest (yolo_dfl)", "map50": round(m.map50, 4), "map50_95": round(m.map, 4),
            "predictions": m.pred, "score_seconds": round(seconds, 1),
            "per_class_ap": {v["name"]: (round(v["ap"], 4) if v["ap"] is not None else None)
                             for v in m.per_class.values()}}


def edge_tpu_ops(path: Path) -> str:
    """``mapped/total`` ops of a TFLite file on the Edge TPU, as ``edgecv devices check`` counts them by Coral's
    op list (ops after the first one that does not map run on the CPU)."""
    from edgecv.compat import check_artifact
    from edgecv.devices import load_profile

    report = check_artifact(path, load_profile("coral-edgetpu"))
    return f"{report.accelerator_ops}/{report.ops}"


def bench_p50(path: Path, runs: int) -> float | None:
    proc = subprocess.run([sys.executable, "-m", "edgecv", "bench", yu._rel(path), "--runs", str(runs), "--json"],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    doc = yu._json_tail(proc.stdout)
    rows = doc if isinstance(doc, list) else [doc] if isinstance(doc, dict) else []
    values = [r.get("p50_ms") for r in rows if isinstance(r, dict) and r.get("p50_ms") is not None]
    return round(float(values[0]), 2) if values else None


def size_of(path: Path) -> int:
    if path.suffix == ".xml":
        return path.stat().st_size + path.with_suffix(".bin").stat().st_size
    return path.stat().st_size


def edgecv_artifacts(out: Path) -> list[dict]:
    """Every model file edgecv's two exports wrote (passed and failed), labelled from their report.json."""
    rows = []
    for folder, io_of, tag in (("edgecv_export", "float", ""), ("edgecv_export_int8io", "int8", "_int8io"),
                               ("edgecv_export_int8io_nofallback", "int8", "_int8io_nofallback"),
                               ("edgecv_export_nofallback", "float", "_nofallback"),
                               ("edgecv_export_cut", "int8 tflite", "_cut"),
                               ("edgecv_export_cut_int8io_nofallback", "int8", "_cut_int8io_nofallback")):
        root = out / folder
        report = root / "report.json"
        artifacts = json.loads(report.read_text()).get("artifacts", []) if report.exists() else []
        by_name = {Path(a["path"]).name: a for a in artifacts if a.get("path")}
        for path in sorted(root.glob("*")) + sorted((root / "_failed").glob("*")):
            if path.suffix not in FORMAT_OF:
                continue
            a = by_name.get(path.name, {})
            fmt = FORMAT_OF[path.suffix]
            precision = a.get("precision") or ("int8" if "int8" in path.name else "fp32")
            precision = "fp32" if precision in ("none", "float32", "fp32") else precision
            # "int8 tflite": --io-type int8 applies to the int8 TFLite only; ONNX and OpenVINO keep float I/O
            io = ("int8" if fmt == "tflite" and precision == "int8" else "float") if io_of == "int8 tflite" else io_of
            failed = path.parent.name == "_failed"
            fb = a.get("fallback")
            note = "failed gate (_failed/)" if failed else ""
            if fb:  # the artifact kept is the last fallback build: its layers in float
                note = (note + "; " if note else "") + f"{len(fb.get('kept') or [])} layers kept in float"
            rows.append({"key": f"ec_{fmt}_{precision}{tag}" + ("_failed" if failed else ""),
                         "path": path, "made_by": "edgecv", "format": fmt, "precision": precision, "io": io,
                         "ref": f"ec_{fmt}_fp32" if precision != "fp32" or tag == "_cut" else None, "status": a.get("status"),
                         "gate_drop_points": a.get("drop_points"), "export_p50_ms": a.get("p50_ms"), "note": note})
    return rows


def score_stage(args: argparse.Namespace) -> dict:
    out = args.out
    rows = [{"key": k, "path": out / f, "made_by": "Ultralytics", "format": fmt, "precision": prec, "io": io,
             "ref": ref, "note": ""} for k, f, fmt, prec, io, ref in ULTRALYTICS]
    rows += edgecv_artifacts(out)
    frames, truth, labels = held_out(args.val_frames)
    log(f"scoring on {len(frames)} held-out frames, {sum(len(t) for t in truth)} objects")
    for r in rows:
        path = r["path"]
        if not path.exists():
            r["error"] = "not written"
            log(f"{r['key']}: {path} not written")
            continue
        r["size_bytes"] = size_of(path)
        try:
            if r["format"].startswith("tflite") and r["precision"] == "int8":
                r["edge_tpu"] = edge_tpu_ops(path)
            r.update(score_one(path, frames, truth, labels))
            if not args.no_bench:
                r["p50_ms"] = bench_p50(path, args.bench_runs)
        except Exception as exc:  # a row that cannot be scored says why; the others still are
            r["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        log(f"{r['key']}: {({k: r.get(k) for k in ('map50', 'map50_95', 'p50_ms', 'error')})}")
    by_key = {r["key"]: r for r in rows}
    onnx_ref = by_key["ul_onnx_fp32"]
    for r in rows:
        for ref_key, name in ((r.get("ref"), "delta"), ("ul_onnx_fp32", "delta_vs_onnx_fp32")):
            ref = by_key.get(ref_key.removesuffix("_nofallback")) if ref_key else None
            if ref is not None and "map50_95" in r and "map50_95" in ref:
                r[name] = {"map50_95": round(100 * (r["map50_95"] - ref["map50_95"]), 2),
                           "map50": round(100 * (r["map50"] - ref["map50"]), 2)}
        r["path"] = yu._rel(r["path"])
    doc = {"held_out_frames": len(frames), "objects": int(sum(len(t) for t in truth)), "aim_points": args.aim,
           "onnx_fp32": {k: onnx_ref.get(k) for k in ("map50", "map50_95")}, "rows": rows,
           "verdicts": verdicts(rows, args.aim)}
    for name in ("ultralytics.json", "ultralytics_int8.json", "edgecv_int8_steps.json"):
        if (out / name).exists():
            doc[name.removesuffix(".json")] = json.loads((out / name).read_text())
    (out / "yolo_int8.json").write_text(json.dumps(doc, indent=2, default=str))
    text = table(rows, Path(yu._rel(out))) + "\n\n" + "\n".join(doc["verdicts"])
    (out / "yolo_int8.md").write_text(text + "\n")
    print(text)
    return doc


def verdicts(rows: list[dict], aim: float) -> list[str]:
    """The issue's aims, one line each: edgecv int8 within ``aim`` points of its fp32 in every format (the
    artifacts that passed the gate), and its loss against Ultralytics' int8 loss of the same format."""
    lines = []
    ok = [r for r in rows if r["made_by"] == "edgecv" and r["precision"] == "int8"]
    ul = [r for r in rows if r["made_by"] == "Ultralytics" and r["precision"] == "int8" and "delta" in r]
    for r in ok:
        if "delta" not in r:
            lines.append(f"{r['key']}: not scored ({r.get('error', 'no fp32 reference')})")
            continue
        d = r["delta"]["map50_95"]
        within = "within" if d >= -aim else "NOT within"
        same = [u for u in ul if u["format"].split()[0] == r["format"] and (u["io"] == r["io"] or r["io"] == "float")]
        vs = "; ".join(f"Ultralytics {u['key']} {u['delta']['map50_95']:+.2f}" for u in same)
        gate = " (failed edgecv's own gate)" if "_failed" in r["key"] else ""
        lines.append(f"{r['key']}{gate}: {d:+.2f} mAP@[.5:.95] points vs edgecv fp32 {r['format']} "
                     f"({r['delta']['map50']:+.2f} mAP@0.5): {within} {aim}; "
                     f"{vs or 'no Ultralytics int8 of this format scored'}")
    return lines


def table(rows: list[dict], out: Path) -> str:
    def num(v, fmt="{:.4f}"):  # type: ignore[no-untyped-def]
        return fmt.format(v) if isinstance(v, (int, float)) else "-"

    head = ["artifact", "made by", "format", "precision (I/O)", "size MB", "mAP@0.5", "mAP@[.5:.95]",
            "Δ fp32 pts (.5:.95 / .5)", "Δ ONNX fp32 pts", "p50 ms", "Edge TPU ops", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        d, do = r.get("delta"), r.get("delta_vs_onnx_fp32")
        delta = f"{d['map50_95']:+.2f} / {d['map50']:+.2f}" if d else "-"
        delta_onnx = f"{do['map50_95']:+.2f} / {do['map50']:+.2f}" if do else "-"
        note = r.get("error") or r.get("note") or ""
        if r.get("gate_drop_points") is not None:
            note = f"gate drop {r['gate_drop_points']:.1f}; " + note
        size = num(r.get("size_bytes", 0) / 1e6 if r.get("size_bytes") else None, "{:.2f}")
        name = str(Path(r["path"]).relative_to(out)) if Path(r["path"]).is_relative_to(out) else r["path"]
        lines.append("| " + " | ".join([name, r["made_by"], r["format"], f"{r['precision']} ({r['io']})",
                                         size, num(r.get("map50")), num(r.get("map50_95")), delta, delta_onnx,
                                         num(r.get("p50_ms"), "{:.1f}"), r.get("edge_tpu") or "-",
                                         note.replace("|", "/")]) + " |")
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", default="all", choices=["all", *STAGES])
    p.add_argument("--setup", action="store_true", help="make the YOLO venv with its TFLite and int8 packages")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "yolo_int8")
    p.add_argument("--train-frames", type=int, default=1500)
    p.add_argument("--val-frames", type=int, default=300)
    p.add_argument("--calib-frames", type=int, default=200)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-samples", type=int, default=100, help="edgecv export's --eval-samples (its gate)")
    p.add_argument("--max-drop", type=float, default=1.0, help="edgecv export's --max-drop (its gate, points)")
    p.add_argument("--export-timeout", type=float, default=3600)
    p.add_argument("--reuse-export", action="store_true", help="edgecv stage: keep the exports OUT already holds")
    p.add_argument("--aim", type=float, default=1.0, help="mAP points edgecv int8 may lose against fp32")
    p.add_argument("--no-bench", action="store_true", help="skip edgecv bench p50 of each artifact")
    p.add_argument("--bench-runs", type=int, default=30)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    if args.setup:
        for flag, packages, fresh in (("setup", yu.INSTALL, True), ("setup_tflite", yu.INSTALL_TFLITE, False),
                                      ("setup_int8", yu.INSTALL_INT8, False)):
            yu.setup(packages, fresh=fresh)
    stages = STAGES if args.stage == "all" else (args.stage,)
    if "data" in stages:
        counts = {"train": args.train_frames, "val": args.val_frames, "calib": args.calib_frames}
        log(f"dataset: {yu.write_dataset(args.out / 'data', counts)}")
    if "train" in stages or "ultralytics" in stages:
        yu.check_venv()
    if "train" in stages and run_ultralytics(args, "_ultralytics") != 0:
        sys.exit("Ultralytics training failed: see its log above")
    if "ultralytics" in stages:
        run_ultralytics(args, "_int8")
    if "edgecv" in stages:
        edgecv_exports(args)
    if "score" in stages:
        score_stage(args)


if __name__ == "__main__":
    main()
