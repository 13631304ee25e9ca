"""Serving an ASGI app with uvicorn until SIGINT or SIGTERM, for ``edgecv serve``, its front and its workers.

uvicorn's own signal handling raises the signal again once the server has stopped, which would kill the process
before the streams close their sinks; :func:`serve_http` instead returns the signal's name, and the caller then
stops what it runs.

Example:
    >>> stopped_by = serve_http(app, host="127.0.0.1", port=8080, closing=threading.Event())  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from edgecv.errors import OutputError


def serve_http(app: Any, *, host: str, port: int, closing: threading.Event, fd: int | None = None) -> str | None:
    """Serve ``app`` on ``host:port`` (or on the listening socket ``fd``) until SIGINT or SIGTERM; ``closing`` is
    set when a signal comes, so that live views end. Returns the signal's name (None: the server stopped
    otherwise). A port it cannot listen on is an :class:`~edgecv.errors.OutputError`."""
    from edgecv.deps import require

    uvicorn = require("uvicorn", extra="serve", purpose="serve the HTTP API")
    stopped_by: list[str] = []

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            closing.set()
            stopped_by.append(signal.Signals(sig).name)
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

    level = "info" if logging.getLogger("edgecv").isEnabledFor(logging.INFO) else "critical"
    # uvicorn's own lines only with -v: a failure is edgecv's one line
    where = {"fd": fd} if fd is not None else {"host": host, "port": port}
    uv = Server(uvicorn.Config(app, **where, log_level=level, lifespan="off", timeout_graceful_shutdown=5,
                               access_log=False))
    try:
        uv.run()
    except SystemExit:  # uvicorn's answer to an address it cannot bind
        if uv.started:
            raise
    if not uv.started:
        raise OutputError(f"cannot listen on {host}:{port} (in use, or not an address here)")
    return stopped_by[0] if stopped_by else None
