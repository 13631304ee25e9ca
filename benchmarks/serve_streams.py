"""``edgecv serve`` with 1, 2, 4 and 8 generated cameras against the same cameras run as separate ``edgecv track``
processes, in the same run, one after the other.

    .venv/bin/python benchmarks/serve_streams.py [--streams 1,2,4,8] [--seconds 30] [--fps 15] [--size 640x480]
                                                 [--model builtin|ssd|PATH] [--artifacts DIR] [--spec SPEC]
                                                 [--serve-sources process|thread] [--serve-processes 1,2] [--json]

Each camera is the scene generator at ``--fps`` and ``--size`` (``synthetic:frames=0,...``, its own seed), paced
like a camera (the newest frame kept, older ones dropped when processing falls behind), tracked with OC-SORT,
its tracks written as JSON lines and nothing else. ``serve``: one ``edgecv serve`` process, the streams sharing
one model through the batcher (``batch.max_size`` 8, ``max_wait_ms`` 5). ``separate``: one ``edgecv track
--realtime`` process per camera, each with its own copy of the model and edgecv's default threads.

The cameras are not alike in the two modes unless told. ``serve`` generates each camera in a child process of its
own (``source_process``, its default): it renders every frame at ``--fps`` whatever the service keeps up with, and
the frames it cannot take are dropped, as a real camera's are. ``track`` renders in its capture thread, so a busy
process renders fewer frames (its camera runs slower, and drops little). At 640x480 a frame costs the generator
about 8 CPU ms on the 2-core test machine, so past saturation this decides much of the result.
``--serve-sources thread`` makes ``serve`` generate in a thread too (``source_process: false``), as ``track`` does.

One ``serve`` process runs its streams' Python stages under one interpreter lock: past saturation it uses less
than the 2 cores that separate processes share out. ``--serve-processes 1,2`` runs ``serve`` once with one process
and once with ``server.processes: 2`` (camera i in worker i mod 2, behind one API), beside the separate processes.

Once every camera produces, frames are counted for ``--seconds`` (lines of each stream's JSON lines: one per
processed frame; the files are flushed every second, so each count is within a second's frames), then the
processes get SIGTERM. Figures: aggregate processed frames/s, the slowest and fastest stream's rate, frames
dropped, resident memory of all the processes (children included: serve reads each camera in a child process),
and capture-to-result latency p50/p99 (each stream's own, over its last 2000 frames; the table gives
the median over streams and the worst). ``serve / separate``: the aggregate rates' ratio.

Models: ``builtin`` (default): the built-in scene detector's int8 ONNX (a dynamic batch: the batcher runs
gathered frames as one call), exported first unless ``--artifacts`` gives the folder; ``ssd``: SSD MobileNet v1
COCO, quantized ``.tflite`` as shipped (../shared/data; a fixed batch of 1: gathered frames run one after the
other in the batcher's thread).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import REPO, shared_model

from edgecv.tables import render

PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.endswith(b"\n"))
    except FileNotFoundError:
        return 0


def source(i: int, fps: float, size: str) -> str:
    return f"synthetic:frames=0,size={size},fps={fps:g},seed={100 + i}"


def wait_producing(files: list[Path], procs: list[subprocess.Popen], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                sys.exit(f"a process exited early with {p.returncode}: {p.stderr.read() if p.stderr else ''}")
        if all(lines(f) >= 5 for f in files):
            return
        time.sleep(0.25)
    sys.exit(f"not every stream produced within {timeout:.0f} s")


def count(files: list[Path], seconds: float) -> list[float]:
    """Frames per second of each file's stream over ``seconds``."""
    start = [lines(f) for f in files]
    time.sleep(seconds)
    return [(lines(f) - s) / seconds for f, s in zip(files, start)]


def rss_mb(procs: list[subprocess.Popen]) -> float:
    """Resident memory of the processes and all their children, MB."""
    import psutil

    total = 0
    for p in procs:
        try:
            root = psutil.Process(p.pid)
            total += sum(q.memory_info().rss for q in [root, *root.children(recursive=True)])
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def stop(procs: list[subprocess.Popen]) -> list[str]:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    return [p.communicate(timeout=120)[0] for p in procs]


def run_serve(n: int, args, model: Path, spec: str | None, tmp: Path, processes: int = 1) -> dict:
    """``n`` cameras served by one ``edgecv serve``, its streams in ``server.processes`` worker processes (camera i
    in worker i mod that count)."""
    import yaml

    k = min(processes, n)
    out, port = tmp / f"serve{n}-{k}", free_port()
    streams = [{"id": f"cam{i}", "source": source(i, args.fps, args.size), "model": str(model), "sinks": ["jsonl"],
                "source_process": args.serve_sources == "process", **({"spec": spec} if spec else {})}
               for i in range(n)]
    config = tmp / f"serve{n}-{k}.yaml"
    config.write_text(yaml.safe_dump({"server": {"port": port, "processes": k},
                                      "batch": {"max_size": 8, "max_wait_ms": 5}, "out": str(out),
                                      "streams": streams}))
    proc = subprocess.Popen([PYTHON, "-m", "edgecv", "serve", str(config), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    files = [out / f"cam{i}" / "tracks.jsonl" for i in range(n)]
    try:
        wait_producing(files, [proc])
        rates = count(files, args.seconds)
        rss = rss_mb([proc])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/streams", timeout=10) as r:
            models = json.loads(r.read())["models"]
    finally:
        (printed,) = stop([proc])  # "serving ..." then the final figures as JSON
    status = json.loads(printed[printed.index("{"):]).get("streams", [])
    calls = sum(m["calls"] for m in models)
    return {"rates": rates, "latency": [s["latency_ms"] for s in status], "dropped": sum(s["dropped"] for s in status),
            "mean_batch": round(sum(m["frames"] for m in models) / calls, 2) if calls else None, "rss_mb": rss,
            "processes": k}


def run_separate(n: int, args, model: Path, spec: str | None, tmp: Path) -> dict:
    outs = [tmp / f"sep{n}-{i}" for i in range(n)]
    procs = [subprocess.Popen([PYTHON, "-m", "edgecv", "track", "--model", str(model), *(["--spec", spec] if spec else []),
                               "--source", source(i, args.fps, args.size), "--realtime", "--sinks", "jsonl",
                               "--out", str(out), "--json", "--max-frames", "1000000"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
             for i, out in enumerate(outs)]
    files = [out / "tracks.jsonl" for out in outs]
    try:
        wait_producing(files, procs)
        rates = count(files, args.seconds)
        rss = rss_mb(procs)
    finally:
        printed = stop(procs)
    summaries = [json.loads(text) for text in printed]
    return {"rates": rates, "latency": [s["latency_ms"] for s in summaries],
            "dropped": sum(s["capture"]["dropped"] for s in summaries), "mean_batch": None, "rss_mb": rss}


def builtin_model(artifacts: Path | None, tmp: Path) -> Path:
    from pipeline_vtest import builtin_artifacts

    return builtin_artifacts(artifacts, tmp) / "scene_detector.int8.onnx"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", default="1,2,4,8")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--size", default="640x480")
    p.add_argument("--model", default="builtin", help="builtin, ssd, or an artifact's path")
    p.add_argument("--spec", help="the detector spec for a model given by path")
    p.add_argument("--artifacts", type=Path, help="the built-in detector's artifacts (default: exported here)")
    p.add_argument("--serve-sources", choices=("process", "thread"), default="process",
                   help="serve's cameras each in a child process (its default) or in a thread, as track's are")
    p.add_argument("--serve-processes", default="1",
                   help="comma-separated: serve runs once per count, with server.processes at that count "
                        "(camera i in worker i mod N)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    try:
        counts = [int(x) for x in args.serve_processes.split(",")]
    except ValueError:
        counts = [0]
    if min(counts) < 1:
        p.error(f"--serve-processes: expected counts of 1 or more, got {args.serve_processes!r}")
    with tempfile.TemporaryDirectory(prefix="serve-streams-") as tmp_name:
        tmp = Path(tmp_name)
        spec = args.spec
        if args.model == "builtin":
            model = builtin_model(args.artifacts, tmp)
        elif args.model == "ssd":
            model, spec = shared_model("ssd_mobilenet_v1_coco_quant/detect.tflite"), "ssd-mobilenet-v1-coco"
        else:
            model = Path(args.model)
        rows, results = [], []
        for n in (int(x) for x in args.streams.split(",")):
            for mode, k in [*(("serve", k) for k in counts), ("separate", None)]:
                r = run_serve(n, args, model, spec, tmp, k) if k else run_separate(n, args, model, spec, tmp)
                p50 = [lat["p50"] for lat in r["latency"] if lat and lat["p50"] is not None]
                p99 = [lat["p99"] for lat in r["latency"] if lat and lat["p99"] is not None]
                res = {"streams": n, "mode": mode, "aggregate_fps": round(sum(r["rates"]), 1),
                       "slowest_fps": round(min(r["rates"]), 1), "fastest_fps": round(max(r["rates"]), 1),
                       "dropped": r["dropped"], "p50_ms_median": round(statistics.median(p50), 1) if p50 else None,
                       "p50_ms_worst": max(p50) if p50 else None, "p99_ms_median": round(statistics.median(p99), 1) if p99 else None,
                       "p99_ms_worst": max(p99) if p99 else None, "mean_batch": r["mean_batch"],
                       "rss_mb": round(r["rss_mb"]), "processes": r.get("processes", n)}
                results.append(res)
                print(f"{n} stream(s), {mode}: {res['aggregate_fps']} frames/s", file=sys.stderr, flush=True)
        for res in results:
            other = next(o for o in results if o["streams"] == res["streams"] and o["mode"] == "separate")
            res["serve_vs_separate"] = round(res["aggregate_fps"] / other["aggregate_fps"], 2) if res["mode"] == "serve" and other["aggregate_fps"] else None
            shown = res["mode"] + (f" ({res['processes']} processes)" if res["mode"] == "serve" and res["processes"] > 1
                                   else "")
            rows.append([str(res["streams"]), shown, f"{res['aggregate_fps']:.1f}",
                         f"{res['slowest_fps']:.1f} / {res['fastest_fps']:.1f}", str(res["dropped"]),
                         f"{res['p50_ms_median']} / {res['p50_ms_worst']}", f"{res['p99_ms_median']} / {res['p99_ms_worst']}",
                         "" if res["mean_batch"] is None else f"{res['mean_batch']:.2f}", str(res["rss_mb"]),
                         "" if res["serve_vs_separate"] is None else f"{res['serve_vs_separate']:.2f}x"])
    if args.json:
        print(json.dumps({"model": str(model), "fps": args.fps, "size": args.size, "seconds": args.seconds,
                          "serve_sources": args.serve_sources, "results": results}, indent=1))
        return
    print(f"model {model.name}, cameras at {args.fps:g} frames/s, {args.size}, serve's cameras each in a "
          f"{'child process' if args.serve_sources == 'process' else 'thread'}, counted over {args.seconds:g} s")
    print(render(["streams", "mode", "frames/s", "slowest / fastest", "dropped", "p50 ms (median / worst)",
                  "p99 ms (median / worst)", "mean batch", "memory MB", "serve / separate"], rows, align="llrrrrrrrr"))


if __name__ == "__main__":
    main()
