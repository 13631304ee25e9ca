"""Read ground truth and predictions for evaluation: COCO JSON files and YOLO txt folders.

Ground truth becomes a :class:`DetectionSet` (one :class:`Detections` per image, in pixels, with the
image names, ids, sizes and class names); predictions are read *against* it, into a list in the same image
order, ready for :func:`edgecv.detection.evaluate.evaluate_detections` (:func:`load_prediction_set` also
keeps the class names the predictions carry, for :func:`edgecv.detection.class_map.match_classes`).

- COCO ground truth: ``{"images": [{"id", "file_name", "width", "height"}], "annotations": [{"image_id",
  "category_id", "bbox": [x, y, w, h], "iscrowd"}], "categories": [{"id", "name"}]}``. Crowd annotations
  are kept, flagged in ``data["iscrowd"]``.
- COCO predictions: a results list ``[{"image_id", "category_id", "bbox", "score"}]`` matched to the ground
  truth by ``image_id``, or a COCO dict whose annotations carry ``score`` (as ``edgecv detect`` writes it);
  with an ``images`` list it is matched by ``file_name`` (then by file stem), else by ``image_id``; its
  ``categories`` name the predicted classes.
- YOLO: a folder of ``<image stem>.txt`` files, one ``class cx cy w h`` line per box, normalized to the
  image size (predictions may add a 6th column, the confidence; 1.0 without). ``classes.txt`` in the
  folder names the classes, else the ``names`` of a ``data.yaml`` in the folder or up to two folders
  up (Ultralytics' ``dataset/labels/val/`` layout). Images come from an image folder (which also gives their sizes, and counts
  images without a label file as images without boxes) or, with one size for all, from the txt files.
  An image without a prediction file has no predictions. The image id of a YOLO image is its stem, as an
  integer when it is one (as Ultralytics writes COCO results).

Every problem in a file raises a one-line :class:`InputError` naming the file (and line or item). Numbers
are checked before they are stored: a box corner past +-1e6 pixels (:data:`edgecv.detection.boxes.MAX_COORD`),
a score past float32's range, or a class id that is not a whole number within int64 (``1.5``, ``1e20``) is
refused, never rounded, wrapped or made inf.

Example:
    >>> gt = load_ground_truth("instances_val.json")                                 # doctest: +SKIP
    >>> pred = load_predictions("results.json", gt)                                  # doctest: +SKIP
    >>> evaluate_detections(gt.detections, pred, labels=gt.categories).map            # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable, Sequence

import numpy as np

from edgecv.detection.boxes import MAX_COORD
from edgecv.detection.detections import MAX_ID, MIN_CLASS_ID, Detections
from edgecv.errors import ConfigError, InputError
from edgecv.labels import names_by_id, read_labels

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
CLASSES_FILE = "classes.txt"
DATA_YAML = "data.yaml"
_SIZES = "an image folder (--images DIR) or one image size (--image-size WxH)"
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True, eq=False)
class DetectionSet:
    """Ground truth of a set of images: ``detections[i]`` belongs to image ``files[i]``.

    ``image_ids[i]`` is the COCO id (or the YOLO stem), ``sizes[i]`` its ``(width, height)`` or None when
    unknown, ``categories`` maps class id to name (empty when the source names none) and
    ``categories_source`` says where the names came from. Predictions read by :func:`load_prediction_set`
    are a DetectionSet too, over the ground truth's images.
    """

    files: list[str]
    image_ids: list[Hashable]
    detections: list[Detections]
    sizes: list[tuple[int, int] | None]
    categories: dict[int, str] = field(default_factory=dict)
    source: str = ""
    categories_source: str = ""

    def __len__(self) -> int:
        return len(self.files)


# --- small checks shared by the readers ------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A finite real number, or None (bools, strings, NaN and inf are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _class_id(value: Any) -> int | None:
    """A whole number that fits int64 as an int (``3``, ``3.0``), else None (``1.5``, ``1e20``, ``2**64``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and -MAX_ID - 1 <= value <= MAX_ID:
        return value
    return None


def _box_problem(xyxy: Sequence[float]) -> str:
    """What is wrong with a box's size in pixels, or '': every corner within ``MAX_COORD``."""
    far = [v for v in xyxy if not abs(v) <= MAX_COORD]
    return f"expected box corners within +-{MAX_COORD:g} pixels, got {far[0]:g}" if far else ""


def _key(value: Any) -> Hashable | None:
    """An image id usable as a dict key (an int or a string), else None."""
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def _coco_box(item: Any, where: str, *, score: bool) -> tuple[list[float], int, float]:
    """(xyxy, class id, score) of one COCO annotation or result, or a one-line InputError."""
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected an object with 'bbox' and 'category_id', got {json.dumps(item)[:60]}")
    bbox = item.get("bbox")
    values = [_number(v) for v in bbox] if isinstance(bbox, list) else []
    if len(values) != 4 or None in values:
        raise InputError(f"{where}: expected 'bbox' [x, y, width, height] of 4 finite numbers, got {json.dumps(bbox)[:60]}")
    x, y, w, h = values  # type: ignore[misc]
    if w < 0 or h < 0:
        raise InputError(f"{where}: expected a bbox width and height >= 0, got {json.dumps(bbox)}")
    box = [x, y, x + w, y + h]
    problem = _box_problem(box)
    if problem:
        raise InputError(f"{where}: {problem} (bbox {json.dumps(bbox)[:60]})")
    cls = _class_id(item.get("category_id"))
    if cls is None or cls < MIN_CLASS_ID:
        raise InputError(f"{where}: expected an integer 'category_id', got {json.dumps(item.get('category_id'))} "
                         f"(a whole number from {MIN_CLASS_ID} to 2**63-1)")
    conf = 1.0
    if score:
        if "score" not in item:
            raise InputError(f"{where}: expected a 'score' in every prediction (is this a ground-truth file?)")
        conf = _number(item["score"])  # type: ignore[assignment]
        if conf is None or abs(conf) > FLOAT32_MAX:
            raise InputError(f"{where}: expected 'score' to be a finite number, got {json.dumps(item['score'])} "
                             "(float32: |score| <= 3.4e38)")
    return box, cls, conf


def _detections(rows: list[tuple[list[float], int, float]], crowd: list[bool] | None = None) -> Detections:
    if not rows and crowd is None:
        return Detections.empty()
    data = {} if crowd is None else {"iscrowd": np.asarray(crowd, bool).reshape(len(rows))}
    return Detections(
        xyxy=np.asarray([r[0] for r in rows], np.float64).reshape(-1, 4),
        confidence=np.asarray([r[2] for r in rows], np.float64),
        class_id=np.asarray([r[1] for r in rows], np.int64),
        data=data,
    )


def _images(data: dict, path: Path) -> list[dict]:
    images = data.get("images")
    if not isinstance(images, list):
        raise InputError(f"{path}: expected an 'images' list")
    seen: set = set()
    for i, im in enumerate(images):
        where = f"{path} images[{i}]"
        if not isinstance(im, dict) or _key(im.get("id")) is None:
            raise InputError(f"{where}: expected an object with an integer or string 'id', got {json.dumps(im)[:60]}")
        if im["id"] in seen:
            raise InputError(f"{where}: image id {im['id']!r} appears twice")
        seen.add(im["id"])
        for key in ("width", "height"):
            if key in im and (_class_id(im[key]) is None or im[key] <= 0):
                raise InputError(f"{where}: expected a positive integer '{key}', got {json.dumps(im[key])}")
    return images


def _categories(data: dict, path: Path) -> dict[int, str]:
    """COCO ``categories``: class id -> name (the id itself where a category has no name)."""
    cats = data.get("categories") or []
    if not isinstance(cats, list):
        raise InputError(f"{path}: expected 'categories' to be a list, got {type(cats).__name__}")
    categories: dict[int, str] = {}
    for i, cat in enumerate(cats):
        cid = _class_id(cat.get("id")) if isinstance(cat, dict) else None
        if cid is None:
            raise InputError(f"{path} categories[{i}]: expected an object with an integer 'id', got {json.dumps(cat)[:60]}")
        categories[cid] = str(cat.get("name", cid))
    return categories


def _image_size(im: dict) -> tuple[int, int] | None:
    return (int(im["width"]), int(im["height"])) if "width" in im and "height" in im else None


# --- COCO --------------------------------------------------------------------------------------------------------


def read_coco_ground_truth(path: str | Path) -> DetectionSet:
    """A COCO detection JSON file (``images``, ``annotations``, ``categories``) as a :class:`DetectionSet`."""
    path = Path(path)
    data = _read_json(path, "ground truth")
    if not isinstance(data, dict) or "annotations" not in data:
        raise InputError(f"{path}: expected a COCO object with 'images', 'annotations' and 'categories'")
    images = _images(data, path)
    categories = _categories(data, path)
    annotations = data["annotations"]
    if not isinstance(annotations, list):
        raise InputError(f"{path}: expected 'annotations' to be a list")
    index = {im["id"]: i for i, im in enumerate(images)}
    rows: list[list] = [[] for _ in images]
    crowd: list[list[bool]] = [[] for _ in images]
    for j, ann in enumerate(annotations):
        where = f"{path} annotations[{j}]"
        row = _coco_box(ann, where, score=False)
        if _key(ann.get("image_id")) not in index:
            raise InputError(f"{where}: image_id {json.dumps(ann.get('image_id'))} is not in 'images'")
        if categories and row[1] not in categories:
            raise InputError(f"{where}: category_id {row[1]} is not in 'categories'")
        i = index[ann["image_id"]]
        rows[i].append(row)
        crowd[i].append(bool(ann.get("iscrowd", 0)))  # as COCOeval: "iscrowd" only (it overwrites any "ignore")
    return DetectionSet(
        files=[str(im.get("file_name", im["id"])) for im in images],
        image_ids=[im["id"] for im in images],
        detections=[_detections(r, c) for r, c in zip(rows, crowd)],
        sizes=[_image_size(im) for im in images],
        categories=categories,
        source=str(path),
        categories_source=f"{path} categories" if categories else "",
    )


class _ImageLookup:
    """Find a ground-truth image by file name, then by file stem (when that is unambiguous)."""

    def __init__(self, files: Sequence[str]) -> None:
        self.exact = {f: i for i, f in enumerate(files)}
        stems: dict[str, list[int]] = {}
        for i, f in enumerate(files):
            stems.setdefault(Path(f).stem, []).append(i)
        self.stems = {s: v[0] for s, v in stems.items() if len(v) == 1}

    def get(self, name: str) -> int | None:
        if name in self.exact:
            return self.exact[name]
        if Path(name).name in self.exact:
            return self.exact[Path(name).name]
        return self.stems.get(Path(name).stem)


def read_coco_predictions(path: str | Path, ground_truth: DetectionSet) -> list[Detections]:
    """Predictions from a COCO results list or a COCO dict with scored annotations, in ground-truth order."""
    return _coco_predictions(Path(path), ground_truth)[0]


def _coco_predictions(path: Path, ground_truth: DetectionSet) -> tuple[list[Detections], dict[int, str]]:
    data = _read_json(path, "predictions")
    categories: dict[int, str] = {}
    if isinstance(data, list):
        items, images = data, None
        label = "item"
    elif isinstance(data, dict) and isinstance(data.get("annotations"), list):
        items, images = data["annotations"], (_images(data, path) if "images" in data else None)
        categories = _categories(data, path)
        label = "annotations"
    else:
        raise InputError(f"{path}: expected a COCO results list or an object with 'annotations', got {type(data).__name__}")
    by_id = {image_id: i for i, image_id in enumerate(ground_truth.image_ids)}
    if images is not None:  # by file name: the two files may number their images differently
        lookup = _ImageLookup(ground_truth.files)
        for k, im in enumerate(images):
            name = str(im.get("file_name", ""))
            if lookup.get(name) is None:
                raise InputError(f"{path} images[{k}]: file_name {name!r} is not in the ground truth {ground_truth.source}")
        by_id = {im["id"]: lookup.get(str(im.get("file_name", ""))) for im in images}
    rows: list[list] = [[] for _ in range(len(ground_truth))]
    for j, item in enumerate(items):
        where = f"{path} {label}[{j}]" if label == "annotations" else f"{path} item {j}"
        row = _coco_box(item, where, score=True)
        image_id = _key(item.get("image_id"))
        if image_id not in by_id:
            known = "'images'" if images is not None else f"the ground truth {ground_truth.source}"
            raise InputError(f"{where}: image_id {json.dumps(item.get('image_id'))} is not in {known}")
        rows[by_id[image_id]].append(row)
    return [_detections(r) for r in rows], categories


# --- YOLO --------------------------------------------------------------------------------------------------------


def parse_image_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> ``(640, 480)`` (width, height)."""
    parts = str(text).lower().split("x")
    if len(parts) == 2 and all(p.strip().isdigit() and int(p) > 0 for p in parts):
        return int(parts[0]), int(parts[1])
    raise ConfigError(f"image size: expected WIDTHxHEIGHT such as 640x480, got {text!r}")


def _image_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputError(f"image folder not found: {folder}")
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            if p.stem in out:
                raise InputError(f"{folder}: two images share the stem {p.stem!r} ({out[p.stem].name}, {p.name})")
            out[p.stem] = p
    if not out:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {folder}")
    return out


def read_image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file as OpenCV shows it (EXIF orientation applied). Needs OpenCV."""
    from edgecv.deps import require

    cv2 = require("cv2", extra="opencv", purpose="read image sizes", package="opencv-python-headless")
    try:
        image = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_GRAYSCALE)
    except OSError as exc:
        raise InputError(f"cannot read image {path}: {exc}") from None
    if image is None:
        raise InputError(f"cannot decode image {path}")
    return int(image.shape[1]), int(image.shape[0])


def _yolo_id(stem: str) -> Hashable:
    return int(stem) if stem.isdigit() else stem


def _read_yolo_file(path: Path, size: tuple[int, int], *, predictions: bool) -> Detections:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    expected = "'class cx cy w h [confidence]'" if predictions else "'class cx cy w h'"
    width, height = size
    rows = []
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in ((5, 6) if predictions else (5,)):
            raise InputError(f"{path}:{n}: expected {expected}, got {len(fields)} fields: {line.strip()[:60]!r}")
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise InputError(f"{path}:{n}: expected numbers {expected}, got {line.strip()[:60]!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise InputError(f"{path}:{n}: expected finite numbers, got {line.strip()[:60]!r}")
        if _class_id(values[0]) is None or values[0] < 0:
            raise InputError(f"{path}:{n}: expected a class id (an integer >= 0) first, got {fields[0]!r} "
                             "(whole numbers up to 2**63-1)")
        cx, cy, w, h = values[1:5]
        if w < 0 or h < 0:
            raise InputError(f"{path}:{n}: expected a width and height >= 0, got {fields[3]} {fields[4]}")
        box = [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
        problem = _box_problem(box)
        if problem:
            raise InputError(f"{path}:{n}: {problem} (normalized to the image's {width}x{height})")
        if len(values) == 6 and abs(values[5]) > FLOAT32_MAX:
            raise InputError(f"{path}:{n}: expected a confidence within float32, got {fields[5]}")
        rows.append((box, int(values[0]), values[5] if len(values) == 6 else 1.0))
    return _detections(rows)


def _label_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputError(f"{what} folder not found: {folder}")
    return {p.stem: p for p in sorted(folder.glob("*.txt")) if p.name != CLASSES_FILE and p.is_file()}


def _classes_file(folder: Path) -> tuple[dict[int, str], str]:
    """The class names of a YOLO folder and the file that gave them: ``classes.txt`` in it, else the ``names``
    of a ``data.yaml`` in it or up to two folders up; ``({}, "")`` when there is neither."""
    path = folder / CLASSES_FILE
    if path.is_file():
        return names_by_id(read_labels(path)), str(path)
    for parent in (folder, folder.parent, folder.parent.parent):
        path = parent / DATA_YAML
        if path.is_file() and _has_names(path):
            return names_by_id(read_labels(path)), str(path)
    return {}, ""


def _has_names(path: Path) -> bool:
    """Whether a YAML file has a top-level ``names`` key (a data.yaml found by looking up may be another's)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    return isinstance(data, dict) and "names" in data


def read_yolo_ground_truth(
    folder: str | Path, *, images: str | Path | None = None, image_size: tuple[int, int] | None = None
) -> DetectionSet:
    """A folder of YOLO label files as a :class:`DetectionSet`.

    With ``images`` (a folder), every image in it is one entry (no label file: no boxes) and its size is
    read from the file unless ``image_size`` gives one size for all. Without it, every label file is one
    entry and ``image_size`` is required.
    """
    folder = Path(folder)
    labels = _label_files(folder, "ground-truth")
    if images is not None:
        files = _image_files(Path(images))
        orphans = sorted(set(labels) - set(files))
        if orphans:
            first = labels[orphans[0]]
            raise InputError(f"{first}: no image {orphans[0]}.* in {images} ({len(orphans)} label files without an image)")
        stems, names = list(files), [p.name for p in files.values()]
        sizes = [image_size or read_image_size(p) for p in files.values()]
    else:
        if image_size is None:
            raise ConfigError(f"YOLO labels are normalized to the image size: give {_SIZES}")
        if not labels:
            raise InputError(f"no label files (*.txt) in folder {folder}")
        stems = names = list(labels)
        sizes = [image_size] * len(stems)
    detections = [
        _read_yolo_file(labels[s], size, predictions=False) if s in labels else Detections.empty()
        for s, size in zip(stems, sizes)
    ]
    categories, categories_source = _classes_file(folder)
    return DetectionSet(
        files=names,
        image_ids=[_yolo_id(s) for s in stems],
        detections=detections,
        sizes=list(sizes),
        categories=categories,
        source=str(folder),
        categories_source=categories_source,
    )


def read_yolo_predictions(
    folder: str | Path,
    ground_truth: DetectionSet,
    *,
    images: str | Path | None = None,
    image_size: tuple[int, int] | None = None,
) -> list[Detections]:
    """YOLO prediction files ``<stem>.txt`` for the ground-truth images, in their order.

    Image sizes come from ``image_size``, else the ground truth, else the ``images`` folder.
    """
    folder = Path(folder)
    labels = _label_files(folder, "predictions")
    lookup = _ImageLookup(ground_truth.files)
    unknown = sorted(s for s in labels if lookup.get(s) is None)
    if unknown:
        raise InputError(f"{labels[unknown[0]]}: image {unknown[0]!r} is not in the ground truth {ground_truth.source}")
    image_files = _image_files(Path(images)) if images is not None else {}
    out = [Detections.empty() for _ in range(len(ground_truth))]
    for stem, path in labels.items():
        i = lookup.get(stem)
        size = image_size or ground_truth.sizes[i]
        if size is None:
            if Path(ground_truth.files[i]).stem not in image_files:
                raise InputError(f"{path}: the size of image {ground_truth.files[i]!r} is unknown; give {_SIZES}")
            size = read_image_size(image_files[Path(ground_truth.files[i]).stem])
        out[i] = _read_yolo_file(path, size, predictions=True)
    return out


# --- either, by path ------------------------------------------------------------------------------------------------


def _kind(path: Path, what: str) -> str:
    if path.is_dir():
        return "yolo"
    if path.is_file() and path.suffix.lower() == ".json":
        return "coco"
    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    raise InputError(f"{what} {path}: expected a COCO .json file or a folder of YOLO .txt files")


def load_ground_truth(
    path: str | Path, *, images: str | Path | None = None, image_size: tuple[int, int] | None = None
) -> DetectionSet:
    """COCO JSON file or YOLO txt folder, told apart by the path."""
    path = Path(path)
    if _kind(path, "ground truth") == "coco":
        return read_coco_ground_truth(path)
    return read_yolo_ground_truth(path, images=images, image_size=image_size)


def load_predictions(
    path: str | Path,
    ground_truth: DetectionSet,
    *,
    images: str | Path | None = None,
    image_size: tuple[int, int] | None = None,
) -> list[Detections]:
    """COCO JSON file or YOLO txt folder of predictions, one Detections per ground-truth image."""
    return load_prediction_set(path, ground_truth, images=images, image_size=image_size).detections


def load_prediction_set(
    path: str | Path,
    ground_truth: DetectionSet,
    *,
    images: str | Path | None = None,
    image_size: tuple[int, int] | None = None,
) -> DetectionSet:
    """Predictions as :func:`load_predictions` reads them, as a :class:`DetectionSet` over the ground truth's
    images, with the class names they carry: a COCO file's ``categories`` (``edgecv detect`` writes them),
    a YOLO folder's ``classes.txt`` or ``data.yaml``."""
    path = Path(path)
    if _kind(path, "predictions") == "coco":
        detections, categories = _coco_predictions(path, ground_truth)
        where = f"{path} categories" if categories else ""
    else:
        detections = read_yolo_predictions(path, ground_truth, images=images, image_size=image_size)
        categories, where = _classes_file(path)
    return DetectionSet(
        files=list(ground_truth.files),
        image_ids=list(ground_truth.image_ids),
        detections=detections,
        sizes=list(ground_truth.sizes),
        categories=categories,
        source=str(path),
        categories_source=where,
    )
