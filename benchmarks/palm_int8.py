"""MediaPipe's palm detector (float .tflite, from the corpus) to int8 ONNX, OpenVINO and TFLite with edgecv,
once per calibration set, gated on the palms it finds in hand photos.

    .venv/bin/python benchmarks/corpus.py --install     # puts palm_detection_lite.tflite into .corpus/
    .venv/bin/python benchmarks/palm_int8.py [--out DIR] [--max-drop 5] [--json]

Data (all made here from files Debian's ``opencv-doc`` installs; nothing downloaded):
- ``hands``: 64 images of 192x192 made from OpenCV's two real hand photos (``handSrc.jpg``, ``handDst.jpg``):
  random crops with the hand filling 35-90% of the frame, flips, rotation, brightness and contrast;
- ``street``: 40 frames of ``vtest.avi`` evenly spaced (people walking, no close-up hand);
- eval: 32 other such hand images (another seed), each one where the float model finds a palm with a
  confidence of 0.7 or more (:data:`CLEAR`).

Only two source photos: the eval images are new crops of the same two hands, so the figures say how int8
handles a close-up hand, not how it generalizes over hands. Rows: calibrated on ``hands``, on ``street``,
and on ``street`` with ``--calib-include-eval``. For each int8 artifact: the gate's drop (points of mAP@0.5
against the float model's palms plus their mean signed score change), the PTQ rung that passed (or the one the float fallback started from),
layers kept in float, latency p50, and whether the calibration check called the set unrepresentative.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from _common import REPO, SHARED_DATA, work_dir

MODEL = REPO / ".corpus" / "mediapipe" / "modules" / "palm_detection" / "palm_detection_lite.tflite"
HANDS = [Path("/usr/share/doc/opencv-doc/opencv4/html") / n for n in ("handSrc.jpg", "handDst.jpg")]
VIDEO = SHARED_DATA / "video" / "vtest.avi"
SIZE = 192
FORMATS = ("onnx", "openvino", "tflite")
# Eval images keep a palm the float model is sure of. With every palm found (threshold 0.5), 11 of 32 had a
# confidence of 0.51-0.61, and int8's score noise (about 0.1) flips those, whatever the quantizer does.
CLEAR = 0.7


def hand_images(count: int, seed: int) -> np.ndarray:
    """``count`` 192x192 uint8 RGB crops of the two hand photos, augmented."""
    import cv2

    photos = []
    for path in HANDS:
        bgr = cv2.imread(str(path))
        if bgr is None:
            raise SystemExit(f"needs {path} (apt-get install opencv-doc)")
        photos.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        photo = photos[k % len(photos)]
        h, w = photo.shape[:2]
        side = int(min(h, w) * rng.uniform(0.6, 1.0))
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        patch = np.ascontiguousarray(photo[y0 : y0 + side, x0 : x0 + side])
        turn = cv2.getRotationMatrix2D((side / 2, side / 2), rng.uniform(-20, 20), 1.0)
        patch = cv2.warpAffine(patch, turn, (side, side), borderMode=cv2.BORDER_REFLECT)
        image = cv2.resize(patch, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            image = image[:, ::-1]
        gain, offset = rng.uniform(0.7, 1.3), rng.uniform(-30, 30)
        out.append(np.clip(image.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8))
    return np.stack(out)


def street_frames(count: int) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(VIDEO))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    out = []
    for index in np.linspace(0, total - 1, count).astype(int):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = cap.read()
        if not ok:
            raise SystemExit(f"{VIDEO}: frame {index} unreadable")
        out.append(cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), (SIZE, SIZE), interpolation=cv2.INTER_AREA))
    cap.release()
    return np.stack(out)


def eval_hands(count: int, seed: int, spec) -> np.ndarray:
    """Hand images where the float model finds a palm with confidence :data:`CLEAR` or more (drawn until
    ``count`` are found)."""
    from edgecv.detection import Detector

    detector = Detector(MODEL, spec=spec)
    kept = []
    pool = hand_images(8 * count, seed)
    for image in pool:
        found = detector.detect(image)
        if len(found) > 0 and found.confidence.max() >= CLEAR:
            kept.append(image)
        if len(kept) == count:
            return np.stack(kept)
    raise SystemExit(f"the float palm model found palms in only {len(kept)} of {len(pool)} hand images")


def run(calib: Path, eval_path: Path, out: Path, max_drop: float, include_eval: bool, spec, pre) -> dict:
    from edgecv.converters.export import export

    started = time.perf_counter()
    report = export(MODEL, to=FORMATS, quant="int8", calib=calib, eval_data=eval_path, max_drop=max_drop,
                    out=out, detector=spec, preprocess=pre, calib_include_eval=include_eval)
    seconds = time.perf_counter() - started
    check = report.settings.get("calibration_check") or {}
    rows = []
    for a in report.artifacts:
        if a.precision != "int8":
            continue
        ladder, fallback = a.ladder or {}, a.fallback or {}
        rung = "base" if not ladder else ladder.get("chosen") or (f"float fallback on {ladder.get('best')}" if fallback else "none")
        rows.append({"format": a.format, "status": a.status, "drop": a.drop, "p50_ms": a.p50_ms,
                     "rung": rung,
                     "float_layers": len(fallback.get("kept", [])), "reason": a.reason})
    return {"seconds": round(seconds), "representative": check.get("representative"),
            "worst_ratio": check.get("worst_ratio"), "rows": rows}


def main() -> None:
    from edgecv.detection import load_spec
    from edgecv.manifest import Preprocess
    from edgecv.tables import render

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path)
    p.add_argument("--max-drop", type=float, default=5.0, help="budget in the gate's points: mAP@0.5 against the float model's palms plus their mean signed score change (default 5)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if not MODEL.is_file():
        raise SystemExit(f"needs {MODEL}: run .venv/bin/python benchmarks/corpus.py --install")
    logging.basicConfig(level=logging.WARNING)
    spec, pre = load_spec("palm-detection"), Preprocess(mean=(0.0,), std=(255.0,))
    results = {}
    with work_dir(args.out, "palm-int8-") as work:
        np.save(work / "hands_calib.npy", hand_images(64, seed=1))
        np.save(work / "street_calib.npy", street_frames(40))
        np.save(work / "hands_eval.npy", eval_hands(32, seed=2, spec=spec))
        for name, calib, include in (("hands", "hands_calib.npy", False), ("street", "street_calib.npy", False),
                                     ("street + eval", "street_calib.npy", True)):
            results[name] = run(work / calib, work / "hands_eval.npy", work / name.replace(" + ", "_"),
                                args.max_drop, include, spec, pre)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    table = []
    for name, r in results.items():
        for row in r["rows"]:
            table.append([name, row["format"], row["status"], _num(row["drop"]), row["rung"] or "-",
                          row["float_layers"], _num(row["p50_ms"], 2),
                          {True: "yes", False: "no"}.get(r["representative"], "not checked"), r["seconds"]])
    print(render(["calibration", "format", "int8", "drop pts", "rung", "float layers", "p50 ms",
                  "calib representative", "export s"], table))


def _num(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    main()
