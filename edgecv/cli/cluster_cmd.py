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

Every Conv2D and Dense kernel keeps at most --clusters distinct values (k-means++ centroids, then fine-tuned;
tfmot's clustering), so the files compress: the table gives top-1 on --eval (or a held-out split of --train),
size, zipped size and latency of the original and the clustered model in every format. The runtimes store
every weight as they did, so the file itself (and the speed) stays the same; the zipped size is what shrinks.
--preserve-sparsity keeps the zeros of a pruned model (edgecv prune --method magnitude) zero. The clustered
model is saved as OUT/<name>.cluster<N>.keras. The given model never changes.
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
    add_training_options(p, epochs=2)
    add_preprocess_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from edgecv.cli.compress_table import artifacts_json, export_models, format_rows, model_and_data, with_figures
    from edgecv.converters.cluster import cluster
    from edgecv.converters.publish import Publication

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
    rows = with_figures(rows, x=data.x_val, y=data.y_val, runs=args.runs)
    summary = result.to_dict()
    if args.json:
        print(json.dumps({**summary, "model": str(clustered_path), "artifacts": artifacts_json(rows)}, indent=2, default=str))
        return 0
    most = max(summary["unique_values"].values(), default=0)
    print(f"clustered {len(summary['unique_values'])} kernels to at most {most} values each (asked {args.clusters}); "
          f"zero weights {summary['sparsity_before']:.2f} -> {summary['sparsity_after']:.2f}; validation top-1 "
          f"{100 * (summary['top1_before'] or 0):.2f}% -> {100 * (summary['top1_after'] or 0):.2f}%\n")
    print(format_rows(rows))
    print(f"\nclustered model: {clustered_path}")
    return 0
