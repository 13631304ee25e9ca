"""``edgecv serve`` as its own process, over real HTTP: two generated streams and a network stream served by
Debian's ffmpeg share the fake detector; the API's figures, ``/metrics`` parsed with Prometheus' own parser,
snapshots and the MJPEG view, streams added and removed at run time, the token, the stream server killed
and started again (that stream reconnects, ``/readyz`` says it is down then up, the others never stop), and
SIGTERM closing every sink.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.edgecv.pipeline.test_stream import FFMPEG, _free_port, _serve, _wait_listening

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

TOKEN = "a-token-of-24-characters"


def request(url: str, *, method: str = "GET", body: dict | None = None, token: str | None = None,
            timeout: float = 10.0) -> tuple[int, bytes, str]:
    """(status, body, content type) of one HTTP request."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("content-type", "")


def get_json(url: str, **kw) -> tuple[int, dict]:
    status, body, _ = request(url, **kw)
    return status, json.loads(body)


class Served:
    """An ``edgecv serve`` process on a free port."""

    def __init__(self, config: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "edgecv", "serve", str(config), "--json"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"edgecv serve exited with {self.proc.returncode}: {self.proc.stderr.read()}")
            try:
                if request(self.url + "/healthz", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.close()
        pytest.fail("edgecv serve did not answer /healthz within 60 s")

    def wait(self, check, what: str, timeout: float = 40.0, token: str | None = None):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = get_json(self.url + "/api/streams", token=token)[1]
            if check(last):
                return last
            if self.proc.poll() is not None:
                pytest.fail(f"edgecv serve exited with {self.proc.returncode}: {self.proc.stderr.read()}")
            time.sleep(0.25)
        pytest.fail(f"{what} not reached within {timeout:.0f} s; last figures: {json.dumps(last)[:1500]}")

    def stop(self) -> tuple[int, dict, str]:
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, json.loads(out[out.index("{"):]) if "{" in out else {}, err

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def by_id(figures: dict) -> dict[str, dict]:
    return {s["id"]: s for s in figures["streams"]}


def write_config(path: Path, port: int, fake: dict, streams: list[dict], token: str | None = None) -> Path:
    import yaml

    server = {"host": "127.0.0.1", "port": port, **({"token": token} if token else {})}
    config = {"server": server, "batch": {"max_size": 4, "max_wait_ms": 5}, "out": str(path.parent / "out"),
              "streams": [{"model": str(fake["model"]), "spec": str(fake["spec"]), **s} for s in streams]}
    path.write_text(yaml.safe_dump(config))
    return path


def metric_samples(text: str) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture(scope="module")
def served(fake, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    port = _free_port()
    config = write_config(root / "serve.yaml", port, fake, [
        {"id": "cam1", "source": "synthetic:frames=0,size=96x96,fps=15", "sinks": ["jsonl"],
         "lines": ["mid=0,48,96,48"]},
        {"id": "cam2", "source": "synthetic:frames=0,size=96x96,fps=15,seed=4", "zones": ["left=0,0,48,0,48,96,0,96"]},
    ])
    s = Served(config, port)
    try:
        s.wait(lambda f: all(x["state"] == "running" and x["frames"] >= 20 for x in f["streams"]),
               "both streams running with 20 frames")
        yield s, root
    finally:
        s.close()


def test_health_and_readiness(served):
    s, _ = served
    assert get_json(s.url + "/healthz") == (200, {"status": "ok"})
    assert get_json(s.url + "/readyz") == (200, {"ready": True, "not_ready": {}})


def test_streams_share_one_model_and_report_their_figures(served):
    s, _ = served
    status, figures = get_json(s.url + "/api/streams")
    assert status == 200
    streams = by_id(figures)
    assert set(streams) == {"cam1", "cam2"}
    for st in streams.values():
        assert st["state"] == "running" and st["ready"] and st["model"] == "fake.onnx"
        assert 5.0 <= st["fps"] <= 20.0  # paced at the generator's 15 frames/s, like a camera
        # the fake detector's dog; its cat (score 0.6) starts no track, as in edgecv track
        assert st["tracks_now"] == 1 and st["tracks_total"] == 1
        assert st["latency_ms"]["p50"] > 0 and set(st["stages"]) == {"capture", "inference", "decode", "tracking", "sinks"}
    (model,) = figures["models"]
    assert sorted(model["streams"]) == ["cam1", "cam2"] and model["frames"] >= 40
    status, one = get_json(s.url + "/api/streams/cam1")
    assert status == 200 and one["id"] == "cam1" and any(e["event"] == "enter" for e in one["recent_events"])
    assert get_json(s.url + "/api/streams/nope") == (404, {"error": "no stream 'nope'; streams: cam1, cam2"})


def test_metrics_parse_and_agree_with_the_api(served):
    s, _ = served
    before = by_id(get_json(s.url + "/api/streams")[1])
    status, body, ctype = request(s.url + "/metrics")
    after = by_id(get_json(s.url + "/api/streams")[1])
    assert status == 200 and ctype.startswith("text/plain")
    m = metric_samples(body.decode())
    for sid in ("cam1", "cam2"):
        frames = m[("edgecv_stream_frames_total", (("stream", sid),))]
        assert before[sid]["frames"] <= frames <= after[sid]["frames"]
        assert m[("edgecv_stream_up", (("stream", sid),))] == 1.0
        assert m[("edgecv_stream_ready", (("stream", sid),))] == 1.0
        assert m[("edgecv_stream_tracks", (("stream", sid),))] == after[sid]["tracks_now"]
        assert m[("edgecv_stream_dropped_frames_total", (("stream", sid),))] == after[sid]["dropped"]
        count = m[("edgecv_stream_latency_ms_count", (("stream", sid),))]
        assert before[sid]["frames"] <= count <= after[sid]["frames"]
        inf_count = m[("edgecv_stage_latency_ms_count", (("stage", "inference"), ("stream", sid)))]
        assert inf_count >= before[sid]["frames"]
        assert m[("edgecv_stage_latency_ms_bucket", (("le", "+Inf"), ("stage", "inference"), ("stream", sid)))] == inf_count
    line = after["cam1"]["counts"]["mid"]
    assert m[("edgecv_line_crossings_total", (("direction", "in"), ("line", "mid"), ("stream", "cam1")))] <= line["in"]
    assert ("edgecv_zone_objects", (("stream", "cam2"), ("zone", "left"))) in m
    model = (("model", "fake.onnx"),)
    calls, frames = m[("edgecv_model_inference_ms_count", model)], m[("edgecv_model_frames_total", model)]
    assert 0 < calls <= frames and m[("edgecv_model_batch_size_sum", model)] == frames


def test_snapshot_and_mjpeg_show_the_live_frame(served):
    s, _ = served
    status, body, ctype = request(s.url + "/api/streams/cam1/snapshot.jpg")
    assert status == 200 and ctype == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (96, 96, 3)
    with urllib.request.urlopen(s.url + "/api/streams/cam2/preview.mjpeg", timeout=10) as r:
        assert r.headers["content-type"].startswith("multipart/x-mixed-replace")
        data = b""
        deadline = time.monotonic() + 10
        while data.count(b"--edgecvframe") < 4 and time.monotonic() < deadline:
            data += r.read1(65536)
    parts = [p for p in data.split(b"--edgecvframe") if b"\r\n\r\n" in p][:3]
    frames = [cv2.imdecode(np.frombuffer(p.split(b"\r\n\r\n", 1)[1].rstrip(b"\r\n"), np.uint8), cv2.IMREAD_COLOR)
              for p in parts]
    assert len(frames) == 3 and all(f is not None and f.shape == (96, 96, 3) for f in frames)
    assert any(np.abs(a.astype(int) - b).mean() > 0.5 for a, b in zip(frames, frames[1:]))  # the scene moves


@pytest.mark.parametrize("body, status, message", [
    ({"id": "cam1", "source": "synthetic", "model": "m.onnx"}, 409, "stream id 'cam1' is already running"),
    ({"id": "x", "sorce": "synthetic", "model": "m.onnx"}, 400, "stream: unknown key(s) sorce; valid keys: id, source"),
    ({"id": "x", "source": "synthetic", "model": "/no/such/model.onnx"}, 400, "stream 'x': model /no/such/model.onnx: no such file or folder"),
    ({"id": "x y", "source": "synthetic", "model": "m.onnx"}, 400, "stream id 'x y': expected letters, digits"),
    ({"id": "x", "source": "synthetic", "model": "m.onnx", "sinks": ["video"]}, 400, "sinks: unknown video"),
    ({"id": "x", "source": "synthetic", "model": "FAKE", "classes": ["unicorn"]}, 400,
     "stream 'x': classes: unknown class 'unicorn'"),
])
def test_bad_streams_are_refused_with_one_line(served, fake, body, status, message):
    s, _ = served
    if body["model"] == "FAKE":  # the served model itself
        body = {**body, "model": str(fake["model"]), "spec": str(fake["spec"])}
    got, answer = get_json(s.url + "/api/streams", method="POST", body=body)
    assert got == status and message in answer["error"] and "\n" not in answer["error"]
    assert set(by_id(get_json(s.url + "/api/streams")[1])) == {"cam1", "cam2"}


def test_a_stream_added_and_removed_at_run_time(served, fake):
    s, _ = served
    body = {"id": "cam3", "source": "synthetic:frames=0,size=64x64,fps=10", "model": str(fake["model"]),
            "spec": str(fake["spec"])}
    status, created = get_json(s.url + "/api/streams", method="POST", body=body)
    assert status == 201 and created["id"] == "cam3"
    figures = s.wait(lambda f: by_id(f).get("cam3", {}).get("frames", 0) >= 5, "cam3 producing")
    assert len(figures["models"]) == 1 and sorted(figures["models"][0]["streams"]) == ["cam1", "cam2", "cam3"]
    frames_before = {k: v["frames"] for k, v in by_id(figures).items()}
    assert get_json(s.url + "/api/streams/cam3", method="DELETE") == (200, {"removed": "cam3"})
    assert set(by_id(get_json(s.url + "/api/streams")[1])) == {"cam1", "cam2"}
    # the others go on (within the wait: a removal can take less than one of their frames)
    after = s.wait(lambda f: all(by_id(f)[k]["frames"] > frames_before[k] for k in ("cam1", "cam2")), "the others going on")
    assert all(by_id(after)[k]["state"] == "running" for k in ("cam1", "cam2"))


def test_a_stream_whose_own_settings_fail_is_failed_not_reopened_forever(served, fake):
    """A source text that cannot be read fails the stream with its one line (a lost camera is retried)."""
    s, _ = served
    body = {"id": "bad", "source": "synthetic:bogus=1", "model": str(fake["model"]), "spec": str(fake["spec"])}
    assert get_json(s.url + "/api/streams", method="POST", body=body)[0] == 201
    try:
        figures = s.wait(lambda f: by_id(f).get("bad", {}).get("state") == "failed", "the stream failed")
        bad = by_id(figures)["bad"]
        assert bad["restarts"] == 0 and "cannot read 'bogus=1'; expected synthetic[:" in bad["error"]
    finally:
        get_json(s.url + "/api/streams/bad", method="DELETE")


def test_sigterm_closes_every_sink_and_exits_0(fake, tmp_path):
    port = _free_port()
    config = write_config(tmp_path / "serve.yaml", port, fake, [
        {"id": "a", "source": "synthetic:frames=0,size=64x64,fps=20", "sinks": ["jsonl", "mot"]}])
    s = Served(config, port)
    try:
        s.wait(lambda f: by_id(f)["a"]["frames"] >= 10, "10 frames")
        code, final, err = s.stop()
    finally:
        s.close()
    assert code == 0, err
    assert final["stopped_by"] == "SIGTERM" and final["streams"][0]["state"] == "stopped"
    lines = (tmp_path / "out" / "a" / "tracks.jsonl").read_text().splitlines()
    end = json.loads(lines[-1])
    assert end["end"] == "stopped" and end["frames"] == final["streams"][0]["frames"] == len(lines) - 1
    assert (tmp_path / "out" / "a" / "tracks.mot.txt").stat().st_size > 0


def test_a_token_guards_everything_but_healthz(fake, tmp_path):
    port = _free_port()
    config = write_config(tmp_path / "serve.yaml", port, fake, [
        {"id": "a", "source": "synthetic:frames=0,size=64x64,fps=10"}], token=TOKEN)
    s = Served(config, port)
    try:
        assert request(s.url + "/healthz")[0] == 200
        for path in ("/api/streams", "/metrics", "/readyz", "/", "/api/streams/a/snapshot.jpg"):
            status, body, _ = request(s.url + path)
            assert status == 401 and b"Bearer" in body, path
            assert request(s.url + path, token="wrong-token-of-24-chars!")[0] == 401
        assert get_json(s.url + "/api/streams", token=TOKEN)[0] == 200
        assert request(s.url + f"/api/streams?token={TOKEN}")[0] == 200
        figures = s.wait(lambda f: by_id(f)["a"]["frames"] > 0, "a frame", token=TOKEN)
        assert figures["streams"][0]["source"] == "synthetic:frames=0,size=64x64,fps=10"
    finally:
        s.close()


def test_credentials_never_appear_in_the_api_or_the_log(fake, tmp_path):
    port, dead = _free_port(), _free_port()
    source = f"tcp://admin:hunter2secret@127.0.0.1:{dead}"  # nobody listens: the stream keeps reconnecting
    config = write_config(tmp_path / "serve.yaml", port, fake, [{"id": "cam", "source": source}])
    s = Served(config, port)
    try:
        figures = s.wait(lambda f: by_id(f)["cam"]["state"] == "reconnecting", "reconnecting")
        texts = [json.dumps(figures), request(s.url + "/metrics")[1].decode(), request(s.url + "/api/events")[1].decode(),
                 json.dumps(get_json(s.url + "/api/streams/cam")[1])]
        assert by_id(figures)["cam"]["source"] == f"tcp://***@127.0.0.1:{dead}"
        code, final, err = s.stop()
    finally:
        s.close()
    assert code == 0
    leaks = [t for t in texts + [err, json.dumps(final)] if "hunter2secret" in t]
    assert not leaks, leaks


@pytest.mark.skipif(FFMPEG is None, reason="needs ffmpeg (apt-get install ffmpeg)")
def test_a_network_stream_reconnects_while_the_others_never_stop(fake, shared_data, tmp_path):
    video = shared_data / "video" / "vtest.avi"
    port, stream_port = _free_port(), _free_port()
    server = _serve(video, stream_port)
    config = write_config(tmp_path / "serve.yaml", port, fake, [
        # credentials in the URL: FFmpeg's tcp protocol ignores them; they must never be shown
        {"id": "net", "source": f"tcp://viewer:s3cretpass@127.0.0.1:{stream_port}", "ready_s": 1.5},
        {"id": "gen1", "source": "synthetic:frames=0,size=64x64,fps=15"},
        {"id": "gen2", "source": "synthetic:frames=0,size=64x64,fps=15,seed=9"},
    ])
    s = None
    try:
        _wait_listening(stream_port, server)
        s = Served(config, port)
        s.wait(lambda f: by_id(f)["net"]["frames"] >= 10 and by_id(f)["net"]["ready"], "the network stream running")
        assert get_json(s.url + "/readyz")[0] == 200
        server.kill()
        server.wait()
        down = time.monotonic()
        status = None
        while time.monotonic() - down < 30:
            status, body = get_json(s.url + "/readyz")
            if status == 503:
                break
            time.sleep(0.2)
        assert status == 503 and "net" in body["not_ready"] and "gen1" not in body["not_ready"]
        gens = {k: v["frames"] for k, v in by_id(get_json(s.url + "/api/streams")[1]).items() if k != "net"}
        server = _serve(video, stream_port)
        _wait_listening(stream_port, server)
        back = s.wait(lambda f: by_id(f)["net"]["ready"] and by_id(f)["net"]["reconnects"] + by_id(f)["net"]["restarts"] >= 1,
                      "the network stream back", timeout=60)
        assert get_json(s.url + "/readyz")[0] == 200
        streams = by_id(back)
        assert all(streams[k]["frames"] > gens[k] and streams[k]["state"] == "running" for k in gens)
        m = metric_samples(request(s.url + "/metrics")[1].decode())
        assert m[("edgecv_stream_reconnects_total", (("stream", "net"),))] >= 1
        assert streams["net"]["source"] == f"tcp://***@127.0.0.1:{stream_port}"
        code, final, err = s.stop()
        assert code == 0 and "stopped delivering frames" in err  # the reconnection was logged...
        assert "s3cretpass" not in err + json.dumps(final) + json.dumps(back)  # ...without the password
    finally:
        if s is not None:
            s.close()
        server.kill()
        server.wait()


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecv", "serve", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_a_bad_config_is_one_line_and_exit_2(tmp_path):
    config = tmp_path / "serve.yaml"
    config.write_text("streams:\n  - {id: a, source: synthetic, model: m.onnx}\nsever: {port: 1}\n")
    done = run_cli(str(config))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"edgecv: error: serve config {config} line 3: unknown field 'sever' (did you mean 'server'?); valid "
        "fields: streams, server, batch, mqtt, swap, out"]


def test_check_loads_the_models_and_exits(fake, tmp_path):
    config = write_config(tmp_path / "serve.yaml", _free_port(), fake, [
        {"id": "a", "source": "synthetic:frames=0,size=64x64"}, {"id": "b", "source": "synthetic:frames=0,size=64x64"}])
    done = run_cli(str(config), "--check")
    assert done.returncode == 0, done.stderr
    assert f"{config}: 2 stream(s), 1 model(s): fake.onnx (onnxruntime)" in done.stdout


def test_a_port_in_use_is_one_line(fake, tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(tmp_path / "serve.yaml", port, fake, [{"id": "a", "source": "synthetic:frames=0,size=64x64"}])
        done = run_cli(str(config))
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == f"edgecv: error: cannot listen on 127.0.0.1:{port} (in use, or not an address here)"
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_restart_starts_the_stream_again(served):
    s, _ = served
    before = by_id(get_json(s.url + "/api/streams")[1])["cam2"]
    status, again = get_json(s.url + "/api/streams/cam2/restart", method="POST")
    assert status == 200 and again["id"] == "cam2" and again["frames"] == 0
    after = s.wait(lambda f: by_id(f)["cam2"]["frames"] >= 5 and by_id(f)["cam2"]["state"] == "running", "cam2 again")
    assert by_id(after)["cam2"]["frames"] < before["frames"] + 5 and by_id(after)["cam1"]["state"] == "running"


def test_a_real_detector_on_a_real_street_video(shared_data, tmp_path):
    """SSD MobileNet v1 COCO as shipped (its labelmap.txt as labels_file, people only) on vtest.avi, paced at the
    file's 10 frames/s: people are tracked and cross the line, the snapshot is the video's size."""
    model = shared_data / "models" / "ssd_mobilenet_v1_coco_quant"
    port = _free_port()
    config = tmp_path / "serve.yaml"
    config.write_text(json.dumps({"server": {"port": port}, "out": str(tmp_path / "out"), "streams": [
        {"id": "street", "source": str(shared_data / "video" / "vtest.avi"), "model": str(model / "detect.tflite"),
         "spec": "ssd-mobilenet-v1-coco", "labels_file": str(model / "labelmap.txt"), "classes": ["person"],
         "lines": ["crossing=0,300,768,300"]}]}))  # JSON is YAML
    s = Served(config, port)
    try:
        figures = s.wait(lambda f: by_id(f)["street"]["frames"] >= 150, "150 frames of the street", timeout=90)
        status, body, _ = request(s.url + "/api/streams/street/snapshot.jpg")
    finally:
        s.close()
    street = by_id(figures)["street"]
    assert street["state"] == "running" and street["model"] == "detect.tflite"
    assert street["tracks_total"] >= 3 and sum(street["counts"]["crossing"].values()) >= 1
    assert 7.0 <= street["fps"] <= 12.0  # the file's own 10 frames/s
    assert status == 200 and cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape == (576, 768, 3)
