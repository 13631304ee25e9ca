"""Detector: preprocess -> model.run -> spec.detect -> back to frame pixels, with stage timings.

A tiny ONNX "detector" whose outputs are constants (TFLite_Detection_PostProcess style: relative boxes,
classes, scores, count) makes the mapping exact and checkable by hand; the shared BlazeFace and SSD
MobileNet check it on real models (skipped without ../shared/data).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from edgecv.detection import FrameOptions, load_spec
from edgecv.detection.detector import Detector, StageTimes, Timings, resolve_spec, spec_from_manifest
from edgecv.errors import BackendError, ConfigError, InputError

pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

# Two detections, relative (ymin, xmin, ymax, xmax) as the TFLite post-processing op gives them.
FAKE_BOXES = [[0.25, 0.25, 0.75, 0.5], [0.0, 0.5, 0.5, 1.0]]
FAKE_CLASSES = [1.0, 0.0]
FAKE_SCORES = [0.9, 0.6]
FAKE_LABELS = ["cat", "dog"]
INPUT_HW = (32, 48)


def make_fake_detector(path: Path, *, nan: bool = False, input_hw: tuple[int, int] = INPUT_HW) -> Path:
    """An ONNX model with an NHWC float image input whose outputs are the constants above (plus 0 x the
    input's mean, so the input is used): boxes [1,2,4], classes [1,2], scores [1,2], count [1]."""
    from onnx import TensorProto, helper, numpy_helper, save

    scores = np.array([FAKE_SCORES], np.float32)
    if nan:
        scores[0, 1] = np.nan
    consts = {
        "c_boxes": np.array([FAKE_BOXES], np.float32),
        "c_classes": np.array([FAKE_CLASSES], np.float32),
        "c_scores": scores,
        "c_count": np.array([2.0], np.float32),
        "zero": np.array(0.0, np.float32),
    }
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
    ]
    for name in ("boxes", "classes", "scores", "count"):
        nodes.append(helper.make_node("Add", [f"c_{name}", "nothing"], [name]))
    h, w = input_hw
    graph = helper.make_graph(
        nodes,
        "fake_detector",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, h, w, 3])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 2, 4]),
            helper.make_tensor_value_info("classes", TensorProto.FLOAT, [1, 2]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2]),
            helper.make_tensor_value_info("count", TensorProto.FLOAT, [1]),
        ],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return path


def write_fake_spec(path: Path, *, labels: bool = True) -> Path:
    lines = ["decoder: tflite_postprocess", "nms: null", "score_threshold: 0.5", "mean: [0]", "std: [255]"]
    if labels:
        lines.append(f"labels: [{', '.join(FAKE_LABELS)}]")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake_detector")
    return make_fake_detector(root / "fake.onnx"), write_fake_spec(root / "fake.yaml")


def _expected(frame_hw, mode):
    """The fake boxes in frame pixels, worked out by hand: input = frame * scale + pad."""
    (fh, fw), (ih, iw) = frame_hw, INPUT_HW
    if mode == "stretch":
        sx, sy, px, py = iw / fw, ih / fh, 0, 0
    else:  # letterbox, centred
        s = min(ih / fh, iw / fw)
        nw, nh = round(fw * s), round(fh * s)
        sx, sy, px, py = nw / fw, nh / fh, (iw - nw) // 2, (ih - nh) // 2
    out = []
    for y0, x0, y1, x1 in FAKE_BOXES:
        box = [(x0 * iw - px) / sx, (y0 * ih - py) / sy, (x1 * iw - px) / sx, (y1 * ih - py) / sy]
        out.append([min(max(box[0], 0), fw), min(max(box[1], 0), fh), min(max(box[2], 0), fw), min(max(box[3], 0), fh)])
    return np.array(out)


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
@pytest.mark.parametrize("frame_hw", [(64, 192), (96, 48), (32, 48)])
def test_boxes_come_back_in_frame_pixels(fake, mode, frame_hw):
    model, spec = fake
    det = Detector(model, spec=spec, options=FrameOptions(resize=mode))
    found = det.detect(np.zeros((*frame_hw, 3), np.uint8))
    np.testing.assert_allclose(found.xyxy, _expected(frame_hw, mode), atol=1e-3)
    assert found.confidence.tolist() == pytest.approx(FAKE_SCORES)
    assert det.class_names(found) == ["dog", "cat"] and det.labels == ("cat", "dog")


def test_letterbox_by_hand_for_a_wide_frame(fake):
    # 64x192 into 32x48: scale 0.25, content 16x48, padded 8 rows top and bottom.
    model, spec = fake
    found = Detector(model, spec=spec, options=FrameOptions(resize="letterbox")).detect(np.zeros((64, 192), np.uint8))
    assert found.xyxy.tolist() == [[48.0, 0.0, 96.0, 64.0], [96.0, 0.0, 192.0, 32.0]]


def test_timings_per_stage_and_reset(fake):
    model, spec = fake
    det = Detector(model, spec=spec)
    assert det.last_timing is None and len(det.timings) == 0 and det.timings.median()["total_ms"] is None
    frame = np.zeros((40, 60, 4), np.uint8)  # alpha is dropped
    for _ in range(3):
        det.detect(frame)
    t = det.last_timing
    assert isinstance(t, StageTimes) and min(t.preprocess_ms, t.inference_ms, t.postprocess_ms) > 0
    assert t.total_ms == pytest.approx(t.preprocess_ms + t.inference_ms + t.postprocess_ms)
    med = det.timings.median()
    assert len(det.timings) == det.timings.count == 3 and set(med) == {"preprocess_ms", "inference_ms",
                                                                        "postprocess_ms", "total_ms"}
    assert det.timings.to_dict()["frames"] == 3
    det.timings.reset()
    assert len(det.timings) == 0 and det.timings.count == 0


def test_timings_medians_window_and_percentiles():
    t = Timings(window=3)
    for k in range(5):
        t.add(StageTimes(float(k), 10.0 * k, 1.0))
    assert len(t) == 3 and t.count == 5  # the window keeps the last 3: k = 2, 3, 4
    assert t.median() == {"preprocess_ms": 3.0, "inference_ms": 30.0, "postprocess_ms": 1.0, "total_ms": 34.0}
    assert t.percentile(100)["total_ms"] == 45.0 and t.as_array().shape == (3, 3)
    with pytest.raises(ConfigError):
        Timings(window=0)


def test_score_and_labels_override_the_spec(fake):
    model, spec = fake
    det = Detector(model, spec=spec, score_threshold=0.7, labels=["a", "b"])
    found = det.detect(np.zeros((32, 48, 3), np.uint8))
    assert len(found) == 1 and det.class_names(found) == ["b"] and det.spec.score_threshold == 0.7


def test_spec_comes_from_the_manifest(tmp_path):
    from edgecv.manifest import Manifest, manifest_path

    model = make_fake_detector(tmp_path / "m.onnx")
    spec = load_spec(write_fake_spec(tmp_path / "s.yaml", labels=False))
    Manifest(format="onnx", precision="fp32", labels=["x", "y"], extra={"detector": spec.to_dict()}).write(
        manifest_path(model))
    det = Detector(model)  # no spec given: the manifest's, with the manifest's labels
    assert spec_from_manifest(det.model).decoder == "tflite_postprocess"
    found = det.detect(np.zeros((32, 48, 3), np.uint8))
    assert det.class_names(found) == ["y", "x"]


def test_no_spec_anywhere_lists_the_built_in_specs(fake):
    with pytest.raises(ConfigError) as exc:
        Detector(fake[0])
    msg = str(exc.value)
    assert "no detector spec" in msg and "blazeface-short-range" in msg and "ssd-mobilenet-v1-coco" in msg
    assert "\n" not in msg


def test_nan_outputs_are_a_one_line_error(tmp_path, fake):
    model = make_fake_detector(tmp_path / "nan.onnx", nan=True)
    det = Detector(model, spec=fake[1])
    with pytest.raises(BackendError, match=r"nan.onnx: output 'scores' \[1,2\] has 1 NaN value") as exc:
        det.detect(np.zeros((32, 48, 3), np.uint8))
    assert "\n" not in str(exc.value)


def test_a_spec_that_does_not_fit_names_both_sides(fake):
    det = Detector(fake[0], spec="blazeface-short-range")
    with pytest.raises(InputError) as exc:
        det.detect(np.zeros((32, 48, 3), np.uint8))
    msg = str(exc.value)
    assert "'blazeface-short-range' does not fit fake.onnx" in msg and "[1,896,16]" in msg and "[1,2,4]" in msg
    assert "\n" not in msg


def test_bad_arguments(fake):
    model, spec = fake
    with pytest.raises(ConfigError, match="unknown detector spec 'nope'"):
        Detector(model, spec="nope")
    with pytest.raises(ConfigError, match="score threshold"):
        Detector(model, spec=spec, score_threshold=float("nan"))
    with pytest.raises(ConfigError, match="labels"):
        Detector(model, spec=spec, labels="cat")
    with pytest.raises(InputError, match="frame: expected a uint8 frame"):
        Detector(model, spec=spec).detect(np.zeros((32, 48, 3), np.float32))


def test_the_frame_is_not_modified_and_gray_bgr_agree(fake):
    model, spec = fake
    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    keep = rgb.copy()
    a = Detector(model, spec=spec).detect(rgb)
    b = Detector(model, spec=spec, options=FrameOptions(frame_color="BGR")).detect(rgb[..., ::-1].copy())
    np.testing.assert_array_equal(rgb, keep)
    np.testing.assert_allclose(a.xyxy, b.xyxy)


# --- real models ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def golden(shared_data):
    import re

    import cv2

    folder = shared_data / "models"
    text = (folder / "blazeface_golden" / "expected_detection.pbtxt").read_text()
    box = [float(re.search(rf"\b{k}: ([-\d.e]+)", text).group(1)) for k in ("xmin", "ymin", "width", "height")]
    image = cv2.imread(str(folder / "blazeface_golden" / "sergey.png"))  # BGR, 600x600
    return Detector(folder / "face_detection_short_range.tflite", spec="blazeface-short-range"), image, box


@pytest.mark.parametrize(
    "mode, canvas, offset, tol",
    [
        ("stretch", (600, 600), (0, 0), 0.01),  # the image alone: the golden within 1% of its size
        ("letterbox", (600, 600), (0, 0), 0.01),
        ("letterbox", (600, 900), (250, 0), 0.02),  # in a wider or taller frame, letterbox keeps the face's shape
        ("letterbox", (800, 600), (0, 120), 0.02),
    ],
)
def test_blazeface_golden_face_in_frame_pixels(golden, mode, canvas, offset, tol):
    det, image, (x, y, w, h) = golden
    frame = np.full((*canvas, 3), 90, np.uint8)
    ox, oy = offset
    frame[oy : oy + 600, ox : ox + 600] = image
    det = Detector(det.model, spec=det.spec, options=FrameOptions(resize=mode, frame_color="BGR"))
    faces = det.detect(frame)
    assert len(faces) == 1 and det.class_names(faces) == ["face"] and faces.confidence[0] > 0.85
    want = np.array([x, y, x + w, y + h]) * 600 + [ox, oy, ox, oy]
    np.testing.assert_allclose(faces.xyxy[0], want, atol=tol * 600)
    kps = faces.data["keypoints"][0]
    assert kps.shape == (6, 2) and (kps[:, 0] > want[0]).all() and (kps[:, 0] < want[2]).all()


def test_blazeface_stretch_of_a_wide_frame_widens_the_face_by_the_aspect_change(golden):
    det, image, (x, y, w, h) = golden
    frame = np.full((600, 700, 3), 90, np.uint8)
    frame[:, 50:650] = image
    det = Detector(det.model, spec=det.spec, options=FrameOptions(resize="stretch", frame_color="BGR"))
    (x0, y0, x1, y1), = det.detect(frame).xyxy
    # The model sees the face squeezed 6:7 and answers with a square box: in the frame it is 7/6 as wide.
    assert (x0 + x1) / 2 == pytest.approx((x + w / 2) * 600 + 50, abs=12)
    assert (y0 + y1) / 2 == pytest.approx((y + h / 2) * 600, abs=12)
    assert (x1 - x0) / (y1 - y0) == pytest.approx(7 / 6, abs=0.05)


def test_ssd_mobilenet_as_shipped_takes_raw_pixels(shared_data):
    """The quantized SSD (uint8 input, no manifest) runs on raw pixels; labels from its label map."""
    import cv2

    folder = shared_data / "models" / "ssd_mobilenet_v1_coco_quant"
    labels = (folder / "labelmap.txt").read_text().splitlines()
    det = Detector(folder / "detect.tflite", spec="ssd-mobilenet-v1-coco", labels=labels, score_threshold=0.3,
                   options=FrameOptions(frame_color="BGR"))
    assert det.preprocessor.dtype == "uint8"
    image = cv2.imread(str(folder / "table.jpg"))
    found = det.detect(image)
    golden = {line.split()[0].replace("_", " "): [float(v) for v in line.split()[1:5]]
              for line in (folder / "table_results.txt").read_text().splitlines()}
    # Frames shrink with INTER_AREA here (the golden used a bilinear resize): the knife's box is found,
    # but scores and even the class of such a thin object move, so boxes are matched by place.
    names = det.class_names(found)
    for label, box in golden.items():
        x0 = np.maximum(found.xyxy[:, :2], box[:2])
        x1 = np.minimum(found.xyxy[:, 2:], box[2:])
        inter = np.prod(np.clip(x1 - x0, 0, None), axis=1)
        union = np.prod(found.xyxy[:, 2:] - found.xyxy[:, :2], axis=1) + np.prod(np.subtract(box[2:], box[:2])) - inter
        best = int(np.argmax(inter / union))
        assert inter[best] / union[best] > 0.8, (label, found.xyxy.round(1).tolist())
        assert names[best] == label or label == "knife", (label, names)


def test_resolve_spec_keeps_the_given_spec_object(fake):
    from edgecv.model import load

    model = load(fake[0], float_io=True)
    spec = load_spec(fake[1])
    assert resolve_spec(model, spec) is spec
    assert resolve_spec(model, spec, score_threshold=0.1) == dataclasses.replace(spec, score_threshold=0.1)
