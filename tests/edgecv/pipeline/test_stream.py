"""A real network stream: Debian's ffmpeg serves ../shared/data/video/vtest.avi over TCP on 127.0.0.1, and
``edgecv track`` reads it as a separate process. The server is killed mid-stream and started again; the
pipeline must reconnect and carry on, without reusing track ids and without losing what it had written.

``.ci/run`` installs ffmpeg and sets EDGECV_CI=1, so that in CI a missing ffmpeg fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.edgecv.detection.test_detector import make_fake_detector, write_fake_spec

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

FFMPEG = shutil.which("ffmpeg")
if FFMPEG is None and os.environ.get("EDGECV_CI"):
    pytest.fail("ffmpeg is missing: .ci/run installs Debian's ffmpeg for the network stream test", pytrace=False)
pytestmark = pytest.mark.skipif(FFMPEG is None, reason="needs ffmpeg (apt-get install ffmpeg)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(video: Path, port: int) -> subprocess.Popen:
    """ffmpeg streaming ``video`` in real time as MPEG-TS to the first client on the port."""
    return subprocess.Popen([FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-i", str(video), "-c:v", "mpeg4",
                             "-q:v", "5", "-f", "mpegts", f"tcp://127.0.0.1:{port}?listen=1"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_listening(port: int, server: subprocess.Popen, timeout: float = 15.0) -> None:
    """Until ffmpeg listens on ``port`` (read from /proc/net/tcp: a probe connection would be its one client)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"ffmpeg exited with {server.returncode} before listening")
        with open("/proc/net/tcp") as table:
            rows = [line.split() for line in table.readlines()[1:]]
        if any(row[1].endswith(f":{port:04X}") and row[3] == "0A" for row in rows):  # 0A: LISTEN
            return
        time.sleep(0.05)
    pytest.fail(f"ffmpeg did not listen on port {port} within {timeout:.0f} s")


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text()
    return text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]  # a line being written is not yet one


def _wait_for_lines(path: Path, count: int, client: subprocess.Popen, timeout: float = 40.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = _lines(path)
        if len(lines) >= count:
            return lines
        if client.poll() is not None:
            pytest.fail(f"edgecv track exited early with {client.returncode}: {client.stderr.read()}")
        time.sleep(0.2)
    pytest.fail(f"{path.name} reached only {len(_lines(path))} lines of {count} in {timeout:.0f} s")


def test_stream_survives_a_server_restart(shared_data, tmp_path):
    video = shared_data / "video" / "vtest.avi"
    if not video.exists():
        pytest.skip(f"{video} not found")
    model, spec = make_fake_detector(tmp_path / "fake.onnx"), write_fake_spec(tmp_path / "fake.yaml")
    port, out = _free_port(), tmp_path / "out"
    url = f"tcp://127.0.0.1:{port}"
    server = _serve(video, port)
    _wait_listening(port, server)  # else the client may knock before ffmpeg opens the port and stop at once
    client = subprocess.Popen([sys.executable, "-m", "edgecv", "track", "--model", str(model), "--spec", str(spec),
                               "--source", url, "--out", str(out), "--json", "--reconnect", "12"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        jsonl = out / "tracks.jsonl"
        before = _wait_for_lines(jsonl, 15, client)  # 1.5 s of the 10 fps video
        server.kill()
        server.wait()
        time.sleep(2.0)  # longer than the tracker keeps a lost track (1 s): the old track must end
        assert client.poll() is None, "the pipeline died with its stream"
        server = _serve(video, port)
        after = _wait_for_lines(jsonl, len(before) + 15, client)
        client.send_signal(signal.SIGTERM)
        stdout, stderr = client.communicate(timeout=60)
    finally:
        for proc in (client, server):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert client.returncode == 130, stderr  # stopped by SIGTERM, every output closed
    summary = json.loads(stdout)
    assert summary["stopped_by"] == "SIGTERM" and summary["source"]["kind"] == "stream"
    assert summary["capture"]["reconnects"] >= 1 and summary["capture"]["events"][0]["event"] == "reconnected"
    assert summary["source"]["fps"] == pytest.approx(10.0) and summary["source"]["size"] == [768, 576]

    *records, end = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert end["end"] == "stopped" and end["expected_frames"] is None  # live: no declared count
    assert len(records) == summary["frames"] >= len(after)
    # nothing written before the outage was lost or rewritten
    assert jsonl.read_text().splitlines()[: len(before)] == before
    frames = [r["frame"] for r in records]
    times = [r["time_s"] for r in records]
    assert frames == sorted(set(frames)) and all(b > a for a, b in zip(times, times[1:]))
    gap = max(b - a for a, b in zip(times, times[1:]))
    assert gap >= 2.0, "the outage shows as a gap in the frame times"
    # the track before the outage ended there; the one after it has a new id
    ids_before = {t["id"] for r in records[: len(before)] for t in r["tracks"]}
    split = next(i for i, (a, b) in enumerate(zip(times, times[1:])) if b - a == gap) + 1
    ids_after = {t["id"] for r in records[split:] for t in r["tracks"]}
    assert ids_before and ids_after and min(ids_after) > max(ids_before)
    exits = [e for r in records for e in r["events"] if e["kind"] == "exit"]
    assert {e["track_id"] for e in exits} >= ids_before
    # the annotated video was closed cleanly and holds every processed frame
    mp4 = out / f"127.0.0.1_{port}.mp4"
    cap = cv2.VideoCapture(str(mp4))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert count == summary["frames"]
    mot = (out / "tracks.mot.txt").read_text().splitlines()
    assert len(mot) == sum(len(r["tracks"]) for r in records)
