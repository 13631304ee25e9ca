"""The service behind ``edgecv serve``: streams, the models they share, and what they report.

Streams whose model, spec, labels and score threshold are the same share one loaded model through a
:class:`~edgecv.service.batching.Batcher` (a folder is measured once, as ``edgecv track`` does, and its fastest
artifact shared). Streams can be added, removed and restarted while the others run; a model no stream
uses any more is unloaded. Every track event and change of a stream's state goes to the ``listeners``
(the MQTT publisher, the web page's event list) as ``(stream_id, kind, payload)``.

Example:
    >>> service = Service(load_config("serve.yaml")).start()          # doctest: +SKIP
    >>> [s["state"] for s in service.status()]                         # doctest: +SKIP
    ['running', 'running']
    >>> service.stop()                                                 # doctest: +SKIP
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgecv.errors import ConfigError
from edgecv.service.batching import Batcher
from edgecv.service.config import ServeConfig, StreamConfig, check_stream
from edgecv.service.stream import ServedStream
from edgecv.sources import redact

log = logging.getLogger(__name__)

Listener = Callable[[str, str, Any], None]


@dataclass
class SharedModel:
    """One loaded model and its batcher, shared by the streams in ``users``."""

    key: tuple
    name: str
    detector: Any
    batcher: Batcher
    users: set[str]

    def status(self) -> dict[str, Any]:
        f = self.batcher.figures()
        calls, frames = f["calls"], f["frames"]
        return {"name": self.name, "path": str(self.detector.model.path), "backend": self.detector.model.backend,
                "streams": sorted(self.users), "calls": calls, "frames": frames, "batchable": self.batcher.batchable,
                "mean_batch": round(frames / calls, 2) if calls else None,
                "mean_call_ms": round(f["latency"][2] / calls, 3) if calls else None}


class Service:
    """Runs the streams of ``config`` (see the module docstring); ``start`` loads the models and starts every
    stream, ``stop`` stops them and closes every sink."""

    def __init__(self, config: ServeConfig, *, listeners: list[Listener] | None = None) -> None:
        self.config = config
        self.out = Path(config.out)
        self.listeners: list[Listener] = list(listeners or [])
        self.streams: dict[str, ServedStream] = {}
        self.models: dict[tuple, SharedModel] = {}
        self.events: collections.deque = collections.deque(maxlen=200)  # the service's recent events
        self.publisher: Any = None  # the MQTT publisher, with an mqtt section
        self._lock = threading.RLock()

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> "Service":
        """Load every model and start every stream of the config; a stream whose model cannot be loaded
        stops the start with that error (nothing is left running)."""
        try:
            if self.config.mqtt is not None:
                from edgecv.service.mqtt import MqttPublisher

                self.publisher = MqttPublisher(self.config.mqtt, folder=self.out / "mqtt-queue").start()
                self.listeners.append(self.publisher.publish)
            for s in self.config.streams:
                self.add_stream(s, checked=True)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, *, flush_s: float = 3.0) -> None:
        """Stop every stream (each closes its sinks), unload the models, and stop the MQTT publisher once it
        has sent what is queued (or ``flush_s`` has passed: the rest stays on disk for the next start)."""
        with self._lock:
            streams = list(self.streams.values())
        for s in streams:
            s.stop()
        with self._lock:
            for m in self.models.values():
                m.batcher.close()
            self.models.clear()
        publisher, self.publisher = self.publisher, None
        if publisher is not None:
            deadline = time.monotonic() + flush_s
            while len(publisher.queue) and publisher.connected and time.monotonic() < deadline:
                time.sleep(0.05)
            publisher.stop()

    # -- streams ------------------------------------------------------------------------------------------
    def add_stream(self, config: StreamConfig, *, checked: bool = False) -> ServedStream:
        """Start a stream (its values checked as the config file's are; the id must be new)."""
        with self._lock:
            if not checked:
                check_stream(config, "stream")
            if config.id in self.streams:
                raise ConfigError(f"stream id {config.id!r} is already running; remove it first")
            model = self._model_for(config)
            model.users.add(config.id)
            model.batcher.register()
            stream = ServedStream(config, detector=model.detector.sharing(model.batcher.run), out=self.out,
                                  model_name=model.name, on_event=self._event)
            self.streams[config.id] = stream
        return stream.start()

    def remove_stream(self, stream_id: str) -> None:
        """Stop the stream (its sinks closed) and forget it; its model is unloaded when no stream uses it."""
        stream = self.stream(stream_id)
        stream.stop()
        with self._lock:
            self.streams.pop(stream_id, None)
            for key, m in list(self.models.items()):
                if stream_id in m.users:
                    m.users.discard(stream_id)
                    m.batcher.unregister()
                    if not m.users:
                        m.batcher.close()
                        del self.models[key]

    def restart_stream(self, stream_id: str) -> ServedStream:
        """Stop the stream and start it again from its config (its figures start again)."""
        config = self.stream(stream_id).config
        self.remove_stream(stream_id)
        return self.add_stream(config, checked=True)

    def stream(self, stream_id: str) -> ServedStream:
        with self._lock:
            stream = self.streams.get(stream_id)
        if stream is None:
            known = ", ".join(sorted(self.streams)) or "none"
            raise KeyError(f"no stream {stream_id!r}; streams: {known}")
        return stream

    # -- figures ------------------------------------------------------------------------------------------
    def parts(self) -> tuple[list[ServedStream], list[SharedModel]]:
        """The streams and the shared models now, as lists (safe to go through while streams come and go)."""
        with self._lock:
            return list(self.streams.values()), list(self.models.values())

    def status(self) -> list[dict[str, Any]]:
        return [s.status() for s in self.parts()[0]]

    def model_status(self) -> list[dict[str, Any]]:
        return [m.status() for m in self.parts()[1]]

    def ready(self) -> tuple[bool, dict[str, str]]:
        """Whether every stream produced a result within its window, and the state of those that did not
        (a file stream that ended is not waited for)."""
        late = {s.id: s.state for s in self.parts()[0] if s.state != "ended" and not s.ready()}
        return not late, late

    # -- inside -------------------------------------------------------------------------------------------
    def _model_for(self, config: StreamConfig) -> SharedModel:
        """The shared model for ``config``, loaded (and, for a folder, chosen by measuring) on first use."""
        from edgecv.pipeline.track import DetectorSettings, build_detector

        from edgecv.labels import read_labels

        from edgecv.store import model_source

        labels = read_labels(config.labels_file) if config.labels_file is not None else config.labels
        path, spec, labels = model_source(config.model, spec=config.spec, labels=labels)
        path = path.expanduser().resolve()
        key = (str(path), spec, labels, config.score)
        found = self.models.get(key)
        if found is not None:
            return found
        if not path.exists():
            raise ConfigError(f"stream {config.id!r}: model {config.model}: no such file or folder")
        settings = DetectorSettings(spec=spec, labels=labels, score=config.score)
        detector, _ = build_detector(path, settings, shared_cores=True)
        name = detector.model.path.name
        if any(m.name == name for m in self.models.values()):
            name = f"{name}#{len(self.models)}"
        batch = self.config.batch
        model = SharedModel(key, name, detector, Batcher(detector.model, max_size=batch.max_size,
                                                         max_wait_ms=batch.max_wait_ms, name=name), set())
        self.models[key] = model
        log.info("model %s loaded (%s) for stream %s", name, detector.model.backend, config.id)
        return model

    def _event(self, stream_id: str, kind: str, payload: Any) -> None:
        record = {"stream": stream_id, "kind": kind, "time": time.time(), **(payload or {})}
        if "error" in record and record["error"]:
            record["error"] = redact(str(record["error"]))
        self.events.append(record)
        for listener in list(self.listeners):
            try:
                listener(stream_id, kind, record)
            except Exception:  # a listener's fault must not stop a stream; it is logged with its traceback
                log.exception("event listener %r failed", listener)
