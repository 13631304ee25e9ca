"""The one detection type: boxes, scores, classes, optional track ids and per-detection extras.

Example:
    >>> import numpy as np
    >>> det = Detections(xyxy=np.array([[0, 0, 10, 10], [5, 5, 20, 20]]), confidence=[0.9, 0.4], class_id=[1, 2])
    >>> len(det), det[det.confidence > 0.5].class_id.tolist()
    (2, [1])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from edgecv.detection.boxes import xywh_to_xyxy, xyxy_to_xywh
from edgecv.errors import InputError


#: The largest id a class or track id may have: int64's maximum (a larger one would wrap negative).
MAX_ID = int(np.iinfo(np.int64).max)
#: The smallest class id: -1 marks "no class" (MOTChallenge files, trackers given rows without a class).
MIN_CLASS_ID = -1
#: The smallest track id (MOTChallenge ground truth may number from 0; trackers start at 1).
MIN_TRACK_ID = 0
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _lengths(value: Any) -> str:
    """The lengths of the first items of a nested sequence, for the message about a ragged one."""
    try:
        return ", ".join(str(len(v)) if hasattr(v, "__len__") else "a scalar" for v in list(value)[:6])
    except TypeError:
        return "?"


def _array(name: str, value: Any, want: str) -> np.ndarray:
    """``np.asarray(value)``, a ragged nested sequence being a one-line InputError rather than numpy's."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError):
        got = f"a ragged sequence (items of lengths {_lengths(value)})"
        raise InputError(f"{name}: expected shape {want}, got {got}") from None


def _at(shape: tuple[int, ...], flat: int) -> str:
    """``index 3`` or ``index [3, 2]``: where the ``flat``-th value of an array of ``shape`` is."""
    if len(shape) == 1:
        return f"index {flat}"
    return f"index {[int(k) for k in np.unravel_index(flat, shape)]}"


def _real(name: str, value: Any, dtype: type, shape_tail: tuple[int, ...]) -> np.ndarray:
    want = _shape(("N",) + shape_tail)  # type: ignore[arg-type]
    a = _array(f"Detections.{name}", value, want)
    if a.size == 0 and a.ndim <= 1 + len(shape_tail):
        a = a.reshape((0,) + shape_tail)  # [] and np.zeros(0) are both fine for an empty set
    if a.dtype.kind not in "iuf":
        raise InputError(f"Detections.{name}: expected a real-number array, got dtype {a.dtype}")
    if a.ndim != 1 + len(shape_tail) or a.shape[1:] != shape_tail:
        raise InputError(f"Detections.{name}: expected shape {want}, got {_shape(a.shape)}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = a.astype(dtype, copy=False)
    # Checked after the conversion: 1e39 is finite in float64 and inf in float32.
    finite = np.isfinite(out)
    if not finite.all():
        i = int(np.flatnonzero(~finite.ravel())[0])
        got = a.ravel()[i].item()
        raise InputError(f"Detections.{name}: expected finite values in {np.dtype(dtype).name} (|v| <= "
                         f"{_FLOAT32_MAX:.3g}), got {got!r} at {_at(a.shape, i)}")
    return out


def check_ids(values: Any, *, what: str, low: int = MIN_CLASS_ID) -> np.ndarray:
    """``values`` ``[N]`` (integers, or floats holding whole numbers) as int64 ids, checked BEFORE the conversion,
    so nothing wraps: a fraction, NaN, inf, a value below ``low`` or past int64 (``2**64 - 1`` as uint64,
    ``1e20``) is a one-line InputError naming ``what``, the first bad index and its value. The one check of
    every conversion to class or track ids (Detections, tracker input, decoders, file readers).

    Example:
        >>> check_ids(np.array([3.0, -1.0]), what="classes").tolist()
        [3, -1]
        >>> check_ids(np.array([1e20]), what="classes")
        Traceback (most recent call last):
        ...
        edgecv.errors.InputError: classes: expected whole numbers from -1 to 2**63-1, got 1e+20 at index 0
    """
    a = _array(what, values, "[N]")
    if a.dtype.kind == "u":
        bad = (a > MAX_ID) | (a < low)
    elif a.dtype.kind == "i":
        bad = a < low
    elif a.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(a) | (a != np.floor(a)) | (a < low) | (a >= 2.0**63)
    else:
        raise InputError(f"{what}: expected an integer array, got dtype {a.dtype}")
    if bad.any():
        i = int(np.flatnonzero(bad.ravel())[0])
        raise InputError(f"{what}: expected whole numbers from {low} to 2**63-1, got {a.ravel()[i].item()!r} "
                         f"at {_at(a.shape, i)}")
    return a.astype(np.int64, copy=False)


def _integer(name: str, value: Any, n: int, low: int) -> np.ndarray:
    a = _array(f"Detections.{name}", value, f"[{n}]")
    if a.size == 0 and a.ndim <= 1:
        a = a.reshape(0).astype(np.int64)
    if a.dtype.kind not in "iu":
        raise InputError(f"Detections.{name}: expected an integer array, got dtype {a.dtype}")
    if a.shape != (n,):
        raise InputError(f"Detections.{name}: expected shape [{n}], got {_shape(a.shape)}")
    return check_ids(a, what=f"Detections.{name}", low=low)


@dataclass(frozen=True, eq=False)
class Detections:
    """Detections in one image, in pixels.

    ``xyxy`` float32 ``[N, 4]``, ``confidence`` float32 ``[N]``, ``class_id`` int64 ``[N]``, ``tracker_id``
    int64 ``[N]`` or None, and ``data``: extra per-detection arrays whose first dimension is N (for example
    ``keypoints [N, K, 2]``). Arrays are checked and converted on construction; nothing in edgecv changes
    them afterwards: every operation returns a new object.

    What construction accepts (anything else is a one-line :class:`~edgecv.errors.InputError` naming the
    field, and for a value the first bad index and the value as given):

    - ``xyxy`` and ``confidence``: real numbers (int or float arrays, or nested lists of one shape; a ragged
      list is refused with the shape expected), finite AFTER conversion to float32: NaN, inf and values past
      float32's 3.4e38 (finite in float64, inf once stored) are refused. Boxes are not bounded further:
      decoders build Detections from every raw candidate of a model before thresholds, and a huge box there is
      the model's output, not an input error. The trackers and MOTChallenge readers bound coordinates to
      ``|v| <= 1e6`` pixels (:data:`edgecv.detection.boxes.MAX_COORD`).
    - Inverted boxes (x2 < x1 or y2 < y1) are kept as given: they have area 0 and IoU 0 with every box
      (:func:`~edgecv.detection.boxes.box_area`), so NMS, matching and mAP never pair them, and the trackers
      drop them with a warning, as they drop zero-size boxes.
    - ``confidence`` is on the detector's own scale and any finite value is kept, negative ones too: most
      decoders give probabilities in [0, 1] (``grid``, ``tflite_postprocess``, ``yolo`` and ``ssd_anchors``
      with ``sigmoid_score``), but ``ssd_anchors`` without ``sigmoid_score`` gives raw logits, YOLO heads
      exported without their sigmoid do too, and MOTChallenge detections score up to ~100. Where a scale is
      assumed, it is said: ByteTrack's and OC-SORT's thresholds are on ``score_range`` (default (0, 1)) and
      they warn once when scores fall outside it.
    - ``class_id`` and ``tracker_id``: integer arrays only (a float array is refused, whole or not: convert
      floats with :func:`check_ids`, which refuses fractions and values that would wrap); class ids from -1
      (no class) to 2**63-1, track ids from 0; a uint64 value past int64 is refused, never wrapped.
    - ``data`` arrays are kept as given (their dtype too) and not checked for finiteness: a keypoint may be
      NaN where a model gives none; embeddings are checked where they are used.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    tracker_id: np.ndarray | None = None
    data: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        xyxy = _real("xyxy", self.xyxy, np.float32, (4,))
        n = len(xyxy)
        confidence = _real("confidence", self.confidence, np.float32, ())
        if len(confidence) != n:
            raise InputError(f"Detections.confidence: expected shape [{n}] (one per box), got [{len(confidence)}]")
        class_id = _integer("class_id", self.class_id, n, MIN_CLASS_ID)
        tracker_id = None if self.tracker_id is None else _integer("tracker_id", self.tracker_id, n, MIN_TRACK_ID)
        if not isinstance(self.data, Mapping):
            raise InputError(f"Detections.data: expected a dict of arrays, got {type(self.data).__name__}")
        data = {}
        for key, value in self.data.items():
            if not isinstance(key, str):
                raise InputError(f"Detections.data: expected string keys, got {key!r}")
            a = _array(f"Detections.data[{key!r}]", value, f"[{n},...]")
            if a.ndim == 0 or len(a) != n:
                raise InputError(f"Detections.data[{key!r}]: expected first dimension {n}, got shape {_shape(a.shape)}")
            data[key] = a
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "confidence", confidence)
        object.__setattr__(self, "class_id", class_id)
        object.__setattr__(self, "tracker_id", tracker_id)
        object.__setattr__(self, "data", data)

    @classmethod
    def empty(cls) -> Detections:
        """No detections.

        Example:
            >>> len(Detections.empty())
            0
        """
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __repr__(self) -> str:
        extra = f", data={sorted(self.data)}" if self.data else ""
        tracked = ", tracked" if self.tracker_id is not None else ""
        return f"Detections(n={len(self)}{tracked}{extra})"

    def __getitem__(self, index: Any) -> Detections:
        """A new Detections from a boolean mask ``[N]``, an integer array, a slice or one integer."""
        n = len(self)
        if isinstance(index, slice):
            index = np.arange(n)[index]
        idx = np.asarray(index)
        if idx.ndim == 0:
            idx = idx.reshape(1)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise InputError(f"Detections mask: expected shape [{n}], got {_shape(idx.shape)}")
        elif idx.size == 0 and idx.ndim == 1:
            idx = idx.astype(np.int64)
        elif idx.dtype.kind in "iu" and idx.ndim == 1:
            if idx.max() >= n or idx.min() < -n:
                raise InputError(f"Detections index: expected indices in [-{n}, {n}), got {idx.min()}..{idx.max()}")
        else:
            got = f"{idx.dtype} {_shape(idx.shape)}"
            raise InputError(f"Detections index: expected a boolean mask, integer array or slice, got {got}")
        # Fancy indexing copies, so the result never shares memory with this object; rows of checked arrays
        # need no check again (it cost as much as the rest of a frame's NMS).
        return self._rows(idx)

    def _rows(self, idx: np.ndarray) -> Detections:
        """The rows ``idx`` (a boolean mask or integer array already checked against ``len(self)``)."""
        out = object.__new__(Detections)
        for name, value in (("xyxy", self.xyxy[idx]), ("confidence", self.confidence[idx]),
                            ("class_id", self.class_id[idx]),
                            ("tracker_id", None if self.tracker_id is None else self.tracker_id[idx]),
                            ("data", {k: v[idx] for k, v in self.data.items()})):
            object.__setattr__(out, name, value)
        return out

    def scaled(self, sx: float, sy: float) -> Detections:
        """These detections in an image resized by ``sx`` horizontally and ``sy`` vertically: boxes and
        keypoints (``data["keypoints"]``, x and y first) scaled, everything else as it is.

        Example:
            >>> d = Detections(np.array([[10, 20, 30, 40]]), [0.9], [1])
            >>> d.scaled(0.5, 0.25).xyxy.tolist()
            [[5.0, 5.0, 15.0, 10.0]]
        """
        data = dict(self.data)
        kps = data.get("keypoints")
        if kps is not None and kps.ndim == 3 and kps.shape[2] >= 2:
            kps = np.array(kps, np.float32)
            kps[..., 0] *= sx
            kps[..., 1] *= sy
            data["keypoints"] = kps
        return Detections(xyxy=self.xyxy * np.array([sx, sy, sx, sy], np.float32), confidence=self.confidence,
                          class_id=self.class_id, tracker_id=self.tracker_id, data=data)

    @staticmethod
    def merge(items: Iterable[Detections]) -> Detections:
        """Concatenate several Detections. Non-empty ones must agree on ``data`` keys and on tracking.

        Example:
            >>> one = Detections(np.array([[0, 0, 1, 1]]), [0.5], [0])
            >>> len(Detections.merge([one, Detections.empty(), one]))
            2
        """
        items = list(items)
        for d in items:
            if not isinstance(d, Detections):
                raise InputError(f"Detections.merge: expected Detections, got {type(d).__name__}")
        full = [d for d in items if len(d)]
        if not full:
            return items[0] if items else Detections.empty()
        keys = set(full[0].data)
        tracked = full[0].tracker_id is not None
        for d in full[1:]:
            if set(d.data) != keys:
                want, got = sorted(keys), sorted(d.data)
                raise InputError(f"Detections.merge: expected data keys {want} in every item, got {got}")
            if (d.tracker_id is not None) != tracked:
                raise InputError("Detections.merge: expected tracker_id in all items or in none, got a mix")
        return Detections(
            xyxy=np.concatenate([d.xyxy for d in full]),
            confidence=np.concatenate([d.confidence for d in full]),
            class_id=np.concatenate([d.class_id for d in full]),
            tracker_id=np.concatenate([d.tracker_id for d in full]) if tracked else None,
            data={k: np.concatenate([d.data[k] for d in full]) for k in keys},
        )

    def to_coco(self, *, image_id: int = 0) -> list[dict[str, Any]]:
        """COCO results: ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` per detection.

        ``data["keypoints"] [N, K, 2]`` is written as COCO's flat ``[x, y, v] * K`` with v = 2 (visible).

        Example:
            >>> Detections(np.array([[1, 2, 4, 6]]), [0.5], [3]).to_coco(image_id=7)
            [{'image_id': 7, 'category_id': 3, 'bbox': [1.0, 2.0, 3.0, 4.0], 'score': 0.5}]
        """
        bbox = xyxy_to_xywh(self.xyxy.astype(np.float64)).tolist()
        kps = self.data.get("keypoints")
        out = []
        for i in range(len(self)):
            item = {
                "image_id": image_id,
                "category_id": int(self.class_id[i]),
                "bbox": bbox[i],
                "score": float(self.confidence[i]),
            }
            if kps is not None and kps.ndim == 3 and kps.shape[2] == 2:
                flat = np.concatenate([kps[i].astype(np.float64), np.full((kps.shape[1], 1), 2.0)], axis=1)
                item["keypoints"] = flat.ravel().tolist()
            out.append(item)
        return out

    @classmethod
    def from_coco(cls, items: Sequence[Mapping[str, Any]], *, image_id: int | None = None) -> Detections:
        """Detections from COCO results or annotations (``score`` defaults to 1.0 for ground truth).

        With ``image_id``, only that image's entries are read.

        Example:
            >>> Detections.from_coco([{"bbox": [1, 2, 3, 4], "category_id": 3}]).xyxy.tolist()
            [[1.0, 2.0, 4.0, 6.0]]
        """
        rows = [r for r in items if image_id is None or r.get("image_id") == image_id]
        if not rows:
            return cls.empty()
        for i, r in enumerate(rows):
            if not isinstance(r, Mapping) or "bbox" not in r or "category_id" not in r:
                raise InputError(f"from_coco item {i}: expected a dict with 'bbox' and 'category_id', got {r!r:.80}")
            if not isinstance(r["bbox"], Sequence) or len(r["bbox"]) != 4:
                raise InputError(f"from_coco item {i}: expected bbox [x, y, w, h], got {r['bbox']!r:.80}")
            cid = r["category_id"]
            whole = isinstance(cid, (int, np.integer))
            whole = whole or (isinstance(cid, (float, np.floating)) and float(cid).is_integer())
            if isinstance(cid, bool) or not whole or not MIN_CLASS_ID <= cid <= MAX_ID:
                raise InputError(f"from_coco item {i}: expected an integer category_id from {MIN_CLASS_ID} to 2**63-1, "
                                 f"got {cid!r:.80}")
        data = {}
        if all("keypoints" in r for r in rows):
            kps = [np.asarray(r["keypoints"], np.float32).reshape(-1, 3)[:, :2] for r in rows]
            if len({k.shape for k in kps}) != 1:
                raise InputError("from_coco: expected the same number of keypoints in every item")
            data["keypoints"] = np.stack(kps)
        class_id = np.asarray([int(r["category_id"]) for r in rows], np.int64)  # each checked above
        try:
            xywh = np.asarray([r["bbox"] for r in rows], np.float64)
            score = np.asarray([r.get("score", 1.0) for r in rows], np.float64)
        except (TypeError, ValueError):
            raise InputError("from_coco: expected numbers in every bbox and score") from None
        return cls(xyxy=xywh_to_xyxy(xywh), confidence=score, class_id=class_id, data=data)
