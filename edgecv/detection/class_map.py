"""Which prediction class is which ground-truth class: by id, by name, or by a class map file.

Predictions and ground truth often number classes differently: an SSD trained on COCO writes COCO's
91-id scheme (person = 1), YOLO labels count COCO's 80 classes from 0 (person = 0). Compared by id, every
prediction lands on another class and mAP is 0. :func:`match_classes` decides how prediction classes
become ground-truth classes:

1. with a class map, entry by entry; predicted classes it does not list go by name as below when both
   sides name their classes, else they are left out;
2. else, when both sides name their classes, by name. Names compare without case, and ``_``, ``-`` and
   runs of spaces count as one space ("dining_table" is "Dining table"). Predictions of a class whose name
   the ground truth does not have are left out (a class without ground truth has no AP anyway);
3. else by id, as they are.

A name that is just the class's own id ("3" for class 3, as ``edgecv detect`` writes without labels) is
no name. When no predicted class is among the ground truth's classes, :func:`match_classes` stops with
one line naming the classes of both sides: an evaluation there could only give 0.

A class map file (YAML or JSON; ``edgecv eval-det --help`` shows the same) maps prediction classes to
ground-truth classes, each side an id (a whole number, also as a string such as JSON's keys) or a name;
``null`` leaves that prediction class out::

    1: 0                    # prediction class 1 is ground-truth class 0
    motorbike: motorcycle   # by name, where the two spell it differently
    "???": null             # leave these predictions out

Example:
    >>> import numpy as np
    >>> gt = [Detections(np.array([[0, 0, 9, 9]]), [1.0], [0])]
    >>> pred = [Detections(np.array([[0, 0, 9, 9]]), [0.8], [1])]
    >>> m = match_classes(gt, pred, gt_names={0: "person"}, pred_names={0: "???", 1: "person"})
    >>> m.by, m.mapping, m.apply(pred)[0].class_id.tolist()
    ('names', {1: 0}, [0])
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgecv.detection.detections import Detections
from edgecv.errors import InputError
from edgecv.fileio import read_user_text

#: How one prediction class found its ground-truth class.
HOW = ("map", "name", "id")
_SEPARATORS = re.compile(r"[\s_\-]+")


def normalize_name(name: str) -> str:
    """The form names compare in: case-folded, ``_``/``-``/whitespace runs as one space, trimmed."""
    return _SEPARATORS.sub(" ", str(name).casefold()).strip()


def real_names(names: Mapping[int, str] | None) -> dict[int, str]:
    """``names`` without the entries that only repeat their id ("3" for class 3) or are blank."""
    out = {}
    for k, v in (names or {}).items():
        text = str(v).strip()
        if text and text != str(k):
            out[int(k)] = text
    return out


@dataclass(frozen=True)
class ClassMatch:
    """How prediction classes become ground-truth classes (see the module docstring).

    ``mapping``: prediction class id -> ground-truth class id, for every predicted class that is kept;
    ``how[pred_id]``: "map", "name" or "id"; ``left_out``: prediction class id -> number of predictions
    left out (no ground-truth counterpart, or ``null`` in the map); ``counts``: predictions per predicted
    class. ``by``: "map", "names" or "ids"; ``note`` says why ids were compared as they are.
    """

    by: str
    mapping: dict[int, int]
    how: dict[int, str]
    left_out: dict[int, int]
    counts: dict[int, int]
    pred_names: dict[int, str] = field(default_factory=dict)
    gt_names: dict[int, str] = field(default_factory=dict)
    map_file: str | None = None
    note: str = ""

    @property
    def renamed(self) -> dict[int, int]:
        """The entries of ``mapping`` whose id changes."""
        return {p: g for p, g in self.mapping.items() if p != g}

    def apply(self, predictions: Sequence[Detections]) -> list[Detections]:
        """The predictions with ground-truth class ids; those of left-out classes removed."""
        if self.by == "ids" and not self.left_out:
            return list(predictions)
        keys = np.array(sorted(self.mapping), np.int64)
        values = np.array([self.mapping[k] for k in keys.tolist()], np.int64)
        out = []
        for d in predictions:
            if len(d):
                d = d[np.isin(d.class_id, keys)]
                d = replace(d, class_id=values[np.searchsorted(keys, d.class_id)])
            out.append(d)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: ``by``, ``map_file``, ``note``, ``pairs`` and ``left_out`` (lists of dicts)."""
        return {
            "by": self.by,
            "map_file": self.map_file,
            "note": self.note or None,
            "pairs": [
                {"pred_id": p, "pred_name": self.pred_names.get(p), "gt_id": g, "gt_name": self.gt_names.get(g),
                 "how": self.how[p], "predictions": self.counts.get(p, 0)}
                for p, g in sorted(self.mapping.items())
            ],
            "left_out": [
                {"pred_id": p, "pred_name": self.pred_names.get(p), "predictions": n} for p, n in sorted(self.left_out.items())
            ],
        }


# --- the class map file -----------------------------------------------------------------------------------------


def _side(value: Any) -> int | str | None:
    """A class map key or value as an id (int), a name (str), or None (leave out); a bad value is returned as is."""
    if isinstance(value, bool):
        return value  # type: ignore[return-value]
    if isinstance(value, int) or value is None:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        return int(text) if re.fullmatch(r"-?\d+", text) else text
    return value  # type: ignore[return-value]


def read_class_map(path: str | Path) -> dict[int | str, int | str | None]:
    """A class map file (YAML or JSON; module docstring): prediction class -> ground-truth class or
    None, ids as ints and names as strings. A one-line :class:`InputError` for anything else."""
    import yaml

    path = Path(path)
    text = read_user_text(path, "class map")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"class map {path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"class map {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not data:
        got = "an empty mapping" if isinstance(data, dict) else type(data).__name__
        raise InputError(
            f"class map {path}: expected a mapping of prediction class -> ground-truth class (ids or names), got {got}"
        )
    out: dict[int | str, int | str | None] = {}
    for key, value in data.items():
        k, v = _side(key), _side(value)
        if isinstance(k, bool) or not isinstance(k, (int, str)) or not str(k):
            raise InputError(f"class map {path}: expected a prediction class id or name as key, got {json.dumps(key)}")
        if isinstance(v, bool) or not (v is None or isinstance(v, (int, str))) or v == "":
            raise InputError(
                f"class map {path}: entry {json.dumps(key)}: expected a ground-truth class id or name, or null, "
                f"got {json.dumps(value)}"
            )
        out[k] = v
    return out


# --- matching ---------------------------------------------------------------------------------------------------


def _shown(names: Mapping[int, str], limit: int = 8) -> str:
    items = [f"{n!r}" for n in dict.fromkeys(names.values())]
    return ", ".join(items[:limit]) + (f", ... ({len(items)} names)" if len(items) > limit else "")


def _classes(ids: Sequence[int], names: Mapping[int, str], limit: int = 6) -> str:
    items = [f"{c} {names[c]!r}" if c in names else str(c) for c in ids]
    return ", ".join(items[:limit]) + (f", ... ({len(items)} classes)" if len(items) > limit else "")


class _Names:
    """Name -> id lookup of one side, ambiguous names remembered."""

    def __init__(self, names: Mapping[int, str]) -> None:
        self.names = dict(names)
        ids: dict[str, list[int]] = {}
        for k, v in sorted(self.names.items()):
            ids.setdefault(normalize_name(v), []).append(k)
        self.ids = ids

    def lookup(self, name: str) -> list[int]:
        return self.ids.get(normalize_name(name), [])


def _resolve_map(
    entries: Mapping[int | str, int | str | None], pred: _Names, gt: _Names, where: str
) -> dict[int, int | None]:
    """Class map entries as prediction id -> ground-truth id (or None)."""
    out: dict[int, int | None] = {}
    for key, value in entries.items():
        if isinstance(key, str):
            if not pred.names:
                raise InputError(
                    f"{where}: prediction class {key!r} is a name, but the predictions name no classes: "
                    "use ids, or name them (--pred-labels)"
                )
            keys = pred.lookup(key)
            if not keys:
                raise InputError(f"{where}: {key!r} is not a prediction class name; the predictions name {_shown(pred.names)}")
        else:
            if pred.names and key not in pred.names:
                raise InputError(f"{where}: prediction class id {key} is not one of the predictions' classes ({_classes(sorted(pred.names), pred.names)})")
            keys = [key]
        if isinstance(value, str):
            if not gt.names:
                raise InputError(
                    f"{where}: ground-truth class {value!r} is a name, but the ground truth names no classes: "
                    "use ids, or name them (--labels)"
                )
            targets = gt.lookup(value)
            if not targets:
                raise InputError(f"{where}: {value!r} is not a ground-truth class name; the ground truth names {_shown(gt.names)}")
            if len(targets) > 1:
                raise InputError(f"{where}: the ground truth names {len(targets)} classes {value!r} (ids {targets}); map to an id")
            target: int | None = targets[0]
        else:
            if value is not None and gt.names and value not in gt.names:
                raise InputError(f"{where}: ground-truth class id {value} is not one of the ground truth's classes ({_classes(sorted(gt.names), gt.names)})")
            target = value
        for k in keys:
            if k in out and out[k] != target:
                raise InputError(f"{where}: prediction class {k} is mapped twice, to {out[k]} and to {target}")
            out[k] = target
    return out


def match_classes(
    ground_truth: Sequence[Detections],
    predictions: Sequence[Detections],
    *,
    gt_names: Mapping[int, str] | None = None,
    pred_names: Mapping[int, str] | None = None,
    class_map: str | Path | Mapping[int | str, int | str | None] | None = None,
) -> ClassMatch:
    """How the classes of ``predictions`` become those of ``ground_truth`` (module docstring).

    ``gt_names``/``pred_names`` map class id to name on each side; ``class_map`` is a class map file or
    its mapping (:func:`read_class_map`). Raises a one-line :class:`InputError` for a bad class map, a
    name that matches two ground-truth classes, or predictions that share no class with the ground truth.
    """
    gt_side, pred_side = _Names(real_names(gt_names)), _Names(real_names(pred_names))
    counts: dict[int, int] = {}
    for d in predictions:
        for c, n in zip(*np.unique(d.class_id, return_counts=True)):
            counts[int(c)] = counts.get(int(c), 0) + int(n)
    gt_present = sorted({int(c) for d in ground_truth for c in d.class_id.tolist()})
    named = bool(gt_side.names and pred_side.names)

    map_file, entries = None, None
    if isinstance(class_map, (str, Path)):
        map_file = str(class_map)
        entries = _resolve_map(read_class_map(class_map), pred_side, gt_side, f"class map {class_map}")
    elif class_map is not None:
        entries = _resolve_map({_side(k): _side(v) for k, v in class_map.items()}, pred_side, gt_side, "class map")

    mapping: dict[int, int] = {}
    how: dict[int, str] = {}
    left_out: dict[int, int] = {}
    for c in sorted(counts):
        if entries is not None and c in entries:
            target, way = entries[c], "map"
        elif named:
            ids = gt_side.lookup(pred_side.names[c]) if c in pred_side.names else []
            if len(ids) > 1 and c in ids:  # a name both sides repeat (a label map's "???"): the same id
                ids = [c]
            if len(ids) > 1:
                raise InputError(
                    f"the ground truth names {len(ids)} classes {pred_side.names[c]!r} (ids {ids}): matching by name "
                    "is ambiguous; give a class map (--class-map)"
                )
            target, way = (ids[0] if ids else None), "name"
        elif entries is not None:
            target, way = None, "map"
        else:
            target, way = c, "id"
        if target is None:
            left_out[c] = counts[c]
        else:
            mapping[c], how[c] = target, way

    by = "map" if entries is not None else "names" if named else "ids"
    note = ""
    if by == "ids":
        missing = [side for side, names in (("ground truth", gt_side.names), ("predictions", pred_side.names)) if not names]
        note = f"classes compared by id: the {' and the '.join(missing)} name no classes" if missing else ""
    match = ClassMatch(
        by=by, mapping=mapping, how=how, left_out=left_out, counts=counts, pred_names=pred_side.names,
        gt_names=gt_side.names, map_file=map_file, note=note,
    )
    if counts and gt_present and not set(mapping.values()) & set(gt_present):
        raise InputError(_no_shared_class(match, gt_present))
    return match


def _no_shared_class(m: ClassMatch, gt_present: list[int]) -> str:
    pred_present = sorted(m.counts)
    how = {"ids": "by id", "names": "by name", "map": "through the class map"}[m.by]
    extra = f" ({m.note})" if m.note else ""
    names = []
    if not m.gt_names:
        names.append("the ground truth's class names (--labels)")
    if not m.pred_names:
        names.append("the predictions' class names (--pred-labels)")
    also = f", or give {' and '.join(names)}" if names and m.by != "map" else ""
    return (
        f"predictions and ground truth share no class {how}{extra}: predictions have {_classes(pred_present, m.pred_names)}; "
        f"ground truth has {_classes(gt_present, m.gt_names)}; give a class map (--class-map FILE: prediction class -> "
        f"ground-truth class){also}"
    )
