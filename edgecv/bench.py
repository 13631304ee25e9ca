"""Benchmark artifacts: load time, latency percentiles, throughput, peak memory, file size.

Each artifact is measured in a fresh Python process by default, so its load time and peak memory are its
own and a runtime crash cannot take the caller down.

Example:
    >>> r = benchmark("model.fp32.onnx", runs=50)      # doctest: +SKIP
    >>> f"{r.p50_ms:.2f} ms"                              # doctest: +SKIP
    '0.41 ms'
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgecv.child import call, serve
from edgecv.errors import BackendError, ConfigError
from edgecv.fileio import file_size
from edgecv.formats import check_model_file
from edgecv.machine import local_device, rss_mb

# edgecv bench's defaults; export measures its artifacts' latency with the same ones.
RUNS = 100
WARMUP = 10


@dataclass(frozen=True)
class BenchResult:
    artifact: str
    format: str
    backend: str
    precision: str
    threads: int
    batch: int
    runs: int
    warmup: int
    import_ms: float
    load_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    throughput: float  # inferences (images) per second at the mean latency
    baseline_rss_mb: float | None  # after importing the runtime, before loading the model
    peak_rss_mb: float | None  # peak resident memory of the process
    size_bytes: int
    device: dict | None = None  # the machine that ran it: edgecv.machine.local_device(), or the ssh target's
    input_shape: list | None = None  # the first input's shape as fed (dynamic dims fixed)
    verification: str | None = None  # model.verification: how its files were checked against its manifest

    def to_dict(self) -> dict:
        return asdict(self)


def benchmark(
    path: str | Path,
    *,
    backend: str | None = None,
    threads: int | None = None,
    runs: int = RUNS,
    warmup: int = WARMUP,
    batch: int = 1,
    input_shape: tuple[int, ...] | None = None,
    isolate: bool = True,
    verify: bool = True,
) -> BenchResult:
    """Measure one artifact. ``input_shape`` is the first input's full shape (batch first), needed when it
    has dynamic dims; its batch then replaces ``batch``. ``isolate=False`` runs in this process (peak memory
    is then the process's, and other work in it skews the timings). ``verify``: as :func:`edgecv.load` (the
    result's ``verification`` says what was checked)."""
    check_settings(runs=runs, warmup=warmup, batch=batch)
    if input_shape is not None:
        input_shape = tuple(int(d) for d in input_shape)
        if batch not in (1, input_shape[0]):
            raise ConfigError(f"batch {batch} and input shape {_dims(input_shape)} disagree; the shape's first dim is the batch")
    path = Path(path)
    check_model_file(path)
    args = {"path": str(path), "backend": backend, "threads": threads, "runs": runs, "warmup": warmup, "batch": batch,
            "input_shape": list(input_shape) if input_shape is not None else None, "verify": verify}
    if not isolate:
        return BenchResult(**_measure(**args, probe=True), device=local_device())
    measured = call("edgecv.bench", args, failure=f"benchmark of {path.name} failed", error=BackendError)
    return BenchResult(**measured, device=local_device())


def check_settings(*, runs: int, warmup: int, batch: int) -> None:
    """Raise :class:`ConfigError` unless ``runs >= 1``, ``warmup >= 0`` and ``batch >= 1``."""
    if runs < 1 or warmup < 0 or batch < 1:
        raise ConfigError(f"runs must be >= 1, warmup >= 0 and batch >= 1; got runs={runs}, warmup={warmup}, batch={batch}")


def _dims(shape) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def example_shape(shape) -> str:
    """A concrete shape to suggest for ``shape``: batch 1, other dynamic dims 224 (``?x3x?x?`` -> ``1x3x224x224``)."""
    return "x".join(str(d) if d is not None else ("1" if i == 0 else "224") for i, d in enumerate(shape))


def fit_shape(info, input_shape) -> tuple[int, ...]:
    """``input_shape`` checked against input ``info``: same rank, every fixed dim equal (a fixed batch of 1
    takes any batch: edgecv's Model runs it once per item)."""
    shape = tuple(int(d) for d in input_shape)
    want = info.shape
    fits = len(shape) == len(want) and all(w is None or w == g or (i == 0 and w == 1) for i, (w, g) in enumerate(zip(want, shape)))
    if not fits:
        raise ConfigError(f"input shape {_dims(shape)} does not fit input {info.name!r} {_dims(want)}: "
                          "give one dim per axis, the fixed ones as they are")
    return shape


def _bench_inputs(model, batch: int, input_shape=None) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = []
    for k, info in enumerate(model.inputs):
        if k == 0 and input_shape is not None:
            shape = list(fit_shape(info, input_shape))
        else:
            shape = [batch if i == 0 else d for i, d in enumerate(info.shape)]
        if any(d is None for d in shape):
            raise ConfigError(f"input {info.name!r} is {_dims(info.shape)}, with dynamic dims; give the shape to run it at "
                              f"with --input-shape (input_shape=), e.g. {example_shape(info.shape)}")
        dtype = np.dtype(info.dtype)
        if np.issubdtype(dtype, np.integer):
            lo, hi = (np.iinfo(dtype).min, np.iinfo(dtype).max) if dtype.itemsize == 1 else (0, 1)
            arrays.append(rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype))
        else:
            arrays.append(rng.standard_normal(size=shape).astype(dtype))
    return arrays


def _measure(path: str, backend: str | None, threads: int | None, runs: int, warmup: int, batch: int,
             input_shape: list | None = None, probe: bool = False, verify: bool = True) -> dict:
    from edgecv.backends import BACKENDS
    from edgecv.backends.base import default_threads
    from edgecv.formats import format_for_path
    from edgecv.model import choose_backend, load

    name = choose_backend(format_for_path(path), backend)
    start = time.perf_counter()
    BACKENDS[name].import_runtime()
    import_ms = (time.perf_counter() - start) * 1e3
    baseline, _ = rss_mb()
    # The worker is already a child process; in-process runs keep load()'s crash check (probe=True).
    model = load(path, backend=name, threads=threads, isolate=probe, verify=verify)
    arrays = _bench_inputs(model, batch, input_shape)
    batch = int(arrays[0].shape[0]) if arrays and arrays[0].ndim else batch
    for _ in range(warmup):
        model.run(arrays)
    times = np.empty(runs)
    clock = time.perf_counter
    for i in range(runs):
        t0 = clock()
        model.run(arrays)
        times[i] = clock() - t0
    times *= 1e3
    _, peak = rss_mb()
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    mean = float(times.mean())
    return {
        "artifact": str(path),
        "format": model.format,
        "backend": name,
        "precision": model.precision,
        "threads": default_threads(threads),
        "batch": batch,
        "runs": runs,
        "warmup": warmup,
        "import_ms": round(import_ms, 3),
        "load_ms": round(model.load_seconds * 1e3, 3),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": mean,
        "min_ms": float(times.min()),
        "throughput": batch * 1e3 / mean,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak,
        "size_bytes": file_size(path),
        "input_shape": list(arrays[0].shape) if arrays else None,
        "verification": model.verification,
    }


if __name__ == "__main__":  # the isolated benchmark's child process (edgecv.child)
    serve(lambda request: _measure(**request))
