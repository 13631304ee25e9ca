"""The built-in detector: its training targets decode back to the truth, its losses, its graph, its weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgecv.converters.builtin_detector import INPUT_SIZE, STRIDE, WEIGHTS, encode_targets
from edgecv.detection import Detections, load_spec, match_detections
from edgecv.scenes import CLASSES, scene_frames

BASELINES = json.loads((Path(__file__).resolve().parents[1] / "baselines.json").read_text())


def test_targets_decode_back_to_the_ground_truth():
    """Encoding the truth as a perfect model output and decoding it with the spec gives the truth back."""
    _, truth = scene_frames(40, seed=7)
    scores, boxes = encode_targets(truth, num_classes=len(CLASSES))
    spec = load_spec("scene-detector")
    rows, cols = INPUT_SIZE[0] // STRIDE, INPUT_SIZE[1] // STRIDE
    assert scores.shape == (40, rows, cols, 1 + len(CLASSES)) and boxes.shape == (40, rows, cols, 4)
    found = total = 0
    for i, gt in enumerate(truth):
        det = spec.detect([scores[i:i + 1], boxes[i:i + 1]], input_size=INPUT_SIZE)
        match = match_detections(gt, det, iou_threshold=0.99)
        found += match.tp
        total += len(gt)
        # every decoded box is one of the truth's, with its class
        m = match_detections(det, gt, iou_threshold=0.99)
        assert m.tp == len(det), i
    # an object whose every cell went to a smaller one in front of it cannot come back; that is rare
    assert found >= 0.97 * total


def test_each_positive_cell_lies_in_its_box_and_the_smallest_box_wins():
    gt = Detections(np.array([[20, 20, 100, 100], [36, 36, 68, 68]], np.float32), [1, 1], [0, 2])
    scores, boxes = encode_targets([gt], num_classes=4)
    centre = (np.arange(INPUT_SIZE[0] // STRIDE) + 0.5) * STRIDE  # 4, 12, 20, ...
    r, c = np.nonzero(scores[0, ..., 0])
    assert np.all((centre[c] > 20) & (centre[c] < 100) & (centre[r] > 20) & (centre[r] < 100))
    # the small box claims its central half (centres within 8 px of 52: 44, 52, 60); the big one the rest
    small = (np.abs(centre[c] - 52) <= 8) & (np.abs(centre[r] - 52) <= 8)
    assert small.sum() == 9 and np.all(scores[0, r[small], c[small], 3] == 1)  # class 2 -> channel 3
    assert np.all(scores[0, r[~small], c[~small], 1] == 1) and np.all(scores[0, r[~small], c[~small], 3] == 0)
    # distances in strides reproduce the box from the cell centre
    l, t, rr, b = boxes[0, r[~small], c[~small]].T * STRIDE
    np.testing.assert_allclose(centre[c[~small]] - l, 20, atol=1e-4)
    np.testing.assert_allclose(centre[r[~small]] + b, 100, atol=1e-4)


def test_an_object_smaller_than_a_cell_still_gets_its_centre_cell():
    gt = Detections(np.array([[81.0, 41.0, 83.0, 43.0]], np.float32), [1], [1])
    scores, _ = encode_targets([gt], num_classes=4)
    assert np.argwhere(scores[0, ..., 0]).tolist() == [[42 // STRIDE, 82 // STRIDE]]


def test_loss_is_zero_for_a_perfect_output_and_falls_with_better_scores_and_boxes():
    tf = pytest.importorskip("tensorflow")
    from edgecv.converters.builtin_detector import detector_loss

    _, truth = scene_frames(4, seed=3)
    scores, boxes = encode_targets(truth, num_classes=4)
    loss = detector_loss()

    def of(s, b):
        return float(loss(tf.constant(np.concatenate([scores, boxes], -1)), tf.constant(np.concatenate([s, b], -1))))

    assert of(scores, boxes) == pytest.approx(0.0, abs=1e-3)
    assert of(scores, boxes * 1.5) > 0.1
    good = np.clip(scores, 0.05, 0.95)
    assert of(good, boxes) < of(np.full_like(scores, 0.5), boxes)
    # objectness is scored against the IoU of the cell's predicted box (1 / 1.5**2 here), not against 1
    modest = scores.copy()
    modest[..., 0] *= 1 / 1.5**2
    assert of(modest, boxes * 1.5) < of(scores, boxes * 1.5)


def test_the_graph_uses_only_ops_every_int8_backend_has():
    pytest.importorskip("tensorflow")
    from edgecv.converters.builtin_detector import build_detector

    model = build_detector()
    kinds = {type(layer).__name__ for layer in model.layers}
    assert kinds <= {"InputLayer", "Conv2D", "DepthwiseConv2D", "BatchNormalization", "ReLU", "UpSampling2D", "Add", "Activation"}
    assert [tuple(o.shape) for o in model.outputs] == [(None, 20, 20, 5), (None, 20, 20, 4)]
    assert model.count_params() < 1_000_000


@pytest.mark.skipif(not WEIGHTS.is_file(), reason="built-in detector weights not committed yet")
def test_committed_weights_keep_the_map_baseline():
    pytest.importorskip("pycocotools")
    import keras

    from edgecv.converters.builtin_detector import evaluate_detector

    assert WEIGHTS.stat().st_size < 5 * 1024 * 1024
    metrics = evaluate_detector(keras.saving.load_model(WEIGHTS), count=200, seed=1000)
    assert metrics.map50 >= BASELINES["scene_detector_map50_seed1000_200"] - 0.01
    assert metrics.map >= BASELINES["scene_detector_map_seed1000_200"] - 0.01


@pytest.mark.workstation
@pytest.mark.skipif(not WEIGHTS.is_file(), reason="built-in detector weights not committed yet")
def test_committed_detector_goes_to_int8_in_every_format_and_keeps_its_map(tmp_path):
    pytest.importorskip("pycocotools")
    from dataclasses import replace

    import keras

    import edgecv
    from edgecv.converters.builtin_detector import PREPROCESS, SPEC, detect_frames, make_frames
    from edgecv.converters.export import ExportOptions, export
    from edgecv.detection.evaluate import evaluate_detections

    calib, _ = make_frames(100, seed=2000)
    images, truth = make_frames(100, seed=1000)
    np.save(tmp_path / "calib.npy", calib)
    report = export(WEIGHTS, to=("tflite", "onnx", "openvino"), quant="int8", calib=tmp_path / "calib.npy",
                    detector=SPEC, max_drop=10.0, preprocess=PREPROCESS, labels=list(CLASSES), out=tmp_path / "out", name="det",
                    options=ExportOptions(bench_runs=0))
    passed = {a.format: a.path for a in report.artifacts if a.status == "passed" and a.path is not None}
    assert set(passed) == {"tflite", "onnx", "openvino"}, [(a.format, a.status, a.reason) for a in report.artifacts]
    spec = replace(load_spec(SPEC), score_threshold=0.05)
    reference = evaluate_detections(truth, detect_frames(keras.saving.load_model(WEIGHTS), images)).map
    for fmt, path in passed.items():
        model = edgecv.load(path, float_io=True)
        found = [spec.detect(model.run(f[None].astype(np.float32) / 255.0), input_size=INPUT_SIZE) for f in images]
        assert evaluate_detections(truth, found).map >= reference - 0.02, fmt
