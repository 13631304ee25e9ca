"""``edgecv track``: detection and tracking on a camera, stream, video, image folder or the scene generator;
annotated video, JSON lines with tracks and events, MOT txt, line and zone counts and a summary."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from edgecv.cli.commands import COMMANDS

# Kept in step with the registries (a test checks), so that building the parser stays light.
TRACKER_CHOICES = ("bytetrack", "ocsort", "sort")
SINK_CHOICES = ("video", "jsonl", "mot")
RESIZE_CHOICES = ("stretch", "letterbox", "letterbox_top_left")
THRESHOLD_CHOICES = ("auto", "tracker")

# Exit codes (also in --help).
EXIT_OK, EXIT_ERROR, EXIT_LOST, EXIT_STOPPED = 0, 2, 3, 130  # EXIT_ERROR: EdgeCVError.exit_code
EXIT_TRUNCATED = 4

EXAMPLES = f"""\
examples:
  edgecv track --model runs/demo/artifacts --source synthetic --out runs/track
  edgecv track --model detector.int8.onnx --source 0 --line door=0,400,1280,400
  edgecv track --model ssd.tflite --spec ssd-mobilenet-v1-coco --source rtsp://cam.local/stream --out runs/cam
  edgecv track --model best.onnx --spec yolo.yaml --source street.mp4 --realtime --zone lot=10,10,600,10,600,400,10,400
  edgecv track --model ssd.tflite --spec ssd-mobilenet-v1-coco --source street.mp4 --workers 2 --threads 1
  edgecv track --model store:people --source 0          the active version in the model store (edgecv models)

SOURCE: a camera index (0), a stream URL (rtsp://, http(s)://, tcp://, udp://...), a video file, an image
folder or glob ('frames/*.jpg'), or 'synthetic[:seed=N,frames=N,size=WxH,fps=F]' (generated scenes with
exact ground truth: MOTA, IDF1 and HOTA are printed at the end). MODEL: an artifact, or a folder of
artifacts (the fastest on this machine is picked by measuring each).

Live sources keep only the newest frame when processing falls behind and count the frames dropped; a
dropped stream is reopened with exponential backoff (--reconnect attempts). Files process every frame
unless --stride or --realtime says otherwise. Without --threads and --workers, the first 40 frames measure how
the cores are best shared: the runtime's threads, and how many inference workers (each with its own copy of
the model) take frames in turn; the choice and why are in the summary.

Tracker score thresholds that --tracker-config does not set are fitted to the detector: the tracker's own
until 2 s of detections are seen, then the lower quartile and median of their scores (track_thresh,
new_track_thresh), never above the tracker's own, never below the detector's score threshold (the spec's or
--score); --thresholds tracker keeps the tracker's own. summary.json's tracker_thresholds says which values
ran and where each came from. A run whose detector found objects but which started no track prints a
warning (summary.json: warnings).

OUT receives the annotated video (<source>.mp4), tracks.jsonl (one line per frame: tracks, enter/exit and
line/zone events; a last line {{"end": STATE, ...}} once the run ends), tracks.mot.txt (MOTChallenge) and
summary.json (fps, per-stage times, queue depths, latency, drops, counts; rewritten whole every 5 s with
state "running"); text outputs are flushed every second. The .mp4 is a fragmented MP4 written by the ffmpeg
program, readable up to its last second even after a SIGKILL; --video-format mkv writes through OpenCV and
needs no ffmpeg.

A video file that ends short of the frames its container declares (cut short, damaged) ends in state
"truncated" with a warning saying how many frames were expected and read; the outputs hold the frames read.
A source that gives no frame at all (every image undecodable, a video with no decodable frame) is an error.

exit codes: {EXIT_OK} the source ended, {EXIT_ERROR} error, {EXIT_LOST} a live source was lost for good,
{EXIT_TRUNCATED} the input was cut short (0 with --allow-truncated), {EXIT_STOPPED} stopped by Ctrl-C or
SIGTERM (all outputs closed cleanly).
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "track",
        help=COMMANDS["track"].summary,
        description="Run a detector and a multi-object tracker on a frame source, as a pipeline of concurrent "
        "stages (capture, preprocess + inference, decode + NMS, tracking, outputs) joined by bounded queues. "
        "Writes an annotated video, per-frame tracks and events, MOT txt and a summary with per-stage times "
        "and capture-to-result latency.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, type=Path, help="a .tflite, .onnx or OpenVINO .xml detector, a folder (its fastest "
                   "artifact), or store:NAME[@VERSION] (edgecv models)")
    p.add_argument("--spec", help="detector spec: a built-in name or a YAML file (default: the model's manifest)")
    p.add_argument("--labels", type=Path, help="class names, one per line (line k is class k), or a YAML file with "
                   "'names'; replaces the spec's")
    p.add_argument("--source", required=True, help="camera index, stream URL, video, image folder or glob, or synthetic")
    p.add_argument("--out", type=Path, default=Path("runs/track"), help="output folder (default: runs/track)")
    p.add_argument("--tracker", choices=TRACKER_CHOICES, default="ocsort", help="tracker (default ocsort)")
    p.add_argument("--tracker-config", type=Path, metavar="YAML", help="tracker options (a YAML mapping)")
    p.add_argument("--thresholds", choices=THRESHOLD_CHOICES, default="auto",
                   help="score thresholds the tracker config does not set: auto (default) fits them to the "
                   "scores of the detector's first 2 s of detections (see below), tracker keeps the tracker's "
                   "own defaults")
    p.add_argument("--sinks", default=",".join(SINK_CHOICES),
                   help=f"outputs to write, comma-separated from {', '.join(SINK_CHOICES)} (default: all)")
    p.add_argument("--video-format", choices=("mp4", "mkv"), default="mp4",
                   help="annotated video container: mp4 (default; fragmented, by the ffmpeg program, readable "
                   "after a hard kill) or mkv (by OpenCV, without ffmpeg)")
    p.add_argument("--video-fps", type=float, metavar="FPS",
                   help="write the annotated video at most this frame rate (one analysed frame in k; the others are "
                   "neither drawn nor encoded; default: every frame)")
    p.add_argument("--video-scale", type=float, default=1.0, metavar="S",
                   help="write the annotated video this share of the frame size, 0 < S <= 1 (default 1)")
    p.add_argument("--line", action="append", default=[], metavar="[NAME=]X0,Y0,X1,Y1",
                   help="count tracks crossing this line (frame pixels); repeatable")
    p.add_argument("--zone", action="append", default=[], metavar="[NAME=]X0,Y0,X1,Y1,X2,Y2,...",
                   help="count tracks entering this polygon (frame pixels); repeatable")
    p.add_argument("--stride", type=int, default=1, help="process one frame in N (default 1)")
    p.add_argument("--realtime", action="store_true",
                   help="read a file at its own frame rate, like a camera: frames that processing cannot keep up "
                   "with are dropped")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--allow-truncated", action="store_true",
                   help=f"exit 0 when a video file ends short of its declared frames (default: exit {EXIT_TRUNCATED}; "
                   "the state is 'truncated' either way)")
    p.add_argument("--reconnect", type=int, default=8, metavar="N",
                   help="attempts to reopen a dropped live source, with backoff 0.5 s doubling to 8 s (default 8)")
    p.add_argument("--gt", type=Path, metavar="MOT_TXT", help="ground truth to score the tracks against (MOTChallenge)")
    p.add_argument("--classes", metavar="NAMES", help="classes to keep, comma-separated names or ids (default: all)")
    p.add_argument("--score", type=float, help="minimum detection score (default: the spec's)")
    p.add_argument("--resize", choices=RESIZE_CHOICES,
                   help="how frames fit the model input (default: the spec's resize, else stretch)")
    p.add_argument("--backend", help="runtime to use (default: the first installed for the format)")
    from edgecv.cli.options import add_verify_option

    add_verify_option(p)
    p.add_argument("--threads", type=int,
                   help="runtime threads per inference worker (default: chosen on the first frames by measuring)")
    p.add_argument("--workers", type=int,
                   help="inference workers, each with its own copy of the model, taking frames in turn "
                        "(default: chosen on the first frames by measuring)")
    p.add_argument("--sequential", action="store_true",
                   help="run the stages one after another in one thread (to compare with the pipeline)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=run)


def _check(args) -> None:
    from edgecv.errors import ConfigError

    for flag, value, low in (("--stride", args.stride, 1), ("--max-frames", args.max_frames, 1),
                             ("--reconnect", args.reconnect, 0), ("--threads", args.threads, 1),
                             ("--workers", args.workers, 1)):
        if value is not None and value < low:
            raise ConfigError(f"{flag} must be at least {low}, got {value}")


class _Signals:
    """Ctrl-C and SIGTERM set ``stop`` (the run then ends cleanly) instead of killing the process; the
    signal's name goes into ``note["stopped_by"]``."""

    def __init__(self, stop: threading.Event, note: dict[str, Any]) -> None:
        self.stop, self.note, self.caught, self._old = stop, note, None, {}

    def _handle(self, signum, _frame) -> None:
        self.caught = signal.Signals(signum).name
        self.note["stopped_by"] = self.caught
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

    from edgecv.labels import read_labels
    from edgecv.pipeline.capture import CaptureOptions
    from edgecv.pipeline.track import DetectorSettings, track
    from edgecv.tracking.trackers import read_tracker_config

    _check(args)
    tracker_options = (read_tracker_config(args.tracker_config, tracker=args.tracker, what="--tracker-config")
                       if args.tracker_config else None)
    settings = DetectorSettings(spec=args.spec, labels=read_labels(args.labels) if args.labels else None,
                                score=args.score, resize=args.resize, backend=args.backend, threads=args.threads,
                                workers=args.workers, verify=args.verify,
                                classes=[c.strip() for c in args.classes.split(",")] if args.classes else None)
    capture = CaptureOptions(stride=args.stride, realtime=args.realtime, max_frames=args.max_frames,
                             reconnect_attempts=args.reconnect)
    stop = threading.Event()
    bar = tqdm(total=args.max_frames, unit="frame", leave=False, disable=args.json, dynamic_ncols=True)

    def progress(status) -> None:
        if status.total and bar.total != status.total:
            bar.total = status.total // args.stride if not args.max_frames else status.total
        bar.update(status.frames - bar.n)
        post = {"fps": f"{status.fps:.1f}" if status.fps else "-",
                "latency": f"{status.latency_ms:.0f}ms" if status.latency_ms else "-"}
        if status.dropped:
            post["dropped"] = status.dropped
        if status.state != "running":
            post["state"] = status.state
        bar.set_postfix(post, refresh=False)

    note: dict[str, Any] = {}
    with _Signals(stop, note) as signals:
        try:
            result = track(args.model, args.source, out=args.out, detector=settings, tracker=args.tracker,
                           tracker_options=tracker_options,
                           sinks=[k.strip() for k in args.sinks.split(",") if k.strip()],
                           video_format=args.video_format, video_fps=args.video_fps, video_scale=args.video_scale,
                           lines=args.line, zones=args.zone, capture=capture,
                           concurrent=not args.sequential, gt=args.gt, stop=stop, progress=progress, note=note,
                           thresholds=args.thresholds)
        finally:
            bar.close()
    summary = result.summary
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    for w in summary.get("warnings", ()):
        print(f"warning: {w['message']}", file=sys.stderr)
    if signals.caught:
        return EXIT_STOPPED
    if summary["state"] == "truncated" and not args.allow_truncated:
        print(f"edgecv: error: {summary['input']['truncated']}; the outputs hold the {summary['frames']} frames "
              "processed (--allow-truncated accepts a cut-short input)", file=sys.stderr)
        return EXIT_TRUNCATED
    return EXIT_LOST if summary["state"] == "lost" else EXIT_OK


def format_summary(s: dict[str, Any]) -> str:
    from edgecv.tables import fmt_float, render

    rows = []
    for name, st in s["stages"].items():
        rows.append([name, fmt_float(st["median_ms"], ".2f"), fmt_float(st["p99_ms"], ".2f"), fmt_float(st.get("cpu_ms"), ".2f"),
                     fmt_float(None if st["busy"] is None else 100 * st["busy"], ".0f"),
                     fmt_float(st["queue_mean"], ".2f"), str(st["queue_max"] if st["queue_max"] is not None else "-")])
    lines = [render(["stage", "median ms", "p99 ms", "cpu ms", "busy %", "queue mean", "queue max"], rows, align="lrrrrrr"), ""]
    cpu, threads = s.get("cpu") or {}, s.get("threads") or {}
    if cpu.get("total_ms") is not None:
        lines.append(f"CPU per frame {cpu['total_ms']:.2f} ms (runtime threads {fmt_float(cpu['runtime_threads_ms'], '.2f')}, "
                     f"encoder {fmt_float(cpu['children_ms'], '.2f')}): {cpu['cores']} core(s) allow "
                     f"{fmt_float(cpu['limit_fps'], '.1f')} frames/s")
    if threads.get("threads") is not None:
        from edgecv.pipeline.placement import layout

        shape = layout(threads.get("workers") or 1, threads["threads"], bool(threads.get("inline")))
        lines.append(f"inference: {shape} ({threads['chosen_by']}" + (f": {threads['why']}" if threads.get("why") else "") + ")")
    lat, cap = s["latency_ms"], s["capture"]
    mode = "sequential" if not s["concurrent"] else "pipelined"
    lines.append(f"{s['frames']} frames in {s['wall_s']:.1f} s: {s['fps']:.1f} frames/s ({mode}); capture-to-result "
                 f"latency p50 {fmt_float(lat['p50'], '.1f')} ms, p99 {fmt_float(lat['p99'], '.1f')} ms "
                 f"(first quarter p50 {fmt_float(lat['first_quarter_p50'], '.1f')}, last quarter "
                 f"{fmt_float(lat['last_quarter_p50'], '.1f')})")
    lines.append(f"capture ({s['source']['policy']} policy): {cap['read']} read, {cap['dropped']} dropped, {cap['strided']} "
                 f"skipped by stride, {cap['reconnects']} reconnect(s); ended: {s['state']}"
                 + (f" ({s['error']})" if s.get("error") else "") + (f", by {s['stopped_by']}" if s.get("stopped_by") else "")
                 + (f" ({s['input']['truncated']})" if (s.get("input") or {}).get("truncated") else ""))
    undecodable = (s.get("input") or {}).get("undecodable")
    if undecodable:
        names = s["input"]["undecodable_files"]
        lines.append(f"skipped {undecodable} undecodable image(s): {', '.join(names)}"
                     + (" ..." if undecodable > len(names) else ""))
    ev = s["events"]
    lines.append(f"{s['tracks']} tracks ({s['tracker']}); events: " + (", ".join(f"{k} {v}" for k, v in sorted(ev.items()))
                                                                      or "none"))
    for name, c in s["counts"].items():
        lines.append(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in c.items()))
    th = s.get("tracker_thresholds") or {}
    if th.get("values"):
        lines.append("tracker thresholds: " + "; ".join(f"{k} {v:g} ({th['sources'][k]})"
                                                         for k, v in th["values"].items()))
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
