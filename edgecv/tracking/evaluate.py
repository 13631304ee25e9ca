"""Tracking metrics (HOTA, CLEAR MOT, IDF1) of tracker output against MOTChallenge ground truth, by TrackEval.

TrackEval, the official MOTChallenge evaluator, is the engine: this module writes the two sequences in
MOTChallenge's text format to a temporary folder, opens them with TrackEval's own ``MotChallenge2DBox``
dataset (its file reading, IoU similarity and preprocessing) and runs its ``HOTA``, ``CLEAR``,
``Identity`` and ``Count`` metrics on the one sequence, then combines them as its ``Evaluator`` does. The
numbers are TrackEval's on the same files; ``tests/edgecv/tracking/test_track_evaluate.py`` checks that
against TrackEval's full ``Evaluator`` pipeline.

What counts, as in TrackEval:

- A ground-truth row whose consider flag (column 7) truncates to 0 is left out. With MOT16/17/20 ground
  truth (class in column 8), only pedestrians (class 1) are scored, and tracker boxes that match a
  distractor (IoU >= 0.5: person on vehicle, static person, distractor, reflection; MOT20 also non-MOT
  vehicle) are removed first. MOT15 ground truth has no classes (-1 there, or world coordinates in
  columns 8-10): nothing but the flag applies. ``benchmark=None`` decides from the file
  (:func:`edgecv.tracking.mot.gt_layout`): MOT17 rules for classes 1..13, MOT15 rules for -1 or world
  coordinates; a given ``benchmark`` forces its rules (MOT15 rules read any file; MOT16/17/20 need classes).
- Boxes match by IoU: CLEAR and Identity at IoU >= 0.5, HOTA averaged over IoU 0.05..0.95.
- Fractions (``hota``, ``mota``, ``idf1`` ...) are in [0, 1] here; MOTChallenge tables show them x100.

TrackEval needs only numpy and scipy for this; it is installed by ``pip install 'edgecv[track]'``.

Example:
    >>> m = evaluate_tracking("TUD-Campus/gt.txt", "tracks.txt")           # doctest: +SKIP
    >>> round(100 * m.mota, 1), m.idsw                                     # doctest: +SKIP
    (62.7, 6)
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgecv.errors import ConfigError, InputError
from edgecv.tracking.mot import MOT_CLASSES, MotSequence, describe_layout, format_rows, gt_layout, read_mot

log = logging.getLogger(__name__)

METRICS = ("HOTA", "CLEAR", "Identity")
BENCHMARKS = ("MOT15", "MOT16", "MOT17", "MOT20")
# TrackEval's Identity metric builds dense (gt ids + tracker ids)^2 float64 matrices, HOTA 20-odd
# gt ids x tracker ids ones. Past this estimate we refuse with a clear error instead of running out of memory.
MAX_METRIC_BYTES = 4 << 30


@dataclass(frozen=True)
class TrackingMetrics:
    """TrackEval's numbers for one sequence; fractions in [0, 1], counts as ints; None if not computed.

    HOTA family (averaged over the 19 IoU thresholds 0.05..0.95, as TrackEval reports them): ``hota``,
    ``deta``, ``assa``, ``detre``, ``detpr``, ``assre``, ``asspr``, ``loca``. CLEAR MOT (IoU 0.5):
    ``mota``, ``motp``, ``recall``, ``precision``, ``tp``, ``fp``, ``fn``, ``idsw``, ``frag``, and mostly
    tracked / partly tracked / mostly lost ground-truth tracks ``mt``, ``pt``, ``ml``. Identity: ``idf1``,
    ``idp``, ``idr``. Counts after TrackEval's preprocessing: ``gt_ids``, ``gt_dets``, ``tracker_ids``,
    ``tracker_dets``, over ``frames`` frames. ``gt_layout``: what ground truth's columns 8..10 hold, a key
    of :data:`edgecv.tracking.mot.GT_LAYOUTS` ("ignored" when MOT15 rules were forced on a file no layout fits).
    """

    benchmark: str
    frames: int
    gt_ids: int
    gt_dets: int
    tracker_ids: int
    tracker_dets: int
    hota: float | None = None
    deta: float | None = None
    assa: float | None = None
    detre: float | None = None
    detpr: float | None = None
    assre: float | None = None
    asspr: float | None = None
    loca: float | None = None
    mota: float | None = None
    motp: float | None = None
    recall: float | None = None
    precision: float | None = None
    tp: int | None = None
    fp: int | None = None
    fn: int | None = None
    idsw: int | None = None
    frag: int | None = None
    mt: int | None = None
    pt: int | None = None
    ml: int | None = None
    idf1: float | None = None
    idp: float | None = None
    idr: float | None = None
    gt_layout: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return asdict(self)


def _as_sequence(value: MotSequence | str | Path, kind: str, what: str) -> MotSequence:
    if isinstance(value, MotSequence):
        if value.kind != kind:
            raise InputError(f"{what}: expected a {kind} sequence, got a {value.kind} sequence ({value.source})")
        return value
    if isinstance(value, (str, Path)):
        return read_mot(value, kind=kind)
    raise InputError(f"{what}: expected a MotSequence or a path, got {type(value).__name__}")


def _benchmark(gt: MotSequence, benchmark: str | None) -> tuple[str, str]:
    """(TrackEval benchmark rules, ground truth's layout) from ``benchmark`` or, when None, the file's evidence."""
    if benchmark is None:
        layout = gt_layout(gt)
        return ("MOT17" if layout == "classes" else "MOT15"), layout
    if not isinstance(benchmark, str) or benchmark.upper() not in BENCHMARKS:
        raise ConfigError(f"benchmark: expected one of {', '.join(BENCHMARKS)}, got {benchmark!r}")
    name = benchmark.upper()
    layout = gt_layout(gt, strict=False)
    if name == "MOT15":
        if layout == "classes":
            log.warning(
                "%s holds MOT16+ classes in column 8; MOT15 rules score every considered row as a pedestrian "
                "(cars and distractors too)", gt.source,
            )
        return name, layout or "ignored"
    # TrackEval's MOT16/17/20 rules need a class 1..13 in column 8 of every row, whatever columns 9-10 hold.
    classes = gt.rows[:, 7]
    if layout != "classes" and not np.isin(classes, MOT_CLASSES).all():
        raise InputError(
            f"{gt.source}: {name} ground truth needs classes 1..13 in column 8, got {describe_layout(gt)}; "
            "MOT15 rules (benchmark MOT15) ignore that column"
        )
    return name, "classes"


def _check_memory(gt: MotSequence, tracks: MotSequence, metrics: Sequence[str]) -> None:
    g, t = len(gt.ids), len(tracks.ids)
    need = 0
    if "Identity" in metrics:
        need = max(need, 4 * 8 * (g + t) ** 2)
    if "HOTA" in metrics:
        need = max(need, 24 * 8 * g * t)
    if need > MAX_METRIC_BYTES:
        raise InputError(
            f"{tracks.source}: {t} track ids against {g} ground-truth ids would need about {need / 2**30:.0f} GB "
            f"in TrackEval's {'Identity' if 'Identity' in metrics else 'HOTA'} metric; is every box its own track?"
        )


def import_trackeval() -> Any:
    """TrackEval with the modules :func:`evaluate_tracking` uses; without the ``track`` extra, a one-line
    :class:`~edgecv.errors.MissingDependencyError` (call it before a long run that ends in an evaluation).

    Example:
        >>> import_trackeval().metrics.HOTA  # doctest: +SKIP
        <class 'trackeval.metrics.hota.HOTA'>
    """
    from edgecv.deps import require

    # TrackEval prints to stdout when an optional piece of it (BURST, pycocotools) is missing: keep it out of
    # our output (--json) and in the debug log.
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        trackeval = require("trackeval", extra="track", purpose="compute HOTA, MOTA and IDF1")
        import trackeval.datasets  # noqa: F401
        import trackeval.metrics  # noqa: F401
        import trackeval.utils  # noqa: F401
    if out.getvalue().strip():
        log.debug("trackeval: %s", out.getvalue().strip())
    return trackeval


def evaluate_tracking(
    gt: MotSequence | str | Path,
    tracks: MotSequence | str | Path,
    *,
    metrics: Sequence[str] = METRICS,
    benchmark: str | None = None,
) -> TrackingMetrics:
    """Score ``tracks`` against ``gt`` with TrackEval's MOTChallenge 2D box evaluation (module docstring).

    ``gt`` and ``tracks`` are :class:`MotSequence` objects or MOTChallenge text files. The sequence length is
    ground truth's seqinfo.ini ``seqLength`` when known, else the last frame of either file.
    """
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        got = ", ".join(map(str, metrics)) or "none"
        raise ConfigError(f"metrics: expected some of {', '.join(METRICS)}, got {got}")
    gt = _as_sequence(gt, "gt", "ground truth")
    tracks = _as_sequence(tracks, "tracks", "tracker output")
    if not gt.num_boxes:
        raise InputError(f"{gt.source}: the ground truth has no boxes to evaluate against")
    name, layout = _benchmark(gt, benchmark)
    if gt.seq_length is not None:
        frames = gt.seq_length
        if tracks.num_boxes and tracks.rows[-1, 0] > frames:
            raise InputError(
                f"{tracks.source}: frame {int(tracks.rows[-1, 0])} is past the sequence's last frame {frames} "
                f"(seqinfo.ini of {gt.source})"
            )
    else:
        frames = max(gt.num_frames, int(tracks.rows[-1, 0]) if tracks.num_boxes else 0)
    if tracks.num_boxes and tracks.rows[:, 7].max() > 1:
        i = int(np.argmax(tracks.rows[:, 7] > 1))
        raise InputError(
            f"{tracks.source}: frame {int(tracks.rows[i, 0])} has class {int(tracks.rows[i, 7])} in column 8: "
            "MOTChallenge scores pedestrians only (-1 or 1 there)"
        )
    _check_memory(gt, tracks, metrics)

    trackeval = import_trackeval()
    with tempfile.TemporaryDirectory(prefix="edgecv-track-eval-") as tmp:
        result = _run(trackeval, Path(tmp), gt, tracks, frames, name, metrics)
    return replace(result, gt_layout=layout)


def _run(
    trackeval, root: Path, gt: MotSequence, tracks: MotSequence, frames: int, benchmark: str, metrics: tuple[str, ...]
) -> TrackingMetrics:
    seq, tracker = "seq", "edgecv"
    gt_file = root / "gt" / seq / "gt" / "gt.txt"
    tracker_file = root / "trackers" / tracker / "data" / f"{seq}.txt"
    for path, s in ((gt_file, gt), (tracker_file, tracks)):
        path.parent.mkdir(parents=True)
        path.write_text(format_rows(_ranked_ids(s.rows)), encoding="utf-8")
    config = {
        "GT_FOLDER": str(root / "gt"),
        "TRACKERS_FOLDER": str(root / "trackers"),
        "OUTPUT_FOLDER": str(root / "out"),
        "TRACKERS_TO_EVAL": [tracker],
        "CLASSES_TO_EVAL": ["pedestrian"],
        "BENCHMARK": benchmark,
        "SPLIT_TO_EVAL": "train",
        "SEQ_INFO": {seq: frames},
        "SKIP_SPLIT_FOL": True,
        "DO_PREPROC": True,
        "PRINT_CONFIG": False,
    }
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            dataset = trackeval.datasets.MotChallenge2DBox(config)
            chosen = {
                "HOTA": lambda: trackeval.metrics.HOTA({"PRINT_CONFIG": False}),
                "CLEAR": lambda: trackeval.metrics.CLEAR({"THRESHOLD": 0.5, "PRINT_CONFIG": False}),
                "Identity": lambda: trackeval.metrics.Identity({"THRESHOLD": 0.5, "PRINT_CONFIG": False}),
            }
            metric_objs = {m: chosen[m]() for m in metrics}
            metric_objs["Count"] = trackeval.metrics.Count({"PRINT_CONFIG": False})
            # What trackeval.eval.eval_sequence and Evaluator.evaluate do for one sequence and one class.
            raw = dataset.get_raw_seq_data(tracker, seq)
            data = dataset.get_preprocessed_seq_data(raw, "pedestrian")
            res = {m: obj.combine_sequences({seq: obj.eval_sequence(data)}) for m, obj in metric_objs.items()}
    except trackeval.utils.TrackEvalException as exc:
        raise InputError(f"TrackEval: {str(exc).strip().splitlines()[0]}") from None
    finally:
        if out.getvalue().strip():
            log.debug("trackeval: %s", out.getvalue().strip())
    return _metrics(res, benchmark, frames)


def _ranked_ids(rows: np.ndarray) -> np.ndarray:
    """Ids replaced by their rank (1, 2, ...). TrackEval relabels ids to their rank among the ids it keeps
    anyway, so every number stays the same; but it does so with an array as long as the largest id, which a
    tracker numbering its tracks from 10**12 would turn into a crash."""
    rows = rows.copy()
    rows[:, 1] = np.unique(rows[:, 1], return_inverse=True)[1].reshape(-1) + 1
    return rows


def _metrics(res: dict, benchmark: str, frames: int) -> TrackingMetrics:
    def mean(d: dict, key: str) -> float:
        return float(np.mean(d[key]))

    count = res["Count"]
    values: dict[str, Any] = dict(
        benchmark=benchmark,
        frames=frames,
        gt_ids=int(count["GT_IDs"]),
        gt_dets=int(count["GT_Dets"]),
        tracker_ids=int(count["IDs"]),
        tracker_dets=int(count["Dets"]),
    )
    if "HOTA" in res:
        h = res["HOTA"]
        for key, field in (("hota", "HOTA"), ("deta", "DetA"), ("assa", "AssA"), ("detre", "DetRe"),
                           ("detpr", "DetPr"), ("assre", "AssRe"), ("asspr", "AssPr"), ("loca", "LocA")):
            values[key] = mean(h, field)
    if "CLEAR" in res:
        c = res["CLEAR"]
        for key, field in (("mota", "MOTA"), ("motp", "MOTP"), ("recall", "CLR_Re"), ("precision", "CLR_Pr")):
            values[key] = float(c[field])
        for key, field in (("tp", "CLR_TP"), ("fp", "CLR_FP"), ("fn", "CLR_FN"), ("idsw", "IDSW"),
                           ("frag", "Frag"), ("mt", "MT"), ("pt", "PT"), ("ml", "ML")):
            values[key] = int(c[field])
    if "Identity" in res:
        i = res["Identity"]
        for key, field in (("idf1", "IDF1"), ("idp", "IDP"), ("idr", "IDR")):
            values[key] = float(i[field])
    return TrackingMetrics(**values)
