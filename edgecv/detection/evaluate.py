"""COCO-style mAP of detections against ground truth, computed by pycocotools.

pycocotools' ``COCOeval`` does the matching and the averaging; this module only builds its two datasets in
memory from :class:`Detections` (one per image), keeps its printing quiet and reads the numbers out:

- ``map``: AP averaged over IoU 0.50:0.05:0.95 and over classes (COCO's "AP"), ``map50`` and ``map75`` at
  one IoU, ``recall``: AR@``max_detections`` averaged the same way. Precision is COCO's 101-point
  interpolation; every box counts whatever its area (COCO's area range "all").
- Classes are compared by ``class_id`` as they are (when the two sides number classes differently, e.g. COCO's
  91 ids against YOLO's 80, :func:`edgecv.detection.class_map.match_classes` maps the predictions first, by
  name or by a class map). A class with ground truth but no prediction has AP 0
  and lowers the mean; a class with predictions but no ground truth has no AP (``None``) and is left out
  of the mean, as in COCO; its predictions are not false positives for any other class.
- ``max_detections`` caps predictions per image *and class*, highest confidence first (COCOeval's cap).
- Ground truth with ``data["iscrowd"]`` true (read from COCO files) is a crowd region: predictions on it
  are neither right nor wrong, as in COCO. Ground-truth confidence is ignored.

Example:
    >>> import numpy as np
    >>> gt = [Detections(np.array([[0, 0, 10, 10]]), [1.0], [0])]
    >>> pred = [Detections(np.array([[0, 0, 10, 9]]), [0.8], [0])]                       # IoU 0.9
    >>> m = evaluate_detections(gt, pred)                                          # doctest: +SKIP
    >>> round(m.map50, 3), round(m.map, 3)                                         # doctest: +SKIP
    (1.0, 0.9)
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from edgecv.detection.boxes import xyxy_to_xywh
from edgecv.detection.detections import Detections
from edgecv.errors import ConfigError, InputError


@dataclass(frozen=True, eq=False)
class DetectionMetrics:
    """COCO-style metrics of one evaluation (see the module docstring for the definitions).

    ``per_class`` maps ``class_id`` to ``{"name", "ap", "ap50", "ap75", "recall", "gt", "pred"}``, for
    every class with ground truth or predictions, in id order; the AP and recall of a class without
    ground truth are None. ``images``, ``gt`` and ``pred`` count images, ground-truth boxes (crowd regions
    included) and predictions.
    """

    map: float
    map50: float
    map75: float
    recall: float
    per_class: dict[int, dict[str, Any]]
    images: int
    gt: int
    pred: int
    max_detections: int = 100

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; ``per_class`` becomes a list of dicts with a ``class_id`` each."""
        return {
            "map": self.map,
            "map50": self.map50,
            "map75": self.map75,
            "recall": self.recall,
            "max_detections": self.max_detections,
            "images": self.images,
            "gt": self.gt,
            "pred": self.pred,
            "per_class": [{"class_id": int(k), **v} for k, v in self.per_class.items()],
        }


def _names(labels: Sequence[str] | Mapping[int, str] | None) -> dict[int, str]:
    if labels is None:
        return {}
    if isinstance(labels, Mapping):
        return {int(k): str(v) for k, v in labels.items()}
    if isinstance(labels, str):
        raise ConfigError("evaluate_detections labels: expected a list of names or a {class_id: name} dict, got a string")
    return {i: str(name) for i, name in enumerate(labels)}


def _check(name: str, items: Sequence[Detections]) -> list[Detections]:
    if isinstance(items, Detections):
        raise InputError(f"evaluate_detections {name}: expected one Detections per image (a list), got one Detections")
    out = list(items)
    for i, d in enumerate(out):
        if not isinstance(d, Detections):
            raise InputError(f"evaluate_detections {name}[{i}]: expected Detections, got {type(d).__name__}")
        bad = np.flatnonzero((d.xyxy[:, 2] < d.xyxy[:, 0]) | (d.xyxy[:, 3] < d.xyxy[:, 1]))
        if len(bad):
            box = d.xyxy[bad[0]].tolist()
            raise InputError(f"evaluate_detections {name}[{i}] box {bad[0]}: expected x2 >= x1 and y2 >= y1, got {box}")
    return out


def _annotations(det: Detections, image_id: int, first_id: int, *, score: bool) -> list[dict[str, Any]]:
    """COCO annotation dicts of one image, ids counting from ``first_id`` (COCOeval needs ids >= 1)."""
    xywh = xyxy_to_xywh(det.xyxy.astype(np.float64))
    crowd = det.data.get("iscrowd")
    crowd = np.zeros(len(det), bool) if crowd is None else np.asarray(crowd).astype(bool).reshape(len(det))
    out = []
    for i, (box, cls) in enumerate(zip(xywh.tolist(), det.class_id.tolist())):
        item: dict[str, Any] = {"image_id": image_id, "category_id": cls, "bbox": box}
        if score:
            item["score"] = float(det.confidence[i])
        else:
            item.update(id=first_id + i, area=box[2] * box[3], iscrowd=int(crowd[i]))
        out.append(item)
    return out


def _mean(values: np.ndarray) -> float | None:
    """COCO's mean: entries of -1 mark "no ground truth" and are left out."""
    kept = values[values > -1]
    return float(kept.mean()) if kept.size else None


def evaluate_detections(
    ground_truth: Sequence[Detections],
    predictions: Sequence[Detections],
    *,
    labels: Sequence[str] | Mapping[int, str] | None = None,
    max_detections: int = 100,
) -> DetectionMetrics:
    """COCO mAP of ``predictions`` against ``ground_truth``: one Detections per image, in the same order.

    ``labels`` (a list indexed by class id, or a dict) only names the classes in ``per_class``. Raises
    :class:`InputError` when the lists differ in length or there is no ground-truth box to evaluate.
    Needs pycocotools (``pip install 'edgecv[eval]'``).
    """
    from edgecv.deps import require

    gt_list, pred_list = _check("ground_truth", ground_truth), _check("predictions", predictions)
    if len(gt_list) != len(pred_list):
        raise InputError(
            f"evaluate_detections: expected one predictions entry per image, got {len(gt_list)} ground-truth images "
            f"and {len(pred_list)} prediction images"
        )
    if not isinstance(max_detections, (int, np.integer)) or isinstance(max_detections, bool) or max_detections < 1:
        raise ConfigError(f"evaluate_detections max_detections: expected an integer >= 1, got {max_detections!r}")
    names = _names(labels)
    crowd = [np.asarray(d.data.get("iscrowd", np.zeros(len(d)))).astype(bool) for d in gt_list]
    if not sum(int((~c).sum()) for c in crowd):
        what = "no boxes" if not sum(len(d) for d in gt_list) else "only crowd regions"
        raise InputError(f"evaluate_detections: the ground truth has {what} in {len(gt_list)} images; nothing to evaluate against")

    coco = require("pycocotools.coco", extra="eval", purpose="compute COCO mAP", package="pycocotools")
    cocoeval = require("pycocotools.cocoeval", extra="eval", purpose="compute COCO mAP", package="pycocotools")

    gt_classes = sorted({int(c) for d in gt_list for c in d.class_id})
    pred_classes = sorted({int(c) for d in pred_list for c in d.class_id})
    classes = sorted(set(gt_classes) | set(pred_classes))
    gt_anns: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for i, (g, p) in enumerate(zip(gt_list, pred_list)):
        gt_anns += _annotations(g, i + 1, len(gt_anns) + 1, score=False)
        results += _annotations(p, i + 1, 0, score=True)
    dataset = {
        "info": {},  # loadRes copies dataset["info"] and fails without it
        "images": [{"id": i + 1} for i in range(len(gt_list))],
        "annotations": gt_anns,
        "categories": [{"id": c, "name": names.get(c, str(c))} for c in classes],
    }

    # pycocotools prints progress on stdout at every step; keep it out of the caller's output.
    with contextlib.redirect_stdout(io.StringIO()):
        cocogt = coco.COCO()
        cocogt.dataset = dataset
        cocogt.createIndex()
        if results:
            cocodt = cocogt.loadRes(results)
        else:  # loadRes reads results[0]: no predictions at all is an empty result set built the same way
            cocodt = coco.COCO()
            cocodt.dataset = {**dataset, "annotations": []}
            cocodt.createIndex()
        ev = cocoeval.COCOeval(cocogt, cocodt, iouType="bbox")
        ev.params.catIds = classes
        ev.params.maxDets = [int(max_detections)]
        ev.params.areaRng = [[0.0, 1e10]]  # "all" only: the small/medium/large passes would be thrown away
        ev.params.areaRngLbl = ["all"]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][:, :, :, 0, 0]  # [T IoU thresholds, R recall points, K classes]
    recall = ev.eval["recall"][:, :, 0, 0]  # [T, K]
    iou = ev.params.iouThrs
    t50, t75 = int(np.argmin(np.abs(iou - 0.5))), int(np.argmin(np.abs(iou - 0.75)))

    per_class: dict[int, dict[str, Any]] = {}
    for k, c in enumerate(classes):
        per_class[c] = {
            "name": names.get(c, str(c)),
            "ap": _mean(precision[:, :, k]),
            "ap50": _mean(precision[t50, :, k]),
            "ap75": _mean(precision[t75, :, k]),
            "recall": _mean(recall[:, k]),
            "gt": int(sum(int((d.class_id == c).sum()) for d in gt_list)),
            "pred": int(sum(int((d.class_id == c).sum()) for d in pred_list)),
        }
    return DetectionMetrics(
        map=_mean(precision) or 0.0,
        map50=_mean(precision[t50]) or 0.0,
        map75=_mean(precision[t75]) or 0.0,
        recall=_mean(recall) or 0.0,
        per_class=per_class,
        images=len(gt_list),
        gt=sum(len(d) for d in gt_list),
        pred=sum(len(d) for d in pred_list),
        max_detections=int(max_detections),
    )
