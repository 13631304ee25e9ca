"""Publishing a command's whole output at once: killed at any instant, ``out`` holds the old set or the new set.

A :class:`Publication` gives a staging folder that mirrors ``out``; the command builds everything it writes
there (artifacts, manifests, report.*, models, sub-folders), then :meth:`Publication.publish` makes it the
contents of ``out`` in one of two ways:

- **swap** (Linux, ``out`` not a mount point, its parent writable, the working directory not inside it):
  the staging folder is a sibling, ``.<out name>.edgecv-staging-<pid>-<random>``. Publishing hard-links into
  it every entry of ``out`` the new set does not replace (the user's files, other models' artifacts, recursively;
  a copy where links are refused), then exchanges it with ``out`` by ONE ``renameat2(RENAME_EXCHANGE)``, then
  moves into the new ``out`` whatever appeared in, or was replaced in, the old one since it was linked, and
  removes the old folder. Before the exchange ``out`` is untouched; after it, ``out`` is the whole new set.
- **in place** (elsewhere, or ``EDGECV_PUBLISH=inplace``): the staging folder is ``out/.edgecv-staging-<pid>-*``
  and its files are renamed into ``out`` one by one, each artifact's companions first, then the artifact, then
  its manifest (which records the SHA-256 of every file), the set's summaries (report.*) last. A kill in
  between leaves a mix that :func:`edgecv.load` refuses, by the manifest's hashes, rather than runs.

A publication whose ``out`` lies inside another one's staging folder (``edgecv qat`` exporting into
``OUT/ptq``) writes straight into it: the outer publication publishes both at once.

Work folders (``.edgecv-work-<pid>-*`` inside the staging folder) and the staging folder are removed on
every exit path (an exception, Ctrl-C, SIGTERM, which unwinds like Ctrl-C while a publication is open) and,
after a kill, by the next publication into the same ``out`` (:func:`sweep_for`). Concurrent publications into
one ``out`` take turns (a lock on ``out``). Ctrl-C and SIGTERM arriving once the first rename (in place) or the
exchange (swap) is done wait until the renames (and the rescue pass) end: ``out`` is then the whole new set.
A conflict (a file of the new set where ``out`` has a folder, or the reverse) is refused before anything moves.

The remaining window (swap): a file another program replaces in ``out`` in the microseconds between the
exchange and the rescue pass is still moved over; a kill inside those microseconds leaves it in the old
folder, which the next run removes.

Example:
    >>> with Publication("artifacts") as pub:                       # doctest: +SKIP
    ...     (pub.staging / "notes.txt").write_text("new")
    ...     pub.publish()
    >>> pub.final(pub.staging / "notes.txt")                        # doctest: +SKIP
    PosixPath('artifacts/notes.txt')
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from edgecv.errors import OutputError
from edgecv.fileio import ensure_writable_dir
from edgecv.stages import stage
from edgecv.workdir import WorkDir, is_stale, lock, sigterm_unwinds, sweep

log = logging.getLogger(__name__)

MODE_ENV = "EDGECV_PUBLISH"  # "swap" or "inplace": force a mode
STAGING = "edgecv-staging-"
WORK = ".edgecv-work-"
TEMP_PREFIX = ".edgecv-"  # edgecv's own temporary entries inside ``out``: never linked, never published
IN_OUT_TEMPS = (f".{STAGING}", WORK, ".edgecv-qat-")  # swept inside ``out`` when stale
# The set's summaries, moved last in place (the .json ones at the very end): they describe the set.
SUMMARIES = ("report.md", "report.png", "optimize.md", "demo.json", "optimize.json", "report.json")

_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_AT_FDCWD = -100
_NO_EXCHANGE = {errno.EINVAL, errno.ENOSYS, errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EBUSY, errno.EACCES}

_open: list[Publication] = []  # this process's open publications, for nesting


class _Unavailable(Exception):
    """The exchange is not possible here; publish in place instead."""


class Publication:
    """A staging folder for the whole output of a command into ``out``, published at once (module docstring).

    Use it as a context manager: leaving the block without :meth:`publish` removes the staging folder and
    leaves ``out`` as it was. ``mode`` forces ``"swap"`` or ``"inplace"`` (default: the environment's
    ``EDGECV_PUBLISH``, else chosen as in the module docstring).
    """

    def __init__(self, out: str | Path, *, mode: str | None = None) -> None:
        self.out = ensure_writable_dir(out)
        self.real = Path(os.path.realpath(self.out))
        self.published = False
        self._discards: set[str] = set()
        self._lock: int | None = None
        self._stack = contextlib.ExitStack()
        self.outer = next((p for p in reversed(_open) if _inside(self.real, p.real_staging)), None)
        if self.outer is not None:
            self.mode = "nested"
            self.staging = self.out
        else:
            self.mode = _choose_mode(self.real, mode or os.environ.get(MODE_ENV))
            sweep_for(self.real)
            self.staging = self._make_staging()
        self.real_staging = Path(os.path.realpath(self.staging))
        self._work = WorkDir.create(self.staging, WORK)
        _open.append(self)

    @property
    def work(self) -> Path:
        """A scratch folder inside the staging folder, removed before publishing."""
        return self._work.path

    def final(self, path: str | Path) -> Path:
        """Where ``path`` (inside the staging folder) is once published: the same place under ``out``."""
        path = Path(path)
        if self.outer is not None:
            return self.outer.final(path)
        try:
            return self.out / Path(os.path.realpath(path)).relative_to(self.real_staging)
        except ValueError:
            return path

    def locate(self, path: str | Path) -> Path:
        """Where the file that will be at ``path`` (under ``out``) is now: in the staging folder until published."""
        path = Path(path)
        if self.outer is not None:
            return self.outer.locate(path)
        if self.published:
            return path
        try:
            return self.staging / path.relative_to(self.out)
        except ValueError:
            return path

    def discard(self, relative: str) -> None:
        """Leave ``relative`` (a path under ``out``) out of the new set: an old file of that name is removed."""
        if self.outer is not None:
            rel = (self.real_staging.relative_to(self.outer.real_staging) / relative).as_posix()
            return self.outer.discard(rel)
        self._discards.add(Path(relative).as_posix())

    def publish(self) -> None:
        """Make the staging folder's contents the contents of ``out`` (see the module docstring)."""
        if self.published:
            return
        self._work.remove()
        if self.outer is not None:
            self.published = True
            return
        stage("staged")
        owned, dirs = _entries(self.staging)
        owned |= self._discards
        self._lock = _lock_dir(self.real)
        try:
            if self.mode == "swap":
                try:
                    self._swap(owned)
                except _Unavailable as exc:
                    log.info("publishing %s in place: %s", self.out, exc)
                    self.mode = "inplace"
                    self._in_place(owned - self._discards, dirs)
            else:
                self._in_place(owned - self._discards, dirs)
            self.published = True
        finally:
            os.close(self._lock)
            self._lock = None
            self._staging_lock.release()
        stage("published")

    # --- swap ---------------------------------------------------------------------------------------

    def _swap(self, owned: set[str]) -> None:
        seen: dict[str, tuple[int, int]] = {}
        _check_conflicts(self.staging, self.real)
        _link_tree(self.real, self.staging, owned, seen, "")
        _copy_dir_stat(self.real, self.staging)
        stage("linked")
        with _signals_deferred():  # Ctrl-C or SIGTERM now would send what the rescue moves away with the old set
            _exchange(self.staging, self.real)
            # From here ``out`` is the new set and the staging name holds the old one (still locked by us).
            stage("swapped")
            _rescue(self.staging, self.real, owned, seen, "")
            stage("rescued")
        shutil.rmtree(self.staging, ignore_errors=True)

    # --- in place -----------------------------------------------------------------------------------

    def _in_place(self, owned: set[str], dirs: set[str]) -> None:
        _check_conflicts(self.staging, self.real)  # before the first move: a refusal leaves ``out`` as it was
        order = _in_place_order(self.staging, owned)
        with _signals_deferred():  # Ctrl-C or SIGTERM waits for the last rename: ``out`` is not left a mix
            for rel in sorted(dirs):
                (self.real / rel).mkdir(parents=True, exist_ok=True)
            for rel in order:
                os.replace(self.staging / rel, self.real / rel)
                stage(f"moved:{rel}")
            for rel in sorted(self._discards):
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    (self.real / rel).unlink()
        shutil.rmtree(self.staging, ignore_errors=True)

    # --- set-up and clean-up ------------------------------------------------------------------------

    def _make_staging(self) -> Path:
        if self.mode == "swap":
            try:
                path = Path(tempfile.mkdtemp(prefix=f".{self.real.name}.{STAGING}{os.getpid()}-", dir=self.real.parent))
                self._staging_lock = WorkDir(path, lock(path))
                return path
            except OSError as exc:  # a name too long, a parent that refuses: publish in place
                log.info("publishing %s in place: no staging folder beside it (%s)", self.out, exc)
                self.mode = "inplace"
        self._staging_lock = WorkDir.create(self.real, f".{STAGING}")
        return self._staging_lock.path

    def close(self) -> None:
        """Remove the work folder, and the staging folder unless published; ``out`` is left as it is."""
        self._work.remove()
        if self in _open:
            _open.remove(self)
        if self.outer is None and not self.published:
            shutil.rmtree(self.staging, ignore_errors=True)
            self._staging_lock.release()

    def __enter__(self) -> Publication:
        self._stack.enter_context(sigterm_unwinds())
        self._stack.callback(self.close)
        return self

    def __exit__(self, *exc) -> bool | None:
        return self._stack.__exit__(*exc)


def sweep_for(out: str | Path) -> list[Path]:
    """Remove what killed runs left for ``out``: stale staging folders beside it (a staging folder never
    published, or the old set a swap left), and stale work and staging folders inside it."""
    out = Path(os.path.realpath(out))
    removed = sweep(out, IN_OUT_TEMPS)
    removed += sweep(out.parent, [f".{out.name}.{STAGING}"])
    return removed


def _choose_mode(real: Path, wanted: str | None) -> str:
    if wanted:
        if wanted not in ("swap", "inplace"):
            raise OutputError(f"{MODE_ENV}: expected swap or inplace, got {wanted!r}")
        return wanted
    if not sys.platform.startswith("linux") or _renameat2() is None:
        return "inplace"
    try:
        if os.stat(real).st_dev != os.stat(real.parent).st_dev:
            return "inplace"  # a mount point: the exchange would cross filesystems
    except OSError:
        return "inplace"
    if not os.access(real.parent, os.W_OK | os.X_OK):
        return "inplace"
    with contextlib.suppress(OSError):
        # Our working directory (so likely the user's shell's) inside ``out``: a swap would leave it in the
        # removed old folder.
        if _inside(Path(os.getcwd()), real):
            return "inplace"
    return "swap"


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back while the block runs (renames only: milliseconds), then act on them as
    they would have been. A handler, not a signal mask: a mask is per thread, and the runtimes' threads would
    take the signal in the main thread's stead."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum, frame):
        held.append(signum)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler is not None:  # None: set outside Python, cannot be restored
            previous[sig] = signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(held):
            signal.raise_signal(sig)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _renameat2():
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc before 2.28, musl
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange(staging: Path, out: Path) -> None:
    """Exchange the folders ``staging`` and ``out`` atomically (``out`` gone: rename ``staging`` to it)."""
    fn = _renameat2()
    if fn is None:
        raise _Unavailable("renameat2 is not available")
    a, b = os.fsencode(staging), os.fsencode(out)
    if fn(_AT_FDCWD, a, _AT_FDCWD, b, _RENAME_EXCHANGE) == 0:
        return
    err = ctypes.get_errno()
    if err == errno.ENOENT and not out.exists():  # ``out`` was removed meanwhile: the new set is all there is
        if fn(_AT_FDCWD, a, _AT_FDCWD, b, _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
    if err in _NO_EXCHANGE:
        raise _Unavailable(f"RENAME_EXCHANGE failed: {os.strerror(err)}")
    raise OutputError(f"cannot publish into {out}: {os.strerror(err)}")


def _lock_dir(real: Path) -> int:
    """A lock on the folder now at ``real`` (taking turns with other publications into it)."""
    for _ in range(100):
        fd = lock(real)
        if fd is None:
            return os.open(real, os.O_RDONLY)
        try:
            same = os.fstat(fd).st_ino == os.stat(real).st_ino
        except OSError:
            same = False
        if same:
            return fd
        os.close(fd)  # another publication exchanged it while we waited: lock the new one
    raise OutputError(f"cannot publish into {real}: it keeps changing under us")


def _entries(root: Path) -> tuple[set[str], set[str]]:
    """The relative paths of the files (and symlinks) and of the folders under ``root``, edgecv temps aside."""
    files, dirs = set(), set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if not d.startswith(TEMP_PREFIX)]
        for d in dirnames:
            if (Path(dirpath) / d).is_symlink():
                files.add((rel / d).as_posix())
            else:
                dirs.add((rel / d).as_posix())
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
        files.update((rel / f).as_posix() for f in filenames if not f.startswith(TEMP_PREFIX))
    return files, dirs


def _check_conflicts(staging: Path, out: Path) -> None:
    """A file of the new set where ``out`` has a folder (or the reverse) would lose the user's entry: refuse."""
    for dirpath, dirnames, filenames in os.walk(staging):
        rel = Path(dirpath).relative_to(staging)
        for name in filenames:
            there = out / rel / name
            if there.is_dir() and not there.is_symlink():
                raise OutputError(f"cannot publish into {out}: {there} is a folder where a file goes")
        for name in dirnames:
            there = out / rel / name
            if (there.exists() or there.is_symlink()) and not (there.is_dir() and not there.is_symlink()):
                raise OutputError(f"cannot publish into {out}: {there} is a file where a folder goes")


def _link_tree(src: Path, dst: Path, owned: set[str], seen: dict[str, tuple[int, int]], rel: str) -> None:
    """Hard-link (else copy) into ``dst`` every entry of ``src`` the new set does not replace; ``seen`` records
    the identity of each entry linked, for the rescue pass."""
    for entry in os.scandir(src):
        name, r = entry.name, rel + entry.name
        if name.startswith(TEMP_PREFIX) or r in owned:
            continue
        st = entry.stat(follow_symlinks=False)
        target = dst / name
        if entry.is_dir(follow_symlinks=False):
            if not target.exists():
                target.mkdir()
                _copy_dir_stat(Path(entry.path), target)
            seen[r] = (st.st_dev, st.st_ino)
            _link_tree(Path(entry.path), target, owned, seen, r + "/")
            continue
        if target.exists() or target.is_symlink():
            continue  # the new set has it (a conflict was refused before)
        try:
            os.link(entry.path, target, follow_symlinks=False)
        except OSError:  # a filesystem without hard links, or a file at its link limit
            shutil.copy2(entry.path, target, follow_symlinks=False)
        seen[r] = (st.st_dev, st.st_ino)


def _rescue(old: Path, new: Path, owned: set[str], seen: dict[str, tuple[int, int]], rel: str) -> None:
    """Move into ``new`` the entries of ``old`` (the set just replaced) that were made or replaced after the
    link pass: another program's files must not go with the old set."""
    for entry in os.scandir(old):
        name, r = entry.name, rel + entry.name
        if r in owned:
            continue
        st = entry.stat(follow_symlinks=False)
        target = new / name
        if entry.is_dir(follow_symlinks=False):
            if target.is_dir() and not target.is_symlink():
                _rescue(Path(entry.path), target, owned, seen, r + "/")
            elif not (target.exists() or target.is_symlink()):
                os.rename(entry.path, target)
            else:
                kept = new / f"{name}.kept-{os.getpid()}"
                log.warning("%s appeared in %s while publishing, where the new set has a file: kept as %s", name, new, kept)
                os.rename(entry.path, kept)
            continue
        if seen.get(r) == (st.st_dev, st.st_ino):
            continue  # linked, unchanged since
        if target.is_dir() and not target.is_symlink():
            kept = new / f"{name}.kept-{os.getpid()}"
            log.warning("%s appeared in %s while publishing, where the new set has a folder: kept as %s", name, new, kept)
            os.rename(entry.path, kept)
        else:
            os.replace(entry.path, target)


def _copy_dir_stat(src: Path, dst: Path) -> None:
    """The old folder's permissions (and owner, where allowed) on the one that replaces it."""
    with contextlib.suppress(OSError):
        shutil.copystat(src, dst, follow_symlinks=False)
    with contextlib.suppress(OSError):
        st = os.stat(src)
        if (st.st_uid, st.st_gid) != (os.stat(dst).st_uid, os.stat(dst).st_gid):
            os.chown(dst, st.st_uid, st.st_gid)


def _in_place_order(staging: Path, owned: set[str]) -> list[str]:
    """Other files first; then each artifact's companions, the artifact, its manifest; summaries last."""
    from edgecv.formats import FORMATS

    groups: list[list[str]] = []
    grouped: set[str] = set()
    for rel in sorted(owned):
        main = rel[: -len(".json")] if rel.endswith(".json") else None
        if main is None or main not in owned:
            continue
        fmt = next((f for f in FORMATS.values() if main.lower().endswith(f.suffix)), None)
        if fmt is None:
            continue
        files = [Path(p).relative_to(staging).as_posix() for p in fmt.files(staging / main)]
        files = [f for f in files if f in owned]
        groups.append(list(reversed(files)) + [rel])
        grouped.update(files + [rel])
    summaries = sorted((r for r in owned if r not in grouped and Path(r).name in SUMMARIES),
                       key=lambda r: (r.count("/") == 0, SUMMARIES.index(Path(r).name)))
    others = sorted(r for r in owned if r not in grouped and r not in summaries)
    return others + [f for g in groups for f in g] + summaries


def stale_staging(out: str | Path) -> list[Path]:
    """The staging folders beside or inside ``out`` that no live run owns (what :func:`sweep_for` removes)."""
    out = Path(os.path.realpath(out))
    found = [p for p in out.parent.glob(f".{out.name}.{STAGING}*") if p.is_dir()]
    found += [p for p in out.iterdir() if p.is_dir() and p.name.startswith(IN_OUT_TEMPS)] if out.is_dir() else []
    return [p for p in found if is_stale(p)]


__all__ = ["Publication", "sweep_for", "stale_staging", "MODE_ENV", "SUMMARIES"]
