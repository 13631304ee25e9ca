"""A frame source read in a child process, so that decoding (or generating) frames does not compete for the
service's interpreter lock with every other stream's stages.

:class:`ProcessSource` starts a child (``spawn``: a clean interpreter, whatever threads the service runs)
that opens the source with :func:`edgecv.sources.open_source` and sends each frame through a pipe: a small
header (index, name, time, truth) and the pixels as raw bytes, which the parent reads without a copy more.
The child reads the next frame while the parent handles this one; a send waits while the pipe is full, so a
file or the generator runs at most a frame or two ahead, and a live source keeps its pace while the capture's
newest-frame policy drops what the pipeline cannot take. A live source that
stops is reopened in the child (:meth:`reopen`); an error there comes back as the same one-line error.

Example:
    >>> with ProcessSource("rtsp://cam/stream") as src:              # doctest: +SKIP
    ...     for frame in src: ...
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
from typing import Any, Iterator

import numpy as np

from edgecv.errors import EdgeCVError, SourceError
from edgecv.sources import Frame, FrameSource, redact

log = logging.getLogger(__name__)

_META = ("kind", "name", "fps", "size", "length", "live", "has_truth")
_STOP_S = 5.0


def _child(conn: Any, text: str) -> None:
    """The child: open ``text`` and send its frames, one after another (a send waits while the pipe is full);
    at its end or on an error, wait for ``reopen`` (then go on) or for the parent to close the pipe."""
    from edgecv.sources import open_source, quiet_opencv

    quiet_opencv()
    try:
        src = open_source(text)
    except BaseException as exc:  # told to the parent as its own one-line error
        conn.send(("error", type(exc).__name__, str(exc)))
        return
    conn.send(("meta", {k: getattr(src, k, None) for k in _META}))
    frames = iter(src)
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
                if conn.recv() != "reopen":
                    return
                try:
                    src.reopen()
                    frames = iter(src)
                    conn.send(("ok", None))
                except BaseException as exc:
                    conn.send(("error", type(exc).__name__, str(exc)))
                continue
            image = np.ascontiguousarray(frame.image)
            conn.send(("frame", {"index": frame.index, "name": frame.name, "time_ms": frame.time_ms,
                                 "path": frame.path, "truth": frame.truth, "shape": image.shape,
                                 "dtype": image.dtype.str, "read": src.read}))
            conn.send_bytes(memoryview(image).cast("B"))
    except (EOFError, BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        return  # the parent closed the pipe: stop
    finally:
        src.close()


class ProcessSource(FrameSource):
    """The source ``text`` read in a child process (see the module docstring): the same ``kind``, ``name``,
    ``fps``, ``size``, ``length``, ``live`` and frames as :func:`~edgecv.sources.open_source` gives."""

    description = "any source, read in a child process"

    def __init__(self, text: str, *, start_timeout_s: float = 60.0) -> None:
        super().__init__(text)
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(child_conn, text), name=f"source {redact(text)}", daemon=True)
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
            head = message[1]
            dtype = np.dtype(head["dtype"])
            buf = bytearray(int(np.prod(head["shape"])) * dtype.itemsize)  # writable, filled in place
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
        proc.join(_STOP_S)
        if proc.is_alive():
            proc.terminate()
            proc.join(_STOP_S)
        if proc.is_alive():
            proc.kill()
            proc.join()
        self._proc = None
