"""The tracker table: every tracker by name, and :func:`make_tracker` to build one from plain options.

Example:
    >>> tracker = make_tracker("bytetrack", {"track_thresh": 0.5, "max_lost_s": 2.0}, fps=25)
    >>> tracker.options.max_lost_s, tracker.fps
    (2.0, 25.0)
    >>> make_tracker("deepsort")
    Traceback (most recent call last):
    ...
    edgecv.errors.ConfigError: tracker: unknown name 'deepsort'; valid names: bytetrack, ocsort, sort
"""

from __future__ import annotations

from typing import Any

from edgecv.errors import ConfigError
from edgecv.tracking.bytetrack import ByteTracker
from edgecv.tracking.ocsort import OcSortTracker
from edgecv.tracking.sort import SortTracker
from edgecv.tracking.track import Tracker

__all__ = ["TRACKERS", "make_tracker", "tracker_names"]

#: Tracker classes by name; each has ``Options``, its frozen options dataclass.
TRACKERS: dict[str, type[Tracker]] = {
    "bytetrack": ByteTracker,
    "ocsort": OcSortTracker,
    "sort": SortTracker,
}


def tracker_names() -> list[str]:
    """The registered tracker names, sorted."""
    return sorted(TRACKERS)


def make_tracker(name: str, options: Any = None, *, fps: float = 30.0) -> Tracker:
    """A new tracker ``name`` with ``options`` (a mapping, e.g. from YAML, its Options dataclass, or None for
    the defaults) for a stream of ``fps`` frames per second. Bad names, keys and values are ConfigErrors."""
    if not isinstance(name, str) or name not in TRACKERS:
        raise ConfigError(f"tracker: unknown name {name!r}; valid names: {', '.join(tracker_names())}")
    return TRACKERS[name](options, fps=fps)
