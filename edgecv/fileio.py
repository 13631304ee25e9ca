"""File helpers: reading a user's text file, atomic writes, content hashes, writability checks.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write_text(d / "a.txt", "hi").read_text()
    'hi'
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from edgecv.errors import InputError, OutputError


def read_user_text(path: str | Path, what: str) -> str:
    """The UTF-8 text of a file the user named; a missing or unreadable one is a one-line :class:`InputError`
    naming ``what`` it is ("labels file", "class map")."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} {path}: {exc}") from None


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write to {path.parent}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; an artifact is meant to be read by others
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` if needed and prove it writable, or raise :class:`OutputError` in one line."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output path is a file, not a directory: {path}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".edgecv-write-check-"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to output directory {path}: {exc.strerror or exc}") from None
    return path


def sha256_of(path: str | Path) -> str:
    """SHA-256 of a file, or of a folder's files (relative names and contents, in sorted order)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def file_size(path: str | Path) -> int:
    """Bytes on disk of an artifact, including an OpenVINO IR's ``.bin`` beside its ``.xml``."""
    path = Path(path)
    size = path.stat().st_size
    if path.suffix == ".xml" and path.with_suffix(".bin").is_file():
        size += path.with_suffix(".bin").stat().st_size
    return size
