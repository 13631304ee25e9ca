"""``edgecv detect``: run a detector on an image, a folder of images or a video; annotated frames, COCO
predictions and per-stage timings."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgecv.cli.commands import COMMANDS

# Kept in step with edgecv.detection.frames.RESIZE_MODES and ILLUMINATIONS (a test checks), so that
# building the parser imports neither numpy nor OpenCV.
RESIZE_CHOICES = ("stretch", "letterbox", "letterbox_top_left")
ILLUMINATION_CHOICES = ("none", "gamma", "auto_gamma", "clahe")

PREDICTIONS = "predictions.json"
FRAMES_LOG = "detections.jsonl"
EXIT_TRUNCATED = 4

EXAMPLES = f"""\
examples:
  edgecv detect --model face_detection_short_range.tflite --spec blazeface-short-range --source photos/ --out runs/faces
  edgecv detect --model detect.tflite --spec ssd-mobilenet-v1-coco --labels labelmap.txt --source a.avi --out runs/a
  edgecv detect --model palm_detection_full.tflite --spec palm-detection --source hands/ --out runs/palms
  edgecv detect --model artifacts/detector.int8.onnx --source frame.jpg --out runs/one --resize letterbox --json
  edgecv eval-det --gt instances_val.json --pred runs/faces/predictions.json

OUT receives the annotated images (a video: an annotated .mp4), predictions.json (COCO: images, scored
annotations, categories; what 'edgecv eval-det --pred' reads) and detections.jsonl (one JSON line per
frame: boxes as x0,y0,x1,y1 in frame pixels, scores, labels, stage times). Files appear only when the run
succeeds. Images that cannot be decoded are skipped with a warning (and listed in the summary); a source
that gives no frame at all is an error. A video that ends short of the frames its container declares (cut
short, damaged) is "truncated": a warning says how many frames were expected and read, the outputs of the
frames read are written, and the exit code is {EXIT_TRUNCATED} unless --allow-truncated. Without --spec, the spec
recorded in the model's manifest (edgecv export --detector) is used. 'edgecv specs list' shows the built-in
specs.

exit codes: 0 done, 2 error, {EXIT_TRUNCATED} the video was cut short (0 with --allow-truncated).
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "detect",
        help=COMMANDS["detect"].summary,
        description="Run a detector on an image, a folder of images or a video file: resize each frame into "
        "the model (stretch or letterbox), run it, decode and suppress overlaps as the detector spec says, "
        "and map the boxes back to the frame. Writes annotated frames and COCO predictions; prints the "
        "detections and the median time of each stage (preprocess, inference, postprocess).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, type=Path, help="a .tflite, .onnx or OpenVINO .xml detector")
    p.add_argument("--spec", help="detector spec: a built-in name (see 'edgecv specs list') or a YAML file "
                   "(docs/specs.md; default: the one in the model's manifest)")
    p.add_argument("--source", required=True, help="an image file, a folder of images, or a video file")
    p.add_argument("--out", required=True, type=Path, help="output folder (created if needed)")
    p.add_argument("--score", type=float, help="minimum score (default: the spec's score_threshold)")
    p.add_argument("--resize", choices=RESIZE_CHOICES,
                   help="how frames fit the model input: stretch, or letterbox (keeps the aspect ratio) "
                   "(default: the spec's resize, else stretch)")
    p.add_argument("--illumination", choices=ILLUMINATION_CHOICES, default="none",
                   help="lighting correction before the model (default none)")
    p.add_argument("--labels", type=Path, help="class names, one per line (line k is class k), or a YAML file with "
                   "'names'; replaces the spec's (the SSD spec has none: pass its labelmap.txt)")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--allow-truncated", action="store_true",
                   help=f"exit 0 when a video ends short of its declared frames (default: exit {EXIT_TRUNCATED})")
    p.add_argument("--backend", help="runtime to use (default: the first installed for the format)")
    from edgecv.cli.options import add_verify_option

    add_verify_option(p)
    p.add_argument("--threads", type=int, help="runtime threads (default: every core)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=run)


# -- output folder: everything goes to a hidden staging folder first, and moves in when the run succeeds --


class Staging:
    """A hidden folder inside ``out`` whose files are moved into ``out`` by :meth:`commit`.

    On any failure the staging folder is removed, and so is ``out`` when this run created it and it is
    empty: a failed run leaves nothing behind.
    """

    def __init__(self, out: Path) -> None:
        from edgecv.fileio import ensure_writable_dir

        self.out = out
        self.created = not out.exists()
        ensure_writable_dir(out)
        self.dir = Path(tempfile.mkdtemp(prefix=".edgecv-detect-", dir=out))

    def commit(self) -> list[Path]:
        moved = []
        for f in sorted(self.dir.iterdir()):
            dest = self.out / f.name
            os.replace(f, dest)
            moved.append(dest)
        return moved

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        if exc_type is not None and self.created:
            try:
                self.out.rmdir()
            except OSError:
                pass


def _check_not_overwriting_sources(out: Path, source) -> None:
    from edgecv.errors import ConfigError

    out_dir = out.resolve()
    if getattr(source, "files", None) and any(f.resolve().parent == out_dir for f in source.files):
        raise ConfigError(f"--out {out} is where the source images are; the annotated images would replace them")
    if source.is_video and (out_dir / f"{source.name}.mp4") == Path(source.text).resolve():
        raise ConfigError(f"--out {out} holds the source video; the annotated video would replace it")


# -- the outputs of one run -------------------------------------------------------------------------------


class Outputs:
    """Annotated frames, the per-frame JSON lines and the COCO predictions of one run, in ``folder``."""

    def __init__(self, folder: Path, source, labels) -> None:
        from edgecv.deps import require

        self.cv2 = require("cv2", extra="opencv", purpose="write annotated frames", package="opencv-python-headless")
        self.folder = folder
        self.source = source
        self.labels = labels
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.class_counts: dict[int, int] = {}
        self.video = None
        self.video_path: Path | None = None
        self.log = open(folder / FRAMES_LOG, "w", encoding="utf-8")

    def add(self, frame, detections, timing) -> None:
        from edgecv.annotate import annotate
        from edgecv.errors import OutputError

        width, height = frame.size
        image_id = len(self.images) + 1
        entry: dict[str, Any] = {"id": image_id, "file_name": frame.name, "width": width, "height": height}
        if frame.time_ms is not None:
            entry.update(frame_index=frame.index, time_ms=round(frame.time_ms, 3))
        self.images.append(entry)
        names = self._names(detections)
        for item in detections.to_coco(image_id=image_id):
            x, y, w, h = item["bbox"]
            item["bbox"] = [round(v, 3) for v in item["bbox"]]
            item["score"] = round(item["score"], 5)
            if "keypoints" in item:
                item["keypoints"] = [round(v, 3) for v in item["keypoints"]]
            self.annotations.append({"id": len(self.annotations) + 1, **item, "area": round(w * h, 3), "iscrowd": 0})
        for c in detections.class_id.tolist():
            self.class_counts[c] = self.class_counts.get(c, 0) + 1
        self.log.write(json.dumps(self._record(frame, detections, names, timing)) + "\n")

        shown = annotate(frame.image, detections, labels=self.labels)
        if self.source.is_video:
            self._write_video_frame(shown)
        else:
            suffix = Path(frame.name).suffix or ".png"
            ok, buf = self.cv2.imencode(suffix, shown)
            if not ok:
                raise OutputError(f"cannot encode the annotated {frame.name} as {suffix}")
            (self.folder / frame.name).write_bytes(buf.tobytes())

    def _names(self, detections) -> list[str]:
        from edgecv.labels import label_of

        return [label_of(self.labels, c) for c in detections.class_id.tolist()]

    @staticmethod
    def _record(frame, detections, names, timing) -> dict[str, Any]:
        rows = []
        kps = detections.data.get("keypoints")
        for i in range(len(detections)):
            row: dict[str, Any] = {
                "class_id": int(detections.class_id[i]),
                "label": names[i],
                "score": round(float(detections.confidence[i]), 5),
                "xyxy": [round(float(v), 3) for v in detections.xyxy[i]],
            }
            if detections.tracker_id is not None:
                row["track_id"] = int(detections.tracker_id[i])
            if kps is not None and kps.ndim == 3:
                row["keypoints"] = [[round(float(v), 3) for v in p[:2]] for p in kps[i]]
            rows.append(row)
        record: dict[str, Any] = {"frame": frame.index, "file_name": frame.name, "width": frame.size[0],
                                  "height": frame.size[1]}
        if frame.time_ms is not None:
            record["time_ms"] = round(frame.time_ms, 3)
        record["timing_ms"] = {k: round(v, 4) for k, v in timing.to_dict().items()}
        record["detections"] = rows
        return record

    def _write_video_frame(self, shown) -> None:
        from edgecv.errors import OutputError

        cv2 = self.cv2
        h, w = shown.shape[:2]
        if self.video is None:
            self.video_path = self.folder / f"{self.source.name}.mp4"
            self.video = cv2.VideoWriter(str(self.video_path), cv2.VideoWriter_fourcc(*"mp4v"), self.source.fps, (w, h))
            if not self.video.isOpened():
                raise OutputError(f"cannot write video {self.video_path.name}: OpenCV has no mp4v encoder here")
            self._video_size = (w, h)
        if (w, h) != self._video_size:
            shown = cv2.resize(shown, self._video_size)
        self.video.write(shown)

    def close(self) -> None:
        if self.video is not None:
            self.video.release()
            self.video = None
        if not self.log.closed:
            self.log.close()

    def coco(self) -> dict[str, Any]:
        from edgecv.labels import label_of

        ids = sorted(set(range(len(self.labels or ()))) | set(self.class_counts))
        categories = [{"id": i, "name": label_of(self.labels, i)} for i in ids]
        return {"images": self.images, "annotations": self.annotations, "categories": categories}

    def finish(self) -> None:
        from edgecv.fileio import atomic_write_text

        self.close()
        atomic_write_text(self.folder / PREDICTIONS, json.dumps(self.coco()) + "\n")


# -- the command ------------------------------------------------------------------------------------------


def run(args) -> int:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from edgecv.detection.detector import Detector
    from edgecv.detection.frames import FrameOptions
    from edgecv.errors import ConfigError, InputError
    from edgecv.labels import read_labels
    from edgecv.sources import open_source

    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames must be at least 1, got {args.max_frames}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    labels = read_labels(args.labels) if args.labels else None
    options = FrameOptions(resize=args.resize, illumination=args.illumination, frame_color="BGR")
    with open_source(args.source) as source:
        detector = Detector(args.model, spec=args.spec, options=options, threads=args.threads, backend=args.backend,
                            labels=labels, score_threshold=args.score, verify=args.verify)
        _check_not_overwriting_sources(args.out, source)
        total = source.length if args.max_frames is None else min(source.length or args.max_frames, args.max_frames)
        with Staging(args.out) as stage:
            outputs = Outputs(stage.dir, source, detector.labels)
            try:
                with logging_redirect_tqdm(), tqdm(source, total=total, unit="frame", leave=False,
                                                   disable=args.json) as bar:
                    for frame in bar:
                        detections = detector.detect(frame.image)
                        outputs.add(frame, detections, detector.last_timing)
                        if args.max_frames is not None and len(outputs.images) >= args.max_frames:
                            break
            finally:
                outputs.close()
            if not outputs.images:
                raise InputError(f"no frames could be read from {args.source} ({len(source.skipped)} skipped)")
            outputs.finish()
            stage.commit()
    summary = _summary(args, source, detector, outputs)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
    if source.truncated and not args.allow_truncated:
        print(f"edgecv: error: {source.truncated}; the outputs hold the {summary['frames']} frames read "
              "(--allow-truncated accepts a cut-short input)", file=sys.stderr)
        return EXIT_TRUNCATED
    return 0


def _summary(args, source, detector, outputs) -> dict[str, Any]:
    out = args.out
    from edgecv.labels import label_of

    per_class = [{"class_id": c, "name": label_of(outputs.labels, c), "count": n}
                 for c, n in sorted(outputs.class_counts.items())]
    files: dict[str, Any] = {"predictions": str(out / PREDICTIONS), "frames": str(out / FRAMES_LOG)}
    if source.is_video:
        files["video"] = str(out / f"{source.name}.mp4")
    else:
        files["images"] = len(outputs.images)
    spec = detector.spec
    return {
        "model": str(args.model),
        "backend": detector.model.backend,
        "spec": spec.name or spec.decoder,
        "source": str(args.source),
        "source_kind": source.kind,
        "input_size": list(detector.input_size),
        "resize": detector.options.resize,
        "illumination": detector.options.illumination,
        "score_threshold": spec.score_threshold,
        "frames": len(outputs.images),
        "state": "truncated" if source.truncated else "ended",
        "input": source.input_report(),
        "skipped": [{"name": n, "reason": r} for n, r in source.skipped],
        "detections": len(outputs.annotations),
        "per_class": per_class,
        "timing_ms": detector.timings.to_dict(),
        "out": str(out),
        "files": files,
    }


def format_summary(s: dict[str, Any]) -> str:
    from edgecv.tables import fmt_float, render

    med = s["timing_ms"]["median"]
    fps = 1000.0 / med["total_ms"] if med["total_ms"] else None
    head = ["frames", "skipped", "detections", "preprocess ms", "inference ms", "postprocess ms", "total ms", "frames/s"]
    row = [str(s["frames"]), str(len(s["skipped"])), str(s["detections"]), fmt_float(med["preprocess_ms"], ".2f"),
           fmt_float(med["inference_ms"], ".2f"), fmt_float(med["postprocess_ms"], ".2f"),
           fmt_float(med["total_ms"], ".2f"), fmt_float(fps, ".0f")]
    lines = [render(head, [row], align="rrrrrrrr"), ""]
    lines.append(f"{s['model']} ({s['backend']}), spec {s['spec']}, input {s['input_size'][0]}x{s['input_size'][1]} "
                 f"{s['resize']}, score >= {s['score_threshold']:g}; times are medians per frame")
    if s["per_class"]:
        lines.append("by class: " + ", ".join(f"{c['name']} {c['count']}" for c in s["per_class"]))
    if s["skipped"]:
        shown = ", ".join(k["name"] for k in s["skipped"][:5]) + (" ..." if len(s["skipped"]) > 5 else "")
        lines.append(f"skipped {len(s['skipped'])} unreadable: {shown}")
    if s["input"]["truncated"]:
        lines.append(f"ended: truncated ({s['input']['truncated']})")
    files = s["files"]
    what = f"annotated video {Path(files['video']).name}" if "video" in files else f"{files['images']} annotated images"
    lines.append(f"wrote {what}, {PREDICTIONS} and {FRAMES_LOG} to {s['out']}")
    return "\n".join(lines)
