"""``edgecv info``: what an artifact takes and gives, and what its manifest says."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecv.cli.commands import COMMANDS
from edgecv.cli.options import add_verify_option


def add_parser(sub) -> None:
    p = sub.add_parser(
        "info",
        help=COMMANDS["info"].summary,
        description="Load an artifact and show its inputs and outputs (names, shapes, dtypes, layout, "
        "quantization), the main facts of its manifest, and whether its files match the SHA-256 hashes the "
        "manifest records (checked before loading; a mismatch is refused unless --no-verify).",
        epilog="examples:\n  edgecv info artifacts/model.fp16.tflite\n  edgecv info model.onnx --backend openvino --json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("artifact", type=Path)
    p.add_argument("--backend", help="runtime to load with (default: the first installed for the format)")
    p.add_argument("--json", action="store_true")
    add_verify_option(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from edgecv.fileio import file_size
    from edgecv.model import load

    model = load(args.artifact, backend=args.backend, verify=args.verify)
    info = {
        "artifact": str(model.path),
        "format": model.format,
        "backend": model.backend,
        "precision": model.precision,
        "precision_from": "manifest" if model.manifest else "graph",
        "size_bytes": file_size(model.path),
        "verification": model.verification,
        "inputs": [t.to_dict() for t in model.inputs],
        "outputs": [t.to_dict() for t in model.outputs],
        "manifest": model.manifest.to_dict() if model.manifest else None,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    precision = model.precision if model.manifest else f"{model.precision} (read from the graph)"
    lines = [f"{model.path}  ({model.format}, {model.backend}, {precision}, {info['size_bytes']} bytes)"]
    checked = " against the SHA-256 in its manifest" if model.verification == "verified" else ""
    lines.append(f"files: {model.verification}{checked}")
    lines += ["inputs:"] + [f"  {t.describe()}" for t in model.inputs]
    lines += ["outputs:"] + [f"  {t.describe()}" for t in model.outputs]
    m = model.manifest
    if m:
        pre = m.preprocess
        lines.append(f"preprocess: {pre.layout} {pre.color}, input = (pixel - {list(pre.mean)}) / {list(pre.std)}")
        if m.labels:
            lines.append(f"labels: {', '.join(m.labels[:10])}{' ...' if len(m.labels) > 10 else ''}")
        v = m.validation or {}
        if v:
            lines.append(f"validation: {v.get('status')} on {v.get('samples')} samples with {v.get('backend')} {v.get('reason') or ''}".rstrip())
        if m.source:
            lines.append(f"source: {m.source.get('kind')} {m.source.get('path')} sha256 {str(m.source.get('sha256'))[:12]}")
    else:
        lines.append("manifest: none beside this file")
    print("\n".join(lines))
    return 0
