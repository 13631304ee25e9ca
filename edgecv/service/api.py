"""The HTTP API and the web page of ``edgecv serve`` (Starlette, served by uvicorn).

Routes:

- ``GET /api/streams``: every stream's figures and the shared models; ``GET /api/streams/{id}``: one, with
  its recent events;
- ``POST /api/streams`` (a stream's config as JSON, checked as the config file's streams are) adds and starts a
  stream; ``DELETE /api/streams/{id}`` stops and removes one; ``POST /api/streams/{id}/restart``;
- ``GET /api/streams/{id}/snapshot.jpg`` and ``GET /api/streams/{id}/preview.mjpeg``: the newest frame with
  boxes, ids, trails, lines and zones (drawn only while someone watches), the second as a live MJPEG view;
- ``GET /api/events``: the service's recent events;
- ``POST /api/models/{name}/activate`` (``{"version": N, "reason": "..."}``): activate a version of a stored model
  and hot-swap it into the streams that run it (409 when the check on their last frames refuses it);
- ``GET /metrics``: Prometheus (:mod:`edgecv.service.metrics`);
- ``GET /healthz``: the process answers; ``GET /readyz``: 200 when every stream produced a result within its
  window, else 503 naming those that did not;
- ``GET /``: the page: every stream's live view, figures and recent events, refreshed without reloading.

With a token set, every route but ``/healthz`` needs ``Authorization: Bearer TOKEN`` (or ``?token=TOKEN``,
for the page's images). Errors are JSON ``{"error": "one line"}``. Source URLs are shown with their
credentials hidden.

Example:
    >>> app = make_app(service, token=None)                           # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8080)                  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
from importlib import resources
from typing import Any

from edgecv.errors import ConfigError, EdgeCVError

log = logging.getLogger(__name__)

PREVIEW_FPS = 10.0  # the MJPEG view's most frames per second
BOUNDARY = "edgecvframe"


def make_app(service: Any, *, token: str | None = None, closing: threading.Event | None = None) -> Any:
    """The Starlette application over ``service``. ``closing``: set when the server shuts down, so that live
    views end and the server can stop."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse

    from edgecv.service.metrics import render_metrics

    closing = closing or threading.Event()

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def find(request: Request) -> Any:
        try:
            return service.stream(request.path_params["id"])
        except KeyError as exc:
            return error(404, str(exc.args[0]))

    async def streams(request: Request) -> Response:
        return JSONResponse({"streams": await run_in_threadpool(service.status),
                             "models": await run_in_threadpool(service.model_status)})

    async def one(request: Request) -> Response:
        stream = find(request)
        if isinstance(stream, Response):
            return stream
        return JSONResponse({**await run_in_threadpool(stream.status), "recent_events": stream.recent_events()})

    async def add(request: Request) -> Response:
        got = await read_stream(request, check=False)  # add_stream checks it
        if isinstance(got, Response):
            return got
        try:
            stream = await run_in_threadpool(service.add_stream, got[0])
        except ConfigError as exc:
            status = 409 if "already running" in str(exc) else 400
            return error(status, str(exc))
        except EdgeCVError as exc:
            return error(400, str(exc))
        return JSONResponse(stream.status(), status_code=201)

    async def remove(request: Request) -> Response:
        stream = find(request)
        if isinstance(stream, Response):
            return stream
        await run_in_threadpool(service.remove_stream, stream.id)
        return JSONResponse({"removed": stream.id})

    async def restart(request: Request) -> Response:
        stream = find(request)
        if isinstance(stream, Response):
            return stream
        try:
            again = await run_in_threadpool(service.restart_stream, stream.id)
        except EdgeCVError as exc:
            return error(400, str(exc))
        return JSONResponse(again.status())

    async def snapshot(request: Request) -> Response:
        stream = find(request)
        if isinstance(stream, Response):
            return stream
        data = await run_in_threadpool(stream.jpeg)
        if data is None:
            return error(503, f"stream {stream.id!r} has no frame yet (state {stream.state})")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def preview(request: Request) -> Response:
        stream = find(request)
        if isinstance(stream, Response):
            return stream

        async def frames():
            shown = -1
            while not closing.is_set() and service.streams.get(stream.id) is stream:
                live = stream.live
                count = live.results if live is not None else -1
                if count != shown and count >= 0:
                    data = await run_in_threadpool(stream.jpeg)
                    if data is not None:
                        shown = count
                        yield (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                               .encode() + data + b"\r\n")
                await asyncio.sleep(1.0 / PREVIEW_FPS)

        return StreamingResponse(frames(), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                                 headers={"Cache-Control": "no-store"})

    async def activate(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("version"), int) or isinstance(body.get("version"), bool):
            return error(400, 'expected a JSON object {"version": N, "reason": "..."}')
        reason = str(body.get("reason") or "")
        try:
            result = await run_in_threadpool(service.activate, name, body["version"], reason=reason)
        except EdgeCVError as exc:
            return error(404 if "no model" in str(exc) or "no version" in str(exc) else 400, str(exc))
        return JSONResponse(result, status_code=409 if result["outcome"] == "refused" else 200)

    async def events(request: Request) -> Response:
        return JSONResponse({"events": list(service.events)[-100:]})

    async def metrics(request: Request) -> Response:
        body, content_type = await run_in_threadpool(render_metrics, service)
        return Response(body, media_type=content_type)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ok, late = await run_in_threadpool(service.ready)
        return JSONResponse({"ready": ok, "not_ready": late}, status_code=200 if ok else 503)

    async def page(request: Request) -> Response:
        return page_response()

    return build_app({"page": page, "healthz": healthz, "readyz": readyz, "metrics": metrics, "events": events,
                      "activate": activate, "streams": streams, "add": add, "one": one, "remove": remove,
                      "restart": restart, "snapshot": snapshot, "preview": preview}, token=token)


#: (path, handler name, methods): the routes of the service, single-process or split (:mod:`edgecv.service.front`)
ROUTES = (
    ("/", "page", ["GET"]), ("/healthz", "healthz", ["GET"]), ("/readyz", "readyz", ["GET"]),
    ("/metrics", "metrics", ["GET"]), ("/api/events", "events", ["GET"]),
    ("/api/models/{name}/activate", "activate", ["POST"]),
    ("/api/streams", "streams", ["GET"]), ("/api/streams", "add", ["POST"]),
    ("/api/streams/{id}", "one", ["GET"]), ("/api/streams/{id}", "remove", ["DELETE"]),
    ("/api/streams/{id}/restart", "restart", ["POST"]),
    ("/api/streams/{id}/snapshot.jpg", "snapshot", ["GET"]), ("/api/streams/{id}/preview.mjpeg", "preview", ["GET"]),
)


def build_app(handlers: dict[str, Any], *, token: str | None) -> Any:
    """The Starlette application of :data:`ROUTES` over ``handlers`` (one per handler name), behind the token."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    app = Starlette(routes=[Route(path, handlers[name], methods=methods) for path, name, methods in ROUTES])
    if token:
        app.add_middleware(TokenCheck, token=token)
    return app


async def read_stream(request: Any, *, check: bool = True) -> Any:
    """``(config, its JSON)`` of the stream a ``POST /api/streams`` carries, or the 400 response that says in one
    line what is wrong with it (``check``: its values too, as the config file's are)."""
    from starlette.responses import JSONResponse

    from edgecv.config import from_mapping
    from edgecv.service.config import StreamConfig, check_stream

    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"error": "expected a JSON object with the stream's config"}, status_code=400)
    try:
        config = from_mapping(StreamConfig, body, "stream")
        if check:
            check_stream(config, "stream")
    except ConfigError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return config, body


def page_response() -> Any:
    """The web page (``GET /``)."""
    from starlette.responses import HTMLResponse

    html = resources.files("edgecv.service").joinpath("page.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


class TokenCheck:
    """ASGI middleware: every HTTP request but ``/healthz`` carries the token (header or ``?token=``)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] == "/healthz" or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "missing or wrong token: send 'Authorization: Bearer TOKEN'"}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": body})

    def _allowed(self, scope: dict) -> bool:
        from urllib.parse import parse_qs

        for name, value in scope.get("headers", []):
            if name == b"authorization" and value.startswith(b"Bearer "):
                return hmac.compare_digest(value[7:].strip(), self.token)
        given = parse_qs(scope.get("query_string", b"").decode()).get("token", [""])[0]
        return bool(given) and hmac.compare_digest(given.encode(), self.token)
