"""annotate(): boxes in their class colour where the detections are, captions, keypoints; never in place."""

import numpy as np
import pytest

from edgecv.annotate import annotate, class_color
from edgecv.detection import Detections
from edgecv.errors import InputError

pytest.importorskip("cv2")


def one_box(class_id=2, keypoints=None, tracker_id=None):
    data = {} if keypoints is None else {"keypoints": np.array([keypoints], np.float32)}
    return Detections(np.array([[40, 60, 120, 140]]), [0.87], [class_id], tracker_id=tracker_id, data=data)


def test_the_box_is_drawn_where_it_is_in_its_class_colour():
    image = np.zeros((200, 300, 3), np.uint8)
    out = annotate(image, one_box(), thickness=1)
    color = class_color(2)
    assert out.shape == (200, 300, 3) and out is not image and not image.any()
    # Edges: x 40..119, y 60..139 (the box spans [40, 120) x [60, 140) in continuous pixels).
    for y, x in [(100, 40), (100, 119), (60, 80), (139, 80)]:
        assert tuple(out[y, x]) == color, (y, x, out[y, x])
    assert not out[70:130, 50:110].any()  # inside stays untouched
    assert not out[150:, :].any() and not out[:, 130:].any()  # nothing far from the box
    assert out[40:59, 40:120].any()  # the caption sits above the box


def test_caption_text_labels_and_track_ids():
    image = np.zeros((200, 300, 3), np.uint8)
    a = annotate(image, one_box(), labels=["a", "b", "person"])
    b = annotate(image, one_box(), labels=["a", "b", "person"], scores=False)
    c = annotate(image, one_box(tracker_id=[7]), labels=["a", "b", "person"])
    caption = (slice(30, 60), slice(40, 200))
    assert a[caption].any() and not np.array_equal(a[caption], b[caption]) and not np.array_equal(a[caption], c[caption])


def test_gray_and_alpha_frames_come_back_in_colour():
    gray = np.full((100, 100), 50, np.uint8)
    out = annotate(gray, Detections(np.array([[10, 10, 50, 50]]), [0.9], [0]), thickness=1)
    assert out.shape == (100, 100, 3) and tuple(out[30, 10]) == class_color(0) and tuple(out[70, 70]) == (50, 50, 50)
    rgba = np.full((100, 100, 4), 9, np.uint8)
    assert annotate(rgba, Detections.empty()).shape == (100, 100, 3)
    assert annotate(gray[..., None], Detections.empty()).shape == (100, 100, 3)


def test_keypoints_are_dots_and_no_detections_is_a_plain_copy():
    image = np.zeros((200, 300, 3), np.uint8)
    out = annotate(image, one_box(keypoints=[[80, 100], [90, 110]]), thickness=1)
    assert tuple(out[100, 80]) == class_color(2) and tuple(out[110, 90]) == class_color(2)
    assert not annotate(image, one_box(keypoints=[[80, 100], [90, 110]]), keypoints=False)[100, 80].any()
    same = annotate(image, Detections.empty())
    assert np.array_equal(same, image) and same is not image


def test_boxes_outside_or_at_the_edges_do_not_fail():
    image = np.zeros((50, 50, 3), np.uint8)
    det = Detections(np.array([[0, 0, 50, 50], [45, 45, 60, 70], [10, 10, 10, 10]]), [0.9, 0.8, 0.7], [0, 1, 2])
    assert annotate(image, det).shape == (50, 50, 3)


@pytest.mark.parametrize(
    "image, detections, message",
    [
        (np.zeros((10, 10, 3), np.float32), Detections.empty(), "expected a uint8 image"),
        (np.zeros((10, 10, 2), np.uint8), Detections.empty(), "expected a uint8 image"),
        ([[0]], Detections.empty(), "got list"),
        (np.zeros((10, 10, 3), np.uint8), [[0, 0, 1, 1]], "expected Detections"),
    ],
)
def test_bad_input(image, detections, message):
    with pytest.raises(InputError, match=message):
        annotate(image, detections)


def test_class_colours_are_stable_and_distinct():
    colors = [class_color(i) for i in range(10)]
    assert len(set(colors)) == 10 and colors == [class_color(i) for i in range(10)]


@pytest.mark.parametrize(
    "xyxy, edge",
    [
        ([40, 60, 1e30, 140], (100, 40)),  # a model's raw 1e30: the left edge is drawn, the right is off the image
        ([-3e38, 60, 120, 140], (100, 119)),  # float32's limit: the right edge is drawn
        ([40, -1e9, 120, 140], (139, 80)),
    ],
)
def test_boxes_far_outside_the_image_are_drawn_clipped(xyxy, edge):
    image = np.zeros((200, 300, 3), np.uint8)
    out = annotate(image, Detections(np.array([xyxy]), [0.5], [2]), thickness=1)
    assert tuple(out[edge]) == class_color(2)


def test_keypoints_that_are_nan_or_far_are_not_drawn():
    image = np.zeros((200, 300, 3), np.uint8)
    plain = annotate(image, one_box(), thickness=1)
    out = annotate(image, one_box(keypoints=[[np.nan, 10], [1e30, 5]]), thickness=1)
    np.testing.assert_array_equal(out, plain)


def test_copy_false_draws_on_the_image_itself_when_it_can():
    pytest.importorskip("cv2")
    dets = Detections(np.array([[4, 4, 20, 20]]), [0.9], [0])
    own = np.zeros((32, 32, 3), np.uint8)
    assert annotate(own, dets, copy=False) is own and own.any()
    for other in (np.zeros((32, 32), np.uint8), np.zeros((32, 32, 4), np.uint8), np.zeros((32, 32, 3), np.uint8)[:, ::2]):
        before = other.copy()
        out = annotate(other, dets, copy=False)  # gray, alpha, a strided view: drawn on a copy
        assert out is not other and out.shape[2] == 3 and np.array_equal(other, before)
