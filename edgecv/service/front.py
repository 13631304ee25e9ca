"""``edgecv serve`` with ``server.processes: N`` > 1: the streams in N worker processes, behind one API.

One process runs its streams' Python stages under one interpreter lock; past its saturation, separate processes
use more of the cores (docs/serve.md). So the front starts N workers (:mod:`edgecv.service.worker`), stream i of
the config in worker i mod N, each with its own copy of the models it needs, and serves the API, the page and
``/metrics`` on ``server.host:server.port`` itself:

- ``GET /api/streams`` and ``/api/events`` gather every worker's (each stream and model with its ``process``);
  ``/metrics`` merges the workers' with a ``process`` label; ``/readyz`` is ready when every worker is;
- a stream's own routes (its figures, snapshot, live view, ``DELETE``, ``restart``) go to the worker that runs
  it; ``POST /api/streams`` checks the stream here and starts it in the worker with the fewest streams;
- ``POST /api/models/{name}/activate`` goes to one worker that runs the model; the others follow the store
  within ``swap.poll_s``, as they follow ``edgecv models activate``;
- a worker that dies is started again on the same port with the streams it ran (those added through the API
  too), waits doubling from 1 s up to 30 s; its streams count as not ready meanwhile;
- SIGTERM or Ctrl-C stops every worker (each closes its streams' sinks), then the front.

Each worker listens on a socket the front opened on 127.0.0.1 (handed down as a file descriptor, so a restarted
worker keeps its port) and answers only with a token made for this run.

Example:
    >>> run_front(load_config("serve.yaml"))                           # doctest: +SKIP
"""

from __future__ import annotations

import http.client
import json
import logging
import secrets
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, replace
from typing import Any

from edgecv.errors import EdgeCVError, WorkerDown

log = logging.getLogger(__name__)

START_TIMEOUT_S = 600.0  # loading and measuring a folder's artifacts can take minutes on a small board
STOP_TIMEOUT_S = 30.0
RESTART_MAX_S = 30.0


def split_streams(streams: list[Any], processes: int) -> list[list[Any]]:
    """Stream i to worker i mod ``processes``.

    Example:
        >>> split_streams(["a", "b", "c"], 2)
        [['a', 'c'], ['b']]
    """
    return [streams[i::processes] for i in range(processes)]


def merge_metrics(texts: list[str]) -> bytes:
    """The workers' exposition texts as one, each sample labelled with its worker's ``process`` (so series
    from two workers that load the same model stay apart)."""
    from prometheus_client import generate_latest
    from prometheus_client.core import Metric
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client.registry import CollectorRegistry

    merged: dict[str, Any] = {}
    for index, text in enumerate(texts):
        for family in text_string_to_metric_families(text):
            into = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            for s in family.samples:
                into.add_sample(s.name, {**s.labels, "process": str(index)}, s.value, s.timestamp, s.exemplar)

    class Merged:
        def collect(self):
            return list(merged.values())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Merged())
    return generate_latest(registry)


class Worker:
    """One worker process: its streams' configs, its socket (kept across restarts) and its process."""

    def __init__(self, index: int, streams: list[Any], *, base: dict[str, Any], token: str, log_level: int) -> None:
        self.index = index
        self.streams = {s.id: s for s in streams}
        self.base, self.token, self.log_level = base, token, log_level
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.set_inheritable(True)
        self.port = self.sock.getsockname()[1]
        self.proc: subprocess.Popen | None = None
        self.ready = False  # its streams run and it answers
        self.final: dict[str, Any] | None = None
        self.restarts = 0

    def start(self) -> None:
        """Start the process and wait until its streams run; a stream it cannot start is the one-line error."""
        config = {**self.base, "streams": [asdict(s) for s in self.streams.values()]}
        request = {"config": config, "index": self.index, "fd": self.sock.fileno(), "token": self.token,
                   "log_level": self.log_level}
        self.final, self.ready = None, False
        proc = self.proc = subprocess.Popen([sys.executable, "-m", "edgecv.service.worker"], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, pass_fds=(self.sock.fileno(),), text=True)
        proc.stdin.write(json.dumps(request, default=str) + "\n")
        proc.stdin.close()
        proc.stdin = None  # closed: communicate() must not flush it
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT_S)
        answer = json.loads(lines[0]) if lines and lines[0].strip() else {}
        if not answer.get("ready"):
            if proc.poll() is None:
                proc.kill()
            code = proc.wait()
            if answer.get("error"):  # the worker's own line, and the exit code the single process would give
                failure = EdgeCVError(answer["error"])
                failure.exit_code = int(answer.get("exit_code") or EdgeCVError.exit_code)
                raise failure
            raise EdgeCVError(f"serve worker {self.index} ended with code {code} before its streams started "
                              f"(its log is above)")
        self.ready = True

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def call(self, method: str, path: str, body: bytes | None = None, *, timeout: float = 15.0
             ) -> tuple[int, str, bytes]:
        """One request to the worker: status, content type and body. :class:`WorkerDown` when it cannot answer."""
        if not (self.ready and self.alive()):
            raise WorkerDown(f"serve worker {self.index} (streams {', '.join(sorted(self.streams)) or 'none'}) "
                             f"is down")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers={"Authorization": f"Bearer {self.token}",
                                                           "Content-Type": "application/json"})
            r = conn.getresponse()
            return r.status, r.getheader("Content-Type", ""), r.read()
        except OSError as exc:
            raise WorkerDown(f"serve worker {self.index} (streams {', '.join(sorted(self.streams)) or 'none'}) "
                             f"does not answer: {exc}") from None
        finally:
            conn.close()

    def json(self, path: str) -> Any:
        return json.loads(self.call("GET", path)[2])

    def stop(self) -> None:
        """SIGTERM the process, wait for its sinks to close and keep its final figures."""
        proc, self.ready = self.proc, False
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.error("serve worker %d did not stop within %.0f s; killed", self.index, STOP_TIMEOUT_S)
            proc.kill()
            out, _ = proc.communicate()
        for line in (out or "").splitlines():
            if line.startswith('{"streams"'):
                self.final = json.loads(line)


class Workers:
    """The worker processes of a config, started, supervised (a dead one is started again) and stopped."""

    def __init__(self, config: Any) -> None:
        base = asdict(replace(config, streams=()))
        base.pop("path", None)
        self.token = secrets.token_urlsafe(24)
        level = logging.getLogger("edgecv").getEffectiveLevel()
        self.workers = [Worker(i, share, base=base, token=self.token, log_level=level)
                        for i, share in enumerate(split_streams(list(config.streams), config.server.processes))]
        self.closing = threading.Event()
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []  # the front's own: workers down and started again

    def start(self) -> "Workers":
        errors: list[BaseException] = []

        def start(w: Worker) -> None:
            try:
                w.start()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(w,), daemon=True) for w in self.workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.stop()
            raise errors[0]
        threading.Thread(target=self._supervise, name="serve-workers", daemon=True).start()
        return self

    def stop(self) -> None:
        self.closing.set()
        threads = [threading.Thread(target=w.stop, daemon=True) for w in self.workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for w in self.workers:
            w.sock.close()

    def owner(self, stream_id: str) -> Worker | None:
        with self.lock:
            return next((w for w in self.workers if stream_id in w.streams), None)

    def stream_ids(self) -> list[str]:
        with self.lock:
            return sorted(sid for w in self.workers for sid in w.streams)

    def _supervise(self) -> None:
        waits = {w.index: 1.0 for w in self.workers}
        while not self.closing.wait(0.5):
            for w in self.workers:
                if w.alive() or self.closing.is_set():
                    continue
                code = w.proc.returncode if w.proc is not None else None
                log.error("serve worker %d (streams %s) ended with code %s; starting it again in %.0f s", w.index,
                          ", ".join(sorted(w.streams)) or "none", code, waits[w.index])
                self._event(w, "worker_down", {"code": code})
                if self.closing.wait(waits[w.index]):
                    return
                waits[w.index] = min(waits[w.index] * 2, RESTART_MAX_S)
                try:
                    w.start()
                except EdgeCVError as exc:
                    log.error("serve worker %d could not start again: %s", w.index, exc)
                    continue
                w.restarts += 1
                waits[w.index] = 1.0
                self._event(w, "worker_up", {"restarts": w.restarts})

    def _event(self, w: Worker, kind: str, payload: dict[str, Any]) -> None:
        with self.lock:
            self.events.append({"stream": "_service", "kind": kind, "time": time.time(), "process": w.index,
                                "streams": sorted(w.streams), **payload})
            del self.events[:-100]


def make_front_app(workers: Workers, *, token: str | None, closing: threading.Event) -> Any:
    """The Starlette application of the front: the routes of :func:`edgecv.service.api.make_app`, over the
    workers."""
    import asyncio

    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse

    from edgecv.service.api import build_app, page_response, read_stream

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def passed(answer: tuple[int, str, bytes]) -> Response:
        status, content_type, body = answer
        return Response(body, status_code=status, media_type=content_type or None,
                        headers={"Cache-Control": "no-store"})

    def owner(request: Request) -> Any:
        sid = request.path_params["id"]
        w = workers.owner(sid)
        if w is None:
            return error(404, f"no stream {sid!r}; streams: {', '.join(workers.stream_ids()) or 'none'}")
        return w

    async def forward(request: Request, method: str, suffix: str = "") -> Response:
        w = owner(request)
        if isinstance(w, Response):
            return w
        try:
            return passed(await run_in_threadpool(w.call, method, f"/api/streams/{request.path_params['id']}{suffix}"))
        except WorkerDown as exc:
            return error(503, str(exc))

    async def gather(path: str) -> list[tuple[Any, Any]]:
        """(worker, its JSON answer or its WorkerDown) for every worker."""
        async def one(w: Worker) -> tuple[Any, Any]:
            try:
                return w, await run_in_threadpool(w.json, path)
            except WorkerDown as exc:
                return w, exc
        return list(await asyncio.gather(*(one(w) for w in workers.workers)))

    async def streams(request: Request) -> Response:
        got, models = [], []
        for w, answer in await gather("/api/streams"):
            if isinstance(answer, WorkerDown):
                got += [{"id": sid, "state": "worker down", "process": w.index, "error": str(answer)}
                        for sid in sorted(w.streams)]
                continue
            got += [{**s, "process": w.index} for s in answer["streams"]]
            models += [{**m, "process": w.index} for m in answer["models"]]
        return JSONResponse({"streams": sorted(got, key=lambda s: s["id"]), "models": models})

    async def one(request: Request) -> Response:
        return await forward(request, "GET")

    async def add(request: Request) -> Response:
        got = await read_stream(request)
        if isinstance(got, Response):
            return got
        config, body = got
        if workers.owner(config.id) is not None:
            return error(409, f"stream id {config.id!r} is already running; remove it first")
        with workers.lock:  # a worker that is down or starting again takes none
            w = min(workers.workers, key=lambda w: (not (w.ready and w.alive()), len(w.streams), w.index))
        try:
            status, content_type, data = await run_in_threadpool(w.call, "POST", "/api/streams",
                                                                 json.dumps(body).encode(), timeout=START_TIMEOUT_S)
        except WorkerDown as exc:
            return error(503, str(exc))
        if status == 201:
            with workers.lock:
                w.streams[config.id] = config
        return passed((status, content_type, data))

    async def remove(request: Request) -> Response:
        response = await forward(request, "DELETE")
        if response.status_code == 200:
            w = workers.owner(request.path_params["id"])
            with workers.lock:
                if w is not None:
                    w.streams.pop(request.path_params["id"], None)
        return response

    async def restart(request: Request) -> Response:
        return await forward(request, "POST", "/restart")

    async def snapshot(request: Request) -> Response:
        return await forward(request, "GET", "/snapshot.jpg")

    async def preview(request: Request) -> Response:
        w = owner(request)
        if isinstance(w, Response):
            return w
        conn = http.client.HTTPConnection("127.0.0.1", w.port, timeout=15)
        path = f"/api/streams/{request.path_params['id']}/preview.mjpeg"
        try:
            await run_in_threadpool(conn.request, "GET", path, headers={"Authorization": f"Bearer {w.token}"})
            r = await run_in_threadpool(conn.getresponse)
        except OSError as exc:
            conn.close()
            return error(503, f"serve worker {w.index} does not answer: {exc}")
        if r.status != 200:
            body = await run_in_threadpool(r.read)
            conn.close()
            return passed((r.status, r.getheader("Content-Type", ""), body))

        async def chunks():
            try:
                while not closing.is_set():
                    data = await run_in_threadpool(r.read1, 65536)
                    if not data:
                        break
                    yield data
            except OSError:
                return
            finally:
                conn.close()

        return StreamingResponse(chunks(), media_type=r.getheader("Content-Type"), headers={"Cache-Control": "no-store"})

    async def events(request: Request) -> Response:
        got = list(workers.events)
        for w, answer in await gather("/api/events"):
            if not isinstance(answer, WorkerDown):
                got += [{**e, "process": w.index} for e in answer["events"]]
        return JSONResponse({"events": sorted(got, key=lambda e: e.get("time", 0))[-100:]})

    async def activate(request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()
        runs = []
        for w, answer in await gather("/api/streams"):
            if not isinstance(answer, WorkerDown) and any((m.get("store") or {}).get("name") == name
                                                          for m in answer["models"]):
                runs.append(w)
        if not runs:
            return error(404, f"no stream runs the store's model {name!r} (model: store:{name})")
        try:
            return passed(await run_in_threadpool(runs[0].call, "POST", f"/api/models/{name}/activate", body,
                                                  timeout=START_TIMEOUT_S))
        except WorkerDown as exc:
            return error(503, str(exc))

    async def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        texts = []
        for w in workers.workers:
            try:
                texts.append((await run_in_threadpool(w.call, "GET", "/metrics"))[2].decode())
            except WorkerDown:
                texts.append("")
        return Response(merge_metrics(texts), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "workers": [w.alive() for w in workers.workers]})

    async def readyz(request: Request) -> Response:
        late: dict[str, str] = {}
        for w, answer in await gather("/readyz"):
            if isinstance(answer, WorkerDown):
                late.update({sid: "worker down" for sid in w.streams})
            else:
                late.update(answer["not_ready"])
        return JSONResponse({"ready": not late, "not_ready": late}, status_code=503 if late else 200)

    async def page(request: Request) -> Response:
        return page_response()

    return build_app({"page": page, "healthz": healthz, "readyz": readyz, "metrics": metrics, "events": events,
                      "activate": activate, "streams": streams, "add": add, "one": one, "remove": remove,
                      "restart": restart, "snapshot": snapshot, "preview": preview}, token=token)


def run_front(config: Any) -> tuple[list[dict[str, Any]], str | None]:
    """``edgecv serve`` over ``server.processes`` workers, until SIGINT or SIGTERM: the streams' final figures and
    the signal that stopped it."""
    from edgecv.service.server import serve_http

    server = config.server
    workers = Workers(config)
    closing = threading.Event()
    stopped_by = None
    started = False
    try:
        workers.start()
        started = True
        print(f"serving {len(config.streams)} stream(s) in {server.processes} processes on "
              f"http://{server.host}:{server.port}/ (Ctrl-C to stop)", flush=True)
        app = make_front_app(workers, token=server.token, closing=closing)
        stopped_by = serve_http(app, host=server.host, port=server.port, closing=closing)
    finally:
        closing.set()
        if started:
            workers.stop()
    status = [s for w in workers.workers for s in ((w.final or {}).get("streams") or [])]
    return sorted(status, key=lambda s: s["id"]), stopped_by
