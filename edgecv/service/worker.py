"""One worker process of ``edgecv serve`` with ``server.processes`` > 1: a share of the streams, behind the front.

The front (:mod:`edgecv.service.front`) starts ``python -m edgecv.service.worker`` with a listening socket on
127.0.0.1 inherited as a file descriptor, and writes one JSON line to its stdin: the whole config (as a mapping,
so that credentials never appear in a command line) with only the streams this worker runs, its index, the
socket's descriptor and the token the front sends. The worker loads its models and starts its streams, then
writes one JSON line to its stdout, ``{"ready": true}`` or ``{"error": "one line"}``, and serves the same API as
a single-process ``edgecv serve`` until SIGTERM; then it stops every stream (sinks closed) and writes its final
figures, ``{"streams": [...]}``. It ends itself when the front dies.

Each worker's MQTT client takes the config's ``client_id`` with ``-wINDEX`` appended (a broker drops a client
whose id another one takes), and its events wait for the broker in ``OUT/mqtt-queue-worker-INDEX``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import replace
from typing import Any

from edgecv.errors import EdgeCVError


def worker_config(mapping: dict[str, Any], index: int) -> Any:
    """The config a worker runs (the front's, with only this worker's streams): its own MQTT client id."""
    from edgecv.config import from_mapping
    from edgecv.service.config import ServeConfig

    config = from_mapping(ServeConfig, mapping, "config")
    mqtt = config.mqtt
    if mqtt is not None:
        mqtt = replace(mqtt, client_id=f"{mqtt.client_id or 'edgecv'}-w{index}")
    return replace(config, mqtt=mqtt, server=replace(config.server, processes=1))


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, default=str) + "\n")
    sys.stdout.flush()


def _die_with(parent: int) -> None:
    """SIGTERM this process once ``parent`` is gone (the front killed, even by SIGKILL)."""
    import signal
    import time

    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> int:
    from pathlib import Path

    from edgecv.machine import batch_scheduling
    from edgecv.service.api import make_app
    from edgecv.service.server import serve_http
    from edgecv.service.service import Service

    import logging

    from edgecv.sources import quiet_opencv

    request = json.loads(sys.stdin.readline())
    index = int(request["index"])
    logging.basicConfig(level=int(request.get("log_level", logging.WARNING)),
                        format=f"%(levelname)s %(name)s [worker {index}]: %(message)s")
    quiet_opencv()
    batch_scheduling()
    threading.Thread(target=_die_with, args=(os.getppid(),), name="front-watch", daemon=True).start()
    try:
        config = worker_config(request["config"], index)
        service = Service(config, mqtt_queue=Path(config.out) / f"mqtt-queue-worker-{index}")
        service.start()
    except EdgeCVError as exc:
        _say({"error": str(exc), "exit_code": exc.exit_code})
        return 1
    closing = threading.Event()
    stopped_by = None
    try:
        _say({"ready": True})
        app = make_app(service, token=request["token"], closing=closing)
        stopped_by = serve_http(app, host="127.0.0.1", port=0, closing=closing, fd=int(request["fd"]))
    finally:
        closing.set()
        service.stop()
        _say({"streams": service.status(), "stopped_by": stopped_by})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
