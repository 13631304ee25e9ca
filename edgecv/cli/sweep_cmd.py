"""``edgecv sweep``: models x devices x recipes from one file, on a local process pool or a Ray cluster."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecv.cli.commands import COMMANDS

EXAMPLES = """\
examples:
  edgecv sweep sweep.yaml --out runs/sweep                       this machine's cores
  edgecv sweep sweep.yaml --out runs/sweep --executor ray        a Ray cluster started here for the sweep
  edgecv sweep sweep.yaml --out /shared/sweep --executor auto    the Ray cluster this machine belongs to
  edgecv sweep sweep.yaml --out /shared/sweep --executor ray://head.lan:10001

sweep.yaml:
  models:
    digits: {file: digits.keras, preprocess: {mean: [0], std: [255]}}
  devices: [raspberry-pi-5, coral-edgetpu]
  recipes:
    ptq: {kind: ptq}
    pruned: {kind: prune, sparsity: 0.5, epochs: 2}
    student: {kind: distill, width: 0.5, epochs: 3}
    tuned: {kind: qat, epochs: 2}
  data: {calib: calib.npy, eval: eval.npz, train: train.npz}
  budget: {max_drop: 1.0, retries: 1}
  resources: {cpus: 1, memory_mb: 3000}

Training recipes (prune, distill, qat) run first, one job per model; then one 'edgecv optimize' job per model,
recipe and device. Each job runs in a fresh worker process; finished jobs are kept in OUT under a key of
everything that shaped them, so the same command again runs only what is missing or changed. A failed job is
tried again budget.retries times, then reported. OUT receives sweep.md, sweep.json and sweep.png: for each
model and device the chosen artifact, and every job's and candidate's fate. On a cluster of several machines
the sweep file's paths and OUT must be on a filesystem every node sees at the same path (docs/sweep.md).
Exit 1 when a job failed.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help=COMMANDS["sweep"].summary,
        description="Optimize many models for many devices with many recipes: the sweep file expands into jobs "
        "(training recipes, then one optimize per model, recipe and device) that run on this machine's cores or "
        "on a Ray cluster, resumably; one report chooses per model and device.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", type=Path, help="the sweep file (YAML)")
    p.add_argument("--out", type=Path, default=Path("sweep"), help="output folder (default: ./sweep)")
    p.add_argument("--executor", default="local",
                   help="local (default), ray (a cluster started here), auto (join the running one), ray://HOST:PORT")
    p.add_argument("--workers", type=int, help="jobs at once (local), or the CPUs of a Ray cluster started here "
                                               "(default: the cores)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from edgecv.converters.sweep import sweep

    result = sweep(args.file, out=args.out, executor=args.executor, workers=args.workers, progress=not args.json,
                   verbose=bool(args.verbose))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print(format_result(result))
    return 1 if result.failed else 0


def format_result(result) -> str:
    from edgecv.tables import fmt_float, human_bytes, render

    rows = [[r["model"], r["device"], r["recipe"] or "-", r["candidate"] or "-", fmt_float(r["total_loss"], ".2f"),
             human_bytes(r["size_bytes"]) if r["size_bytes"] else "-", fmt_float(r["p50_ms"], ".3f"),
             Path(r["artifact"]).name if r["artifact"] else "nothing fits"] for r in result.chosen]
    lines = [render(["model", "device", "recipe", "candidate", "points lost", "size", "p50 ms", "artifact"], rows,
                    align="llllrrrl"), ""]
    counts: dict[str, int] = {}
    for job in result.jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    ex = result.executor
    lines.append(f"{len(result.jobs)} jobs ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}) on the "
                 f"{ex['executor']} executor in {result.seconds:.0f} s; budget {result.max_drop:g} points in all")
    for job in result.failed:
        lines.append(f"  {job.name}: {job.status}: {job.error}")
    lines.append(f"written to {result.out}: sweep.md, sweep.json, sweep.png; the jobs under jobs/ and models/")
    return "\n".join(lines)
