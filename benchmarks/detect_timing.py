"""Detector time per frame, split into preprocess / inference / postprocess, for each format; int8 fidelity;
NMS speed against OpenCV.

    .venv/bin/python benchmarks/detect_timing.py [--frames 100] [--resize stretch] [--threads N]
                                                           [--cache DIR] [--json]

Frames: ``--frames`` evenly spaced frames of ../shared/data/video/vtest.avi (768x576 BGR, as OpenCV decodes
them), each run through :class:`edgecv.detection.detector.Detector` after 5 untimed warm-up frames.

1. Timing, median ms per frame of each stage (and of the per-frame total), for:
   - BlazeFace short-range: the fp32 .tflite from shared data, and its ONNX and OpenVINO exports, fp32 and
     int8 (``edgecv.converters.export.export(..., quant="int8")``, calibrated on 200 other vtest frames prepared
     exactly as the detector prepares them; the export's own gate and float fallback as they come). The
     exports are cached in ``--cache`` (default: a folder in the system temp dir) and reused;
   - SSD MobileNet v1 COCO, the quantized .tflite as shipped (uint8 input, raw pixels; labelmap.txt);
   - the built-in scene detector, when converters/assets/scene_detector.keras exists (see the HOOK below).
2. Fidelity of int8 BlazeFace against the fp32 .tflite on the same frames: COCO mAP (pycocotools) with the
   fp32 detections as ground truth and the int8 detections (every score down to 0.01) as predictions; and
   detections per frame of each. vtest is a street seen from afar: at the spec's threshold (0.5) BlazeFace
   finds almost no face in it, so the table also gives the figures with ground truth at score 0.1. The
   golden face (blazeface_golden/sergey.png) is added: its IoU with the fp32 face, and its score.
3. NMS on 10,000 random boxes (hard, class-agnostic, IoU 0.5): edgecv's ``nms`` against
   ``cv2.dnn.NMSBoxes`` in the same run, median of repeats taken in alternation, and whether they keep
   the same boxes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import REPO, SHARED_DATA, shared_model

from edgecv.tables import fmt_float, render
from edgecv.detection import Detections, FrameOptions, load_spec, nms
from edgecv.detection.detector import Detector
from edgecv.detection.frames import resize_frame
from edgecv.manifest import Preprocess
from edgecv.model import load

VIDEO = SHARED_DATA / "video" / "vtest.avi"
BLAZEFACE = "face_detection_short_range.tflite"
SSD = "ssd_mobilenet_v1_coco_quant/detect.tflite"
CALIB_FRAMES = 200
WARMUP = 5
BLOCK = 10  # frames a model runs before the next one takes its turn
LOW_SCORE = 0.1  # the second ground-truth threshold of the fidelity table
PRED_SCORE = 0.01  # predictions scored down to here, as COCO evaluation expects

# --- HOOK: the built-in detector ------------------------------------------------------------------------
# When converters/assets/scene_detector.keras (trained by converters/builtin_detector.py) and its spec
# edgecv/detection/specs/scene-detector.yaml exist, it is exported to every format (fp32) and timed on the
# same frames as the others. Pixels / 255 in, as edgecv.converters.builtin_detector.PREPROCESS says.
SCENE_KERAS = REPO / "converters" / "assets" / "scene_detector.keras"
SCENE_SPEC = "scene-detector"
SCENE_PREPROCESS = Preprocess(layout="NHWC", color="RGB", mean=(0.0,), std=(255.0,))
# ----------------------------------------------------------------------------------------------------------


def read_frames(indices: set[int]) -> dict[int, np.ndarray]:
    """The vtest frames at ``indices`` (BGR), read in one pass."""
    import cv2

    cap = cv2.VideoCapture(str(VIDEO))
    out, k = {}, 0
    while len(out) < len(indices):
        ok, frame = cap.read()
        if not ok:
            break
        if k in indices:
            out[k] = frame
        k += 1
    cap.release()
    return out


def split_frames(count: int, total: int = 795) -> tuple[list[int], list[int]]:
    """``count`` evenly spaced frames to time and score, and CALIB_FRAMES evenly spaced others to calibrate."""
    timed = sorted(set(np.round(np.linspace(0, total - 1, count)).astype(int).tolist()))
    rest = np.setdiff1d(np.arange(total), timed)
    calib = sorted(set(rest[np.round(np.linspace(0, len(rest) - 1, CALIB_FRAMES)).astype(int)].tolist()))
    return timed, calib


# -- artifacts --------------------------------------------------------------------------------------------


def blazeface_exports(cache: Path, calib: list[np.ndarray], resize: str, key: str) -> list[dict]:
    """fp32 and int8 ONNX and OpenVINO exports of BlazeFace (reused from ``cache`` when present): int8 as
    export makes it by default (accuracy gate, float fallback), and plain int8 (no fallback)."""
    from edgecv.converters.export import ExportOptions, export
    from edgecv.converters.quant import QuantOptions

    folder = cache / f"blazeface_{resize}_{key}"
    listing = folder / "artifacts.json"
    if listing.is_file():
        found = json.loads(listing.read_text())
        if all(Path(a["path"]).exists() for a in found):
            return found
    folder.mkdir(parents=True, exist_ok=True)
    # Calibration frames as the detector prepares them: resized (same mode) to RGB 128x128.
    pixels = np.stack([resize_frame(f, (128, 128), mode=resize, frame_color="BGR")[0] for f in calib])
    np.save(folder / "calib.npy", pixels)
    spec = load_spec("blazeface-short-range")
    found = []
    for label, quant, options in (
        ("", "fp32,int8", ExportOptions(bench_runs=0)),
        (" plain", "int8", ExportOptions(bench_runs=0, quant=QuantOptions(fallback=False))),
    ):
        start = time.perf_counter()
        out = folder / ("plain" if label else "default")
        report = export(shared_model(BLAZEFACE), to="onnx,openvino", quant=quant, calib=folder / "calib.npy",
                        detector=spec, preprocess=spec.preprocess, out=out, name="blazeface", options=options)
        seconds = round(time.perf_counter() - start, 1)
        found += [{"format": a.format, "precision": a.precision, "label": f"{a.precision}{label}", "path": str(a.path),
                   "status": a.status, "drop_points": a.drop, "float_layers": len((a.fallback or {}).get("kept", [])),
                   "export_s": seconds} for a in report.artifacts if a.path is not None]
    listing.write_text(json.dumps(found, indent=2))
    return found


def scene_detector_exports(cache: Path) -> tuple[list[dict], str]:
    """The HOOK: fp32 exports of the built-in detector, or ([], why it is skipped)."""
    if not SCENE_KERAS.is_file():
        return [], f"skipped the built-in scene detector: {SCENE_KERAS.relative_to(REPO)} does not exist yet"
    from edgecv.errors import EdgeCVError

    try:
        spec = load_spec(SCENE_SPEC)
    except EdgeCVError as exc:
        return [], f"skipped the built-in scene detector: {exc}"
    from edgecv.converters.export import ExportOptions, export

    folder = cache / "scene_detector"
    report = export(SCENE_KERAS, to="tflite,onnx,openvino", quant="fp32", detector=spec,
                    preprocess=spec.preprocess or SCENE_PREPROCESS, out=folder, name="scene_detector",
                    options=ExportOptions(bench_runs=0))
    rows = [{"format": a.format, "precision": a.precision, "path": str(a.path), "status": a.status}
            for a in report.artifacts if a.path is not None]
    return rows, ""


# -- timing -----------------------------------------------------------------------------------------------


def time_detectors(models: list[tuple], frames: list[np.ndarray], *, resize: str, threads: int | None) -> list[dict]:
    """Each model's stage times on ``frames``. The models take turns in blocks of BLOCK frames, so that
    the load of a busy machine falls on all of them alike, while a runtime's worker threads still spinning
    after another runtime's last run touch only the first frame of a block."""
    detectors = []
    for name, path, spec, labels in models:
        model = load(path, float_io=True, threads=threads)
        detectors.append(Detector(model, spec=spec, labels=labels, options=FrameOptions(resize=resize, frame_color="BGR")))
    for d in detectors:
        for f in frames[:WARMUP]:
            d.detect(f)
        d.timings.reset()
    counts = [0] * len(detectors)
    for start in range(0, len(frames), BLOCK):
        for k, d in enumerate(detectors):
            for f in frames[start : start + BLOCK]:
                counts[k] += len(d.detect(f))
    rows = []
    for (name, path, _, _), d, n in zip(models, detectors, counts):
        med, p90 = d.timings.median(), d.timings.percentile(90)
        rows.append({"model": name, "format": d.model.format, "backend": d.model.backend, "path": str(path),
                     "input": "x".join(map(str, d.input_size)), "frames": len(frames),
                     "median_ms": {k: round(v, 3) for k, v in med.items()}, "p90_total_ms": round(p90["total_ms"], 3),
                     "detections_per_frame": round(n / len(frames), 2)})
    return rows


def timing_table(rows: list[dict]) -> str:
    table = []
    for r in rows:
        m = r["median_ms"]
        table.append([r["model"], r["backend"], r["input"], f"{m['preprocess_ms']:.2f}", f"{m['inference_ms']:.2f}",
                      f"{m['postprocess_ms']:.2f}", f"{m['total_ms']:.2f}", f"{r['p90_total_ms']:.2f}",
                      f"{r['detections_per_frame']:.2f}"])
    head = ["model", "backend", "input", "preprocess", "inference", "postprocess", "total", "total p90", "det/frame"]
    return render(head, table, align="lllrrrrrr")


# -- fidelity ---------------------------------------------------------------------------------------------


def _detect_all(model, spec, frames, resize) -> list[Detections]:
    det = Detector(model, spec=spec, options=FrameOptions(resize=resize, frame_color="BGR"))
    return [det.detect(f) for f in frames]


def _golden_face(model, spec, resize) -> Detections:
    import cv2

    image = cv2.imread(str(SHARED_DATA / "models" / "blazeface_golden" / "sergey.png"))
    return Detector(model, spec=spec, options=FrameOptions(resize=resize, frame_color="BGR")).detect(image)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    lo, hi = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    return inter / (float(np.prod(a[2:] - a[:2])) + float(np.prod(b[2:] - b[:2])) - inter)


def fidelity(reference: Path, int8: list[tuple[str, Path]], frames: list[np.ndarray], resize: str) -> list[dict]:
    """mAP of each int8 model's detections with the fp32 model's as ground truth, at two GT thresholds."""
    from edgecv.detection.evaluate import evaluate_detections

    spec = load_spec("blazeface-short-range")
    ref_model = load(reference, float_io=True)
    thresholds = (spec.score_threshold, LOW_SCORE)
    truth = {t: _detect_all(ref_model, dataclasses.replace(spec, score_threshold=t), frames, resize) for t in thresholds}
    ref_face = _golden_face(ref_model, spec, resize)
    rows = []
    for name, path in int8:
        model = load(path, float_io=True)
        preds = _detect_all(model, dataclasses.replace(spec, score_threshold=PRED_SCORE), frames, resize)
        face = _golden_face(model, spec, resize)
        row = {"model": name, "fp32_golden_face_score": float(ref_face.confidence[0]) if len(ref_face) else None,
               "golden_face_score": float(face.confidence[0]) if len(face) else None,
               "golden_face_iou": round(_iou(face.xyxy[0], ref_face.xyxy[0]), 4) if len(face) and len(ref_face) else None}
        for t in thresholds:
            gt = truth[t]
            mine = [p[p.confidence >= t] for p in preds]
            n_gt = sum(len(d) for d in gt)
            m = evaluate_detections(gt, preds, labels=["face"]) if n_gt else None
            row[f"at_{t:g}"] = {"fp32_per_frame": round(n_gt / len(frames), 3),
                                "int8_per_frame": round(sum(len(d) for d in mine) / len(frames), 3),
                                "map": None if m is None else round(m.map, 4),
                                "map50": None if m is None else round(m.map50, 4)}
        rows.append(row)
    return rows


def fidelity_table(rows: list[dict]) -> str:
    table = []
    for r in rows:
        for key, v in ((k, v) for k, v in r.items() if k.startswith("at_")):
            table.append([r["model"], key[3:], f"{v['fp32_per_frame']:.2f}", f"{v['int8_per_frame']:.2f}",
                          fmt_float(v["map"], ".3f"), fmt_float(v["map50"], ".3f"),
                          fmt_float(r["golden_face_iou"], ".3f"), fmt_float(r["golden_face_score"], ".3f")])
    head = ["int8 model", "GT score >=", "fp32 det/frame", "int8 det/frame", "mAP", "mAP50", "golden IoU",
            "golden score"]
    return render(head, table, align="llrrrrrr")


# -- NMS --------------------------------------------------------------------------------------------------


def nms_compare(n: int = 10_000, repeats: int = 9, iou: float = 0.5, seed: int = 0) -> dict:
    import cv2

    rng = np.random.default_rng(seed)
    centre = rng.uniform(0, 1000, (n, 2))
    size = rng.uniform(10, 100, (n, 2))
    xyxy = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    det = Detections(xyxy, scores, np.zeros(n, np.int64), data={"index": np.arange(n)})
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1).astype(np.float64)  # Rect2d
    score_list = scores.tolist()

    def ours():
        return nms(det, iou_threshold=iou, class_agnostic=True, method="hard")

    def opencv():
        return cv2.dnn.NMSBoxes(xywh, score_list, 0.0, iou)

    times = {"edgecv": [], "opencv": []}
    for _ in range(repeats):  # alternate, so machine noise hits both alike
        for name, fn in (("edgecv", ours), ("opencv", opencv)):
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    kept_ours = set(ours().data["index"].tolist())
    kept_cv = set(np.asarray(opencv()).ravel().tolist())
    return {"boxes": n, "iou_threshold": iou, "repeats": repeats,
            "edgecv_ms": round(statistics.median(times["edgecv"]), 3),
            "opencv_ms": round(statistics.median(times["opencv"]), 3),
            "edgecv_kept": len(kept_ours), "opencv_kept": len(kept_cv), "same_boxes": kept_ours == kept_cv,
            "only_edgecv": len(kept_ours - kept_cv), "only_opencv": len(kept_cv - kept_ours),
            "opencv_version": cv2.__version__}


# -- main -------------------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=100, help="vtest frames to time and score (default 100)")
    p.add_argument("--resize", choices=("stretch", "letterbox"), default="stretch", help="default stretch")
    p.add_argument("--threads", type=int, help="runtime threads (default: every core)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "edgecv-detect-timing",
                   help="where exported artifacts are kept and reused")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not VIDEO.is_file():
        raise SystemExit(f"needs {VIDEO} (the shared data folder beside the checkout)")

    timed_idx, calib_idx = split_frames(args.frames)
    video = read_frames(set(timed_idx) | set(calib_idx))
    frames = [video[i] for i in timed_idx]
    calib = [video[i] for i in calib_idx]
    del video

    # The calibration frames depend on --frames (they are the others), hence the cache key.
    exports = blazeface_exports(args.cache, calib, args.resize, key=f"timed{args.frames}")
    face_spec = load_spec("blazeface-short-range")
    models = [("blazeface fp32 (source)", shared_model(BLAZEFACE), face_spec, None)]
    models += [(f"blazeface {a['label']}", Path(a["path"]), face_spec, None) for a in exports]
    ssd_labels = (shared_model(SSD).parent / "labelmap.txt").read_text().splitlines()
    models.append(("ssd-mobilenet uint8 (as shipped)", shared_model(SSD), load_spec("ssd-mobilenet-v1-coco"), ssd_labels))
    scene, scene_note = scene_detector_exports(args.cache)
    if scene:
        models += [(f"scene-detector {a['precision']}", Path(a["path"]), load_spec(SCENE_SPEC), None) for a in scene]

    timing = time_detectors(models, frames, resize=args.resize, threads=args.threads)
    int8 = [(f"blazeface {a['label']} {a['format']}", Path(a["path"])) for a in exports if a["precision"] == "int8"]
    fid = fidelity(shared_model(BLAZEFACE), int8, frames, args.resize)
    nms_result = nms_compare()

    result = {"frames": len(frames), "video": str(VIDEO), "resize": args.resize, "threads": args.threads,
              "exports": exports, "timing": timing, "fidelity": fid, "nms": nms_result,
              "scene_detector": scene_note or "included"}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{len(frames)} frames of vtest.avi (768x576), resize {args.resize}, threads {args.threads or 'all'}; "
          f"median ms per frame after {WARMUP} warm-up frames\n")
    print(timing_table(timing))
    statuses = "; ".join(f"{a['format']} {a['label']} {a['status']}"
                         + (f" ({a['float_layers']} float layers)" if a.get("float_layers") else "") for a in exports)
    print(f"\nexports, as the gate of edgecv.converters.export judged them: {statuses}")
    if scene_note:
        print(scene_note)
    print(f"\nint8 BlazeFace against the fp32 .tflite on the same frames (predictions scored down to {PRED_SCORE})\n")
    print(fidelity_table(fid))
    if fid:
        print(f"golden face (sergey.png): fp32 score {fmt_float(fid[0]['fp32_golden_face_score'], '.3f')}; "
              "'-' where int8 finds no face at the spec's 0.5")
    n = nms_result
    print(f"\nNMS on {n['boxes']} random boxes, hard, class-agnostic, IoU {n['iou_threshold']}, median of {n['repeats']}\n")
    print(render(["implementation", "ms", "kept"],
                 [["edgecv nms", f"{n['edgecv_ms']:.2f}", str(n["edgecv_kept"])],
                  [f"cv2.dnn.NMSBoxes ({n['opencv_version']})", f"{n['opencv_ms']:.2f}", str(n["opencv_kept"])]],
                 align="lrr"))
    same = "yes" if n["same_boxes"] else f"no ({n['only_edgecv']} only edgecv, {n['only_opencv']} only OpenCV)"
    print(f"same boxes kept: {same}")


if __name__ == "__main__":
    main()
