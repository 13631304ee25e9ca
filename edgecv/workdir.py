"""Work folders that never outlive their run: created with the owner's pid in the name and held by a lock
(``flock`` on the folder) while the run lives, removed on every exit path Python sees, and swept by the
next run when their owner is gone (killed, power cut). SIGTERM unwinds like Ctrl-C where it is asked to.

A folder is stale when its lock can be taken and no process has the pid in its name: the kernel drops a
dead process's locks, so a live run's folder (in this or another process, pid namespace or container sharing
the folder) is never swept; the pid covers the instant between a folder's creation and its lock (for
:data:`UNLOCKED_GRACE_S`: after that a reused pid does not keep a dead run's folder). Where
``flock`` is not supported (some network filesystems), the pid alone decides.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> with WorkDir.create(root, ".edgecv-work-") as work:
    ...     (work.path / "scratch.bin").write_bytes(b"x")
    1
    >>> list(root.iterdir())
    []
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator

log = logging.getLogger(__name__)

UNLOCKED_GRACE_S = 60.0  # an unlocked folder younger than this, whose pid is alive, may be about to be locked
_PID = re.compile(r"-(\d+)-[^-]*$")


class WorkDir:
    """A folder ``<prefix><pid>-<random>`` under ``parent``, locked while this object is open."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def create(cls, parent: str | Path, prefix: str) -> WorkDir:
        path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))
        return cls(path, lock(path))

    def remove(self) -> None:
        """Delete the folder (whatever it holds) and release its lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        self.release()

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WorkDir:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def lock(path: Path) -> int | None:
    """An open descriptor of the folder ``path`` holding an exclusive ``flock`` on it (None where locks are
    not supported). Blocks while another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: the pid in the name decides staleness
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        log.debug("no lock on %s (%s): staleness goes by the pid in its name", path, exc)
        os.close(fd)
        return None
    return fd


def is_stale(path: Path) -> bool:
    """True when no live run owns the work folder ``path`` (see the module docstring)."""
    try:
        import fcntl

        fd = os.open(path, os.O_RDONLY)
    except (ImportError, OSError):
        return _owner_gone(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Unlocked; but a folder just made by a live run is unlocked until it takes the lock (microseconds):
        # its pid decides while it is young. An old unlocked one is stale even when its pid is alive again
        # (reused: in a container every run may be pid 1).
        return _owner_gone(path, unnamed=True) or _age_s(path) > UNLOCKED_GRACE_S
    except BlockingIOError:
        return False
    except OSError:
        return _owner_gone(path)
    finally:
        os.close(fd)


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _owner_gone(path: Path, *, unnamed: bool = False) -> bool:
    """True when no process has the pid in ``path``'s name; ``unnamed`` for a name without one."""
    match = _PID.search(path.name)
    if match is None:
        return unnamed  # no pid: keep it rather than guess, unless its lock already says it is free
    pid = int(match.group(1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """True for a process that has ended but not been reaped (Linux; elsewhere False)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def sweep(parent: str | Path, prefixes: Iterable[str]) -> list[Path]:
    """Remove the stale work folders directly under ``parent`` whose names start with one of ``prefixes``
    (and that belong to this user); the ones removed."""
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    prefixes = tuple(prefixes)
    for entry in entries:
        if not entry.name.startswith(prefixes) or not entry.is_dir(follow_symlinks=False):
            continue
        path = Path(entry.path)
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
        except (OSError, AttributeError):
            pass
        if is_stale(path):
            log.info("removing %s, left by a run that did not finish", path)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


class Terminated(BaseException):
    """SIGTERM arrived: unwinding (``finally`` blocks run) before the process ends by SIGTERM."""


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` in the main thread, so clean-up code runs as it
    does for Ctrl-C; once the block has unwound, the process ends by SIGTERM as it would have. Does nothing
    outside the main thread or when SIGTERM already has a handler (an outer block, or the application's).

    Example:
        >>> with sigterm_unwinds():
        ...     pass
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum, frame):
        raise Terminated

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)  # the default action, now that everything has been cleaned up
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


__all__ = ["WorkDir", "Terminated", "lock", "is_stale", "sweep", "sigterm_unwinds"]
