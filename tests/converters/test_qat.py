"""Quantization-aware training: the tf_keras rebuild reproduces the Keras 3 model exactly; QAT in its child
process keeps the float model's accuracy; the int8 TFLite, QDQ ONNX and FakeQuantize OpenVINO artifacts
agree with each other on held-out shapes; bad input stops with one-line errors before any child starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgecv.converters.qat import QatOptions, qat, qat_artifacts
from edgecv.errors import ConfigError, InputError, ModelFileError
from edgecv.synthetic import SHAPE_CLASSES, shape_images

REPO = Path(__file__).resolve().parents[2]
SIZE = 16


def build_cnn(*, train: bool = True, seed: int = 0):
    """Conv-BN-ReLU, a residual block (Conv-BN-ReLU + Add), max pooling, Conv-BN-ReLU, global max pooling,
    Dense softmax; trained 3 epochs on 2000 shapes (about 6 s; 50-60% top-1 on fresh shapes, chance 25%)."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    x = L.ReLU()(L.BatchNormalization(momentum=0.9)(L.Conv2D(16, 3, padding="same", use_bias=False)(inp)))
    y = L.ReLU()(L.BatchNormalization(momentum=0.9)(L.Conv2D(16, 3, padding="same", use_bias=False)(x)))
    x = L.MaxPooling2D()(L.Add()([x, y]))
    x = L.ReLU()(L.BatchNormalization(momentum=0.9)(L.Conv2D(32, 3, padding="same", use_bias=False)(x)))
    out = L.Dense(4, activation="softmax", name="probs")(L.GlobalMaxPooling2D()(x))
    model = keras.Model(inp, out, name="tiny_qat")
    if train:
        images, labels = shape_images(2000, size=SIZE, seed=seed)
        model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
        model.fit(images / np.float32(255), labels, epochs=3, batch_size=16, verbose=0)
    return model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One QAT run (2 epochs on 1920 fresh shapes, 480 held out) and its three artifacts."""
    model = build_cnn()
    before = [w.copy() for w in model.get_weights()]
    images, labels = shape_images(2400, size=SIZE, seed=1)
    result = qat(model, train=(images, labels), epochs=2, out=tmp_path_factory.mktemp("qat"), options=QatOptions(validation=0.2))
    arts = qat_artifacts(result, out=tmp_path_factory.mktemp("artifacts"), name="tiny", labels=list(SHAPE_CLASSES))
    with np.load(result.validation) as npz:
        x_val, y_val = npz["x_val"], npz["y_val"]
    return SimpleNamespace(model=model, before=before, result=result, arts=arts, x_val=x_val, y_val=y_val)


def _scores(path: Path, x: np.ndarray) -> np.ndarray:
    from edgecv.model import load

    return load(path, float_io=True).run([x])[0]


# --- QAT and its artifacts ----------------------------------------------------------------------------------


@pytest.mark.workstation
def test_qat_keeps_the_float_accuracy_and_leaves_the_model_alone(run):
    r = run.result
    assert r.rebuild_max_abs_diff < 1e-5  # the tf_keras twin computes what the Keras 3 model does
    assert r.top1_float > 0.45  # the float model learned something (chance is 0.25)
    # Fake quantization costs accuracy; two epochs of fine-tuning win it back, within 3 points.
    assert r.top1_qat >= r.top1_float - 0.03, (r.top1_float, r.top1_qat)
    assert len(r.history["loss"]) == 2 and r.history["loss"][1] < r.history["loss"][0]
    assert all(np.array_equal(a, b) for a, b in zip(run.before, run.model.get_weights()))
    assert r.saved_model.is_dir() and r.tflite_int8.is_file() and r.seconds > 0


@pytest.mark.workstation
def test_activation_ranges_start_from_data_not_from_tfmots_default(run):
    # tfmot starts every range at [-6, 6] and moves it 0.1% a step; from data, a ReLU's range starts at 0.
    from edgecv.converters.tf_env import import_tensorflow

    tf = import_tensorflow()
    ranges = {v.name: float(np.min(v.numpy())) for v in tf.saved_model.load(str(run.result.saved_model)).variables
              if "re_lu" in v.name and v.name.endswith("output_min:0")}
    assert len(ranges) == 3 and all(v == 0.0 for v in ranges.values()), ranges


@pytest.mark.workstation
def test_tflite_int8_has_int8_kernels_and_float_io(run):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(run.arts.paths["tflite"]))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # noqa: SLF001 - the interpreter's only op listing
    convs = [op for op in ops if op["op_name"] == "CONV_2D"]
    assert len(convs) == 3
    for op in convs:
        kernel, activation = tensors[op["inputs"][1]], tensors[op["inputs"][0]]
        assert kernel["dtype"] == np.int8 and len(kernel["quantization_parameters"]["scales"]) == kernel["shape"][0]
        assert activation["dtype"] == np.int8
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    # The learned fake-quant ranges become the int8 scales: TFLite keeps the QAT model's top-1.
    assert abs(run.arts.top1["tflite"] - run.result.top1_qat) <= 0.01


@pytest.mark.workstation
def test_onnx_is_qdq_and_agrees_with_tflite(run):
    import onnx

    graph = onnx.load(str(run.arts.paths["onnx"])).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") >= 5
    # Every Conv and the Dense take their weights through a DequantizeLinear of 8-bit integers.
    inits = {i.name: i for i in graph.initializer}
    dq_of = {n.output[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
    layers = [n for n in graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    assert len(layers) == 4 and all(n.input[1] in dq_of for n in layers)
    assert all(inits[dq_of[n.input[1]].input[0]].data_type == onnx.TensorProto.UINT8 for n in layers)
    onnx_scores = _scores(run.arts.paths["onnx"], run.x_val)
    tflite_scores = _scores(run.arts.paths["tflite"], run.x_val)
    agreement = np.mean(onnx_scores.argmax(1) == tflite_scores.argmax(1))
    assert agreement >= 0.98 and np.max(np.abs(onnx_scores - tflite_scores)) < 0.05
    assert abs(run.arts.top1["onnx"] - run.arts.top1["tflite"]) <= 0.01


@pytest.mark.workstation
def test_openvino_ir_keeps_fakequantize(run):
    xml = run.arts.paths["openvino"].read_text()
    assert xml.count('type="FakeQuantize"') >= 5
    # OpenVINO runs the convolutions in int8; on this AVX2 CPU without VNNI its u8 x s8 sums saturate
    # now and then (96-97% of decisions kept on this model), hence a wider tolerance than ONNX's.
    assert abs(run.arts.top1["openvino"] - run.arts.top1["tflite"]) <= 0.03


@pytest.mark.workstation
def test_each_artifact_has_a_manifest_with_its_top1(run):
    from edgecv.model import load

    for fmt, path in run.arts.paths.items():
        manifest = json.loads(path.with_name(path.name + ".json").read_text())
        assert manifest["format"] == fmt and manifest["precision"] == "int8"
        assert manifest["quantization"]["method"] == "qat" and manifest["quantization"]["epochs"] == 2
        assert manifest["validation"]["top1"] == run.arts.top1[fmt] and manifest["validation"]["samples"] == len(run.y_val)
        assert manifest["source"]["sha256"] and manifest["quantization"]["io"] == ["float32"]
        if fmt != "tflite":  # the TFLite converter names tensors after graph ops, not the signature
            assert manifest["outputs"][0]["name"] == "probs"
        assert load(path).labels == list(SHAPE_CLASSES)


# --- the tf_keras rebuild -----------------------------------------------------------------------------------


def build_every_layer():
    """Every layer type the rebuild supports, with branches, a shared layer and two Concatenates; random
    weights (batch-norm statistics too) so that no layer is an identity."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(3)
    inp = keras.Input((12, 12, 3), name="pixels")
    a = L.Conv2D(8, 3, activation="relu")(L.ZeroPadding2D(1)(inp))
    a = L.BatchNormalization(momentum=0.9)(a)
    b = L.ReLU(max_value=6.0)(L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(a))
    c = L.Activation("tanh")(L.SeparableConv2D(16, 3, padding="same", activation="silu")(a))
    shared = L.Conv2D(8, 1, name="shared")
    x = L.Concatenate()([L.Add()([shared(b), shared(c)]), a])
    x = L.AveragePooling2D(2)(L.MaxPooling2D()(x))
    y = L.Flatten()(L.GlobalMaxPooling2D(keepdims=True)(x))
    x = L.Concatenate()([L.GlobalAveragePooling2D()(x), y])
    x = L.Flatten()(L.Reshape((4, 8))(L.Dropout(0.3)(x)))
    out = L.Softmax()(L.Dense(5, activation="gelu")(x))
    model = keras.Model(inp, out, name="every_layer")
    rng = np.random.default_rng(0)
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            layer.set_weights([np.abs(w) + 0.5 if "Batch" in type(layer).__name__ else rng.normal(0, 0.5, w.shape).astype(np.float32)
                               for w in ws])
    return model


def build_sequential():
    import keras

    L = keras.layers
    keras.utils.set_random_seed(4)
    return keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3), L.ReLU(), L.Flatten(), L.Dense(3, activation="softmax")])


_REBUILD = """
import sys
from pathlib import Path
import numpy as np
from edgecv.converters import tfkeras_rebuild
for folder in map(Path, sys.argv[1:]):
    model = tfkeras_rebuild.rebuild(*tfkeras_rebuild.load(folder))
    np.save(folder / "got.npy", np.asarray(model(np.load(folder / "x.npy"), training=False)))
"""


def test_rebuild_in_tf_keras_reproduces_keras3_outputs(tmp_path):
    from edgecv.converters import tfkeras_rebuild

    folders, expected = [], []
    for i, model in enumerate((build_every_layer(), build_sequential())):
        folder = tmp_path / f"m{i}"
        tfkeras_rebuild.save(*tfkeras_rebuild.describe(model), folder)
        x = np.random.default_rng(i).uniform(0, 1, (8, *model.inputs[0].shape[1:])).astype(np.float32)
        np.save(folder / "x.npy", x)
        folders.append(folder)
        expected.append(np.asarray(model(x, training=False)))
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", _REBUILD, *map(str, folders)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for folder, want in zip(folders, expected):
        got = np.load(folder / "got.npy")
        assert got.shape == want.shape and np.max(np.abs(got - want)) < 1e-5


def test_describe_records_graph_and_weights():
    from edgecv.converters import tfkeras_rebuild

    model = build_every_layer()
    arch, weights = tfkeras_rebuild.describe(model)
    specs = {s.name: s for s in arch.layers}
    assert {s.class_name for s in arch.layers} == set(tfkeras_rebuild.LAYERS)  # every supported type is covered
    assert len(specs["shared"].calls) == 2 and specs["shared"].listed == [False, False]
    assert all(s.listed == [True] for s in arch.layers if s.class_name in ("Add", "Concatenate"))
    assert arch.inputs == [["pixels", 0, 0]] and tfkeras_rebuild.Architecture.from_json(arch.to_json()) == arch
    assert sum(len(w) for w in weights) == len(model.get_weights())


def test_onnx_weights_on_tfmots_grid_are_stored_exactly(tmp_path):
    """Weights that tfmot fake-quantized (symmetric, +-127 steps) become 8-bit integers with no rounding."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from edgecv.converters.targets.onnx import quantize_qat_weights
    from tests.conftest import make_tiny_onnx

    rng = np.random.default_rng(0)
    model = onnx.load(str(make_tiny_onnx(tmp_path / "tiny.onnx")))
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.ndim >= 2:  # conv per output channel, dense per tensor
            steps = rng.integers(-127, 128, w.shape)
            steps.reshape(w.shape[0], -1)[:, 0] = 127 if w.ndim == 4 else steps.flat[0]
            steps.flat[0] = 127
            scale = rng.uniform(0.001, 0.01, (w.shape[0], 1, 1, 1)) if w.ndim == 4 else 0.004
            init.CopyFrom(numpy_helper.from_array((steps * scale).astype(np.float32), init.name))
    x = rng.normal(size=(2, 3, 8, 8)).astype(np.float32)

    def run(m) -> np.ndarray:  # the graph's own arithmetic: ORT's fusions would requantize activations
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return session.run(None, {"x": x})[0]

    want = run(model)
    for weight_type in ("uint8", "int8"):
        quantized = onnx.ModelProto()
        quantized.CopyFrom(model)
        assert quantize_qat_weights(quantized, weight_type) == 2
        onnx.checker.check_model(quantized)
        assert [n.op_type for n in quantized.graph.node][:2] == ["DequantizeLinear", "Conv"]
        np.testing.assert_allclose(run(quantized), want, rtol=0, atol=1e-5)


# --- bad input ----------------------------------------------------------------------------------------------


def _subclassed():
    import keras

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(4)

        def call(self, x):
            return self.dense(keras.ops.mean(x, axis=(1, 2)))

    net = Net()
    net(np.zeros((1, SIZE, SIZE, 3), np.float32))
    return net


def _with(make_layers):
    """A small untrained functional model: image -> ``make_layers`` -> 4 scores."""
    import keras

    inp = keras.Input((SIZE, SIZE, 3), name="image")
    return keras.Model(inp, make_layers(keras.layers, inp))


def _two_outputs():
    import keras

    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(inp)
    return keras.Model(inp, [keras.layers.Dense(4)(x), keras.layers.Dense(2)(x)])


def _lambda(L, x):
    return L.Dense(4)(L.GlobalAveragePooling2D()(L.Lambda(lambda t: t * 2.0, name="double")(x)))


def _lstm(L, x):
    return L.Dense(4)(L.LSTM(8, name="lstm")(L.Reshape((SIZE, SIZE * 3))(x)))


def _relu6_conv(L, x):
    return L.Dense(4)(L.GlobalAveragePooling2D()(L.Conv2D(4, 3, activation="relu6", name="conv6")(x)))


def _plain(L, x):
    return L.Dense(4, activation="softmax")(L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(x)))


IMAGES, LABELS = shape_images(40, size=SIZE, seed=5)


@pytest.mark.parametrize(
    "make_model, kwargs, error, match",
    [
        (_subclassed, {}, ConfigError, "cannot rebuild a subclassed model"),
        (lambda: _with(_lambda), {}, ConfigError, r"QAT cannot handle 1 layer\(s\): double \(Lambda\); .*edgecv export MODEL --quant int8"),
        (lambda: _with(_lstm), {}, ConfigError, r"lstm \(LSTM\).*--quant int8"),
        (lambda: _with(_relu6_conv), {}, ConfigError, r"conv6 \(Conv2D: activation 'relu6'\)"),
        (_two_outputs, {}, ConfigError, r"one \[N, classes\] output"),
        (lambda: _with(_plain), {"train": (IMAGES[:0], LABELS[:0])}, InputError, "empty"),
        (lambda: _with(_plain), {"train": (IMAGES, LABELS + 4)}, InputError, "labels go up to 7 but the model has 4 classes"),
        (lambda: _with(_plain), {"epochs": 0}, ConfigError, "epochs: expected a whole number of at least 1"),
        (lambda: _with(_plain), {"batch_size": 0}, ConfigError, "batch_size"),
        (lambda: "missing.keras", {}, ModelFileError, "model not found"),
    ],
)
def test_bad_input_stops_before_the_child_starts(make_model, kwargs, error, match, tmp_path):
    args = {"train": (IMAGES, LABELS), "out": tmp_path / "job", **kwargs}
    with pytest.raises(error, match=match) as info:
        qat(make_model(), **args)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "job" / "job.json").exists()


def test_a_non_keras_model_file_is_refused(tiny_onnx):
    with pytest.raises(ConfigError, match="QAT needs a Keras model"):
        qat(tiny_onnx, train=(IMAGES, LABELS))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": 0}, "lr: expected a positive"),
        ({"validation": 1.0}, r"validation: expected a share in \(0, 1\)"),
        ({"io_type": "int4"}, "io_type: expected one of float, int8, uint8"),
        ({"onnx_weight_type": "int4"}, "onnx_weight_type"),
        ({"range_batches": -1}, "range_batches"),
    ],
)
def test_qat_options_are_checked(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        QatOptions(**kwargs)
