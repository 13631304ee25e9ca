"""``edgecv devices``: the device profiles, and whether an artifact fits one."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from edgecv.cli.commands import COMMANDS
from edgecv.tables import human_bytes, render

EXAMPLES = """\
examples:
  edgecv devices list                                          every profile, one line each
  edgecv devices list --json
  edgecv devices check model.int8.tflite --device coral-edgetpu
  edgecv devices check model.fp32.xml --device intel-npu --json
  edgecv devices check face.tflite --device coral-edgetpu --limit 0   every finding, no cut

'check' exits 1 when the device cannot run the artifact (blockers), 0 when it can (maybe with fallbacks).
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "devices",
        help=COMMANDS["devices"].summary,
        description="Device profiles (one YAML file per target in devices/) and a static check of an artifact "
        "against one: format, size budget, quantization, and what the accelerator takes (ops, dtypes, ranks, "
        "static shapes, partitions). Blockers mean it cannot run there; fallbacks mean parts run on the CPU.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="list the device profiles", epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ls.add_argument("--json", action="store_true", help="print the profiles as JSON")
    ls.set_defaults(run=run)
    ck = actions.add_parser("check", help="check an artifact against a device", epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ck.add_argument("artifact", help=".tflite, .onnx or OpenVINO .xml file")
    ck.add_argument("--device", required=True, help="profile name (see 'edgecv devices list') or a .yaml path")
    ck.add_argument("--limit", type=int, default=20, help="rows shown per list, the rest summarised (0: all; default 20)")
    ck.add_argument("--json", action="store_true", help="print the report as JSON (every finding)")
    ck.set_defaults(run=run)
    p.set_defaults(run=run)


def run(args) -> int:
    if args.action == "list":
        return _list(args)
    return _check(args)


def _list(args) -> int:
    from edgecv.config import to_plain
    from edgecv.devices import load_profiles

    profiles = load_profiles()
    if args.json:
        print(json.dumps([{**to_plain(p), "path": str(p.path), "candidates": p.candidates()} for p in profiles], indent=2))
        return 0
    rows = [
        [
            p.name + (" (local)" if p.local else ""),
            p.arch,
            ",".join(p.formats),
            ",".join(q for q, v in p.precisions.items() if v.accelerated and q != "fp32") or "-",
            p.accelerator.name if p.accelerator else "-",
            f"{p.preferred.format} {p.preferred.precision}",
        ]
        for p in profiles
    ]
    print(render(["device", "arch", "formats", "accelerated", "accelerator", "preferred"], rows))
    return 0


def _check(args) -> int:
    from pathlib import Path

    from edgecv.compat import check_artifact
    from edgecv.devices import load_profile
    from edgecv.errors import ConfigError

    if args.limit < 0:
        raise ConfigError(f"--limit must be 0 (all) or more, got {args.limit}")
    profile = load_profile(args.device)
    report = check_artifact(Path(args.artifact), profile)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report, limit=args.limit))
    return 0 if report.ok else 1


def format_report(report, *, limit: int = 20) -> str:
    """The findings as a table, blockers first; past ``limit`` rows per list, a count by kind and op."""
    head = (f"{report.artifact}  ({report.format}, {report.precision}, {human_bytes(report.size_bytes)}, "
            f"{report.ops} ops) on {report.device}")
    if report.accelerator and report.accelerator_ops is not None:
        head += f": {report.accelerator_ops} of {report.ops} ops on the {report.accelerator}"
    lines = [head]
    rows, more = [], []
    for severity, findings in (("blocker", report.blockers), ("fallback", report.fallbacks)):
        shown = findings if not limit else findings[:limit]
        rows += [[severity, f.kind, f.message] for f in shown]
        rest = findings[len(shown):]
        if rest:
            counts = Counter(f"{f.kind} {f.op}" if f.op else f.kind for f in rest)
            more.append(f"... and {len(rest)} more {severity}s: "
                        + ", ".join(f"{n} {k}" for k, n in counts.most_common()) + " (--limit 0 or --json for all)")
    if rows:
        lines += ["", render(["severity", "kind", "finding"], rows)] + more
    verdict = (f"cannot run on {report.device}: {len(report.blockers)} blocker{'s' * (len(report.blockers) != 1)}"
               if not report.ok else f"runs on {report.device}")
    if report.fallbacks:
        verdict += f", {len(report.fallbacks)} fallback{'s' * (len(report.fallbacks) != 1)}"
    lines += ["", verdict]
    return "\n".join(lines)
