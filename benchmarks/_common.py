"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))


def shared_model(rel: str) -> Path:
    path = SHARED_DATA / "models" / rel
    if not path.is_file():
        sys.exit(f"needs {path} (the shared data folder beside the checkout)")
    return path
