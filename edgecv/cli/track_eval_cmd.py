"""``edgecv track-eval``: HOTA, MOTA and IDF1 of tracker output (or of a tracker run on detections) by TrackEval."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from edgecv.cli.commands import COMMANDS

DEFAULT_TRACKER = "ocsort"

EXAMPLES = """\
examples:
  edgecv track-eval --gt TUD-Campus/gt.txt --tracks tracks.txt
  edgecv track-eval --gt TUD-Campus/gt.txt --det TUD-Campus/det.txt --tracker bytetrack --fps 25
  edgecv track-eval --gt TUD-Campus/gt.txt --det TUD-Campus/det.txt --tracker-config ocsort.yaml --fps 8.33
  edgecv track-eval --gt MOT17-02/gt/gt.txt --det MOT17-02/det/det.txt --out tracks.txt --json

Files are MOTChallenge text: one box per line, 'frame,id,x,y,w,h,conf,...' with 1-based frames. Tracker
output is written and read as 'frame,id,x,y,w,h,conf,-1,-1,-1'. Ground truth's columns 8-10 hold -1
(MOT15), world coordinates wx,wy,wz (MOT15 3D sequences) or class,visibility (MOT16/17/20); the rules
follow from them unless --benchmark says. seqinfo.ini beside a file or one folder up gives the sequence
length and frame rate. The numbers are TrackEval's (the official MOTChallenge
evaluator), printed as percentages; --json gives fractions in [0, 1].
"""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def add_parser(sub) -> None:
    p = sub.add_parser(
        "track-eval",
        help=COMMANDS["track-eval"].summary,
        description="Score tracker output against MOTChallenge ground truth with TrackEval: HOTA (DetA, AssA), "
        "CLEAR MOT (MOTA, MOTP, ID switches, FP, FN, mostly tracked / lost) and IDF1. With --det, first run "
        "one of edgecv's trackers over the detections, frame by frame.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--gt", required=True, type=Path, help="ground truth: a MOTChallenge gt.txt")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tracks", type=Path, help="tracker output to score: frame,id,x,y,w,h,conf,...")
    src.add_argument("--det", type=Path, help="detections (a MOTChallenge det.txt) to run --tracker on, then score")
    p.add_argument("--tracker", help=f"tracker to run on --det: bytetrack, ocsort or sort (default {DEFAULT_TRACKER})")
    p.add_argument("--tracker-config", type=Path, metavar="YAML",
                   help="the tracker's options as a YAML mapping (for example max_lost_s: 2.0), with --det")
    p.add_argument("--fps", type=_positive, help="frame rate for the tracker (default: seqinfo.ini, else its own)")
    p.add_argument("--out", type=Path, help="write the tracker's output here (MOTChallenge text), with --det")
    p.add_argument("--benchmark", choices=("MOT15", "MOT16", "MOT17", "MOT20"),
                   help="ground-truth rules (default: from gt's columns 8-10: MOT17 for classes 1..13, MOT15 for "
                   "-1 or world coordinates); MOT15 ignores those columns, MOT16/17/20 need classes there")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from edgecv.errors import ConfigError
    from edgecv.tracking.evaluate import evaluate_tracking
    from edgecv.tracking.mot import read_mot, write_mot
    from edgecv.tracking.trackers import read_tracker_config, tracker_class

    if args.tracks is not None:
        for flag, value in (("--tracker", args.tracker), ("--tracker-config", args.tracker_config), ("--fps", args.fps),
                            ("--out", args.out)):
            if value is not None:
                raise ConfigError(f"{flag} is for running a tracker: use it with --det, not --tracks")
    name, options = args.tracker or DEFAULT_TRACKER, None
    if args.det is not None:  # the tracker and its options are checked before any file is read
        tracker_class(name, where="--tracker")
        if args.tracker_config is not None:
            options = read_tracker_config(args.tracker_config, tracker=name, what="--tracker-config")
    gt = read_mot(args.gt, kind="gt")
    run_info = None
    if args.det is not None:
        tracks, run_info = _run_tracker(name, read_mot(args.det, kind="det"), gt, args.fps, options)
        if args.out is not None:
            write_mot(args.out, tracks)
    else:
        tracks = read_mot(args.tracks, kind="tracks")
    metrics = evaluate_tracking(gt, tracks, benchmark=args.benchmark)
    if args.json:
        doc = {
            "ground_truth": str(args.gt),
            "tracks": str(args.tracks) if args.tracks is not None else None,
            "det": str(args.det) if args.det is not None else None,
            **(run_info or {}),
            "out": str(args.out) if args.out is not None else None,
            **metrics.to_dict(),
        }
        print(json.dumps(doc, indent=2))
    else:
        print(format_metrics(metrics, gt.name, run_info))
    return 0


def _run_tracker(name: str, det, gt, fps: float | None, options: dict | None = None):
    """Feed every frame of ``det`` (and ground truth's trailing frames, empty) to tracker ``name``."""
    import time

    from edgecv.detection.detections import Detections
    from edgecv.tracking import make_tracker
    from edgecv.tracking.mot import MotSequence

    fps = fps or det.fps
    frames = max(det.num_frames, gt.num_frames)
    _warm_up(name, fps, [det.frames.get(f) for f in range(1, min(frames, WARM_UP_FRAMES) + 1)], options)
    tracker = make_tracker(name, options, fps=fps) if fps else make_tracker(name, options)
    outputs: dict[int, Detections] = {}
    elapsed = 0.0
    for f in range(1, frames + 1):
        dets = det.frames.get(f)
        dets = Detections.empty() if dets is None else dets
        start = time.perf_counter()
        out = tracker.update(dets)
        elapsed += time.perf_counter() - start
        if out.tracker_id is not None and (out.tracker_id < 0).any():
            out = out[out.tracker_id >= 0]  # a tracker may mark unconfirmed tracks with -1: not output
        outputs[f] = out
    tracks = MotSequence.from_frames(
        outputs, kind="tracks", name=det.name, seq_length=gt.seq_length, fps=fps,
        source=f"{name} output on {det.source}",
    )
    info = {
        "tracker": name,
        "options": options or {},
        "fps": fps,
        "frames_per_second": frames / elapsed if elapsed > 0 else None,
        "timing": "tracker updates only, after an untimed warm-up run",
        "detections": int(det.num_boxes),
        "tracked_boxes": int(tracks.num_boxes),
    }
    return tracks, info


#: Frames of the sequence a throwaway tracker runs through, untimed, before the timed run.
WARM_UP_FRAMES = 10


def _warm_up(name: str, fps: float | None, frames: list, options: dict | None = None) -> None:
    """Run a throwaway tracker, untimed, so the timed run does not pay for first-use costs: SciPy's solver is
    imported on the first frame with competing matches (~0.3 s, more than the whole run of a short sequence).
    It sees two overlapping boxes (a certain competition), then the sequence's first frames."""
    import numpy as np

    from edgecv.detection.detections import Detections
    from edgecv.tracking import make_tracker

    tracker = make_tracker(name, options, fps=fps) if fps else make_tracker(name, options)
    tracker.update(np.array([[0.0, 0.0, 10.0, 10.0, 0.9]]))
    tracker.update(np.array([[0.0, 0.0, 10.0, 10.0, 0.9], [1.0, 0.0, 11.0, 10.0, 0.9]]))
    tracker = make_tracker(name, options, fps=fps) if fps else make_tracker(name, options)
    for dets in frames:
        tracker.update(Detections.empty() if dets is None else dets)


def format_metrics(m, name: str = "", run_info: dict | None = None) -> str:
    from edgecv.tables import render

    def pct(x):
        return "-" if x is None else f"{100 * x:.2f}"

    def num(x):
        return "-" if x is None else str(x)

    headers = ["HOTA", "DetA", "AssA", "MOTA", "MOTP", "IDF1", "IDsw", "FP", "FN", "MT", "ML"]
    row = [pct(m.hota), pct(m.deta), pct(m.assa), pct(m.mota), pct(m.motp), pct(m.idf1),
           num(m.idsw), num(m.fp), num(m.fn), num(m.mt), num(m.ml)]
    lines = [render(headers, [row], align="r" * len(headers)), ""]
    what = f"{name}: " if name else ""
    lines.append(
        f"{what}{m.frames} frames, {m.gt_ids} ground-truth tracks ({m.gt_dets} boxes), "
        f"{m.tracker_ids} tracker tracks ({m.tracker_dets} boxes); {m.benchmark} rules{_layout_note(m.gt_layout)}"
    )
    if run_info:
        speed = run_info["frames_per_second"]
        rate = f"{speed:.0f} frames/s" if speed else "frames/s not measured"
        at = f" at {run_info['fps']:g} fps" if run_info["fps"] else ""
        lines.append(
            f"tracker {run_info['tracker']}{at}: {rate} "
            f"({run_info['detections']} detections in, {run_info['tracked_boxes']} tracked boxes out; "
            "timed: tracker updates only, after an untimed warm-up run)"
        )
    lines.append("percent; IDsw: ID switches, MT/ML: ground-truth tracks mostly tracked / mostly lost")
    return "\n".join(lines)


def _layout_note(layout: str | None) -> str:
    from edgecv.tracking.mot import GT_LAYOUTS

    if layout in (None, "2d", "classes"):
        return ""
    if layout == "world":
        return f" (gt columns 8-10: {GT_LAYOUTS['world']}, not used)"
    return " (gt columns 8-10 ignored)"
