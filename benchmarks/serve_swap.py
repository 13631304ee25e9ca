"""Hot swap in ``edgecv serve``: frames and milliseconds without results while a new model version comes in, and
while a bad one is refused or rolled back.

    .venv/bin/python benchmarks/serve_swap.py [--model builtin|ssd] [--artifacts DIR] [--fps 15] [--size 640x480]
                                              [--seconds 8] [--json]

``--model builtin`` (the default): the built-in detector's artifacts (exported first unless ``--artifacts`` gives
the folder, as in ``pipeline_vtest.py``) go into a fresh model store as ``det``: version 1 its int8 ONNX, version
2 its fp32 ONNX, version 3 the fp32 ONNX with every output multiplied by NaN. One ``edgecv serve`` runs one
generated camera (``--fps``, ``--size``) on ``store:det`` and writes its results as JSON lines.

``--model ssd``: a real third-party model on real video. The shared data's SSD MobileNet v1 (COCO, int8 TFLite,
with its labelmap) goes in as version 1, the same file installed again as version 2, and again as version 3,
whose stored copy is then cut in half on disk. The stream is the shared pedestrian video (``vtest.avi``, run at
its own frame rate like a camera, people only).

Each phase runs ``--seconds`` before and after one activation through the API:

1. ``good``: version 1 -> 2, with the check on the last 8 frames;
2. ``refused``: version 3 while 2 runs: refused before any frame runs on it (builtin: by the check on the last
   frames; ssd: its files no longer match the hashes recorded at install);
3. ``rolled back`` (builtin only: the NaN graph is an ONNX edit): version 3 again, on a second serve whose check
   is off (``check_frames: 0``), so it goes live and the probation rolls it back.

Figures per phase: frames without a result from ``--seconds`` before the activation on (gaps in the frame
indices; frames the service skipped are among them, and counted apart), the longest time between two results in
the ``--seconds`` after the activation against the longest before it (result time = capture time + the line's
latency), the median interval, the API call's own time (load, check, switch), and for the rollback, the time from
the activation to the ``rolled_back`` event.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import REPO, shared_model
from pipeline_vtest import builtin_artifacts
from serve_streams import free_port, lines

from edgecv.tables import render

PYTHON = sys.executable


def nan_version(src: Path, dst: Path) -> Path:
    """``src`` with every float output multiplied by NaN (onnx, from the test extra)."""
    import onnx
    from onnx import helper, numpy_helper

    import numpy as np

    model = onnx.load(str(src))
    g = model.graph
    g.initializer.append(numpy_helper.from_array(np.array(np.nan, np.float32), "nan_const"))
    for out in g.output:
        raw = f"{out.name}_before_nan"
        for node in g.node:
            node.output[:] = [raw if o == out.name else o for o in node.output]
        g.node.append(helper.make_node("Mul", [raw, "nan_const"], [out.name]))
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return dst


def post(url: str, body: dict) -> tuple[int, dict, float]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read()), (time.perf_counter() - t0) * 1000.0
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), (time.perf_counter() - t0) * 1000.0


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def results(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            d = json.loads(line)
            if "frame" in d:
                out.append(d)
    return out


def gaps(rows: list[dict], fps: float) -> list[tuple[int, float]]:
    """(frame, ms since the result before) of each result after the first."""
    t = [r["frame"] / fps * 1000.0 + r["latency_ms"] for r in rows]
    return [(rows[i]["frame"], t[i] - t[i - 1]) for i in range(1, len(rows))]


def camera(args) -> dict:
    """The stream's source and class filter for ``--model``."""
    if args.model == "ssd":
        return {"source": str(shared_model("ssd_mobilenet_v1_coco_quant/detect.tflite").parents[2] / "video" /
                              "vtest.avi"), "classes": ["person"]}
    return {"source": f"synthetic:frames=0,size={args.size},fps={args.fps:g}"}


def serve(store: Path, tmp: Path, name: str, args, check_frames: int) -> tuple[subprocess.Popen, str, Path]:
    import yaml

    port = free_port()
    out = tmp / name
    config = tmp / f"{name}.yaml"
    config.write_text(yaml.safe_dump({
        "server": {"port": port}, "out": str(out),
        "swap": {"probation_s": 4 * args.seconds, "check_frames": check_frames, "poll_s": 0.5},
        "streams": [{"id": "cam", **camera(args), "model": "store:det", "sinks": ["jsonl"]}]}))
    proc = subprocess.Popen([PYTHON, "-m", "edgecv", "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env={**__import__("os").environ,
                                                                             "EDGECV_STORE": str(store)})
    jsonl = out / "cam" / "tracks.jsonl"
    deadline = time.monotonic() + 180
    while lines(jsonl) < 3 * args.fps:
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"serve did not start: {proc.stderr.read() if proc.poll() is not None else 'timeout'}")
        time.sleep(0.25)
    return proc, f"http://127.0.0.1:{port}", jsonl


def phase(url: str, jsonl: Path, version: int, args, *, wait_event: str | None = None) -> dict:
    time.sleep(args.seconds)
    before = results(jsonl)
    status, record, call_ms = post(f"{url}/api/models/det/activate", {"version": version, "reason": "benchmark"})
    t_call = time.monotonic()
    event_ms = None
    if wait_event:
        deadline = time.monotonic() + 4 * args.seconds
        while event_ms is None and time.monotonic() < deadline:
            found = [e for e in get(f"{url}/api/events")["events"] if e.get("event") == wait_event
                     and e.get("version") == version]
            if found:
                event_ms = (time.monotonic() - t_call) * 1000.0 + call_ms
            time.sleep(0.05)
    time.sleep(args.seconds)
    rows = results(jsonl)
    frames = [r["frame"] for r in rows]
    g = gaps(rows, args.fps)
    cut = before[-1]["frame"] if before else 0
    start = cut - args.seconds * args.fps  # the phase's own "before" window
    missing = sum(b - a - 1 for a, b in zip(frames, frames[1:]) if a >= start)
    base = [ms for f, ms in g if start < f <= cut]
    after = [ms for f, ms in g if f > cut]
    stream = get(f"{url}/api/streams")["streams"][0]
    return {"status": status, "outcome": record.get("outcome"), "reason": record.get("reason"),
            "call_ms": round(call_ms, 1), "swap_ms": record.get("swap_ms"), "event_ms": None if event_ms is None else round(event_ms, 1),
            "missing_frames": missing, "skipped": stream["skipped"], "dropped": stream["dropped"],
            "median_interval_ms": round(statistics.median(ms for _, ms in g), 1), "max_gap_before_ms": round(max(base), 1),
            "max_gap_after_ms": round(max(after), 1), "frames": len(rows), "model_after": stream["model"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("builtin", "ssd"), default="builtin")
    p.add_argument("--artifacts", type=Path)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--size", default="640x480")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    from edgecv.store import ModelStore

    with tempfile.TemporaryDirectory(prefix="serve-swap-") as tmp_name:
        tmp = Path(tmp_name)
        store = ModelStore(tmp / "store")
        if args.model == "ssd":
            args.fps = 10.0  # vtest.avi's own rate
            ssd = shared_model("ssd_mobilenet_v1_coco_quant/detect.tflite")
            for reason in ("as shipped", "the same file again", "to be cut short on disk"):
                store.install(ssd, name="det", spec="ssd-mobilenet-v1-coco", labels=ssd.parent / "labelmap.txt",
                              reason=reason)
            damaged = store.version("det", 3).path
            damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
            bad = "cut short on disk, refused"
        else:
            art = builtin_artifacts(args.artifacts, tmp)
            store.install(art / "scene_detector.int8.onnx", name="det", reason="int8")
            store.install(art / "scene_detector.fp32.onnx", name="det", reason="fp32")
            store.install(nan_version(art / "scene_detector.fp32.onnx", tmp / "nan" / "scene_detector.nan.onnx"),
                          name="det", spec="scene-detector", reason="NaN")
            bad = "NaN, refused by the check"
        rows = {}
        proc, url, jsonl = serve(store.root, tmp, "checked", args, check_frames=8)
        try:
            rows["good (1 -> 2)"] = phase(url, jsonl, 2, args)
            rows[bad] = phase(url, jsonl, 3, args)
        finally:
            proc.terminate()
            proc.wait(60)
        if args.model == "ssd":
            return report(rows, args)
        store.activate("det", 1, reason="benchmark: back to int8")
        proc, url, jsonl = serve(store.root, tmp, "unchecked", args, check_frames=0)
        try:
            rows["NaN, rolled back on probation"] = phase(url, jsonl, 3, args, wait_event="rolled_back")
        finally:
            proc.terminate()
            proc.wait(60)
    report(rows, args)


def report(rows: dict, args) -> None:
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(render(["activation", "outcome", "API call ms", "to rollback ms", "frames without result", "skipped",
                  "longest gap after / before ms", "median interval ms", "serving after"],
                 [[k, str(r["outcome"]), f"{r['call_ms']:.0f}", "-" if r["event_ms"] is None else f"{r['event_ms']:.0f}",
                   str(r["missing_frames"]), str(r["skipped"]), f"{r['max_gap_after_ms']:.0f} / {r['max_gap_before_ms']:.0f}",
                   f"{r['median_interval_ms']:.1f}", r["model_after"]] for k, r in rows.items()]))
    for k, r in rows.items():
        if r["reason"] and r["reason"] != "benchmark":
            print(f"{k}: {r['reason']}")
    camera_text = ("SSD MobileNet v1 (int8 TFLite) on vtest.avi at 10 frames/s, people only" if args.model == "ssd"
                   else f"the built-in detector on one generated camera {args.size} at {args.fps:g} frames/s")
    print(f"\n{camera_text}; {args.seconds:g} s before and after each activation; frames without result: gaps in "
          "the frame indices from the window before the activation on")


if __name__ == "__main__":
    main()
