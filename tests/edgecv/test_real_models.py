"""The runtime on real models made by others, against their golden outputs (skips without ../shared/data)."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

import edgecv

BASELINES = json.loads((Path(__file__).parents[1] / "baselines.json").read_text())


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def load_mnist(shared: Path) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(shared / "mnist" / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(shared / "mnist" / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels


def test_ssd_mobilenet_quant_gives_the_golden_detections(shared_data):
    cv2 = pytest.importorskip("cv2")
    folder = shared_data / "models" / "ssd_mobilenet_v1_coco_quant"
    labels = (folder / "labelmap.txt").read_text().splitlines()
    image = cv2.imread(str(folder / "table.jpg"))[..., ::-1]
    h, w = image.shape[:2]
    model = edgecv.load(folder / "detect.tflite")
    assert model.inputs[0].dtype == "uint8" and model.inputs[0].quant.zero_point == (128,)
    boxes, classes, scores, count = model.run(cv2.resize(image, (300, 300), interpolation=cv2.INTER_LINEAR)[None])
    found = []
    for i in range(int(count[0])):
        y0, x0, y1, x1 = boxes[0, i]
        # Class k is line k+1 of the label map: line 0 is the '???' background placeholder.
        found.append((labels[int(classes[0, i]) + 1].replace(" ", "_"), (x0 * w, y0 * h, x1 * w, y1 * h), scores[0, i]))
    for line in (folder / "table_results.txt").read_text().splitlines():
        name, *box, score = line.split()
        box, score = [float(v) for v in box], float(score)
        matches = [f for f in found if f[0] == name and _iou(f[1], box) > 0.7]
        assert matches, f"golden {name} {box} not found in {found}"
        assert abs(max(m[2] for m in matches) - score) < 0.07


def test_ssd_float_io_quantizes_inputs_for_the_caller(shared_data):
    model = edgecv.load(shared_data / "models" / "ssd_mobilenet_v1_coco_quant" / "detect.tflite", float_io=True)
    raw = edgecv.load(shared_data / "models" / "ssd_mobilenet_v1_coco_quant" / "detect.tflite")
    pixels = np.random.default_rng(0).integers(0, 256, size=(1, 300, 300, 3)).astype(np.uint8)
    as_float = (pixels.astype(np.float32) - 128) * 0.0078125  # the input's own scale and zero point
    for a, b in zip(model.run(as_float), raw.run(pixels)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_mnist8_accuracy_on_images_8000_to_9999(shared_data, backend):
    images, labels = load_mnist(shared_data)
    model = edgecv.load(shared_data / "models" / "mnist-8.onnx", backend=backend)
    x = images[8000:].astype(np.float32)[:, None]  # raw pixels 0..255, NCHW
    top1 = float(np.mean(model.run(x)[0].argmax(1) == labels[8000:]))
    assert top1 >= BASELINES["mnist8_top1_images_8000_9999"] - 1e-9


def test_blazeface_top_score_matches_the_golden_face(shared_data):
    cv2 = pytest.importorskip("cv2")
    models = shared_data / "models"
    image = cv2.imread(str(models / "blazeface_golden" / "sergey.png"))[..., ::-1]
    x = (cv2.resize(image, (128, 128), interpolation=cv2.INTER_LINEAR).astype(np.float32) - 127.5) / 127.5
    model = edgecv.load(models / "face_detection_short_range.tflite")
    regressors, classificators = model.run(x[None])
    assert regressors.shape == (1, 896, 16) and classificators.shape == (1, 896, 1)
    top = 1 / (1 + np.exp(-classificators.max()))
    assert abs(top - 0.928) < 0.02  # expected_detection.pbtxt: score 0.928
