"""``edgecv serve`` with ``server.processes: 2`` as its own process, over real HTTP: three generated streams split
over two worker processes behind one API (with a token); the gathered figures, ``/metrics`` merged and parsed
with Prometheus' own parser, a stream's own routes, streams added and removed at run time, a worker killed
(it starts again, ``/readyz`` names its streams meanwhile, the other worker's streams never stop), and SIGTERM
closing every sink of both workers. The merging of exposition texts is checked on its own first.
"""

from __future__ import annotations

import doctest
import json
import os
import signal
import time
import urllib.request

import numpy as np
import pytest

from tests.edgecv.pipeline.test_stream import _free_port
from tests.edgecv.service.test_serve import TOKEN, Served, by_id, get_json, metric_samples, request, write_config

cv2 = pytest.importorskip("cv2")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")


def test_merged_metrics_keep_every_workers_series_apart():
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    import edgecv.service.front as front
    from edgecv.service.front import merge_metrics

    assert doctest.testmod(front).failed == 0
    texts = []
    for worker, frames in enumerate((5, 7)):
        registry = CollectorRegistry()
        Counter("edgecv_model_frames", "frames", ["model"], registry=registry).labels("m.onnx").inc(frames)
        Gauge("edgecv_stream_up", "up", ["stream"], registry=registry).labels(f"cam{worker}").set(1)
        h = Histogram("edgecv_model_inference_ms", "ms", ["model"], buckets=(1, 10), registry=registry)
        h.labels("m.onnx").observe(0.5 + worker * 5)
        texts.append(generate_latest(registry).decode())
    text = merge_metrics(texts + [""]).decode()  # a worker that did not answer adds nothing
    m = metric_samples(text)
    assert m[("edgecv_model_frames_total", (("model", "m.onnx"), ("process", "0")))] == 5
    assert m[("edgecv_model_frames_total", (("model", "m.onnx"), ("process", "1")))] == 7
    assert m[("edgecv_stream_up", (("process", "1"), ("stream", "cam1")))] == 1
    assert m[("edgecv_model_inference_ms_bucket", (("le", "1.0"), ("model", "m.onnx"), ("process", "0")))] == 1
    assert m[("edgecv_model_inference_ms_bucket", (("le", "1.0"), ("model", "m.onnx"), ("process", "1")))] == 0
    assert text.count("# TYPE edgecv_model_inference_ms histogram") == 1


@pytest.fixture(scope="module")
def split(fake, tmp_path_factory):
    root = tmp_path_factory.mktemp("front")
    port = _free_port()
    config = write_config(root / "serve.yaml", port, fake, [
        {"id": "cam1", "source": "synthetic:frames=0,size=96x96,fps=15", "sinks": ["jsonl"]},
        {"id": "cam2", "source": "synthetic:frames=0,size=96x96,fps=15,seed=4", "sinks": ["jsonl"]},
        {"id": "cam3", "source": "synthetic:frames=0,size=64x64,fps=15,seed=5", "sinks": ["jsonl"]},
    ], token=TOKEN)
    text = config.read_text().replace("server:\n", "server:\n  processes: 2\n")
    config.write_text(text)
    s = Served(config, port)
    try:
        s.wait(lambda f: all(x["state"] == "running" and x["frames"] >= 10 for x in f["streams"]),
               "three streams running with 10 frames", token=TOKEN)
        yield s, root
    finally:
        s.close()


def api(s, path: str, **kw):
    return get_json(s.url + path, token=TOKEN, **kw)


def test_the_streams_run_in_two_processes_behind_one_api(split):
    s, _ = split
    assert request(s.url + "/api/streams")[0] == 401 and request(s.url + "/healthz")[0] == 200
    status, figures = api(s, "/api/streams")
    assert status == 200
    assert {k: v["process"] for k, v in by_id(figures).items()} == {"cam1": 0, "cam2": 1, "cam3": 0}
    assert sorted((m["process"], sorted(m["streams"])) for m in figures["models"]) == [(0, ["cam1", "cam3"]),
                                                                                          (1, ["cam2"])]
    assert len({os.getpid(), *[m["process"] for m in figures["models"]]}) == 3
    assert api(s, "/readyz") == (200, {"ready": True, "not_ready": {}})
    status, one = api(s, "/api/streams/cam2")
    assert status == 200 and one["id"] == "cam2" and "recent_events" in one
    assert api(s, "/api/streams/nope") == (404, {"error": "no stream 'nope'; streams: cam1, cam2, cam3"})
    status, body, ctype = request(s.url + "/api/streams/cam2/snapshot.jpg", token=TOKEN)
    assert status == 200 and ctype == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape == (96, 96, 3)
    req = urllib.request.Request(s.url + "/api/streams/cam3/preview.mjpeg", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["content-type"].startswith("multipart/x-mixed-replace")
        data, deadline = b"", time.monotonic() + 10
        while data.count(b"--edgecvframe") < 3 and time.monotonic() < deadline:
            data += r.read1(65536)
    assert data.count(b"--edgecvframe") >= 3 and b"Content-Type: image/jpeg" in data


def test_merged_metrics_agree_with_the_api(split):
    s, _ = split
    before = by_id(api(s, "/api/streams")[1])
    status, body, ctype = request(s.url + "/metrics", token=TOKEN)
    after = by_id(api(s, "/api/streams")[1])
    assert status == 200 and ctype.startswith("text/plain")
    m = metric_samples(body.decode())
    for sid, process in (("cam1", "0"), ("cam2", "1"), ("cam3", "0")):
        frames = m[("edgecv_stream_frames_total", (("process", process), ("stream", sid)))]
        assert before[sid]["frames"] <= frames <= after[sid]["frames"]
        assert m[("edgecv_stream_ready", (("process", process), ("stream", sid)))] == 1.0
    for process in ("0", "1"):  # each worker's own copy of the model
        assert m[("edgecv_model_frames_total", (("model", "fake.onnx"), ("process", process)))] > 0


def test_streams_added_and_removed_go_to_the_worker_with_the_fewest(split, fake):
    s, _ = split
    body = {"id": "cam4", "source": "synthetic:frames=0,size=64x64,fps=10", "model": str(fake["model"]),
            "spec": str(fake["spec"])}
    assert api(s, "/api/streams", method="POST", body={**body, "id": "cam2"}) == (
        409, {"error": "stream id 'cam2' is already running; remove it first"})
    assert api(s, "/api/streams", method="POST", body={**body, "sorce": "x"})[0] == 400
    status, created = api(s, "/api/streams", method="POST", body=body)
    assert status == 201 and created["id"] == "cam4"
    figures = s.wait(lambda f: by_id(f).get("cam4", {}).get("frames", 0) >= 3, "cam4 producing", token=TOKEN)
    assert by_id(figures)["cam4"]["process"] == 1
    assert api(s, "/api/streams/cam4/restart", method="POST")[0] == 200
    assert api(s, "/api/streams/cam4", method="DELETE") == (200, {"removed": "cam4"})
    assert set(by_id(api(s, "/api/streams")[1])) == {"cam1", "cam2", "cam3"}


def test_a_killed_worker_starts_again_and_the_others_never_stop(split):
    s, _ = split
    import psutil

    workers = [p for p in psutil.Process(s.proc.pid).children() if "edgecv.service.worker" in " ".join(p.cmdline())]
    assert len(workers) == 2
    first = by_id(api(s, "/api/streams")[1])
    os.kill(workers[1].pid, signal.SIGKILL)  # whichever worker it is: /readyz names its streams
    down = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status, ready = api(s, "/readyz")
        if status == 503:
            down = ready
            break
        time.sleep(0.1)
    assert down is not None and set(down["not_ready"]) in ({"cam2"}, {"cam1", "cam3"}), down
    back = s.wait(lambda f: all(x["state"] == "running" and x.get("frames", 0) >= 3 for x in f["streams"]),
                  "every stream running again", token=TOKEN)
    assert api(s, "/readyz")[0] == 200
    kinds = [e["kind"] for e in api(s, "/api/events")[1]["events"] if e["stream"] == "_service"]
    assert kinds[-2:] == ["worker_down", "worker_up"]
    survivors = set(by_id(back)) - set(down["not_ready"])
    assert all(by_id(back)[sid]["frames"] > first[sid]["frames"] for sid in survivors)
    assert all(by_id(back)[sid]["restarts"] == 0 for sid in survivors)


def test_sigterm_stops_both_workers_and_closes_every_sink(fake, tmp_path):
    port = _free_port()
    config = write_config(tmp_path / "serve.yaml", port, fake, [
        {"id": "a", "source": "synthetic:frames=0,size=64x64,fps=20", "sinks": ["jsonl"]},
        {"id": "b", "source": "synthetic:frames=0,size=64x64,fps=20,seed=3", "sinks": ["jsonl"]}])
    config.write_text(config.read_text().replace("server:\n", "server:\n  processes: 2\n"))
    s = Served(config, port)
    try:
        s.wait(lambda f: all(x["frames"] >= 10 for x in f["streams"]), "10 frames each")
        code, final, err = s.stop()
    finally:
        s.close()
    assert code == 0, err
    assert final["stopped_by"] == "SIGTERM" and [x["id"] for x in final["streams"]] == ["a", "b"]
    for st in final["streams"]:
        lines = (tmp_path / "out" / st["id"] / "tracks.jsonl").read_text().splitlines()
        end = json.loads(lines[-1])
        assert st["state"] == "stopped" and end["end"] == "stopped" and end["frames"] == st["frames"] == len(lines) - 1


def test_a_stream_a_worker_cannot_start_is_one_line_and_nothing_is_left_running(fake, tmp_path):
    from tests.edgecv.service.test_serve import run_cli

    config = write_config(tmp_path / "serve.yaml", _free_port(), fake, [
        {"id": "a", "source": "synthetic:frames=0,size=64x64,fps=10"},
        {"id": "b", "source": "synthetic:frames=0,size=64x64,fps=10", "model": str(tmp_path / "none.onnx")}])
    config.write_text(config.read_text().replace("server:\n", "server:\n  processes: 2\n"))
    before = worker_pids()
    done = run_cli(str(config))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"edgecv: error: stream 'b': model {tmp_path / 'none.onnx'}: no such "
                                                "file or folder"]
    assert worker_pids() <= before


def worker_pids() -> set[int]:
    import psutil

    pids = set()
    for p in psutil.process_iter():
        try:
            if "edgecv.service.worker" in " ".join(p.cmdline()):
                pids.add(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return pids
