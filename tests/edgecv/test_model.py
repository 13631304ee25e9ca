"""edgecv.load and Model.run on every backend, against an exact numpy reference."""

import numpy as np
import pytest

import edgecv
from edgecv.errors import BackendError, InputError, MissingDependencyError
from tests.conftest import tiny_cnn_reference, tiny_cnn_weights

BACKENDS_FOR_ONNX = ["onnxruntime", "openvino"]


@pytest.mark.parametrize("backend", BACKENDS_FOR_ONNX)
def test_onnx_runs_on_both_backends_and_matches_numpy(tiny_onnx, backend):
    model = edgecv.load(tiny_onnx, backend=backend, threads=1)
    assert model.backend == backend and model.format == "onnx"
    assert [t.describe() for t in model.inputs] == ["x ?x3x8x8 float32 NCHW"]
    x = np.random.default_rng(1).normal(size=(3, 3, 8, 8)).astype(np.float32)
    (scores,) = model.run(x)
    np.testing.assert_allclose(scores, tiny_cnn_reference(x, tiny_cnn_weights()), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS_FOR_ONNX)
def test_fixed_batch_one_model_runs_a_batch_item_by_item(tiny_onnx_batch1, backend):
    model = edgecv.load(tiny_onnx_batch1, backend=backend)
    x = np.random.default_rng(2).normal(size=(4, 3, 8, 8)).astype(np.float32)
    (scores,) = model.run(x)
    assert scores.shape == (4, 5)
    np.testing.assert_allclose(scores, tiny_cnn_reference(x, tiny_cnn_weights()), rtol=1e-5, atol=1e-5)


def test_inputs_by_list_dict_and_call_agree(tiny_onnx):
    model = edgecv.load(tiny_onnx)
    x = np.ones((1, 3, 8, 8), np.float32)
    a = model.run(x)[0]
    np.testing.assert_array_equal(a, model.run([x])[0])
    np.testing.assert_array_equal(a, model.run({"x": x})[0])
    np.testing.assert_array_equal(a, model(x)[0])


def test_run_does_not_change_the_callers_array(tiny_onnx):
    model = edgecv.load(tiny_onnx)
    x = np.random.default_rng(3).normal(size=(2, 3, 8, 8)).astype(np.float32)
    before = x.copy()
    model.run(x)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize(
    "inputs, error, message",
    [
        (np.zeros((1, 3, 8, 8), np.float64), InputError, "expected dtype float32, got float64"),
        (np.zeros((1, 3, 9, 8), np.float32), InputError, "expected shape ?x3x8x8, got 1x3x9x8"),
        (np.zeros((3, 8, 8), np.float32), InputError, "expected shape ?x3x8x8, got 3x8x8"),
        ([np.zeros((1, 3, 8, 8), np.float32)] * 2, InputError, "expected 1 input(s), got 2"),
        ({"y": np.zeros((1, 3, 8, 8), np.float32)}, InputError, "unknown input name"),
        ([[1.0]], InputError, "expected a numpy array, got list"),
        ("image.png", InputError, "expected a numpy array, a list of arrays or a dict"),
    ],
)
def test_wrong_inputs_raise_one_line_errors(tiny_onnx, inputs, error, message):
    model = edgecv.load(tiny_onnx)
    with pytest.raises(error) as info:
        model.run(inputs)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "name, backend, error, message",
    [
        ("tiny.onnx", "litert", BackendError, "cannot run onnx files; use one of: onnxruntime, openvino"),
        ("tiny.onnx", "tensorrt", BackendError, "unknown backend 'tensorrt'; choose one of: litert, onnxruntime, openvino"),
    ],
)
def test_backend_choice_errors_list_the_valid_names(tiny_onnx, name, backend, error, message):
    with pytest.raises(error, match=message):
        edgecv.load(tiny_onnx, backend=backend)


def test_missing_runtime_names_the_extra_to_install(tiny_onnx, monkeypatch):
    from edgecv.backends import BACKENDS

    for b in BACKENDS.values():
        monkeypatch.setattr(type(b), "available", lambda self: False)
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgecv\[onnxruntime\]'"):
        edgecv.load(tiny_onnx)


def test_missing_module_error_from_require():
    from edgecv.deps import require

    with pytest.raises(MissingDependencyError, match=r"no_such_pkg is needed to fly: pip install 'edgecv\[x\]'"):
        require("no_such_pkg", extra="x", purpose="fly")


def test_manifest_beside_the_artifact_is_read(tiny_onnx, tmp_path):
    import shutil

    from edgecv.manifest import Manifest, Preprocess

    path = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, path)
    Manifest("onnx", "fp32", labels=list("abcde"), preprocess=Preprocess(layout="NCHW", mean=(127.5,), std=(127.5,))).write(
        tmp_path / "m.onnx.json"
    )
    model = edgecv.load(path)
    assert model.labels == list("abcde") and model.precision == "fp32"
    assert model.manifest.preprocess.input_range == (-1.0, 1.0)


def test_exported_artifacts_round_trip_on_every_backend(exported):
    """Every artifact the tiny Keras model was exported to runs on every backend that reads its format."""
    from edgecv.formats import FORMATS

    x = np.random.default_rng(4).uniform(0, 1, size=(2, 16, 16, 3)).astype(np.float32)
    outputs = {}
    for a in exported.artifacts:
        assert a.status == "passed", a.reason
        for backend in FORMATS[a.format].backends:
            model = edgecv.load(a.path, backend=backend)
            outputs[(a.path.name, backend)] = model.run(x)[0]
    assert len(outputs) == 8  # tflite x1 backend, onnx x2, openvino x1; fp32 and fp16 each
    reference = outputs[("tiny.fp32.tflite", "litert")]
    for key, out in outputs.items():
        tol = 1e-5 if ".fp32." in key[0] else 2e-2
        np.testing.assert_allclose(out, reference, atol=tol, err_msg=str(key))


def test_litert_falls_back_to_tf_lite_when_it_is_all_there_is(exported, monkeypatch):
    """Older boards may have only tflite-runtime or TensorFlow; .tflite files must still run."""
    import warnings

    from edgecv.backends import litert

    path = next(a.path for a in exported.artifacts if (a.format, a.precision) == ("tflite", "fp32"))
    x = np.random.default_rng(5).uniform(0, 1, size=(1, 16, 16, 3)).astype(np.float32)
    expected = edgecv.load(path).run(x)[0]
    monkeypatch.setattr(litert, "is_installed", lambda name: name == "tensorflow")
    assert litert._interpreter_class().__module__.startswith("tensorflow")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter announces its own deprecation
        np.testing.assert_allclose(edgecv.load(path).run(x)[0], expected, rtol=1e-6, atol=1e-7)
