"""Load untrusted artifacts in a child process first, so a runtime crash cannot take the caller down.

LiteRT segfaults on some corrupted ``.tflite`` files that are still valid flatbuffers (an operator with a
missing input, an inflated output shape), at construction, ``allocate_tensors()`` or ``invoke()``. The
structural check in :mod:`edgecv.flatbuffer` catches gross damage with a clear message; this catches the
rest. The child loads the file, allocates and runs it once on zeros. A file that passes is remembered by
its content hash (in memory, and in ``$EDGECV_CACHE_DIR`` or ``~/.cache/edgecv``), so the ~0.1 s check is
paid once per file, not once per load.

Example:
    >>> check_in_child(Path("model.tflite"), backend="litert")   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from edgecv import child
from edgecv.errors import ModelFileError

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 120
_passed: set[tuple] = set()


def cache_dir() -> Path:
    root = os.environ.get("EDGECV_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgecv"
    return Path(root) / "probed"


def check_in_child(path: Path, *, backend: str, digest: str | None = None) -> None:
    """Raise :class:`ModelFileError` if loading and running ``path`` crashes or hangs a child process.
    ``digest``: the file's SHA-256 when the caller has just computed it (verifying it against its manifest)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, backend)
    if key in _passed:
        return
    from edgecv.fileio import sha256_of

    marker = cache_dir() / f"{digest or sha256_of(path)}.{backend}"
    if marker.is_file():
        _passed.add(key)
        return
    outcome = child.run("edgecv.probe", {"path": str(path), "backend": backend}, timeout=PROBE_TIMEOUT_S)
    if outcome.timed_out:
        raise ModelFileError(f"{path} hung the {backend} runtime for {PROBE_TIMEOUT_S} s while loading; it is corrupted")
    if outcome.signal is not None:
        raise ModelFileError(f"{path} is corrupted: it crashed the {backend} runtime ({outcome.signal}) in a check process, so it was not loaded")
    # A result, or a clean Python error that loading in this process will raise again: either way, no crash.
    _passed.add(key)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError as exc:  # an unwritable cache only means the check runs again next time
        log.debug("cannot record probe result in %s: %s", marker, exc)


def load_and_run(request: dict[str, Any]) -> None:
    """The check process's work: open ``request["path"]`` with ``request["backend"]`` and run it once on zeros.

    Example:
        >>> load_and_run({"path": "model.tflite", "backend": "litert"})     # doctest: +SKIP
    """
    import numpy as np

    from edgecv.backends import BACKENDS

    session = BACKENDS[request["backend"]].open(Path(request["path"]), threads=1)
    arrays = [np.zeros([d or 1 for d in t.shape], t.dtype) for t in session.inputs]
    if session.resizes:
        session.prepare([a.shape for a in arrays])
    session.run(arrays)


if __name__ == "__main__":  # the check process (edgecv.child)
    child.serve(load_and_run)
