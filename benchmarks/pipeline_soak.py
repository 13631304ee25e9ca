"""Memory over a long run: the pipeline on an endless generated source, resident memory sampled as it goes.

    .venv/bin/python benchmarks/pipeline_soak.py [--minutes 20] [--artifacts runs/demo/artifacts] [--json]

Source: ``synthetic:frames=0,seed=3`` (320x320, 30 fps, endless; paced at its 30 fps with ``--realtime``
unless ``--flat-out``, so the run is the load a camera gives). Detector: the built-in one, the artifact of
``--artifacts`` measured fastest here (default: exported to a temporary folder first). Tracker: OC-SORT
with the demo's thresholds; a line and a zone counter; every sink (annotated MP4, JSONL, MOT txt) to a
temporary folder. RSS (VmRSS from /proc) is sampled every ``--every`` seconds.

Figures: RSS after the first minute (warm), at the end, the peak, the growth from minute 1 to the end, and
the least-squares slope over that span in MB per hour; frames processed, dropped, fps, latency early and late.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import REPO  # noqa: F401  (puts the checkout on sys.path)
from pipeline_vtest import builtin_artifacts

from edgecv.pipeline.capture import CaptureOptions
from edgecv.pipeline.track import DetectorSettings, track


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    from edgecv.converters.track_demo import TRACKER, TRACKER_OPTIONS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--every", type=float, default=5.0, help="seconds between RSS samples")
    p.add_argument("--artifacts", type=Path)
    p.add_argument("--flat-out", action="store_true", help="as fast as it goes, not paced at 30 fps")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="pipeline-soak-") as tmp_name:
        tmp = Path(tmp_name)
        artifacts = builtin_artifacts(args.artifacts, tmp)
        start = time.monotonic()

        def sample() -> None:
            while not stop.wait(args.every):
                samples.append((time.monotonic() - start, rss_mb()))
                if time.monotonic() - start >= args.minutes * 60:
                    stop.set()

        sampler = threading.Thread(target=sample, daemon=True)
        samples.append((0.0, rss_mb()))
        sampler.start()
        result = track(artifacts, "synthetic:frames=0,seed=3", out=tmp / "run", detector=DetectorSettings(),
                       tracker=TRACKER, tracker_options=TRACKER_OPTIONS, lines=["mid=0,160,320,160"],
                       zones=["box=80,80,240,80,240,240,80,240"],
                       capture=CaptureOptions(realtime=not args.flat_out), stop=stop)
        sampler.join()
    t = np.array([s[0] for s in samples])
    m = np.array([s[1] for s in samples])
    warm = t >= 60.0
    slope = float(np.polyfit(t[warm] / 3600, m[warm], 1)[0]) if warm.sum() >= 3 else None
    s = result.summary
    figures = {
        "minutes": round(t[-1] / 60, 2), "frames": s["frames"], "fps": s["fps"], "dropped": s["capture"]["dropped"],
        "rss_start_mb": round(m[0], 1), "rss_warm_mb": round(float(m[warm][0]), 1) if warm.any() else None,
        "rss_end_mb": round(m[-1], 1), "rss_peak_mb": round(float(m.max()), 1),
        "growth_after_warm_mb": round(float(m[-1] - m[warm][0]), 1) if warm.any() else None,
        "slope_mb_per_hour": None if slope is None else round(slope, 2),
        "latency_ms": s["latency_ms"], "tracks": s["tracks"], "counts": s["counts"], "model": Path(s["model"]).name,
    }
    if args.json:
        print(json.dumps({**figures, "samples": samples}, indent=1))
        return
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
