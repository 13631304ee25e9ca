"""NMS: hard and weighted on hand-made boxes, class handling, top_k, and 10,000 boxes against a reference."""

import importlib

import numpy as np
import pytest

from edgecv.detection import Detections, nms
from edgecv.detection.boxes import box_iou
from edgecv.errors import ConfigError, InputError


def dets(boxes, scores, classes=None, **kw) -> Detections:
    n = len(boxes)
    return Detections(np.asarray(boxes, np.float32), np.asarray(scores, np.float32),
                      np.zeros(n, np.int64) if classes is None else np.asarray(classes), **kw)


# Two overlapping boxes (IoU 90/110 = 0.818) and one far away.
PAIR = [[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]]


def test_hard_nms_keeps_the_best_of_overlapping_boxes_sorted_by_score():
    out = nms(dets(PAIR, [0.8, 0.9, 0.7]), iou_threshold=0.5)
    assert out.xyxy.tolist() == [[1, 0, 11, 10], [50, 50, 60, 60]]
    np.testing.assert_allclose(out.confidence, [0.9, 0.7])
    assert len(nms(dets(PAIR, [0.8, 0.9, 0.7]), iou_threshold=0.85)) == 3  # 0.818 is not above 0.85


def test_suppression_needs_iou_strictly_above_the_threshold():
    half = dets([[0, 0, 10, 10], [0, 0, 10, 5]], [0.9, 0.8])  # IoU exactly 0.5
    assert len(nms(half, iou_threshold=0.5)) == 2
    assert len(nms(half, iou_threshold=0.49)) == 1
    assert len(nms(half, method="weighted", iou_threshold=0.5)) == 2


def test_weighted_nms_averages_boxes_and_keypoints_by_score_and_keeps_the_top_score():
    kp = np.array([[[0, 0]], [[10, 20]], [[5, 5]]], np.float32)
    data = {"keypoints": kp, "tag": np.array([1, 2, 3])}
    det = dets(PAIR, [0.6, 0.2, 0.7], classes=[3, 4, 5], tracker_id=[7, 8, 9], data=data)
    out = nms(det, method="weighted", class_agnostic=True, iou_threshold=0.5)
    assert len(out) == 2
    np.testing.assert_allclose(out.xyxy[0], [50, 50, 60, 60])  # the best box, alone
    np.testing.assert_allclose(out.xyxy[1], [0.25, 0, 10.25, 10], atol=1e-6)  # (0*0.6 + 1*0.2) / 0.8
    np.testing.assert_allclose(out.data["keypoints"][1], [[2.5, 5.0]], atol=1e-6)
    np.testing.assert_allclose(out.confidence, [0.7, 0.6])
    assert out.class_id.tolist() == [5, 3] and out.tracker_id.tolist() == [9, 7]
    assert out.data["tag"].tolist() == [3, 1]  # non-float data: the top detection's value
    assert out.data["keypoints"].dtype == np.float32


def test_weighted_nms_with_zero_scores_keeps_the_top_box():
    out = nms(dets(PAIR[:2], [0.0, 0.0]), method="weighted")
    assert out.xyxy.tolist() == [[0, 0, 10, 10]]


def test_zero_area_boxes_are_kept_not_nan():
    out = nms(dets([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 10]], [0.9, 0.8, 0.7]), method="weighted")
    assert len(out) == 3 and np.isfinite(out.xyxy).all()


@pytest.mark.parametrize("method", ["hard", "weighted"])
def test_class_aware_nms_never_mixes_classes(method):
    det = dets(PAIR, [0.9, 0.8, 0.7], classes=[0, 1, 0])
    aware = nms(det, method=method)
    assert len(aware) == 3
    np.testing.assert_allclose(aware.xyxy, np.asarray(PAIR)[[0, 1, 2]])  # nothing averaged across classes
    agnostic = nms(det, method=method, class_agnostic=True)
    assert len(agnostic) == 2 and agnostic.class_id.tolist() == [0, 0]


@pytest.mark.parametrize("method", ["hard", "weighted"])
def test_top_k_keeps_the_best(method):
    boxes = [[i * 20, 0, i * 20 + 10, 10] for i in range(5)]
    out = nms(dets(boxes, [0.1, 0.5, 0.3, 0.9, 0.2]), method=method, top_k=2)
    np.testing.assert_allclose(out.confidence, [0.9, 0.5])
    assert out.xyxy[:, 0].tolist() == [60, 20]


@pytest.mark.parametrize(
    "kw, error, message",
    [
        ({"method": "soft"}, ConfigError, "unknown NMS method 'soft'; valid methods: hard, weighted"),
        ({"iou_threshold": 1.5}, ConfigError, r"nms iou_threshold: expected a number in \[0, 1\], got 1.5"),
        ({"top_k": 0}, ConfigError, "nms top_k: expected a positive integer or None, got 0"),
        ({"top_k": 2.5}, ConfigError, "nms top_k: expected a positive integer or None"),
    ],
)
def test_bad_options(kw, error, message):
    with pytest.raises(error, match=message):
        nms(dets(PAIR, [0.9, 0.8, 0.7]), **kw)


def test_bad_input_and_empty_input():
    with pytest.raises(InputError, match="nms: expected Detections, got ndarray"):
        nms(np.zeros((3, 4)))
    empty = Detections.empty()
    out = nms(empty, method="weighted")
    assert len(out) == 0 and out is not empty


@pytest.mark.parametrize("method", ["hard", "weighted"])
@pytest.mark.parametrize("class_agnostic", [False, True])
def test_nms_never_mutates_its_input(method, class_agnostic):
    det = dets(PAIR, [0.6, 0.2, 0.7], classes=[0, 0, 1], tracker_id=[1, 2, 3], data={"kp": np.ones((3, 2, 2), np.float32)})
    copies = [det.xyxy.copy(), det.confidence.copy(), det.class_id.copy(), det.tracker_id.copy(), det.data["kp"].copy()]
    out = nms(det, method=method, class_agnostic=class_agnostic)
    out.xyxy[:] = -1
    out.data["kp"][:] = -1
    for before, now in zip(copies, [det.xyxy, det.confidence, det.class_id, det.tracker_id, det.data["kp"]]):
        np.testing.assert_array_equal(now, before)


# --- 10,000 boxes against a plain reference ---------------------------------------------------------------------


def reference_nms(xyxy, scores, classes, thr, method, agnostic):
    """Textbook NMS: one box at a time, IoU by division; class-aware means each class on its own."""
    if not agnostic:
        parts = [reference_nms(xyxy[classes == c], scores[classes == c], None, thr, method, True)
                 for c in np.unique(classes)]
        boxes, weights = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        order = np.argsort(-weights, kind="stable")
        return boxes[order], weights[order]
    remaining = np.argsort(-scores, kind="stable")
    boxes, weights = [], []
    while len(remaining):
        top = remaining[0]
        group = box_iou(xyxy[top : top + 1], xyxy[remaining])[0] > thr
        group[0] = True
        members = remaining[group]
        w = scores[members].astype(np.float64)
        boxes.append(xyxy[top] if method == "hard" else (xyxy[members] * w[:, None]).sum(0) / w.sum())
        weights.append(scores[top])
        remaining = remaining[~group]
    return np.array(boxes).reshape(-1, 4), np.array(weights, np.float32)


def random_detections(n: int, seed: int) -> Detections:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 1000, (n, 2))
    xyxy = np.concatenate([xy, xy + rng.uniform(10, 100, (n, 2))], 1)
    return Detections(xyxy, rng.uniform(0, 1, n), rng.integers(0, 5, n))


@pytest.fixture(scope="module")
def big():
    det = random_detections(10_000, seed=0)
    cache = {}

    def reference(method, class_agnostic):
        key = (method, class_agnostic)
        if key not in cache:
            cache[key] = reference_nms(det.xyxy, det.confidence, det.class_id, 0.5, method, class_agnostic)
        return cache[key]

    return det, reference


@pytest.mark.parametrize("method", ["hard", "weighted"])
@pytest.mark.parametrize("class_agnostic", [False, True])
@pytest.mark.parametrize("path", ["sweep", "box-by-box"])
def test_10000_random_boxes_match_a_reference(big, method, class_agnostic, path, monkeypatch):
    det, reference = big
    if path == "box-by-box":
        # The package exports the function under the module's name, hence import_module.
        monkeypatch.setattr(importlib.import_module("edgecv.detection.nms"), "_MAX_PAIRS", 0)
    out = nms(det, iou_threshold=0.5, method=method, class_agnostic=class_agnostic)
    ref_boxes, ref_scores = reference(method, class_agnostic)
    assert 1000 < len(out) < len(det)  # the case really suppresses, and really keeps many
    assert len(out) == len(ref_boxes)
    np.testing.assert_array_equal(out.confidence, ref_scores)
    np.testing.assert_allclose(out.xyxy, ref_boxes, atol=1e-3)


@pytest.mark.parametrize("n", [1, 2, 5, 20, 63, 64, 90])
@pytest.mark.parametrize("method", ["hard", "weighted"])
def test_a_frames_worth_of_boxes_matches_the_reference(n, method):
    """Below 64 boxes NMS compares every pair at once, from 64 it sweeps: both agree with the reference, also
    on whole-pixel boxes with tied coordinates, duplicates and zero-size boxes."""
    rng = np.random.default_rng(n)
    for trial in range(40):
        xy = rng.integers(0, 120, (n, 2)).astype(np.float64)
        xyxy = np.concatenate([xy, xy + rng.integers(0, 50, (n, 2))], 1)
        xyxy[rng.integers(0, n, n // 4)] = xyxy[0]  # duplicates of one box
        det = Detections(xyxy, (rng.permutation(n) + 1) / n, rng.integers(0, 2, n))  # no tied scores: order is defined
        thr = float(rng.choice([0.0, 0.3, 0.5, 1.0]))
        out = nms(det, iou_threshold=thr, method=method, class_agnostic=bool(trial % 2))
        ref_boxes, ref_scores = reference_nms(det.xyxy, det.confidence, det.class_id, thr, method, bool(trial % 2))
        assert len(out) == len(ref_boxes), (trial, thr)
        np.testing.assert_array_equal(out.confidence, ref_scores)
        np.testing.assert_allclose(out.xyxy, ref_boxes, atol=1e-3)


def test_heavily_overlapping_boxes_take_the_box_by_box_path_and_agree():
    rng = np.random.default_rng(3)
    n = 5000
    base = np.array([100, 100, 200, 200], np.float64)
    det = Detections(base + rng.normal(0, 20, (n, 4)).clip(-40, 40), rng.uniform(0, 1, n), rng.integers(0, 2, n))
    ranked = det.xyxy.astype(np.float64)[np.argsort(-det.confidence, kind="stable")]
    assert importlib.import_module("edgecv.detection.nms")._overlap_graph(ranked, 0.3) is None  # too many overlaps
    out = nms(det, iou_threshold=0.3, method="weighted", class_agnostic=True)
    ref_boxes, ref_scores = reference_nms(det.xyxy, det.confidence, det.class_id, 0.3, "weighted", True)
    assert len(out) == len(ref_boxes) >= 2
    np.testing.assert_array_equal(out.confidence, ref_scores)
    np.testing.assert_allclose(out.xyxy, ref_boxes, atol=1e-3)
