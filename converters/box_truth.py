"""The true boxes of an eval set of images, from YOLO label files in Ultralytics' layout, for the detector gate.

Each image ``.../images/<rest>/name.jpg`` has its boxes in ``.../labels/<rest>/name.txt``, one object per line:
``class cx cy w h``, normalized to the image (a segment's polygon ``class x1 y1 x2 y2 ...`` counts as its bounding
box). An image without a label file holds no object, as in Ultralytics; a set where no image has one has no
truth, and so does a set whose label files hold no box. The boxes come back in the model input's pixels, for the
plain resize that :mod:`edgecv.converters.data` gives images.

Example:
    >>> truth, where = yolo_truth([Path("data/images/val/a.jpg")], input_size=(320, 320), classes=4)  # doctest: +SKIP
    >>> truth                                                                                       # doctest: +SKIP
    [Detections(n=2)]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecv.detection import Detections
from edgecv.detection.boxes import cxcywh_to_xyxy
from edgecv.errors import InputError

EDGE_SLACK = 0.01  # normalized coordinates this far outside [0, 1] are rounding, not a wrong file


def label_file(image: Path) -> Path | None:
    """Where Ultralytics keeps ``image``'s labels (its last ``images`` folder replaced by ``labels``), or None
    when the path has no ``images`` folder."""
    parts = image.parts
    if "images" not in parts[:-1]:
        return None
    k = len(parts) - 2 - parts[:-1][::-1].index("images")
    return Path(*parts[:k], "labels", *parts[k + 1 : -1], image.stem + ".txt")


def yolo_truth(images: list[Path], *, input_size: tuple[int, int], classes: int | None) -> tuple[list[Detections], str] | None:
    """Each image's true boxes in the model input's pixels (``input_size``: height, width), with a description of
    where they came from; None when no image has a label file, or none holds a box. ``classes``: how many the
    model has (ids are checked against it), or None."""
    files = [f if f is not None and f.is_file() else None for f in map(label_file, images)]
    found = [f for f in files if f is not None]
    if not found:
        return None
    h, w = input_size
    truth = []
    for f in files:
        rows = _read(f, classes) if f is not None else np.zeros((0, 5))
        boxes = cxcywh_to_xyxy(rows[:, 1:] * np.array([w, h, w, h])).astype(np.float32)
        truth.append(Detections(boxes, np.ones(len(rows), np.float32), rows[:, 0].astype(np.int64)))
    count = sum(len(d) for d in truth)
    if count == 0:  # images without objects: nothing to judge a detector's mAP on
        return None
    where = found[0].parent
    return truth, f"{count} boxes from {len(found)} label files in {where}/ (Ultralytics layout; {len(images) - len(found)} images without one hold no object)"


def _read(path: Path, classes: int | None) -> np.ndarray:
    """``class cx cy w h`` rows of one label file (a polygon row becomes its box)."""
    rows = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            raise InputError(f"{path} line {n}: expected 'class cx cy w h' numbers, got {line.strip()[:60]!r}") from None
        if len(values) < 5 or (len(values) > 5 and len(values) % 2 == 0):
            raise InputError(f"{path} line {n}: expected 'class cx cy w h' (or 'class x1 y1 x2 y2 ...'), got {len(values)} numbers")
        cls = values[0]
        if cls != int(cls) or cls < 0 or (classes is not None and cls >= classes):
            limit = f" (the model has {classes} classes)" if classes is not None else ""
            raise InputError(f"{path} line {n}: class {values[0]:g} is not a class id{limit}")
        coords = np.array(values[1:])
        if coords.min() < -EDGE_SLACK or coords.max() > 1 + EDGE_SLACK:
            raise InputError(f"{path} line {n}: coordinates must be normalized to the image (0 to 1), got {line.strip()[:60]!r}")
        if len(values) > 5:  # a segment: its bounding box
            xs, ys = coords[0::2], coords[1::2]
            coords = np.array([(xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2, xs.max() - xs.min(), ys.max() - ys.min()])
        rows.append([cls, *coords])
    return np.array(rows, np.float64).reshape(-1, 5)
