"""BlazeFace (float .tflite) to int8 ONNX and OpenVINO: each tool's defaults against edgecv, side by side.

    .venv/bin/python benchmarks/ptq_blazeface.py [--out DIR] [--max-drop 10] [--json]

The failure this reproduces: calibrated on street frames with no face in them, int8 BlazeFace stops
finding faces. Data:
- calibration sets, each of 300:
  - ``vtest``: frames of ../shared/data/video/vtest.avi, evenly spaced (what edgecv picks from the video);
  - ``crops``: head-and-shoulders crops of the people the shared SSD MobileNet finds in every 8th vtest
    frame (small, blurred faces);
  - ``faces``: face images made from matplotlib's sample portrait ``grace_hopper.jpg`` (installed with
    matplotlib): half close-ups, half pasted onto vtest backgrounds, with flips, rotation and lighting;
- eval set (the accuracy gate's): 200 other such face images (another seed), on which the float model
  finds 200 faces;
- golden: blazeface_golden/sergey.png, the face MediaPipe's own test expects. A different person, never
  used to calibrate or to choose layers.

Rows: each tool's defaults (``nncf.quantize``, ``quantize_static``), then edgecv's export (int8, float
fallback on, gated on detections against the float model on the eval set, ``--max-drop`` points), once
per calibration set. For each: the top face score on the golden image, anchors above 0.5 there, IoU of the
top face with the float model's, the gate's drop in points (F1 points lost plus mean score change of
matched detections, x100) on the eval set, score-output SQNR against float on 100 vtest frames not used
for calibration, size, latency p50 and the layers kept in float.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
from _common import SHARED_DATA, shared_model

from edgecv.converters.export import ExportOptions, export
from edgecv.converters.metrics import sqnr_db
from edgecv.converters.quant import QuantOptions
from edgecv.converters.report import write_report
from edgecv.bench import benchmark
from edgecv.tables import render
from edgecv.detection import load_spec, match_detections
from edgecv.manifest import Preprocess
from edgecv.model import load

SPEC = load_spec("blazeface-short-range")
PRE = Preprocess(mean=(127.5,), std=(127.5,))
SIZE = 128
VIDEO = SHARED_DATA / "video" / "vtest.avi"
CALIB_FRAMES = 300


def frames() -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(VIDEO))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    return np.stack(out)


def resize(rgb: np.ndarray, size: int = SIZE) -> np.ndarray:
    import cv2

    interp = cv2.INTER_AREA if min(rgb.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(rgb, (size, size), interpolation=interp)


def to_input(rgb: np.ndarray) -> np.ndarray:
    return ((resize(rgb).astype(np.float32) - 127.5) / 127.5)[None]


def person_crops(video: np.ndarray, every: int = 8, count: int = 300) -> np.ndarray:
    """Head-and-shoulders crops of the people SSD MobileNet finds, as 128x128 uint8 RGB, evenly chosen."""
    import cv2

    ssd = load(shared_model("ssd_mobilenet_v1_coco_quant/detect.tflite"))
    spec = load_spec("ssd-mobilenet-v1-coco")
    crops = []
    h, w = video.shape[1:3]
    for fi in range(0, len(video), every):
        dets = spec.detect(ssd.run(resize(video[fi], 300)[None]), input_size=(300, 300))
        padded = cv2.copyMakeBorder(video[fi], 200, 200, 200, 200, cv2.BORDER_REFLECT)
        for (x0, y0, x1, y1), cls in zip(dets.xyxy, dets.class_id):
            if int(cls) != 1:  # COCO person: labelmap line 1 (line 0 is the background placeholder)
                continue
            x0, x1, y0, y1 = x0 * w / 300, x1 * w / 300, y0 * h / 300, y1 * h / 300
            side = max(0.45 * (y1 - y0), 16.0)
            cx, cy = (x0 + x1) / 2, y0 + 0.22 * (y1 - y0)
            xa, ya = int(cx - side / 2) + 200, int(cy - side / 2) + 200
            crops.append(resize(padded[ya : ya + int(side), xa : xa + int(side)]))
    return np.stack([crops[i] for i in np.linspace(0, len(crops) - 1, min(count, len(crops))).astype(int)])


def face_images(count: int, seed: int, video: np.ndarray) -> np.ndarray:
    """128x128 uint8 RGB images of matplotlib's sample portrait: even ones close-ups (the face fills 35-75%
    of the frame), odd ones the portrait pasted at 56-128 px onto a vtest background; flips, rotation
    (odd ones), brightness and contrast vary."""
    import cv2
    from matplotlib import cbook

    portrait = cv2.cvtColor(cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))), cv2.COLOR_BGR2RGB)
    rng = np.random.default_rng(seed)
    height, width = portrait.shape[:2]
    padded = cv2.copyMakeBorder(portrait, 400, 400, 400, 400, cv2.BORDER_REFLECT)
    out = []
    for k in range(count):
        if k % 2 == 0:  # close-up around the face (about 230 px wide, centred near (260, 250))
            side = int(230 / rng.uniform(0.35, 0.75))
            cx, cy = 660 + int(rng.integers(-30, 31)), 650 + int(rng.integers(-30, 31))
            image = resize(padded[cy - side // 2 : cy + side // 2, cx - side // 2 : cx + side // 2])
        else:
            side = int(min(height, width) * rng.uniform(0.55, 1.0))
            x0, y0 = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
            patch = portrait[y0 : y0 + side, x0 : x0 + side]
            turn = cv2.getRotationMatrix2D((side / 2, side / 2), rng.uniform(-12, 12), 1.0)
            patch = cv2.warpAffine(np.ascontiguousarray(patch), turn, (side, side), borderMode=cv2.BORDER_REFLECT)
            size = int(rng.uniform(56, 128))
            frame = video[rng.integers(len(video))]
            by, bx = int(rng.integers(0, frame.shape[0] - 300)), int(rng.integers(0, frame.shape[1] - 300))
            image = resize(frame[by : by + 300, bx : bx + 300]).copy()
            py, px = int(rng.integers(0, 128 - size + 1)), int(rng.integers(0, 128 - size + 1))
            image[py : py + size, px : px + size] = resize(patch, size)
        if rng.random() < 0.5:
            image = image[:, ::-1]
        gain, offset = rng.uniform(0.7, 1.3), rng.uniform(-30, 30)
        out.append(np.clip(image.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8))
    return np.stack(out)


def golden() -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(SHARED_DATA / "models" / "blazeface_golden" / "sergey.png"))
    return to_input(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


class Scorer:
    """Figures of one runnable (float inputs -> [regressors, classificators]) against the float model."""

    def __init__(self, float_run, eval_images: np.ndarray, fidelity_frames: list[np.ndarray]) -> None:
        self.float_run = float_run
        self.crops = [((c.astype(np.float32) - 127.5) / 127.5)[None] for c in eval_images]
        self.frames = fidelity_frames
        self.ref_dets = [self.detect(float_run(x)) for x in self.crops]
        self.ref_frames = [float_run(x) for x in self.frames]
        self.ref_face = self.detect(float_run(golden()))

    @staticmethod
    def detect(outputs):
        return SPEC.detect(outputs, input_size=(SIZE, SIZE))

    def score(self, run) -> dict:
        outs = run(golden())
        scores = 1 / (1 + np.exp(-np.clip(outs[_scores_index(outs)].ravel(), -100, 100)))
        face = self.detect(outs)
        iou = 0.0
        if len(face) and len(self.ref_face):
            iou = match_detections(face[np.array([0])], self.ref_face[np.array([0])], iou_threshold=0.0).mean_iou
        tp = fp = fn = 0
        moved = 0.0
        for x, ref in zip(self.crops, self.ref_dets):
            got = self.detect(run(x))
            m = match_detections(got, ref, iou_threshold=0.5)
            tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
            moved += float(np.abs(got.confidence[m.pairs[:, 0]] - ref.confidence[m.pairs[:, 1]]).sum()) if m.tp else 0.0
        got = [run(x) for x in self.frames]
        idx = _scores_index(got[0])
        sq = sqnr_db(np.concatenate([r[idx] for r in self.ref_frames]), np.concatenate([g[idx] for g in got]))
        return {"top_score": float(scores.max()), "anchors_over_0.5": int((scores > 0.5).sum()),
                "face_iou": round(float(iou), 3), "det_f1": 2 * tp / max(2 * tp + fp + fn, 1),
                "drop_points": round(100 * (1 - 2 * tp / max(2 * tp + fp + fn, 1)) + 100 * moved / max(tp, 1), 2),
                "score_sqnr_db": round(sq, 1)}


def _scores_index(outputs) -> int:
    return next(i for i, o in enumerate(outputs) if o.shape[-1] == 1)


def ordered(model):
    """A runnable whose outputs are in a fixed order: the one with 16 values per anchor first."""
    def run(x):
        outs = model.run([x if model.inputs[0].layout != "NCHW" else x.transpose(0, 3, 1, 2)])
        return sorted(outs, key=lambda o: -o.shape[-1])
    return run


def tool_defaults(fp32_onnx: Path, fp32_xml: Path, calib: list[np.ndarray], out: Path) -> dict[str, Path]:
    """nncf.quantize and quantize_static, each with its default settings."""
    import nncf
    import openvino as ov
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    out.mkdir(parents=True, exist_ok=True)
    core = ov.Core()
    ir = nncf.quantize(core.read_model(str(fp32_xml)), nncf.Dataset(calib), subset_size=len(calib))
    ov.save_model(ir, str(out / "nncf_defaults.xml"))

    import onnx

    name = onnx.load(str(fp32_onnx), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {name: x}

    quantize_static(str(fp32_onnx), str(out / "ort_defaults.onnx"), Reader())
    return {"openvino nncf defaults": out / "nncf_defaults.xml", "onnx quantize_static defaults": out / "ort_defaults.onnx"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--max-drop", type=float, default=5.0, help="edgecv's budget in the gate's points (mAP@0.5 against the float model's faces plus their mean signed score change; default 5)")
    p.add_argument("--rankings", action="store_true",
                   help="also compare the fallback's culprit rankings (error, clipping, leave-one-out) on the vtest calibration")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = args.out or Path(tempfile.mkdtemp(prefix="edgecv-blazeface-"))
    out.mkdir(parents=True, exist_ok=True)
    src = shared_model("face_detection_short_range.tflite")

    video = frames()
    calib_idx = np.round(np.linspace(0, len(video) - 1, CALIB_FRAMES)).astype(int)
    held_out = np.setdiff1d(np.arange(len(video)), calib_idx)
    fidelity = [to_input(video[i]) for i in held_out[np.linspace(0, len(held_out) - 1, 100).astype(int)]]
    np.save(out / "crops.npy", person_crops(video))
    np.save(out / "faces_calib.npy", face_images(CALIB_FRAMES, 1, video))
    eval_faces = face_images(200, 0, video)
    np.save(out / "faces_eval.npy", eval_faces)
    calib_sets = {"vtest": VIDEO, "crops": out / "crops.npy", "faces": out / "faces_calib.npy"}

    options = ExportOptions(bench_runs=0, quant=QuantOptions(max_drop=args.max_drop))
    runs = {}
    for label, calib in calib_sets.items():
        runs[label] = export(src, to="onnx,openvino", quant="fp32,int8", calib=calib, eval_data=out / "faces_eval.npy",
                             detector=SPEC, preprocess=PRE, out=out / f"edgecv_{label}", options=options)
        write_report(runs[label], runs[label].out)
    fp32 = {a.format: a.path for a in runs["vtest"].artifacts if a.precision == "fp32"}
    defaults = {}
    for label, inputs in (("vtest", [to_input(video[i]) for i in calib_idx]),
                          ("faces", [((x.astype(np.float32) - 127.5) / 127.5)[None] for x in np.load(out / "faces_calib.npy")])):
        made = tool_defaults(fp32["onnx"], fp32["openvino"], inputs, out / f"defaults_{label}")
        defaults.update({f"{name}, calib {label}": path for name, path in made.items()})

    scorer = Scorer(ordered(load(src)), eval_faces, fidelity)
    rows = [("float (source .tflite)", src, None)]
    rows += [(f"{fmt} fp32", path, None) for fmt, path in fp32.items()]
    rows += [(name, path, None) for name, path in defaults.items()]
    for label, report in runs.items():
        rows += [(f"{a.format} edgecv, calib {label}", a.path, a) for a in report.artifacts if a.precision == "int8"]
    table, results = [], []
    for name, path, artifact in rows:
        figures = scorer.score(ordered(load(path, float_io=True)))
        p50 = benchmark(path, runs=200, warmup=20, isolate=False).p50_ms
        fallback = (artifact.fallback or {}) if artifact else {}
        gate = "" if artifact is None else ("pass" if artifact.status == "passed" else "FAIL")
        results.append({"model": name, "path": str(path), **figures, "p50_ms": round(p50, 3), "size_bytes": _size(path),
                        "gate": gate, "float_layers": fallback.get("kept", []), "why": fallback.get("why", [])})
        table.append([name, f"{figures['top_score']:.3f}", str(figures["anchors_over_0.5"]), f"{figures['face_iou']:.2f}",
                      f"{figures['drop_points']:.1f}", f"{figures['score_sqnr_db']:.1f}", f"{_size(path) / 1024:.0f} KB",
                      f"{p50:.2f}", gate, str(len(fallback.get("kept", [])))])
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"eval: {len(eval_faces)} face images; fidelity: {len(fidelity)} held-out vtest frames; budget {args.max_drop} points\n")
    print(render(["model", "golden top", "n>0.5", "face IoU", "eval drop", "score SQNR", "size", "p50 ms", "gate", "float layers"],
                 table, align="lrrrrrrrlr"))
    for r in results:
        for w in r["why"]:
            print(f"  {r['model']}: kept {w['name']} ({w['op_type']}){' head' if w.get('head') else ''}, "
                  f"clip ratio {w.get('clip_ratio')}, clip SQNR {w.get('clip_db')} dB, layer SQNR {w['sqnr_db']} dB")
    if args.rankings:
        print("\n" + compare_rankings(src, out, options))
    print(f"\nartifacts and reports: {out}")


def compare_rankings(src: Path, out: Path, options: ExportOptions) -> str:
    """Which culprit ranking lets the fallback pass with the fewest float layers and builds."""
    from dataclasses import replace

    table = []
    for method in ("error", "clipping", "leave-one-out"):
        opts = replace(options, quant=replace(options.quant, fallback_ranking=method))
        report = export(src, to="onnx,openvino", quant="int8", calib=VIDEO, eval_data=out / "faces_eval.npy", detector=SPEC,
                        preprocess=PRE, out=out / f"ranking_{method}", options=opts)
        for a in report.artifacts:
            fb = a.fallback or {}
            table.append([a.format, method, "pass" if a.status == "passed" else "FAIL", f"{a.drop:.1f}" if a.drop is not None else "-",
                          str(len(fb.get("kept", []))), str(len(fb.get("attempts", []))), f"{fb.get('seconds', 0):.0f}",
                          ", ".join(fb.get("kept", []))[:70]])
    return render(["format", "ranking", "gate", "drop", "float layers", "builds", "s", "kept"], table, align="lllrrrrl")


def _size(path: Path) -> int:
    path = Path(path)
    return path.stat().st_size + (path.with_suffix(".bin").stat().st_size if path.suffix == ".xml" else 0)


if __name__ == "__main__":
    main()
