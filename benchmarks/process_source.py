"""What a frame costs the process that uses it, read directly or in a child process (``ProcessSource``, as
``edgecv serve`` reads each camera), with the pixels handed over through shared memory or through the pipe.

    .venv/bin/python benchmarks/process_source.py [--repeat 5] [--json]

Sources: ../shared/data/video/vtest.avi (768x576, 795 frames) and the scene generator at 640x480 (300 frames).
Each way reads every frame of the source and does nothing with it; the figures are this process's CPU ms and
the wall ms per frame (medians of ``--repeat`` runs, the three ways one after another in each round). The
child's own CPU (decoding, generating, copying into the ring) is not in them: it runs on another core.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from _common import SHARED_DATA

from edgecv.service.process_source import ProcessSource
from edgecv.sources import open_source
from edgecv.tables import render

WAYS = {
    "directly": lambda text: open_source(text),
    "child, shared memory": lambda text: ProcessSource(text),
    "child, pipe": lambda text: ProcessSource(text, shared=False),
}


def read_all(source) -> tuple[float, float]:
    with source as src:
        t0, c0, n = time.perf_counter(), time.process_time(), 0
        for _ in src:
            n += 1
        return (time.process_time() - c0) * 1000 / n, (time.perf_counter() - t0) * 1000 / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    video = SHARED_DATA / "video" / "vtest.avi"
    if not video.is_file():
        sys.exit(f"needs {video}")
    sources = {"vtest.avi 768x576": str(video), "generated 640x480": "synthetic:frames=300,size=640x480,seed=1"}
    results: dict[str, dict] = {}
    for label, text in sources.items():
        runs: dict[str, list] = {way: [] for way in WAYS}
        for _ in range(args.repeat):
            for way, make in WAYS.items():
                runs[way].append(read_all(make(text)))
        results[label] = {way: {"cpu_ms": round(statistics.median(r[0] for r in rs), 3),
                                "wall_ms": round(statistics.median(r[1] for r in rs), 3)} for way, rs in runs.items()}
    if args.json:
        print(json.dumps(results, indent=1))
        return
    rows = [[label, way, f"{r['cpu_ms']:.3f}", f"{r['wall_ms']:.3f}"]
            for label, ways in results.items() for way, r in ways.items()]
    print(f"medians of {args.repeat} runs")
    print(render(["source", "read", "this process's CPU ms/frame", "wall ms/frame"], rows, align="llrr"))


if __name__ == "__main__":
    main()
