"""``edgecv cluster``: weight clustering of a Keras classifier, fine-tuned, exported and compared with the original."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecv.cli.commands import COMMANDS
from edgecv.cli.options import add_preprocess_options, add_training_options

EXAMPLES = """\
examples:
  edgecv cluster classifier.keras --clusters 16 --train digits.npz --eval held_out.npz --out runs/cluster
  edgecv cluster runs/prune/classifier.magnitude.keras --clusters 16 --preserve-sparsity --train photos/ --out runs/cluster
  edgecv cluster classifier.keras --clusters 8 --train photos/ --to tflite --runs 0 --json --out runs/cluster
  edgecv cluster detector.keras --clusters 32 --epochs 0 --spec my-spec.yaml --eval frames/ --out runs/cluster

Every Conv2D and Dense kernel keeps at most --clusters distinct values (k-means++ centroids, then fine-tuned;
tfmot's clustering), so the files compress: the table gives top-1 on --eval (or a held-out split of --train;
for a detector, --spec with --eval IMAGES: mAP of the clustered artifacts' detections against the original's),
size, zipped size and latency of the original and the clustered model in every format. The runtimes store
every weight as they did, so the file itself (and the speed) stays the same; the zipped size is what shrinks.
--preserve-sparsity keeps the zeros of a pruned model (edgecv prune --method magnitude) zero. --epochs 0
clusters without training (k-means on each kernel; no --train needed, any Keras model, detectors too). The
clustered model is saved as OUT/<name>.cluster<N>.keras. The given model never changes.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "cluster",
        help=COMMANDS["cluster"].summary,
        description="Cluster a Keras classifier's weights (weight sharing), fine-tune it on your data, export it and "
        "compare it with the original in every format.", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="Keras model (.keras or .h5)")
    p.add_argument("--clusters", type=int, default=16, help="distinct values per kernel (2 to 256; default 16)")
    p.add_argument("--preserve-sparsity", action="store_true", help="keep the zero weights of a pruned model zero")
    p.add_argument("--spec", help="a detector: its spec (edgecv specs list); with --eval IMAGES, each clustered "
                                  "artifact's detections are compared with the original's")
    add_training_options(p, epochs=2, train_required=False)
    add_preprocess_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from edgecv.cli.compress_table import (artifacts_json, export_models, format_rows, keras_model, model_and_data,
                                           with_figures)
    from edgecv.cli.options import preprocess_from, read_labels
    from edgecv.converters.cluster import cluster
    from edgecv.converters.publish import Publication
    from edgecv.errors import ConfigError

    if args.spec is not None and (args.train is not None or args.epochs != 0):
        raise ConfigError("--spec: a detector is clustered without training (--epochs 0, no --train): edgecv's "
                          "fine-tuning is a classifier's")
    if args.spec is not None and (args.eval_data is None or not Path(args.eval_data).is_dir()):
        raise ConfigError("--spec compares the detections of the clustered and the original model: give --eval, a "
                          "folder of images")
    if args.train is None:
        if args.epochs != 0:
            raise ConfigError("--train is needed to fine-tune the clusters; --epochs 0 clusters without training")
        model, pre, labels, data = keras_model(args.model, "clustering"), preprocess_from(args, "NHWC"), read_labels(args.labels), None
    else:
        model, pre, labels, data = model_and_data(args.model, "clustering", args)
    result = cluster(model, train=data, clusters=args.clusters, epochs=args.epochs, batch_size=args.batch_size,
                     seed=args.seed, preserve_sparsity=args.preserve_sparsity, preprocess=pre)
    tag = f"cluster{args.clusters}"
    with Publication(args.out) as pub:  # the model and both exports published at once
        staged = pub.staging / f"{args.model.stem}.{tag}.keras"
        result.model.save(staged)
        rows = export_models([("original", model), (tag, result.model)], to=args.to, out=pub.staging,
                             stem=args.model.stem, preprocess=pre, labels=labels)
        pub.publish()
    clustered_path = pub.final(staged)
    rows = with_figures(rows, x=data.x_val if data else None, y=data.y_val if data else None, runs=args.runs)
    agreement = _agreement(rows, tag, args) if args.spec else {}
    summary = result.to_dict()
    if args.json:
        artifacts = [{**a, **({"detections": agreement[r["name"]]} if r["name"] in agreement else {})}
                     for a, r in zip(artifacts_json(rows), rows)]
        print(json.dumps({**summary, "model": str(clustered_path), "artifacts": artifacts}, indent=2, default=str))
        return 0
    from edgecv.tables import fmt_float

    most = max(summary["unique_values"].values(), default=0)
    pct = {k: None if summary[k] is None else 100 * summary[k] for k in ("top1_before", "top1_after")}
    print(f"clustered {len(summary['unique_values'])} kernels to at most {most} values each (asked {args.clusters}); "
          f"zero weights {summary['sparsity_before']:.2f} -> {summary['sparsity_after']:.2f}; validation top-1 "
          f"{fmt_float(pct['top1_before'], '.2f')}% -> {fmt_float(pct['top1_after'], '.2f')}%\n")
    print(format_rows(rows))
    for name, a in agreement.items():
        print(f"{name}: detections against the original's on {a['images']} images: mAP@0.5 "
              f"{fmt_float(a['map50'], '.4f')}, mAP@[.5:.95] {fmt_float(a['map'], '.4f')}")
    print(f"\nclustered model: {clustered_path}")
    return 0


def _agreement(rows: list[dict], tag: str, args) -> dict[str, dict]:
    """Each clustered artifact's detections against the original artifact of the same format, on --eval."""
    from edgecv.cli.options import read_labels
    from edgecv.converters.cluster import detection_agreement

    originals = {Path(r["path"]).suffix: r["path"] for r in rows if r["method"] == "original"}
    return {r["name"]: detection_agreement(originals[Path(r["path"]).suffix], r["path"], args.eval_data, spec=args.spec,
                                           labels=read_labels(args.labels))
            for r in rows if r["method"] == tag and Path(r["path"]).suffix in originals}
