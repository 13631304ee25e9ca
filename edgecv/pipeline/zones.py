"""Counting lines and zones: :class:`Line` and :class:`Zone` in frame pixels, and the counters that turn tracks
crossing them into :class:`~edgecv.pipeline.events.TrackEvent` s.

Each track is followed by one anchor point of its box (:data:`ANCHORS`: the bottom centre by default, where a
person or a car touches the ground). Counters remember a track until it has not been reported for
``forget_after`` frames, so memory stays bounded on endless streams.

Example:
    >>> import numpy as np
    >>> from edgecv.detection.detections import Detections
    >>> counter = LineCounter(Line.parse("door=0,100,200,100"))
    >>> def box(y):  # track 1, its bottom centre at (50, y)
    ...     return Detections(np.array([[40, y - 20, 60, y]]), [0.9], [0], tracker_id=[1])
    >>> path = [90, 96, 99, 104, 101, 110]  # 99 and 101 are within the 2-pixel margin
    >>> events = [e for i, y in enumerate(path) for e in counter.update(box(y), frame=i)]
    >>> [(e.kind, e.track_id, e.frame, e.where) for e in events]
    [('line_in', 1, 3, 'door')]
    >>> counter.in_count, counter.out_count
    (1, 0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edgecv.detection.detections import Detections
from edgecv.errors import ConfigError, InputError
from edgecv.pipeline.events import TrackEvent, check_frame, check_time, tracked_input

__all__ = ["ANCHORS", "Line", "LineCounter", "Zone", "ZoneCounter"]

#: Anchor points by name, as (x, y) fractions of the box from its top-left corner.
ANCHORS: dict[str, tuple[float, float]] = {
    "bottom_center": (0.5, 1.0),
    "center": (0.5, 0.5),
    "top_center": (0.5, 0.0),
}

_LINE_FORM = "'x0,y0,x1,y1' or 'name=x0,y0,x1,y1' (pixels)"
_ZONE_FORM = "'x0,y0,x1,y1,x2,y2,...' or 'name=x0,y0,...' (pixels, 3 or more points)"
_ON_EDGE = 1e-6  # pixels: a point this close to a zone's edge is on it


def _is_num(v: Any) -> bool:
    ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    return ok and math.isfinite(v)


def _point(p: Any) -> tuple[float, float] | None:
    """``p`` as a float pair, or None when it is not two finite numbers."""
    try:
        x, y = p
    except (TypeError, ValueError):
        return None
    return (float(x), float(y)) if _is_num(x) and _is_num(y) else None


def _check_name(name: Any, who: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{who}.name: expected a non-empty string, got {name!r}")


def _parse(text: Any, what: str, form: str) -> tuple[str | None, list[float]]:
    """The name (None without ``name=``) and the numbers of ``"name=n,n,..."``."""
    if not isinstance(text, str):
        raise ConfigError(f"{what}: expected text like {form}, got {type(text).__name__} {text!r}")
    head, sep, body = text.partition("=")
    name = head.strip() if sep else None
    if sep and not name:
        raise ConfigError(f"{what} {text!r}: expected {form}, got an empty name before '='")
    numbers = []
    for part in (body if sep else text).split(","):
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"{what} {text!r}: expected {form}, got {part.strip()!r} for a number") from None
        if not math.isfinite(value):
            raise ConfigError(f"{what} {text!r}: expected {form}, got {part.strip()!r} (not finite)")
        numbers.append(value)
    return name, numbers


def _anchor(anchor: Any, who: str) -> tuple[float, float]:
    if not isinstance(anchor, str) or anchor not in ANCHORS:
        raise ConfigError(f"{who} anchor: unknown name {anchor!r}; valid names: {', '.join(sorted(ANCHORS))}")
    return ANCHORS[anchor]


def _anchor_points(xyxy: np.ndarray, fractions: tuple[float, float]) -> np.ndarray:
    """Anchor points ``[N, 2]`` of boxes ``[N, 4]``."""
    f = np.asarray(fractions)
    return xyxy[:, :2] + f * (xyxy[:, 2:] - xyxy[:, :2])


def _forget_after(value: Any, who: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{who} forget_after: expected an integer number of frames >= 1, got {value!r}")
    return int(value)


# -- shapes ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    """A counting line: the segment from ``start`` to ``end``, ``(x, y)`` in frame pixels (y down).

    Example:
        >>> Line.parse("door=0,100,200,100")
        Line(start=(0.0, 100.0), end=(200.0, 100.0), name='door')
        >>> Line.parse("0,1,2")
        Traceback (most recent call last):
        ...
        edgecv.errors.ConfigError: line '0,1,2': expected 'x0,y0,x1,y1' or 'name=x0,y0,x1,y1' (pixels), got 3 numbers
    """

    start: tuple[float, float]
    end: tuple[float, float]
    name: str = "line"

    def __post_init__(self) -> None:
        for field in ("start", "end"):
            p = _point(getattr(self, field))
            if p is None:
                raise ConfigError(f"Line.{field}: expected (x, y) as two finite numbers, got {getattr(self, field)!r}")
            object.__setattr__(self, field, p)
        if self.start == self.end:
            raise ConfigError(f"Line: expected start != end, got {self.start} for both")
        _check_name(self.name, "Line")

    @classmethod
    def parse(cls, text: str) -> Line:
        """A line from ``"x0,y0,x1,y1"`` or ``"name=x0,y0,x1,y1"`` (start x, y then end x, y, in pixels)."""
        name, n = _parse(text, "line", _LINE_FORM)
        if len(n) != 4:
            raise ConfigError(f"line {text!r}: expected {_LINE_FORM}, got {len(n)} numbers")
        if n[:2] == n[2:]:
            raise ConfigError(f"line {text!r}: expected two different end points, got ({n[0]:g}, {n[1]:g}) twice")
        return cls((n[0], n[1]), (n[2], n[3])) if name is None else cls((n[0], n[1]), (n[2], n[3]), name)

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """Distances ``[N]`` in pixels of ``points [N, 2]`` from the infinite line: positive on its right (the
        side start→end turned 90° clockwise on screen points to), negative on its left."""
        a, d = np.asarray(self.start), np.subtract(self.end, self.start)
        rel = np.asarray(points, np.float64) - a
        return (d[0] * rel[:, 1] - d[1] * rel[:, 0]) / math.hypot(d[0], d[1])


@dataclass(frozen=True)
class Zone:
    """A counting zone: the polygon through ``points`` (``(x, y)`` in frame pixels, 3 or more, in either
    order, closed back to the first), with non-zero (shoelace) area.

    Example:
        >>> zone = Zone.parse("dock=0,0,100,0,100,50,0,50")
        >>> zone.name, len(zone.points)
        ('dock', 4)
        >>> zone.contains([[50, 25], [150, 25], [100, 10]]).tolist()
        [True, False, True]
    """

    points: tuple[tuple[float, float], ...]
    name: str = "zone"

    def __post_init__(self) -> None:
        try:
            pts = [_point(p) for p in self.points]
        except TypeError:
            pts = [None]
        if len(pts) < 3 or any(p is None for p in pts):
            raise ConfigError(f"Zone.points: expected 3 or more (x, y) pairs of finite numbers, got {self.points!r}")
        object.__setattr__(self, "points", tuple(pts))
        if not _has_area(np.asarray(pts)):
            raise ConfigError(f"Zone.points: expected a polygon with non-zero area, got {self.points}")
        _check_name(self.name, "Zone")

    @classmethod
    def parse(cls, text: str) -> Zone:
        """A zone from ``"x0,y0,x1,y1,x2,y2,..."`` or ``"name=x0,y0,..."`` (the corners in pixels)."""
        name, n = _parse(text, "zone", _ZONE_FORM)
        if len(n) < 6 or len(n) % 2:
            raise ConfigError(f"zone {text!r}: expected {_ZONE_FORM}, got {len(n)} numbers")
        pts = tuple(zip(n[0::2], n[1::2]))
        if not _has_area(np.asarray(pts)):
            raise ConfigError(f"zone {text!r}: expected a polygon with non-zero area, got zero area")
        return cls(pts) if name is None else cls(pts, name)

    def contains(self, points: Any) -> np.ndarray:
        """Whether each of ``points [N, 2]`` is inside, as bool ``[N]``: even-odd rule (a ray crossing the
        edges an odd number of times), so a self-crossing polygon's overlaps are outside; points on an edge or a
        corner count as inside."""
        p = np.asarray(points)
        if p.size == 0 and p.ndim <= 2:
            p = p.reshape(0, 2)
        if p.dtype.kind not in "iuf" or p.ndim != 2 or p.shape[1] != 2:
            raise InputError(f"Zone.contains: expected real points [N, 2], got dtype {p.dtype} shape {list(p.shape)}")
        p = p.astype(np.float64)
        if not np.isfinite(p).all():
            raise InputError("Zone.contains: expected finite points, got NaN or inf")
        a = np.asarray(self.points)
        d = np.roll(a, -1, axis=0) - a  # edge k runs from a[k] by d[k]
        px, py = p[:, :1], p[:, 1:]  # [N, 1] against edges [K]
        ax, ay, dx, dy = a[:, 0], a[:, 1], d[:, 0], d[:, 1]
        straddle = (ay > py) != (ay + dy > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = ax + (py - ay) * dx / dy  # where the edge meets the point's row; used only where it straddles
        inside = (straddle & (px < x_at)).sum(axis=1) % 2 == 1
        t = np.clip(((px - ax) * dx + (py - ay) * dy) / np.maximum(dx * dx + dy * dy, 1e-300), 0, 1)
        gap2 = (px - ax - t * dx) ** 2 + (py - ay - t * dy) ** 2
        return inside | (gap2 <= _ON_EDGE**2).any(axis=1)


def _has_area(pts: np.ndarray) -> bool:
    x, y = pts[:, 0], pts[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    span = float(np.ptp(pts, axis=0).max())
    return area > 1e-9 * span * span


# -- counters --------------------------------------------------------------------------------------------
class LineCounter:
    """Counts tracks whose anchor point crosses ``line``, both ways.

    Directions, in image coordinates (x right, y down): a track's side is "left" or "right" of the line seen
    from ``start`` looking towards ``end`` on screen (right = the way start→end turned 90° clockwise points).
    "line_in" is a crossing from left to right, "line_out" from right to left. So for a line drawn from left to
    right (start x < end x, horizontal), moving down the image is "in"; for one drawn top to bottom, moving
    from right to left on screen is "in". Swap start and end to swap in and out.

    A track's side is set only while its anchor is more than ``margin`` pixels from the infinite line, so jitter
    on the line counts nothing; a track first seen within the margin has no side until it leaves it, and its
    first side never counts. A crossing counts when the side flips AND the track's latest step across the
    infinite line (the straight path from one reported anchor to the next that passes or lands on it) met the
    line SEGMENT, end points included; passing the infinite line beyond an end flips the side without counting.
    Each event has the current box and class and ``where=line.name``. A track not reported for
    ``forget_after`` frames is forgotten (so it starts again without a side if it comes back).

    Example:
        >>> import numpy as np
        >>> from edgecv.detection.detections import Detections
        >>> counter = LineCounter(Line((0, 100), (200, 100)), anchor="center", margin=0)
        >>> up = Detections(np.array([[0, 120, 10, 130], [300, 120, 310, 130]]), [0.9, 0.9], [0, 0], tracker_id=[1, 2])
        >>> down = Detections(np.array([[0, 60, 10, 70], [300, 60, 310, 70]]), [0.9, 0.9], [0, 0], tracker_id=[1, 2])
        >>> counter.update(up, frame=0), [(e.kind, e.track_id) for e in counter.update(down, frame=1)]
        ([], [('line_out', 1)])
    """

    def __init__(self, line: Line, *, anchor: str = "bottom_center", margin: float = 2.0,
                 forget_after: int = 300) -> None:
        if not isinstance(line, Line):
            raise ConfigError(f"LineCounter line: expected a Line, got {type(line).__name__}")
        if not _is_num(margin) or margin < 0:
            raise ConfigError(f"LineCounter margin: expected a finite number of pixels >= 0, got {margin!r}")
        self.line = line
        self.anchor = anchor
        self.margin = float(margin)
        self.forget_after = _forget_after(forget_after, "LineCounter")
        self._fractions = _anchor(anchor, "LineCounter")
        self.reset()

    def reset(self) -> None:
        """Forget every track, the counts and the frame count."""
        self._side: dict[int, int] = {}  # -1 left, +1 right, 0 not yet known
        self._prev: dict[int, tuple[float, float]] = {}  # the anchor when last reported
        self._on_segment: dict[int, bool] = {}  # whether the latest step across the infinite line met the segment
        self._seen: dict[int, int] = {}  # the last frame each track was reported in
        self._in = self._out = 0
        self._frame: int | None = None

    @property
    def in_count(self) -> int:
        """Crossings from left to right so far."""
        return self._in

    @property
    def out_count(self) -> int:
        """Crossings from right to left so far."""
        return self._out

    def update(self, detections: Detections, *, frame: int, time_s: float | None = None) -> list[TrackEvent]:
        """The crossings in one frame: ``detections`` is the tracker's output, ``frame`` its index (increasing),
        ``time_s`` its time in seconds."""
        ids, boxes, classes = tracked_input(detections, "LineCounter.update")
        frame = check_frame(frame, self._frame, "LineCounter.update")
        time_s = check_time(time_s, "LineCounter.update")
        self._frame = frame
        pts = _anchor_points(boxes, self._fractions)
        dist = self.line.signed_distance(pts)
        side = np.where(dist > self.margin, 1, np.where(dist < -self.margin, -1, 0))
        old = np.array([self._side.get(t, 0) for t in ids], np.int64)
        known = np.array([t in self._prev for t in ids], bool)
        rows = np.flatnonzero(known)
        if len(rows):
            prev = np.array([self._prev[ids[i]] for i in rows.tolist()])
            stepped, met = self._steps(prev, pts[rows], dist[rows])
            for i, ok in zip(rows[stepped].tolist(), met[stepped].tolist()):
                self._on_segment[ids[i]] = ok
        flip = (side != 0) & (old != 0) & (side != old)
        events = []
        for i in np.flatnonzero(flip).tolist():
            if not self._on_segment.get(ids[i], False):
                continue
            inward = bool(side[i] > 0)
            self._in += inward
            self._out += not inward
            kind = "line_in" if inward else "line_out"
            x0, y0, x1, y1 = boxes[i].tolist()
            events.append(TrackEvent(kind, ids[i], frame, time_s, classes[i], (x0, y0, x1, y1), self.line.name))
        for i, tid in enumerate(ids):
            self._seen[tid] = frame
            self._prev[tid] = (float(pts[i, 0]), float(pts[i, 1]))
            if side[i] or tid not in self._side:
                self._side[tid] = int(side[i])
        self._forget(frame)
        return events

    def _steps(self, p: np.ndarray, q: np.ndarray, sq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For steps ``p[i] -> q[i]`` (``sq``: the distances of ``q``): which pass or land on the infinite line,
        and whether that point is on the segment."""
        sp = self.line.signed_distance(p)
        stepped = (sp * sq < 0) | (sq == 0)
        u = np.divide(sp, sp - sq, out=np.ones_like(sp), where=sp * sq < 0)  # where along the step it meets the line
        x = p + u[:, None] * (q - p)
        a, d = np.asarray(self.line.start), np.subtract(self.line.end, self.line.start)
        t = (x - a) @ d / (d @ d)  # position along the segment: 0 at start, 1 at end
        return stepped, (t >= 0) & (t <= 1)

    def _forget(self, frame: int) -> None:
        for tid in [t for t, seen in self._seen.items() if frame - seen >= self.forget_after]:
            del self._seen[tid], self._side[tid], self._prev[tid]
            self._on_segment.pop(tid, None)


class ZoneCounter:
    """Follows which tracks' anchor points are inside ``zone``.

    "zone_enter" when a track's anchor is inside and was not (a track first seen inside enters in that frame),
    "zone_exit" when it is outside and was inside; points on the zone's edge are inside. A track that stops
    being reported stays where it was last seen until ``forget_after`` frames have passed without it; then it
    is forgotten, and if it was inside it exits in that frame, with its last box and class. Each event has
    ``where=zone.name``.

    Example:
        >>> import numpy as np
        >>> from edgecv.detection.detections import Detections
        >>> counter = ZoneCounter(Zone(((0, 0), (100, 0), (100, 100), (0, 100))), anchor="center")
        >>> det = Detections(np.array([[40, 40, 60, 60], [140, 40, 160, 60]]), [0.9, 0.9], [0, 0], tracker_id=[1, 2])
        >>> [(e.kind, e.track_id) for e in counter.update(det, frame=0)], counter.inside, counter.count
        ([('zone_enter', 1)], frozenset({1}), 1)
    """

    def __init__(self, zone: Zone, *, anchor: str = "bottom_center", forget_after: int = 300) -> None:
        if not isinstance(zone, Zone):
            raise ConfigError(f"ZoneCounter zone: expected a Zone, got {type(zone).__name__}")
        self.zone = zone
        self.anchor = anchor
        self.forget_after = _forget_after(forget_after, "ZoneCounter")
        self._fractions = _anchor(anchor, "ZoneCounter")
        self.reset()

    def reset(self) -> None:
        """Forget every track, the counts and the frame count."""
        self._inside: dict[int, bool] = {}
        self._seen: dict[int, int] = {}
        self._last: dict[int, tuple[int, tuple[float, float, float, float]]] = {}  # class and box last seen
        self._counted: set[int] = set()  # remembered ids that have entered at least once
        self._entered = 0
        self._frame: int | None = None

    @property
    def inside(self) -> frozenset[int]:
        """The ids inside now."""
        return frozenset(t for t, ins in self._inside.items() if ins)

    @property
    def count(self) -> int:
        """How many tracks are inside now."""
        return sum(self._inside.values())

    @property
    def entered(self) -> int:
        """Distinct tracks that have entered so far (a track that enters again is not counted again, unless it
        had been forgotten in between)."""
        return self._entered

    def update(self, detections: Detections, *, frame: int, time_s: float | None = None) -> list[TrackEvent]:
        """The zone events of one frame: ``detections`` is the tracker's output, ``frame`` its index
        (increasing), ``time_s`` its time in seconds."""
        ids, boxes, classes = tracked_input(detections, "ZoneCounter.update")
        frame = check_frame(frame, self._frame, "ZoneCounter.update")
        time_s = check_time(time_s, "ZoneCounter.update")
        self._frame = frame
        now = self.zone.contains(_anchor_points(boxes, self._fractions)).tolist()
        events = []
        name = self.zone.name
        for tid, ins, cls, row in zip(ids, now, classes, boxes.tolist()):
            box = (row[0], row[1], row[2], row[3])
            was = self._inside.get(tid, False)
            if ins and not was:
                events.append(TrackEvent("zone_enter", tid, frame, time_s, cls, box, name))
                if tid not in self._counted:
                    self._counted.add(tid)
                    self._entered += 1
            elif was and not ins:
                events.append(TrackEvent("zone_exit", tid, frame, time_s, cls, box, name))
            self._inside[tid] = ins
            self._seen[tid] = frame
            self._last[tid] = (cls, box)
        for tid in [t for t, seen in self._seen.items() if frame - seen >= self.forget_after]:
            cls, box = self._last.pop(tid)
            if self._inside.pop(tid):
                events.append(TrackEvent("zone_exit", tid, frame, time_s, cls, box, name))
            del self._seen[tid]
            self._counted.discard(tid)
        return events


def make_counters(lines: Sequence[str] = (), zones: Sequence[str] = ()) -> list[LineCounter | ZoneCounter]:
    """A counter for each line and zone text (as :meth:`Line.parse` and :meth:`Zone.parse` read them), lines
    first.

    Example:
        >>> [type(c).__name__ for c in make_counters(["door=0,5,10,5"], ["lot=0,0,4,0,4,4"])]
        ['LineCounter', 'ZoneCounter']
    """
    return [LineCounter(Line.parse(t)) for t in lines] + [ZoneCounter(Zone.parse(t)) for t in zones]
