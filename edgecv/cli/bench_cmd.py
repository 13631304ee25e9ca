"""``edgecv bench``: latency, throughput, load time, memory and size of artifacts, side by side."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecv.cli.table import fmt_float, human_bytes, render

EXAMPLES = """\
examples:
  edgecv bench model.fp32.tflite model.fp32.onnx model.fp32.xml
  edgecv bench artifacts/ --threads 1 --runs 200
  edgecv bench model.fp32.onnx --backend openvino --json
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark artifacts side by side",
        description="Warm up, then time each artifact in its own process: latency p50/p90/p99 and mean, "
        "throughput, load time, peak resident memory and file size. A folder means every artifact in it.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("artifacts", nargs="+", type=Path, help=".tflite, .onnx or .xml files, or folders of them")
    p.add_argument("--backend", help="runtime to use (default: the first installed for each format)")
    p.add_argument("--threads", type=int, help="threads per runtime (default: every core)")
    p.add_argument("--runs", type=int, default=100, help="timed runs (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    p.add_argument("--batch", type=int, default=1, help="images per run (default 1)")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.set_defaults(run=run)


def expand(paths: list[Path]) -> list[Path]:
    """Files stay; a folder becomes its artifacts in name order. Unknown files raise the format error."""
    from edgecv.errors import ModelFileError
    from edgecv.formats import FORMATS

    suffixes = {f.suffix for f in FORMATS.values()}
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix in suffixes and f.is_file())
            if not found:
                raise ModelFileError(f"no artifacts ({', '.join(sorted(suffixes))}) in folder {p}")
            out += found
        else:
            out.append(p)
    return out


def run(args) -> int:
    from tqdm import tqdm

    from edgecv.bench import benchmark

    paths = expand(args.artifacts)
    results = []
    bar = tqdm(paths, unit="artifact", leave=False, disable=args.json)
    for path in bar:
        bar.set_description(path.name)
        results.append(
            benchmark(path, backend=args.backend, threads=args.threads, runs=args.runs, warmup=args.warmup, batch=args.batch)
        )
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print(format_results(results))
    return 0


def format_results(results) -> str:
    rows = [
        [
            Path(r.artifact).name,
            r.backend,
            r.precision,
            human_bytes(r.size_bytes),
            f"{r.load_ms:.1f}",
            f"{r.p50_ms:.3f}",
            f"{r.p90_ms:.3f}",
            f"{r.p99_ms:.3f}",
            f"{r.mean_ms:.3f}",
            f"{r.throughput:.0f}",
            fmt_float(r.peak_rss_mb, ".0f"),
        ]
        for r in results
    ]
    head = ["artifact", "backend", "precision", "size", "load ms", "p50 ms", "p90 ms", "p99 ms", "mean ms", "img/s", "peak MB"]
    threads = {r.threads for r in results}
    note = f"\n{results[0].runs} runs after {results[0].warmup} warm-up, batch {results[0].batch}, threads {', '.join(map(str, sorted(threads)))}"
    return render(head, rows, align="lllrrrrrrrr") + note
