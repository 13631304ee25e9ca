"""A frame source read in a child process, so that decoding (or generating) frames does not compete for the
service's interpreter lock with every other stream's stages.

:class:`ProcessSource` starts a child (``spawn``: a clean interpreter, whatever threads the service runs)
that opens the source with :func:`edgecv.sources.open_source` and hands over each frame through a ring of
:data:`SLOTS` frame-sized slots in shared memory (a file in ``/dev/shm``, mapped by both and unlinked as soon
as the parent has mapped it): the child copies the pixels into a free slot and sends a small header (index,
name, time, truth, slot) through a pipe; the parent copies them out and sends the slot back. So a file or the
generator runs at most :data:`SLOTS` frames ahead, and a live source keeps its pace while the capture's
newest-frame policy drops what the pipeline cannot take. Sending the pixels through the pipe instead cost the
parent 2.3 CPU ms a 768x576 frame, three times what decoding it does (``benchmarks/process_source.py``); where no
ring can be made (no room in shared memory), they still go through the pipe. A live source that stops is
reopened in the child (:meth:`reopen`); an error there comes back as the same one-line error.

Example:
    >>> with ProcessSource("rtsp://cam/stream") as src:              # doctest: +SKIP
    ...     for frame in src: ...
"""

from __future__ import annotations

import collections
import logging
import mmap
import multiprocessing
import os
import pickle
import tempfile
from typing import Any, Iterator

import numpy as np

from edgecv.errors import EdgeCVError, SourceError
from edgecv.sources import Frame, FrameSource, redact

log = logging.getLogger(__name__)

_META = ("kind", "name", "fps", "size", "length", "live", "has_truth")
_STOP_S = 5.0
SLOTS = 3  # frames the child may have handed over that the parent has not copied out yet


class _Ring:
    """The child's side of the shared frames: ``slots`` slots of ``slot_bytes`` in a file of shared memory,
    with the slots the parent has given back. ``generation`` tells a slot given back from an earlier ring."""

    def __init__(self, slot_bytes: int, generation: int) -> None:
        folder = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        fd, self.path = tempfile.mkstemp(prefix="edgecv-frames-", dir=folder)
        try:
            os.posix_fallocate(fd, 0, slot_bytes * SLOTS)  # no room is an OSError now, not a SIGBUS mid-write
            self.map = mmap.mmap(fd, slot_bytes * SLOTS)
        except BaseException:
            _unlink(self.path)
            raise
        finally:
            os.close(fd)
        self.slot_bytes, self.generation = slot_bytes, generation
        self.free = collections.deque(range(SLOTS))

    def put(self, image: np.ndarray) -> int:
        """Copy ``image`` into a free slot (there must be one); its number."""
        slot = self.free.popleft()
        view = np.frombuffer(self.map, np.uint8, image.nbytes, slot * self.slot_bytes)
        view[:] = image.reshape(-1).view(np.uint8)
        return slot

    def close(self) -> None:
        """Unmap it here; its file stays for the parent to map (the parent unlinks it, or the child at its end)."""
        if hasattr(self, "map"):
            self.map.close()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass  # the parent unlinked it once mapped


def _send_frame(conn: Any, ring: _Ring | None, image: np.ndarray, head: dict[str, Any], *,
                made: list[str], shared: bool = True) -> _Ring | None:
    """Hand ``image`` over through ``ring`` (a new one when it does not fit, its file added to ``made``; None,
    then the pipe, when shared memory has no room for one or ``shared`` is False), waiting for the parent to give
    a slot back when none is free."""
    if shared and (ring is None or image.nbytes > ring.slot_bytes):
        generation = ring.generation + 1 if ring is not None else 0
        if ring is not None:
            ring.close()  # the parent maps it (if it has not yet) when it reads its message, before the next ring's
        try:
            ring = _Ring(image.nbytes, generation)
        except OSError as exc:
            log.debug("no ring of shared frames (%s): frames go through the pipe", exc)
            ring = None
        else:
            made.append(ring.path)
            conn.send(("ring", {"path": ring.path, "slot_bytes": ring.slot_bytes, "generation": generation}))
    if ring is None:
        conn.send(("frame", head))
        conn.send_bytes(memoryview(image).cast("B"))
        return None
    while not ring.free:
        _given_back(conn.recv(), ring)
    conn.send(("frame", {**head, "slot": ring.put(image), "generation": ring.generation}))
    return ring


def _given_back(message: Any, ring: _Ring | None) -> bool:
    """Take a slot the parent gave back (True), or say that ``message`` is something else (False)."""
    if not (isinstance(message, tuple) and message and message[0] == "free"):
        return False
    if ring is not None and message[1] == ring.generation:
        ring.free.append(message[2])
    return True


def _child(conn: Any, text: str, shared: bool = True) -> None:
    """The child: open ``text`` and hand its frames over, one after another (waiting while every slot of the
    ring is taken); at its end or on an error, wait for ``reopen`` (then go on) or for the parent to close the
    pipe."""
    from edgecv.machine import batch_scheduling
    from edgecv.sources import open_source, quiet_opencv

    batch_scheduling()
    quiet_opencv()
    try:
        src = open_source(text)
    except BaseException as exc:  # told to the parent as its own one-line error
        conn.send(("error", type(exc).__name__, str(exc)))
        return
    conn.send(("meta", {k: getattr(src, k, None) for k in _META}))
    frames = iter(src)
    ring: _Ring | None = None
    made: list[str] = []  # the rings' files, unlinked at the end where the parent has not unlinked them
    try:
        while True:
            try:
                frame = next(frames, None)
            except BaseException as exc:
                conn.send(("error", type(exc).__name__, str(exc)))
                frame = False
            if frame is None:
                conn.send(("end", {"truncated": src.truncated, "read": src.read, "skipped": src.skipped,
                                   "length": src.length}))
            if frame is None or frame is False:
                while _given_back(message := conn.recv(), ring):
                    pass
                if message != "reopen":
                    return
                try:
                    src.reopen()
                    frames = iter(src)
                    conn.send(("ok", None))
                except BaseException as exc:
                    conn.send(("error", type(exc).__name__, str(exc)))
                continue
            image = np.ascontiguousarray(frame.image)
            head = {"index": frame.index, "name": frame.name, "time_ms": frame.time_ms, "path": frame.path,
                    "truth": frame.truth, "shape": image.shape, "dtype": image.dtype.str, "read": src.read}
            ring = _send_frame(conn, ring, image, head, made=made, shared=shared)
    except (EOFError, BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        return  # the parent closed the pipe: stop
    finally:
        if ring is not None:
            ring.close()
        for path in made:
            _unlink(path)
        src.close()


class ProcessSource(FrameSource):
    """The source ``text`` read in a child process (see the module docstring): the same ``kind``, ``name``,
    ``fps``, ``size``, ``length``, ``live`` and frames as :func:`~edgecv.sources.open_source` gives.
    ``shared``: hand the frames over through shared memory (False: through the pipe)."""

    description = "any source, read in a child process"

    def __init__(self, text: str, *, start_timeout_s: float = 60.0, shared: bool = True) -> None:
        super().__init__(text)
        self._ring: tuple[mmap.mmap, int, int] | None = None  # the child's ring as mapped here, slot size, generation
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(child_conn, text, shared), name=f"source {redact(text)}",
                                 daemon=True)
        self._proc.start()
        child_conn.close()
        if not self._conn.poll(start_timeout_s):
            self.close()
            raise SourceError(f"cannot open {self.shown}: its reader did not start within {start_timeout_s:.0f} s")
        message = self._recv()
        if message[0] == "error":
            self.close()
            self._raise(message)
        meta = message[1]
        self.kind, self.name, self.fps = meta["kind"], meta["name"], meta["fps"]
        self.size, self.length, self.live = meta["size"], meta["length"], bool(meta["live"])
        self.has_truth = bool(meta["has_truth"])

    def _attach(self, ring: dict[str, Any]) -> None:
        """Map the child's new ring of shared frames, and unlink its file: it lasts as long as both maps do."""
        old, self._ring = self._ring, None
        if old is not None:
            old[0].close()
        try:
            with open(ring["path"], "rb") as f:
                shared = mmap.mmap(f.fileno(), ring["slot_bytes"] * SLOTS, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise SourceError(f"the reader of {self.shown} shared frames this process cannot map: {exc}") from None
        finally:
            try:
                os.unlink(ring["path"])
            except OSError:
                pass
        self._ring = (shared, ring["slot_bytes"], ring["generation"])

    def _recv(self) -> Any:
        try:
            return self._conn.recv()
        except (EOFError, OSError, pickle.UnpicklingError):
            code = self._proc.exitcode if not self._proc.is_alive() else None
            raise SourceError(f"the reader of {self.shown} stopped"
                              f"{f' (exit code {code})' if code is not None else ''}") from None

    def _raise(self, message: tuple) -> None:
        from edgecv import errors

        _, name, text = message
        cls = getattr(errors, name, None)
        if not (isinstance(cls, type) and issubclass(cls, EdgeCVError)):
            cls = SourceError
            text = f"reading {self.shown} failed: {name}: {text}"
        raise cls(redact(text))

    def __iter__(self) -> Iterator[Frame]:
        while True:
            message = self._recv()
            kind = message[0]
            if kind == "error":
                self._raise(message)
            if kind == "end":
                end = message[1]
                self.truncated, self.read, self.skipped = end["truncated"], end["read"], end["skipped"]
                self.length = end["length"] if end["length"] is not None else self.length
                return
            if kind == "ring":
                self._attach(message[1])
                continue
            head = message[1]
            dtype = np.dtype(head["dtype"])
            count = int(np.prod(head["shape"]))
            if "slot" in head:
                if self._ring is None or self._ring[2] != head["generation"]:
                    raise SourceError(f"the reader of {self.shown} handed over a frame from a ring not mapped here")
                mapped, slot_bytes, _ = self._ring
                image = np.frombuffer(mapped, dtype, count, head["slot"] * slot_bytes).reshape(head["shape"]).copy()
                try:
                    self._conn.send(("free", head["generation"], head["slot"]))
                except (BrokenPipeError, OSError):
                    raise SourceError(f"the reader of {self.shown} stopped") from None
            else:
                buf = bytearray(count * dtype.itemsize)  # writable, filled in place
                try:
                    self._conn.recv_bytes_into(buf)
                except (EOFError, OSError):
                    raise SourceError(f"the reader of {self.shown} stopped") from None
                image = np.frombuffer(buf, dtype).reshape(head["shape"])
            self.read = head["read"]
            yield Frame(image, head["index"], head["name"], head["time_ms"], head["path"], head["truth"])

    def reopen(self) -> None:
        try:
            self._conn.send("reopen")
        except (BrokenPipeError, OSError):
            raise SourceError(f"the reader of {self.shown} stopped") from None
        message = self._recv()
        if message[0] == "error":
            self._raise(message)

    def close(self) -> None:
        """Stop the child: its pipe closed (it stops at its next send or wait), then terminated, then killed."""
        proc = getattr(self, "_proc", None)
        if proc is None:
            return
        self._conn.close()
        if self._ring is not None:
            self._ring[0].close()
            self._ring = None
        proc.join(_STOP_S)
        if proc.is_alive():
            proc.terminate()
            proc.join(_STOP_S)
        if proc.is_alive():
            proc.kill()
            proc.join()
        self._proc = None
