"""Pick the fastest artifact of a folder on this machine, by measuring each one, not by guessing.

Example:
    >>> best, table = fastest_artifact("artifacts/", runs=30)          # doctest: +SKIP
    >>> best.name, [(row["artifact"], row["p50_ms"]) for row in table]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgecv.errors import ConfigError, EdgeCVError, InputError

log = logging.getLogger(__name__)


def folder_artifacts(folder: Path, *, detectors_only: bool = True) -> list[Path]:
    """The artifacts in ``folder`` (by the suffixes of :data:`edgecv.formats.FORMATS`); with
    ``detectors_only``, those whose manifest carries a detector spec (what ``edgecv export --spec`` writes)."""
    from edgecv.detection.detector import MANIFEST_KEY
    from edgecv.formats import FORMATS
    from edgecv.manifest import find_manifest

    suffixes = {f.suffix for f in FORMATS.values()}
    found = sorted(p for p in folder.iterdir() if p.suffix in suffixes and p.is_file())
    if not detectors_only:
        return found
    keep = []
    for p in found:
        manifest = find_manifest(p)
        if manifest is not None and manifest.extra.get(MANIFEST_KEY):
            keep.append(p)
    return keep


def fastest_artifact(folder: str | Path, *, runs: int = 30, threads: int | None = None,
                     detectors_only: bool = True, verify: bool = True) -> tuple[Path, list[dict[str, Any]]]:
    """The artifact of ``folder`` with the lowest median latency here, and the measured table (fastest
    first). Artifacts that fail to load (one whose files do not match its manifest, unless ``verify`` is
    False) are listed with their error and never chosen."""
    from edgecv.bench import benchmark
    from edgecv.formats import FORMATS

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"model folder not found: {folder}")
    candidates = folder_artifacts(folder, detectors_only=detectors_only)
    if not candidates:
        what = "detector artifacts (with a detector spec in their manifest)" if detectors_only else "artifacts"
        suffixes = ", ".join(f.suffix for f in FORMATS.values())
        raise ConfigError(f"no {what} ({suffixes}) in {folder}; export with 'edgecv export --spec', or pass --spec")
    table: list[dict[str, Any]] = []
    for path in candidates:
        try:
            r = benchmark(path, runs=runs, warmup=5, threads=threads, isolate=False, verify=verify)
            table.append({"artifact": path.name, "path": str(path), "backend": r.backend, "p50_ms": r.p50_ms,
                          "error": None})
        except EdgeCVError as exc:  # recorded in the table and never chosen; the others are still measured
            table.append({"artifact": path.name, "path": str(path), "backend": None, "p50_ms": None,
                          "error": str(exc)})
    table.sort(key=lambda row: (row["p50_ms"] is None, row["p50_ms"] or 0.0))
    if table[0]["p50_ms"] is None:
        raise ConfigError(f"no artifact in {folder} could be run: " + "; ".join(f"{r['artifact']}: {r['error']}"
                                                                             for r in table))
    log.info("fastest artifact in %s: %s (%.3f ms p50)", folder, table[0]["artifact"], table[0]["p50_ms"])
    return Path(table[0]["path"]), table
