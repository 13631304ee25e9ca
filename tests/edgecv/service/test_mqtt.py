"""Events to a real Mosquitto broker (Debian's ``mosquitto``, started here): the disk queue's order, bound and
restart; every event produced while the broker is down arrives once it is back, once each and in order; and
a served stream's events reach their topic.

``.ci/run`` installs mosquitto and sets EDGECV_CI=1, so that in CI a missing broker fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from edgecv.service.mqtt import DiskQueue
from tests.edgecv.pipeline.test_stream import _free_port, _wait_listening

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
need_broker = pytest.mark.skipif(MOSQUITTO is None, reason="needs mosquitto (apt-get install mosquitto)")
if MOSQUITTO is None and os.environ.get("EDGECV_CI"):
    pytest.fail("mosquitto is missing: .ci/run installs Debian's mosquitto for the MQTT tests", pytrace=False)


def test_disk_queue_keeps_order_bound_and_what_was_not_delivered(tmp_path):
    q = DiskQueue(tmp_path, max_items=3)
    assert [q.put({"n": i}) for i in range(4)] == [True, True, True, False]
    assert q.peek(0) == {"n": 0}
    q.done()
    assert q.peek(0) == {"n": 1} and len(q) == 2
    q.close()
    again = DiskQueue(tmp_path, max_items=3)  # a restart: what was not delivered is back, in order
    assert [again.peek(0), len(again)] == [{"n": 1}, 2]
    again.done()
    again.done()
    assert len(again) == 0 and again.peek(0.01) is None
    assert (tmp_path / "queue.jsonl").read_text() == ""  # emptied once everything was delivered
    again.close()


def test_disk_queue_skips_a_line_cut_short_by_a_crash(tmp_path):
    (tmp_path / "queue.jsonl").write_text('{"n": 1}\n{"n": 2}\n{"n": ')
    q = DiskQueue(tmp_path, max_items=10)
    assert [q.peek(0), len(q)] == [{"n": 1}, 2]
    q.close()


class Broker:
    """Mosquitto on a free port of 127.0.0.1, keeping its sessions on disk (so that a subscriber's session
    and the messages queued for it survive a restart)."""

    def __init__(self, folder: Path) -> None:
        self.port = _free_port()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {folder}/\nautosave_interval 1\n")
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        _wait_listening(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


class Subscriber:
    """A paho client with a lasting session (QoS 1) that collects every message on ``topic``."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="edgecv-test-sub",
                                  clean_session=False)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.subscribed = threading.Event()

        def on_connect(client, _u, _f, reason, _p):
            if not reason.is_failure:
                client.subscribe(topic, qos=1)

        def on_subscribe(*_):
            self.subscribed.set()

        def on_message(_c, _u, msg):
            with self.lock:
                self.messages.append((msg.topic, json.loads(msg.payload)))

        self.client.on_connect, self.client.on_subscribe, self.client.on_message = on_connect, on_subscribe, on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the test subscriber could not subscribe"

    def seqs(self) -> list[int]:
        with self.lock:
            return [m["seq"] for _, m in self.messages]

    def wait_for(self, count: int, timeout: float = 40.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(set(self.seqs())) >= count:
                return self.seqs()
            time.sleep(0.1)
        pytest.fail(f"{len(set(self.seqs()))} of {count} events arrived within {timeout:.0f} s")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@need_broker
def test_events_made_while_the_broker_is_down_arrive_once_in_order(tmp_path):
    pytest.importorskip("paho.mqtt.client")
    from edgecv.service.config import MqttConfig
    from edgecv.service.mqtt import MqttPublisher

    broker = Broker(tmp_path / "broker")
    sub = Subscriber(broker.port, "cams/#")
    pub = MqttPublisher(MqttConfig(host="127.0.0.1", port=broker.port, prefix="cams", queue_max=100),
                        folder=tmp_path / "queue").start()
    try:
        for i in range(20):
            pub.publish("door", "track", {"stream": "door", "kind": "track", "event": "enter", "track_id": i})
        assert sub.wait_for(20) == list(range(1, 21))
        broker.stop()
        for i in range(20, 50):
            pub.publish("door", "track", {"stream": "door", "kind": "track", "event": "enter", "track_id": i})
        time.sleep(1.0)
        assert len(pub.queue) >= 29 and not pub.connected  # kept on disk, nothing lost
        broker.start()
        seqs = sub.wait_for(50, timeout=60)
    finally:
        pub.stop()
        sub.close()
        broker.stop()
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == list(range(1, 51))  # every event, in order
    assert len(seqs) - len(first_seen) <= 1  # QoS 1: at most the one in flight at the stop comes twice
    assert (pub.sent, pub.dropped) == (50, 0)
    with sub.lock:
        assert {t for t, _ in sub.messages} == {"cams/door"}
        assert [m["track_id"] for _, m in sub.messages][:50] == list(range(50))


@need_broker
def test_a_full_queue_drops_new_events_and_counts_them(tmp_path):
    pytest.importorskip("paho.mqtt.client")
    from edgecv.service.config import MqttConfig
    from edgecv.service.mqtt import MqttPublisher

    pub = MqttPublisher(MqttConfig(host="127.0.0.1", port=_free_port(), queue_max=5), folder=tmp_path).start()
    try:
        for i in range(8):
            pub.publish("a", "state", {"stream": "a", "kind": "state", "state": "running"})
        assert (len(pub.queue), pub.dropped, pub.sent) == (5, 3, 0)
    finally:
        pub.stop()
    lines = (tmp_path / "queue.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3, 4, 5]


@need_broker
def test_a_served_stream_sends_its_events_to_its_topic(tmp_path):
    pytest.importorskip("paho.mqtt.client")
    pytest.importorskip("onnxruntime")
    from edgecv.service.config import MqttConfig, ServeConfig, StreamConfig
    from edgecv.service.service import Service
    from tests.edgecv.detection.test_detector import make_fake_detector, write_fake_spec

    broker = Broker(tmp_path / "broker")
    sub = Subscriber(broker.port, "site/#")
    model, spec = make_fake_detector(tmp_path / "fake.onnx"), write_fake_spec(tmp_path / "fake.yaml")
    config = ServeConfig(streams=(StreamConfig(id="cam", source="synthetic:frames=0,size=96x96,fps=15", model=str(model),
                                               spec=str(spec)),),
                         mqtt=MqttConfig(host="127.0.0.1", port=broker.port, prefix="site"), out=str(tmp_path / "out"))
    service = Service(config).start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with sub.lock:
                kinds = [(m["kind"], m.get("event") or m.get("state")) for _, m in sub.messages]
            if ("state", "running") in kinds and ("track", "enter") in kinds:
                break
            time.sleep(0.1)
    finally:
        service.stop()
        time.sleep(0.5)
        sub.close()
        broker.stop()
    with sub.lock:
        messages = list(sub.messages)
    assert {t for t, _ in messages} == {"site/cam"}
    enter = next(m for _, m in messages if m.get("event") == "enter")
    assert enter["stream"] == "cam" and enter["track_id"] == 1 and len(enter["xyxy"]) == 4
    states = [m["state"] for _, m in messages if m["kind"] == "state"]
    assert states[0] == "running" and states[-1] == "stopped"  # the stop was sent before the service ended
