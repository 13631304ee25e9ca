"""Events of ``edgecv serve`` to an MQTT broker (paho-mqtt), QoS 1, kept on disk while the broker is away.

Every event (a track's enter and exit, line crossings, zone entries and exits, a stream's state changes) is
appended to a bounded queue on disk (:class:`DiskQueue`: JSON lines and the count delivered, so a restart
of the service sends what the broker never acknowledged), then published by one thread, one message at a
time, in order, to ``PREFIX/STREAM_ID`` with QoS 1. A message is taken off the queue once the broker has
acknowledged it (paho resends it itself after a reconnection). While the broker is unreachable, events wait
in the queue; when it is full, new events are dropped, counted (``dropped``) and logged.

Payload (JSON): ``seq`` (this service's event number, from 1, kept across restarts), ``stream``, ``kind``
(``track`` or ``state``), ``time`` (Unix seconds), and for ``track``: ``event`` (enter, exit, line_in,
line_out, zone_enter, zone_exit), ``track_id``, ``frame``, ``time_s``, ``class_id``, ``xyxy``, ``where``; for
``state``: ``state`` and ``error``. QoS 1 delivers at least once: a consumer drops a ``seq`` it has seen.

Example:
    >>> publisher = MqttPublisher(MqttConfig(host="localhost"), folder=Path("runs/serve/mqtt")).start()  # doctest: +SKIP
    >>> service = Service(config, listeners=[publisher.publish])                                         # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from edgecv.errors import OutputError
from edgecv.service.config import MqttConfig

log = logging.getLogger(__name__)


class DiskQueue:
    """Records kept in order on disk until :meth:`done` says the oldest was delivered: ``queue.jsonl`` holds
    them, ``delivered`` how many of its lines are done (rewritten atomically). At most ``max_items`` wait;
    :meth:`put` refuses more (returns False). The file is emptied once every record in it is delivered.

    Example:
        >>> q = DiskQueue(Path(tmp), max_items=2)                              # doctest: +SKIP
        >>> q.put({"a": 1}), q.put({"b": 2}), q.put({"c": 3})                  # doctest: +SKIP
        (True, True, False)
    """

    def __init__(self, folder: Path, *, max_items: int) -> None:
        self.folder = Path(folder)
        self.max_items = max_items
        self._cond = threading.Condition()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot keep the event queue in {self.folder}: {exc.strerror or exc}") from None
        self._lines_path, self._done_path = self.folder / "queue.jsonl", self.folder / "delivered"
        self._items: list[dict[str, Any]] = []
        self._delivered = 0  # lines of the file already delivered
        if self._lines_path.exists():
            lines = self._lines_path.read_text(encoding="utf-8").splitlines()
            try:
                self._delivered = int(self._done_path.read_text().strip() or 0)
            except (OSError, ValueError):
                self._delivered = 0
            for line in lines[self._delivered:]:
                try:
                    self._items.append(json.loads(line))
                except ValueError:  # a line cut short by a crash mid-write: the record was never whole
                    log.warning("event queue %s: dropped a line cut short", self._lines_path)
        self._file = open(self._lines_path, "a", encoding="utf-8")

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, record: dict[str, Any]) -> bool:
        """Append ``record`` (durably: flushed and synced); False when the queue is full."""
        with self._cond:
            if len(self._items) >= self.max_items:
                return False
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
            self._items.append(record)
            self._cond.notify_all()
            return True

    def peek(self, timeout: float) -> dict[str, Any] | None:
        """The oldest record not yet delivered, waiting up to ``timeout`` seconds for one; None if none came."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items[0] if self._items else None

    def done(self) -> None:
        """The oldest record was delivered."""
        with self._cond:
            if not self._items:
                return
            self._items.pop(0)
            self._delivered += 1
            if not self._items:  # everything delivered: start the file again
                self._file.close()
                self._file = open(self._lines_path, "w", encoding="utf-8")
                self._delivered = 0
            tmp = self._done_path.with_suffix(".tmp")
            tmp.write_text(str(self._delivered))
            os.replace(tmp, self._done_path)

    def close(self) -> None:
        with self._cond:
            self._file.close()


class MqttPublisher:
    """Publishes service events to MQTT (see the module docstring). ``publish(stream_id, kind, record)`` is
    the service listener; ``connected``, ``sent``, ``dropped`` and ``len(queue)`` are its figures."""

    def __init__(self, config: MqttConfig, *, folder: Path) -> None:
        from edgecv.deps import require

        self.mqtt = require("paho.mqtt.client", extra="serve", purpose="send events to MQTT", package="paho-mqtt")
        self.config = config
        self.queue = DiskQueue(folder, max_items=config.queue_max)
        self.sent = 0
        self.dropped = 0
        self._seq_path = Path(folder) / "seq"
        try:
            self._seq = int(self._seq_path.read_text().strip() or 0)
        except (OSError, ValueError):
            self._seq = 0
        self._seq_lock = threading.Lock()
        self._stop = threading.Event()
        self._acked: set[int] = set()
        self._acked_cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._warned_full = 0.0
        self.client = self._client()

    @property
    def connected(self) -> bool:
        return bool(self.client.is_connected())

    def _client(self) -> Any:
        m = self.mqtt
        c = self.config
        client = m.Client(callback_api_version=m.CallbackAPIVersion.VERSION2, client_id=c.client_id or "",
                          clean_session=True)
        client.max_inflight_messages_set(1)  # one at a time: in order, whatever reconnects happen
        client.reconnect_delay_set(min_delay=1, max_delay=8)
        if c.username is not None:
            client.username_pw_set(c.username, c.password)
        client.enable_logger(logging.getLogger("edgecv.service.mqtt.paho"))

        def on_publish(_client, _userdata, mid, _reason, _properties) -> None:
            with self._acked_cond:
                self._acked.add(mid)
                self._acked_cond.notify_all()

        def on_connect(_client, _userdata, _flags, reason, _properties) -> None:
            if reason.is_failure:
                log.warning("MQTT broker %s:%d refused the connection: %s", c.host, c.port, reason)
            else:
                log.info("MQTT broker %s:%d connected", c.host, c.port)

        client.on_publish, client.on_connect = on_publish, on_connect
        return client

    def start(self) -> "MqttPublisher":
        self.client.connect_async(self.config.host, self.config.port, keepalive=15)
        self.client.loop_start()
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop publishing (what is still queued stays on disk for the next start)."""
        self._stop.set()
        with self._acked_cond:
            self._acked_cond.notify_all()
        self._thread.join(timeout)
        self.client.loop_stop()
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001  (closing a connection that is already gone)
            pass
        self.queue.close()

    def publish(self, stream_id: str, kind: str, record: dict[str, Any]) -> None:
        """Queue one event (the service's listener); never blocks on the broker."""
        with self._seq_lock:
            self._seq += 1
            message = {"seq": self._seq, **record}
            self._seq_path.write_text(str(self._seq))
        if not self.queue.put(message):
            self.dropped += 1
            now = time.monotonic()
            if now - self._warned_full > 10.0:
                self._warned_full = now
                log.warning("MQTT event queue full (%d events): dropping new events (%d so far) until the broker "
                            "%s:%d takes them", self.config.queue_max, self.dropped, self.config.host, self.config.port)

    def _run(self) -> None:
        prefix = self.config.prefix
        while not self._stop.is_set():
            message = self.queue.peek(timeout=0.5)
            if message is None:
                continue
            if not self.connected:
                self._stop.wait(0.2)
                continue
            topic = f"{prefix}/{message.get('stream', '_service')}"
            info = self.client.publish(topic, json.dumps(message, separators=(",", ":")), qos=1)
            if info.rc == self.mqtt.MQTT_ERR_QUEUE_SIZE:
                self._stop.wait(0.2)
                continue
            # paho keeps the message and resends it after a reconnection: wait for its acknowledgement
            with self._acked_cond:
                while info.mid not in self._acked and not self._stop.is_set():
                    self._acked_cond.wait(0.5)
                if info.mid not in self._acked:
                    return  # stopping: the message stays queued on disk
                self._acked.discard(info.mid)
            self.queue.done()
            self.sent += 1
