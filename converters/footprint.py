"""What an artifact costs and how well it does, measured the same way for every compression method:
file size, zipped size (what sparsity saves on the wire), top-1 on labelled inputs and latency p50.

Example:
    >>> rows = measure_artifacts(["out/m.fp32.tflite", "out/m.int8.onnx"], x=x_val, y=y_val)   # doctest: +SKIP
    >>> rows[0].zipped_bytes < rows[0].size_bytes                                               # doctest: +SKIP
    True
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgecv.formats import format_for_path


@dataclass(frozen=True)
class Footprint:
    """One artifact's figures."""

    path: str
    format: str
    size_bytes: int
    zipped_bytes: int
    top1: float | None
    p50_ms: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def artifact_files(path: str | Path) -> list[Path]:
    """The files that make up an artifact (an OpenVINO .xml with its .bin)."""
    path = Path(path)
    return format_for_path(path).files(path)


def zipped_size(path: str | Path) -> int:
    """Bytes after DEFLATE at level 9 of every file of the artifact: zeros from pruning compress away, so
    this is the size pruning saves in a download or an app bundle."""
    return sum(len(zlib.compress(f.read_bytes(), 9)) for f in artifact_files(path))


def top1(path: str | Path, x: np.ndarray, y: np.ndarray, *, batch: int = 256) -> float:
    """Top-1 of the artifact on NHWC float inputs ``x`` (transposed for NCHW artifacts)."""
    import edgecv

    model = edgecv.load(path, float_io=True)
    nchw = model.inputs[0].layout == "NCHW"
    correct = 0
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        out = model.run([xb.transpose(0, 3, 1, 2) if nchw else xb])[0]
        correct += int(np.sum(np.argmax(out.reshape(len(xb), -1), axis=1) == y[i : i + batch]))
    return correct / len(x)


def measure_artifacts(paths, *, x: np.ndarray | None = None, y: np.ndarray | None = None, runs: int = 100) -> list[Footprint]:
    """Size, zipped size, top-1 (when ``x`` and ``y`` are given) and latency p50 (``runs`` > 0) of each."""
    from edgecv.bench import benchmark

    rows = []
    for path in paths:
        path = Path(path)
        rows.append(Footprint(
            path=str(path),
            format=format_for_path(path).name,
            size_bytes=sum(f.stat().st_size for f in artifact_files(path)),
            zipped_bytes=zipped_size(path),
            top1=top1(path, x, y) if x is not None and y is not None else None,
            p50_ms=benchmark(path, runs=runs, warmup=min(20, runs), isolate=False).p50_ms if runs > 0 else None,
        ))
    return rows
