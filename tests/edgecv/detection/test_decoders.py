"""Decoders on hand-made tensors (every layout and option), and on the real BlazeFace and SSD models."""

import dataclasses
import re

import numpy as np
import pytest

import edgecv
from edgecv.detection import DECODERS, Detections, load_spec, match_detections
from edgecv.detection.anchors import SsdAnchorOptions
from edgecv.detection.decoders import (
    GridDecoder,
    SsdAnchorsDecoder,
    TflitePostprocessDecoder,
    YoloDecoder,
    YoloDflDecoder,
    get_decoder,
    make_decoder,
)
from edgecv.detection.decoders.yolo_dfl import anchor_points
from edgecv.errors import ConfigError, InputError

f32 = np.float32


def test_registry_lists_every_decoder_and_rejects_unknown_names():
    assert sorted(DECODERS) == ["grid", "ssd_anchors", "tflite_postprocess", "yolo", "yolo_dfl"]
    for name, cls in DECODERS.items():
        assert cls.name == name and callable(cls.from_dict) and callable(cls.decode)
    with pytest.raises(ConfigError, match="unknown decoder 'retina'; valid decoders: ssd_anchors, tflite_postprocess, yolo, yolo_dfl, grid"):
        get_decoder("retina")


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("yolo", {"bogus": 1}, "yolo: unknown key.s. bogus; valid keys: layout, num_classes, normalized, min_score_thresh"),
        ("yolo", {"layout": "v7"}, "yolo.layout: expected one of auto, v8, v5, got 'v7'"),
        ("yolo", {"normalized": "yes"}, "yolo.normalized: expected true or false, got 'yes'"),
        ("yolo", {"num_classes": 0}, "yolo.num_classes: expected a positive integer or null, got 0"),
        ("tflite_postprocess", {"label_offset": 1.5}, "tflite_postprocess.label_offset: expected an integer, got 1.5"),
        ("tflite_postprocess", [1], "tflite_postprocess: expected a mapping, got list"),
        ("ssd_anchors", {}, "ssd_anchors: missing key.s. anchors"),
        ("grid", {"num_classes": 3}, "grid.num_classes: expected a positive integer other than 3"),
        ("yolo_dfl", {"reg_max": 1}, "yolo_dfl.reg_max: expected an integer above 1, got 1"),
        ("yolo_dfl", {"strides": [8, 0]}, r"yolo_dfl.strides: expected a list of positive integers, got \[8, 0\]"),
        ("yolo_dfl", {"strides": 8}, "yolo_dfl.strides: expected a list, got 8"),
        ("yolo_dfl", {"min_score_thresh": -1}, r"yolo_dfl.min_score_thresh: expected a number in \[0, 1\] or null"),
        ("grid", {"min_score_thresh": 2}, r"grid.min_score_thresh: expected a number in \[0, 1\] or null, got 2"),
        ("ssd_anchors", {"anchors": {"num_layers": 1}}, "ssd_anchors.anchors: missing key.s. input_size_height"),
        ("ssd_anchors", {"anchors": {"input_size_height": 8, "input_size_width": 8, "min_scale": 0.1, "max_scale": 0.2,
                                     "num_layers": 1, "strides": "8"}}, "ssd_anchors.anchors.strides: expected a list"),
    ],
)
def test_bad_decoder_options_give_one_line_config_errors(name, options, message):
    with pytest.raises(ConfigError, match=message) as info:
        make_decoder(name, options)
    assert "\n" not in str(info.value)


def test_decoder_options_round_trip_through_dicts():
    cases = [("yolo", {"layout": "v5", "num_classes": 3, "normalized": True}), ("tflite_postprocess", {"label_offset": 1}),
             ("grid", {"num_classes": 4, "min_score_thresh": None}),
             ("yolo_dfl", {"reg_max": 8, "strides": [16, 32], "num_classes": 3, "min_score_thresh": 0.1})]
    for name, options in cases:
        dec = make_decoder(name, options)
        assert type(dec).from_dict(dec.to_dict()) == dec
    spec = load_spec("blazeface-short-range")
    dec = spec.decoder_options
    assert SsdAnchorsDecoder.from_dict(dec.to_dict()) == dec and dec.num_anchors == 896


# --- ssd_anchors ---------------------------------------------------------------------------------------------

# A 2x2 grid of fixed-size anchors on a 16x16 input: centres (4,4), (12,4), (4,12), (12,12) in pixels.
GRID = SsdAnchorOptions(input_size_height=16, input_size_width=16, min_scale=0.5, max_scale=0.5, num_layers=1,
                        strides=(8,), interpolated_scale_aspect_ratio=0.0, fixed_anchor_size=True)


def ssd(**kw) -> SsdAnchorsDecoder:
    base = dict(anchors=GRID, reverse_output_order=True, x_scale=16, y_scale=16, w_scale=16, h_scale=16,
                num_keypoints=1, sigmoid_score=True)
    base.update(kw)
    return SsdAnchorsDecoder(**base)


def test_ssd_anchors_box_coder_and_keypoints_in_pixels():
    raw = np.zeros((1, 4, 6), f32)
    raw[0, 1] = [2, -1, 6, 4, 1, 3]  # anchor (12, 4): dx 2, dy -1, w 6, h 4, keypoint offset (1, 3)
    raw[0, 2] = [0, 0, 8, 8, -2, 0]
    logits = np.array([[[-1.0], [2.0], [0.0], [-30.0]]], f32)
    det = ssd().decode([raw, logits], input_size=(16, 16))
    assert len(det) == 4
    np.testing.assert_allclose(det.xyxy[1], [14 - 3, 3 - 2, 14 + 3, 3 + 2], atol=1e-5)
    np.testing.assert_allclose(det.xyxy[2], [0, 8, 8, 16], atol=1e-5)
    np.testing.assert_allclose(det.data["keypoints"][1], [[13, 7]], atol=1e-5)
    np.testing.assert_allclose(det.data["keypoints"][2], [[2, 12]], atol=1e-5)
    np.testing.assert_allclose(det.confidence, 1 / (1 + np.exp(-logits[0, :, 0])), rtol=1e-6)
    assert det.class_id.tolist() == [0, 0, 0, 0]
    # Outputs are found by shape, whatever their order; a larger input scales the relative boxes.
    wide = ssd().decode([logits, raw], input_size=(32, 64))
    np.testing.assert_allclose(wide.xyxy[2], [0, 16, 32, 32], atol=1e-4)


def test_ssd_anchors_default_order_is_y_x_h_w_and_sizes_can_be_exponential():
    raw = np.zeros((1, 4, 4), f32)
    raw[0, 0] = [-1, 2, np.log(4.0) * 16, np.log(2.0) * 16]  # y, x, log h, log w
    dec = ssd(reverse_output_order=False, apply_exponential_on_box_size=True, num_keypoints=0)
    det = dec.decode([raw, np.zeros((1, 4, 1), f32)], input_size=(16, 16))
    # Anchor (4, 4) px, w = h = 1 (relative): centre (6, 3) px, h = 4 * 16 px, w = 2 * 16 px.
    np.testing.assert_allclose(det.xyxy[0], [6 - 16, 3 - 32, 6 + 16, 3 + 32], atol=1e-4)
    assert det.data == {}


def test_ssd_anchors_scores_clipping_classes_and_threshold():
    raw = np.zeros((1, 4, 6), f32)
    logits = np.array([[[1.0, 3.0], [200.0, -5.0], [-1.0, -2.0], [0.0, 0.0]]], f32)
    det = ssd(score_clipping_thresh=2.0).decode([raw, logits], input_size=(16, 16))
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    np.testing.assert_allclose(det.confidence, [sig(2.0), sig(2.0), sig(-1.0), 0.5], rtol=1e-6)
    assert det.class_id.tolist() == [1, 0, 0, 0]
    kept = ssd(min_score_thresh=0.6).decode([raw, logits], input_size=(16, 16))
    assert kept.class_id.tolist() == [1, 0] and len(kept.data["keypoints"]) == 2
    plain = ssd(sigmoid_score=False).decode([raw, logits], input_size=(16, 16))
    np.testing.assert_allclose(plain.confidence, [3.0, 200.0, -1.0, 0.0])
    # Scores may also come as [1, A].
    flat = ssd().decode([raw, logits[..., 0]], input_size=(16, 16))
    np.testing.assert_allclose(flat.confidence, sig(logits[0, :, 0]), rtol=1e-6)


def test_ssd_anchors_box_format_xyxy_is_distances_from_the_anchor_centre():
    raw = np.zeros((1, 4, 6), f32)
    raw[0, 1] = [2, 1, 4, 3, 1, -2]  # anchor (12, 4): left 2, top 1, right 4, bottom 3; keypoint (x, y)
    det = ssd(box_format="XYXY").decode([raw, np.zeros((1, 4, 1), f32)], input_size=(16, 16))
    np.testing.assert_allclose(det.xyxy[1], [12 - 2, 4 - 1, 12 + 4, 4 + 3], atol=1e-5)
    np.testing.assert_allclose(det.data["keypoints"][1], [[13, 2]], atol=1e-5)
    # box_format wins over reverse_output_order; without it, reverse_output_order picks XYWH over YXHW.
    assert ssd(box_format="YXHW").format == "YXHW" and ssd().format == "XYWH"
    assert ssd(reverse_output_order=False).format == "YXHW"


def test_ssd_anchors_class_filters_flip_and_degenerate_boxes():
    raw = np.zeros((1, 4, 6), f32)
    raw[0, :, 2:4] = 4  # 4x4 boxes
    raw[0, 3, 2] = -1  # a negative width: dropped, as MediaPipe does
    logits = np.array([[[3.0, 1.0], [3.0, 1.0], [-1.0, 2.0], [0.0, 0.0]]], f32)
    assert ssd().decode([raw, logits], input_size=(16, 16)).class_id.tolist() == [0, 0, 1]
    allowed = ssd(allow_classes=[1]).decode([raw, logits], input_size=(16, 16))
    assert allowed.class_id.tolist() == [1, 1, 1]
    np.testing.assert_allclose(allowed.confidence[0], 1 / (1 + np.exp(-1.0)), rtol=1e-6)
    assert ssd(ignore_classes=[1]).decode([raw, logits], input_size=(16, 16)).class_id.tolist() == [0, 0, 0]
    flipped = ssd(flip_vertically=True).decode([raw, logits], input_size=(16, 16))
    plain = ssd().decode([raw, logits], input_size=(16, 16))
    np.testing.assert_allclose(flipped.xyxy[:, [1, 3]], 16 - plain.xyxy[:, [3, 1]], atol=1e-5)
    np.testing.assert_allclose(flipped.data["keypoints"][..., 1], 16 - plain.data["keypoints"][..., 1], atol=1e-5)
    # Clipping applies to logits that go through the sigmoid, as in MediaPipe; plain scores are left alone.
    big = np.array([[[50.0], [0.0], [0.0], [0.0]]], f32)
    assert ssd(sigmoid_score=False, score_clipping_thresh=2.0).decode([raw, big], input_size=(16, 16)).confidence[0] == 50


@pytest.mark.parametrize(
    "options, message",
    [
        ({"num_boxes": 5}, r"ssd_anchors.num_boxes: expected 4, the number of anchors the anchor options make, got 5"),
        ({"box_format": "CXCYWH"}, "ssd_anchors.box_format: expected one of YXHW, XYWH, XYXY or null, got 'CXCYWH'"),
        ({"allow_classes": [0], "ignore_classes": [1]}, "ssd_anchors.allow_classes/ignore_classes: expected at most one"),
        ({"num_classes": 0}, "ssd_anchors.num_classes: expected a positive integer or null, got 0"),
        ({"max_results": 10}, "ssd_anchors: unknown key.s. max_results"),
    ],
)
def test_ssd_anchors_bad_options(options, message):
    base = {"anchors": dataclasses.asdict(GRID), "num_keypoints": 1}
    with pytest.raises(ConfigError, match=message):
        SsdAnchorsDecoder.from_dict({**base, **options})


def test_ssd_anchors_num_classes_must_match_the_scores():
    with pytest.raises(InputError, match=r"ssd_anchors: expected scores for num_classes=2, got \[1,4,1\]"):
        ssd(num_classes=2).decode([np.zeros((1, 4, 6), f32), np.zeros((1, 4, 1), f32)], input_size=(16, 16))


@pytest.mark.parametrize(
    "outputs, message",
    [
        ([np.zeros((1, 4, 6), f32)],
         r"ssd_anchors: expected outputs \[1,4,6\] \(boxes\) and \[1,4,C\] \(scores\), got \[1,4,6\]$"),
        ([np.zeros((1, 5, 6), f32), np.zeros((1, 5, 1), f32)], r"expected outputs \[1,4,6\] .* got \[1,5,6\], \[1,5,1\]"),
        ([np.zeros((1, 4, 16), f32), np.zeros((1, 4, 1), f32)], r"expected outputs \[1,4,6\]"),
        ([np.zeros((2, 4, 6), f32), np.zeros((2, 4, 1), f32)], r"expected outputs of one image \(batch 1\)"),
        ([np.zeros((1, 4, 6), np.uint8), np.zeros((1, 4, 1), np.uint8)],
         r"expected float outputs \(load the model with float_io=True\), got uint8"),
        (np.zeros((1, 4, 6), f32), "expected a list of output arrays, got ndarray"),
    ],
)
def test_ssd_anchors_wrong_outputs_give_one_line_errors(outputs, message):
    with pytest.raises(InputError, match=message) as info:
        ssd().decode(outputs, input_size=(16, 16))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("size", [(16,), (0, 16), "16x16", None])
def test_bad_input_size(size):
    with pytest.raises(InputError, match="input_size"):
        ssd().decode([np.zeros((1, 4, 6), f32), np.zeros((1, 4, 1), f32)], input_size=size)


# --- tflite_postprocess ---------------------------------------------------------------------------------------


def postprocess_outputs():
    boxes = np.array([[[0.1, 0.2, 0.5, 0.6], [0.0, 0.5, 1.0, 1.0], [0.3, 0.3, 0.4, 0.4]]], f32)
    classes = np.array([[0.0, 60.0, 3.0]], f32)
    scores = np.array([[0.75, 0.5, 0.25]], f32)
    return boxes, classes, scores, np.array([2.0], f32)


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (3, 2, 0, 1), (2, 0, 3, 1), (1, 3, 2, 0)])
def test_tflite_postprocess_finds_tensors_by_shape_and_content(order):
    outs = postprocess_outputs()
    det = TflitePostprocessDecoder(label_offset=1).decode([outs[i] for i in order], input_size=(100, 200))
    assert len(det) == 2  # count, not the padded length
    np.testing.assert_allclose(det.xyxy, [[40, 10, 120, 50], [100, 0, 200, 100]], atol=1e-4)
    np.testing.assert_allclose(det.confidence, [0.75, 0.5])
    assert det.class_id.tolist() == [1, 61]  # labelmap lines: 0 is '???', 1 is 'person', 61 'dining table'


def test_tflite_postprocess_keeps_the_op_order_when_content_cannot_tell():
    boxes, _, _, _ = postprocess_outputs()
    classes, scores = np.array([[1.0, 0.0, 0.0]], f32), np.array([[1.0, 1.0, 0.0]], f32)
    det = TflitePostprocessDecoder().decode([boxes, classes, scores, np.array([3.0], f32)], input_size=(10, 10))
    assert det.class_id.tolist() == [1, 0, 0] and det.confidence.tolist() == [1.0, 1.0, 0.0]
    clipped = TflitePostprocessDecoder().decode([boxes, classes, scores, np.array([50.0], f32)], input_size=(10, 10))
    assert len(clipped) == 3


@pytest.mark.parametrize(
    "drop, extra, message",
    [
        (3, None, r"expected outputs \[1,N,4\] \(boxes\), \[1,N\] \(classes\), \[1,N\] \(scores\) and \[1\] \(count\), "
                  r"got \[1,3,4\], \[1,3\], \[1,3\]$"),
        (None, np.zeros((1, 3), f32), r"got \[1,3,4\], \[1,3\], \[1,3\], \[1\], \[1,3\]"),
        (2, np.zeros((1, 4), f32), r"expected outputs \[1,N,4\]"),
    ],
)
def test_tflite_postprocess_wrong_outputs(drop, extra, message):
    outs = list(postprocess_outputs())
    if drop is not None:
        outs.pop(drop)
    if extra is not None:
        outs.append(extra)
    with pytest.raises(InputError, match=message):
        TflitePostprocessDecoder().decode(outs, input_size=(10, 10))


# --- yolo -----------------------------------------------------------------------------------------------------

# Three candidates, two classes, in a 200 (high) x 400 (wide) input: (cx, cy, w, h) in pixels.
YOLO_BOXES = np.array([[100, 50, 40, 20], [300, 150, 100, 60], [200, 100, 10, 10]], np.float64)
YOLO_CLASS = np.array([[0.9, 0.1], [0.2, 0.6], [0.05, 0.01]])
YOLO_OBJ = np.array([0.5, 1.0, 0.2])
YOLO_XYXY = [[80, 40, 120, 60], [250, 120, 350, 180], [195, 95, 205, 105]]
SCALE = np.array([400, 200, 400, 200], np.float64)


def yolo_tensor(layout: str, normalized: bool) -> np.ndarray:
    boxes = YOLO_BOXES / SCALE if normalized else YOLO_BOXES
    if layout == "v8":
        return np.concatenate([boxes, YOLO_CLASS], 1).T[None].astype(f32)  # [1, 4+nc, N]
    return np.concatenate([boxes, YOLO_OBJ[:, None], YOLO_CLASS], 1)[None].astype(f32)  # [1, N, 5+nc]


@pytest.mark.parametrize("layout", ["v8", "v5"])
@pytest.mark.parametrize("normalized", [False, True])
@pytest.mark.parametrize("configured", ["auto", "layout", "num_classes"])
def test_yolo_layouts_and_coordinates(layout, normalized, configured):
    out = yolo_tensor(layout, normalized)
    # Auto needs more candidates than values per candidate to tell the layouts apart: pad with empty rows.
    pad_axis = 2 if layout == "v8" else 1
    out = np.concatenate([out, np.zeros(out.shape[:pad_axis] + (10,) + out.shape[pad_axis + 1 :], f32)], axis=pad_axis)
    options = {"normalized": normalized, **({"layout": layout} if configured == "layout" else {}),
               **({"num_classes": 2} if configured == "num_classes" else {})}
    det = YoloDecoder.from_dict(options).decode([out], input_size=(200, 400))
    assert len(det) == 13
    np.testing.assert_allclose(det.xyxy[:3], YOLO_XYXY, atol=1e-3)
    assert det.class_id[:3].tolist() == [0, 1, 0]
    expected = YOLO_CLASS.max(1) * (YOLO_OBJ if layout == "v5" else 1)
    np.testing.assert_allclose(det.confidence[:3], expected, rtol=1e-6)
    np.testing.assert_array_equal(det.confidence[3:], 0)


def test_yolo_min_score_thresh_drops_candidates_early():
    det = YoloDecoder(layout="v5", min_score_thresh=0.4).decode([yolo_tensor("v5", False)], input_size=(200, 400))
    assert det.class_id.tolist() == [0, 1]
    np.testing.assert_allclose(det.confidence, [0.45, 0.6], rtol=1e-6)


@pytest.mark.parametrize(
    "options, shape, message",
    [
        ({}, (1, 7, 7), r"yolo: output \[1,7,7\] fits both layouts v8 and v5; set layout \(or num_classes\)"),
        ({"num_classes": 2}, (1, 6, 7), r"output \[1,6,7\] fits both layouts"),
        ({"num_classes": 3}, (1, 6, 100),
         r"yolo: expected one output \[1,4\+nc,N\] \(Ultralytics v8/v11\) or \[1,N,5\+nc\] \(YOLOv5\) with nc=3, got \[1,6,100\]"),
        ({"layout": "v5"}, (1, 100, 5), r"yolo: expected one output \[1,N,5\+nc\] \(YOLOv5\), got \[1,100,5\]"),
        ({}, (1, 100), r"expected one output .* got \[1,100\]"),
    ],
)
def test_yolo_wrong_or_ambiguous_outputs(options, shape, message):
    with pytest.raises(InputError, match=message):
        YoloDecoder.from_dict(options).decode([np.zeros(shape, f32)], input_size=(64, 64))


def test_yolo_needs_exactly_one_head():
    with pytest.raises(InputError, match=r"got \[1,6,100\], \[1,6,100\]"):
        YoloDecoder().decode([np.zeros((1, 6, 100), f32)] * 2, input_size=(64, 64))


# --- yolo_dfl: YOLOv8 cut before its DFL ----------------------------------------------------------------------


def dfl_outputs(distances: np.ndarray, scores: np.ndarray, reg_max: int = 16) -> list[np.ndarray]:
    """Bin logits whose softmax expectation is ``distances`` [N, 4] exactly (two neighbouring bins share the
    weight), and ``scores`` [N, nc]: the [1, 4R, N] and [1, nc, N] a cut YOLOv8 gives."""
    n = len(distances)
    logits = np.full((n, 4, reg_max), -1e4)
    low = np.floor(distances).astype(int)
    frac = distances - low
    rows, sides = np.indices((n, 4))
    with np.errstate(divide="ignore"):
        logits[rows, sides, low] = np.log(1 - frac)
        logits[rows, sides, np.minimum(low + 1, reg_max - 1)] = np.log(np.where(frac > 0, frac, 1e-300))
    return [logits.reshape(n, 4 * reg_max).T[None].astype(f32), scores.T[None].astype(f32)]


def test_anchor_points_are_cell_centres_grid_by_grid_with_their_strides():
    points, stride = anchor_points((40, 24), (8, 16))
    assert len(points) == 5 * 3 + 3 * 2 == len(stride)  # ceil(40/16) = 3 rows, ceil(24/16) = 2 columns
    assert points[:4].tolist() == [[0.5, 0.5], [1.5, 0.5], [2.5, 0.5], [0.5, 1.5]]
    assert points[15:17].tolist() == [[0.5, 0.5], [1.5, 0.5]] and stride[14:16].tolist() == [8.0, 16.0]


def test_yolo_dfl_decodes_distances_from_anchor_points_in_strides():
    points, stride = anchor_points((64, 64), (8, 16, 32))
    n = len(points)  # 64 + 16 + 4
    distances = np.full((n, 4), 1.0)
    distances[0] = [0.5, 0.25, 2.0, 3.75]  # anchor (4, 4) px at stride 8
    distances[80] = [1.0, 1.0, 0.5, 0.5]  # the first stride-32 anchor, (16, 16) px
    scores = np.zeros((n, 2))
    scores[0, 1], scores[80, 0] = 0.9, 0.7
    det = YoloDflDecoder(min_score_thresh=0.5).decode(dfl_outputs(distances, scores), input_size=(64, 64))
    np.testing.assert_allclose(det.xyxy, [[0.0, 2.0, 20.0, 34.0], [-16.0, -16.0, 32.0, 32.0]], atol=1e-3)
    assert det.class_id.tolist() == [1, 0]
    np.testing.assert_allclose(det.confidence, [0.9, 0.7], rtol=1e-6)
    every = YoloDflDecoder().decode(dfl_outputs(distances, scores), input_size=(64, 64))
    assert len(every) == n and every.confidence[1:80].max() == 0
    transposed = [np.swapaxes(o, 1, 2) for o in dfl_outputs(distances, scores)][::-1]  # [1,N,C], scores first
    np.testing.assert_allclose(YoloDflDecoder().decode(transposed, input_size=(64, 64)).xyxy, every.xyxy, atol=1e-6)


@pytest.mark.parametrize(
    "options, shapes, message",
    [
        ({}, [(1, 64, 84), (1, 2, 84), (1, 2, 84)], r"yolo_dfl: expected two outputs \[1,64,N\] and \[1,nc,N\] \(or \[1,N,C\]\), got"),
        ({}, [(1, 60, 84), (1, 2, 84)], r"expected two outputs \[1,64,N\]"),
        ({"num_classes": 3}, [(1, 64, 84), (1, 2, 84)], r"\[1,3,N\]"),
        ({}, [(1, 64, 80), (1, 2, 80)], r"yolo_dfl: expected 84 candidates at input 64x64 with strides \[8, 16, 32\], got 80"),
    ],
)
def test_yolo_dfl_wrong_outputs(options, shapes, message):
    with pytest.raises(InputError, match=message):
        YoloDflDecoder.from_dict(options).decode([np.zeros(s, f32) for s in shapes], input_size=(64, 64))


# --- output roles (what an int8 quantizer needs to know about each output slice) ------------------------------


@pytest.mark.parametrize(
    "decoder, shapes, expected",
    [
        (YoloDecoder(), [(1, 84, 2100)], [(0, 1, 0, 4, "box"), (0, 1, 4, 84, "score")]),
        (YoloDecoder(), [(1, 2100, 85)], [(0, 2, 0, 4, "box"), (0, 2, 4, 85, "score")]),
        (YoloDecoder(num_classes=2), [(1, 6, 100)], [(0, 1, 0, 4, "box"), (0, 1, 4, 6, "score")]),
        (YoloDecoder(), [(1, 6, 100), (1, 6, 100)], []),  # two heads: no single layout to name
        (ssd(), [(1, 4, 6), (1, 4, 1)], [(0, 2, 0, 6, "box"), (1, 2, 0, 1, "logit")]),
        (ssd(), [(1, 4, 1), (1, 4, 6)], [(1, 2, 0, 6, "box"), (0, 2, 0, 1, "logit")]),  # found by shape, not order
        (ssd(sigmoid_score=False), [(1, 4, 6), (1, 4, 1)], [(0, 2, 0, 6, "box"), (1, 2, 0, 1, "score")]),
        (ssd(), [(1, 4, 6), (1, 4)], [(0, 2, 0, 6, "box"), (1, 2, 0, 1, "logit")]),  # one score per anchor
        (ssd(), [(1, 5, 6), (1, 5, 1)], []),  # anchors do not match the decoder's grid
        (GridDecoder(), [(1, 8, 8, 4), (1, 8, 8, 3)], [(0, 3, 0, 4, "box"), (1, 3, 0, 3, "score")]),
        (GridDecoder(), [(1, 8, 8, 3), (1, 4, 4, 4)], []),
        (TflitePostprocessDecoder(), [(1, 10, 4), (1, 10), (1, 10), (1,)], []),  # final detections
        (YoloDflDecoder(), [(1, 64, 2100), (1, 4, 2100)], [(1, 1, 0, 4, "score")]),  # bin logits: calibration's
        (YoloDflDecoder(), [(1, 2100, 4), (1, 2100, 64)], [(0, 2, 0, 4, "score")]),  # channels last, either order
        (YoloDflDecoder(), [(1, 64, 2100), (1, 4, 2000)], []),
    ],
)
def test_output_roles_name_the_box_and_score_slices(decoder, shapes, expected):
    roles = decoder.output_roles(shapes)
    assert [(r.output, r.axis, r.start, r.stop, r.kind) for r in roles] == expected


def test_output_role_kind_is_checked():
    from edgecv.detection.decoders.base import OutputRole

    with pytest.raises(InputError, match="expected kind one of box, score, logit, got 'class'"):
        OutputRole(0, 1, 0, 4, "class")


# --- real models ----------------------------------------------------------------------------------------------


def parse_expected_detection(text: str) -> tuple[dict[str, float], np.ndarray]:
    box = {k: float(re.search(rf"\b{k}: ([-\d.e]+)", text).group(1)) for k in ("xmin", "ymin", "width", "height", "score")}
    keypoints = re.findall(r"relative_keypoints \{\s*x: ([-\d.e]+)\s*y: ([-\d.e]+)\s*\}", text)
    return box, np.array(keypoints, np.float64)


@pytest.fixture(scope="module")
def blazeface(shared_data):
    cv2 = pytest.importorskip("cv2")
    folder = shared_data / "models"
    image = cv2.imread(str(folder / "blazeface_golden" / "sergey.png"))[..., ::-1]  # RGB
    expected = parse_expected_detection((folder / "blazeface_golden" / "expected_detection.pbtxt").read_text())
    return cv2, edgecv.load(folder / "face_detection_short_range.tflite"), image, expected


def run_blazeface(model, spec, pixels):
    x = (pixels[None].astype(np.float32) - np.float32(spec.mean[0])) / np.float32(spec.std[0])  # [-1, 1]
    return spec.detect(model.run(x), input_size=(128, 128))


def test_parse_expected_detection_reads_the_golden_file(blazeface):
    _, _, _, (box, keypoints) = blazeface
    assert box == pytest.approx(
        {"xmin": 0.21061149, "ymin": 0.29150677, "width": 0.5657704, "height": 0.5657307, "score": 0.92843366})
    assert keypoints.shape == (6, 2) and keypoints[0].tolist() == pytest.approx([0.37730268, 0.44038114])


@pytest.mark.parametrize(
    "resize, box_tol, score_tol, kp_tol",
    [
        # A plain cv2.resize (bilinear, pixel centres aligned): the golden within the stated tolerance.
        ("resize", 0.01, 0.02, 0.01),
        # MediaPipe's own CPU path, an affine warp that maps the image corners: the golden to 4 decimals.
        ("warp", 0.0005, 0.0005, 0.001),
    ],
)
def test_blazeface_golden_face(blazeface, resize, box_tol, score_tol, kp_tol):
    cv2, model, image, (box, keypoints) = blazeface
    spec = load_spec("blazeface-short-range")
    assert spec.preprocess.input_range == (-1.0, 1.0) and spec.color == "RGB"
    if resize == "resize":
        pixels = cv2.resize(image, (128, 128))
    else:
        s = 128 / image.shape[1]
        pixels = cv2.warpAffine(image, np.float32([[s, 0, 0], [0, s, 0]]), (128, 128), flags=cv2.INTER_LINEAR)
    det = run_blazeface(model, spec, pixels)
    assert len(det) == 1, det  # one face, its anchors merged by weighted NMS
    x0, y0, x1, y1 = det.xyxy[0] / 128
    got = {"xmin": x0, "ymin": y0, "width": x1 - x0, "height": y1 - y0}
    for key, value in got.items():
        assert abs(value - box[key]) < box_tol, (key, value, box[key])
    assert abs(det.confidence[0] - box["score"]) < score_tol
    assert det.class_id.tolist() == [0] and spec.class_names(det) == ["face"]
    kp = det.data["keypoints"][0] / 128
    assert kp.shape == (6, 2)
    np.testing.assert_allclose(kp, keypoints, atol=kp_tol)


def test_blazeface_hard_nms_keeps_the_single_best_anchor(blazeface):
    cv2, model, image, _ = blazeface
    spec = load_spec("blazeface-short-range")
    hard = dataclasses.replace(spec, nms=dataclasses.replace(spec.nms, method="hard"))
    det = run_blazeface(model, hard, cv2.resize(image, (128, 128)))
    x0, y0, x1, y1 = det.xyxy[0] / 128
    # The figure in shared/data/README.md for a plain resize and the top anchor's box.
    got = [x0, y0, x1 - x0, y1 - y0, det.confidence[0]]
    np.testing.assert_allclose(got, [0.213, 0.298, 0.567, 0.567, 0.936], atol=0.002)


def test_ssd_mobilenet_golden_table(shared_data):
    cv2 = pytest.importorskip("cv2")
    folder = shared_data / "models" / "ssd_mobilenet_v1_coco_quant"
    labels = (folder / "labelmap.txt").read_text().splitlines()
    image = cv2.imread(str(folder / "table.jpg"))[..., ::-1]
    height, width = image.shape[:2]
    model = edgecv.load(folder / "detect.tflite")
    outputs = model.run(cv2.resize(image, (300, 300), interpolation=cv2.INTER_LINEAR)[None])
    spec = load_spec("ssd-mobilenet-v1-coco")
    assert spec.score_threshold == 0.5 and spec.labels is None
    # The golden scores are 0.31..0.49, below the spec's 0.5: lower it to see them all.
    spec = dataclasses.replace(spec, labels=tuple(labels), score_threshold=0.3)
    det = spec.detect(outputs, input_size=(height, width))  # boxes straight in image pixels
    names = [n.replace(" ", "_") for n in spec.class_names(det)]
    golden = [line.split() for line in (folder / "table_results.txt").read_text().splitlines()]
    assert {g[0] for g in golden} == {"dining_table", "knife", "cup", "book"}
    assert {g[0] for g in golden} <= set(names)
    ids = {name.replace(" ", "_"): i for i, name in enumerate(labels)}
    ref = Detections(
        xyxy=np.array([[float(v) for v in g[1:5]] for g in golden]),
        confidence=np.array([float(g[5]) for g in golden]),
        class_id=np.array([ids[g[0]] for g in golden]),
    )
    m = match_detections(det, ref, iou_threshold=0.7)
    assert m.fn == 0, (names, det.xyxy.round(1).tolist())
    for p, r in m.pairs:
        assert abs(det.confidence[p] - ref.confidence[r]) < 0.07
        assert names[p] == golden[r][0]
    # At the spec's own threshold, the knife (0.5) is what stays.
    strict = load_spec("ssd-mobilenet-v1-coco").detect(outputs, input_size=(height, width))
    assert [labels[c] for c in strict.class_id] == ["knife"]


# --- grid (the built-in detector's head) ---------------------------------------------------------------------


def _grid_outputs(rows=4, cols=6, nc=4):
    scores = np.zeros((1, rows, cols, 1 + nc), f32)
    boxes = np.zeros((1, rows, cols, 4), f32)
    scores[0, 2, 3] = [0.8, 0.1, 0.1, 0.9, 0.2][: 1 + nc]  # objectness 0.8, class 2 at 0.9
    boxes[0, 2, 3] = [1.0, 0.5, 2.0, 1.5]  # left, top, right, bottom in strides
    return scores, boxes


@pytest.mark.parametrize("swap", [False, True])
def test_grid_decodes_cells_to_pixel_boxes_whatever_the_output_order(swap):
    scores, boxes = _grid_outputs()
    outputs = [boxes, scores] if swap else [scores, boxes]
    det = GridDecoder(min_score_thresh=0.5).decode(outputs, input_size=(32, 48))  # stride 8
    # cell (row 2, col 3) has its centre at x = 3.5 * 8 = 28, y = 2.5 * 8 = 20
    np.testing.assert_allclose(det.xyxy, [[28 - 8, 20 - 4, 28 + 16, 20 + 12]])
    assert det.class_id.tolist() == [2]
    np.testing.assert_allclose(det.confidence, [0.8 * 0.9], rtol=1e-6)
    assert len(GridDecoder(min_score_thresh=None).decode(outputs, input_size=(32, 48))) == 24


@pytest.mark.parametrize(
    "outputs, options, size, message",
    [
        (lambda s, b: [s], {}, (32, 48), r"expected two outputs, scores \[1,H,W,1\+nc\] and boxes \[1,H,W,4\], got \[1,4,6,5\]"),
        (lambda s, b: [s, b], {"num_classes": 2}, (32, 48), r"scores \[1,H,W,1\+2\]"),
        (lambda s, b: [s[:, :2], b], {}, (32, 48), "must share one grid"),
        (lambda s, b: [s, b], {}, (30, 48), "a 4x6 grid does not divide the 30x48 input"),
        (lambda s, b: [s, b], {}, (32, 32), "strides 8 and 5.33"),
        (lambda s, b: [s, b], {"num_classes": 4}, (32, 48), None),
    ],
)
def test_grid_wrong_outputs_give_one_line_errors(outputs, options, size, message):
    args = outputs(*_grid_outputs())
    if message is None:
        assert len(GridDecoder(**options).decode(args, input_size=size)) == 1
        return
    with pytest.raises(InputError, match=message):
        GridDecoder(**options).decode(args, input_size=size)


@pytest.mark.parametrize(
    "options, shape, want",
    [
        # An Ultralytics export with nms=True: [1, 300, 6] (x0, y0, x1, y1, score, class).
        ({"layout": "v8", "num_classes": 80}, (1, 300, 6), r"\[1,4\+nc,N\] \(Ultralytics v8/v11\) with nc=80"),
        ({"num_classes": 80}, (1, 300, 6), r"\[1,4\+nc,N\] \(Ultralytics v8/v11\) or \[1,N,5\+nc\] \(YOLOv5\) with nc=80"),
        ({"layout": "v8", "num_classes": 1}, (1, 300, 6), r"with nc=1"),  # auto would take it for a v5 head: say v8
        ({"layout": "v8", "num_classes": 1}, (1, 56, 2100), r"with nc=1"),  # a YOLOv8-pose head (4 + 1 + 17 * 3)
        ({"layout": "v8", "num_classes": 80}, (1, 116, 2100), r"with nc=80"),  # a YOLOv8-seg head (4 + 80 + 32)
    ],
)
def test_yolo_with_num_classes_refuses_heads_that_are_not_detection_heads(options, shape, want):
    # docs/specs.md: with layout and num_classes from the export's metadata, other heads are one-line errors.
    dims = ",".join(map(str, shape))
    with pytest.raises(InputError, match=rf"yolo: expected one output .*{want}, got \[{dims}\]$"):
        YoloDecoder(**options).decode([np.zeros(shape, f32)], input_size=(320, 320))
