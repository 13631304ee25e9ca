"""MOTChallenge text files: detections, ground truth and tracker output, one box per line.

Every row is ``frame, id, x, y, w, h, conf, a, b, c`` with 1-based frames and the box's top-left corner,
width and height in pixels. What the columns after ``h`` mean depends on the file:

- ``det.txt`` (``kind="det"``): id is -1, ``conf`` is the detector's score; the rest is -1.
- ``gt.txt`` (``kind="gt"``): ``conf`` is a consider flag: a row whose ``int(conf)`` is 0 is ignored by the
  evaluation. What columns 8..10 hold is the file's *layout* (:data:`GT_LAYOUTS`, :func:`gt_layout`): in
  MOT16/17/20 the class (1 = pedestrian, 2..13 other classes and distractors) and the visibility (9
  columns); in MOT15 -1 (2D sequences) or the world coordinates x, y, z of the box's foot point (3D
  sequences such as TUD-Stadtmitte or PETS09-S2L1, 10 columns).
- tracker output (``kind="tracks"``): id is the track id, the rest as :func:`write_mot` writes it:
  ``frame,id,x,y,w,h,conf,-1,-1,-1``, the layout TrackEval reads.

:func:`read_mot` checks a file in one pass. What cannot be read raises a one-line :class:`InputError` naming
``file:line``: a row with fewer than 7 or more than 10 values, rows of different lengths, text that is not
a number, a frame below 1, past 1,000,000 or not a whole number, a negative or fractional id (or one past
2**53, where float64 stops telling ids apart) in ground truth or tracker output, the same id twice in one frame
(TrackEval refuses that too), a box corner (x, y, x+w, y+h) past +-1e6 pixels
(:data:`~edgecv.detection.boxes.MAX_COORD`: a det file with w=1e38 is damaged, and dropping such a row would
quietly change what is tracked or scored) and a score past float32's range. MOT16's gt.txt
keeps rows with ``conf`` 0 and other classes: they are read, and the evaluation ignores them as TrackEval
does. What can be repaired is repaired with ONE
warning per kind of repair on the ``edgecv.tracking.mot`` logger, never silently: rows with NaN or infinite
values or a width or height <= 0 are dropped, identical repeated rows are kept once, and rows out of frame
order are sorted (ground truth and tracker output may also come grouped by id, as MOT16's gt.txt does:
that order is normal and only logged at INFO).

``seqinfo.ini`` beside the file or one folder up (MOTChallenge's ``SEQ/seqinfo.ini`` next to ``SEQ/gt/``)
gives the frame rate, image size and sequence length, when it is there.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "gt.txt"
    >>> _ = p.write_text("1,1,10,20,30,40,1,-1,-1,-1\\n2,1,12,20,30,40,1,-1,-1,-1\\n")
    >>> gt = read_mot(p, kind="gt")
    >>> gt.num_frames, gt.frames[2].xyxy.tolist(), gt.frames[2].tracker_id.tolist()
    (2, [[12.0, 20.0, 42.0, 60.0]], [1])
"""

from __future__ import annotations

import configparser
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from edgecv.detection.boxes import MAX_COORD
from edgecv.detection.detections import Detections
from edgecv.errors import InputError, OutputError

log = logging.getLogger(__name__)

KINDS = ("det", "gt", "tracks")
COLUMNS = 10  # frame, id, x, y, w, h, conf, and three more; shorter rows are padded with -1
MIN_COLUMNS = 7  # frame, id, x, y, w, h, conf
LAYOUT = "frame,id,x,y,w,h,conf[,class/x,visibility/y,z]"
MAX_FRAME = 1_000_000  # 11 hours at 25 fps; TrackEval keeps per-frame arrays for every frame up to the last
MOT_CLASSES = range(1, 14)  # TrackEval's MotChallenge2DBox class ids: 1 pedestrian ... 13 crowd
MAX_ID = 2**53  # ids are read as float64, which holds every whole number up to here and no further
FLOAT32_MAX = float(np.finfo(np.float32).max)  # scores become Detections' float32
# The box's corners, each within MAX_COORD as at the trackers' input: (name, column, column added or None).
_EDGES = (("x", 2, None), ("y", 3, None), ("x+w", 2, 4), ("y+h", 3, 5))

#: What columns 8..10 of a ground-truth file hold, by layout (see :func:`gt_layout`).
GT_LAYOUTS = {
    "2d": "-1 (MOT15, 2D)",
    "world": "world coordinates x,y,z (MOT15, 3D)",
    "classes": "class 1..13 and visibility (MOT16/17/20)",
}


@dataclass(frozen=True, eq=False)
class MotSequence:
    """One sequence of a MOTChallenge file.

    ``rows`` is the whole file as float64 ``[M, 10]`` (shorter rows padded with -1), cleaned and sorted by
    frame, with the values exactly as written in the file: :func:`write_mot` writes them back unchanged, so
    an evaluation of a sequence read here equals TrackEval's on the file itself. ``frames`` gives the same
    rows as :class:`Detections` per frame, for every frame 1..``num_frames`` (empty ones too).

    ``num_frames`` is ``seq_length`` (from seqinfo.ini) when known, else the last frame in the rows.
    ``columns`` is how many values a row of the file had (7..10), None when not read from a file.
    """

    rows: np.ndarray
    kind: str = "tracks"
    name: str = ""
    source: str = "<memory>"
    seq_length: int | None = None
    fps: float | None = None
    image_size: tuple[int, int] | None = None  # (width, height)
    columns: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"MotSequence kind: expected one of {', '.join(KINDS)}, got {self.kind!r}")
        rows = np.array(self.rows, dtype=np.float64)  # a copy: it is made read-only below
        if rows.size == 0:
            rows = rows.reshape(0, COLUMNS)
        if rows.ndim != 2 or rows.shape[1] != COLUMNS:
            raise InputError(f"MotSequence rows: expected shape [M,{COLUMNS}], got {list(rows.shape)}")
        problem = _row_problem(rows, self.kind)
        if problem:
            raise InputError(
                f"MotSequence rows: {problem} (read_mot and MotSequence.from_frames check and repair rows)"
            )
        if self.seq_length is not None and len(rows) and rows[-1, 0] > self.seq_length:
            raise InputError(
                f"{self.source}: frame {int(rows[-1, 0])} is past the sequence's last frame {self.seq_length} "
                "(seqinfo.ini seqLength)"
            )
        rows.setflags(write=False)
        object.__setattr__(self, "rows", rows)

    @property
    def num_frames(self) -> int:
        if self.seq_length is not None:
            return self.seq_length
        return int(self.rows[-1, 0]) if len(self.rows) else 0

    @property
    def num_boxes(self) -> int:
        return len(self.rows)

    @property
    def ids(self) -> np.ndarray:
        """The distinct ids (track or ground-truth ids), sorted; empty for detections."""
        return np.zeros(0, np.int64) if self.kind == "det" else np.unique(self.rows[:, 1]).astype(np.int64)

    @cached_property
    def frames(self) -> Mapping[int, Detections]:
        """Frame number -> :class:`Detections` for every frame 1..num_frames, made when looked up.

        ``confidence`` is column 7 (the score, or ground truth's consider flag), ``class_id`` column 8 as an
        integer where it holds classes (MOT16+ ground truth), else -1 (world coordinates are not classes),
        ``tracker_id`` column 2 (None for detections).
        """
        return _Frames(self)

    def __repr__(self) -> str:
        return f"MotSequence({self.kind}, {self.name or self.source}, frames={self.num_frames}, boxes={self.num_boxes})"

    @classmethod
    def from_frames(
        cls,
        frames: Mapping[int, Detections] | Iterable[tuple[int, Detections]],
        *,
        kind: str = "tracks",
        name: str = "",
        seq_length: int | None = None,
        fps: float | None = None,
        image_size: tuple[int, int] | None = None,
        source: str = "<tracker output>",
    ) -> MotSequence:
        """A sequence from frame number -> :class:`Detections` (``tracker_id`` needed unless ``kind="det"``).

        Boxes are rounded to 1/1000 pixel and scores to 6 decimals, the precision :func:`write_mot` writes,
        so evaluating the result equals evaluating its written file. Invalid rows are dropped or refused as in
        :func:`read_mot`.

        Example:
            >>> d = Detections(np.array([[0, 0, 10, 20]]), [0.9], [0], tracker_id=[7])
            >>> MotSequence.from_frames({1: d}).rows[0, :7].tolist()
            [1.0, 7.0, 0.0, 0.0, 10.0, 20.0, 0.9]
        """
        _check_kind(kind)
        items = frames.items() if isinstance(frames, Mapping) else frames
        parts = [mot_rows(frame, det, kind=kind, source=source) for frame, det in items]
        rows = np.concatenate(parts) if parts else np.zeros((0, COLUMNS))
        lines = np.zeros(len(rows), np.int64)  # no file lines to name
        rows = _clean(rows, lines, kind=kind, source=source)
        return cls(rows, kind=kind, name=name, source=source, seq_length=seq_length, fps=fps, image_size=image_size)


def mot_rows(frame: int, detections: Detections, *, kind: str = "tracks", source: str = "") -> np.ndarray:
    """The MOTChallenge rows (float64 ``[N, 10]``) of one frame's detections, with the 1-based ``frame``
    number: ``frame,id,x,y,w,h,conf,-1,-1,-1`` (``id`` -1 for ``kind="det"``, the class in column 8 for
    ``kind="gt"``). Boxes are rounded to 1/1000 pixel and scores to 6 decimals: :func:`format_rows` writes
    these values exactly and :func:`read_mot` reads them back bit for bit. The rows are not checked
    (:meth:`MotSequence.from_frames` checks them; a streaming writer writes them as they come).

    Example:
        >>> d = Detections(np.array([[2, 3, 12, 8]]), [1.0], [0], tracker_id=[7])
        >>> format_rows(mot_rows(5, d))
        '5,7,2,3,10,5,1,-1,-1,-1\\n'
    """
    where = f"{source}: frame {frame}" if source else f"frame {frame}"
    if not isinstance(detections, Detections):
        raise InputError(f"{where}: expected Detections, got {type(detections).__name__}")
    if not len(detections):
        return np.zeros((0, COLUMNS))
    if kind != "det" and detections.tracker_id is None:
        raise InputError(f"{where}: expected Detections with tracker_id for {kind}")
    xyxy = detections.xyxy.astype(np.float64)
    rows = np.full((len(detections), COLUMNS), -1.0)
    rows[:, 0] = frame
    if kind != "det":
        rows[:, 1] = detections.tracker_id
    rows[:, 2:4] = xyxy[:, :2].round(3)
    rows[:, 4:6] = (xyxy[:, 2:] - xyxy[:, :2]).round(3)
    rows[:, 6] = detections.confidence.astype(np.float64).round(6)
    if kind == "gt":
        rows[:, 7] = detections.class_id
    return rows


def _row_problem(rows: np.ndarray, kind: str) -> str:
    """What is wrong with rows meant to be clean, or ''."""
    if not len(rows):
        return ""
    frames, ids = rows[:, 0], rows[:, 1]
    checks = [
        (~np.isfinite(rows).all(axis=1), "expected finite values"),
        ((rows[:, 4] <= 0) | (rows[:, 5] <= 0), "expected width and height > 0"),
        ((frames != np.round(frames)) | (frames < 1) | (frames > MAX_FRAME), f"expected whole frames 1..{MAX_FRAME}"),
    ]
    with np.errstate(over="ignore", invalid="ignore"):
        checks += [(np.abs(_edge(rows, a, b)) > MAX_COORD, f"expected {name} within +-{MAX_COORD:g} pixels")
                   for name, a, b in _EDGES]
        checks.append((np.abs(rows[:, 6]) > FLOAT32_MAX, "expected a score within float32"))
    if kind != "det":
        checks.append(((ids != np.round(ids)) | (ids < 0), "expected whole ids >= 0"))
        checks.append((ids > MAX_ID, "expected ids up to 2**53"))
    for bad, what in checks:
        if bad.any():
            return f"{what}, got {rows[np.argmax(bad)].tolist()}"
    if (np.diff(frames) < 0).any():
        return "expected rows sorted by frame"
    return ""


def _edge(rows: np.ndarray, a: int, b: int | None) -> np.ndarray:
    """Column ``a`` of ``rows``, plus column ``b`` when given (x+w, y+h: the box's far corner)."""
    return rows[:, a] if b is None else rows[:, a] + rows[:, b]


def _class_column(column: np.ndarray) -> np.ndarray:
    """Column 8 as class ids where every value is a whole number from -1 to 2**53, else -1 everywhere: a det
    or tracker file may hold anything there (MOT15 writes -1, others world coordinates), and converting a
    fraction or 1e20 to int64 would truncate or wrap it."""
    whole = np.isfinite(column).all() and (column == np.round(column)).all()
    if whole and ((column >= -1) & (column <= MAX_ID)).all():
        return column.astype(np.int64)
    return np.full(len(column), -1, np.int64)


class _Frames(Mapping):
    """The read-only frame number -> Detections view of a MotSequence."""

    def __init__(self, seq: MotSequence) -> None:
        r = seq.rows
        self._n = seq.num_frames
        self._frame = r[:, 0]
        self._xyxy = np.stack([r[:, 2], r[:, 3], r[:, 2] + r[:, 4], r[:, 3] + r[:, 5]], axis=1)
        self._conf = r[:, 6]
        has_classes = seq.kind != "gt" or _layout(r, seq.columns)[0] in ("classes", None)
        self._cls = _class_column(r[:, 7]) if has_classes else np.full(len(r), -1, np.int64)
        self._ids = None if seq.kind == "det" else r[:, 1].astype(np.int64)

    def __getitem__(self, frame: int) -> Detections:
        if not isinstance(frame, (int, np.integer)) or not 1 <= frame <= self._n:
            raise KeyError(frame)
        s = slice(*np.searchsorted(self._frame, [frame, frame + 1]))
        ids = None if self._ids is None else self._ids[s]
        return Detections(xyxy=self._xyxy[s], confidence=self._conf[s], class_id=self._cls[s], tracker_id=ids)

    def __iter__(self):
        return iter(range(1, self._n + 1))

    def __len__(self) -> int:
        return self._n


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InputError(f"MOT file kind: expected one of {', '.join(KINDS)}, got {kind!r}")


def read_mot(path: str | Path, *, kind: str = "det", seqinfo: str | Path | bool = True) -> MotSequence:
    """Read a MOTChallenge ``det.txt``, ``gt.txt`` or tracker output file; see the module docstring.

    ``seqinfo``: True looks for ``seqinfo.ini`` beside the file and one folder up, a path names one, False
    reads none.
    """
    _check_kind(kind)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"MOT {kind} file not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"expected a MOT {kind} .txt file, got a folder: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read MOT {kind} file {path}: {exc}") from None
    rows, lines, columns = _parse(text, str(path))
    if not len(rows):
        log.warning("%s has no rows: an empty %s file", path, kind)
    rows = _clean(rows, lines, kind=kind, source=str(path))
    info = _seqinfo(path, seqinfo)
    name = info.get("name") or (path.parent.parent.name if path.parent.name in ("gt", "det") else path.parent.name)
    return MotSequence(
        rows,
        kind=kind,
        name=name,
        source=str(path),
        seq_length=info.get("seq_length"),
        fps=info.get("fps"),
        image_size=info.get("image_size"),
        columns=columns,
    )


def _parse(text: str, source: str) -> tuple[np.ndarray, np.ndarray, int | None]:
    """All rows as float64 ``[M, 10]``, their 1-based line numbers ``[M]`` and the values per row."""
    numbered = [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    if not numbered:
        return np.zeros((0, COLUMNS)), np.zeros(0, np.int64), None
    lines = np.array([n for n, _ in numbered], np.int64)
    body = [ln for _, ln in numbered]
    comma = "," in body[0]
    if comma:
        body = [ln[:-1] if ln.endswith(",") else ln for ln in body]  # one trailing comma is allowed
        widths = np.array([ln.count(",") + 1 for ln in body])
    else:  # whitespace-separated
        widths = np.array([len(ln.split()) for ln in body])
    width = int(widths[0])
    if not MIN_COLUMNS <= width <= COLUMNS:
        raise InputError(
            f"{source}:{lines[0]}: expected {MIN_COLUMNS} to {COLUMNS} comma-separated values ({LAYOUT}), got {width}"
        )
    odd = np.flatnonzero(widths != width)
    if len(odd):
        i = odd[0]
        raise InputError(f"{source}:{lines[i]}: expected {width} values like the first row, got {widths[i]}")
    try:
        values = np.loadtxt(body, delimiter="," if comma else None, comments=None, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        for i, ln in enumerate(body):
            for token in ln.split(",") if comma else ln.split():
                if not _is_number(token):
                    raise InputError(f"{source}:{lines[i]}: expected numbers, got {token.strip()!r}") from None
        raise InputError(f"{source}: expected numbers ({exc})") from None
    rows = np.full((len(body), COLUMNS), -1.0)
    rows[:, :width] = values
    return rows, lines, width


def _is_number(token: str) -> bool:
    """What numpy's loadtxt reads: Python's float() syntax without digit-group underscores."""
    try:
        float(token)
    except ValueError:
        return False
    return "_" not in token


def _where(source: str, lines: np.ndarray, i: int) -> str:
    return f"{source}:{lines[i]}" if lines[i] > 0 else source


def _clean(rows: np.ndarray, lines: np.ndarray, *, kind: str, source: str) -> np.ndarray:
    """Check, drop, dedupe and sort; see the module docstring for what is refused and what is repaired."""
    if not len(rows):
        return rows.reshape(0, COLUMNS)
    finite = np.isfinite(rows).all(axis=1)
    bad = ~finite | ~(rows[:, 4] > 0) | ~(rows[:, 5] > 0)
    if bad.any():
        n_nan, n_size = int((~finite).sum()), int((bad & finite).sum())
        first = int(np.flatnonzero(bad)[0])
        log.warning(
            "%s: dropped %d of %d rows: %d with NaN or infinite values, %d with width or height <= 0 (first at %s)",
            source, n_nan + n_size, len(rows), n_nan, n_size, _where(source, lines, first),
        )
        rows, lines = rows[~bad], lines[~bad]
        if not len(rows):
            return rows
    frames = rows[:, 0]
    i = np.flatnonzero((frames != np.round(frames)) | (frames < 1) | (frames > MAX_FRAME))
    if len(i):
        got = rows[i[0], 0]
        raise InputError(
            f"{_where(source, lines, i[0])}: expected a 1-based whole frame number up to {MAX_FRAME}, got {got:g}"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        for name, a, b in _EDGES:
            i = np.flatnonzero(np.abs(_edge(rows, a, b)) > MAX_COORD)
            if len(i):
                got = f"{rows[i[0], a]:g}" if b is None else f"{rows[i[0], a]:g}+{rows[i[0], b]:g}"
                raise InputError(f"{_where(source, lines, i[0])}: expected {name} within +-{MAX_COORD:g} pixels "
                                 f"(edgecv.detection.boxes.MAX_COORD), got {name}={got}")
    i = np.flatnonzero(np.abs(rows[:, 6]) > FLOAT32_MAX)
    if len(i):
        raise InputError(f"{_where(source, lines, i[0])}: expected a score (conf, column 7) within float32's "
                         f"+-{FLOAT32_MAX:.3g}, got {rows[i[0], 6]:g}")
    if kind != "det":
        ids = rows[:, 1]
        i = np.flatnonzero((ids != np.round(ids)) | (ids < 0) | (ids > MAX_ID))
        if len(i):
            what = "a tracker output" if kind == "tracks" else "ground truth"
            hint = " (is this a det file?)" if ids[i[0]] == -1 else ""
            bound = " (at most 2**53)" if ids[i[0]] > MAX_ID else ""
            raise InputError(
                f"{_where(source, lines, i[0])}: expected a whole track id >= 0{bound} in {what}, "
                f"got {ids[i[0]]:g}{hint}"
            )
    # Identical repeated rows: keep the first.
    _, first_of, counts = np.unique(rows, axis=0, return_index=True, return_counts=True)
    if (counts > 1).any():
        keep = np.zeros(len(rows), bool)
        keep[first_of] = True
        dup = int(np.flatnonzero(~keep)[0])
        log.warning(
            "%s: %d repeated identical rows were kept once (first repeat at %s)",
            source, int((~keep).sum()), _where(source, lines, dup),
        )
        rows, lines = rows[keep], lines[keep]
    if kind != "det":
        pairs = rows[:, :2]
        _, inverse, counts = np.unique(pairs, axis=0, return_inverse=True, return_counts=True)
        repeated = counts[inverse.reshape(-1)] > 1
        if repeated.any():
            k = int(np.flatnonzero(repeated)[0])
            j = np.flatnonzero(inverse.reshape(-1) == inverse.reshape(-1)[k])[:2]
            f, t = int(rows[k, 0]), int(rows[k, 1])
            at = ", ".join(_where(source, lines, k) for k in j)
            raise InputError(f"{source}: id {t} appears twice in frame {f} ({at}); an id is one box per frame")
    # Sort by frame, keeping the file's order within a frame.
    frames = rows[:, 0]
    if (np.diff(frames) < 0).any():
        order = np.argsort(frames, kind="stable")
        grouped_by_id = kind != "det" and bool(np.all(np.diff(np.lexsort((frames, rows[:, 1]))) == 1))
        first = int(np.flatnonzero(np.diff(frames) < 0)[0]) + 1
        if grouped_by_id:
            log.info("%s: rows are grouped by id; sorted them by frame", source)
        else:
            log.warning(
                "%s: frames are out of order or repeated apart (first at %s, frame %d after %d); sorted them by frame",
                source, _where(source, lines, first), int(frames[first]), int(frames[first - 1]),
            )
        rows = rows[order]
    return rows


def _values(column: np.ndarray) -> str:
    """The first distinct values of a column, as written: ``[-19.1, 4.4852, ...]``."""
    distinct = np.unique(column)
    shown = ", ".join(f"{v:g}" for v in distinct[:5])
    return f"[{shown}{', ...' if len(distinct) > 5 else ''}]"


def _layout(rows: np.ndarray, columns: int | None) -> tuple[str | None, str]:
    """(layout or None when no layout fits, what columns 8..10 hold) of ground-truth rows; see gt_layout."""
    width = COLUMNS if columns is None else columns
    c8, c9, c10 = rows[:, 7], rows[:, 8], rows[:, 9]
    if width < 8 or (c8 == -1).all():
        return "2d", "-1 everywhere in column 8"
    whole = bool((c8 == np.round(c8)).all())
    visibility = width < 9 or bool((((c9 >= 0) & (c9 <= 1)) | (c9 == -1)).all())
    if whole and np.isin(c8, MOT_CLASSES).all() and visibility and (c10 == -1).all():
        return "classes", f"classes {_values(c8)} in column 8"
    if width == COLUMNS and (not whole or (c10 != -1).any()):
        return "world", f"world coordinates in columns 8-10 (column 8 {_values(c8)}, column 10 {_values(c10)})"
    return None, f"{_values(c8)} in column 8, {_values(c9)} in column 9" + (
        f", {_values(c10)} in column 10" if width == COLUMNS else ""
    )


def gt_layout(seq: MotSequence, *, strict: bool = True) -> str | None:
    """The layout of ground truth's columns 8..10, a key of :data:`GT_LAYOUTS`, decided from the values:

    - ``"2d"``: -1 everywhere in column 8 (or no column 8): MOT15's 2D sequences;
    - ``"classes"``: whole classes 1..13 in column 8, a visibility in [0, 1] (or -1) in column 9 and
      nothing (-1) in column 10: MOT16/17/20;
    - ``"world"``: a 10-column file with a fractional column 8 or a column 10 other than -1: MOT15's
      world coordinates (classes are whole, and MOT16+ files have 9 columns).

    When the values fit none of them: a one-line :class:`InputError`, or None with ``strict=False``.
    """
    if seq.kind != "gt":
        raise InputError(f"gt_layout: expected a gt sequence, got a {seq.kind} sequence ({seq.source})")
    layout, held = _layout(seq.rows, seq.columns) if len(seq.rows) else ("2d", "no rows")
    if layout is None and strict:
        raise InputError(
            f"{seq.source}: columns 8-10 fit no MOTChallenge ground-truth layout: {held}; expected -1 in column 8 "
            "(MOT15), classes 1..13 with a visibility in [0, 1] (MOT16/17/20) or world coordinates in a "
            "10-column file (MOT15 3D); MOT15 rules (benchmark MOT15) ignore these columns"
        )
    log.debug("%s: ground-truth layout %s: %s", seq.source, layout, held)
    return layout


def describe_layout(seq: MotSequence) -> str:
    """What columns 8..10 of ``seq`` hold, in words (for messages), whether or not a layout fits."""
    return _layout(seq.rows, seq.columns)[1] if len(seq.rows) else "no rows"


def _seqinfo(path: Path, seqinfo: str | Path | bool) -> dict:
    """name, fps, seq_length and image_size from a MOTChallenge seqinfo.ini, where there is one."""
    if seqinfo is False:
        return {}
    if seqinfo is True:
        found = [p for p in (path.parent / "seqinfo.ini", path.parent.parent / "seqinfo.ini") if p.is_file()]
        if not found:
            return {}
        ini = found[0]
    else:
        ini = Path(seqinfo)
        if not ini.is_file():
            raise InputError(f"seqinfo.ini not found: {ini}")
    parser = configparser.ConfigParser()
    try:
        parser.read(ini, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise InputError(f"{ini}: not a valid seqinfo.ini ({str(exc).splitlines()[0]})") from None
    if not parser.has_section("Sequence"):
        raise InputError(f"{ini}: expected a [Sequence] section")
    sec = parser["Sequence"]
    out: dict = {"name": sec.get("name", "").strip()}

    def number(key: str, cast):
        if key not in sec:
            return None
        try:
            value = cast(sec[key])
        except ValueError:
            raise InputError(f"{ini}: expected a number for {key}, got {sec[key]!r}") from None
        if not value > 0 or not np.isfinite(value):
            raise InputError(f"{ini}: expected {key} > 0, got {sec[key]!r}")
        return value

    out["fps"] = number("frameRate", float)
    out["seq_length"] = number("seqLength", int)
    w, h = number("imWidth", int), number("imHeight", int)
    out["image_size"] = (w, h) if w and h else None
    return out


def _fmt(v: float) -> str:
    return str(int(v)) if v.is_integer() else repr(v)


def format_rows(rows: np.ndarray) -> str:
    """Rows as MOTChallenge text, one line each: whole numbers without a decimal point, others in the shortest
    form that reads back as the same float64 (``repr``), so a file written here reads back exactly. The one
    row formatter of edgecv: :func:`write_mot`, the pipeline's ``mot`` sink and its ground truth use it.

    Example:
        >>> format_rows(np.array([[1, 3, 1234.567, 20, 29.75, 40, 0.912346, -1, -1, -1]]))
        '1,3,1234.567,20,29.75,40,0.912346,-1,-1,-1\\n'
    """
    return "".join(",".join(map(_fmt, r)) + "\n" for r in np.asarray(rows, np.float64).tolist())


def write_mot(
    path: str | Path, frames: MotSequence | Mapping[int, Detections] | Iterable[tuple[int, Detections]]
) -> Path:
    """Write tracker output as ``frame,id,x,y,w,h,conf,-1,-1,-1`` rows, sorted by frame.

    ``frames`` is a :class:`MotSequence` (written as it was read: a sequence read with :func:`read_mot`
    round-trips exactly) or frame number -> :class:`Detections` with ``tracker_id``.
    """
    seq = frames if isinstance(frames, MotSequence) else MotSequence.from_frames(frames, kind="tracks")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(format_rows(seq.rows), encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
