"""Seeded mutants of real artifacts, and what ``edgecv.load`` + ``Model.run`` make of each, for
tests/edgecv/test_fuzz_artifacts.py and benchmarks/fuzz_artifacts.py.

A mutant is a copy of an artifact's folder with one file damaged the way disks, downloads and copies damage
files: bytes flipped, a run of bytes overwritten, a block zeroed, the end cut off. Each is tried twice, in a
child process (so a runtime crash is seen, not suffered): with the original's manifest beside it (which
records the SHA-256 of every file) and without one. Outcomes:

- ``refused``: an edgecv error with a one-line message (``error`` holds its class);
- ``ran-same`` / ``ran-wrong``: it loaded and ran; outputs within / beyond :data:`WRONG` of the original's
  (relative to the largest original value; a changed shape or a non-finite value is wrong);
- ``escaped``: another exception reached the caller (a traceback in an application);
- ``multiline``: an edgecv error of several lines;
- ``crashed``: the process died (a signal, or an exit without a result).

Example:
    >>> original = make_original("onnx", shared / "mnist-8.onnx", tmp / "original")           # doctest: +SKIP
    >>> tally(try_mutants(make_mutants(original, tmp / "m", count=50, seed=0), work=tmp / "w"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

WRONG = 0.05  # outputs off by this much (relative to the original's largest value) are wrong
KINDS = ("flip", "run", "zero", "truncate")
FAILURES = ("escaped", "multiline", "crashed")


@dataclass(frozen=True)
class Original:
    """An artifact to mutate: its folder (the artifact, companions, manifest), and inputs with the outputs it
    gives for them (``reference.npz``)."""

    format: str
    artifact: Path  # inside ``folder``

    @property
    def folder(self) -> Path:
        return self.artifact.parent

    @property
    def reference(self) -> Path:
        return self.folder / "reference.npz"


@dataclass(frozen=True)
class Mutant:
    format: str
    artifact: Path
    file: str  # the file damaged (the artifact or a companion)
    kind: str
    seed: int


def make_original(fmt: str, artifact: Path, folder: Path, *, seed: int = 0) -> Original:
    """Copy ``artifact`` (and its companions) into ``folder``, write a manifest recording the SHA-256 of each
    file, and the outputs of the untouched copy on seeded random inputs."""
    from edgecv import load
    from edgecv.formats import FORMATS
    from edgecv.manifest import Manifest, digest_files, manifest_path

    folder.mkdir(parents=True, exist_ok=True)
    files = FORMATS[fmt].files(artifact)
    for f in files:
        shutil.copy2(f, folder / f.name)
    copy = folder / artifact.name
    model = load(copy)
    rng = np.random.default_rng(seed)
    inputs = []
    for info in model.inputs:
        shape = [d or 1 for d in info.shape]
        inputs.append(rng.uniform(0, 1, shape).astype(info.dtype) if "float" in info.dtype
                      else rng.integers(0, 255, shape).astype(info.dtype))
    outputs = model.run(inputs)
    np.savez(folder / "reference.npz", **{f"in{i}": a for i, a in enumerate(inputs)},
             **{f"out{i}": a for i, a in enumerate(outputs)})
    Manifest(format=fmt, precision="fp32", artifact=copy.name,
             files=digest_files([folder / f.name for f in files])).write(manifest_path(copy))
    return Original(fmt, copy)


def make_mutants(original: Original, root: Path, *, count: int, seed: int) -> list[Mutant]:
    """``count`` mutants of ``original`` under ``root``, each in a folder of its own, from ``seed``."""
    from edgecv.formats import FORMATS

    names = [f.name for f in FORMATS[original.format].files(original.artifact)]
    rng = random.Random(seed)
    mutants = []
    for i in range(count):
        folder = root / f"{original.format}-{i:04d}"
        folder.mkdir(parents=True)
        for name in names + [original.artifact.name + ".json", "reference.npz"]:
            shutil.copy2(original.folder / name, folder / name)
        kind, target = rng.choice(KINDS), rng.choice(names)
        mutate(folder / target, kind, rng)
        mutants.append(Mutant(original.format, folder / original.artifact.name, target, kind, i))
    return mutants


def mutate(path: Path, kind: str, rng: random.Random) -> None:
    """Damage ``path`` in place, the ``kind`` way; the file always changes."""
    data = bytearray(path.read_bytes())
    n = len(data)
    if kind == "truncate":
        data = data[: rng.randrange(0, n)]
    elif kind == "flip":
        for _ in range(rng.randint(1, 16)):
            data[rng.randrange(n)] ^= rng.randint(1, 255)
    elif kind == "run":
        start = rng.randrange(n)
        length = min(rng.randint(4, 64), n - start)
        original = bytes(data[start : start + length])
        while bytes(data[start : start + length]) == original:
            data[start : start + length] = rng.randbytes(length)
    elif kind == "zero":
        start = rng.randrange(n)
        length = min(rng.randint(16, 4096), n - start)
        if not any(data[start : start + length]):
            data[start] = 0xFF  # already zero there: still a change
        else:
            data[start : start + length] = bytes(length)
    else:
        raise ValueError(f"unknown mutation {kind!r}; choose from {KINDS}")
    path.write_bytes(bytes(data))


def try_mutants(mutants: list[Mutant], *, work: Path, timeout: float = 600) -> list[dict[str, Any]]:
    """Each mutant tried with its manifest, then without: one record per (mutant, manifest), in order. They
    run in batches in child processes; a crash ends a batch and the next one starts after the mutant that
    crashed (a progress file says which)."""
    from edgecv import child

    work.mkdir(parents=True, exist_ok=True)
    todo = [{"artifact": str(m.artifact), "manifest": with_manifest} for m in mutants for with_manifest in (True, False)]
    records: list[dict[str, Any]] = []
    while len(records) < len(todo):
        progress = work / "progress.jsonl"
        progress.unlink(missing_ok=True)
        outcome = child.run("tests.edgecv.fuzz:run_batch", {"items": todo[len(records):], "progress": str(progress)},
                            timeout=timeout, env={"EDGECV_CACHE_DIR": str(work / "cache")})
        done = [json.loads(line) for line in progress.read_text().splitlines()] if progress.is_file() else []
        finished = [d for d in done if "outcome" in d]
        records += finished
        if outcome.returned:
            continue
        # The item started last and never finished crashed the process (or it timed out).
        if not done:
            raise RuntimeError(f"the fuzz worker failed before any mutant: {outcome.stderr[-2000:]}")
        crashed = todo[len(records)]
        how = "timeout" if outcome.timed_out else outcome.signal or f"exit {outcome.returncode}"
        records.append({**crashed, "outcome": "crashed", "error": how})
    by_path = {str(m.artifact): m for m in mutants}
    for r in records:
        m = by_path[r["artifact"]]
        r.update(format=m.format, file=m.file, kind=m.kind)
    return records


def tally(records: list[dict[str, Any]]) -> dict[tuple[str, bool], Counter]:
    """Outcome counts by (format, with manifest)."""
    counts: dict[tuple[str, bool], Counter] = {}
    for r in records:
        counts.setdefault((r["format"], r["manifest"]), Counter())[r["outcome"]] += 1
    return counts


def _try_one(item: dict[str, Any]) -> dict[str, Any]:
    from edgecv import load
    from edgecv.errors import EdgeCVError
    from edgecv.manifest import manifest_path

    artifact = Path(item["artifact"])
    manifest = manifest_path(artifact)
    hidden = manifest.with_name(manifest.name + ".hidden")
    if item["manifest"] and hidden.exists():
        hidden.rename(manifest)
    elif not item["manifest"] and manifest.exists():
        manifest.rename(hidden)
    with np.load(artifact.parent / "reference.npz") as ref:
        inputs = [ref[f"in{i}"] for i in range(len([k for k in ref.files if k.startswith("in")]))]
        expected = [ref[f"out{i}"] for i in range(len([k for k in ref.files if k.startswith("out")]))]
    try:
        outputs = load(artifact).run(inputs)
    except EdgeCVError as exc:
        message = str(exc)
        return {"outcome": "multiline" if "\n" in message.strip() else "refused", "error": type(exc).__name__,
                "message": message[:300]}
    except Exception as exc:  # what the fuzz is looking for: anything else is a defect
        return {"outcome": "escaped", "error": type(exc).__name__, "message": str(exc)[:300]}
    return {"outcome": "ran-wrong" if _off(outputs, expected) else "ran-same"}


def _off(outputs: list[np.ndarray], expected: list[np.ndarray]) -> bool:
    if len(outputs) != len(expected):
        return True
    for got, want in zip(outputs, expected):
        got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
        if got.shape != want.shape or not np.isfinite(got).all():
            return True
        if np.abs(got - want).max(initial=0.0) > WRONG * max(np.abs(want).max(initial=0.0), 1e-6):
            return True
    return False


def run_batch(request: dict[str, Any]) -> int:
    """The child's work: try each item, appending ``{"artifact", "manifest"}`` when it starts and the record
    when it ends to the progress file (the parent reads that file even after a crash)."""
    import logging

    logging.disable(logging.WARNING)  # a damaged model makes runtimes log; the outcome is what counts
    with open(request["progress"], "a", encoding="utf-8") as progress:
        for item in request["items"]:
            progress.write(json.dumps({"artifact": item["artifact"], "manifest": item["manifest"]}) + "\n")
            progress.flush()
            record = {**item, **_try_one(item)}
            progress.write(json.dumps(record) + "\n")
            progress.flush()
    return len(request["items"])
