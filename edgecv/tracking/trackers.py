"""The tracker table: every tracker by name, the one check of a tracker's name and options, and
:func:`make_tracker` to build one from plain options.

Every command that takes a tracker (``edgecv track``, ``edgecv track-eval``, :func:`edgecv.pipeline.track.track`)
checks it here, before any model is loaded or file read: :func:`tracker_class` for the name,
:func:`tracker_options` for the options (keys, types, ranges), :func:`read_tracker_config` for a
``--tracker-config`` YAML file. Every failure is a one-line :class:`ConfigError` that lists the valid names
or keys.

Example:
    >>> tracker = make_tracker("bytetrack", {"track_thresh": 0.5, "max_lost_s": 2.0}, fps=25)
    >>> tracker.options.max_lost_s, tracker.fps
    (2.0, 25.0)
    >>> make_tracker("deepsort")
    Traceback (most recent call last):
    ...
    edgecv.errors.ConfigError: tracker: unknown name 'deepsort'; valid names: bytetrack, ocsort, sort
    >>> tracker_options("sort", {"max_lost": 3})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edgecv.errors.ConfigError: sort options: unknown key(s) max_lost; valid keys: max_lost_s, min_hits, ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecv.errors import ConfigError
from edgecv.tracking.bytetrack import ByteTracker
from edgecv.tracking.ocsort import OcSortTracker
from edgecv.tracking.sort import SortTracker
from edgecv.tracking.track import Tracker

__all__ = ["TRACKERS", "make_tracker", "read_tracker_config", "tracker_class", "tracker_names", "tracker_options"]

#: Tracker classes by name; each has ``Options``, its frozen options dataclass.
TRACKERS: dict[str, type[Tracker]] = {
    "bytetrack": ByteTracker,
    "ocsort": OcSortTracker,
    "sort": SortTracker,
}


def tracker_names() -> list[str]:
    """The registered tracker names, sorted."""
    return sorted(TRACKERS)


def tracker_class(name: str, *, where: str = "tracker") -> type[Tracker]:
    """The tracker class registered as ``name``; an unknown name is a ConfigError naming ``where`` (the option
    that gave it, ``--tracker``) and listing the valid names."""
    if not isinstance(name, str) or name not in TRACKERS:
        raise ConfigError(f"{where}: unknown name {name!r}; valid names: {', '.join(tracker_names())}")
    return TRACKERS[name]


def tracker_options(name: str, options: Any = None, *, where: str = "tracker") -> Any:
    """The checked options of tracker ``name`` (its ``Options`` dataclass) from a mapping (YAML), an
    ``Options``, or None for the defaults; see :meth:`Tracker.check_options`."""
    return tracker_class(name, where=where).check_options(options)


def read_tracker_config(path: str | Path, *, tracker: str, what: str = "tracker config") -> dict[str, Any]:
    """The YAML mapping of tracker options in ``path``, checked against tracker ``tracker``'s options; the
    mapping is returned as written (the keys it sets are the user's: :class:`ThresholdFit` leaves those alone).
    ``what`` names the file in messages (``--tracker-config``)."""
    import yaml

    cls = tracker_class(tracker)  # an unknown name is not the file's fault
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: cannot read it (not found)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{what} {path}: cannot read it ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: expected a mapping of tracker options, got {type(data).__name__}")
    try:
        cls.check_options(data)
    except ConfigError as exc:
        raise ConfigError(f"{what} {path}: {exc}") from None
    return data


def make_tracker(name: str, options: Any = None, *, fps: float = 30.0) -> Tracker:
    """A new tracker ``name`` with ``options`` (a mapping, e.g. from YAML, its Options dataclass, or None for
    the defaults) for a stream of ``fps`` frames per second. Bad names, keys and values are ConfigErrors."""
    return tracker_class(name)(options, fps=fps)
