"""Detector specs: built-ins, YAML validation with one-line errors, round trips, decode + threshold + NMS."""

import dataclasses
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgecv.detection import DetectorSpec, NmsOptions, load_spec, spec_names
from edgecv.detection.decoders import TflitePostprocessDecoder, YoloDecoder
from edgecv.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]


BUILT_IN = ["blazeface-back", "blazeface-full-range", "blazeface-short-range", "nudenet-320n", "palm-detection",
            "pose-detection", "scene-detector", "ssd-mobilenet-v1-coco"]


def test_built_in_specs_are_listed_and_shipped_as_package_data():
    assert spec_names() == BUILT_IN
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "specs/*.yaml" in package_data["edgecv.detection"]


def test_scene_detector_spec_matches_the_scene_classes_and_the_training_preprocessing():
    from edgecv.scenes import CLASSES

    spec = load_spec("scene-detector")
    assert spec.decoder == "grid" and spec.decoder_options.num_classes == len(CLASSES) == 4
    assert spec.labels == CLASSES
    assert spec.preprocess.mean == (0.0,) and spec.preprocess.std == (255.0,) and spec.preprocess.color == "RGB"


def test_blazeface_spec_describes_mediapipe_settings():
    spec = load_spec("blazeface-short-range")
    assert spec.name == "blazeface-short-range" and spec.decoder == "ssd_anchors"
    assert spec.nms == NmsOptions(iou_threshold=0.3, method="weighted", class_agnostic=False, top_k=None)
    assert spec.score_threshold == 0.5 and spec.labels == ("face",)
    dec = spec.decoder_options
    assert (dec.num_keypoints, dec.num_coords, dec.num_anchors) == (6, 16, 896)
    assert (dec.x_scale, dec.y_scale, dec.w_scale, dec.h_scale) == (128.0,) * 4
    assert dec.sigmoid_score and dec.score_clipping_thresh == 100.0 and dec.reverse_output_order
    assert spec.preprocess.input_range == (-1.0, 1.0) and spec.preprocess.color == "RGB"


def test_ssd_mobilenet_spec():
    spec = load_spec("ssd-mobilenet-v1-coco")
    assert spec.decoder_options == TflitePostprocessDecoder(label_offset=1)
    assert spec.score_threshold == 0.5 and spec.labels is None and spec.nms is None
    assert spec.preprocess is None and spec.color == "RGB"
    # TensorFlow's object detection API resizes SSD inputs without keeping the aspect ratio.
    assert spec.resize == "stretch" and spec.expected_input_size is None and spec.num_classes is None


# name -> (input size, anchors, keypoints, [lo, hi] input range, score threshold, labels): MediaPipe's published
# graphs (palm_detection_cpu, pose_detection_cpu, face_detection_*_range) as read from the mediapipe 0.10.14 wheel.
MEDIAPIPE = [
    ("blazeface-short-range", (128, 128), 896, 6, (-1.0, 1.0), 0.5, ("face",)),
    ("blazeface-full-range", (192, 192), 2304, 6, (-1.0, 1.0), 0.6, ("face",)),
    ("blazeface-back", (256, 256), 896, 6, (-1.0, 1.0), 0.65, ("face",)),
    ("palm-detection", (192, 192), 2016, 7, (0.0, 1.0), 0.5, ("palm",)),
    ("pose-detection", (224, 224), 2254, 4, (-1.0, 1.0), 0.5, ("person",)),
]


@pytest.mark.parametrize("name, size, anchors, keypoints, value_range, score, labels", MEDIAPIPE)
def test_mediapipe_specs_carry_everything_mediapipe_runs_them_with(name, size, anchors, keypoints, value_range, score,
                                                                     labels):
    spec = load_spec(name)
    dec = spec.decoder_options
    assert spec.expected_input_size == size and dec.num_anchors == dec.num_boxes == anchors
    assert dec.num_keypoints == keypoints and dec.num_coords == 4 + 2 * keypoints and dec.num_classes == 1
    assert dec.format == "XYWH" and dec.sigmoid_score and dec.score_clipping_thresh == 100.0
    assert (dec.x_scale, dec.y_scale, dec.w_scale, dec.h_scale) == (float(size[0]),) * 4
    assert spec.preprocess.input_range == value_range and spec.color == "RGB"
    assert spec.score_threshold == score and spec.labels == labels and spec.num_classes == 1
    assert spec.nms.method == "weighted" and spec.nms.iou_threshold == 0.3
    # ImageToTensorCalculator: keep_aspect_ratio true, border_mode BORDER_ZERO (black padding).
    assert spec.resize == "letterbox" and spec.pad_value == 0


def test_the_run_settings_a_spec_carries_round_trip(tmp_path):
    text = """\
decoder: yolo
decoder_options: {layout: v8, num_classes: 2}
labels: [cat, dog]
mean: [0]
std: [255]
color: BGR
resize: letterbox_top_left
pad_value: 0
layout: NCHW
input_size: [320, 256]
"""
    path = tmp_path / "cats.yaml"
    path.write_text(text)
    spec = load_spec(path)
    assert (spec.resize, spec.pad_value, spec.layout, spec.input_size) == ("letterbox_top_left", 0, "NCHW", (320, 256))
    assert spec.expected_input_size == (320, 256) and spec.num_classes == 2
    assert DetectorSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    # Left out, each is None: the model's own layout and size, the caller's (or the default) resize and padding.
    bare = DetectorSpec(decoder="yolo", decoder_options={})
    assert (bare.resize, bare.pad_value, bare.layout, bare.input_size, bare.num_classes) == (None,) * 5


@pytest.mark.parametrize("name", ["blazeface-short-range", "ssd-mobilenet-v1-coco"])
def test_to_dict_round_trips_through_json_and_yaml(name, tmp_path):
    spec = load_spec(name)
    d = spec.to_dict()
    assert DetectorSpec.from_dict(json.loads(json.dumps(d))) == spec
    path = tmp_path / "copy.yaml"
    path.write_text(yaml.safe_dump(d))
    assert load_spec(path) == spec


def test_a_spec_file_with_a_labels_file_beside_it(tmp_path):
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "coco.txt").write_text("???\nperson\nbicycle\n\n")
    path = tmp_path / "my.yml"
    path.write_text("decoder: tflite_postprocess\ndecoder_options: {label_offset: 1}\nlabels: labels/coco.txt\nnms: null\n")
    spec = load_spec(path)
    assert spec.name == "my" and spec.labels == ("???", "person", "bicycle")
    assert spec.to_dict()["labels"] == ["???", "person", "bicycle"]
    assert spec.score_threshold == 0.0 and spec.mean is None


GOOD = {"decoder": "yolo", "decoder_options": {"layout": "v8"}}


@pytest.mark.parametrize(
    "content, message",
    [
        ({**GOOD, "treshold": 0.5},
         "unknown key.s. treshold; valid keys: decoder, decoder_options, name, score_threshold, nms, labels, mean, std, "
         "color, resize, pad_value, layout, input_size$"),
        ({**GOOD, "resize": "crop"}, "resize: expected one of stretch, letterbox, letterbox_top_left, got 'crop'"),
        ({**GOOD, "pad_value": 300}, "pad_value: expected an integer in 0..255, got 300"),
        ({**GOOD, "pad_value": 0.5}, "pad_value: expected an integer, got 0.5"),
        ({**GOOD, "layout": "HWC"}, "layout: expected one of NHWC, NCHW, got 'HWC'"),
        ({**GOOD, "input_size": [320]}, r"input_size: expected \[height, width\], two positive integers, got \[320\]"),
        ({**GOOD, "input_size": [320, 0]}, r"input_size: expected \[height, width\], two positive integers"),
        ({**GOOD, "input_size": 320}, "input_size: expected a list, got 320"),
        ({"decoder_options": {}}, "missing key 'decoder' .one of ssd_anchors, tflite_postprocess, yolo."),
        ({"decoder": "retina"}, "unknown decoder 'retina'; valid decoders: ssd_anchors, tflite_postprocess, yolo"),
        ({**GOOD, "decoder_options": {"layot": "v8"}}, "yolo: unknown key.s. layot; valid keys: layout"),
        ({**GOOD, "decoder_options": [1]}, "decoder_options: expected a mapping, got list"),
        ({**GOOD, "nms": {"method": "soft"}}, "nms.method: expected one of hard, weighted, got 'soft'"),
        ({**GOOD, "nms": {"iou": 0.5}}, "nms: unknown key.s. iou; valid keys: iou_threshold, method, class_agnostic, top_k"),
        ({**GOOD, "nms": {"iou_threshold": 2}}, r"nms.iou_threshold: expected a number in \[0, 1\], got 2.0"),
        ({**GOOD, "nms": {"top_k": 0}}, "nms.top_k: expected a positive integer or null, got 0"),
        ({**GOOD, "score_threshold": "high"}, ": score_threshold: expected a number, got 'high'"),
        ({**GOOD, "mean": [127.5]}, "mean/std: expected both or neither"),
        ({**GOOD, "mean": [1, 2], "std": [1, 2]}, "mean/std: expected 1 or 3 values each"),
        ({**GOOD, "mean": [0], "std": [0]}, "std: expected non-zero values"),
        ({**GOOD, "mean": 127.5, "std": 127.5}, ": mean: expected a list, got 127.5"),
        ({**GOOD, "color": "CMYK"}, "color: expected one of RGB, BGR, GRAY, got 'CMYK'"),
        ({**GOOD, "labels": "absent.txt"}, "labels: labels file not found: .*absent.txt"),
        ({**GOOD, "labels": [1, 2]}, r": labels\[0\]: expected a string, got 1"),
        ([1, 2], "expected a mapping, got list"),
    ],
)
def test_bad_spec_files_give_one_line_config_errors(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError, match=message) as info:
        load_spec(path)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"detector spec {path}: ")


@pytest.mark.parametrize(
    "name, message",
    [
        ("blazeface", "unknown detector spec 'blazeface'; built-in specs: " + ", ".join(BUILT_IN)),
        ("absent.yaml", "detector spec not found: absent.yaml"),
    ],
)
def test_unknown_specs(name, message):
    with pytest.raises(ConfigError, match=message):
        load_spec(name)


def test_unreadable_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("decoder: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read detector spec .*broken.yaml") as info:
        load_spec(path)
    assert "\n" not in str(info.value)


def test_specs_are_built_in_python_too():
    spec = DetectorSpec(decoder="yolo", decoder_options={"num_classes": 2}, labels=["cat", "dog"], mean=[0, 0, 0],
                        std=[255, 255, 255])
    assert spec.decoder_options == YoloDecoder(num_classes=2)
    assert spec.labels == ("cat", "dog") and spec.mean == (0.0, 0.0, 0.0)
    assert spec.preprocess.input_range == (0.0, 1.0)
    message = "decoder_options: expected YoloDecoder options for decoder 'yolo', got 'TflitePostprocessDecoder'"
    with pytest.raises(ConfigError, match=message):
        DetectorSpec(decoder="yolo", decoder_options=TflitePostprocessDecoder())
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.score_threshold = 0.9


def test_detect_decodes_thresholds_and_suppresses():
    # v8 layout, 2 classes, 6 candidates in a 100x100 input (cx, cy, w, h, class scores).
    rows = np.array([
        [20, 20, 10, 10, 0.9, 0.0],  # cat
        [21, 20, 10, 10, 0.8, 0.0],  # cat, overlaps the first: suppressed
        [21, 20, 10, 10, 0.0, 0.7],  # dog in the same place: kept (class-aware)
        [70, 70, 10, 10, 0.1, 0.2],  # too weak
        [70, 70, 20, 20, 0.6, 0.0],  # cat
        [72, 70, 20, 20, 0.5, 0.0],  # cat overlapping the previous: suppressed
    ], np.float32)
    outputs = [rows.T[None]]
    spec = DetectorSpec(decoder="yolo", decoder_options={"layout": "v8"}, score_threshold=0.3,
                        nms=NmsOptions(iou_threshold=0.5), labels=("cat", "dog"))
    det = spec.detect(outputs, input_size=(100, 100))
    np.testing.assert_allclose(det.confidence, [0.9, 0.7, 0.6], rtol=1e-6)
    assert spec.class_names(det) == ["cat", "dog", "cat"]
    np.testing.assert_allclose(det.xyxy, [[15, 15, 25, 25], [16, 15, 26, 25], [60, 60, 80, 80]], atol=1e-4)
    agnostic = dataclasses.replace(spec, nms=NmsOptions(iou_threshold=0.5, class_agnostic=True, top_k=2))
    assert spec.class_names(agnostic.detect(outputs, input_size=(100, 100))) == ["cat", "cat"]
    no_nms = dataclasses.replace(spec, nms=None)
    assert len(no_nms.detect(outputs, input_size=(100, 100))) == 5
    weighted = dataclasses.replace(spec, nms=NmsOptions(iou_threshold=0.5, method="weighted"))
    first = weighted.detect(outputs, input_size=(100, 100)).xyxy[0]
    np.testing.assert_allclose(first, [15 + 0.8 / 1.7, 15, 25 + 0.8 / 1.7, 25], atol=1e-4)
    assert DetectorSpec(decoder="yolo", decoder_options={}).class_names(det) == ["0", "1", "0"]
