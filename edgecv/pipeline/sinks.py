"""Where the pipeline's results go: an annotated video, JSON lines with tracks and events, a MOTChallenge txt.

Every sink has the same small interface, ``open(info)``, ``write(result)``, ``end(record)`` and ``close()``,
and is registered in :data:`SINKS` with its default file name; the CLI's ``--sinks`` choices come from that
table. Text sinks flush at least once a second, so a crash or a kill loses at most the last second of them;
the JSON lines end with a line ``{"end": STATE, ...}`` when the run ends (``ended``, ``truncated``,
``stopped``, ``lost``, ``failed``), so a file without it is from a run that was killed.

The default ``.mp4`` is a fragmented MP4 written by the ``ffmpeg`` program (raw frames through a pipe; H.264
where ffmpeg has libx264, else MPEG-4 part 2), a fragment a second: after a SIGKILL or a power cut it plays
up to its last whole second, and ffmpeg, left in its own session, finishes the file when the pipe closes,
so a SIGKILL of edgecv alone loses nothing written. The program is the ``ffmpeg`` on PATH, else the static
build of ``edgecv[video]`` (imageio-ffmpeg); without either an ``.mp4`` is a one-line
:class:`~edgecv.errors.OutputError`; ``.mkv`` and ``.avi`` are written by OpenCV, need no ffmpeg, and get
their index when the sink is closed (a hard kill loses what OpenCV had not flushed yet).

Example:
    >>> sinks = [make_sink("jsonl", "runs/a"), make_sink("video", "runs/a", name="street")]   # doctest: +SKIP
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from edgecv.deps import optional
from edgecv.detection.frames import resize_image
from edgecv.errors import ConfigError, OutputError
from edgecv.labels import label_of
from edgecv.machine import batch_scheduling

log = logging.getLogger(__name__)
FLUSH_S = 1.0
#: How each video file type is written: by ffmpeg (fragmented), or by OpenCV with this FourCC.
VIDEO_CODECS = {".mp4": "ffmpeg", ".mkv": "mp4v", ".avi": "MJPG"}
FFMPEG = "ffmpeg"
#: libx264's preset for the annotated video: the cheapest per frame (benchmarks/video_encoders.py), since the
#: encoder shares the device's cores with the detector.
X264_PRESET = "ultrafast"
FEED_FRAMES = 2  # frames that may wait for the ffmpeg pipe


class Sink:
    """Base of every sink: ``open(info)`` before the first frame (``info``: the source's kind, name, fps,
    size and the detector's labels), ``write(result)`` per frame, ``end(record)`` when the run ended (how:
    ``{"end": state, "frames": N, "expected_frames": ..., "read_frames": ..., "message": ...}``), ``close()``
    once, whatever happened."""

    name: ClassVar[str] = ""
    default_file: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.frames = 0

    def open(self, info: dict[str, Any]) -> None:
        self.info = info
        self.labels = tuple(info.get("labels") or ())

    def write(self, result: Any) -> None:
        raise NotImplementedError

    def end(self, record: dict[str, Any]) -> None:
        """The run ended as ``record`` says (called before :meth:`close`, not after a kill)."""

    def close(self) -> None:
        """Finish the file (idempotent)."""

    def _label(self, class_id: int) -> str:
        return label_of(self.labels, class_id)


class _TextSink(Sink):
    """A text file written line by line and flushed at least every :data:`FLUSH_S` seconds."""

    def open(self, info: dict[str, Any]) -> None:
        super().open(info)
        try:
            self._file = open(self.path, "w", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self._flushed = time.monotonic()

    def _lines(self, lines: Sequence[str]) -> None:
        if lines:
            self._file.write("\n".join(lines) + "\n")
        self.frames += 1
        if time.monotonic() - self._flushed >= FLUSH_S:
            self._file.flush()
            self._flushed = time.monotonic()

    def close(self) -> None:
        f = getattr(self, "_file", None)
        if f is not None and not f.closed:
            f.close()


class JsonlSink(_TextSink):
    """One JSON line per frame: index, time, latency, every track (id, class, label, score, box) and the
    frame's events (enter, exit, line and zone crossings)."""

    name = "jsonl"
    default_file = "tracks.jsonl"
    description = "one JSON line per frame: tracks and events"

    def write(self, result: Any) -> None:
        d = result.detections
        ids = d.tracker_id.tolist() if d.tracker_id is not None else [None] * len(d)
        tracks = [{"id": i, "class_id": c, "label": self._label(c), "score": round(s, 4),
                   "xyxy": [round(v, 1) for v in box]}
                  for i, c, s, box in zip(ids, d.class_id.tolist(), d.confidence.tolist(), d.xyxy.tolist())]
        record = {"frame": result.frame.index, "time_s": None if result.time_s is None else round(result.time_s, 4),
                  "latency_ms": round(result.latency_ms, 2), "tracks": tracks,
                  "events": [e.to_dict() for e in result.events]}
        self._lines([json.dumps(record)])

    def end(self, record: dict[str, Any]) -> None:
        """The last line: how the run ended (``{"end": "truncated", "frames": 51, ...}``)."""
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()


class MotSink(_TextSink):
    """The tracks as MOTChallenge rows (``frame,id,x,y,w,h,conf,-1,-1,-1``, frames from 1), what
    ``edgecv track-eval`` and TrackEval read."""

    name = "mot"
    default_file = "tracks.mot.txt"
    description = "MOTChallenge txt of the tracks"

    def write(self, result: Any) -> None:
        from edgecv.tracking.mot import format_rows, mot_rows

        d = result.detections
        rows = mot_rows(result.frame.index + 1, d) if d.tracker_id is not None else ()
        self._lines(format_rows(rows).splitlines() if len(rows) else [])


class TruthSink(_TextSink):
    """The ground truth of each processed frame (``frame.truth``, as the scene generator gives it) as
    MOTChallenge rows, written as the run goes so that nothing keeps the truth of a whole run. Frames left
    out by stride or dropped by realtime have no rows: they are not held against the tracker. ``classes``:
    the class ids kept (None keeps all). Not in :data:`SINKS`: :func:`edgecv.pipeline.track.track` adds it
    when the source carries truth."""

    name = "gt"
    default_file = "gt.mot.txt"
    description = "MOTChallenge txt of the source's ground truth"

    def __init__(self, path: str | Path, *, classes: Sequence[int] | None = None) -> None:
        super().__init__(path)
        self.classes = None if classes is None else np.asarray(sorted(set(classes)), np.int64)

    def write(self, result: Any) -> None:
        from edgecv.tracking.mot import format_rows, mot_rows

        truth = result.frame.truth
        if truth is not None and self.classes is not None:
            truth = truth[np.isin(truth.class_id, self.classes)]
        rows = mot_rows(result.frame.index + 1, truth) if truth is not None and len(truth) else ()
        self._lines(format_rows(rows).splitlines() if len(rows) else [])


@functools.lru_cache(maxsize=None)
def _ffmpeg_encoder(program: str) -> str:
    """libx264 when this ffmpeg has it (Debian's and most builds do), else its built-in MPEG-4 part 2."""
    try:
        listed = subprocess.run([program, "-hide_banner", "-encoders"], capture_output=True, text=True,
                                timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise OutputError(f"cannot run {program} to write the annotated .mp4: {exc}") from None
    return "libx264" if " libx264 " in listed else "mpeg4"


class FfmpegMp4:
    """A fragmented MP4 written by an ``ffmpeg`` process from raw BGR frames on its stdin (the interface of
    ``cv2.VideoWriter`` that the sink uses: ``write(image)``, ``release()``). A keyframe and a fragment every
    second. A feeder thread writes the frames into the pipe, at most :data:`FEED_FRAMES` behind: a frame is
    larger than the pipe, so a plain write would wait for ffmpeg to encode the one before, and the sinks
    stage with it (a third of the built-in detector's pipelined rate on vtest.avi). Frames of even sides go
    in as YUV 4:2:0, converted by OpenCV in the feeder (BT.601, limited range, as ffmpeg converts): half the
    bytes through the pipe, and ffmpeg's own conversion saved (``benchmarks/video_encoders.py``). ``feed``:
    ``"bgr24"`` sends the frames as they are, for ffmpeg to convert (None: YUV where it can). ``write`` must
    not be given an image that the caller changes afterwards.

    Example:
        >>> video = FfmpegMp4("out.mp4", fps=25.0, size=(640, 480))         # doctest: +SKIP
        >>> video.write(frame); video.release()                             # doctest: +SKIP
    """

    def __init__(self, path: str | Path, *, fps: float, size: tuple[int, int], encoder: str | None = None,
                 preset: str | None = None, feed: str | None = None) -> None:
        if feed not in (None, "bgr24"):
            raise ConfigError(f"video feed: expected None or 'bgr24', got {feed!r}")
        self.path = Path(path)
        program = ffmpeg_program()
        if program is None:
            raise OutputError(missing_ffmpeg(self.path))
        w, h = size
        self._shape = (h, w, 3)
        # I420 needs even sides; without OpenCV the frames go to ffmpeg as BGR
        self._cv2 = optional("cv2") if not (w % 2 or h % 2 or feed) else None
        cmd = [program, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo",
               "-pix_fmt", "bgr24" if self._cv2 is None else "yuv420p", "-s", f"{w}x{h}", "-r", f"{fps:.6g}",
               "-i", "pipe:0", "-an"]
        if w % 2 or h % 2:  # 4:2:0 needs even sides: one black pixel row or column, never a resample
            cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
        encoder = encoder or _ffmpeg_encoder(program)
        cmd += ["-c:v", encoder, "-pix_fmt", "yuv420p", "-g", str(max(1, round(fps))), "-threads", "1"]
        if encoder == "libx264":
            cmd += ["-preset", preset or X264_PRESET]
        else:
            cmd += ["-q:v", "4"]
        cmd += ["-movflags", "frag_keyframe+empty_moov+default_base_moof", "-flush_packets", "1",
                "-f", "mp4", str(self.path)]
        self._log = tempfile.TemporaryFile()
        try:
            # its own session: Ctrl-C in a terminal reaches edgecv alone, which then closes the pipe; and a
            # SIGKILL of edgecv leaves ffmpeg to finish the file from what the pipe held
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log,
                                          start_new_session=True)
        except OSError as exc:
            self._log.close()
            raise OutputError(f"cannot start {program} to write {self.path}: {exc.strerror or exc}") from None
        _widen_pipe(self._proc.stdin, w * h * 3)
        batch_scheduling(self._proc.pid)
        self._queue: queue.Queue = queue.Queue(maxsize=FEED_FRAMES)
        self._stopped = threading.Event()  # the pipe broke: ffmpeg has stopped
        self._feeder = threading.Thread(target=self._feed, name="ffmpeg-feeder", daemon=True)
        self._feeder.start()

    def write(self, image: np.ndarray) -> None:
        """One uint8 BGR (or gray) frame of the size given (queued; written to ffmpeg by the feeder thread)."""
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        data = np.ascontiguousarray(image, np.uint8)
        if data.shape != self._shape:  # the pipe takes raw bytes: any other size would scramble every frame after
            raise OutputError(f"cannot write video {self.path}: a {'x'.join(map(str, data.shape))} frame, expected "
                              f"{'x'.join(map(str, self._shape))} (height x width x BGR)")
        while not self._stopped.is_set():
            try:
                self._queue.put(data, timeout=0.5)
                return
            except queue.Full:
                continue
        self._proc.wait()
        raise OutputError(f"cannot write video {self.path}: ffmpeg stopped ({self._reason()})")

    def _feed(self) -> None:
        batch_scheduling()
        cv2 = self._cv2
        while (data := self._queue.get()) is not None:
            if cv2 is not None:
                data = cv2.cvtColor(data, cv2.COLOR_BGR2YUV_I420)
            try:
                self._proc.stdin.write(data.data)
            except (BrokenPipeError, ValueError, OSError):
                self._stopped.set()  # write() and release() report it, with ffmpeg's own reason
                return

    def release(self, timeout: float = 120.0) -> None:
        """Close the pipe and wait for ffmpeg to finish the file; its failure is an :class:`OutputError`."""
        proc, deadline = self._proc, time.monotonic() + timeout
        while self._feeder.is_alive():  # the frames still queued go in first
            try:
                self._queue.put(None, timeout=0.5)
                break
            except queue.Full:
                if time.monotonic() > deadline:
                    proc.kill()  # the feeder's write fails and it ends
        self._feeder.join(max(1.0, deadline - time.monotonic()))
        if self._feeder.is_alive():
            proc.kill()
            self._feeder.join()
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass  # it stopped already: its exit code and log say why
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise OutputError(f"cannot write video {self.path}: ffmpeg did not finish within {timeout:g} s") from None
        finally:
            reason = self._reason()
            self._log.close()
        if code != 0:
            raise OutputError(f"cannot write video {self.path}: ffmpeg failed ({reason})")

    def cpu_seconds(self) -> float:
        """CPU seconds the ffmpeg process has used so far (0 where /proc cannot tell)."""
        return process_cpu_seconds(self._proc.pid)

    def _reason(self) -> str:
        self._log.seek(0)
        lines = self._log.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else f"exit code {self._proc.returncode}"


def _widen_pipe(pipe: Any, frame_bytes: int) -> None:
    """Let the pipe hold a whole frame where Linux allows (``F_SETPIPE_SZ``, up to ``fs.pipe-max-size``, 1 MiB by
    default): at the default 64 KiB, ffmpeg and the feeder take turns twenty times per 768x576 frame."""
    import fcntl

    set_size = getattr(fcntl, "F_SETPIPE_SZ", 1031)
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    except (OSError, ValueError):
        limit = 1 << 20
    try:
        fcntl.fcntl(pipe.fileno(), set_size, min(max(frame_bytes, 1 << 16), limit))  # never below the default
    except OSError as exc:  # not Linux, or a smaller limit: the default size works, only with more switches
        log.debug("pipe size left at its default: %s", exc)


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` from /proc (0.0 where there is none, or it has gone)."""
    import os

    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def ffmpeg_program() -> str | None:
    """The ``ffmpeg`` on PATH, else the one the ``imageio-ffmpeg`` wheel carries (``edgecv[video]``), else None."""
    found = shutil.which(FFMPEG)
    if found is not None:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:  # a platform the wheel has no binary for
        return None


def missing_ffmpeg(path: Path) -> str:
    return (f"writing the annotated video {path.name} needs the {FFMPEG} program, which is not on PATH: install "
            f"it (apt install ffmpeg, or pip install 'edgecv[video]'), or write .mkv (--video-format mkv), "
            f"or leave out the video sink")


class Overlay:
    """What the annotated video and the live view draw on a frame: boxes, track ids, class names, each track's
    recent trail, and the lines and zones with their running counts.

    ``follow(detections, seq)`` on every analysed frame keeps the trails whole; ``draw`` on the frames shown.
    ``trail``: how many recent positions of each track are drawn. ``counters``: the pipeline's line and zone
    counters.

    Example:
        >>> overlay = Overlay(counters=pipeline.counters)                          # doctest: +SKIP
        >>> overlay.follow(result.detections, result.seq)                          # doctest: +SKIP
        >>> shown = overlay.draw(result.frame.image, result.detections, labels=labels)   # doctest: +SKIP
    """

    def __init__(self, *, trail: int = 20, counters: Sequence[Any] = ()) -> None:
        from edgecv.deps import require

        self.trail = trail
        self.counters = list(counters)
        self._cv2 = require("cv2", extra="opencv", purpose="draw on frames", package="opencv-python-headless")
        self.trails: dict[int, collections.deque] = {}  # track id -> its recent points
        self._seen: dict[int, int] = {}

    def reset(self) -> None:
        self.trails.clear()
        self._seen.clear()

    def follow(self, d: Any, seq: int) -> None:
        """Each track's recent bottom-centre points, in frame pixels; tracks unseen for a trail's length go."""
        if d.tracker_id is None:
            return
        centres = np.stack([(d.xyxy[:, 0] + d.xyxy[:, 2]) / 2, d.xyxy[:, 3]], axis=1) if len(d) else np.zeros((0, 2))
        for tid, point in zip(d.tracker_id.tolist(), centres):
            self.trails.setdefault(tid, collections.deque(maxlen=self.trail)).append(point)
            self._seen[tid] = seq
        for tid in [t for t, s in self._seen.items() if seq - s > self.trail]:
            del self._seen[tid], self.trails[tid]

    def draw(self, image: np.ndarray, d: Any, *, labels: Sequence[str] | None = None, scale: float = 1.0,
             copy: bool = True) -> np.ndarray:
        """``image`` (BGR) with ``d`` and the counters drawn, ``scale`` times its size (scaled before drawing;
        then never the frame itself); ``copy=False`` draws on ``image`` itself when it keeps its size."""
        from edgecv.annotate import annotate

        cv2 = self._cv2
        if scale != 1.0:
            h, w = image.shape[:2]
            size = (max(2, round(w * scale)), max(2, round(h * scale)))
            image = resize_image(image, size, cv2=cv2)
            d = d.scaled(size[0] / w, size[1] / h)
        shown = annotate(image, d, labels=labels or None, copy=copy and scale == 1.0)
        if d.tracker_id is not None:
            self._draw_trails(shown, d, scale)
        self._draw_counters(shown, scale)
        return shown

    def _draw_trails(self, image: np.ndarray, d: Any, scale: float) -> None:
        from edgecv.annotate import class_color

        cv2 = self._cv2
        for tid, cls in zip(d.tracker_id.tolist(), d.class_id.tolist()):
            trail = self.trails.get(tid)
            if trail is not None and len(trail) > 1:
                pts = np.round(np.asarray(trail) * scale).astype(np.int32).reshape(-1, 1, 2)
                cv2.polylines(image, [pts], False, class_color(cls), max(1, image.shape[0] // 240), cv2.LINE_AA)

    def _draw_counters(self, image: np.ndarray, k: float) -> None:
        cv2 = self._cv2
        scale = max(image.shape[0] / 720, 0.35)
        for c in self.counters:
            if hasattr(c, "line"):
                p, q = (tuple(int(round(v * k)) for v in c.line.start), tuple(int(round(v * k)) for v in c.line.end))
                cv2.line(image, p, q, (255, 255, 255), 2, cv2.LINE_AA)
                text, at = f"{c.line.name}: in {c.in_count} out {c.out_count}", p
            else:
                pts = np.round(np.asarray(c.zone.points) * k).astype(np.int32).reshape(-1, 1, 2)
                cv2.polylines(image, [pts], True, (255, 255, 255), 2, cv2.LINE_AA)
                text, at = f"{c.zone.name}: {c.count} in, {c.entered} entered", tuple(int(v) for v in pts[0, 0])
            at = (max(at[0], 2), max(at[1] - 4, int(14 * scale) + 2))
            cv2.putText(image, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale + 0.15, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(image, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale + 0.15, (255, 255, 255), 1, cv2.LINE_AA)


class VideoSink(Sink):
    """The frames as :class:`Overlay` draws them: boxes, track ids, class names, short trails, and the lines and
    zones with their counts.

    ``trail``: how many recent positions of each track are drawn. ``counters``: the pipeline's line and zone
    counters, drawn with their running counts. The video's rate is the source's (divided by ``stride``), or at
    most ``fps``: then one analysed frame in ``k`` is written (k = round(rate / fps)), and only those are
    drawn and encoded. ``scale`` (0 < scale <= 1) writes the video that much smaller than the frames analysed,
    scaled before drawing. ``in_place`` draws on the frame itself instead of a copy: for when no sink after
    this one reads the frame's pixels.
    """

    name = "video"
    default_file = "{name}.mp4"
    description = "annotated video (.mp4 by ffmpeg, readable after a hard kill; .mkv, .avi by OpenCV)"

    def __init__(self, path: str | Path, *, trail: int = 20, counters: Sequence[Any] = (), stride: int = 1,
                 fps: float | None = None, scale: float = 1.0, in_place: bool = False) -> None:
        super().__init__(path)
        if self.path.suffix.lower() not in VIDEO_CODECS:
            raise ConfigError(f"video sink: unsupported file type {self.path.suffix or '(none)'!r}; valid: "
                              f"{', '.join(VIDEO_CODECS)}")
        if fps is not None and not (isinstance(fps, (int, float)) and fps > 0):
            raise ConfigError(f"video fps: expected a number > 0, got {fps!r}")
        if not (isinstance(scale, (int, float)) and 0 < scale <= 1):
            raise ConfigError(f"video scale: expected a number in (0, 1], got {scale!r}")
        if VIDEO_CODECS[self.path.suffix.lower()] == "ffmpeg" and ffmpeg_program() is None:
            raise OutputError(missing_ffmpeg(self.path))  # now, not once the model is loaded and frames come
        self.trail = trail
        self.counters = list(counters)
        self.stride = stride
        self.max_fps, self.scale, self.in_place = fps, float(scale), in_place
        self._writer: Any = None
        self.overlay: Overlay | None = None
        self._every, self._taken = 1, 0

    def open(self, info: dict[str, Any]) -> None:
        from edgecv.deps import require

        super().open(info)
        self._cv2 = require("cv2", extra="opencv", purpose="write annotated video", package="opencv-python-headless")
        self.overlay = Overlay(trail=self.trail, counters=self.counters)
        rate = float(info.get("fps") or 25.0) / self.stride
        self._every = max(1, round(rate / self.max_fps)) if self.max_fps else 1
        self._fps = rate / self._every
        self._taken = 0

    def _start(self, w: int, h: int) -> None:
        cv2 = self._cv2
        codec = VIDEO_CODECS[self.path.suffix.lower()]
        if codec == "ffmpeg":
            self._writer = FfmpegMp4(self.path, fps=self._fps, size=(w, h))
        else:
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*codec), self._fps, (w, h))
        if codec != "ffmpeg" and not self._writer.isOpened():
            raise OutputError(f"cannot write video {self.path}: OpenCV has no encoder for it here")
        self._size = (w, h)

    def write(self, result: Any) -> None:
        overlay = self.overlay
        assert overlay is not None, "VideoSink.write before open"
        d = result.detections
        overlay.follow(d, result.seq)  # every frame, so that trails stay whole between written ones
        self._taken += 1
        if (self._taken - 1) % self._every:
            return
        shown = overlay.draw(result.frame.image, d, labels=self.labels, scale=self.scale, copy=not self.in_place)
        h, w = shown.shape[:2]
        if self._writer is None:
            self._start(w, h)
        if (w, h) != self._size:  # a stream that came back at another size
            shown = self._cv2.resize(shown, self._size)
        self._writer.write(shown)
        self.frames += 1

    def child_cpu_s(self) -> float:
        """CPU seconds the encoder process has used so far (0 for OpenCV's writers, which run in this process)."""
        seconds = getattr(self._writer, "cpu_seconds", None)
        return seconds() if seconds is not None else 0.0

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.release()


#: Every sink by name, with its default file name in the output folder ({name}: the source's name).
SINKS: dict[str, type[Sink]] = {VideoSink.name: VideoSink, JsonlSink.name: JsonlSink, MotSink.name: MotSink}


def make_sink(kind: str, folder: str | Path, *, name: str = "video", **options: Any) -> Sink:
    """A sink of ``kind`` writing its default file in ``folder`` (``name`` fills ``{name}``)."""
    if kind not in SINKS:
        raise ConfigError(f"sink: unknown {kind!r}; valid sinks: {', '.join(SINKS)}")
    cls = SINKS[kind]
    return cls(Path(folder) / cls.default_file.format(name=name), **options)
