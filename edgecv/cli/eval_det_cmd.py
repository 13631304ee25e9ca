"""``edgecv eval-det``: COCO-style mAP of predictions against ground truth (COCO JSON or YOLO txt)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecv.cli.commands import COMMANDS

# The class map format of edgecv.detection.class_map.read_class_map (kept here: building the parser imports
# nothing of edgecv.detection, hence no numpy).
CLASS_MAP_FORMAT = """\
A class map (--class-map FILE, YAML or JSON) maps prediction classes to ground-truth classes, each side
an id (a whole number) or a name; null leaves that prediction class out:
    1: 0                    # prediction class 1 is ground-truth class 0
    motorbike: motorcycle   # by name, where the two spell it differently
    "???": null             # leave these predictions out
Predicted classes the map does not list go by name when both sides name their classes, else are left out.
JSON: {"1": 0, "motorbike": "motorcycle", "???": null}."""

EXAMPLES = f"""\
examples:
  edgecv eval-det --gt instances_val.json --pred results.json
  edgecv eval-det --gt labels/ --pred runs/labels/ --images images/ --labels classes.txt
  edgecv eval-det --gt labels/ --pred runs/ssd/predictions.json --image-size 640x480 --json
  edgecv eval-det --gt labels/ --pred results.json --images images/ --class-map ssd_to_yolo.yaml

GT and PRED are each a COCO .json file or a folder of YOLO .txt files. A COCO prediction file is a results
list [{{"image_id", "category_id", "bbox", "score"}}] or a COCO object whose annotations carry "score"
(edgecv detect's predictions.json). YOLO coordinates are normalized, so YOLO files need the image sizes:
--images or --image-size.

Classes: when both sides name their classes (COCO "categories", a YOLO folder's classes.txt or data.yaml
'names', --labels, --pred-labels), prediction classes are matched to ground-truth classes by name, case
and '_'/'-'/space aside: an SSD's COCO ids (person=1) meet YOLO labels (person=0). Otherwise ids are
compared as they are. Predictions and ground truth that share no class stop with an error.

{CLASS_MAP_FORMAT}
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval-det",
        help=COMMANDS["eval-det"].summary,
        description="Compute COCO-style detection metrics with pycocotools: AP@[.5:.95], AP50 and AP75 per "
        "class and averaged over classes, and AR@100. Classes without ground truth are left out of the mean.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--gt", required=True, type=Path, help="ground truth: COCO .json file or YOLO .txt folder")
    p.add_argument("--pred", required=True, type=Path, help="predictions: COCO .json file or YOLO .txt folder")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--images", type=Path, help="image folder: the images and their sizes, for YOLO files")
    size.add_argument("--image-size", metavar="WxH", help="one size for every image, for YOLO files (e.g. 640x480)")
    p.add_argument("--labels", type=Path, help="ground-truth class names: one per line (line k is class k), or a YAML "
                   "file with 'names'; they replace the names the ground truth carries")
    p.add_argument("--pred-labels", type=Path, help="prediction class names, the same way (default: the names the "
                   "predictions carry)")
    p.add_argument("--class-map", type=Path, metavar="FILE",
                   help="YAML or JSON mapping of prediction class -> ground-truth class, by id or name (see below)")
    p.add_argument("--max-dets", type=int, default=100, help="predictions kept per image and class (default 100)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from dataclasses import replace

    from edgecv.detection.class_map import match_classes
    from edgecv.detection.evaluate import evaluate_detections
    from edgecv.detection.ground_truth import load_ground_truth, load_prediction_set, parse_image_size
    from edgecv.errors import ConfigError
    from edgecv.labels import names_by_id, read_labels

    if args.max_dets < 1:
        raise ConfigError(f"--max-dets must be at least 1, got {args.max_dets}")
    size = parse_image_size(args.image_size) if args.image_size else None
    gt = load_ground_truth(args.gt, images=args.images, image_size=size)
    pred = load_prediction_set(args.pred, gt, images=args.images, image_size=size)
    labels = {**gt.categories, **(names_by_id(read_labels(args.labels)) if args.labels else {})}
    pred_labels = names_by_id(read_labels(args.pred_labels)) if args.pred_labels else pred.categories
    match = match_classes(gt.detections, pred.detections, gt_names=labels, pred_names=pred_labels,
                          class_map=args.class_map)
    metrics = evaluate_detections(gt.detections, match.apply(pred.detections), labels=labels,
                                  max_detections=args.max_dets)
    if args.json:
        print(json.dumps({"ground_truth": str(args.gt), "predictions": str(args.pred), **metrics.to_dict(),
                          "class_matching": match.to_dict()}, indent=2))
    else:
        # A COCO results file's category ids are the COCO ground truth's by the format's definition: no note.
        both_coco = args.gt.suffix.lower() == ".json" and args.pred.suffix.lower() == ".json"
        print(format_metrics(metrics, replace(match, note="") if both_coco else match))
    return 0


def format_metrics(m, match=None) -> str:
    from edgecv.tables import fmt_float, render

    rows = [
        [str(c), v["name"], fmt_float(v["ap"], ".3f"), fmt_float(v["ap50"], ".3f"), str(v["gt"]), str(v["pred"])]
        for c, v in m.per_class.items()
    ]
    table = render(["id", "class", "AP@[.5:.95]", "AP50", "GT", "pred"], rows, align="llrrrr")
    lines = [table, ""]
    if any(v["ap"] is None for v in m.per_class.values()):
        lines.append("classes with AP '-' have no ground truth and are not in the mean")
    if match is not None:
        lines += format_matching(match)
    lines.append(f"{m.images} images, {m.gt} ground-truth boxes, {m.pred} predictions")
    lines.append(f"mAP@[.5:.95] {m.map:.3f}   mAP50 {m.map50:.3f}   mAP75 {m.map75:.3f}   AR@{m.max_detections} {m.recall:.3f}")
    return "\n".join(lines)


def format_matching(match, limit: int = 8) -> list[str]:
    """What the class matching did, in a line or two; nothing when ids were compared as they are and named."""

    def cls(c: int, names: dict) -> str:
        return f"{c} {names[c]}" if c in names else str(c)

    lines = []
    renamed = match.renamed
    if match.by != "ids" and renamed:
        how = "by name" if match.by == "names" else f"with the class map {match.map_file or ''}".rstrip()
        by_name = " (by name)" if match.by == "map" else ""
        pairs = [f"{cls(p, match.pred_names)} -> {g}{by_name if match.how[p] == 'name' else ''}"
                 for p, g in sorted(renamed.items())]
        more = f", ... ({len(pairs)} classes)" if len(pairs) > limit else ""
        lines.append(f"prediction classes matched to ground-truth ids {how}: {', '.join(pairs[:limit])}{more}")
    elif match.by != "ids":
        lines.append(f"prediction classes matched {'by name' if match.by == 'names' else 'with the class map'}: same ids")
    if match.left_out:
        n = sum(match.left_out.values())
        shown = ", ".join(f"{cls(c, match.pred_names)} ({k})" for c, k in sorted(match.left_out.items())[:limit])
        lines.append(f"left out {n} predictions of classes the ground truth does not have: {shown}")
    if match.note:
        lines.append(match.note + " (give --class-map or --labels/--pred-labels if they number classes differently)")
    return lines
