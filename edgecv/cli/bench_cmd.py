"""``edgecv bench``: latency, throughput, load time, memory and size of artifacts, side by side."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecv.cli.commands import COMMANDS
from edgecv.cli.options import add_verify_option, shape
from edgecv.tables import fmt_float, human_bytes, render

EXAMPLES = """\
examples:
  edgecv bench model.fp32.tflite model.fp32.onnx model.fp32.xml
  edgecv bench artifacts/ --threads 1 --runs 200
  edgecv bench model.fp32.onnx --backend openvino --json
  edgecv bench text_det.onnx --input-shape 1x3x480x640
  edgecv bench artifacts/ --remote pi@raspberrypi --python /home/pi/venv/bin/python
  edgecv bench model.fp32.xml --remote pi@10.0.0.7 --port 2222 --identity ~/.ssh/pi_ed25519 --json

--remote copies each artifact (with its .bin and manifest) to a temporary folder on the device over ssh,
benchmarks it there with the device's edgecv, and removes the folder. It needs key authentication (ssh never
prompts) and edgecv with the artifact's runtime on the device. Every result records the device that ran it.
"""


def add_parser(sub) -> None:
    from edgecv.bench import RUNS, WARMUP

    p = sub.add_parser(
        "bench",
        help=COMMANDS["bench"].summary,
        description="Warm up, then time each artifact in its own process: latency p50/p90/p99 and mean, "
        "throughput, load time, peak resident memory and file size. A folder means every artifact in it.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("artifacts", nargs="+", type=Path, help=".tflite, .onnx or .xml files, or folders of them")
    p.add_argument("--backend", help="runtime to use (default: the first installed for each format)")
    p.add_argument("--threads", type=int, help="threads per runtime (default: every core)")
    p.add_argument("--runs", type=int, default=RUNS, help=f"timed runs (default {RUNS})")
    p.add_argument("--warmup", type=int, default=WARMUP, help=f"untimed runs first (default {WARMUP})")
    p.add_argument("--batch", type=int, default=1, help="images per run (default 1)")
    p.add_argument("--input-shape", type=shape, metavar="SHAPE",
                   help="the first input's full shape, e.g. 1x3x480x640: needed for dynamic dims; its first dim is the batch")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    add_verify_option(p)
    r = p.add_argument_group("on another device over ssh")
    r.add_argument("--remote", metavar="USER@HOST", help="benchmark on this device instead of here")
    r.add_argument("--python", metavar="PATH", help="the device's Python that has edgecv (default python3)")
    r.add_argument("--port", type=int, help="ssh port on the device (default: ssh's, usually 22)")
    r.add_argument("--identity", type=Path, metavar="KEY", help="private key for ssh (default: ssh's own keys and agent)")
    r.add_argument("--ssh-option", action="append", default=[], metavar="NAME=VALUE",
                   help="an extra ssh -o setting, e.g. ProxyJump=gateway (repeatable)")
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
    from edgecv.bench import BenchResult, benchmark, check_settings
    from edgecv.errors import ConfigError
    from edgecv.formats import check_model_file

    paths = expand(args.artifacts)
    settings = {"backend": args.backend, "threads": args.threads, "runs": args.runs, "warmup": args.warmup, "batch": args.batch,
                "verify": args.verify}
    if not args.remote:
        if args.python or args.port is not None or args.identity or args.ssh_option:
            raise ConfigError("--python, --port, --identity and --ssh-option need --remote USER@HOST")
        results = _each(paths, lambda path: benchmark(path, **settings, input_shape=args.input_shape), quiet=args.json)
    else:
        if args.input_shape is not None:
            raise ConfigError("--input-shape is not supported with --remote yet; benchmark a fixed-shape artifact "
                              "(edgecv export --input-shape SHAPE --static-shape)")
        from edgecv.remote import RemoteHost

        host = RemoteHost(args.remote, python=args.python or "python3", port=args.port, identity=args.identity,
                          options=args.ssh_option)
        check_settings(runs=args.runs, warmup=args.warmup, batch=args.batch)
        for path in paths:  # a bad file or setting fails here, before connecting
            check_model_file(path)
        with host:
            results = _each(paths, lambda path: BenchResult(**host.benchmark(path, **settings)), quiet=args.json)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print(format_results(results))
    return 0


def _each(paths: list[Path], bench, *, quiet: bool) -> list:
    from tqdm import tqdm

    results = []
    bar = tqdm(paths, unit="artifact", leave=False, disable=quiet)
    for path in bar:
        bar.set_description(path.name)
        results.append(bench(path))
    return results


def format_results(results) -> str:
    from edgecv.remote import describe_device

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
    shapes = {"x".join(map(str, r.input_shape)) for r in results if r.input_shape}
    if shapes:
        note += f", input shape {', '.join(sorted(shapes))}"
    note += verification_note(results)
    # Local runs keep their table as it was; a remote device is named under it, last.
    remotes = {r.device["remote"]: r.device for r in results if r.device and r.device.get("remote")}
    note += "".join(f"\non {describe_device(d)}" for d in remotes.values())
    return render(head, rows, align="lllrrrrrrrr") + note


def verification_note(results) -> str:
    """One line per verification state: which artifacts were checked against their manifests' hashes, which
    could not be, and which were not (``--no-verify``).

    Example:
        >>> from types import SimpleNamespace as R
        >>> print(verification_note([R(artifact="a.onnx", verification="verified"),
        ...                          R(artifact="b.xml", verification="skipped (--no-verify)")]))
        <BLANKLINE>
        verified against their manifest's SHA-256: a.onnx
        skipped (--no-verify): b.xml
    """
    by_state: dict[str, list[str]] = {}
    for r in results:
        by_state.setdefault(r.verification or "unverified (not reported)", []).append(Path(r.artifact).name)
    lines = []
    for state, names in by_state.items():
        what = "verified against their manifest's SHA-256" if state == "verified" else state
        lines.append(f"\n{what}: {', '.join(names)}")
    return "".join(lines)
