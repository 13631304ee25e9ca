"""``edgecv distill``: train a smaller student against a teacher, export it, and compare the two."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecv.cli.commands import COMMANDS
from edgecv.cli.options import add_preprocess_options, add_training_options

EXAMPLES = """\
examples:
  edgecv distill --teacher big.keras --width 0.5 --train digits.npz --epochs 5 --out runs/distill
  edgecv distill --teacher big.keras --student small.keras --train photos/ --temperature 4 --alpha 0.1 --out runs/distill
  edgecv distill --teacher big.keras --width 0.5 --hint-layers conv3:conv3 --train photos/ --out runs/distill

Loss: alpha x cross-entropy on the labels + (1 - alpha) x T^2 x KL(teacher || student) at temperature T,
plus the mean squared error between hinted layers (through a 1x1 adapter where widths differ). Without
--student, the student is the teacher's architecture at --width of its filters and units, freshly
initialized. The student is saved as OUT/<teacher>.student.keras and exported (fp32) next to the teacher.
"""


def _hints(text: str) -> list[tuple[str, str]]:
    pairs = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        teacher, _, student = item.partition(":")
        pairs.append((teacher, student or teacher))
    if not pairs:
        raise argparse.ArgumentTypeError(f"expected teacher_layer:student_layer[,...], got {text!r}")
    return pairs


def add_parser(sub) -> None:
    p = sub.add_parser(
        "distill",
        help=COMMANDS["distill"].summary,
                       description="Train a student classifier against a teacher's soft targets on your data, then "
                       "export it and compare it with the teacher in every format.", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", type=Path, required=True, help="teacher Keras model (.keras or .h5)")
    p.add_argument("--student", type=Path, help="student Keras model (default: the teacher at --width)")
    p.add_argument("--width", type=float, default=0.5, help="student width as a share of the teacher's (default 0.5)")
    p.add_argument("--temperature", type=float, default=4.0, help="softening temperature T (default 4)")
    p.add_argument("--alpha", type=float, default=0.1, help="weight of the hard-label loss (default 0.1)")
    p.add_argument("--hint-layers", type=_hints, default=(), help="teacher:student layer pairs for hint losses")
    add_training_options(p, epochs=5)
    add_preprocess_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from edgecv.converters.distill import distill
    from edgecv.cli.compress_table import artifacts_json, export_models, format_rows, model_and_data, with_figures
    from edgecv.converters.publish import Publication

    teacher, pre, labels, data = model_and_data(args.teacher, "distillation", args)
    result = distill(teacher, train=data, student=args.student, width=args.width, temperature=args.temperature, alpha=args.alpha,
                     hints=args.hint_layers, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, preprocess=pre)
    with Publication(args.out) as pub:  # the student and both exports published at once
        staged = pub.staging / f"{args.teacher.stem}.student.keras"
        result.model.save(staged)
        rows = export_models([("teacher", teacher), ("student", result.model)], to=args.to, out=pub.staging,
                             stem=args.teacher.stem, preprocess=pre, labels=labels)
        pub.publish()
    student_path = pub.final(staged)
    rows = with_figures(rows, x=data.x_val, y=data.y_val, runs=args.runs)
    if args.json:
        print(json.dumps({"model": str(student_path), "top1_teacher": result.top1_teacher, "top1_student": result.top1_student,
                          "params_teacher": result.params_teacher, "params_student": result.params_student,
                          "seconds": round(result.seconds, 1), "artifacts": artifacts_json(rows)}, indent=2))
        return 0
    print(f"student: {result.params_student:,} parameters ({result.params_student / result.params_teacher:.2f}x the teacher's); "
          f"validation top-1 {100 * (result.top1_student or 0):.2f}% against the teacher's {100 * (result.top1_teacher or 0):.2f}% "
          f"({result.seconds:.0f} s)\n")
    print(format_rows(rows))
    print(f"\nstudent model: {student_path}")
    return 0
