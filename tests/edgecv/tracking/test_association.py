"""The association core: optimal matching under a gate, checked against brute force; IoU association with
score fusion, classes, SORT's gate-after rule, and the blocked path for large sets equal to the dense one."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgecv.tracking import iou_association, linear_assignment
from edgecv.tracking.association import similarity_assignment


def brute_force(cost: np.ndarray, max_cost: float) -> float:
    """The largest ``sum(max_cost - cost)`` over partial matchings of allowed pairs."""
    n, m = cost.shape
    best = 0.0
    for k in range(1, min(n, m) + 1):
        for rows in itertools.combinations(range(n), k):
            for cols in itertools.permutations(range(m), k):
                c = cost[list(rows), list(cols)]
                if (c <= max_cost).all():
                    best = max(best, float((max_cost - c).sum()))
    return best


def test_examples():
    m = linear_assignment(np.array([[0.1, 0.9], [0.2, 0.95]]), max_cost=0.5)
    assert (m.rows.tolist(), m.cols.tolist(), m.unmatched_rows.tolist(), m.unmatched_cols.tolist()) == (
        [0], [0], [1], [1])
    assert len(m) == 1
    # one good match beats two poor ones (max-weight, not max-cardinality)
    m = linear_assignment(np.array([[0.05, 0.75], [0.75, 1.0]]), max_cost=0.8)
    assert list(zip(m.rows.tolist(), m.cols.tolist())) == [(0, 0)]
    # a pair at exactly the gate may match; NaN never does; valid= forbids more
    assert len(linear_assignment(np.array([[0.5]]), 0.5)) == 1
    assert len(linear_assignment(np.array([[np.nan]]), 0.5)) == 0
    assert len(linear_assignment(np.array([[0.1]]), 0.5, valid=np.array([[False]]))) == 0
    for shape in [(0, 3), (3, 0), (0, 0)]:
        m = linear_assignment(np.zeros(shape), 0.5)
        assert len(m) == 0 and len(m.unmatched_rows) == shape[0] and len(m.unmatched_cols) == shape[1]


@pytest.mark.parametrize("seed", range(30))
def test_optimal_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, m = rng.integers(1, 5, 2)
    cost = rng.uniform(0, 1, (n, m))
    max_cost = float(rng.uniform(0.2, 0.9))
    res = linear_assignment(cost, max_cost)
    assert (cost[res.rows, res.cols] <= max_cost).all()
    assert len(set(res.rows.tolist())) == len(res) and len(set(res.cols.tolist())) == len(res)
    assert sorted(res.rows.tolist() + res.unmatched_rows.tolist()) == list(range(n))
    assert sorted(res.cols.tolist() + res.unmatched_cols.tolist()) == list(range(m))
    assert float((max_cost - cost[res.rows, res.cols]).sum()) == pytest.approx(brute_force(cost, max_cost))


def test_iou_association_examples():
    tracks = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], float)
    dets = np.array([[21, 0, 31, 10], [50, 50, 60, 60], [1, 0, 11, 10]], float)
    m = iou_association(tracks, dets, min_iou=0.3)
    assert (m.rows.tolist(), m.cols.tolist(), m.unmatched_cols.tolist()) == ([0, 1], [2, 0], [1])
    # classes: only within a class
    m = iou_association(tracks, dets, min_iou=0.3, track_class=np.array([0, 1]), det_class=np.array([0, 0, 0]))
    assert (m.rows.tolist(), m.cols.tolist()) == ([0], [2])
    # scores fuse into the similarity: IoU 0.818 * 0.3 is below 0.3
    m = iou_association(tracks, dets, min_iou=0.3, det_score=np.array([1.0, 1.0, 0.3]))
    assert (m.rows.tolist(), m.cols.tolist()) == ([1], [0])
    # no overlap never matches, even with min_iou 0
    assert len(iou_association(tracks, dets[1:2], min_iou=0.0)) == 0


def test_gate_after_is_sorts_rule():
    sim = np.array([[0.35, 0.29], [0.29, 0.0]])
    before = similarity_assignment(sim, 0.3)
    assert list(zip(before.rows.tolist(), before.cols.tolist())) == [(0, 0)]
    # 10 x 10 boxes shifted along x: track 0 overlaps det 0 by 0.5 and det 1 by 0.35; track 1 det 0 by 0.25
    def box(x: float) -> list[float]:
        return [x, 0.0, x + 10.0, 10.0]

    s0, s1 = 10 / 3, 6.5 / 1.35
    tracks = np.array([box(0.0), box(s0 + 6.0)])
    dets = np.array([box(s0), box(-s1)])
    before = iou_association(tracks, dets, min_iou=0.3)
    after = iou_association(tracks, dets, min_iou=0.3, gate="after")
    # gate before: only pairs above 0.3 compete, and 0.5 - 0.3 beats 0.35 - 0.3
    assert list(zip(before.rows.tolist(), before.cols.tolist())) == [(0, 0)]
    # gate after (SORT): best total IoU first (0.35 + 0.25 > 0.5), then the 0.25 pair is dropped
    assert list(zip(after.rows.tolist(), after.cols.tolist())) == [(0, 1)]
    assert after.unmatched_rows.tolist() == [1] and after.unmatched_cols.tolist() == [0]
    # when every box has at most one partner above the gate, SORT takes those pairs as they are
    lone = np.array([box(0.0), box(100.0)])
    assert len(iou_association(lone, lone + [1, 0, 1, 0], min_iou=0.3, gate="after")) == 2
    # SORT starts the tracks of detections dropped below the gate after those never assigned
    tracks = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float)
    dets = np.array([[0, 0, 10, 11], [50, 50, 60, 60], [0, 0, 10, 10], [6, 0, 16, 10], [70, 70, 80, 80]], float)
    after = iou_association(tracks, dets, min_iou=0.95, gate="after")
    assert after.cols.tolist() == [2]
    assert after.unmatched_cols.tolist() == [1, 3, 4, 0]  # det 0 (IoU 0.91) was assigned, then dropped
    assert iou_association(tracks, dets, min_iou=0.95).unmatched_cols.tolist() == [0, 1, 3, 4]
    with pytest.raises(ValueError, match="gate 'before' or 'after'"):
        iou_association(tracks, dets, min_iou=0.3, gate="sideways")


@pytest.mark.parametrize("gate", ["before", "after"])
@pytest.mark.parametrize("seed", range(5))
def test_blocked_path_equals_dense(gate, seed):
    rng = np.random.default_rng(seed)
    n, m = 120, 150
    xy = rng.uniform(0, 300, (n, 2))
    tracks = np.concatenate([xy, xy + rng.uniform(10, 40, (n, 2))], axis=1)
    pick = rng.integers(0, n, m)
    dets = tracks[pick] + rng.normal(0, 4, (m, 4))
    dets[:, 2:] = np.maximum(dets[:, 2:], dets[:, :2] + 1)
    classes = (rng.integers(0, 2, n), rng.integers(0, 2, m))
    for kw in ({}, {"track_class": classes[0], "det_class": classes[1]}, {"det_score": rng.uniform(0.5, 1, m)}):
        dense = iou_association(tracks, dets, min_iou=0.3, gate=gate, **kw)
        blocked = iou_association(tracks, dets, min_iou=0.3, gate=gate, block=500, **kw)
        assert len(dense) > 20
        assert dense.rows.tolist() == blocked.rows.tolist() and dense.cols.tolist() == blocked.cols.tolist()
        assert dense.unmatched_rows.tolist() == blocked.unmatched_rows.tolist()
        assert sorted(dense.unmatched_cols.tolist()) == sorted(blocked.unmatched_cols.tolist())
