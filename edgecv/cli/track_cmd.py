"""``edgecv track``: detection and tracking on a camera, stream, video, image folder or the scene generator;
annotated video, JSON lines with tracks and events, MOT txt, line and zone counts and a summary."""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

# Kept in step with the registries (a test checks), so that building the parser stays light.
TRACKER_CHOICES = ("bytetrack", "ocsort", "sort")
SINK_CHOICES = ("video", "jsonl", "mot")
RESIZE_CHOICES = ("stretch", "letterbox", "letterbox_top_left")

SUMMARY = "summary.json"
GT_FILE = "gt.mot.txt"
SUMMARY_EVERY_S = 5.0

# Exit codes (also in --help).
EXIT_OK, EXIT_ERROR, EXIT_LOST, EXIT_STOPPED = 0, 1, 3, 130

EXAMPLES = f"""\
examples:
  edgecv track --model runs/demo/artifacts --source synthetic --out runs/track
  edgecv track --model detector.int8.onnx --source 0 --line door=0,400,1280,400
  edgecv track --model ssd.tflite --spec ssd-mobilenet-v1-coco --source rtsp://cam.local/stream --out runs/cam
  edgecv track --model best.onnx --spec yolo.yaml --source street.mp4 --realtime --zone lot=10,10,600,10,600,400,10,400

SOURCE: a camera index (0), a stream URL (rtsp://, http(s)://, tcp://, udp://...), a video file, an image
folder or glob ('frames/*.jpg'), or 'synthetic[:seed=N,frames=N,size=WxH,fps=F]' (generated scenes with
exact ground truth: MOTA, IDF1 and HOTA are printed at the end). MODEL: an artifact, or a folder of
artifacts (the fastest on this machine is picked by measuring each).

Live sources keep only the newest frame when processing falls behind and count the frames dropped; a
dropped stream is reopened with exponential backoff (--reconnect attempts). Files process every frame
unless --stride or --realtime says otherwise.

OUT receives the annotated video (<source>.mp4), tracks.jsonl (one line per frame: tracks, enter/exit and
line/zone events), tracks.mot.txt (MOTChallenge) and summary.json (fps, per-stage times, queue depths,
latency, drops, counts); text outputs are flushed every second.

exit codes: {EXIT_OK} the source ended, {EXIT_ERROR} error, {EXIT_LOST} a live source was lost for good,
{EXIT_STOPPED} stopped by Ctrl-C or SIGTERM (all outputs closed cleanly).
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "track",
        help="detect and track objects on a camera, stream, video or image folder",
        description="Run a detector and a multi-object tracker on a frame source, as a pipeline of concurrent "
        "stages (capture, preprocess + inference, decode + NMS, tracking, outputs) joined by bounded queues. "
        "Writes an annotated video, per-frame tracks and events, MOT txt and a summary with per-stage times "
        "and capture-to-result latency.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, type=Path, help="a .tflite, .onnx or OpenVINO .xml detector, or a folder")
    p.add_argument("--spec", help="detector spec: a built-in name or a YAML file (default: the model's manifest)")
    p.add_argument("--labels", type=Path, help="class names, one per line, replacing the spec's")
    p.add_argument("--source", required=True, help="camera index, stream URL, video, image folder or glob, or synthetic")
    p.add_argument("--out", type=Path, default=Path("runs/track"), help="output folder (default: runs/track)")
    p.add_argument("--tracker", choices=TRACKER_CHOICES, default="ocsort", help="tracker (default ocsort)")
    p.add_argument("--tracker-config", type=Path, metavar="YAML", help="tracker options (a YAML mapping)")
    p.add_argument("--sinks", default=",".join(SINK_CHOICES),
                   help=f"outputs to write, comma-separated from {', '.join(SINK_CHOICES)} (default: all)")
    p.add_argument("--video-format", choices=("mp4", "mkv"), default="mp4",
                   help="annotated video container: mp4 (default) or mkv (readable even after a hard kill)")
    p.add_argument("--line", action="append", default=[], metavar="[NAME=]X0,Y0,X1,Y1",
                   help="count tracks crossing this line (frame pixels); repeatable")
    p.add_argument("--zone", action="append", default=[], metavar="[NAME=]X0,Y0,X1,Y1,X2,Y2,...",
                   help="count tracks entering this polygon (frame pixels); repeatable")
    p.add_argument("--stride", type=int, default=1, help="process one frame in N (default 1)")
    p.add_argument("--realtime", action="store_true",
                   help="read a file at its own frame rate, like a camera: frames that processing cannot keep up "
                   "with are dropped")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--reconnect", type=int, default=8, metavar="N",
                   help="attempts to reopen a dropped live source, with backoff 0.5 s doubling to 8 s (default 8)")
    p.add_argument("--gt", type=Path, metavar="MOT_TXT", help="ground truth to score the tracks against (MOTChallenge)")
    p.add_argument("--score", type=float, help="minimum detection score (default: the spec's)")
    p.add_argument("--resize", choices=RESIZE_CHOICES, default="stretch", help="how frames fit the model input")
    p.add_argument("--backend", help="runtime to use (default: the first installed for the format)")
    p.add_argument("--threads", type=int, help="runtime threads (default: every core)")
    p.add_argument("--sequential", action="store_true",
                   help="run the stages one after another in one thread (to compare with the pipeline)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=run)


def _counters(args) -> list:
    from edgecv.pipeline.zones import Line, LineCounter, Zone, ZoneCounter

    return [LineCounter(Line.parse(t)) for t in args.line] + [ZoneCounter(Zone.parse(t)) for t in args.zone]


def _sinks(args, source, counters) -> list:
    from edgecv.errors import ConfigError
    from edgecv.pipeline.sinks import SINKS, VideoSink, make_sink

    kinds = [k.strip() for k in args.sinks.split(",") if k.strip()]
    bad = [k for k in kinds if k not in SINKS]
    if bad:
        raise ConfigError(f"--sinks: unknown {', '.join(bad)}; valid sinks: {', '.join(SINKS)}")
    sinks = []
    for kind in dict.fromkeys(kinds):
        if kind == VideoSink.name:
            path = args.out / f"{source.name}.{args.video_format}"
            if source.kind == "video" and path.resolve() == Path(source.text).resolve():
                raise ConfigError(f"--out {args.out} holds the source video; the annotated video would replace it")
            sinks.append(VideoSink(path, counters=counters, stride=args.stride))
        else:
            sinks.append(make_sink(kind, args.out))
    return sinks


def _detector(args):
    from edgecv.cli.detect_cmd import _read_class_names
    from edgecv.detection.detector import Detector
    from edgecv.detection.frames import FrameOptions

    model, chosen = args.model, None
    if model.is_dir():
        from edgecv.pipeline.select import fastest_artifact

        model, chosen = fastest_artifact(model, threads=args.threads, detectors_only=args.spec is None)
    labels = _read_class_names(args.labels) if args.labels else None
    detector = Detector(model, spec=args.spec, options=FrameOptions(resize=args.resize, frame_color="BGR"),
                        threads=args.threads, backend=args.backend, labels=labels, score_threshold=args.score)
    return detector, chosen


def _check(args) -> None:
    from edgecv.errors import ConfigError

    for flag, value, low in (("--stride", args.stride, 1), ("--max-frames", args.max_frames, 1),
                             ("--reconnect", args.reconnect, 0), ("--threads", args.threads, 1)):
        if value is not None and value < low:
            raise ConfigError(f"{flag} must be at least {low}, got {value}")
    if args.gt is not None and not args.gt.is_file():
        raise ConfigError(f"--gt {args.gt}: file not found")


class _Signals:
    """Ctrl-C and SIGTERM set ``stop`` (the run then ends cleanly) instead of killing the process."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop, self.caught, self._old = stop, None, {}

    def _handle(self, signum, _frame) -> None:
        self.caught = signal.Signals(signum).name
        self.stop.set()

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def run(args) -> int:
    from tqdm import tqdm

    from edgecv.fileio import atomic_write_text, ensure_writable_dir
    from edgecv.pipeline.capture import CaptureOptions
    from edgecv.pipeline.runner import Pipeline, PipelineOptions
    from edgecv.sources import open_source
    from edgecv.tracking import make_tracker
    from edgecv.cli.track_eval_cmd import _tracker_options

    _check(args)
    tracker_options = _tracker_options(args.tracker_config)
    counters = _counters(args)
    detector, chosen = _detector(args)
    stop = threading.Event()
    with open_source(args.source) as source:
        ensure_writable_dir(args.out)
        sinks = _sinks(args, source, counters)
        fps = (source.fps or 30.0) / args.stride
        tracker = make_tracker(args.tracker, tracker_options, fps=fps)
        capture = CaptureOptions(stride=args.stride, realtime=args.realtime, max_frames=args.max_frames,
                                 reconnect_attempts=args.reconnect)
        pipeline = Pipeline(detector, tracker=tracker, counters=counters, sinks=sinks,
                            options=PipelineOptions(concurrent=not args.sequential))
        total = args.max_frames or source.length
        if total and args.max_frames and source.length:
            total = min(args.max_frames, source.length // args.stride)
        bar = tqdm(total=total, unit="frame", leave=False, disable=args.json, dynamic_ncols=True)
        last_summary = [time.monotonic()]

        def progress(status) -> None:
            bar.update(status.frames - bar.n)
            post = {"fps": f"{status.fps:.1f}" if status.fps else "-",
                    "latency": f"{status.latency_ms:.0f}ms" if status.latency_ms else "-"}
            if source.live or status.dropped:
                post["dropped"] = status.dropped
            if status.state != "running":
                post["state"] = status.state
            bar.set_postfix(post, refresh=False)
            if time.monotonic() - last_summary[0] >= SUMMARY_EVERY_S:
                last_summary[0] = time.monotonic()
                partial = {"state": "running", "frames": status.frames, "dropped": status.dropped,
                           "elapsed_s": round(status.elapsed_s, 1), "fps": status.fps}
                atomic_write_text(args.out / SUMMARY, json.dumps(partial, indent=1) + "\n")

        with _Signals(stop) as signals:
            try:
                report = pipeline.run(source, capture=capture, stop=stop, progress=progress)
            finally:
                bar.close()
        truth = _ground_truth(args, source, pipeline.processed)
    summary = _summary(args, report, detector, chosen, tracker, signals.caught)
    if truth is not None and report.frames:
        summary["tracking_metrics"] = _score(truth, args.out / "tracks.mot.txt", sinks)
    atomic_write_text(args.out / SUMMARY, json.dumps(summary, indent=1, default=str) + "\n")
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    if signals.caught:
        return EXIT_STOPPED
    return EXIT_LOST if report.state == "lost" else EXIT_OK


def _ground_truth(args, source, processed: list[int]) -> Path | None:
    """The ground truth to score against: --gt, or the generator's exact truth of the frames processed
    (frames left out by --stride or dropped by --realtime are not held against the tracker), written to OUT."""
    if args.gt is not None:
        return args.gt
    truth = getattr(source, "truth", None)
    if not truth:
        return None
    from edgecv.fileio import atomic_write_text
    from edgecv.scenes import to_mot_rows

    rows = [row for i in processed for row in to_mot_rows(i, truth[i])]
    path = args.out / GT_FILE
    atomic_write_text(path, "\n".join(rows) + "\n")
    return path


def _score(gt: Path, tracks: Path, sinks) -> dict[str, Any] | None:
    from edgecv.errors import ConfigError
    from edgecv.tracking.evaluate import evaluate_tracking

    if not any(s.name == "mot" for s in sinks):
        raise ConfigError("scoring against ground truth needs the mot sink (--sinks ...,mot)")
    return evaluate_tracking(gt, tracks).to_dict()


def _summary(args, report, detector, chosen, tracker, caught) -> dict[str, Any]:
    d = report.to_dict()
    d.update(model=str(detector.model.path), backend=detector.model.backend,
             spec=detector.spec.name or detector.spec.decoder, tracker=tracker.name, out=str(args.out))
    if chosen is not None:
        d["model_choice"] = chosen
    if caught:
        d["stopped_by"] = caught
    return d


def format_summary(s: dict[str, Any]) -> str:
    from edgecv.cli.table import fmt_float, render

    rows = []
    for name, st in s["stages"].items():
        rows.append([name, fmt_float(st["median_ms"], ".2f"), fmt_float(st["p99_ms"], ".2f"),
                     fmt_float(None if st["busy"] is None else 100 * st["busy"], ".0f"),
                     fmt_float(st["queue_mean"], ".2f"), str(st["queue_max"] if st["queue_max"] is not None else "-")])
    lines = [render(["stage", "median ms", "p99 ms", "busy %", "queue mean", "queue max"], rows, align="lrrrrr"), ""]
    lat, cap = s["latency_ms"], s["capture"]
    mode = "sequential" if not s["concurrent"] else "pipelined"
    lines.append(f"{s['frames']} frames in {s['wall_s']:.1f} s: {s['fps']:.1f} frames/s ({mode}); capture-to-result "
                 f"latency p50 {fmt_float(lat['p50'], '.1f')} ms, p99 {fmt_float(lat['p99'], '.1f')} ms "
                 f"(first quarter p50 {fmt_float(lat['first_quarter_p50'], '.1f')}, last quarter "
                 f"{fmt_float(lat['last_quarter_p50'], '.1f')})")
    lines.append(f"capture: {cap['read']} read, {cap['dropped']} dropped (latest-frame policy), {cap['strided']} "
                 f"skipped by stride, {cap['reconnects']} reconnect(s); ended: {s['state']}"
                 + (f" ({s['error']})" if s.get("error") else "") + (f", by {s['stopped_by']}" if s.get("stopped_by") else ""))
    ev = s["events"]
    lines.append(f"{s['tracks']} tracks ({s['tracker']}); events: " + (", ".join(f"{k} {v}" for k, v in sorted(ev.items()))
                                                                      or "none"))
    for name, c in s["counts"].items():
        lines.append(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in c.items()))
    if "model_choice" in s:
        lines.append("model chosen by measuring: " + ", ".join(
            f"{r['artifact']} {fmt_float(r['p50_ms'], '.3f')} ms" if r["p50_ms"] is not None else f"{r['artifact']} failed"
            for r in s["model_choice"]))
    m = s.get("tracking_metrics")
    if m:
        lines.append(f"against ground truth: MOTA {100 * m['mota']:.1f}, IDF1 {100 * m['idf1']:.1f}, "
                     f"HOTA {100 * m['hota']:.1f}, ID switches {m['idsw']}")
    lines.append(f"{s['model']} ({s['backend']}), spec {s['spec']}; outputs in {s['out']}"
                 + (f", peak memory {s['peak_rss_mb']:.0f} MB" if s.get("peak_rss_mb") else ""))
    return "\n".join(lines)
