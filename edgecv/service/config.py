"""The ``edgecv serve`` config: one YAML file with the server, the batching of shared models and the streams,
checked strictly on load (unknown keys, wrong types, bad values: one line naming the file and the line).

Example config::

    server: {host: 127.0.0.1, port: 8080}
    batch: {max_size: 4, max_wait_ms: 5}
    out: runs/serve
    streams:
      - id: door
        source: rtsp://user:secret@10.0.0.7/stream1
        model: artifacts/
        classes: [person]
        lines: ["door=100,400,600,400"]
      - id: demo
        source: synthetic:fps=15
        model: artifacts/

Example:
    >>> config = load_config("serve.yaml")                            # doctest: +SKIP
    >>> [s.id for s in config.streams]                                # doctest: +SKIP
    ['door', 'demo']
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecv.errors import ConfigError
from edgecv.service.swap import SwapOptions, check_swap_options

STREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: The sinks a served stream may write to its own folder (the annotated video is the live view instead).
STREAM_SINKS = ("jsonl", "mot")


@dataclass(frozen=True)
class ServerConfig:
    """Where the HTTP API listens. ``host``: 127.0.0.1 unless told otherwise; any other address needs ``token``
    (clients send ``Authorization: Bearer TOKEN``). ``processes``: run the streams in that many worker
    processes (stream i in worker i mod N; each loads its own copy of a model), behind one API: one process's
    Python stages share one interpreter lock, and past its saturation more processes use more of the cores."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    processes: int = 1


@dataclass(frozen=True)
class BatchConfig:
    """How frames of streams that share a model are gathered into one inference call: up to ``max_size``
    frames, waiting at most ``max_wait_ms`` after the first for the others (a model with a fixed batch of 1
    runs them one after another in the same call)."""

    max_size: int = 4
    max_wait_ms: float = 5.0


@dataclass(frozen=True)
class MqttConfig:
    """The broker (``host``, ``port``, optional ``username`` and ``password``, ``client_id``), the topic
    ``prefix``, and ``queue_max``: events kept on disk while the broker is away."""

    host: str
    port: int = 1883
    prefix: str = "edgecv"
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    queue_max: int = 10_000


def check_mqtt(m: MqttConfig, at: str) -> None:
    """The values of the ``mqtt`` section, checked."""
    if not m.host.strip():
        raise ConfigError(f"{at}: mqtt.host: expected a host name or address, got an empty one")
    if not 1 <= m.port <= 65535:
        raise ConfigError(f"{at}: mqtt.port: expected 1..65535, got {m.port}")
    if not m.prefix or any(c in m.prefix for c in "#+") or m.prefix.startswith("/") or m.prefix.endswith("/"):
        raise ConfigError(f"{at}: mqtt.prefix: expected a topic without wildcards or leading/trailing '/', "
                          f"got {m.prefix!r}")
    if m.queue_max < 1:
        raise ConfigError(f"{at}: mqtt.queue_max: expected >= 1, got {m.queue_max}")


@dataclass(frozen=True)
class StreamConfig:
    """One camera: ``id`` (letters, digits, ``-``, ``_``), ``source`` (any text ``edgecv track`` takes), ``model``
    (an artifact, or a folder whose fastest artifact is chosen by measuring), the detector's ``spec``, ``labels`` (or
    ``labels_file``, as ``--labels`` takes it),
    ``classes`` and ``score``, the ``tracker`` and its ``tracker_options``, counting ``lines`` and ``zones`` (as
    ``--line``/``--zone`` take them), ``sinks`` written under ``OUT/ID/``, ``ready_s``: the window within
    which the stream must produce a result to count as ready, and ``source_process``: read (decode, or
    generate) the frames in a child process of their own, out of the way of the other streams' threads."""

    id: str
    source: str
    model: str
    spec: str | None = None
    labels: tuple[str, ...] | None = None
    labels_file: str | None = None
    classes: tuple[str, ...] | None = None
    score: float | None = None
    tracker: str = "ocsort"
    tracker_options: dict[str, Any] = field(default_factory=dict)
    lines: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    sinks: tuple[str, ...] = ()
    ready_s: float = 5.0
    source_process: bool = True


@dataclass(frozen=True)
class ServeConfig:
    """The whole file: ``server``, ``batch``, ``out`` (the streams' folders, and the MQTT queue in
    ``out/mqtt-queue``), ``streams``, to send events to a broker ``mqtt``, and ``swap``: how a new version of a
    stored model (``model: store:NAME``) is checked and watched (:class:`~edgecv.service.swap.SwapOptions`)."""

    streams: tuple[StreamConfig, ...]
    server: ServerConfig = ServerConfig()
    batch: BatchConfig = BatchConfig()
    mqtt: MqttConfig | None = None
    swap: SwapOptions = SwapOptions()
    out: str = "runs/serve"
    path: Path | None = field(default=None, compare=False)


def load_config(path: str | Path) -> ServeConfig:
    """The config at ``path``, checked: every problem is a one-line :class:`ConfigError` naming the file and,
    for a field, its line."""
    from dataclasses import replace

    from edgecv.yamlfile import load_checked

    config = load_checked(path, ServeConfig, kind="serve config", root="config")
    config = replace(config, path=Path(path))
    check_config(config, f"serve config {path}")
    return config


def check_stream(s: StreamConfig, at: str) -> None:
    """The values of one stream, checked (also for a stream added through the API)."""
    from edgecv.pipeline.zones import make_counters
    from edgecv.tracking.trackers import tracker_options

    if not STREAM_ID.match(s.id):
        raise ConfigError(f"{at}: stream id {s.id!r}: expected letters, digits, '-' or '_' (at most 64)")
    where = f"{at}: stream {s.id!r}"
    if not s.source.strip():
        raise ConfigError(f"{where}: source: expected a source text, got an empty one")
    if not s.model.strip():
        raise ConfigError(f"{where}: model: expected an artifact, a folder or store:NAME, got an empty one")
    bad = [k for k in s.sinks if k not in STREAM_SINKS]
    if bad:
        raise ConfigError(f"{where}: sinks: unknown {', '.join(bad)}; valid sinks: {', '.join(STREAM_SINKS)}")
    if s.labels is not None and s.labels_file is not None:
        raise ConfigError(f"{where}: labels and labels_file: expected one of the two, got both")
    if s.score is not None and not 0.0 <= s.score <= 1.0:
        raise ConfigError(f"{where}: score: expected a number in [0, 1], got {s.score}")
    if not s.ready_s > 0:
        raise ConfigError(f"{where}: ready_s: expected a number of seconds > 0, got {s.ready_s}")
    try:
        tracker_options(s.tracker, dict(s.tracker_options) or None)
        make_counters(s.lines, s.zones)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def check_config(config: ServeConfig, at: str) -> None:
    """The values of the whole config, checked (ids unique, a token wherever the API is not loopback-only)."""
    srv, batch = config.server, config.batch
    if not 0 <= srv.port <= 65535:
        raise ConfigError(f"{at}: server.port: expected 0..65535, got {srv.port}")
    if not is_loopback(srv.host) and not srv.token:
        raise ConfigError(f"{at}: server.host {srv.host!r} is reachable from other machines: set server.token "
                          f"(clients then send 'Authorization: Bearer TOKEN'), or bind 127.0.0.1")
    if not 1 <= srv.processes <= 64:
        raise ConfigError(f"{at}: server.processes: expected 1..64, got {srv.processes}")
    if srv.token is not None and len(srv.token) < 16:
        raise ConfigError(f"{at}: server.token: expected at least 16 characters, got {len(srv.token)}")
    if not 1 <= batch.max_size <= 64:
        raise ConfigError(f"{at}: batch.max_size: expected 1..64, got {batch.max_size}")
    if not 0 <= batch.max_wait_ms <= 1000:
        raise ConfigError(f"{at}: batch.max_wait_ms: expected 0..1000, got {batch.max_wait_ms}")
    if config.mqtt is not None:
        check_mqtt(config.mqtt, at)
    check_swap_options(config.swap, at)
    if not config.streams:
        raise ConfigError(f"{at}: streams: expected at least one stream")
    seen: set[str] = set()
    for s in config.streams:
        check_stream(s, at)
        if s.id in seen:
            raise ConfigError(f"{at}: stream id {s.id!r} appears twice")
        seen.add(s.id)


def is_loopback(host: str) -> bool:
    """Whether ``host`` can only be reached from this machine (``localhost``, 127.0.0.0/8, ``::1``).

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0"), is_loopback("localhost")
        (True, False, True)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
