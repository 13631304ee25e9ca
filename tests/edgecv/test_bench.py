import pytest

from edgecv.bench import benchmark
from edgecv.errors import ConfigError, ModelFileError
from edgecv.fileio import file_size


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_isolated_benchmark_reports_every_figure(tiny_onnx, backend):
    r = benchmark(tiny_onnx, backend=backend, runs=20, warmup=2, threads=1)
    assert r.backend == backend and r.runs == 20 and r.threads == 1
    assert 0 < r.min_ms <= r.p50_ms <= r.p90_ms <= r.p99_ms
    assert r.throughput == pytest.approx(1e3 / r.mean_ms)
    assert r.size_bytes == file_size(tiny_onnx)
    assert r.load_ms > 0 and r.peak_rss_mb >= r.baseline_rss_mb > 0


def test_in_process_benchmark_with_a_batch(tiny_onnx):
    r = benchmark(tiny_onnx, runs=5, warmup=0, batch=4, isolate=False)
    assert r.batch == 4 and r.throughput == pytest.approx(4e3 / r.mean_ms)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"runs": 0}, ConfigError, "runs must be >= 1"),
        ({"warmup": -1}, ConfigError, "warmup >= 0"),
        ({"batch": 0}, ConfigError, "batch >= 1"),
    ],
)
def test_bad_settings(tiny_onnx, kwargs, error, message):
    with pytest.raises(error, match=message):
        benchmark(tiny_onnx, **kwargs)


def test_bad_file_fails_before_spawning(tmp_path):
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"\x00" * 32)
    with pytest.raises(ModelFileError, match="TFL3"):
        benchmark(bad)
