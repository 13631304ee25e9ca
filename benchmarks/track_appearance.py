"""ByteTrack with and without the appearance cue on synthetic video: identity metrics, and what the cue costs.

    .venv/bin/python benchmarks/track_appearance.py [--seeds 100 101 ...] [--frames 200] [--fps 10]
        [--objects 8] [--speed 2.5] [--detections truth|detector] [--out DIR] [--json]

Video: ``edgecv.scenes.SceneVideo`` (160x160, up to ``--objects`` shapes of random colours crossing freely, so
they occlude one another; objects 8..72 px moving ``--speed`` px per frame at 30 frames/s), tracked at ``--fps``
(every 3rd frame at 10 fps), ``--frames`` tracked frames per seed. Ground truth: the video's exact boxes and
identities (objects less than 20% visible are left out, as the video's truth does). The gates' defaults were
chosen on seeds 0..7; the default seeds 100..105 are held out.

Detections (``--detections``):

- ``truth`` (default): the true boxes as a detector would give them: objects less than 35% visible are missed
  (so occlusions make gaps), others missed at random 5% of the time, boxes jittered by 3% of their size,
  scores ``0.3 + 0.7 * visibility`` plus noise (partly hidden objects score low and go to ByteTrack's second
  stage), and about one false box per three frames scoring 0.2..0.65;
- ``detector``: the built-in detector (``converters/assets/scene_detector.keras``, needs TensorFlow) exported to
  fp32 ONNX and run through ``edgecv.load``, scores from 0.1, class-agnostic NMS; the video's objects are then
  16..72 px, the sizes the detector was trained on.

Embedding model: a small fixed CNN built here as an ONNX graph (no training): hand-set colour-opponent 1x1
filters and random 3x3 filters (ReLU), two random stride-2 3x3 layers, the colour maps pooled to the same grid
and stacked with the last layer, then a 1x1 layer that standardizes each channel with statistics of crops
from another video (seed 999). Its output is a 4-D feature map [N, 48, 8, 8]: the
:class:`~edgecv.tracking.appearance.Embedder` averages it over the grid and L2-normalizes it. Crops: the box
plus 10% per side, resized to 32x32. On one thread (other jobs may share the machine).

Rows: ByteTrack with its defaults (motion only); with ``appearance_weight`` 0.3 and re-identification off
(``reid_gate`` 0: the blended stage-1 cost and its gates only); with the defaults of every other appearance
setting (re-identification of lost tracks on). IDF1, HOTA, MOTA and ID switches are TrackEval's
(``edgecv.tracking.evaluate.evaluate_tracking``) per seed; the table shows their mean over seeds (ID switches
and track counts: totals). Cost: embedder ms per frame and per box (cropping, resizing and the model, one
batched run per frame, onnxruntime); tracker ms per frame (``update`` only; the best of 3 alternating rounds).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from _common import work_dir

import edgecv
from edgecv.tables import render
from edgecv.detection import Detections
from edgecv.manifest import Preprocess
from edgecv.preprocess import to_model_input
from edgecv.scenes import SceneOptions, SceneVideo
from edgecv.tracking import make_tracker
from edgecv.tracking.appearance import Embedder
from edgecv.tracking.evaluate import evaluate_tracking
from edgecv.tracking.mot import MotSequence

VIDEO_FPS = 30
CROP = 32
PREPROCESS = Preprocess(layout="NCHW", color="RGB", mean=(127.5,), std=(127.5,))
CALIBRATION_SEED = 999
TIMING_ROUNDS = 3
CONFIGS = {
    "motion only (ByteTrack)": {},
    "+ appearance cost": {"appearance_weight": 0.3, "reid_gate": 0.0},
    "+ re-identification": {"appearance_weight": 0.3},
}


# -- the embedding model ---------------------------------------------------------------------------------------


def _colour_filters(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """conv1: 8 colour-opponent 1x1 filters (centre tap) and 8 random 3x3 ones, OIHW, with biases."""
    w = np.zeros((16, 3, 3, 3), np.float32)
    opponents = [(1, -1, 0), (-1, 1, 0), (0, 1, -1), (0, -1, 1), (-1, 0, 1), (1, 0, -1), (1, 1, 1), (-1, -1, -1)]
    for k, v in enumerate(opponents):
        w[k, :, 1, 1] = np.array(v, np.float32) / np.linalg.norm(v)
    w[8:] = rng.normal(0, np.sqrt(2 / 27), (8, 3, 3, 3))
    b = np.zeros(16, np.float32)
    b[6:8] = 0.2  # brightness channels fire on mid-grey too
    return w, b


def build_embedder_onnx(path: Path, *, mean: np.ndarray | None = None, std: np.ndarray | None = None,
                        seed: int = 0) -> Path:
    """The fixed CNN as ONNX: NCHW [N, 3, 32, 32] in, feature map [N, 48, 8, 8] out (see the docstring).
    Without ``mean`` and ``std`` the last 1x1 layer is the identity (the raw trunk, for calibration)."""
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(seed)
    w1, b1 = _colour_filters(rng)
    w2 = rng.normal(0, np.sqrt(2 / (16 * 9)), (32, 16, 3, 3)).astype(np.float32)
    w3 = rng.normal(0, np.sqrt(2 / (32 * 9)), (32, 32, 3, 3)).astype(np.float32)
    mean = np.zeros(48, np.float32) if mean is None else mean.astype(np.float32)
    std = np.ones(48, np.float32) if std is None else std.astype(np.float32)
    w4 = (np.eye(48, dtype=np.float32) / std[:, None])[:, :, None, None]
    b4 = (-mean / std).astype(np.float32)
    z = np.zeros
    consts = {"w1": w1, "b1": b1, "w2": w2, "b2": z(32, np.float32), "w3": w3, "b3": z(32, np.float32),
              "w4": w4, "b4": b4}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("AveragePool", ["r1"], ["p1"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Concat", ["p1", "r3"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "w4", "b4"], ["features"]),
    ]
    graph = helper.make_graph(
        nodes, "scene_embedder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, CROP, CROP])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 48, CROP // 4, CROP // 4])],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return path


def make_embedder(work: Path, video_kw: dict) -> Embedder:
    """Build the trunk, standardize its pooled channels on crops of the calibration video, load the result."""
    trunk = Embedder(build_embedder_onnx(work / "trunk.onnx"), preprocess=PREPROCESS)
    feats = []
    for frame, gt in SceneVideo(seed=CALIBRATION_SEED, **video_kw).frames(150):
        if len(gt):
            x = to_model_input(trunk.crops(frame, gt), trunk.preprocess)
            feats.append(trunk.model.run(x)[0].mean(axis=(2, 3)))
    f = np.concatenate(feats)
    path = build_embedder_onnx(work / "embedder.onnx", mean=f.mean(axis=0), std=f.std(axis=0) + 1e-3)
    return Embedder(edgecv.load(path, float_io=True, threads=1), preprocess=PREPROCESS)


# -- detections -------------------------------------------------------------------------------------------------


def truth_detections(gt: Detections, rng: np.random.Generator) -> Detections:
    vis = gt.data["visibility"]
    keep = (vis >= 0.35) & (rng.random(len(gt)) >= 0.05)
    g, v = gt[keep], vis[keep]
    size = (g.xyxy[:, 2:] - g.xyxy[:, :2]).astype(np.float64)
    xyxy = g.xyxy + rng.normal(0, 0.03, g.xyxy.shape) * np.concatenate([size, size], axis=1)
    score = np.clip(0.3 + 0.7 * v + rng.normal(0, 0.05, len(g)), 0.05, 1.0)
    n_fp = rng.poisson(0.3)
    if n_fp:
        c = rng.uniform(10, 150, (n_fp, 2))
        s = rng.uniform(8, 40, (n_fp, 2))
        xyxy = np.concatenate([xyxy, np.concatenate([c - s / 2, c + s / 2], axis=1)])
        score = np.concatenate([score, rng.uniform(0.2, 0.65, n_fp)])
    xyxy[:, 2:] = np.maximum(xyxy[:, 2:], xyxy[:, :2] + 1)
    return Detections(xyxy, score, np.zeros(len(xyxy), np.int64))


def detector_runner(work: Path):
    """The built-in detector as fp32 ONNX through edgecv.load: frame -> Detections (scores from 0.1)."""
    from edgecv.converters.builtin_detector import PREPROCESS as DET_PRE
    from edgecv.converters.builtin_detector import SPEC, WEIGHTS
    from edgecv.converters.export import ExportOptions, export
    from edgecv.detection import load_spec
    from edgecv.scenes import CLASSES

    if not WEIGHTS.is_file():
        sys.exit(f"--detections detector needs {WEIGHTS}")
    report = export(WEIGHTS, to="onnx", quant="fp32", detector=SPEC, preprocess=DET_PRE, labels=list(CLASSES),
                    out=work / "detector", name="scene_detector", options=ExportOptions(bench_runs=0))
    art = next(a for a in report.artifacts if a.status == "passed" and a.path is not None)
    model = edgecv.load(art.path, float_io=True, threads=1)
    spec = load_spec(SPEC)
    spec = replace(spec, score_threshold=0.1, nms=replace(spec.nms, class_agnostic=True))  # one box per object

    def detect(frame: np.ndarray) -> Detections:
        x = (frame[None].astype(np.float32) - DET_PRE.mean[0]) / DET_PRE.std[0]
        det = spec.detect(model.run(x), input_size=frame.shape[:2])
        return Detections(det.xyxy, det.confidence, np.zeros(len(det), np.int64))

    return detect


# -- the run ----------------------------------------------------------------------------------------------------


def sequence(seed: int, frames: int, step: int, video_kw: dict) -> list[tuple[np.ndarray, Detections]]:
    video = SceneVideo(seed=seed, **video_kw)
    return [item for k, item in enumerate(video.frames(frames * step)) if k % step == 0]


def gt_sequence(truth: list[Detections]) -> MotSequence:
    frames = {k + 1: Detections(g.xyxy, np.ones(len(g)), np.full(len(g), -1), tracker_id=g.tracker_id)
              for k, g in enumerate(truth)}
    return MotSequence.from_frames(frames, kind="gt", seq_length=len(truth), source="<scene truth>")


def shaken(video: list[tuple[np.ndarray, Detections]], shake: float, rng: np.random.Generator):
    """The video seen by a shaking camera: each frame (and its truth) moved by its own random offset, normal
    with ``shake`` px standard deviation per axis; the border is mirrored in."""
    if shake <= 0:
        return video
    import cv2

    out = []
    for frame, gt in video:
        h, w = frame.shape[:2]
        dx, dy = np.clip(np.rint(rng.normal(0, shake, 2)), -3 * shake, 3 * shake).astype(int)
        pad = int(np.ceil(3 * shake))
        big = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REFLECT)
        moved = np.ascontiguousarray(big[pad - dy : pad - dy + h, pad - dx : pad - dx + w])
        xyxy = gt.xyxy.astype(np.float64) + (dx, dy, dx, dy)
        xyxy[:, 0::2] = np.clip(xyxy[:, 0::2], 0, w)
        xyxy[:, 1::2] = np.clip(xyxy[:, 1::2], 0, h)
        keep = (xyxy[:, 2] - xyxy[:, 0] >= 1) & (xyxy[:, 3] - xyxy[:, 1] >= 1)
        moved_gt = Detections(xyxy, gt.confidence, gt.class_id, gt.tracker_id, gt.data)[keep]
        out.append((moved, moved_gt))
    return out


def run(args: argparse.Namespace) -> dict:
    step = VIDEO_FPS // args.fps
    # the built-in detector was trained on objects from 16 px (a tenth of the frame), the video's default is 8
    min_scale = 0.1 if args.detections == "detector" else SceneOptions.min_scale
    video_kw = {"options": SceneOptions(max_objects=args.objects, min_scale=min_scale), "speed": args.speed,
                "spawn_rate": 0.08}
    rows = []
    embed_s, crop_s, boxes_n, frames_n = 0.0, 0.0, 0, 0
    with work_dir(args.out, "track-appearance-") as work:
        embedder = make_embedder(work, video_kw)
        detect = detector_runner(work) if args.detections == "detector" else None
        for shake in args.shake:
            per_config: dict[str, list] = {name: [] for name in CONFIGS}
            outputs: dict[str, dict] = {}
            for seed in args.seeds:
                rng = np.random.default_rng(seed + 10_000)
                video = shaken(sequence(seed, args.frames, step, video_kw), shake, rng)
                dets = []
                for frame, gt in video:
                    d = detect(frame) if detect else truth_detections(gt, rng)
                    start = time.perf_counter()
                    embedder.crops(frame, d)
                    crop_s += time.perf_counter() - start
                    start = time.perf_counter()
                    d = embedder.attach(frame, d)
                    embed_s += time.perf_counter() - start
                    boxes_n += len(d)
                    dets.append(d)
                frames_n += len(dets)
                gt_seq = gt_sequence([gt for _, gt in video])
                spent: dict[str, list[float]] = {name: [] for name in CONFIGS}
                for _ in range(TIMING_ROUNDS):  # alternating rounds; the best counts (other jobs share the CPU)
                    for name, options in CONFIGS.items():
                        tracker = make_tracker("bytetrack", options, fps=args.fps)
                        out = {}
                        start = time.perf_counter()
                        for k, d in enumerate(dets):
                            out[k + 1] = tracker.update(d)
                        spent[name].append(time.perf_counter() - start)
                        outputs[name] = out
                for name, out in outputs.items():
                    m = evaluate_tracking(gt_seq, MotSequence.from_frames(out, seq_length=len(dets)))
                    per_config[name].append({"seed": seed, "idf1": m.idf1, "hota": m.hota, "mota": m.mota,
                                             "idsw": m.idsw, "tracks": m.tracker_ids, "true_ids": m.gt_ids,
                                             "tracker_ms": 1000 * min(spent[name]) / len(dets)})
            for name, runs in per_config.items():
                rows.append({
                    "shake_px": shake, "config": name, "options": CONFIGS[name],
                    "idf1": float(np.mean([r["idf1"] for r in runs])),
                    "hota": float(np.mean([r["hota"] for r in runs])),
                    "mota": float(np.mean([r["mota"] for r in runs])), "idsw": int(sum(r["idsw"] for r in runs)),
                    "tracks": int(sum(r["tracks"] for r in runs)), "true_ids": int(sum(r["true_ids"] for r in runs)),
                    "tracker_ms_per_frame": float(np.mean([r["tracker_ms"] for r in runs])), "per_seed": runs,
                })
    return {
        "seeds": list(args.seeds), "frames_per_seed": args.frames, "fps": args.fps, "detections": args.detections,
        "objects": args.objects, "speed": args.speed, "boxes_per_frame": boxes_n / frames_n, "embedder": repr(embedder),
        "embed_ms_per_frame": 1000 * embed_s / frames_n, "embed_ms_per_box": 1000 * embed_s / max(boxes_n, 1),
        "crop_ms_per_frame": 1000 * crop_s / frames_n, "rows": rows,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104, 105],
                   help="videos (the gates were chosen on seeds 0..7; the defaults are held out)")
    p.add_argument("--frames", type=int, default=200, help="tracked frames per seed")
    p.add_argument("--fps", type=int, default=10, choices=[5, 10, 15, 30])
    p.add_argument("--objects", type=int, default=8, help="most objects in view at once")
    p.add_argument("--speed", type=float, default=2.5, help="pixels per video frame (at 30 frames/s)")
    p.add_argument("--shake", type=float, nargs="+", default=[0.0, 4.0],
                   help="camera shake, px (standard deviation of each frame's offset); one table block per value")
    p.add_argument("--detections", choices=["truth", "detector"], default="truth")
    p.add_argument("--out", type=Path, help="keep the built models here (default: a temporary folder)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    start = time.perf_counter()
    res = run(args)
    res["seconds"] = round(time.perf_counter() - start, 1)
    if args.json:
        print(json.dumps(res, indent=1))
        return
    print(f"ByteTrack on SceneVideo, seeds {' '.join(map(str, res['seeds']))}, {res['frames_per_seed']} frames each at "
          f"{res['fps']} fps, detections: {res['detections']} ({res['boxes_per_frame']:.1f} boxes/frame)")
    print(f"{res['embedder']}\n")
    table = [[f"{r['shake_px']:g}", r["config"], f"{100 * r['idf1']:.1f}", f"{100 * r['hota']:.1f}",
              f"{100 * r['mota']:.1f}", str(r["idsw"]), f"{r['tracks']}/{r['true_ids']}", f"{r['tracker_ms_per_frame']:.2f}",
              "-" if not r["options"] else f"{res['embed_ms_per_frame']:.2f}"] for r in res["rows"]]
    print(render(["shake px", "config", "IDF1", "HOTA", "MOTA", "IDSW", "ids/true", "tracker ms/frame",
                  "embed ms/frame"], table, align="rlrrrrrrr"))
    print(f"\nembedder: {res['embed_ms_per_frame']:.2f} ms per frame, {res['embed_ms_per_box']:.3f} ms per box "
          f"(cropping and resizing {res['crop_ms_per_frame']:.2f} ms per frame of that; the model on 1 thread); "
          f"total {res['seconds']} s")


if __name__ == "__main__":
    main()
