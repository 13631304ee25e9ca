"""Trackers on MOT15: TrackEval's HOTA, MOTA, IDF1 on TUD-Campus at 25 fps and at a third of it, under
occlusion, and tracker-only frames/s over the 11 sequences, for edgecv's trackers and two reference
implementations, side by side in one run.

    .venv/bin/python benchmarks/track_mot15.py [--ref-venv /work/bench-venv] [--repeats 5] [--json]

Rows: every tracker in edgecv's registry with its defaults (plus OC-SORT with each observation-centric part
switched off or on, to measure it), then the references, run in a separate venv (``--ref-venv``; skipped
with a message when absent) by ``benchmarks/_track_reference.py`` in a subprocess:

- ``SORT reference``: Bewley's sort.py as packaged by ``sort-tracker-py`` (GPL-3.0; defaults max_age=1,
  min_hits=3, iou_threshold=0.3). edgecv's ``sort`` reproduces it exactly at 25 fps (see tests/edgecv/tracking/
  test_sort.py): the two rows match there, and differ at a third of the frame rate, where the reference's
  lifetime is one frame (0.12 s) and edgecv's is 0.04 s, shorter than a frame.
- ``supervision ByteTrack``: ``supervision.ByteTrack`` with its defaults (``frame_rate`` set to the stream's),
  supervision < 0.31 (0.31 moved the tracker out to the ``trackers`` package).

Set up the reference venv once::

    python3 -m venv /work/bench-venv
    /work/bench-venv/bin/pip install sort-tracker-py "supervision<0.31"
    /work/bench-venv/bin/pip install --no-deps motmetrics   # optional: TUD-Stadtmitte's ground truth

Columns:

- ``25 fps``: TUD-Campus, all 71 frames, public detections, tracked at 25 fps. ``8.33 fps``: frames 1, 4, 7, ...
  (24 frames) of detections and ground truth, the ground truth renumbered 1..24 for TrackEval, tracked at
  25/3 fps. MOTA, HOTA, IDF1 in percent; ID switches, false positives, false negatives as counts.
- ``occl``: the same two streams with every ground-truth person's detections (matched at IoU >= 0.5)
  removed for 0.6 s once, at a random moment (3 seeds, mean): HOTA and IDF1 at 25 fps and at 8.33 fps.
- ``frames/s``: tracker updates only (inputs made beforehand), all 11 sequences of ../shared/data/mot15 at
  their own frame rates (5,500 frames), after one untimed warm-up pass; median of ``--repeats`` passes, by the
  wall clock (``wall``) and by the process's CPU time (``cpu``: less sensitive to other jobs on the machine).

TUD-Stadtmitte (179 frames, 25 fps): its ground truth is not in ../shared/data, but the ``motmetrics`` wheel
ships it; when the reference venv has motmetrics, a second table gives the same accuracy figures there. It is
the sequence OC-SORT's few choices were made on (TUD-Campus is the test sequence).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import REPO, SHARED_DATA

from edgecv.tables import render
from edgecv.detection import Detections
from edgecv.tracking import TRACKERS, make_tracker
from edgecv.tracking.evaluate import evaluate_tracking
from edgecv.tracking.mot import MotSequence, read_mot

MOT15 = SHARED_DATA / "mot15"
# Frames per second of the MOT15 training sequences (their seqinfo.ini, not shipped with the det files).
MOT15_FPS = {
    "ADL-Rundle-6": 30, "ADL-Rundle-8": 30, "ETH-Bahnhof": 14, "ETH-Pedcross2": 14, "ETH-Sunnyday": 14,
    "KITTI-13": 10, "KITTI-17": 10, "PETS09-S2L1": 7, "TUD-Campus": 25, "TUD-Stadtmitte": 25, "Venice-2": 30,
}
STEP = 3
OCCLUSION_S = 0.6
OCCLUSION_SEEDS = (0, 1, 2)
REFERENCE = REPO / "benchmarks" / "_track_reference.py"
# OC-SORT with one observation-centric part changed (the measurement of each part)
ABLATIONS = {
    "ocsort, no ORU": {"oru": False},
    "ocsort, no OCM": {"inertia": 0.0},
    "ocsort, with OCR": {"ocr": True},
    "ocsort, none of the three": {"oru": False, "inertia": 0.0},
}
REFS = {"sort": "SORT reference", "supervision": "supervision ByteTrack"}


# -- data ---------------------------------------------------------------------------------------------------------


def subsample(seq: MotSequence, step: int) -> MotSequence:
    """Frames 1, 1 + step, ... renumbered 1, 2, ... (TrackEval scores frames 1..seq_length)."""
    rows = seq.rows[(seq.rows[:, 0] - 1) % step == 0].copy()
    rows[:, 0] = (rows[:, 0] - 1) // step + 1
    return MotSequence(rows, kind=seq.kind, name=seq.name, source=seq.source,
                       seq_length=(seq.num_frames - 1) // step + 1)


def occlude(gt: MotSequence, det: MotSequence, fps: float, seed: int) -> MotSequence:
    """``det`` without the detections of each ground-truth person over one window of OCCLUSION_S seconds."""
    from scipy.optimize import linear_sum_assignment

    from edgecv.detection.boxes import box_iou

    rng = np.random.default_rng(seed)
    length = int(round(OCCLUSION_S * fps))
    hidden: dict[int, range] = {}
    for gid in np.unique(gt.rows[:, 1]).astype(int).tolist():
        frames = gt.rows[gt.rows[:, 1] == gid, 0].astype(int)
        lo, hi = frames.min() + 1, frames.max() - length + 1
        if hi > lo:
            start = int(rng.integers(lo, hi))
            hidden[gid] = range(start, start + length)
    keep = np.ones(len(det.rows), bool)
    for f in range(1, det.num_frames + 1):
        g = gt.frames[f] if f <= gt.num_frames else None
        if g is None or not len(g):
            continue
        gone = [i for i, gid in enumerate(g.tracker_id.tolist()) if f in hidden.get(gid, ())]
        rows = np.flatnonzero(det.rows[:, 0] == f)
        if not gone or not len(rows):
            continue
        d = det.frames[f]
        iou = box_iou(g.xyxy[gone], d.xyxy)
        r, c = linear_sum_assignment(-iou)
        keep[rows[c[iou[r, c] >= 0.5]]] = False
    return MotSequence(det.rows[keep], kind="det", name=det.name, seq_length=det.seq_length)


def mot15_gt(path: Path) -> MotSequence:
    """Ground truth with columns 8..10 (MOT15's world coordinates, where given) set to -1, as MOT15 scores."""
    gt = read_mot(path, kind="gt")
    rows = gt.rows.copy()
    rows[:, 7:] = -1
    return MotSequence(rows, kind="gt", name=gt.name, source=gt.source, seq_length=gt.seq_length)


# -- edgecv's trackers ----------------------------------------------------------------------------------------------


def track(name: str, options: dict | None, det: MotSequence, frames: int, fps: float) -> MotSequence:
    tracker = make_tracker(name, options, fps=fps)
    out = {}
    for f in range(1, frames + 1):
        out[f] = tracker.update(det.frames[f] if f <= det.num_frames else Detections.empty())
    return MotSequence.from_frames(out, seq_length=frames)


def scores(m) -> dict:
    return {"mota": m.mota, "hota": m.hota, "idf1": m.idf1, "idsw": m.idsw, "fp": m.fp, "fn": m.fn}


def speed(name: str, options: dict | None, seqs: dict, repeats: int) -> tuple[float, float]:
    """Median frames/s (wall clock, CPU time) of ``repeats`` passes over ``seqs``, after one untimed pass."""
    wall, cpu = [], []
    for repeat in range(repeats + 1):
        elapsed = used = 0.0
        count = 0
        for seq, frames in seqs.items():
            tracker = make_tracker(name, options, fps=MOT15_FPS[seq])
            start, start_cpu = time.perf_counter(), time.process_time()
            for dets in frames:
                tracker.update(dets)
            elapsed += time.perf_counter() - start
            used += time.process_time() - start_cpu
            count += len(frames)
        if repeat:
            wall.append(count / elapsed)
            cpu.append(count / used)
    return statistics.median(wall), statistics.median(cpu)


# -- references -------------------------------------------------------------------------------------------------------


def run_reference(python: Path, tracker: str, runs: list[dict], timing: list[dict], repeats: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"tracker": tracker, "runs": runs, "timing": timing, "repeats": repeats}, f)
    try:
        proc = subprocess.run([str(python), str(REFERENCE), f.name], capture_output=True, text=True, check=False)
    finally:
        Path(f.name).unlink()
    if proc.returncode != 0:
        raise RuntimeError(f"{tracker} reference failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout)


def reference_tracks(rows: list, frames: int) -> MotSequence:
    a = np.full((len(rows), 10), -1.0)
    if rows:
        a[:, :7] = np.asarray(rows, float)
        a[:, 2:7] = a[:, 2:7].round(6)
    a = a[np.argsort(a[:, 0], kind="stable")]
    return MotSequence(a, kind="tracks", seq_length=frames)


def motmetrics_gt(python: Path, seq: str) -> Path | None:
    for site in sorted(python.parent.parent.glob("lib/python3*/site-packages")):
        path = site / "motmetrics" / "data" / seq / "gt.txt"
        if path.is_file():
            return path
    return None


# -- the run ----------------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref-venv", type=Path, default=Path("/work/bench-venv"), help="venv with the references")
    ap.add_argument("--repeats", type=int, default=5, help="timed passes over the 11 sequences (median)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args()
    if not (MOT15 / "TUD-Campus" / "gt.txt").is_file():
        sys.exit(f"needs {MOT15} (the shared data folder beside the checkout)")

    names = sorted(TRACKERS)
    configs = {name: (name, None) for name in names}
    configs.update({label: ("ocsort", opts) for label, opts in ABLATIONS.items()})
    python = args.ref_venv / "bin" / "python"
    have_refs = python.is_file()
    if not have_refs:
        print(f"(no reference venv at {args.ref_venv}: reference rows skipped; see this script's docstring)\n")

    # sequences: TUD-Campus (test), TUD-Stadtmitte (tuning; ground truth from motmetrics, when installed)
    gts = {"TUD-Campus": mot15_gt(MOT15 / "TUD-Campus" / "gt.txt")}
    stadtmitte = motmetrics_gt(python, "TUD-Stadtmitte") if have_refs else None
    if stadtmitte is not None:
        gts["TUD-Stadtmitte"] = mot15_gt(stadtmitte)
    tmp = Path(tempfile.mkdtemp(prefix="edgecv-track-mot15-"))
    streams = {}  # (seq, step, variant) -> (gt, det, fps, det file for the references)
    for seq, gt in gts.items():
        det = read_mot(MOT15 / seq / "det.txt", kind="det")
        variants = {"clean": det}
        for seed in OCCLUSION_SEEDS:
            variants[f"occluded{seed}"] = occlude(gt, det, 25.0, seed)
        for variant, d in variants.items():
            path = tmp / f"{seq}-{variant}.txt"
            path.write_text("".join(f"{int(r[0])},-1,{r[2]:.3f},{r[3]:.3f},{r[4]:.3f},{r[5]:.3f},{r[6]:.6f}\n"
                                    for r in d.rows))
            for step in (1, STEP):
                g = gt if step == 1 else subsample(gt, step)
                streams[seq, step, variant] = (g, d if step == 1 else subsample(d, step), 25.0 / step, path)

    results: dict[str, dict] = {}
    for label, (name, opts) in configs.items():
        results[label] = {
            key: scores(evaluate_tracking(g, track(name, opts, d, g.num_frames, fps)))
            for key, (g, d, fps, _) in streams.items()
        }

    # speed over the 11 sequences
    seq_names = sorted(p.name for p in MOT15.iterdir() if (p / "det.txt").is_file())
    frames_by_seq = {}
    for seq in seq_names:
        det = read_mot(MOT15 / seq / "det.txt", kind="det")
        frames_by_seq[seq] = [det.frames[f] for f in range(1, det.num_frames + 1)]
    total_frames = sum(len(v) for v in frames_by_seq.values())
    speeds = {label: speed(name, opts, frames_by_seq, args.repeats) for label, (name, opts) in configs.items()
              if label in names}

    versions = {}
    if have_refs:
        runs = [{"det": str(path), "fps": fps, "step": key[1], "frames": g.num_frames, "key": "|".join(map(str, key))}
                for key, (g, _, fps, path) in streams.items()]
        timing = [{"det": str(MOT15 / seq / "det.txt"), "fps": MOT15_FPS[seq]} for seq in seq_names]
        for ref, label in REFS.items():
            out = run_reference(python, ref, runs, timing, args.repeats)
            versions[label] = out["version"]
            results[label] = {}
            for key, (g, _, _, _) in streams.items():
                tracks = reference_tracks(out["runs"]["|".join(map(str, key))], g.num_frames)
                results[label][key] = scores(evaluate_tracking(g, tracks))
            speeds[label] = (statistics.median(out["frames_per_second"]),
                             statistics.median(out["cpu_frames_per_second"]))

    print(report(results, speeds, gts, total_frames, len(seq_names), versions))
    if args.json:
        doc = {"accuracy": {label: {"|".join(map(str, k)): v for k, v in r.items()} for label, r in results.items()},
               "frames_per_second": {k: {"wall": v[0], "cpu": v[1]} for k, v in speeds.items()},
               "versions": versions}
        print(json.dumps(doc, indent=2))
    return 0


def report(results: dict, speeds: dict, gts: dict, total_frames: int, sequences: int, versions: dict) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}"

    def occluded(r: dict, seq: str, step: int, key: str) -> str:
        vals = [r[(seq, step, f"occluded{s}")][key] for s in OCCLUSION_SEEDS]
        return pct(float(np.mean(vals)))

    out = []
    for seq in gts:
        headers = ["tracker"]
        for rate in ("25 fps", "8.33 fps"):
            headers += [f"{h} {rate}" if h == "MOTA" else h for h in ("MOTA", "HOTA", "IDF1", "IDsw", "FP", "FN")]
        headers += ["occl HOTA 25", "IDF1", "occl HOTA 8.33", "IDF1"]
        timed = seq == "TUD-Campus"
        if timed:
            headers += ["frames/s wall", "cpu"]
        rows = []
        for label, r in results.items():
            row = [label]
            for step in (1, STEP):
                s = r[(seq, step, "clean")]
                row += [pct(s["mota"]), pct(s["hota"]), pct(s["idf1"]), str(s["idsw"]), str(s["fp"]), str(s["fn"])]
            for step in (1, STEP):
                row += [occluded(r, seq, step, "hota"), occluded(r, seq, step, "idf1")]
            if timed:
                sp = speeds.get(label)
                row += ["-", "-"] if sp is None else [f"{sp[0]:.0f}", f"{sp[1]:.0f}"]
            rows.append(row)
        title = {"TUD-Campus": "TUD-Campus (test sequence)", "TUD-Stadtmitte": "TUD-Stadtmitte (tuning sequence)"}
        out += [f"{title[seq]}: TrackEval, MOT15 rules; 8.33 fps = frames 1, 4, 7, ... at 25/3 fps", ""]
        out += [render(headers, rows, align="l" + "r" * (len(headers) - 1)), ""]
    out.append(
        f"occl: every person's detections removed once for {OCCLUSION_S} s (mean of {len(OCCLUSION_SEEDS)} seeds). "
        f"frames/s: tracker updates only, {total_frames} frames of {sequences} MOT15 sequences at their own frame "
        "rates, median of the timed passes after an untimed warm-up; wall clock and CPU time."
    )
    if versions:
        out.append("references: " + "; ".join(f"{k}: {v}" for k, v in versions.items()))
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
