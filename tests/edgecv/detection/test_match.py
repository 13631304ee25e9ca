"""Matching predictions to references: counts, greedy-by-score order, class handling, edge cases."""

import numpy as np
import pytest

from edgecv.detection import Detections, match_detections
from edgecv.errors import ConfigError, InputError


def dets(boxes, scores=None, classes=None) -> Detections:
    n = len(boxes)
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.ones(n) if scores is None else scores,
                      np.zeros(n, np.int64) if classes is None else np.asarray(classes))


REF = dets([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], classes=[0, 1, 2])


def test_identical_sets_match_completely():
    m = match_detections(REF, REF)
    assert (m.tp, m.fp, m.fn) == (3, 0, 0)
    assert m.f1 == 1.0 and m.precision == 1.0 and m.recall == 1.0
    assert sorted(m.pairs.tolist()) == [[0, 0], [1, 1], [2, 2]]
    np.testing.assert_allclose(m.ious, 1.0)
    assert m.mean_iou == pytest.approx(1.0)


def test_counts_and_scores_with_misses_and_extras():
    pred = dets([[1, 0, 11, 10], [20, 20, 30, 30], [80, 80, 90, 90]], scores=[0.9, 0.8, 0.7], classes=[0, 2, 0])
    m = match_detections(pred, REF)  # pred 1 has the wrong class, pred 2 is nowhere
    assert (m.tp, m.fp, m.fn) == (1, 2, 2)
    assert m.pairs.tolist() == [[0, 0]]
    np.testing.assert_allclose(m.ious, [90 / 110])
    assert m.precision == pytest.approx(1 / 3) and m.recall == pytest.approx(1 / 3) and m.f1 == pytest.approx(1 / 3)
    agnostic = match_detections(pred, REF, class_aware=False)
    assert (agnostic.tp, agnostic.fp, agnostic.fn) == (2, 1, 1)
    assert agnostic.f1 == pytest.approx(4 / 6)


def test_greedy_by_score_lets_the_confident_prediction_choose_first():
    ref = dets([[0, 0, 10, 10], [4, 0, 14, 10]])
    # The weak prediction sits exactly on ref 0 (IoU 1, and 60/140 with ref 1); the confident one overlaps
    # ref 0 (90/110) more than ref 1 (70/130). Greedy: the confident one takes ref 0, the weak one is left
    # with ref 1 below the threshold. (An optimal assignment would have matched both.)
    pred = dets([[0, 0, 10, 10], [1, 0, 11, 10]], scores=[0.5, 0.9])
    m = match_detections(pred, ref, iou_threshold=0.5)
    assert m.pairs.tolist() == [[1, 0]]
    np.testing.assert_allclose(m.ious, [90 / 110])
    assert (m.tp, m.fp, m.fn) == (1, 1, 1)
    loose = match_detections(pred, ref, iou_threshold=0.4)
    assert loose.pairs.tolist() == [[1, 0], [0, 1]]  # in the order they were made: by descending score
    np.testing.assert_allclose(loose.ious, [90 / 110, 60 / 140])


def test_threshold_is_inclusive_and_disjoint_boxes_never_match():
    half = dets([[0, 0, 10, 5]])  # IoU with [0, 0, 10, 10] is exactly 0.5
    assert match_detections(half, dets([[0, 0, 10, 10]]), iou_threshold=0.5).tp == 1
    assert match_detections(half, dets([[0, 0, 10, 10]]), iou_threshold=0.51).tp == 0
    assert match_detections(dets([[0, 0, 1, 1]]), dets([[5, 5, 6, 6]]), iou_threshold=0.0).tp == 0


@pytest.mark.parametrize(
    "pred, ref, counts, precision, recall, f1",
    [
        (Detections.empty(), Detections.empty(), (0, 0, 0), 1.0, 1.0, 1.0),
        (Detections.empty(), REF, (0, 0, 3), 0.0, 0.0, 0.0),
        (REF, Detections.empty(), (0, 3, 0), 0.0, 0.0, 0.0),
    ],
)
def test_empty_sides(pred, ref, counts, precision, recall, f1):
    m = match_detections(pred, ref)
    assert (m.tp, m.fp, m.fn) == counts
    assert (m.precision, m.recall, m.f1) == (precision, recall, f1)
    assert m.pairs.shape == (0, 2) and m.mean_iou == 0.0


def test_jittered_copies_all_match_like_an_int8_model_against_float():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 500, (50, 2))
    ref = Detections(np.concatenate([xy, xy + 40], 1), rng.uniform(0.3, 1, 50), rng.integers(0, 3, 50))
    pred = Detections(ref.xyxy + rng.normal(0, 1.0, (50, 4)), ref.confidence, ref.class_id)
    m = match_detections(pred, ref, iou_threshold=0.7)
    assert m.f1 > 0.95 and m.mean_iou > 0.85
    assert all(ref.class_id[r] == pred.class_id[p] for p, r in m.pairs)


@pytest.mark.parametrize(
    "args, kw, error, message",
    [
        ((REF, REF), {"iou_threshold": -0.1}, ConfigError, r"iou_threshold: expected a number in \[0, 1\], got -0.1"),
        ((REF.xyxy, REF), {}, InputError, "match_detections pred: expected Detections, got ndarray"),
        ((REF, [REF]), {}, InputError, "match_detections ref: expected Detections, got list"),
    ],
)
def test_bad_arguments(args, kw, error, message):
    with pytest.raises(error, match=message):
        match_detections(*args, **kw)
