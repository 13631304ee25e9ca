"""Box helpers: IoU against hand-worked values, format round trips, clipping."""

import numpy as np
import pytest

from edgecv.detection.boxes import box_area, box_iou, clip_boxes, cxcywh_to_xyxy, xywh_to_xyxy, xyxy_to_cxcywh, xyxy_to_xywh


def test_box_iou_matches_hand_worked_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 5], [0, 0, 0, 0]], np.float32)
    iou = box_iou(a, b)
    assert iou.shape == (2, 5)
    np.testing.assert_allclose(iou[0], [1.0, 50 / 150, 0.0, 0.5, 0.0], atol=1e-12)
    np.testing.assert_array_equal(iou[1], np.zeros(5))  # zero-area boxes: 0, not NaN
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 5)


def test_box_iou_agrees_with_a_pairwise_loop():
    rng = np.random.default_rng(1)
    a = np.concatenate([xy := rng.uniform(0, 50, (20, 2)), xy + rng.uniform(1, 30, (20, 2))], 1)
    b = np.concatenate([xy := rng.uniform(0, 50, (15, 2)), xy + rng.uniform(1, 30, (15, 2))], 1)
    expected = np.zeros((20, 15))
    for i in range(20):
        for j in range(15):
            iw = max(0.0, min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]))
            ih = max(0.0, min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]))
            inter = iw * ih
            expected[i, j] = inter / (box_area(a[i]) + box_area(b[j]) - inter)
    np.testing.assert_allclose(box_iou(a, b), expected, atol=1e-12)


def test_inverted_boxes_have_zero_area():
    assert box_area(np.array([[10, 0, 0, 10], [0, 0, 2, 3]])).tolist() == [0, 6]


def test_format_round_trips():
    xyxy = np.array([[1.0, 2.0, 4.0, 8.0]])
    assert xyxy_to_xywh(xyxy).tolist() == [[1.0, 2.0, 3.0, 6.0]]
    assert xyxy_to_cxcywh(xyxy).tolist() == [[2.5, 5.0, 3.0, 6.0]]
    np.testing.assert_array_equal(xywh_to_xyxy(xyxy_to_xywh(xyxy)), xyxy)
    np.testing.assert_array_equal(cxcywh_to_xyxy(xyxy_to_cxcywh(xyxy)), xyxy)


def test_clip_boxes_returns_a_clipped_copy():
    boxes = np.array([[-5.0, -1.0, 30.0, 8.0], [2.0, 3.0, 4.0, 50.0]])
    clipped = clip_boxes(boxes, size=(10, 20))
    assert clipped.tolist() == [[0.0, 0.0, 20.0, 8.0], [2.0, 3.0, 4.0, 10.0]]
    assert boxes[0, 0] == pytest.approx(-5.0)  # input untouched
