"""Where the pipeline's results go: an annotated video, JSON lines with tracks and events, a MOTChallenge txt.

Every sink has the same small interface, ``open(info)``, ``write(result)`` and ``close()``, and is registered
in :data:`SINKS` with its default file name; the CLI's ``--sinks`` choices come from that table. Text sinks
flush at least once a second, so a crash or a kill loses at most the last second of them. The video is
written as the run goes; an ``.mp4`` gets its index when the sink is closed (any stop the process lives
through: end of source, Ctrl-C, SIGTERM, an error), while an ``.mkv`` stays readable up to its last second
even after a SIGKILL or a power cut.

Example:
    >>> sinks = [make_sink("jsonl", "runs/a"), make_sink("video", "runs/a", name="street")]   # doctest: +SKIP
"""

from __future__ import annotations

import collections
import json
import time
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from edgecv.errors import ConfigError, OutputError
from edgecv.labels import label_of

FLUSH_S = 1.0
VIDEO_CODECS = {".mp4": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


class Sink:
    """Base of every sink: ``open(info)`` before the first frame (``info``: the source's kind, name, fps,
    size and the detector's labels), ``write(result)`` per frame, ``close()`` once, whatever happened."""

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


class VideoSink(Sink):
    """The frames with boxes, track ids, class names, short trails, and the lines and zones with their counts.

    ``trail``: how many recent positions of each track are drawn. ``counters``: the pipeline's line and zone
    counters, drawn with their running counts. The video's rate is the source's (divided by ``stride``).
    """

    name = "video"
    default_file = "{name}.mp4"
    description = "annotated video (.mp4; .mkv survives a hard kill)"

    def __init__(self, path: str | Path, *, trail: int = 20, counters: Sequence[Any] = (), stride: int = 1) -> None:
        super().__init__(path)
        if self.path.suffix.lower() not in VIDEO_CODECS:
            raise ConfigError(f"video sink: unsupported file type {self.path.suffix or '(none)'!r}; valid: "
                              f"{', '.join(VIDEO_CODECS)}")
        self.trail = trail
        self.counters = list(counters)
        self.stride = stride
        self._writer: Any = None
        self._trails: dict[int, collections.deque] = {}
        self._seen: dict[int, int] = {}

    def open(self, info: dict[str, Any]) -> None:
        from edgecv.deps import require

        super().open(info)
        self._cv2 = require("cv2", extra="opencv", purpose="write annotated video", package="opencv-python-headless")
        self._fps = float(info.get("fps") or 25.0) / self.stride

    def _start(self, w: int, h: int) -> None:
        cv2 = self._cv2
        fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[self.path.suffix.lower()])
        self._writer = cv2.VideoWriter(str(self.path), fourcc, self._fps, (w, h))
        if not self._writer.isOpened():
            raise OutputError(f"cannot write video {self.path}: OpenCV has no encoder for it here")
        self._size = (w, h)

    def write(self, result: Any) -> None:
        from edgecv.annotate import annotate

        cv2 = self._cv2
        d = result.detections
        shown = annotate(result.frame.image, d, labels=self.labels or None)
        h, w = shown.shape[:2]
        if d.tracker_id is not None:
            self._draw_trails(shown, d, result.seq)
        self._draw_counters(shown)
        if self._writer is None:
            self._start(w, h)
        if (w, h) != self._size:  # a stream that came back at another size
            shown = cv2.resize(shown, self._size)
        self._writer.write(shown)
        self.frames += 1

    def _draw_trails(self, image: np.ndarray, d: Any, seq: int) -> None:
        from edgecv.annotate import class_color

        cv2 = self._cv2
        centres = np.stack([(d.xyxy[:, 0] + d.xyxy[:, 2]) / 2, d.xyxy[:, 3]], axis=1) if len(d) else np.zeros((0, 2))
        for tid, cls, point in zip(d.tracker_id.tolist(), d.class_id.tolist(), centres):
            trail = self._trails.setdefault(tid, collections.deque(maxlen=self.trail))
            trail.append(point)
            self._seen[tid] = seq
            if len(trail) > 1:
                pts = np.round(np.asarray(trail)).astype(np.int32).reshape(-1, 1, 2)
                cv2.polylines(image, [pts], False, class_color(cls), max(1, image.shape[0] // 240), cv2.LINE_AA)
        for tid in [t for t, s in self._seen.items() if seq - s > self.trail]:
            del self._seen[tid], self._trails[tid]

    def _draw_counters(self, image: np.ndarray) -> None:
        cv2 = self._cv2
        scale = max(image.shape[0] / 720, 0.35)
        for c in self.counters:
            if hasattr(c, "line"):
                p, q = (tuple(int(round(v)) for v in c.line.start), tuple(int(round(v)) for v in c.line.end))
                cv2.line(image, p, q, (255, 255, 255), 2, cv2.LINE_AA)
                text, at = f"{c.line.name}: in {c.in_count} out {c.out_count}", p
            else:
                pts = np.round(np.asarray(c.zone.points)).astype(np.int32).reshape(-1, 1, 2)
                cv2.polylines(image, [pts], True, (255, 255, 255), 2, cv2.LINE_AA)
                text, at = f"{c.zone.name}: {c.count} in, {c.entered} entered", tuple(int(v) for v in pts[0, 0])
            at = (max(at[0], 2), max(at[1] - 4, int(14 * scale) + 2))
            cv2.putText(image, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale + 0.15, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(image, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale + 0.15, (255, 255, 255), 1, cv2.LINE_AA)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


#: Every sink by name, with its default file name in the output folder ({name}: the source's name).
SINKS: dict[str, type[Sink]] = {VideoSink.name: VideoSink, JsonlSink.name: JsonlSink, MotSink.name: MotSink}


def make_sink(kind: str, folder: str | Path, *, name: str = "video", **options: Any) -> Sink:
    """A sink of ``kind`` writing its default file in ``folder`` (``name`` fills ``{name}``)."""
    if kind not in SINKS:
        raise ConfigError(f"sink: unknown {kind!r}; valid sinks: {', '.join(SINKS)}")
    cls = SINKS[kind]
    return cls(Path(folder) / cls.default_file.format(name=name), **options)
