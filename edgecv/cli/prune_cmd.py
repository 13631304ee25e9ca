"""``edgecv prune``: prune a Keras classifier, fine-tune it, export it, and compare it with the original."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecv.cli.commands import COMMANDS
from edgecv.cli.options import add_preprocess_options, add_training_options

EXAMPLES = """\
examples:
  edgecv prune classifier.keras --train digits.npz --eval held_out.npz --method channels --sparsity 0.5 --out runs/prune
  edgecv prune classifier.keras --train photos/ --method magnitude --sparsity 0.8 --epochs 3 --out runs/prune
  edgecv prune classifier.keras --train photos/ --method 2:4 --out runs/prune --json

methods:
  channels   removes whole filters (and the channels that depend on them): fewer parameters and MACs,
             and a faster model in every format
  magnitude  zeroes the smallest weights (tfmot, polynomial decay): smaller zipped files, same speed
  2:4        two zeros in every four weights (structured sparsity, for hardware that uses it)

The pruned model is saved as OUT/<name>.<method>.keras and exported (fp32) next to the original, and the
table gives top-1 on --eval (or a held-out split of --train), size, zipped size and latency of both. The given model never changes.
"""


def add_parser(sub) -> None:
    from edgecv.converters.prune import METHODS

    p = sub.add_parser(
        "prune",
        help=COMMANDS["prune"].summary,
                       description="Prune a Keras classifier, fine-tune it on your data, export it and compare it "
                       "with the original in every format.", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="Keras model (.keras or .h5)")
    p.add_argument("--method", choices=list(METHODS), default="channels", help="default channels")
    p.add_argument("--sparsity", type=float, default=0.5, help="share of filters (channels) or weights to remove (default 0.5)")
    add_training_options(p, epochs=2)
    add_preprocess_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from edgecv.converters.prune import prune
    from edgecv.cli.compress_table import artifacts_json, export_models, format_rows, model_and_data, with_figures
    from edgecv.converters.publish import Publication

    model, pre, labels, data = model_and_data(args.model, "pruning", args)
    result = prune(model, train=data, method=args.method, sparsity=args.sparsity, epochs=args.epochs,
                   batch_size=args.batch_size, seed=args.seed, preprocess=pre)
    with Publication(args.out) as pub:  # the model and both exports published at once
        staged = pub.staging / f"{args.model.stem}.{args.method.replace(':', 'of')}.keras"
        result.model.save(staged)
        rows = export_models([("original", model), (args.method, result.model)], to=args.to, out=pub.staging,
                             stem=args.model.stem, preprocess=pre, labels=labels)
        pub.publish()
    pruned_path = pub.final(staged)
    rows = with_figures(rows, x=data.x_val, y=data.y_val, runs=args.runs)
    summary = result.to_dict()
    if args.json:
        print(json.dumps({**summary, "model": str(pruned_path), "artifacts": artifacts_json(rows)}, indent=2, default=str))
        return 0
    print(f"{args.method}: sparsity {summary['sparsity']:.2f}; parameters {summary['params_before']:,} -> {summary['params_after']:,}; "
          f"MACs {summary['flops_before']:,} -> {summary['flops_after']:,}; validation top-1 "
          f"{100 * (summary['top1_before'] or 0):.2f}% -> {100 * (summary['top1_after'] or 0):.2f}%\n")
    print(format_rows(rows))
    print(f"\npruned model: {pruned_path}")
    return 0
