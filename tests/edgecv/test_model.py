"""edgecv.load and Model.run on every backend, against an exact numpy reference."""

import re

import numpy as np
import pytest

import edgecv
from edgecv.errors import BackendError, InputError, MissingDependencyError, ModelFileError
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


# --- precision without a manifest: read from the graph (issue 14) ------------------------------------------------


@pytest.mark.parametrize("where, rel, expected", [
    ("shared", "models/ssd_mobilenet_v1_coco_quant/detect.tflite", "int8"),  # full-integer (uint8) SSD
    ("shared", "models/face_detection_short_range.tflite", "fp16"),  # float16 weights, DEQUANTIZE to float32
    ("shared", "models/mnist-8.onnx", "fp32"),
    ("corpus", "fer/data/emotion_model_quantized.tflite", "dynamic"),  # the quantized classifier once shown as "unknown"
    ("corpus", "mediapipe/modules/iris_landmark/iris_landmark.tflite", "fp32"),
    ("corpus", "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite", "fp16"),
    ("corpus", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx", "fp32"),
])
def test_real_models_without_a_manifest_have_their_precision_read_from_the_graph(request, where, rel, expected):
    from edgecv.manifest import manifest_path

    path = request.getfixturevalue("shared_data" if where == "shared" else "corpus") / rel
    assert not manifest_path(path).exists()
    model = edgecv.load(path)
    assert model.manifest is None and model.precision == expected


@pytest.fixture(scope="module")
def quantized_mnist(shared_data, tmp_path_factory):
    """mnist-8 quantized by ONNX Runtime's and OpenVINO's own tools, as a user would without edgecv."""
    quantization = pytest.importorskip("onnxruntime.quantization")
    onnx = pytest.importorskip("onnx")
    src = shared_data / "models" / "mnist-8.onnx"
    out = tmp_path_factory.mktemp("quantized-mnist")
    rng = np.random.default_rng(0)
    samples = [rng.uniform(0, 255, (1, 1, 28, 28)).astype(np.float32) for _ in range(4)]

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"Input3": s} for s in samples])

        def get_next(self):
            return next(self.items, None)

    last = [n.name for n in onnx.load(src).graph.node if n.op_type in ("Conv", "MatMul")][-1]
    qdq, qop = quantization.QuantFormat.QDQ, quantization.QuantFormat.QOperator
    quantization.quantize_static(src, out / "qdq.onnx", Reader(), quant_format=qdq)
    quantization.quantize_static(src, out / "qoperator.onnx", Reader(), quant_format=qop)
    quantization.quantize_static(src, out / "last-in-float.onnx", Reader(), quant_format=qdq, nodes_to_exclude=[last])
    quantization.quantize_static(src, out / "a16w8.onnx", Reader(), quant_format=qdq,
                                 activation_type=quantization.QuantType.QInt16, weight_type=quantization.QuantType.QInt8)
    quantization.quantize_dynamic(src, out / "dynamic.onnx", op_types_to_quantize=["MatMul", "Conv"])

    ov = pytest.importorskip("openvino")
    nncf = pytest.importorskip("nncf")
    ov.save_model(ov.convert_model(src), out / "fp32.xml", compress_to_fp16=False)
    ov.save_model(ov.convert_model(src), out / "fp16.xml", compress_to_fp16=True)
    weights = nncf.compress_weights(ov.convert_model(src), mode=nncf.CompressWeightsMode.INT8_ASYM)
    ov.save_model(weights, out / "dynamic.xml", compress_to_fp16=False)
    ov.save_model(nncf.quantize(ov.convert_model(src), nncf.Dataset(samples), subset_size=4), out / "int8.xml", compress_to_fp16=False)
    return out


@pytest.mark.parametrize("name, expected", [
    ("qdq.onnx", "int8"),
    ("qoperator.onnx", "int8"),  # QLinearConv / QLinearMatMul
    ("last-in-float.onnx", "mixed"),  # the MatMul excluded from quantization runs in float
    ("a16w8.onnx", "int16x8"),
    ("dynamic.onnx", "dynamic"),  # DynamicQuantizeLinear + ConvInteger / MatMulInteger
    ("fp32.xml", "fp32"),
    ("fp16.xml", "fp16"),  # f16 constants decompressed by Convert
    ("dynamic.xml", "dynamic"),  # NNCF int8 weight compression, float activations
    ("int8.xml", "int8"),  # FakeQuantize on activations (before a MaxPool too), int8 weights
])
@pytest.mark.workstation  # its fixture builds the model with NNCF or TensorFlow
def test_quantized_onnx_and_openvino_precision_is_read_from_the_graph(quantized_mnist, name, expected):
    model = edgecv.load(quantized_mnist / name)
    assert model.manifest is None and model.precision == expected


def test_graph_precision_agrees_with_every_exported_manifest(exported, tmp_path):
    """What info shows without a manifest is what export wrote in it."""
    import shutil

    from edgecv.formats import FORMATS

    for a in exported.artifacts:
        bare = tmp_path / f"{a.format}-{a.precision}"
        bare.mkdir()
        for f in FORMATS[a.format].files(a.path):
            shutil.copy(f, bare / f.name)
        model = edgecv.load(bare / a.path.name)
        assert (model.manifest, model.precision) == (None, a.precision), (a.format, a.precision)


def test_info_shows_the_precision_of_a_file_without_a_manifest(shared_data):
    import json
    import subprocess
    import sys

    path = shared_data / "models" / "ssd_mobilenet_v1_coco_quant" / "detect.tflite"
    proc = subprocess.run([sys.executable, "-m", "edgecv", "info", str(path), "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert (info["precision"], info["precision_from"], info["manifest"]) == ("int8", "graph", None)
    proc = subprocess.run([sys.executable, "-m", "edgecv", "info", str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "(tflite, litert, int8 (read from the graph), " in proc.stdout.splitlines()[0]


# --- LiteRT's errors as one readable line (issue 14) --------------------------------------------------------------


@pytest.fixture(scope="module")
def int8_tflite(tmp_path_factory):
    """A small full-integer TFLite with per-channel weights: a 3x3 conv (axis 0) and a depthwise conv (axis 3)."""
    tf = pytest.importorskip("tensorflow")
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    out = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)] for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    path = tmp_path_factory.mktemp("int8") / "conv.int8.tflite"
    path.write_bytes(converter.convert())
    return path


def _with_quantization(src, dst, change):
    """A copy of ``src`` with ``change(tensor_t)`` applied to the first per-channel 4-D weight it accepts."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(src.read_bytes(), 0))
    for t in model.subgraphs[0].tensors:
        q = t.quantization
        if q is not None and q.scale is not None and len(q.scale) > 1 and len(t.shape) == 4 and change(t):
            break
    else:
        raise AssertionError("no per-channel weight to change")
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dst.write_bytes(builder.Output())
    return dst


def _axis(value):
    def change(t):
        t.quantization.quantizedDimension = value
        return True

    return change


def _per_channel_over_input_channels(t):
    """Per-channel scales over the last axis of a conv weight [out, h, w, in]: the file loads, the conv refuses it."""
    if t.quantization.quantizedDimension != 0 or t.shape[3] == t.shape[0]:
        return False
    t.quantization.quantizedDimension = 3
    t.quantization.scale = t.quantization.scale[: t.shape[3]]
    t.quantization.zeroPoint = t.quantization.zeroPoint[: t.shape[3]]
    return True


@pytest.mark.parametrize("change, message", [
    (_axis(9), r"tensor \d+ '[^']*depthwise[^']*' \[1,3,3,4\] has invalid quantization parameters: "
               r"quantized_dimension must be in range \[0, 4\)\. Was 9$"),
    (_axis(1), r"tensor \d+ '[^']*' \[\d+,3,3,\d+\] has invalid quantization parameters: num_scales must be 1 for per-layer "
               r"quantization, or 3 for per-axis quantization, but got 4$"),
    (_per_channel_over_input_channels, r"op \d+ \(CONV_2D '[^']*'\) failed to prepare: invalid per-channel quantization: "
                                       r"\(.*scale->size == channels_out\) was not true \(\S+conv\.cc:\d+\)$"),
])
@pytest.mark.workstation  # its fixture builds the model with NNCF or TensorFlow
def test_an_invalid_per_channel_axis_is_one_readable_line(int8_tflite, tmp_path, change, message):
    bad = _with_quantization(int8_tflite, tmp_path / "bad.tflite", change)
    with pytest.raises(ModelFileError) as info:
        edgecv.load(bad, backend="litert")
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"cannot load {bad} with LiteRT: ")
    assert re.search(message, text), text


@pytest.mark.parametrize("raw, expected", [
    ("tflite/kernels/conv.cc:573 (a == b) was not true.Node number 3 (CONV_2D) failed to prepare.",
     "op 3 (CONV_2D) failed to prepare: (a == b) was not true (tflite/kernels/conv.cc:573)"),
    ("Didn't find op for builtin opcode 'FOO' version '9'. An older version of this builtin might be supported.\n"
     "Registration failed.\n",
     "Didn't find op for builtin opcode 'FOO' version '9'. An older version of this builtin might be supported"),
    ("quantized_dimension must be in range [0, 1). Was 3.Tensor 3 has invalid quantization parameters.",
     "tensor 3 has invalid quantization parameters: quantized_dimension must be in range [0, 1). Was 3"),
    ("Encountered unresolved custom op: Landmarks2TransformMatrix.\nSee instructions: https://www.tensorflow.org/lite/guide/"
     "ops_custom Node number 192 (Landmarks2TransformMatrix) failed to prepare.",
     "op 192 (Landmarks2TransformMatrix) failed to prepare: Encountered unresolved custom op: Landmarks2TransformMatrix; "
     "See instructions: https://www.tensorflow.org/lite/guide/ops_custom"),
    ("", "no message from LiteRT"),
])
def test_litert_messages_are_untangled(raw, expected):
    from edgecv.backends.litert import litert_message

    assert litert_message(raw) == expected


@pytest.mark.parametrize("shared_cores, spinning", [(False, None), (True, "0")])
def test_onnxruntime_threads_sleep_between_calls_when_the_cores_are_shared(tiny_onnx, shared_cores, spinning):
    """A runtime that shares the cores with a pipeline or other streams must not spin its threads between calls
    (ONNX Runtime's default: 8 served streams went from 105 to 120 frames/s without it)."""
    pytest.importorskip("onnxruntime")
    from edgecv.model import load

    options = load(tiny_onnx, backend="onnxruntime", threads=2, shared_cores=shared_cores).raw.get_session_options()
    try:
        got = options.get_session_config_entry("session.intra_op.allow_spinning")
    except Exception:  # noqa: BLE001  (not set: ONNX Runtime's default, spinning)
        got = None
    assert got == spinning


def test_litert_load_lines_go_to_the_debug_log_and_other_lines_to_stderr(shared_data, capfd):
    """LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." to fd 2 on a process's first load:
    the user's terminal does not get it, the debug log does (a fresh process, as LiteRT prints it once); a line
    anything else writes to fd 2 meanwhile still arrives."""
    import os
    import subprocess
    import sys

    from edgecv.backends.litert import info_lines_to_debug_log

    path = shared_data / "models" / "ssd_mobilenet_v1_coco_quant" / "detect.tflite"
    code = ("import logging, sys; logging.basicConfig(stream=sys.stdout, level=logging.DEBUG); import edgecv; "
            f"edgecv.load({str(path)!r}, backend='litert', threads=1)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "INFO:" not in run.stderr and "XNNPACK delegate" in run.stdout, (run.stdout, run.stderr)
    with info_lines_to_debug_log():
        os.write(2, b"INFO: noise\na line from another thread\n")
    assert capfd.readouterr().err == "a line from another thread\n"


def test_a_crash_while_litert_loads_still_shows_its_trace():
    """With crash traces on (``PYTHONFAULTHANDLER``), a segfault while fd 2 is moved for a load prints its trace
    on the real stderr, not in the temporary file."""
    import subprocess
    import sys

    code = ("import faulthandler; from edgecv.backends.litert import info_lines_to_debug_log\n"
            "with info_lines_to_debug_log():\n    faulthandler._sigsegv()\n")
    run = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode != 0 and "Fatal Python error: Segmentation fault" in run.stderr, run.stderr
