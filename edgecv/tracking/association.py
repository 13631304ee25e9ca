"""The association core: optimal one-to-one matching of tracks to detections under a gate.

:func:`linear_assignment` solves any cost matrix with ``scipy.optimize.linear_sum_assignment``: pairs whose
cost is above ``max_cost`` are never matched, and among the allowed pairs it finds the matching with the
largest total margin ``sum(max_cost - cost)``. (So one good match is preferred over two poor ones, and a
row is never pushed onto a pair past the gate: the same rule as ``lap.lapjv(..., cost_limit=max_cost)``.)

:func:`iou_association` builds the IoU cost (optionally fused with detection scores, optionally only within a
class) and solves it; for large sets it works in row blocks and splits the problem into its independent
groups of overlapping boxes, so thousands of boxes need neither a dense ``N x M`` matrix nor one big solve.

SciPy is imported when a matching first needs it, never when edgecv is imported.

Example:
    >>> import numpy as np
    >>> cost = np.array([[0.1, 0.9], [0.2, 0.95]])
    >>> m = linear_assignment(cost, max_cost=0.5)
    >>> m.rows.tolist(), m.cols.tolist(), m.unmatched_rows.tolist(), m.unmatched_cols.tolist()
    ([0], [0], [1], [1])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Matches",
    "linear_assignment",
    "similarity_assignment",
    "iou_association",
    "iou_candidates",
    "pair_assignment",
    "pairwise_iou",
    "matches_from_pairs",
    "DENSE_LIMIT",
]

#: Problems with more track x detection pairs than this are solved in blocks (see :func:`iou_association`).
DENSE_LIMIT = 250_000

_EMPTY = np.zeros(0, np.int64)


@dataclass(frozen=True)
class Matches:
    """Matched ``(rows[k], cols[k])`` pairs, sorted by row, and the rows and columns left unmatched."""

    rows: np.ndarray
    cols: np.ndarray
    unmatched_rows: np.ndarray
    unmatched_cols: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


def matches_from_pairs(
    rows: np.ndarray, cols: np.ndarray, n: int, m: int, late_cols: np.ndarray | None = None
) -> Matches:
    """The :class:`Matches` of pairs ``(rows[k], cols[k])`` in an ``n`` x ``m`` problem: sorted by row;
    unmatched columns ascending, except ``late_cols`` (ascending) go last.

    Example:
        >>> matches_from_pairs(np.array([1]), np.array([0]), 2, 2).unmatched_rows.tolist()
        [0]
    """
    if len(rows) == 0 and (late_cols is None or len(late_cols) == 0):
        return Matches(_EMPTY, _EMPTY, np.arange(n), np.arange(m))
    if len(rows) > 1 and (rows[1:] < rows[:-1]).any():
        order = np.argsort(rows, kind="stable")
        rows, cols = rows[order], cols[order]
    rows, cols = rows.astype(np.int64, copy=False), cols.astype(np.int64, copy=False)
    free_r = np.ones(n, bool)
    free_r[rows] = False
    free_c = np.ones(m, bool)
    free_c[cols] = False
    unmatched_cols = free_c.nonzero()[0]
    if late_cols is not None and len(late_cols):
        late = np.zeros(m, bool)
        late[late_cols] = True
        unmatched_cols = np.concatenate([(free_c & ~late).nonzero()[0], late.nonzero()[0]])
    return Matches(rows, cols, free_r.nonzero()[0], unmatched_cols)


def preload() -> None:
    """Import the solvers now: about 0.8 s the first time in a process (SciPy's optimize and csgraph). A
    pipeline with a tracker calls it before its first frame, so that a live stream does not stall that long at
    the first frame whose boxes compete for a track (frame 347 of ``synthetic:size=640x480``: 0.6 s without a
    result, in every served stream); a tracker used on its own imports them only when it first needs them."""
    from scipy.optimize import linear_sum_assignment  # noqa: F401
    from scipy.sparse.csgraph import connected_components  # noqa: F401


def _solve(cost: np.ndarray, valid: np.ndarray, max_cost: float) -> tuple[np.ndarray, np.ndarray]:
    """Optimal pairs of one dense problem; ``valid`` is ``cost <= max_cost`` (and any other gate)."""
    per_row, per_col = valid.sum(axis=1), valid.sum(axis=0)
    if per_row.max() <= 1 and per_col.max() <= 1:  # no competition: every allowed pair stands alone
        return valid.nonzero()
    r, c = per_row.nonzero()[0], per_col.nonzero()[0]
    sub = valid[r][:, c]
    from scipy.optimize import linear_sum_assignment

    # Invalid pairs cost 0, the same as leaving both unmatched, so the forced full assignment of
    # linear_sum_assignment equals the best partial matching of allowed pairs; allowed ones cost <= 0.
    gain = np.where(sub, cost[r][:, c] - max_cost, 0.0)
    i, j = linear_sum_assignment(gain)
    keep = sub[i, j]
    return r[i[keep]], c[j[keep]]


def linear_assignment(cost: np.ndarray, max_cost: float, *, valid: np.ndarray | None = None) -> Matches:
    """Optimal matching of rows to columns of ``cost [N, M]`` using only pairs with cost <= ``max_cost``.

    ``valid`` (bool ``[N, M]``) can forbid more pairs. NaN costs are never matched.

    Example:
        >>> m = linear_assignment(np.array([[0.3, 0.4], [0.35, 0.9]]), max_cost=0.5)
        >>> list(zip(m.rows.tolist(), m.cols.tolist()))
        [(0, 1), (1, 0)]
    """
    cost = np.asarray(cost, np.float64)
    if cost.ndim != 2:
        raise ValueError(f"linear_assignment: expected a 2-D cost matrix, got shape {cost.shape}")
    n, m = cost.shape
    if n == 0 or m == 0:
        return matches_from_pairs(_EMPTY, _EMPTY, n, m)
    ok = cost <= max_cost
    if valid is not None:
        ok &= valid
    rows, cols = _solve(cost, ok, max_cost)
    return matches_from_pairs(rows, cols, n, m)


def similarity_assignment(sim: np.ndarray, min_sim: float) -> Matches:
    """Optimal matching on a similarity matrix ``[N, M]`` (IoU-like, higher is better): pairs below
    ``min_sim`` or at 0 are never matched; the matching maximises ``sum(sim - min_sim)``.

    Example:
        >>> m = similarity_assignment(np.array([[0.9, 0.8], [0.8, 0.0]]), min_sim=0.3)
        >>> list(zip(m.rows.tolist(), m.cols.tolist()))
        [(0, 1), (1, 0)]
    """
    sim = np.asarray(sim, np.float64)
    n, m = sim.shape
    if n == 0 or m == 0:
        return matches_from_pairs(_EMPTY, _EMPTY, n, m)
    rows, cols = _solve(-sim, (sim >= min_sim) & (sim > 0), -min_sim)
    return matches_from_pairs(rows, cols, n, m)


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[N, M]`` of float64 boxes with positive sizes (the lean form of ``box_iou`` for the hot path).

    Example:
        >>> pairwise_iou(np.array([[0.0, 0, 2, 2]]), np.array([[1.0, 0, 3, 2]])).tolist()
        [[0.3333333333333333]]
    """
    iw = np.minimum(a[:, None, 2], b[None, :, 2])
    iw -= np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3])
    ih -= np.maximum(a[:, None, 1], b[None, :, 1])
    np.maximum(iw, 0.0, out=iw)
    np.maximum(ih, 0.0, out=ih)
    iw *= ih  # intersection
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :]
    union -= iw
    return np.divide(iw, union, out=np.zeros_like(iw), where=union > 0)


def _iou_similarity(
    track_xyxy: np.ndarray,
    det_xyxy: np.ndarray,
    det_score: np.ndarray | None,
    track_class: np.ndarray | None,
    det_class: np.ndarray | None,
) -> np.ndarray:
    sim = pairwise_iou(track_xyxy, det_xyxy)
    if det_score is not None:
        sim *= det_score[None, :]
    if track_class is not None and det_class is not None:
        sim[track_class[:, None] != det_class[None, :]] = 0.0
    return sim


def iou_association(
    track_xyxy: np.ndarray,
    det_xyxy: np.ndarray,
    *,
    min_iou: float,
    det_score: np.ndarray | None = None,
    track_class: np.ndarray | None = None,
    det_class: np.ndarray | None = None,
    gate: str = "before",
    block: int = DENSE_LIMIT,
) -> Matches:
    """Match tracks (rows) to detections (columns) maximising ``sum(similarity - min_iou)``.

    The similarity is the IoU, times ``det_score`` when given (ByteTrack's score fusion); pairs below
    ``min_iou`` (or of different classes, when both class arrays are given) are never matched. Pairs with
    similarity 0 are never matched even when ``min_iou`` is 0.

    ``gate="after"`` is the reference SORT's rule instead: when every box has at most one partner above
    ``min_iou`` those pairs are taken; otherwise the matching with the largest total IoU over all pairs is
    found first, and its pairs below ``min_iou`` are then dropped (so a pair above the gate can lose to two
    pairs below it). It exists to reproduce SORT exactly.

    Example:
        >>> tracks = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], float)
        >>> dets = np.array([[21, 0, 31, 10], [50, 50, 60, 60], [1, 0, 11, 10]], float)
        >>> m = iou_association(tracks, dets, min_iou=0.3)
        >>> m.cols.tolist(), m.unmatched_cols.tolist()
        ([2, 0], [1])
    """
    tb = np.asarray(track_xyxy, np.float64).reshape(-1, 4)
    db = np.asarray(det_xyxy, np.float64).reshape(-1, 4)
    n, m = len(tb), len(db)
    if n == 0 or m == 0:
        return matches_from_pairs(_EMPTY, _EMPTY, n, m)
    score = None if det_score is None else np.asarray(det_score, np.float64)
    classes = track_class is not None and det_class is not None
    tc = np.asarray(track_class) if classes else None
    dc = np.asarray(det_class) if classes else None
    if gate not in ("before", "after"):
        raise ValueError(f"iou_association: expected gate 'before' or 'after', got {gate!r}")
    after = gate == "after"
    if n * m <= block:
        sim = _iou_similarity(tb, db, score, tc, dc)
        if after:
            rows, cols, dropped = _solve_after(sim, min_iou)
            return matches_from_pairs(rows, cols, n, m, dropped)
        rows, cols = _solve(-sim, (sim >= min_iou) & (sim > 0), -min_iou)
        return matches_from_pairs(rows, cols, n, m)
    # Large: candidate pairs block by block, then each group of mutually reachable boxes on its own.
    step = max(1, block // m)
    pr, pc, ps = [], [], []
    for start in range(0, n, step):
        sl = slice(start, start + step)
        sim = _iou_similarity(tb[sl], db, score, None if tc is None else tc[sl], dc)
        i, j = np.nonzero(sim > 0 if after else (sim >= min_iou) & (sim > 0))
        pr.append(i + start)
        pc.append(j)
        ps.append(sim[i, j])
    rows_all, cols_all, sims = np.concatenate(pr), np.concatenate(pc), np.concatenate(ps)
    return _sparse_solve(rows_all, cols_all, sims, n, m, min_iou, after)


def iou_candidates(
    track_xyxy: np.ndarray, det_xyxy: np.ndarray, min_iou: float, *, block: int = DENSE_LIMIT
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs ``(rows, cols)`` of tracks and detections with IoU >= ``min_iou`` (and > 0), with their IoU,
    found block by block (at most ``block`` pairs at once), so no dense ``N x M`` matrix is ever made.

    With :func:`pair_assignment` it lets a tracker add its own terms to the similarity of the few candidate
    pairs of a large problem (e.g. OC-SORT's direction term) and still solve it optimally.

    Example:
        >>> r, c, v = iou_candidates(np.array([[0, 0, 10, 10.0]]), np.array([[5, 0, 15, 10.0], [0, 0, 10, 10]]), 0.3)
        >>> r.tolist(), c.tolist(), v.round(2).tolist()
        ([0, 0], [0, 1], [0.33, 1.0])
    """
    tb = np.asarray(track_xyxy, np.float64).reshape(-1, 4)
    db = np.asarray(det_xyxy, np.float64).reshape(-1, 4)
    n, m = len(tb), len(db)
    if n == 0 or m == 0:
        return _EMPTY, _EMPTY, np.zeros(0)
    step = max(1, block // m)
    pr, pc, ps = [], [], []
    for start in range(0, n, step):
        iou = pairwise_iou(tb[start : start + step], db)
        i, j = np.nonzero((iou >= min_iou) & (iou > 0))
        pr.append(i + start)
        pc.append(j)
        ps.append(iou[i, j])
    return np.concatenate(pr).astype(np.int64), np.concatenate(pc).astype(np.int64), np.concatenate(ps)


def pair_assignment(
    rows: np.ndarray, cols: np.ndarray, sim: np.ndarray, n: int, m: int, min_sim: float
) -> Matches:
    """Optimal matching of ``n`` rows to ``m`` columns over the candidate pairs ``(rows[k], cols[k])`` only,
    with similarities ``sim[k]``: pairs below ``min_sim`` are never matched and the matching maximises
    ``sum(sim - min_sim)`` (as :func:`similarity_assignment` on the dense matrix). Each group of rows and
    columns linked by candidate pairs is solved on its own.

    Example:
        >>> m = pair_assignment(np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([0.9, 0.8, 0.8]), 2, 3, 0.3)
        >>> list(zip(m.rows.tolist(), m.cols.tolist())), m.unmatched_cols.tolist()
        ([(0, 1), (1, 0)], [2])
    """
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    sim = np.asarray(sim, np.float64)
    keep = sim >= min_sim
    if not keep.all():
        rows, cols, sim = rows[keep], cols[keep], sim[keep]
    return _sparse_solve(rows, cols, sim, n, m, min_sim)


def _solve_after(sim: np.ndarray, min_sim: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SORT's rule (see :func:`iou_association`) on one dense similarity matrix: rows, columns, and the
    columns that were assigned but dropped below the gate (SORT starts their tracks after the others)."""
    strict = sim > min_sim
    if strict.any() and strict.sum(axis=0).max() == 1 and strict.sum(axis=1).max() == 1:
        i, j = np.nonzero(strict)
        return i, j, _EMPTY
    from scipy.optimize import linear_sum_assignment

    i, j = linear_sum_assignment(-sim)
    keep = sim[i, j] >= min_sim
    return i[keep], j[keep], np.sort(j[~keep])


def _sparse_solve(
    rows: np.ndarray, cols: np.ndarray, sims: np.ndarray, n: int, m: int, min_sim: float, after: bool = False
) -> Matches:
    """Optimal matching over the candidate pairs (``rows[k]``, ``cols[k]``) with similarities ``sims``."""
    if len(rows) == 0:
        return matches_from_pairs(_EMPTY, _EMPTY, n, m)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(rows)), (rows, n + cols)), shape=(n + m, n + m))
    _, label = connected_components(graph, directed=False)
    group = label[rows]  # every pair's group; pairs of a group share no box with other groups
    sizes = np.bincount(group)
    single = sizes[group] == 1  # a pair alone in its group is matched as it is (or dropped, below the gate)
    alone = single & (sims >= min_sim)
    out_r, out_c, dropped = [rows[alone]], [cols[alone]], [cols[single & ~alone]]
    multi = (sizes[group] > 1).nonzero()[0]
    if len(multi):
        order = multi[np.argsort(group[multi], kind="stable")]
        bounds = np.diff(group[order]).nonzero()[0] + 1
        for idx in np.split(order, bounds):
            r_u, r_inv = np.unique(rows[idx], return_inverse=True)
            c_u, c_inv = np.unique(cols[idx], return_inverse=True)
            sim = np.zeros((len(r_u), len(c_u)))
            sim[r_inv, c_inv] = sims[idx]
            if after:
                i, j, late = _solve_after(sim, min_sim)
                dropped.append(c_u[late])
            else:
                ok = np.zeros(sim.shape, bool)
                ok[r_inv, c_inv] = True
                i, j = _solve(-sim, ok, -min_sim)
            out_r.append(r_u[i])
            out_c.append(c_u[j])
    return matches_from_pairs(np.concatenate(out_r), np.concatenate(out_c), n, m, np.concatenate(dropped))
