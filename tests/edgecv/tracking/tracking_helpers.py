"""Shared by the tracking tests: MOT15 det/gt readers, running a tracker over a sequence, and CLEAR-MOT.

``clear_mot`` is the CLEAR-MOT definition as the MOTChallenge evaluator (TrackEval) computes it: per frame an
optimal matching of truth to tracker boxes at IoU >= 0.5 that first keeps the pairs of the previous frame;
an ID switch when a truth object is matched to another tracker id than at its last match. The tests check it
against TrackEval itself where TrackEval is installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from edgecv.detection import Detections
from edgecv.detection.boxes import box_iou
from tests.conftest import SHARED_DATA

MOT15 = SHARED_DATA / "mot15"
MOT15_SEQUENCES = sorted(p.name for p in MOT15.iterdir() if (p / "det.txt").is_file()) if MOT15.is_dir() else []
# Frames per second of the MOT15 training sequences (their seqinfo.ini, not shipped with the det files).
MOT15_FPS = {
    "ADL-Rundle-6": 30, "ADL-Rundle-8": 30, "ETH-Bahnhof": 14, "ETH-Pedcross2": 14, "ETH-Sunnyday": 14,
    "KITTI-13": 10, "KITTI-17": 10, "PETS09-S2L1": 7, "TUD-Campus": 25, "TUD-Stadtmitte": 25, "Venice-2": 30,
}

Frame = tuple[np.ndarray, np.ndarray]  # (ids [N], xyxy [N, 4])


def _rows(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", ndmin=2)


def read_detections(seq_dir: Path, frames: int | None = None) -> list[Detections]:
    """``det.txt`` as one Detections per frame (1-based frames become list positions 0..)."""
    a = _rows(seq_dir / "det.txt")
    n = int(a[:, 0].max()) if frames is None else frames
    out = []
    for f in range(1, n + 1):
        r = a[a[:, 0] == f]
        xyxy = np.concatenate([r[:, 2:4], r[:, 2:4] + r[:, 4:6]], axis=1)
        out.append(Detections(xyxy, r[:, 6], np.zeros(len(r), np.int64)))
    return out


def read_truth(path: Path) -> list[Frame]:
    """``gt.txt`` rows kept by the MOT15 evaluator (``conf`` not 0) as (ids, xyxy) per frame."""
    a = _rows(path)
    a = a[a[:, 6] != 0]
    out = []
    for f in range(1, int(a[:, 0].max()) + 1):
        r = a[a[:, 0] == f]
        out.append((r[:, 1].astype(np.int64), np.concatenate([r[:, 2:4], r[:, 2:4] + r[:, 4:6]], axis=1)))
    return out


def run_tracker(tracker, frames: list[Detections]) -> list[Frame]:
    outs = []
    for det in frames:
        o = tracker.update(det)
        outs.append((o.tracker_id.copy(), o.xyxy.astype(np.float64)))
    return outs


def clear_mot(truth: list[Frame], hyp: list[Frame], threshold: float = 0.5) -> dict[str, float]:
    """MOTA, FP, FN, IDSW, TP, recall and precision of tracker output ``hyp`` against ``truth``."""
    assert len(truth) == len(hyp), (len(truth), len(hyp))
    eps = np.finfo(float).eps
    last: dict[int, int] = {}  # truth id -> tracker id at its last match
    prev: dict[int, int] = {}  # truth id -> tracker id in the previous frame
    tp = fp = fn = idsw = n_gt = 0
    for (gid, gbox), (hid, hbox) in zip(truth, hyp):
        n_gt += len(gid)
        if len(gid) == 0 or len(hid) == 0:  # (the previous frame's pairs still count for the next one)
            fp, fn = fp + len(hid), fn + len(gid)
            continue
        sim = box_iou(gbox, hbox)
        keep = np.array([[prev.get(int(g)) == int(h) for h in hid] for g in gid])
        score = 1000.0 * keep + sim
        score[sim < threshold - eps] = 0.0
        r, c = linear_sum_assignment(-score)
        ok = score[r, c] > eps
        r, c = r[ok], c[ok]
        now = {}
        for g, h in zip(gid[r].tolist(), hid[c].tolist()):
            if g in last and last[g] != h:
                idsw += 1
            last[g] = now[g] = h
        prev = now
        tp += len(r)
        fn += len(gid) - len(r)
        fp += len(hid) - len(r)
    return {
        "MOTA": 1.0 - (fn + fp + idsw) / max(n_gt, 1), "FP": fp, "FN": fn, "IDSW": idsw, "TP": tp,
        "recall": tp / max(n_gt, 1), "precision": tp / max(tp + fp, 1),
    }


def trackeval_data(truth: list[Frame], hyp: list[Frame]) -> dict:
    """The per-sequence ``data`` dict TrackEval's metrics take (ids made 0-based and contiguous)."""
    g_ids = np.unique(np.concatenate([g for g, _ in truth]))
    h_ids = np.unique(np.concatenate([h for h, _ in hyp]))
    data = {
        "num_timesteps": len(truth), "num_gt_ids": len(g_ids), "num_tracker_ids": len(h_ids),
        "num_gt_dets": sum(len(g) for g, _ in truth), "num_tracker_dets": sum(len(h) for h, _ in hyp),
        "gt_ids": [np.searchsorted(g_ids, g) for g, _ in truth],
        "tracker_ids": [np.searchsorted(h_ids, h) for h, _ in hyp],
        "similarity_scores": [box_iou(gb, hb) for (_, gb), (_, hb) in zip(truth, hyp)],
    }
    return data


def trackeval_scores(truth: list[Frame], hyp: list[Frame]) -> dict[str, float]:
    """TrackEval's CLEAR, Identity and HOTA on in-memory arrays (needs ``trackeval``)."""
    from trackeval.metrics import CLEAR, HOTA, Identity

    data = trackeval_data(truth, hyp)
    quiet = {"PRINT_CONFIG": False}
    clear = CLEAR(quiet).eval_sequence(data)
    ident = Identity(quiet).eval_sequence(data)
    hota = HOTA().eval_sequence(data)
    return {
        "MOTA": float(clear["MOTA"]), "FP": int(clear["CLR_FP"]), "FN": int(clear["CLR_FN"]),
        "IDSW": int(clear["IDSW"]), "recall": float(clear["CLR_Re"]), "precision": float(clear["CLR_Pr"]),
        "IDF1": float(ident["IDF1"]), "HOTA": float(np.mean(hota["HOTA"])),
    }
