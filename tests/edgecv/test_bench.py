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


@pytest.fixture(scope="module")
def dynamic_onnx(tmp_path_factory):
    from tests.converters.test_export import make_dynamic_onnx

    return make_dynamic_onnx(tmp_path_factory.mktemp("dyn") / "dyn.onnx")


def test_a_dynamic_model_is_benchmarked_at_the_given_shape(dynamic_onnx):
    r = benchmark(dynamic_onnx, runs=3, warmup=1, input_shape=(2, 3, 24, 16), isolate=False)
    assert r.input_shape == [2, 3, 24, 16] and r.batch == 2 and r.throughput == pytest.approx(2e3 / r.mean_ms)
    isolated = benchmark(dynamic_onnx, runs=3, warmup=1, input_shape=(1, 3, 24, 16))
    assert isolated.input_shape == [1, 3, 24, 16] and isolated.batch == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, r"input 'x' is \?x3x\?x\?, with dynamic dims; give the shape to run it at with --input-shape \(input_shape=\), "
             r"e\.g\. 1x3x224x224"),
        ({"input_shape": (1, 24, 16, 3)}, r"input shape 1x24x16x3 does not fit input 'x' \?x3x\?x\?"),
        ({"input_shape": (1, 3, 24)}, "input shape 1x3x24 does not fit"),
        ({"input_shape": (2, 3, 24, 16), "batch": 4}, "batch 4 and input shape 2x3x24x16 disagree"),
    ],
)
def test_dynamic_model_shape_errors(dynamic_onnx, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        benchmark(dynamic_onnx, runs=1, warmup=0, isolate=False, **kwargs)


def test_cli_bench_takes_an_input_shape(dynamic_onnx, capsys):
    from edgecv.cli.main import main

    assert main(["bench", str(dynamic_onnx), "--runs", "2", "--warmup", "0", "--input-shape", "1x3x24x16", "--json"]) == 0
    import json

    (row,) = json.loads(capsys.readouterr().out)
    assert row["input_shape"] == [1, 3, 24, 16] and row["runs"] == 2


def test_cli_bench_refuses_an_input_shape_with_remote(dynamic_onnx, capsys):
    from edgecv.cli.main import main

    assert main(["bench", str(dynamic_onnx), "--input-shape", "1x3x24x16", "--remote", "pi@host"]) != 0
    assert "--input-shape is not supported with --remote yet" in capsys.readouterr().err


def test_running_out_of_memory_in_the_child_is_named(tiny_onnx, capsys):
    """A batch of 2**44 makes the child's input allocation fail at once (24 PiB, past any address space): the
    error names MemoryError and what could not be allocated, not a bare exit code."""
    from edgecv.cli.main import main

    assert main(["bench", str(tiny_onnx), "--runs", "1", "--warmup", "0", "--input-shape", f"{2**44}x3x8x8", "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"edgecv: error: benchmark of {tiny_onnx.name} failed: ran out of memory (MemoryError): Unable to "
                   "allocate 24.0 PiB for an array with shape (17592186044416, 3, 8, 8) and data type float64"]
