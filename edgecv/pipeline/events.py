"""Track events: what happened to which track in which frame, and :class:`TrackEvents` for enter and exit.

A :class:`TrackEvent` is one plain record (``to_dict()`` for JSON). :class:`TrackEvents` turns a tracker's
per-frame output (Detections with ``tracker_id``) and the ids it removed into "enter" and "exit" events; the
line and zone counters of :mod:`edgecv.pipeline.zones` make the other kinds.

Example:
    >>> import numpy as np
    >>> from edgecv.detection.detections import Detections
    >>> events = TrackEvents()
    >>> det = Detections(np.array([[0, 0, 10, 10]]), [0.9], [2], tracker_id=[7])
    >>> [(e.kind, e.track_id, e.frame) for e in events.update(det, frame=0)]
    [('enter', 7, 0)]
    >>> [(e.kind, e.track_id, e.frame) for e in events.update(Detections.empty(), frame=1, removed_ids=[7])]
    [('exit', 7, 1)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edgecv.detection.detections import Detections
from edgecv.errors import InputError

__all__ = ["EVENT_KINDS", "TrackEvent", "TrackEvents"]

#: Every event kind, in the order a track usually meets them.
EVENT_KINDS = ("enter", "exit", "line_in", "line_out", "zone_enter", "zone_exit")

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TrackEvent:
    """One event of one track: ``kind`` (one of :data:`EVENT_KINDS`), the frame index and time in seconds
    (None when unknown), the track's class and box (pixels) in that frame, and ``where``: the line or zone
    name for line and zone events, "" otherwise.

    Example:
        >>> event = TrackEvent("line_in", 3, frame=12, time_s=0.48, class_id=0, xyxy=(1, 2.346, 3, 4), where="door")
        >>> d = event.to_dict()
        >>> d["kind"], d["track_id"], d["frame"], d["xyxy"], d["where"]
        ('line_in', 3, 12, [1.0, 2.35, 3.0, 4.0], 'door')
    """

    kind: str
    track_id: int
    frame: int
    time_s: float | None
    class_id: int
    xyxy: Box
    where: str = ""

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise InputError(f"TrackEvent.kind: expected one of {', '.join(EVENT_KINDS)}, got {self.kind!r}")
        box = tuple(float(v) for v in self.xyxy)
        if len(box) != 4:
            raise InputError(f"TrackEvent.xyxy: expected 4 numbers (x0, y0, x1, y1), got {len(box)}")
        # numpy scalars become Python numbers so that to_dict() is JSON-able as it is
        object.__setattr__(self, "track_id", int(self.track_id))
        object.__setattr__(self, "frame", int(self.frame))
        object.__setattr__(self, "time_s", None if self.time_s is None else float(self.time_s))
        object.__setattr__(self, "class_id", int(self.class_id))
        object.__setattr__(self, "xyxy", box)
        object.__setattr__(self, "where", str(self.where))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values; box coordinates rounded to 2 decimals."""
        return {
            "kind": self.kind,
            "track_id": self.track_id,
            "frame": self.frame,
            "time_s": self.time_s,
            "class_id": self.class_id,
            "xyxy": [round(v, 2) for v in self.xyxy],
            "where": self.where,
        }


# -- input checks shared with edgecv.pipeline.zones -------------------------------------------------------
def tracked_input(detections: Any, who: str) -> tuple[list[int], np.ndarray, list[int]]:
    """Track ids, float64 boxes ``[N, 4]`` and classes of a tracker's output. Empty Detections need no
    ``tracker_id`` (``Detections.empty()`` has none); any other without one, or with an id twice, is an error."""
    if not isinstance(detections, Detections):
        raise InputError(f"{who}: expected Detections, got {type(detections).__name__}")
    if len(detections) == 0:
        return [], np.zeros((0, 4)), []
    if detections.tracker_id is None:
        raise InputError(f"{who}: expected Detections with tracker_id (a tracker's output), got tracker_id None")
    ids = detections.tracker_id
    if len(np.unique(ids)) != len(ids):
        raise InputError(f"{who}: expected each tracker_id once per frame, got {ids.tolist()}")
    return ids.tolist(), detections.xyxy.astype(np.float64), detections.class_id.tolist()


def check_frame(frame: Any, last: int | None, who: str, *, same_ok: bool = False) -> int:
    """``frame`` as an int, checked to come after ``last`` (or equal it, with ``same_ok``); ``who`` heads the
    one-line InputError.

    Example:
        >>> check_frame(3, 2, "LineCounter.update")
        3
    """
    if not isinstance(frame, (int, np.integer)) or isinstance(frame, bool):
        raise InputError(f"{who}: expected frame as an integer index, got {frame!r}")
    frame = int(frame)
    if last is not None and (frame < last or (frame == last and not same_ok)):
        raise InputError(f"{who}: expected frame {'>=' if same_ok else '>'} {last} (frames increase), got {frame}")
    return frame


def check_time(time_s: Any, who: str) -> float | None:
    """``time_s`` (seconds) as a float, or None; anything but a finite number is a one-line InputError.

    Example:
        >>> check_time(2, "TrackEvents.update"), check_time(None, "TrackEvents.update")
        (2.0, None)
    """
    if time_s is None:
        return None
    ok = isinstance(time_s, (int, float, np.integer, np.floating)) and not isinstance(time_s, bool)
    if not ok or not math.isfinite(time_s):
        raise InputError(f"{who}: expected time_s in seconds as a finite number or None, got {time_s!r}")
    return float(time_s)


class TrackEvents:
    """Enter and exit events from a tracker's output, frame by frame.

    ``update`` gives "enter" the first frame a ``tracker_id`` is reported, with that frame's box and class, and
    "exit" for each id in ``removed_ids`` (the tracks the tracker removed in this frame, e.g.
    ``[t.track_id for t in tracker.removed]``) that had entered, with the last box and class seen for it;
    removed ids that never entered are ignored. Enters come first, in detection order, then exits, in
    ``removed_ids`` order. An id reported again after its exit enters again (trackers do not reuse ids, so this
    only happens when the caller's ``removed_ids`` were early). ``finish`` exits every id still present, at the
    end of a run. Until then, an entered id is remembered for as long as it is not removed.

    Example:
        >>> import numpy as np
        >>> from edgecv.detection.detections import Detections
        >>> events = TrackEvents()
        >>> det = Detections(np.array([[0, 0, 10, 10], [5, 5, 9, 9]]), [0.9, 0.8], [0, 1], tracker_id=[1, 2])
        >>> [(e.kind, e.track_id) for e in events.update(det, frame=0, time_s=0.0)]
        [('enter', 1), ('enter', 2)]
        >>> sorted(events.present)
        [1, 2]
        >>> [(e.kind, e.track_id, e.frame, e.xyxy) for e in events.finish(frame=5)]
        [('exit', 1, 5, (0.0, 0.0, 10.0, 10.0)), ('exit', 2, 5, (5.0, 5.0, 9.0, 9.0))]
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every track and the frame count."""
        self._last: dict[int, tuple[int, Box]] = {}  # entered id -> last class and box, in order of entry
        self._frame: int | None = None

    @property
    def present(self) -> frozenset[int]:
        """The ids that entered and have not exited."""
        return frozenset(self._last)

    def update(
        self,
        detections: Detections,
        *,
        frame: int,
        time_s: float | None = None,
        removed_ids: Sequence[int] = (),
    ) -> list[TrackEvent]:
        """The events of one frame: ``detections`` is the tracker's output for it, ``frame`` its index
        (increasing), ``time_s`` its time in seconds, ``removed_ids`` the tracks removed in it."""
        ids, boxes, classes = tracked_input(detections, "TrackEvents.update")
        frame = check_frame(frame, self._frame, "TrackEvents.update")
        time_s = check_time(time_s, "TrackEvents.update")
        removed = np.asarray(removed_ids)
        if removed.size == 0:
            removed = removed.reshape(0).astype(np.int64)
        if removed.dtype.kind not in "iu" or removed.ndim != 1:
            raise InputError(f"TrackEvents.update: expected removed_ids as integer track ids, got {removed_ids!r}")
        self._frame = frame
        events = []
        for tid, cls, row in zip(ids, classes, boxes.tolist()):
            box = (row[0], row[1], row[2], row[3])
            if tid not in self._last:
                events.append(TrackEvent("enter", tid, frame, time_s, cls, box))
            self._last[tid] = (cls, box)
        for tid in removed.tolist():
            if tid in self._last:
                cls, box = self._last.pop(tid)
                events.append(TrackEvent("exit", tid, frame, time_s, cls, box))
        return events

    def finish(self, *, frame: int, time_s: float | None = None) -> list[TrackEvent]:
        """An "exit" for every id still present (in order of entry), at ``frame`` (not before the last update's),
        then forget them."""
        frame = check_frame(frame, self._frame, "TrackEvents.finish", same_ok=True)
        time_s = check_time(time_s, "TrackEvents.finish")
        self._frame = frame
        events = [TrackEvent("exit", tid, frame, time_s, cls, box) for tid, (cls, box) in self._last.items()]
        self._last.clear()
        return events
