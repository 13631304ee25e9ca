"""The cheap parts of benchmarks/yolo_ultralytics.py: its YOLO dataset writer and its two detector specs.

The benchmark itself (Ultralytics in a torch venv, training, exports) is too heavy for CI and runs by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edgecv.detection import load_spec
from edgecv.detection.ground_truth import read_yolo_ground_truth
from edgecv.scenes import CLASSES, SceneOptions, scene_frames

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import yolo_ultralytics as yolo  # noqa: E402


def test_dataset_labels_read_back_as_the_scene_truth(tmp_path: Path) -> None:
    stats = yolo.write_dataset(tmp_path, {"val": 4})
    _, truth = scene_frames(4, seed=yolo.SEEDS["val"], options=SceneOptions(size=yolo.FRAME_SIZE))
    read = read_yolo_ground_truth(tmp_path / "labels" / "val", images=tmp_path / "images" / "val")
    assert stats["splits"]["val"] == {"frames": 4, "objects": sum(len(t) for t in truth), "seed": 2}
    assert [s for s in read.sizes] == [(320, 240)] * 4
    for got, want in zip(read.detections, truth):
        assert got.class_id.tolist() == want.class_id.tolist()
        np.testing.assert_allclose(got.xyxy, want.xyxy, atol=1e-3)  # 6 decimals of a 320-pixel frame
    names = (tmp_path / "data.yaml").read_text()
    assert names.endswith("".join(f"  - {c}\n" for c in CLASSES))


@pytest.mark.parametrize(
    "spec, scale",
    [("yolov8n-scenes.yaml", 1.0),  # Ultralytics' ONNX and saved_model TFLite: boxes in input pixels
     ("yolov8n-scenes-litert.yaml", 1 / 320)],  # its format="tflite" (LiteRT): boxes in [0, 1] of the input
)
def test_specs_decode_a_v8_head(spec: str, scale: float) -> None:
    loaded = load_spec(REPO / "benchmarks" / spec)
    out = np.zeros((1, 8, 2100), np.float32)
    out[0, :, 7] = [100 * scale, 60 * scale, 40 * scale, 20 * scale, 0.1, 0.2, 0.9, 0.3]  # a triangle
    out[0, :, 8] = [102 * scale, 61 * scale, 40 * scale, 20 * scale, 0.1, 0.2, 0.8, 0.3]  # its duplicate
    out[0, :, 9] = [200 * scale, 200 * scale, 10 * scale, 10 * scale, 0.2, 0.1, 0.1, 0.1]  # under the threshold
    det = loaded.detect([out], input_size=(320, 320))
    assert loaded.class_names(det) == ["triangle"]
    np.testing.assert_allclose(det.xyxy, [[80, 50, 120, 70]], atol=1e-4)
    assert det.confidence.tolist() == pytest.approx([0.9])


@pytest.mark.parametrize(
    "stdout, expected",
    [('{"map": 0.4, "map50": 0.57, "pred": 9}', "mAP@[.5:.95] 0.4000, mAP@0.5 0.5700, 9 predictions"),
     ('[{"artifact": "a/m.onnx", "precision": "fp32", "p50_ms": 35.42, "input_shape": [1, 3, 320, 320]}]',
      "m.onnx fp32 p50 35.4 ms, input [1, 3, 320, 320]"),
     ("noise\n{\"artifacts\": [{\"format\": \"onnx\", \"precision\": \"int8\", \"status\": \"failed\"}]}",
      "onnx int8 failed"),
     ("inputs:\n  images 1x3x320x320\nmanifest: none beside this file\n", "manifest: none beside this file")],
)
def test_step_results_are_one_line(stdout: str, expected: str) -> None:
    assert yolo._describe(stdout) == expected
