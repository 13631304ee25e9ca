"""``edgecv specs``: the built-in detector specs, and any spec file, checked and shown (docs/specs.md)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from edgecv.cli.commands import COMMANDS
from edgecv.tables import render

EXAMPLES = """\
examples:
  edgecv specs list                              every built-in spec, one line each
  edgecv specs list --json
  edgecv specs show blazeface-full-range         the spec's YAML, a template for your own
  edgecv specs show my-detector.yaml             check a spec file you wrote (one-line error if it is wrong)
  edgecv specs show palm-detection --json        every field, defaults filled in

A spec says how to run one detector: decoder and its options, score threshold, NMS, labels, input
normalization, colour order, resize mode (the default of 'edgecv detect/track --resize'), input layout
and size. Every field is documented in docs/specs.md, with the MediaPipe and Ultralytics options each
comes from. Pass a spec to 'edgecv detect --spec NAME|FILE' or 'edgecv export --detector NAME|FILE'.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "specs",
        help=COMMANDS["specs"].summary,
        description="Detector specs: YAML files that say how to turn a model's raw outputs into detections and "
        "how frames become its input. 'list' shows the built-in ones; 'show' prints one (a built-in name or a "
        "YAML path) after checking every field.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="list the built-in specs", epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ls.add_argument("--json", action="store_true", help="print the specs as JSON (every field)")
    ls.set_defaults(run=run)
    sh = actions.add_parser("show", help="print a spec's YAML after checking it", epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    sh.add_argument("name", metavar="NAME", help="a built-in spec name (see 'edgecv specs list') or a spec YAML path")
    sh.add_argument("--json", action="store_true", help="print every field as JSON, defaults filled in")
    sh.set_defaults(run=run)
    p.set_defaults(run=run)


def run(args) -> int:
    return _list(args) if args.action == "list" else _show(args)


def summary(spec) -> dict[str, Any]:
    """One spec's row: name, decoder, input, classes, resize, score threshold, NMS."""
    size = spec.expected_input_size
    pre = spec.preprocess
    return {
        "name": spec.name,
        "decoder": spec.decoder,
        "input_size": list(size) if size is not None else None,
        "color": spec.color,
        "input_range": list(pre.input_range) if pre is not None else None,
        "classes": spec.num_classes,
        "anchors": getattr(spec.decoder_options, "num_anchors", None),
        "labels": list(spec.labels) if spec.labels is not None else None,
        "resize": spec.resize,
        "score_threshold": spec.score_threshold,
        "nms": None if spec.nms is None else f"{spec.nms.method} iou>{spec.nms.iou_threshold:g}",
    }


def _input_text(row: dict[str, Any]) -> str:
    size = "x".join(map(str, row["input_size"])) if row["input_size"] else "model's"
    parts = [size, row["color"] or ""]
    if row["input_range"]:
        lo, hi = row["input_range"]
        parts.append(f"[{lo:g},{hi:g}]")
    return " ".join(p for p in parts if p)


def _classes_text(row: dict[str, Any]) -> str:
    if row["classes"] is None:
        return "-"
    labels = row["labels"] or []
    shown = ", ".join(labels[:3]) + (", ..." if len(labels) > 3 else "")
    return f"{row['classes']} ({shown})" if shown else str(row["classes"])


def _list(args) -> int:
    from edgecv.detection.spec import load_spec, spec_names

    specs = [load_spec(name) for name in spec_names()]
    if args.json:
        print(json.dumps([{**summary(s), "spec": s.to_dict()} for s in specs], indent=2))
        return 0
    rows = []
    for spec in specs:
        row = summary(spec)
        rows.append([row["name"], row["decoder"], _input_text(row), _classes_text(row),
                     row["resize"] or "stretch (default)", f"{row['score_threshold']:g}", row["nms"] or "none"])
    print(render(["spec", "decoder", "input", "classes", "resize", "score", "nms"], rows))
    print("\n'edgecv specs show NAME' prints one; docs/specs.md documents every field.")
    return 0


def _show(args) -> int:
    from edgecv.detection.spec import load_spec, spec_path

    spec = load_spec(args.name)  # checks every field first: a wrong spec is a one-line error
    path = spec_path(args.name)
    if args.json:
        print(json.dumps({"path": str(path), **summary(spec), "spec": spec.to_dict()}, indent=2))
        return 0
    print(path.read_text().rstrip("\n"))
    return 0
