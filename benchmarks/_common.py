"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))


def shared_model(rel: str) -> Path:
    path = SHARED_DATA / "models" / rel
    if not path.is_file():
        sys.exit(f"needs {path} (the shared data folder beside the checkout)")
    return path


@contextlib.contextmanager
def work_dir(out: Path | None, prefix: str) -> Iterator[Path]:
    """``out`` (created), or a temporary folder removed afterwards when ``out`` is None."""
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        yield out
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)
