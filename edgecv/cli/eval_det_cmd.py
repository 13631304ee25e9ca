"""``edgecv eval-det``: COCO-style mAP of predictions against ground truth (COCO JSON or YOLO txt)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXAMPLES = """\
examples:
  edgecv eval-det --gt instances_val.json --pred results.json
  edgecv eval-det --gt labels/ --pred runs/labels/ --images images/ --labels classes.txt
  edgecv eval-det --gt labels/ --pred predictions.json --image-size 640x480 --json

GT and PRED are each a COCO .json file or a folder of YOLO .txt files. A COCO prediction file is a results
list [{"image_id", "category_id", "bbox", "score"}] or a COCO object whose annotations carry "score".
YOLO coordinates are normalized, so YOLO files need the image sizes: --images or --image-size.
Class ids are compared as they are (COCO files usually count from 1, YOLO files from 0).
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval-det",
        help="COCO mAP of detections against ground truth",
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
    p.add_argument("--labels", type=Path, help="class names: one per line, or a YAML file with 'names'")
    p.add_argument("--max-dets", type=int, default=100, help="predictions kept per image and class (default 100)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from edgecv.detection.evaluate import evaluate_detections
    from edgecv.detection.ground_truth import load_ground_truth, load_predictions, parse_image_size, read_labels
    from edgecv.errors import ConfigError

    if args.max_dets < 1:
        raise ConfigError(f"--max-dets must be at least 1, got {args.max_dets}")
    size = parse_image_size(args.image_size) if args.image_size else None
    gt = load_ground_truth(args.gt, images=args.images, image_size=size)
    pred = load_predictions(args.pred, gt, images=args.images, image_size=size)
    labels = {**gt.categories, **(read_labels(args.labels) if args.labels else {})}
    metrics = evaluate_detections(gt.detections, pred, labels=labels, max_detections=args.max_dets)
    if args.json:
        print(json.dumps({"ground_truth": str(args.gt), "predictions": str(args.pred), **metrics.to_dict()}, indent=2))
    else:
        print(format_metrics(metrics))
    return 0


def format_metrics(m) -> str:
    from edgecv.cli.table import fmt_float, render

    rows = [
        [str(c), v["name"], fmt_float(v["ap"], ".3f"), fmt_float(v["ap50"], ".3f"), str(v["gt"]), str(v["pred"])]
        for c, v in m.per_class.items()
    ]
    table = render(["id", "class", "AP@[.5:.95]", "AP50", "GT", "pred"], rows, align="llrrrr")
    lines = [table, ""]
    if any(v["ap"] is None for v in m.per_class.values()):
        lines.append("classes with AP '-' have no ground truth and are not in the mean")
    lines.append(f"{m.images} images, {m.gt} ground-truth boxes, {m.pred} predictions")
    lines.append(f"mAP@[.5:.95] {m.map:.3f}   mAP50 {m.map50:.3f}   mAP75 {m.map75:.3f}   AR@{m.max_detections} {m.recall:.3f}")
    return "\n".join(lines)
