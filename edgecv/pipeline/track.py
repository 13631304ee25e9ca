"""The main job as one call: a detector and a tracker over a frame source, outputs in a folder, figures back.

:func:`track` is what ``edgecv track`` and ``edgecv demo`` run: it opens the source, picks the fastest
artifact when given a folder, builds the detector, tracker, line and zone counters and sinks, runs the
:class:`~edgecv.pipeline.runner.Pipeline`, and scores the tracks against ground truth when there is some
(``gt=`` or the scene generator's exact truth, written to ``gt.mot.txt`` frame by frame as the run goes).
``OUT/summary.json`` holds the figures; it is rewritten (atomically) every few seconds while the run goes,
with every field and ``state: running``, so a killed run still leaves a whole, recent one. A file source
that ended short of the frames it declares ends in ``state: truncated`` (``summary["input"]`` says how
many frames were expected and read).

The tracker's score thresholds that the caller did not set follow the detector
(:class:`~edgecv.tracking.thresholds.ThresholdFit`: the tracker's own until 2 s of detections are seen, then
quantiles of their scores, never below the detector's score threshold);
``summary["tracker_thresholds"]`` says which values ran and where each came from. A run
whose detector found objects but whose tracker started no track says so: ``summary["warnings"]`` (and a
logged warning) gives the cause, with the figures.

Example:
    >>> result = track("artifacts/", "synthetic:frames=300", out="runs/track")    # doctest: +SKIP
    >>> result.summary["fps"], result.summary["tracking_metrics"]["idf1"]         # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from edgecv.errors import ConfigError
from edgecv.pipeline.capture import CaptureOptions

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
GT_FILE = "gt.mot.txt"
MOT_FILE = "tracks.mot.txt"
SUMMARY_EVERY_S = 5.0
DEFAULT_SINKS = ("video", "jsonl", "mot")


@dataclass(frozen=True)
class DetectorSettings:
    """How the detector is built: ``spec`` (name or YAML; default the manifest's), ``labels`` (replacing the
    spec's), ``score`` threshold, ``resize`` mode, ``classes`` to keep (names or ids; None keeps all),
    runtime ``backend`` and ``threads``, and ``verify`` (check the artifact against its manifest's hashes).
    ``workers``: inference workers in a pipelined run, each with its own copy of the model (their threads
    default to the cores shared out). With neither ``threads`` nor ``workers``, both are chosen on the first
    frames (:mod:`edgecv.pipeline.placement`)."""

    spec: str | Path | None = None
    labels: Sequence[str] | None = None
    score: float | None = None
    resize: str | None = None  # None: the spec's resize, else stretch
    classes: Sequence[str | int] | None = None
    backend: str | None = None
    threads: int | None = None
    verify: bool = True
    workers: int | None = None

    def runtime_threads(self) -> int | None:
        """The threads each runtime is loaded with: ``threads``, else the cores shared among the ``workers``."""
        if self.threads is not None or self.workers is None:
            return self.threads
        from edgecv.machine import usable_cores

        return max(1, usable_cores() // self.workers)


@dataclass
class TrackResult:
    """What :func:`track` returns: the summary (also in ``OUT/summary.json``), the pipeline's report, the
    files written, and ``stopped`` (True when ``stop`` ended the run)."""

    summary: dict[str, Any]
    report: Any
    files: dict[str, str] = field(default_factory=dict)
    stopped: bool = False


def class_ids(classes: Sequence[str | int] | None, labels: Sequence[str] | None) -> tuple[int, ...] | None:
    """The ids of ``classes`` (names of ``labels``, or ids); None keeps every class. An unknown name is a
    one-line ConfigError listing the labels."""
    if classes is None:
        return None
    names = list(labels or ())
    ids = []
    for c in classes:
        if isinstance(c, int) or (isinstance(c, str) and c.isdigit()):
            ids.append(int(c))
        elif c and c in names:  # "" is a class without a name (a blank line of a labels file): not a name
            ids.append(names.index(c))
        else:
            known = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "") if names else "none (pass ids)"
            raise ConfigError(f"classes: unknown class {c!r}; the detector's labels: {known}")
    return tuple(ids)


def build_detector(model: str | Path, settings: DetectorSettings = DetectorSettings(), *,
                   shared_cores: bool = False) -> tuple[Any, list | None]:
    """The :class:`~edgecv.detection.detector.Detector` for ``model`` (an artifact, a folder whose fastest
    artifact is chosen by measuring, or ``store:NAME[@VERSION]``: see :func:`edgecv.store.model_source`) and
    the measured table when a folder was given. ``shared_cores``: the
    detector will share the cores with other work (see :func:`edgecv.load`)."""
    from edgecv.detection.detector import Detector
    from edgecv.detection.frames import FrameOptions
    from edgecv.store import model_source

    model, spec, labels = model_source(model, spec=settings.spec, labels=settings.labels)
    settings, chosen = replace(settings, spec=spec, labels=labels), None
    if model.is_dir():
        from edgecv.pipeline.select import fastest_artifact

        model, chosen = fastest_artifact(model, threads=settings.runtime_threads(), detectors_only=settings.spec is None,
                                         verify=settings.verify)
    detector = Detector(model, spec=settings.spec, options=FrameOptions(resize=settings.resize, frame_color="BGR"),
                        threads=settings.runtime_threads(), backend=settings.backend, labels=settings.labels,
                        score_threshold=settings.score, verify=settings.verify, shared_cores=shared_cores)
    return detector, chosen


def track(
    model: str | Path | Any,
    source: str | Path,
    *,
    out: str | Path = "runs/track",
    detector: DetectorSettings = DetectorSettings(),
    tracker: str = "ocsort",
    tracker_options: Mapping[str, Any] | None = None,
    sinks: Sequence[str] = DEFAULT_SINKS,
    video_format: str = "mp4",
    video_fps: float | None = None,
    video_scale: float = 1.0,
    lines: Sequence[str] = (),
    zones: Sequence[str] = (),
    capture: CaptureOptions = CaptureOptions(),
    concurrent: bool = True,
    gt: str | Path | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[Any], None] | None = None,
    note: Mapping[str, Any] | None = None,
    thresholds: str | Any = "auto",
    options: Any = None,
) -> TrackResult:
    """Detect and track ``source`` (any text :func:`edgecv.sources.open_source` takes) with ``model`` (a path,
    a folder, or a ready :class:`~edgecv.detection.detector.Detector`); write ``sinks`` to ``out``.

    ``video_fps`` and ``video_scale``: the annotated video at most that frame rate and that share of the
    frame size (frames not written are neither drawn nor encoded). ``lines`` and ``zones`` are texts as
    :meth:`Line.parse` and :meth:`Zone.parse` read them. Ground truth
    (``gt``, a MOTChallenge file, or the generator's own) is scored with TrackEval into
    ``summary["tracking_metrics"]``. ``note``: extra keys for the summary (the CLI records the signal
    that stopped the run); it may be filled in while the run goes. ``thresholds``: ``auto`` (fit the
    tracker's unset score thresholds to the detector), ``tracker`` (its own defaults), or a
    :class:`~edgecv.tracking.thresholds.ThresholdCalibration`. ``options``: expert pipeline settings, a
    :class:`~edgecv.pipeline.runner.PipelineOptions` (queue size, switch interval, OpenCV's threads); its
    ``concurrent``, ``workers`` and ``place_threads`` come from ``concurrent`` and ``detector``.
    """
    from edgecv.fileio import atomic_write_text, ensure_writable_dir
    from edgecv.pipeline.runner import Pipeline, PipelineOptions
    from edgecv.pipeline.sinks import SINKS, TruthSink, VideoSink
    from edgecv.pipeline.zones import make_counters
    from edgecv.sources import open_source
    from edgecv.tracking.thresholds import ThresholdCalibration, ThresholdFit
    from edgecv.tracking.trackers import make_tracker, tracker_options as checked_options

    checked = checked_options(tracker, dict(tracker_options) if tracker_options else None)  # before the model loads
    bad = [k for k in sinks if k not in SINKS]
    if bad:
        raise ConfigError(f"sinks: unknown {', '.join(bad)}; valid sinks: {', '.join(SINKS)}")
    if gt is not None and not Path(gt).is_file():
        raise ConfigError(f"ground truth {gt}: file not found")
    calibration = thresholds if isinstance(thresholds, ThresholdCalibration) else ThresholdCalibration(mode=thresholds)
    counters = make_counters(lines, zones)
    chosen = None
    if isinstance(model, (str, Path)):
        det, chosen = build_detector(model, detector, shared_cores=concurrent)
    else:
        det = model
    keep = class_ids(detector.classes, det.labels)
    out = Path(out)
    stop = stop or threading.Event()
    if gt is not None and "mot" not in sinks:
        raise ConfigError("scoring against ground truth needs the mot sink")
    with open_source(source) as src:
        if capture.realtime and not src.is_video:
            raise ConfigError(f"realtime needs a timed source (video, camera, stream), not {src.kind} {src.text}")
        fps = (src.fps or 30.0) / capture.stride
        trk = make_tracker(tracker, checked, fps=fps)
        spec = getattr(det, "spec", None)
        fit = ThresholdFit(trk, user_keys=set(tracker_options or ()), calibration=calibration,
                           detector_threshold=getattr(spec, "score_threshold", None))
        if gt is not None:
            from edgecv.tracking.evaluate import import_trackeval

            import_trackeval()  # before the run, not after it: a missing extra is a one-line error now
        paths = {kind: out / (f"{src.name}.{video_format}" if kind == VideoSink.name else SINKS[kind].default_file)
                 for kind in dict.fromkeys(sinks)}
        if src.kind == "video" and any(p.resolve() == Path(src.text).resolve() for p in paths.values()):
            raise ConfigError(f"out {out} holds the source video; the annotated video would replace it")
        # the video sink last: no sink after it reads the frame's pixels, so it draws on the frame itself
        made = [SINKS[kind](path) for kind, path in paths.items() if kind != VideoSink.name]
        if VideoSink.name in paths:
            made.append(VideoSink(paths[VideoSink.name], counters=counters, stride=capture.stride, fps=video_fps,
                                  scale=video_scale, in_place=True))
        if gt is None and getattr(src, "has_truth", False):
            # the generator's exact truth of the frames processed, written as they are (nothing kept)
            made.append(TruthSink(out / GT_FILE, classes=keep))
        ensure_writable_dir(out)
        pipeline = Pipeline(det, tracker=trk, counters=counters, sinks=made, classes=keep, thresholds=fit,
                            options=replace(options or PipelineOptions(), concurrent=concurrent,
                                            workers=detector.workers or 1,
                                            place_threads=detector.threads is None and detector.workers is None))
        files = {s.name: str(s.path) for s in made if s.name != TruthSink.name}
        files["summary"] = str(out / SUMMARY)
        scored = gt is not None or any(s.name == TruthSink.name for s in made)

        def describe(report: Any) -> dict[str, Any]:
            """The summary's schema, the same mid-run and at the end."""
            summary = report.to_dict()
            summary.update(model=str(det.model.path), backend=det.model.backend, spec=det.spec.name or det.spec.decoder,
                           tracker=trk.name, out=str(out))
            summary["tracker_thresholds"] = fit.to_dict()
            summary["warnings"] = tracking_warnings(summary)
            if keep is not None:
                summary["classes"] = list(keep)
            if chosen is not None:
                summary["model_choice"] = chosen
            if scored:
                summary["tracking_metrics"] = None  # scored once the run has ended
            summary["stopped"] = stop.is_set()
            summary.update(note or {})
            summary["files"] = dict(files)
            return summary

        last = [time.monotonic()]

        def tick(status) -> None:
            if progress is not None:
                progress(status)
            if time.monotonic() - last[0] >= SUMMARY_EVERY_S:
                last[0] = time.monotonic()
                snapshot = pipeline.snapshot()
                if snapshot is not None:
                    atomic_write_text(out / SUMMARY, json.dumps(describe(snapshot), indent=1, default=str) + "\n")

        try:
            report = pipeline.run(src, capture=capture, stop=stop, progress=tick)
        except BaseException as exc:
            _record_failure(out / SUMMARY, describe, pipeline.snapshot(), exc)
            raise
    summary = describe(report)
    for w in summary["warnings"]:
        log.warning("%s", w["message"])
    truth = Path(gt) if gt is not None else out / GT_FILE if scored else None
    if truth is not None and report.frames and "mot" in files:
        files["gt"] = str(truth)
        if gt is None and importlib.util.find_spec("trackeval") is None:
            # the generator's truth is scored when TrackEval is there; a device without it still tracks
            summary["tracking_metrics"] = None
            summary["tracking_metrics_skipped"] = "needs TrackEval: pip install 'edgecv[track]'"
            log.info("not scoring against the generator's truth: %s", summary["tracking_metrics_skipped"])
        else:
            from edgecv.tracking.evaluate import evaluate_tracking

            summary["tracking_metrics"] = evaluate_tracking(truth, out / MOT_FILE).to_dict()
    summary["files"] = files
    atomic_write_text(out / SUMMARY, json.dumps(summary, indent=1, default=str) + "\n")
    return TrackResult(summary, report, files, stopped=summary["stopped"])


def _record_failure(path: Path, describe: Callable[[Any], dict[str, Any]], snapshot: Any, exc: BaseException) -> None:
    """Rewrite summary.json of a run that failed (state ``failed``, the error), so that it does not stay
    ``running``; the failure itself is raised by the caller whatever happens here."""
    from edgecv.errors import EdgeCVError
    from edgecv.fileio import atomic_write_text

    if snapshot is None:
        return
    summary = describe(snapshot)
    summary.update(state="failed", error=str(exc) or type(exc).__name__)
    try:
        atomic_write_text(path, json.dumps(summary, indent=1, default=str) + "\n")
    except EdgeCVError as write_error:  # e.g. the disk that failed the run: its own error is the one raised
        log.warning("could not record the failure in %s: %s", path, write_error)


def tracking_warnings(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What went wrong in a run that still ended: ``no_track_started`` when the detector found objects and
    the tracker started no track, with its cause (``below_start_score``: every detection scored below the
    score that starts a track; ``not_confirmed``: some could start one, none lasted ``min_hits`` frames)."""
    seen = summary.get("detections") or {}
    if not seen.get("count") or summary.get("tracks"):
        return []
    th = summary.get("tracker_thresholds") or {}
    start = th.get("start_score")
    head = f"{seen['count']} detection(s) in {seen['frames']} frame(s) but no track started: "
    if seen.get("startable"):
        cause = "not_confirmed"
        at = "could start one" if start is None else f"scored at least {start:g}, the score that starts a track"
        why = f"{seen['startable']} {at}, but none was found again in the next frames to be confirmed"
    else:
        cause = "below_start_score"
        where = th.get("sources", {}).get("new_track_thresh", "")
        why = (f"every detection scored below {start:g}, the score that starts a track (new_track_thresh"
               f"{f' from {where}' if where else ''}); the best scored {seen['max_score']:.3g}. Set "
               f"new_track_thresh and track_thresh below it with --tracker-config"
               + (", or fit them to the detector with --thresholds auto" if th.get("state") == "off"
                  and "user" not in th.get("sources", {}).values() else ""))
    return [{"code": "no_track_started", "cause": cause, "message": head + why}]
