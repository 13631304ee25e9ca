"""Detections: validation on construction, indexing, merging, COCO round trips; nothing is mutated."""

import dataclasses

import numpy as np
import pytest

from edgecv.detection import Detections
from edgecv.errors import InputError

BOXES = np.array([[0, 0, 10, 10], [5, 5, 20, 25], [30, 30, 40, 50]], np.float32)


def make(n: int = 3, **extra) -> Detections:
    kw = dict(
        xyxy=BOXES[:n],
        confidence=np.array([0.9, 0.5, 0.7], np.float32)[:n],
        class_id=np.array([1, 2, 1])[:n],
        tracker_id=np.array([10, 11, 12])[:n],
        data={"keypoints": np.arange(n * 4, dtype=np.float32).reshape(n, 2, 2), "flag": np.array([1, 0, 1])[:n]},
    )
    kw.update(extra)
    return Detections(**kw)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"xyxy": np.zeros(4)}, r"Detections.xyxy: expected shape \[N,4\], got \[4\]"),
        ({"xyxy": np.zeros((3, 5))}, r"Detections.xyxy: expected shape \[N,4\], got \[3,5\]"),
        ({"xyxy": np.array([["a"] * 4] * 3)}, "Detections.xyxy: expected a real-number array"),
        ({"xyxy": np.where(np.eye(3, 4, dtype=bool), np.nan, BOXES)}, "Detections.xyxy: expected finite values"),
        ({"xyxy": np.where(np.eye(3, 4, dtype=bool), np.inf, BOXES)}, "Detections.xyxy: expected finite values"),
        ({"confidence": [0.5, 0.5]}, r"Detections.confidence: expected shape \[3\] \(one per box\), got \[2\]"),
        ({"confidence": np.zeros((3, 1))}, r"Detections.confidence: expected shape \[N\], got \[3,1\]"),
        ({"confidence": [0.5, np.nan, 0.5]}, "Detections.confidence: expected finite values"),
        ({"class_id": [1.0, 2.0, 3.0]}, "Detections.class_id: expected an integer array, got dtype float64"),
        ({"class_id": [1, 2]}, r"Detections.class_id: expected shape \[3\], got \[2\]"),
        ({"tracker_id": [1, 2, 3, 4]}, r"Detections.tracker_id: expected shape \[3\], got \[4\]"),
        ({"tracker_id": np.zeros(3)}, "Detections.tracker_id: expected an integer array"),
        ({"data": {"kp": np.zeros((2, 6, 2))}}, r"Detections.data\['kp'\]: expected first dimension 3, got shape \[2,6,2\]"),
        ({"data": {"kp": np.float32(1)}}, r"Detections.data\['kp'\]: expected first dimension 3, got shape \[\]"),
        ({"data": [np.zeros(3)]}, "Detections.data: expected a dict of arrays, got list"),
        ({"data": {1: np.zeros(3)}}, "Detections.data: expected string keys"),
    ],
)
def test_bad_construction_gives_one_line_input_errors(change, message):
    with pytest.raises(InputError, match=message) as info:
        make(**change)
    assert "\n" not in str(info.value)


def test_construction_converts_dtypes_and_accepts_lists():
    det = Detections(xyxy=[[0, 0, 1, 2]], confidence=[1], class_id=np.array([3], np.int32),
                     tracker_id=np.array([4], np.uint8))
    assert det.xyxy.dtype == np.float32 and det.confidence.dtype == np.float32
    assert det.class_id.dtype == np.int64 and det.tracker_id.dtype == np.int64
    assert det.xyxy.tolist() == [[0.0, 0.0, 1.0, 2.0]] and det.class_id.tolist() == [3]
    with pytest.raises(dataclasses.FrozenInstanceError):
        det.xyxy = np.zeros((0, 4))


@pytest.mark.parametrize(
    "empty", [Detections.empty(), Detections([], [], []), Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))]
)
def test_empty(empty):
    assert len(empty) == 0
    assert empty.xyxy.shape == (0, 4) and empty.xyxy.dtype == np.float32
    assert empty.confidence.shape == (0,) and empty.class_id.dtype == np.int64
    assert empty.tracker_id is None and empty.data == {}
    assert len(empty[np.zeros(0, bool)]) == 0


@pytest.mark.parametrize(
    "index, rows",
    [
        (np.array([True, False, True]), [0, 2]),
        (np.array([2, 0]), [2, 0]),
        (np.array([-1]), [2]),
        (slice(1, None), [1, 2]),
        (1, [1]),
        (np.array([], np.int64), []),
        ([], []),
    ],
)
def test_indexing_slices_every_array_into_a_new_object(index, rows):
    det = make()
    before = {k: v.copy() for k, v in [("xyxy", det.xyxy), ("confidence", det.confidence), ("kp", det.data["keypoints"])]}
    sub = det[index]
    assert sub is not det and len(sub) == len(rows)
    assert (sub.xyxy.dtype, sub.confidence.dtype, sub.class_id.dtype, sub.tracker_id.dtype) == \
        (np.float32, np.float32, np.int64, np.int64)
    assert sub.xyxy.shape == (len(rows), 4) and sub.data["keypoints"].shape[0] == len(rows)
    np.testing.assert_array_equal(sub.xyxy, BOXES[rows])
    np.testing.assert_array_equal(sub.confidence, det.confidence[rows])
    np.testing.assert_array_equal(sub.class_id, det.class_id[rows])
    np.testing.assert_array_equal(sub.tracker_id, det.tracker_id[rows])
    np.testing.assert_array_equal(sub.data["keypoints"], det.data["keypoints"][rows])
    np.testing.assert_array_equal(sub.data["flag"], det.data["flag"][rows])
    assert not np.shares_memory(sub.xyxy, det.xyxy)
    if len(sub):
        sub.xyxy[0, 0] = 1e6  # a caller editing the result does not reach the original
    np.testing.assert_array_equal(det.xyxy, before["xyxy"])
    np.testing.assert_array_equal(det.confidence, before["confidence"])
    np.testing.assert_array_equal(det.data["keypoints"], before["kp"])


@pytest.mark.parametrize(
    "index, message",
    [
        (np.array([True, False]), r"Detections mask: expected shape \[3\], got \[2\]"),
        (np.array([3]), r"expected indices in \[-3, 3\), got 3..3"),
        (np.array([-4, 0]), r"expected indices in \[-3, 3\)"),
        (np.array([0.5]), "expected a boolean mask, integer array or slice, got float64"),
        (np.zeros((1, 1), int), "expected a boolean mask, integer array or slice"),
        (np.zeros((0, 0)), r"expected a boolean mask, integer array or slice, got float64 \[0,0\]"),
    ],
)
def test_bad_indexes(index, message):
    with pytest.raises(InputError, match=message):
        make()[index]


def test_merge_concatenates_and_skips_empty_items():
    a, b = make(2), make(3)
    merged = Detections.merge([a, Detections.empty(), b])
    assert len(merged) == 5
    np.testing.assert_array_equal(merged.xyxy, np.concatenate([BOXES[:2], BOXES]))
    np.testing.assert_array_equal(merged.tracker_id, [10, 11, 10, 11, 12])
    assert merged.data["keypoints"].shape == (5, 2, 2)
    assert len(Detections.merge([])) == 0
    assert len(Detections.merge([Detections.empty()])) == 0


@pytest.mark.parametrize(
    "other, message",
    [
        (make(1, data={}), r"expected data keys \['flag', 'keypoints'\] in every item, got \[\]"),
        (make(1, tracker_id=None), "expected tracker_id in all items or in none"),
        ("not detections", "Detections.merge: expected Detections, got str"),
    ],
)
def test_merge_rejects_items_that_do_not_fit(other, message):
    with pytest.raises(InputError, match=message):
        Detections.merge([make(), other])


def test_coco_round_trip_keeps_boxes_scores_classes_and_keypoints():
    det = make(tracker_id=None, data={"keypoints": np.array([[[1, 2]], [[3, 4]], [[5, 6]]], np.float32)})
    coco = det.to_coco(image_id=42)
    assert coco[1] == {
        "image_id": 42,
        "category_id": 2,
        "bbox": [5.0, 5.0, 15.0, 20.0],
        "score": pytest.approx(0.5),
        "keypoints": [3.0, 4.0, 2.0],
    }
    back = Detections.from_coco(coco)
    np.testing.assert_allclose(back.xyxy, det.xyxy, atol=1e-6)
    np.testing.assert_allclose(back.confidence, det.confidence, atol=1e-6)
    np.testing.assert_array_equal(back.class_id, det.class_id)
    np.testing.assert_array_equal(back.data["keypoints"], det.data["keypoints"])


def test_from_coco_reads_ground_truth_and_filters_by_image():
    items = [
        {"image_id": 1, "bbox": [10, 20, 30, 40], "category_id": 3},
        {"image_id": 2, "bbox": [0, 0, 1, 1], "category_id": 4, "score": 0.25},
    ]
    one = Detections.from_coco(items, image_id=1)
    assert one.xyxy.tolist() == [[10.0, 20.0, 40.0, 60.0]] and one.confidence.tolist() == [1.0]
    assert Detections.from_coco(items).class_id.tolist() == [3, 4]
    assert len(Detections.from_coco(items, image_id=9)) == 0
    with pytest.raises(InputError, match="from_coco item 0: expected a dict with 'bbox' and 'category_id'"):
        Detections.from_coco([{"bbox": [0, 0, 1, 1]}])
    with pytest.raises(InputError, match=r"from_coco item 0: expected bbox \[x, y, w, h\]"):
        Detections.from_coco([{"bbox": [0, 0, 1], "category_id": 1}])
