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

from edgecv.errors import ConfigError, EdgeCVError
from edgecv.pipeline.track import class_ids
from edgecv.service.batching import Batcher
from edgecv.service.config import ServeConfig, StreamConfig, check_stream
from edgecv.service.stream import ServedStream
from edgecv.service.swap import Watch, WatchedDetector, compare
from edgecv.sources import redact

log = logging.getLogger(__name__)

Listener = Callable[[str, str, Any], None]
#: The "stream" of the service's model events (swapped, refused, rolled_back, promoted): MQTT topic PREFIX/_models.
MODEL_EVENTS = "_models"


@dataclass
class SharedModel:
    """One loaded model and its batcher, shared by the streams in ``users``. A model from the store
    (``model: store:NAME``) has its ``ref`` (name, version) and a :class:`~edgecv.service.swap.Watch`."""

    key: tuple
    name: str
    detector: Any
    batcher: Batcher
    users: set[str]
    ref: tuple[str, int] | None = None
    watch: Watch | None = None
    given: tuple[Any, Any] = (None, None)  # the spec and labels the config gave a store model (None: the version's)

    def status(self) -> dict[str, Any]:
        f = self.batcher.figures()
        calls, frames = f["calls"], f["frames"]
        return {"name": self.name, "path": str(self.detector.model.path), "backend": self.detector.model.backend,
                "streams": sorted(self.users), "calls": calls, "frames": frames, "batchable": self.batcher.batchable,
                "mean_batch": round(frames / calls, 2) if calls else None,
                "mean_call_ms": round(f["latency"][2] / calls, 3) if calls else None,
                "store": None if self.ref is None else {"name": self.ref[0], "version": self.ref[1],
                                                        **(self.watch.status() if self.watch else {})}}

    def for_stream(self) -> Any:
        """A stream's own detector over this model (watched, for a model from the store)."""
        detector = self.detector.sharing(self.batcher.run)
        return detector if self.watch is None else WatchedDetector(detector, self.watch)


class Service:
    """Runs the streams of ``config`` (see the module docstring); ``start`` loads the models and starts every
    stream, ``stop`` stops them and closes every sink."""

    def __init__(self, config: ServeConfig, *, listeners: list[Listener] | None = None,
                 mqtt_queue: Path | None = None) -> None:
        self.config = config
        self.out = Path(config.out)
        self.mqtt_queue = mqtt_queue or self.out / "mqtt-queue"  # events waiting for the broker, on disk
        self.listeners: list[Listener] = list(listeners or [])
        self.streams: dict[str, ServedStream] = {}
        self.models: dict[tuple, SharedModel] = {}
        self.events: collections.deque = collections.deque(maxlen=200)  # the service's recent events
        self.publisher: Any = None  # the MQTT publisher, with an mqtt section
        self.swaps: collections.Counter = collections.Counter()  # (store name, outcome) -> count
        # name -> (the old model, the streams' detectors over it, the model on probation that replaced it)
        self._retired: dict[str, tuple[SharedModel, dict[str, Any], SharedModel]] = {}
        self._swap_lock = threading.RLock()  # one swap at a time
        self._refusals: dict[str, tuple[int, int | None]] = {}  # model -> (version refused, store stamp then)
        self._closing = threading.Event()
        self._lock = threading.RLock()

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> "Service":
        """Load every model and start every stream of the config; a stream whose model cannot be loaded
        stops the start with that error (nothing is left running)."""
        try:
            if self.config.mqtt is not None:
                from edgecv.service.mqtt import MqttPublisher

                self.publisher = MqttPublisher(self.config.mqtt, folder=self.mqtt_queue).start()
                self.listeners.append(self.publisher.publish)
            for s in self.config.streams:
                self.add_stream(s, checked=True)
        except BaseException:
            self.stop()
            raise
        self._closing.clear()
        threading.Thread(target=self._watch_store, name="store-watch", daemon=True).start()
        return self

    def stop(self, *, flush_s: float = 3.0) -> None:
        """Stop every stream (each closes its sinks), unload the models, and stop the MQTT publisher once it
        has sent what is queued (or ``flush_s`` has passed: the rest stays on disk for the next start)."""
        self._closing.set()
        with self._lock:
            streams = list(self.streams.values())
        for s in streams:
            s.stop()
        with self._lock:
            for m in [*self.models.values(), *(r[0] for r in self._retired.values())]:
                m.batcher.close()
            self.models.clear()
            self._retired.clear()
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
            try:
                class_ids(config.classes, model.detector.labels)  # a name the model does not know: said now
            except ConfigError as exc:
                if not model.users:  # loaded for this stream only
                    model.batcher.close()
                    self.models.pop(model.key, None)
                raise ConfigError(f"stream {config.id!r}: {exc}") from None
            model.users.add(config.id)
            model.batcher.register()
            stream = ServedStream(config, detector=model.for_stream(), out=self.out, model_name=model.name,
                                  on_event=self._event, keep_frames=self.config.swap.check_frames)
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

    # -- model versions -----------------------------------------------------------------------------------
    def swap(self, name: str, *, reason: str = "", check: bool = True, restore: bool = True,
             follow: bool = False) -> dict[str, Any]:
        """Switch the streams that run the store's model ``name`` to its active version: loaded beside the
        running one (checked in a child process first), compared with it on each stream's last frames
        (``check``), then switched between two frames; the old version stays loaded for the probation window,
        and a breach rolls back (:mod:`edgecv.service.swap`). Returns what happened (``outcome``: ``swapped``,
        ``unchanged``, ``refused``). ``restore``: a refused version makes the running one active again in the
        store (off when the swap is itself a rollback). ``follow``: the store watcher's call, which does not
        try a version this service refused again until the store changes."""
        from edgecv.store import ModelStore

        with self._swap_lock:
            current = self._store_model(name)
            if current is None:
                raise ConfigError(f"no stream runs the store's model {name!r} (model: store:{name})")
            store = ModelStore()
            version = store.active(name)
            if current.ref == (name, version.number):
                return {"model": name, "outcome": "unchanged", "version": version.number}
            if follow and current.watch is not None and current.watch.breached:
                return {"model": name, "outcome": "unchanged", "version": version.number,
                        "reason": "the running version breached; its recovery does the swap"}
            if follow and self._refusals.get(name) == (version.number, store.stamp()):
                return {"model": name, "outcome": "unchanged", "version": version.number,
                        "reason": "refused before, and the store has not changed since"}
            start = time.perf_counter()
            old_version = current.ref[1] if current.ref else None
            users = sorted(current.users)
            try:
                new = self._load(current.key[3], name, version, current)
            except EdgeCVError as exc:
                return self._refused(name, version.number, old_version, f"it did not load: {exc}", start,
                                     restore=restore)
            streams = [self.streams[u] for u in users if u in self.streams]
            moved = self._classes_moved(streams, current, new)
            if moved:
                new.batcher.close()
                return self._refused(name, version.number, old_version, moved, start, restore=restore)
            images = [img for st in streams for img in st.recent_images()]
            old_det, new_det = current.for_stream(), new.for_stream()
            judged = compare(old_det, new_det, images, self.config.swap) if check else None
            if judged is not None and judged.refused:
                new.batcher.close()
                return self._refused(name, version.number, old_version, judged.refused, start, judged.to_dict(),
                                     restore=restore)
            baseline = self._baseline(streams, judged)
            new.watch = Watch(name, version.number, self.config.swap, baseline_ms=baseline[0],
                              baseline_found=baseline[1], on_breach=self._breached)
            old_detectors = self._switch(current, new)
            earlier = self._retired.pop(name, None)  # a version still kept from a swap before: no way back to it now
            if earlier is not None:
                earlier[0].batcher.close()
            if restore:
                self._retired[name] = (current, old_detectors, new)
            else:  # a rollback: the version it replaces breached, and is never gone back to
                current.batcher.close()
            switched_ms = (time.perf_counter() - start) * 1000.0
            self.swaps[(name, "swapped")] += 1
            record = {"model": name, "outcome": "swapped", "version": version.number, "previous": old_version,
                      "streams": [st.id for st in streams], "check": judged.to_dict() if judged else None,
                      "swap_ms": round(switched_ms, 1), "reason": reason}
            self._event(MODEL_EVENTS, "model", {"event": "swapped", **record})
            if self.config.swap.probation_s == 0:
                self._promote(name, new)
            else:
                timer = threading.Timer(self.config.swap.probation_s, self._promote, args=(name, new))
                timer.daemon = True
                timer.start()
            return record

    def _switch(self, current: SharedModel, new: SharedModel, detectors: dict[str, Any] | None = None) -> dict[str, Any]:
        """Move every stream of ``current`` to ``new`` between two frames (with ``detectors``: the streams' own
        detectors over ``new``, kept from before); ``current`` leaves the models in use. Returns the streams'
        detectors over ``current``."""
        old: dict[str, Any] = {}
        with self._lock:
            self.models[new.key] = new
            for sid in sorted(current.users):
                current.batcher.unregister()
                new.users.add(sid)
                new.batcher.register()
                stream = self.streams.get(sid)
                if stream is not None:
                    old[sid] = stream.detector
                    stream.use_detector((detectors or {}).get(sid) or new.for_stream(), new.name)
            current.users.clear()
            if self.models.get(current.key) is current:
                del self.models[current.key]
        return old

    def activate(self, name: str, number: int, *, reason: str = "") -> dict[str, Any]:
        """Activate version ``number`` of the store's model ``name`` and swap it in (as :meth:`swap`)."""
        from edgecv.store import ModelStore

        with self._swap_lock:
            if self._store_model(name) is None:  # before the store changes: nothing here would follow it
                raise ConfigError(f"no stream runs the store's model {name!r} (model: store:{name})")
            ModelStore().activate(name, number, reason=reason)
            return self.swap(name, reason=reason)

    def _refused(self, name: str, number: int, previous: int | None, why: str, start: float,
                 check: dict | None = None, *, restore: bool = True) -> dict[str, Any]:
        """A version refused before any frame ran on it: the store goes back to the running version."""
        from edgecv.store import ModelStore

        log.warning("model %s version %d refused: %s", name, number, why)
        store = ModelStore()
        if restore and previous and store.active(name).number == number:
            store.activate(name, previous, reason=f"edgecv serve refused version {number}: {why}")
        self._refusals[name] = (number, store.stamp())
        self.swaps[(name, "refused")] += 1
        record = {"model": name, "outcome": "refused", "version": number, "previous": previous, "reason": why,
                  "check": check, "swap_ms": round((time.perf_counter() - start) * 1000.0, 1)}
        self._event(MODEL_EVENTS, "model", {"event": "refused", **record})
        return record

    @staticmethod
    def _classes_moved(streams: list[ServedStream], current: SharedModel, new: SharedModel) -> str | None:
        """Why ``new``'s labels cannot take over the streams' ``classes`` from ``current`` (a name it does not
        know, or one at another id), or None."""
        for st in streams:
            try:
                before = class_ids(st.config.classes, current.detector.labels)
                after = class_ids(st.config.classes, new.detector.labels)
            except ConfigError as exc:
                return f"stream {st.id!r}: its labels do not fit: {exc}"
            if before != after:
                return (f"stream {st.id!r}: its labels put classes {list(st.config.classes or ())} at ids "
                        f"{list(after or ())}, the running version at {list(before or ())}")
        return None

    def _breached(self, watch: Watch, reason: str) -> None:
        """A watched version breached: back to the version before it (still loaded while on probation; else
        the store's previous version, loaded again)."""
        from edgecv.store import ModelStore

        name = watch.name
        with self._swap_lock:
            current = self._store_model(name)
            if current is None or current.watch is not watch:
                return  # already switched away
            store = ModelStore()
            retired = self._retired.pop(name, None)
            if store.active(name).number == watch.version:
                try:
                    store.rollback(name, reason=f"edgecv serve: version {watch.version} {reason}")
                except ConfigError as exc:
                    log.error("model %s: cannot roll back in the store: %s", name, exc)
            if retired is None:
                self.swaps[(name, "rolled_back")] += 1
                self._event(MODEL_EVENTS, "model", {"event": "rolled_back", "model": name, "version": watch.version,
                                                    "reason": reason, "to": store.active(name).number})
                threading.Thread(target=self._recover, args=(name, reason), name=f"recover-{name}", daemon=True).start()
                return
            old, detectors, _ = retired
            self._switch(current, old, detectors)
            current.batcher.close()
            self.swaps[(name, "rolled_back")] += 1
            self._event(MODEL_EVENTS, "model", {"event": "rolled_back", "model": name, "version": watch.version,
                                      "to": old.ref[1] if old.ref else None, "reason": reason,
                                      "frames_on_it": watch.frames})

    def _recover(self, name: str, reason: str) -> None:
        """After a breach with the old version unloaded: load the store's (now active) previous version; if that
        fails, the first of ``swap.fallback`` that loads. Until then the streams get no results (the breached
        version skips every frame)."""
        outcome = self.swap(name, check=False, restore=False, reason=f"rollback: {reason}")
        if outcome["outcome"] == "swapped":
            return
        if outcome["outcome"] == "unchanged":  # the store had no earlier version to go back to
            outcome["reason"] = f"no earlier version of {name} in the store"
        with self._swap_lock:
            current = self._store_model(name)
            if current is None:
                return
            for artifact in self.config.swap.fallback:
                spec, labels, score = current.key[1:]
                try:
                    path = Path(artifact).expanduser().resolve()
                    fallback = self._build((str(path), spec, labels, score), path, spec, labels, score)
                except EdgeCVError as exc:
                    log.error("model %s: fallback %s does not load: %s", name, artifact, exc)
                    continue
                fallback.ref, fallback.name = (name, 0), f"{name} fallback {path.name}"
                self._switch(current, fallback)
                current.batcher.close()
                self.swaps[(name, "fallback")] += 1
                self._event(MODEL_EVENTS, "model", {"event": "fallback", "model": name, "artifact": str(path),
                                                    "reason": outcome["reason"]})
                return
            log.error("model %s: no version or fallback loads; its streams give no results", name)
            self._event(MODEL_EVENTS, "model", {"event": "no_fallback", "model": name, "reason": outcome["reason"]})

    def _promote(self, name: str, model: SharedModel) -> None:
        """The probation window passed without a breach: the old version is unloaded."""
        with self._swap_lock:
            retired = self._retired.get(name)
            if retired is None or retired[2] is not model or (model.watch and model.watch.breached):
                return  # a later swap or a rollback took care of it
            del self._retired[name]
        retired[0].batcher.close()  # also when the streams of the model were removed meanwhile
        self._event(MODEL_EVENTS, "model", {"event": "promoted", "model": name, "version": model.ref[1] if model.ref else None,
                                  "frames": model.watch.frames if model.watch else None})

    def _store_model(self, name: str) -> SharedModel | None:
        with self._lock:
            return next((m for m in self.models.values() if m.ref is not None and m.ref[0] == name and m.users), None)

    @staticmethod
    def _baseline(streams: list[ServedStream], judged: Any) -> tuple[float | None, float | None]:
        """The running version's time per frame as the streams saw it (prepare and inference), and its share
        of frames with a detection (on the checked frames, else over the streams' runs)."""
        times, found, frames = [], 0, 0
        for st in streams:
            report = st.pipeline.snapshot() if st.pipeline is not None else None
            if report is None:
                continue
            stage = report.stages.get("inference", {})
            if stage.get("median_ms") is not None:
                times.append(stage["median_ms"])
            if report.detections and report.frames:
                found, frames = found + report.detections.get("frames", 0), frames + report.frames
        ms = sorted(times)[len(times) // 2] if times else (judged.old_ms if judged else None)
        share = judged.old_found if judged is not None and judged.frames else (found / frames if frames else None)
        return ms, share

    def _watch_store(self) -> None:
        """Swap when a version is activated in the store from outside (``edgecv models activate``)."""
        from edgecv.store import ModelStore

        store, seen = ModelStore(), None
        while not self._closing.wait(self.config.swap.poll_s):
            try:
                stamp = store.stamp()
                if stamp == seen:
                    continue
                seen = stamp
                with self._lock:
                    names = {m.ref[0]: m.ref[1] for m in self.models.values() if m.ref is not None and m.users}
                for name, loaded in names.items():
                    if store.active(name).number != loaded:
                        self.swap(name, reason="activated in the store", follow=True)
            except EdgeCVError as exc:  # a store being changed by hand, a model gone: said, and tried again later
                log.warning("model store: %s", exc)

    # -- inside -------------------------------------------------------------------------------------------
    def _model_for(self, config: StreamConfig) -> SharedModel:
        """The shared model for ``config``, loaded (and, for a folder, chosen by measuring) on first use."""
        from edgecv.labels import read_labels
        from edgecv.store import ModelStore, is_store_ref, model_source

        labels = read_labels(config.labels_file) if config.labels_file is not None else config.labels
        if is_store_ref(config.model) and "@" not in config.model:  # follows the store's active version
            name = config.model.split(":", 1)[1]
            found = self._store_model(name)
            if found is not None:
                return found
            return self._load(config.score, name, ModelStore().active(name), None, spec=config.spec, labels=labels,
                              stream=config.id)
        path, spec, labels = model_source(config.model, spec=config.spec, labels=labels)
        path = path.expanduser().resolve()
        key = (str(path), spec, labels, config.score)
        found = self.models.get(key)
        if found is not None:
            return found
        if not path.exists():
            raise ConfigError(f"stream {config.id!r}: model {config.model}: no such file or folder")
        model = self._build(key, path, spec, labels, config.score)
        self.models[key] = model
        log.info("model %s loaded (%s) for stream %s", model.name, model.detector.model.backend, config.id)
        return model

    def _load(self, score: float | None, name: str, version: Any, current: SharedModel | None, *,
              spec: Any = None, labels: Any = None, stream: str = "") -> SharedModel:
        """Version ``version`` of the store's model ``name``, loaded (after a check in a child process) with the
        spec and labels given (for a swap: those the config gave ``current``), else those installed with it."""
        from edgecv.formats import format_for_path
        from edgecv.model import choose_backend
        from edgecv.probe import check_in_child

        if current is not None:
            spec, labels = current.given
        given = (spec, labels)
        path, spec, labels = version.source(spec=spec, labels=labels)
        version.verify()  # the files as installed (the artifact's manifest, if any, is checked again on load)
        check_in_child(path, backend=choose_backend(format_for_path(path), None))  # a segfault stays in the child
        key = (str(path), spec, labels, score)
        model = self._build(key, path, spec, labels, score)
        model.ref, model.given = (name, version.number), given
        model.name = f"{name} v{version.number}"
        model.watch = Watch(name, version.number, self.config.swap, baseline_ms=None, baseline_found=None,
                            on_breach=self._breached)
        if current is None:
            self.models[key] = model
            log.info("model %s version %d loaded (%s) for stream %s", name, version.number,
                     model.detector.model.backend, stream)
        return model

    def _build(self, key: tuple, path: Path, spec: Any, labels: Any, score: float | None) -> SharedModel:
        from edgecv.pipeline.track import DetectorSettings, build_detector

        settings = DetectorSettings(spec=spec, labels=labels, score=score)
        detector, _ = build_detector(path, settings, shared_cores=True)
        name = detector.model.path.name
        if any(m.name == name for m in self.models.values()):
            name = f"{name}#{len(self.models)}"
        batch = self.config.batch
        return SharedModel(key, name, detector, Batcher(detector.model, max_size=batch.max_size,
                                                        max_wait_ms=batch.max_wait_ms, name=name), set())

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
