"""``edgecv serve``: the device app as a long-running service: the streams of a config file, their shared
models, an HTTP API with live views and Prometheus metrics, until stopped."""

from __future__ import annotations

import argparse
import json
import logging
import threading

from edgecv.cli.commands import COMMANDS

log = logging.getLogger(__name__)

EXAMPLES = """\
examples:
  edgecv serve serve.yaml                          the streams of serve.yaml; API and page on 127.0.0.1:8080
  edgecv serve serve.yaml --port 9000
  edgecv serve serve.yaml --check                  check the config and load its models, then exit
  EDGECV_TOKEN=... edgecv serve serve.yaml --host 0.0.0.0   other machines may connect, with the token

serve.yaml:
  server: {host: 127.0.0.1, port: 8080}            # any other host needs token: (16+ characters)
                                                   # processes: N runs the streams in N workers behind one API
  batch: {max_size: 4, max_wait_ms: 5}             # frames of streams sharing a model, one inference call
  out: runs/serve                                  # each stream's sinks in out/ID/
  streams:
    - id: door
      source: rtsp://user:secret@10.0.0.7/stream1  # as --source takes it; credentials never shown
      model: artifacts/                            # a folder: its fastest artifact, measured
      classes: [person]
      lines: ["door=100,400,600,400"]
      sinks: [jsonl]
    - {id: demo, source: "synthetic:fps=15", model: artifacts/}

HTTP: GET / (page), /api/streams, /api/streams/ID, /api/streams/ID/snapshot.jpg, /api/streams/ID/preview.mjpeg,
/api/events, /metrics (Prometheus), /healthz, /readyz; POST /api/streams (a stream as JSON),
DELETE /api/streams/ID, POST /api/streams/ID/restart.

Ctrl-C or SIGTERM stops every stream and closes its sinks, then exits 0.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help=COMMANDS["serve"].summary,
        description="Run the streams of CONFIG in one process until stopped: streams that use the same model "
        "share it, their frames batched into one inference call; each stream keeps its newest frame, so a slow "
        "camera never delays the others; a lost source is reopened for as long as the service runs. The HTTP "
        "API (127.0.0.1 unless the config says otherwise, with a token) serves figures, live views, Prometheus "
        "metrics and health checks; streams can be added and removed while it runs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="the service's YAML config (see below)")
    p.add_argument("--host", help="listen on this address (default: the config's server.host)")
    p.add_argument("--port", type=int, help="listen on this port (default: the config's server.port)")
    p.add_argument("--check", action="store_true", help="check the config and load its models, then exit")
    p.add_argument("--json", action="store_true", help="print the final figures as JSON when stopped")
    p.set_defaults(run=run)


def run(args) -> int:
    import os
    from dataclasses import replace

    from edgecv.deps import require
    from edgecv.service.config import check_config, load_config

    config = load_config(args.config)
    server = replace(config.server, host=args.host or config.server.host,
                     port=config.server.port if args.port is None else args.port,
                     token=config.server.token or os.environ.get("EDGECV_TOKEN") or None)
    config = replace(config, server=server)
    check_config(config, f"serve config {args.config}")
    require("uvicorn", extra="serve", purpose="serve the HTTP API")
    require("starlette", extra="serve", purpose="serve the HTTP API")
    require("prometheus_client", extra="serve", purpose="export Prometheus metrics", package="prometheus-client")

    from edgecv.machine import batch_scheduling
    from edgecv.service.api import make_app
    from edgecv.service.server import serve_http
    from edgecv.service.service import Service

    if config.server.processes > 1 and not args.check:
        from edgecv.service.front import run_front

        status, stopped_by = run_front(config)
        print_final(status, stopped_by, as_json=args.json)
        return 0
    # the whole process, before it starts a thread: every thread and child inherits the policy (the streams'
    # threads set it themselves too, for a service run as a library)
    batch_scheduling()
    service = Service(config)
    closing = threading.Event()
    stopped_by = None
    try:
        service.start()
        if args.check:
            print(f"{args.config}: {len(service.streams)} stream(s), {len(service.models)} model(s): "
                  + ", ".join(f"{m['name']} ({m['backend']})" for m in service.model_status()))
            return 0
        app = make_app(service, token=server.token, closing=closing)
        print(f"serving {len(config.streams)} stream(s) on http://{server.host}:{server.port}/ "
              f"(Ctrl-C to stop)", flush=True)
        stopped_by = serve_http(app, host=server.host, port=server.port, closing=closing)
    finally:
        closing.set()
        service.stop()
        status = service.status()
    print_final(status, stopped_by, as_json=args.json)
    return 0


def print_final(status: list[dict], stopped_by: str | None, *, as_json: bool) -> None:
    """The streams' final figures, as JSON or a line each."""
    if as_json:
        print(json.dumps({"stopped_by": stopped_by, "streams": status}, indent=1, default=str))
        return
    if stopped_by:
        print(f"stopped by {stopped_by}; every stream's sinks closed")
    for s in status:
        print(f"{s['id']}: {s['state']}, {s['frames']} frames, {s['dropped']} dropped, {s['tracks_total']} tracks")
