"""An Ultralytics YOLOv8n trained on edgecv's generated scenes, exported by Ultralytics, then run through edgecv.

    .venv/bin/python benchmarks/yolo_ultralytics.py --setup            # once: make benchmarks/.venv-yolo
    .venv/bin/python benchmarks/yolo_ultralytics.py [--out runs/yolo] [--train-frames 2000] [--epochs 6]
    .venv/bin/python benchmarks/yolo_ultralytics.py --setup-tflite --stage tflite   # Ultralytics' TFLite exports
    .venv/bin/python benchmarks/yolo_ultralytics.py --stage edgecv [--reuse-export]  # only the edgecv steps

The YOLO-family member of issue 14's conformance corpus (and the model of issue 17's int8 comparison). Nothing
is downloaded: the network model is built from Ultralytics' own definition (``YOLO("yolov8n.yaml")``, no .pt
weights) and trained here on generated scenes. Too heavy for CI (torch alone is gigabytes): run it by hand.

Two environments. Ultralytics needs torch *and* torchvision (it reads torchvision's version at import and its
validator imports it), so it runs in its own venv, ``benchmarks/.venv-yolo`` (gitignored), made by ``--setup``
with :data:`INSTALL`: pip takes torch 2.14.1 and torchvision 0.29.1 from this machine's disk (a CUDA build, about
6 GB in the venv, run on the CPU). The smaller CPU torch 2.13.0 on disk does not work: the only torchvision for it
(0.28.0) is a CUDA build whose ``_C.so`` needs ``libc10_cuda.so``, so ``import torchvision`` fails with
"operator torchvision::nms does not exist". Everything else runs in the project venv (the one running this
script), which calls the other venv's Python on this same file (``--stage _ultralytics``, not for users).

Stages (``--stage all`` runs data, ultralytics, edgecv):

- ``data``: YOLO-format dataset under OUT/data (``images/{train,val,calib}``, ``labels/...``, ``data.yaml``) from
  :func:`edgecv.scenes.scene_frames` at 320x240 (4:3, like a camera), seeds 1 (train), 2 (val, held out) and
  3 (calibration): PNG frames, labels ``class cx cy w h`` normalized, from the exact truth boxes.
- ``ultralytics`` (in the YOLO venv, offline: ``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=False``, settings
  ``sync=False``, ``plots=False``, its dataset font check disabled, and every socket connection refused and
  recorded): train YOLOv8n from its YAML at imgsz 320 on CPU, ``val`` on the held-out frames (Ultralytics'
  own mAP, rectangular letterbox batches of 320x256), export ONNX static ``[1,3,320,320]`` as
  OUT/yolov8n_scenes.onnx (the conformance corpus reads this path) and dynamic as
  OUT/yolov8n_scenes_dynamic.onnx, and ``val`` of the static ONNX (square 320x320 letterbox: the same input
  edgecv's ``--resize letterbox`` gives). OUT/ultralytics.json holds times, versions and metrics.
- ``tflite``: Ultralytics' own float TFLite exports, by both its routes: ``format="tflite"`` (since 8.4.83 its
  LiteRT route through litert-torch: NCHW input, boxes normalized to [0, 1], decoded with
  benchmarks/yolov8n-scenes-litert.yaml) as OUT/yolov8n_scenes_litert.tflite, and ``format="saved_model"`` (ONNX
  -> onnx2tf -> TensorFlow: NHWC input, boxes in pixels) as OUT/yolov8n_scenes_float32.tflite. Needs
  ``--setup-tflite`` (:data:`INSTALL_TFLITE`, into the YOLO venv; it moves numpy to 2.1.3 and onnx to 1.22.0 there).
  onnx2tf's calibration sample file, which Ultralytics would download, is written from generated scenes first.
  Outcomes go to OUT/ultralytics_tflite.json.
- ``int8`` (issue 17, used by benchmarks/yolo_int8.py; needs ``--setup-int8``, :data:`INSTALL_INT8`): Ultralytics'
  own int8 exports (:data:`INT8_EXPORTS`: ONNX, LiteRT, onnx2tf TFLite, OpenVINO) calibrated on the calib split
  (``data=`` OUT/data/calib.yaml), with their float twins; ``--int8-exports`` picks some. OUT/ultralytics_int8.json.
- ``edgecv``: in the project venv, ``edgecv info``, ``bench`` (static; dynamic without and with
  ``--input-shape``), ``export --to tflite,onnx,openvino --quant fp32,int8 --calib`` (gated on detections on 100
  held-out frames with the spec, ``--max-drop 5``), ``export`` of the dynamic ONNX (fp32), then ``detect`` (spec
  benchmarks/yolov8n-scenes.yaml, score 0.001, letterbox; stretch too for the Ultralytics ONNX) and ``eval-det``
  against the truth for the Ultralytics ONNX (static and dynamic), Ultralytics' TFLite files and every artifact
  edgecv's export wrote. Each step's command, exit code, one-line result and time go to OUT/edgecv_steps.json,
  full logs to OUT/logs/; OUT/summary.md has the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / "benchmarks" / ".venv-yolo"
VENV_PY = VENV / "bin" / "python"
SPEC = REPO / "benchmarks" / "yolov8n-scenes.yaml"
SPEC_NORMALIZED = REPO / "benchmarks" / "yolov8n-scenes-litert.yaml"  # Ultralytics' format="tflite": boxes in [0, 1]
PINS = {"torch": "2.14.1", "torchvision": "0.29.1", "ultralytics": "8.4.190"}
INSTALL = [f"torch=={PINS['torch']}", f"torchvision=={PINS['torchvision']}", f"ultralytics=={PINS['ultralytics']}",
           "onnx==1.23.2", "onnxruntime==1.31.1", "onnxslim"]
# format="tflite" (= "litert" since 8.4.83) needs litert-torch; saved_model (onnx2tf) pins tensorflow<=2.19.0 and
# onnx2tf<1.29 on Python 3.11 (ultralytics/utils/export/tensorflow.py)
INSTALL_TFLITE = ["litert-torch==0.10.0", "tensorflow==2.19.0", "tf_keras==2.19.0", "onnx2tf>=1.26.3,<1.29.0",
                  "sng4onnx>=1.0.1", "onnx_graphsurgeon>=0.3.26", "ai-edge-litert>=1.2.0", "protobuf>=5"]

# Ultralytics' int8 exports (issue 17): OpenVINO int8 quantizes with NNCF; format="tflite" int8 with ai-edge-quantizer
# (the versions of the project venv; installing them moves onnx to 1.21.0 in the YOLO venv)
INSTALL_INT8 = ["openvino==2026.4.1", "nncf==3.4.0", "ai-edge-quantizer==0.10.0"]
FRAME_SIZE = (240, 320)  # (height, width) of the generated frames
SEEDS = {"train": 1, "val": 2, "calib": 3}
ONNX_STATIC, ONNX_DYNAMIC = "yolov8n_scenes.onnx", "yolov8n_scenes_dynamic.onnx"
ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


# -- setup (project venv) ----------------------------------------------------------------------------------


def setup(packages: list[str], *, fresh: bool) -> dict:
    """Create the YOLO venv if needed and pip-install ``packages`` into it; time and size."""
    start = time.perf_counter()
    if fresh and not VENV_PY.exists():
        base = Path(getattr(sys, "_base_executable", sys.executable))
        subprocess.run([str(base), "-m", "venv", str(VENV)], check=True)
    cmd = [str(VENV_PY), "-m", "pip", "install", "-q", *packages]
    log("$ " + shlex.join(cmd))
    subprocess.run(cmd, check=True)
    result = {"command": shlex.join(cmd), "seconds": round(time.perf_counter() - start, 1),
              "venv_bytes": dir_size(VENV)}
    log(f"installed in {result['seconds']} s; venv {result['venv_bytes'] / 1e9:.2f} GB")
    return result


def check_venv() -> dict:
    """The YOLO venv's versions; exits with one line when it is missing or pins differ."""
    if not VENV_PY.exists():
        sys.exit(f"no YOLO venv at {VENV}: run  {sys.executable} {Path(__file__).name} --setup")
    code = "import importlib.metadata as m, json; print(json.dumps({n: m.version(n) for n in %r}))" % list(PINS)
    out = subprocess.run([str(VENV_PY), "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"YOLO venv {VENV} is broken ({out.stderr.strip().splitlines()[-1:]}): rerun with --setup")
    versions = json.loads(out.stdout)
    wrong = {n: v for n, v in versions.items() if v.split("+")[0] != PINS[n]}
    if wrong:
        sys.exit(f"YOLO venv {VENV} has {wrong}, expected {PINS}: rerun with --setup")
    return versions


# -- data (project venv) -----------------------------------------------------------------------------------


def write_dataset(root: Path, counts: dict[str, int]) -> dict:
    """Generated scenes as a YOLO dataset: images/<split>/*.png, labels/<split>/*.txt, data.yaml."""
    import cv2

    sys.path.insert(0, str(REPO))
    from edgecv.scenes import CLASSES, SceneOptions, scene_frames

    h, w = FRAME_SIZE
    stats = {}
    for split, count in counts.items():
        images, labels = root / "images" / split, root / "labels" / split
        for d in (images, labels):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
        frames, truth = scene_frames(count, seed=SEEDS[split], options=SceneOptions(size=FRAME_SIZE))
        for i, (frame, det) in enumerate(zip(frames, truth)):
            name = f"{split}_{i:05d}"
            cv2.imwrite(str(images / f"{name}.png"), frame[..., ::-1])
            rows = [f"{c} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"
                    for c, (x0, y0, x1, y1) in zip(det.class_id.tolist(), det.xyxy.tolist())]
            (labels / f"{name}.txt").write_text("".join(r + "\n" for r in rows))
        stats[split] = {"frames": count, "objects": int(sum(len(d) for d in truth)), "seed": SEEDS[split]}
    names = "".join(f"  - {c}\n" for c in CLASSES)
    (root / "data.yaml").write_text(f"path: {root.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{names}")
    (root / "classes.txt").write_text("".join(c + "\n" for c in CLASSES))
    return {"size_hw": list(FRAME_SIZE), "splits": stats}


# -- Ultralytics (YOLO venv) -------------------------------------------------------------------------------


def _offline() -> list[str]:
    """Ultralytics offline; every outside connection refused and recorded (the list returned fills up)."""
    import socket

    attempts: list[str] = []
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def local(host: object) -> bool:
        return host in (None, "localhost", "") or str(host).startswith(("127.", "::1", "/"))

    def getaddrinfo(host, *a, **k):  # type: ignore[no-untyped-def]
        if not local(host):
            attempts.append(f"getaddrinfo {host}")
            raise OSError(f"benchmark is offline: refused lookup of {host}")
        return real_getaddrinfo(host, *a, **k)

    def connect(self, address):  # type: ignore[no-untyped-def]
        host = address[0] if isinstance(address, tuple) else address
        if not local(host):
            attempts.append(f"connect {address}")
            raise OSError(f"benchmark is offline: refused connection to {address}")
        return real_connect(self, address)

    socket.getaddrinfo, socket.socket.connect = getaddrinfo, connect
    return attempts


def _ultralytics_env(work: Path) -> None:
    os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="False", YOLO_VERBOSE="True",
                      YOLO_CONFIG_DIR=str(work / "ultralytics_config"))


def _import_ultralytics(work: Path, threads: int):  # type: ignore[no-untyped-def]
    _ultralytics_env(work)
    import torch
    import ultralytics
    import ultralytics.data.utils as data_utils
    from ultralytics import settings

    torch.set_num_threads(threads)
    # no analytics, no logger integrations (each would reach out if its package were installed)
    settings.update({k: False for k in ("sync", "tensorboard", "mlflow", "wandb", "clearml", "comet", "dvc",
                                        "neptune", "raytune", "hub", "platform") if k in settings})
    # check_det_dataset asks for Arial.ttf (HEAD request, then a download) although plots=False uses no font
    data_utils.check_font = lambda *a, **k: None
    return ultralytics


def _box_metrics(metrics) -> dict:  # type: ignore[no-untyped-def]
    box = metrics.box
    names = metrics.names
    index = metrics.ap_class_index
    per_class = {names[int(c)]: round(float(ap), 4) for c, ap in zip(index, box.maps[index])}
    return {"map50": round(float(box.map50), 4), "map50_95": round(float(box.map), 4),
            "precision": round(float(box.mp), 4), "recall": round(float(box.mr), 4), "per_class_map50_95": per_class,
            "speed_ms": {k: round(float(v), 2) for k, v in metrics.speed.items()}}


def ultralytics_stage(args: argparse.Namespace) -> None:
    """Train, val, export ONNX (static, dynamic), val the ONNX. Runs in the YOLO venv."""
    out, work = args.out.resolve(), args.out.resolve() / "work"
    work.mkdir(parents=True, exist_ok=True)
    attempts = _offline()
    ultralytics = _import_ultralytics(work, args.threads)
    import torch
    import torchvision
    from ultralytics import YOLO

    data = str(out / "data" / "data.yaml")
    report: dict = {"versions": {"ultralytics": ultralytics.__version__, "torch": torch.__version__,
                                 "torchvision": torchvision.__version__},
                    "train_args": {"model": "yolov8n.yaml", "imgsz": args.imgsz, "epochs": args.epochs,
                                   "batch": args.batch, "workers": args.workers, "threads": args.threads}}
    run = work / "train"
    if args.epochs > 0:
        model = YOLO("yolov8n.yaml")  # the architecture from Ultralytics' YAML, random weights
        start = time.perf_counter()
        model.train(data=data, imgsz=args.imgsz, epochs=args.epochs, batch=args.batch, workers=args.workers,
                    device="cpu", plots=False, val=False, amp=False, seed=0, deterministic=True,
                    project=str(work), name="train", exist_ok=True, verbose=True)
        report["train_seconds"] = round(time.perf_counter() - start, 1)
        log(f"trained in {report['train_seconds']} s")
    weights = run / "weights" / "last.pt"
    shutil.copy2(weights, out / "yolov8n_scenes.pt")

    val_args = dict(data=data, imgsz=args.imgsz, device="cpu", plots=False, project=str(work), exist_ok=True,
                    conf=0.001, iou=0.7)
    start = time.perf_counter()
    report["val_pt"] = _box_metrics(YOLO(str(weights)).val(batch=16, name="val_pt", **val_args))
    report["val_pt"]["seconds"] = round(time.perf_counter() - start, 1)
    log(f"Ultralytics val (.pt, rect 320x256): {report['val_pt']}")

    exports = {}
    for name, dynamic in ((ONNX_STATIC, False), (ONNX_DYNAMIC, True)):
        start = time.perf_counter()
        f = YOLO(str(weights)).export(format="onnx", imgsz=args.imgsz, dynamic=dynamic, simplify=True, batch=1)
        shutil.copy2(f, out / name)
        exports[name] = {"seconds": round(time.perf_counter() - start, 1), "bytes": (out / name).stat().st_size}
    report["exports"] = exports

    start = time.perf_counter()
    onnx_val = YOLO(str(out / ONNX_STATIC), task="detect").val(batch=1, name="val_onnx", **val_args)
    report["val_onnx"] = _box_metrics(onnx_val)
    report["val_onnx"]["seconds"] = round(time.perf_counter() - start, 1)
    log(f"Ultralytics val (static ONNX, square 320x320 letterbox): {report['val_onnx']}")
    predict_stage(args, attempts)
    report["network_attempts"] = attempts
    (out / "ultralytics.json").write_text(json.dumps(report, indent=2))
    if attempts:
        sys.exit(f"Ultralytics tried the network {len(attempts)} times: {attempts[:3]}")


def predict_stage(args: argparse.Namespace, attempts: list[str] | None = None) -> None:
    """Ultralytics' own predictions of the static ONNX on the held-out frames (conf 0.001, IoU 0.7, max 300), as
    YOLO txt files in OUT/ultralytics_predict/labels: scored by edgecv's eval-det, they separate the evaluator's
    share of a difference in mAP from the preprocessing's and decoding's."""
    out, work = args.out.resolve(), args.out.resolve() / "work"
    if attempts is None:  # run on its own (--stage _predict), not from ultralytics_stage
        attempts = _offline()
        _import_ultralytics(work, args.threads)
    from ultralytics import YOLO

    target = out / "ultralytics_predict"
    shutil.rmtree(target, ignore_errors=True)
    model = YOLO(str(out / ONNX_STATIC), task="detect")
    start = time.perf_counter()
    for _ in model.predict(source=str(out / "data" / "images" / "val"), imgsz=args.imgsz, conf=0.001, iou=0.7,
                           max_det=300, save=False, save_txt=True, save_conf=True, project=str(out),
                           name="ultralytics_predict", exist_ok=True, stream=True, verbose=False):
        pass
    log(f"Ultralytics predict of {ONNX_STATIC}: {time.perf_counter() - start:.1f} s, network attempts {attempts}")



def _error_record(exc: BaseException) -> dict:
    """An export's error as the report keeps it: its first line and the traceback's last lines."""
    return {"error": f"{type(exc).__name__}: {exc}".splitlines()[0],
            "traceback_tail": traceback.format_exc().splitlines()[-6:]}


def tflite_stage(args: argparse.Namespace) -> None:
    """Ultralytics' own float TFLite exports of the trained weights, by both its routes; outcomes to
    ultralytics_tflite.json. ``format="tflite"`` (since 8.4.83 an alias of ``litert``) converts the torch model with
    litert-torch; ``format="saved_model"`` goes ONNX -> onnx2tf -> TensorFlow and writes ``*_float32.tflite``."""

    out, work = args.out.resolve(), args.out.resolve() / "work"
    attempts = _offline()
    _import_ultralytics(work, args.threads)
    import cv2
    import numpy as np
    from ultralytics import YOLO

    export_dir = work / "tflite"
    shutil.rmtree(export_dir, ignore_errors=True)
    export_dir.mkdir(parents=True)
    shutil.copy2(out / "yolov8n_scenes.pt", export_dir / "yolov8n_scenes.pt")
    # onnx2tf's sample calibration file, which Ultralytics downloads into the working folder when it is missing
    calib = sorted((out / "data" / "images" / "calib").glob("*.png"))[:20]
    sample = np.stack([cv2.resize(cv2.imread(str(p))[..., ::-1], (128, 128)) for p in calib]).astype(np.float32) / 255
    np.save(export_dir / ONNX2TF_SAMPLE, sample)
    os.chdir(export_dir)
    results: dict = {}
    for fmt, pattern, target in (("tflite", "*.tflite", "yolov8n_scenes_litert.tflite"),
                                 ("saved_model", "*_float32.tflite", "yolov8n_scenes_float32.tflite")):
        result: dict = {}
        start = time.perf_counter()
        try:
            f = YOLO("yolov8n_scenes.pt").export(format=fmt, imgsz=args.imgsz, batch=1)
            result["export_returned"] = str(f)
            found = sorted(p for p in Path(f).parent.rglob(pattern) if "yolov8n_scenes" in str(p)) if f else []
            if Path(f).is_dir():
                found = sorted(Path(f).rglob(pattern))
            if found:
                shutil.copy2(found[0], out / target)
                result["tflite"] = str(out / target)
            else:
                result["error"] = f"no {pattern} written"
        except Exception as exc:  # the outcome is the report: record Ultralytics' error as it is
            result.update(_error_record(exc))
        result["seconds"] = round(time.perf_counter() - start, 1)
        results[fmt] = result
        log(f"Ultralytics export format={fmt}: {result}")
    results["network_attempts"] = attempts
    (out / "ultralytics_tflite.json").write_text(json.dumps(results, indent=2))


# Ultralytics' int8 exports (issue 17): (name, export kwargs, files to keep as {glob: name under OUT})
INT8_EXPORTS = [
    ("onnx_int8", {"format": "onnx", "int8": True, "simplify": True}, {"*_int8.onnx": "yolov8n_scenes_onnx_int8.onnx"}),
    ("litert_fp32", {"format": "tflite"}, {"yolov8n_scenes.tflite": "yolov8n_scenes_litert.tflite"}),
    ("litert_int8", {"format": "tflite", "int8": True}, {"*_int8.tflite": "yolov8n_scenes_litert_int8.tflite"}),
    ("saved_model_int8", {"format": "saved_model", "int8": True},
     {"*_float32.tflite": "yolov8n_scenes_float32.tflite",
      "*_full_integer_quant.tflite": "yolov8n_scenes_full_integer_quant.tflite",
      "*[!l]_integer_quant.tflite": "yolov8n_scenes_integer_quant.tflite"}),
    ("openvino_fp32", {"format": "openvino"}, {"*.xml": "ultralytics_openvino_fp32"}),
    ("openvino_int8", {"format": "openvino", "int8": True}, {"*.xml": "ultralytics_openvino_int8"}),
]


def int8_stage(args: argparse.Namespace) -> None:
    """Ultralytics' own int8 exports of the trained weights (and their float twins), calibrated on the calib split:
    ``data=`` is OUT/data/calib.yaml, whose ``val`` (the split Ultralytics calibrates on) is images/calib. Runs in
    the YOLO venv; TFLite files go to OUT/*.tflite, OpenVINO folders to OUT/ultralytics_openvino_{fp32,int8};
    outcomes to OUT/ultralytics_int8.json."""

    out, work = args.out.resolve(), args.out.resolve() / "work"
    attempts = _offline()
    _import_ultralytics(work, args.threads)
    import cv2
    import numpy as np
    from ultralytics import YOLO

    data = out / "data"
    calib_yaml = data / "calib.yaml"
    names = "".join(f"  - {c}\n" for c in (data / "classes.txt").read_text().split())
    calib_yaml.write_text(f"path: {data}\ntrain: images/train\nval: images/calib\nnames:\n{names}")
    export_dir = work / "int8"
    shutil.rmtree(export_dir, ignore_errors=True)
    export_dir.mkdir(parents=True)
    shutil.copy2(out / "yolov8n_scenes.pt", export_dir / "yolov8n_scenes.pt")
    calib = sorted((data / "images" / "calib").glob("*.png"))[:20]  # onnx2tf's sample file, else downloaded
    sample = np.stack([cv2.resize(cv2.imread(str(p))[..., ::-1], (128, 128)) for p in calib]).astype(np.float32) / 255
    np.save(export_dir / ONNX2TF_SAMPLE, sample)
    os.chdir(export_dir)
    only = set(args.int8_exports.split(",")) if args.int8_exports else None
    report = out / "ultralytics_int8.json"  # a run of some exports (--int8-exports) keeps the others' records
    results: dict = (json.loads(report.read_text()) if only and report.exists() else {}) | {"data": str(calib_yaml)}
    for name, kwargs, keep in INT8_EXPORTS:
        if only and name not in only:
            continue
        result: dict = {"kwargs": kwargs}
        start = time.perf_counter()
        try:
            f = YOLO("yolov8n_scenes.pt").export(**kwargs, imgsz=args.imgsz, batch=1, data=str(calib_yaml))
            result["export_returned"] = str(f)
            root = Path(f) if Path(f).is_dir() else Path(f).parent
            for pattern, target in keep.items():
                found = sorted(root.rglob(pattern))
                if not found:
                    result.setdefault("missing", []).append(pattern)
                elif found[0].suffix == ".xml":
                    shutil.rmtree(out / target, ignore_errors=True)
                    shutil.copytree(found[0].parent, out / target)
                    result.setdefault("kept", []).append(str(out / target / found[0].name))
                else:
                    shutil.copy2(found[0], out / target)
                    result.setdefault("kept", []).append(str(out / target))
        except Exception as exc:  # the outcome is the report: record Ultralytics' error as it is
            result.update(_error_record(exc))
        result["seconds"] = round(time.perf_counter() - start, 1)
        results[name] = result
        log(f"Ultralytics export {name} {kwargs}: {result}")
    results["network_attempts"] = sorted(set(results.get("network_attempts", []) + attempts))
    report.write_text(json.dumps(results, indent=2))


# -- edgecv (project venv) ---------------------------------------------------------------------------------


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.lower().startswith(("error", "edgecv: error", "traceback"))]
    return (errors or lines or [""])[-1][:300]


def edgecv_step(steps: list[dict], logs: Path, name: str, argv: list[str], timeout: float = 3600) -> dict:
    """Run ``edgecv ARGV`` in the project venv; record exit code, time and the line that says what happened."""
    cmd = [sys.executable, "-m", "edgecv", *argv]
    log(f"{name}: edgecv {shlex.join(argv)}")
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
        rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, stdout, stderr = -1, exc.stdout or "", f"timed out after {timeout} s"
        stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
    seconds = round(time.perf_counter() - start, 1)
    logs.mkdir(parents=True, exist_ok=True)
    text = f"$ edgecv {shlex.join(argv)}\n# exit {rc}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    (logs / f"{name}.log").write_text(text)
    step = {"step": name, "command": "edgecv " + shlex.join(argv), "rc": rc, "seconds": seconds,
            "line": _describe(stdout) if rc == 0 or _json_tail(stdout) else _last_line(stderr), "stdout": stdout}
    log(f"  -> rc {rc} in {seconds} s: {step['line']}")
    steps.append(step)
    return step


def _describe(stdout: str) -> str:
    """One line saying what a successful command gave: the key figures of its JSON, else its last line."""
    doc = _json_tail(stdout)
    if isinstance(doc, list):  # bench
        return "; ".join(f"{Path(r.get('artifact', '?')).name} {r.get('precision')} p50 {r.get('p50_ms', 0):.1f} ms, "
                         f"input {r.get('input_shape')}" for r in doc if isinstance(r, dict))
    if isinstance(doc, dict) and "map" in doc:  # eval-det
        return f"mAP@[.5:.95] {doc['map']:.4f}, mAP@0.5 {doc['map50']:.4f}, {doc.get('pred')} predictions"
    if isinstance(doc, dict) and "detections" in doc:  # detect
        infer = (doc.get("timing_ms") or {}).get("median", {}).get("inference_ms")
        return f"{doc['detections']} detections in {doc.get('frames')} frames, inference p50 {infer:.1f} ms"
    if isinstance(doc, dict) and "artifacts" in doc:  # export
        return ", ".join(f"{a.get('format')} {a.get('precision')} {a.get('status')}" for a in doc["artifacts"])
    return _last_line(stdout)


def _json_tail(text: str) -> dict | list | None:
    """The JSON document a --json command printed: all of stdout, or from its first line opening one."""
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n" and text[i + 1 : i + 2] in ("{", "[")]
    for i in starts:
        try:
            return json.loads(text[i:])
        except ValueError:
            continue
    return None


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def edgecv_stage(args: argparse.Namespace) -> None:
    out = args.out
    data = out / "data"
    onnx, dynamic = out / ONNX_STATIC, out / ONNX_DYNAMIC
    for need in (onnx, data / "data.yaml"):
        if not need.exists():
            sys.exit(f"needs {need}: run the data and ultralytics stages first")
    steps: list[dict] = []
    results: list[dict] = []
    logs = out / "logs"
    val_images, val_labels, calib = data / "images" / "val", data / "labels" / "val", data / "images" / "calib"
    spec, names = _rel(SPEC), _rel(data / "data.yaml")

    for name, model in (("info", onnx), ("info_dynamic", dynamic)):
        edgecv_step(steps, logs, name, ["info", _rel(model)])
    edgecv_step(steps, logs, "bench", ["bench", _rel(onnx), "--runs", "50", "--json"])
    edgecv_step(steps, logs, "bench_dynamic", ["bench", _rel(dynamic), "--runs", "50", "--json"])
    edgecv_step(steps, logs, "bench_dynamic_shape",
                ["bench", _rel(dynamic), "--runs", "50", "--input-shape", "1,3,320,320", "--json"])

    export_dir, dyn_dir = out / "edgecv_export", out / "edgecv_export_dynamic"
    if args.reuse_export and (export_dir / "report.json").exists():
        log(f"reusing {export_dir} (--reuse-export)")
        previous = out / "edgecv_steps.json"
        if previous.exists():  # keep the export steps' records of the run that made them
            steps += [s | {"stdout": ""} for s in json.loads(previous.read_text())["steps"]
                      if s["step"].startswith("export") and s["step"] != "export_dynamic"]
            for s in steps:
                if s["step"] == "export":
                    s["line"] = _describe((export_dir / "report.json").read_text())
    else:
        shutil.rmtree(export_dir, ignore_errors=True)
        export_argv = ["export", _rel(onnx), "--to", "tflite,onnx,openvino", "--quant", "fp32,int8",
                       "--calib", _rel(calib), "--spec", spec, "--eval", _rel(val_images),
                       "--eval-samples", str(args.eval_samples), "--max-drop", "5", "--out", _rel(export_dir), "--json"]
        step = edgecv_step(steps, logs, "export", export_argv)
        if step["rc"] == 2 and "fp32" in step["line"]:  # the brief's spelling; the CLI's name for float is 'none'
            export_argv[export_argv.index("fp32,int8")] = "none,int8"
            edgecv_step(steps, logs, "export_none_int8", export_argv)

    # the dynamic export, float only: do dynamic dims stay dynamic in ONNX and OpenVINO, static in TFLite?
    shutil.rmtree(dyn_dir, ignore_errors=True)
    edgecv_step(steps, logs, "export_dynamic", ["export", _rel(dynamic), "--to", "tflite,onnx,openvino",
                                                "--quant", "fp32", "--input-shape", "1,3,320,320",
                                                "--out", _rel(dyn_dir), "--json"])
    report = export_dir / "report.json"
    artifacts = json.loads(report.read_text()).get("artifacts", []) if report.exists() else []
    keys = ("format", "precision", "status", "reason", "path", "size_bytes", "p50_ms", "drop_points", "fallback")
    export_rows = [{k: a.get(k) for k in keys} | {"sqnr_db": (a.get("scores") or {}).get("sqnr_db")}
                   for a in artifacts]
    models = [("onnx_ultralytics", onnx), ("onnx_ultralytics_dynamic", dynamic)]
    models += [(f"ultralytics_{p.stem.removeprefix('yolov8n_scenes_')}", p) for p in sorted(out.glob("*.tflite"))]
    suffixes = (".tflite", ".onnx", ".xml")
    models += [(f"edgecv_{p.name}", p) for p in sorted(export_dir.glob("*")) if p.suffix in suffixes]
    # artifacts that failed the export's gate (kept in _failed/): their mAP against the truth says how much was lost
    failed = export_dir / "_failed"
    models += [(f"edgecv_failed_{p.name}", p) for p in sorted(failed.glob("*")) if p.suffix in suffixes]
    models += [(f"edgecv_dynamic_{p.name}", p) for p in sorted(dyn_dir.glob("*")) if p.suffix in suffixes]
    predicted = out / "ultralytics_predict" / "labels"
    if predicted.is_dir():  # Ultralytics' own detections, scored by edgecv's evaluator
        ev = edgecv_step(steps, logs, "eval_ultralytics_predict",
                         ["eval-det", "--gt", _rel(val_labels), "--pred", _rel(predicted), "--images", _rel(val_images),
                          "--labels", names, "--json"])
        results.append({"model": f"Ultralytics predict of {ONNX_STATIC} (its own letterbox, decode, NMS)",
                        "resize": "letterbox", "eval_rc": ev["rc"], "metrics": _json_tail(ev["stdout"])})

    def spec_of(label: str) -> str:
        return _rel(SPEC_NORMALIZED) if label == "ultralytics_litert" else spec

    for label, model in models:
        resizes = ("letterbox", "stretch") if label == "onnx_ultralytics" else ("letterbox",)
        for resize in resizes:
            det_dir = out / "detect" / f"{label}_{resize}"
            shutil.rmtree(det_dir, ignore_errors=True)
            det = edgecv_step(steps, logs, f"detect_{label}_{resize}",
                              ["detect", "--model", _rel(model), "--spec", spec_of(label), "--source", _rel(val_images),
                               "--out", _rel(det_dir), "--resize", resize, "--score", "0.001", "--json"])
            row = {"model": _rel(model), "resize": resize, "detect_rc": det["rc"]}
            summary = _json_tail(det["stdout"]) if det["rc"] == 0 else None
            if isinstance(summary, dict):
                row["detections"] = summary.get("detections")
                row["median_ms"] = summary.get("timing_ms", {}).get("median")
            if det["rc"] == 0:
                ev = edgecv_step(steps, logs, f"eval_{label}_{resize}",
                                 ["eval-det", "--gt", _rel(val_labels), "--pred", _rel(det_dir / "predictions.json"),
                                  "--images", _rel(val_images), "--labels", names, "--json"])
                metrics = _json_tail(ev["stdout"]) if ev["rc"] == 0 else None
                row["eval_rc"] = ev["rc"]
                row["metrics"] = metrics
            results.append(row)
            # keep the annotated frames of one run only: they are many MB
            for png in det_dir.glob("*.png") if label != "onnx_ultralytics" or resize != "letterbox" else ():
                png.unlink()

    for s in steps:
        s.pop("stdout")
    (out / "edgecv_steps.json").write_text(json.dumps({"steps": steps, "export": export_rows, "map": results},
                                                     indent=2))
    write_summary(out, steps, export_rows, results)


def _fmt_map(m: dict | list | None) -> tuple[str, str]:
    if not isinstance(m, dict):
        return "-", "-"
    flat = m.get("summary", m)
    ap = flat.get("AP", flat.get("map", flat.get("ap")))
    ap50 = flat.get("AP50", flat.get("map50", flat.get("ap50")))
    f = lambda v: f"{v:.4f}" if isinstance(v, (int, float)) else "?"  # noqa: E731
    return f(ap), f(ap50)


def write_summary(out: Path, steps: list[dict], export_rows: list[dict], results: list[dict]) -> None:
    lines = ["# YOLOv8n (Ultralytics) on generated scenes, through edgecv", ""]
    ul = json.loads((out / "ultralytics.json").read_text()) if (out / "ultralytics.json").exists() else {}
    if ul:
        lines += ["| evaluator | input | mAP@[.5:.95] | mAP@0.5 |", "|---|---|---|---|"]
        for key, what in (("val_pt", "Ultralytics val, .pt (rect 320x256)"),
                          ("val_onnx", "Ultralytics val, static ONNX (320x320 letterbox)")):
            if key in ul:
                lines.append(f"| {what} | held-out val | {ul[key]['map50_95']:.4f} | {ul[key]['map50']:.4f} |")
    for r in results:
        ap, ap50 = _fmt_map(r.get("metrics"))
        infer = (r.get("median_ms") or {}).get("inference_ms")
        speed = f", inference p50 {infer:.1f} ms" if isinstance(infer, (int, float)) else ""
        who = "edgecv eval-det of" if r["model"].startswith("Ultralytics") else "edgecv detect + eval-det,"
        lines.append(f"| {who} {r['model']}{speed} | {r['resize']} | {ap} | {ap50} |")
    if export_rows:
        lines += ["", "| edgecv export | status | SQNR dB | drop points | p50 ms | reason |",
                  "|---|---|---|---|---|---|"]
        for a in export_rows:
            num = lambda v: f"{v:.1f}" if isinstance(v, (int, float)) else "-"  # noqa: E731
            lines.append(f"| {a['format']} {a['precision']} | {a['status']} | {num(a['sqnr_db'])} | "
                         f"{num(a['drop_points'])} | {num(a['p50_ms'])} | {(a['reason'] or '').replace('|', '/')} |")
    lines += ["", "| step | exit | seconds | result |", "|---|---|---|---|"]
    for s in steps:
        lines.append(f"| {s['step']} | {s['rc']} | {s['seconds']} | {s['line'].replace('|', '/')} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


# -- main --------------------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", default="all", choices=["all", "data", "ultralytics", "tflite", "edgecv",
                                                       "_ultralytics", "_tflite", "_predict", "int8", "_int8"])
    p.add_argument("--setup", action="store_true", help=f"create {VENV.relative_to(REPO)} and install {INSTALL}")
    p.add_argument("--setup-tflite", action="store_true", help="add TensorFlow + onnx2tf to the YOLO venv")
    p.add_argument("--setup-int8", action="store_true", help=f"add {INSTALL_INT8} to the YOLO venv (--stage int8)")
    p.add_argument("--int8-exports", default="", help="int8 stage: only these of " + ",".join(e[0] for e in INT8_EXPORTS))
    p.add_argument("--out", type=Path, default=REPO / "runs" / "yolo")
    p.add_argument("--train-frames", type=int, default=2000)
    p.add_argument("--val-frames", type=int, default=300)
    p.add_argument("--calib-frames", type=int, default=200)
    p.add_argument("--eval-samples", type=int, default=100, help="edgecv export's --eval-samples")
    p.add_argument("--reuse-export", action="store_true", help="edgecv stage: keep OUT/edgecv_export* if done")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    if args.stage == "_ultralytics":
        return ultralytics_stage(args)
    if args.stage == "_tflite":
        return tflite_stage(args)
    if args.stage == "_predict":
        return predict_stage(args)
    if args.stage == "_int8":
        return int8_stage(args)

    args.out.mkdir(parents=True, exist_ok=True)
    env_report = args.out / "environment.json"
    env = json.loads(env_report.read_text()) if env_report.exists() else {}
    if args.setup:
        env["setup"] = setup(INSTALL, fresh=True)
    if args.setup_tflite:
        env["setup_tflite"] = setup(INSTALL_TFLITE, fresh=False)
    if args.setup_int8:
        env["setup_int8"] = setup(INSTALL_INT8, fresh=False)
    if args.setup or args.setup_tflite or args.setup_int8:
        env_report.write_text(json.dumps(env, indent=2))
    if args.stage in ("all", "data"):
        start = time.perf_counter()
        counts = {"train": args.train_frames, "val": args.val_frames, "calib": args.calib_frames}
        env["dataset"] = write_dataset(args.out / "data", counts)
        env["dataset"]["seconds"] = round(time.perf_counter() - start, 1)
        env_report.write_text(json.dumps(env, indent=2))
        log(f"dataset: {env['dataset']}")
    passthrough = ["--out", str(args.out.resolve()), "--epochs", str(args.epochs), "--imgsz", str(args.imgsz),
                   "--batch", str(args.batch), "--workers", str(args.workers), "--threads", str(args.threads)]
    if args.int8_exports:
        passthrough += ["--int8-exports", args.int8_exports]
    if args.stage in ("all", "ultralytics", "tflite", "int8"):
        env["yolo_venv"] = check_venv()
        env_report.write_text(json.dumps(env, indent=2))
        inner = {"tflite": "_tflite", "int8": "_int8"}.get(args.stage, "_ultralytics")
        subprocess.run([str(VENV_PY), __file__, "--stage", inner, *passthrough], check=args.stage not in ("tflite", "int8"))
    if args.stage in ("all", "edgecv"):
        edgecv_stage(args)


if __name__ == "__main__":
    main()
