"""Untrusted sources run no code: a SavedModel whose graph writes or reads files or calls Python is refused
before TensorFlow loads it, with one line naming the op and the function; ``trust_source=True`` runs it (and
its side effect happens: that is what trust means). Real SavedModels pass the scan; a Keras Lambda layer is
refused by Keras's safe mode; ONNX external data outside the model's folder is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecv.converters.export import export
from edgecv.converters.source_scan import check_onnx_external_data, refuse_unsafe_saved_model, scan_saved_model
from edgecv.converters.sources import open_source
from edgecv.errors import InputError, ModelFileError, UnsafeModelError
from tests.conftest import build_tiny_keras

tf = pytest.importorskip("tensorflow")

SIGNATURE = [tf.TensorSpec([None, 8, 8, 3], tf.float32, name="x")]


def _save_module(path: Path, serve_body, *, spec=SIGNATURE) -> Path:
    """A tf.Module SavedModel whose serving function computes ``x -> mean(x) @ w`` after ``serve_body(x)``."""

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.ones([3, 4]))

        @tf.function(input_signature=spec)
        def serve(self, x):
            serve_body(x)
            return {"y": tf.reduce_mean(x, axis=[1, 2]) @ self.w}

    module = Module()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def _write_file(marker):
    return lambda x: tf.io.write_file(str(marker), "pwned")


def _print_to_file(marker):
    return lambda x: tf.print("pwned", output_stream=f"file://{marker}")


def _read_file(marker):
    return lambda x: tf.io.read_file("/etc/hostname")


def _py_function(marker):
    return lambda x: tf.py_function(lambda: marker.write_text("pwned") and 0, [], tf.int32)


def _save_v2(marker):
    return lambda x: tf.raw_ops.SaveV2(prefix=str(marker), tensor_names=["x"], shape_and_slices=[""], tensors=[x])


def _matching_files(marker):
    return lambda x: tf.io.matching_files("/etc/*")


MALICIOUS = [  # (graph, op named in the error, why)
    (_write_file, "WriteFile", "writes a file"),
    (_print_to_file, "PrintV2", "prints to file://"),
    (_read_file, "ReadFile", "reads a file"),
    (_py_function, "EagerPyFunc", "runs Python code"),
    (_save_v2, "SaveV2", "writes a checkpoint outside the saver's path"),
    (_matching_files, "MatchingFiles", "reads a file"),
]


@pytest.mark.parametrize("make, op, why", MALICIOUS, ids=[m[1] for m in MALICIOUS])
def test_a_side_effecting_saved_model_is_refused_before_anything_runs(tmp_path, make, op, why):
    marker = tmp_path / "pwned.txt"
    sm = _save_module(tmp_path / "sm", make(marker))
    assert not marker.exists()  # saving traced the graph without running it
    out = tmp_path / "out"
    with pytest.raises(UnsafeModelError) as err:
        export(sm, to="tflite,onnx,openvino", quant="fp32", out=out)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"SavedModel {sm} is refused: {op} ({why}") and " in function __inference_serve_" in message
    assert message.endswith("pass --trust-source (trust_source=True) only if you trust where it comes from")
    assert not marker.exists() and not out.exists()


def test_trust_source_runs_the_graph_and_its_side_effect(tmp_path):
    marker = tmp_path / "pwned.txt"
    sm = _save_module(tmp_path / "sm", _write_file(marker))
    report = export(sm, to="onnx", quant="fp32", out=tmp_path / "out", trust_source=True)
    assert report.ok, [a.reason for a in report.artifacts]
    assert marker.read_text() == "pwned"  # trusted: the source's own code ran


def test_a_saved_model_failing_to_run_is_one_line(tmp_path):
    sm = _save_module(tmp_path / "sm", lambda x: tf.debugging.assert_less(tf.reduce_max(x), -1.0, message="inputs too big"))
    with pytest.raises(ModelFileError) as err:
        export(sm, to="onnx", quant="fp32", out=tmp_path / "out")
    assert type(err.value) is ModelFileError and "\n" not in str(err.value)
    assert str(err.value).startswith(f"SavedModel {sm} failed to run: InvalidArgumentError at node assert_less/Assert")
    assert "inputs too big" in str(err.value)


# --- real SavedModels pass ----------------------------------------------------------------------------------


def _keras_export(path: Path) -> Path:
    build_tiny_keras(seed=3).export(str(path), format="tf_saved_model", verbose=False)
    return path


def _tf_saved_model_save(path: Path) -> Path:
    tf.saved_model.save(build_tiny_keras(seed=3), str(path))
    return path


def _mobilenet_v2(path: Path) -> Path:
    import keras

    model = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), classes=10)
    model.export(str(path), format="tf_saved_model", verbose=False)
    return path


def _keras_augmenting(path: Path) -> Path:
    import keras

    inp = keras.Input((16, 16, 3))
    x = keras.layers.RandomFlip()(inp)
    x = keras.layers.RandomRotation(0.1)(x)
    x = keras.layers.Rescaling(1 / 255.0)(x)
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3)(x))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Dropout(0.2)(x))
    keras.Model(inp, keras.layers.Dense(3)(x)).export(str(path), format="tf_saved_model", verbose=False)
    return path


def _detector_module(path: Path) -> Path:
    """NMS, map_fn (a While loop with TensorArrays), a lookup table, random numbers, an assert and a tf.print
    to stderr: stateful ops that stay inside the process."""

    class Detector(tf.Module):
        def __init__(self):
            super().__init__()
            keys, values = tf.constant([0, 1, 2], tf.int64), tf.constant(["a", "bb", "ccc"])
            self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), "?")
            self.w = tf.Variable(tf.random.normal([3, 4]))

        @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32, name="image")])
        def serve(self, image):
            feats = tf.reduce_mean(image, axis=[1, 2]) @ self.w
            boxes = tf.random.uniform([1, 20, 4]) + tf.reduce_mean(feats)
            scores = tf.sigmoid(tf.reshape(tf.tile(feats, [1, 5]), [1, 20]))
            keep = tf.image.non_max_suppression(boxes[0], scores[0], 10)
            doubled = tf.map_fn(lambda b: b * 2.0, boxes[0])
            name = self.table.lookup(tf.cast(tf.argmax(feats, -1), tf.int64))
            tf.debugging.assert_all_finite(feats, "finite")
            tf.print("kept", tf.shape(keep))
            return {"boxes": tf.gather(doubled, keep), "name_length": tf.strings.length(name)}

    detector = Detector()
    tf.saved_model.save(detector, str(path), signatures={"serving_default": detector.serve})
    return path


def _v1_builder(path: Path) -> Path:
    """A TF1 SavedModel: its save/ and restore ops are top-level graph nodes."""
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(0)  # other tests may have turned op determinism on
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 3], name="x")
        w = tf.compat.v1.get_variable("w", [3, 2])
        y = tf.identity(tf.matmul(tf.reduce_mean(x, axis=[1, 2]), w), name="y")
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(str(path))
            signature = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": signature})
            builder.save()
    return path


REAL = [_keras_export, _tf_saved_model_save, _mobilenet_v2, _keras_augmenting, _detector_module, _v1_builder]


@pytest.mark.parametrize("make", REAL, ids=[m.__name__.strip("_") for m in REAL])
def test_real_saved_models_pass_the_scan(tmp_path, make):
    sm = make(tmp_path / "sm")
    assert scan_saved_model(sm) == []
    source = open_source(sm)  # the scan runs first, then TensorFlow loads it
    assert source.kind == "saved_model" and source.inputs


def test_a_keras_exported_saved_model_exports_untrusted(tmp_path):
    report = export(_keras_export(tmp_path / "sm"), to="onnx", quant="fp32", out=tmp_path / "out")
    assert report.ok, [a.reason for a in report.artifacts]


# --- the saver's own checkpoint ops, and only there -----------------------------------------------------------


def _edited(src: Path, dst: Path, edit) -> Path:
    from tensorflow.core.protobuf import saved_model_pb2

    shutil.copytree(src, dst)
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((dst / "saved_model.pb").read_bytes())
    edit(saved.meta_graphs[0])
    (dst / "saved_model.pb").write_bytes(saved.SerializeToString())
    return dst


def _function(mg, part: str):
    return next(f for f in mg.graph_def.library.function if part in f.signature.name)


def _node(mg, name: str):
    return next(n for n in mg.graph_def.node if n.name == name)


def _serving_calls_save(mg):
    call = _function(mg, "__inference_serve").node_def.add()
    call.name, call.op = "evil", "StatefulPartitionedCall"
    call.attr["f"].func.name = _function(mg, "traced_save").signature.name


def _object_graph_names_save(mg):
    any_function = next(iter(mg.object_graph_def.concrete_functions.values()))
    mg.object_graph_def.concrete_functions[_function(mg, "traced_save").signature.name].CopyFrom(any_function)


def _restore_saves(mg):
    _function(mg, "traced_restore").node_def.add().CopyFrom(next(n for n in _function(mg, "traced_save").node_def
                                                                  if n.op == "SaveV2"))


def _v1_main_op_saves(mg):
    main = mg.graph_def.node.add()
    main.name, main.op = "main_op", "NoOp"
    main.input.append("^save/SaveV2")
    mg.collection_def["saved_model_main_op"].node_list.value.append("main_op")


def _v1_output_restores(mg):
    _node(mg, "y").input.append("^save/RestoreV2")


def _v1_restore_merges(mg):
    _node(mg, "save/restore_all").input.append("^save/MergeV2Checkpoints")


def _custom_op(mg):
    node = _function(mg, "__inference_serve").node_def.add()
    node.name, node.op = "evil", "Addons>Evil"


EDITS = [  # (base, edit, op named, where)
    ("tf2", _serving_calls_save, "SaveV2", "function __inference__traced_save_"),
    ("tf2", _object_graph_names_save, "SaveV2", "function __inference__traced_save_"),
    ("tf2", _restore_saves, "SaveV2", "function __inference__traced_restore_"),
    ("tf2", _custom_op, "Addons>Evil (not a TensorFlow op: a custom op)", "function __inference_serve_"),
    ("v1", _v1_main_op_saves, "SaveV2", "graph node save/SaveV2"),
    ("v1", _v1_output_restores, "RestoreV2 (reads a checkpoint outside the saver's path)", "graph node save/RestoreV2"),
    ("v1", _v1_restore_merges, "SaveV2", "graph node save/SaveV2"),  # MergeV2Checkpoints runs SaveV2 first
]


@pytest.fixture(scope="module")
def clean_saved_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clean")
    return {"tf2": _save_module(folder / "tf2", lambda x: None), "v1": _v1_builder(folder / "v1")}


@pytest.mark.parametrize("base, edit, op, where", EDITS, ids=[e[1].__name__.strip("_") for e in EDITS])
def test_checkpoint_ops_are_allowed_only_on_the_savers_own_path(clean_saved_models, tmp_path, base, edit, op, where):
    assert scan_saved_model(clean_saved_models[base]) == []
    sm = _edited(clean_saved_models[base], tmp_path / "sm", edit)
    with pytest.raises(UnsafeModelError, match=r"^SavedModel .* is refused: ") as err:
        refuse_unsafe_saved_model(sm)
    assert f": {op}" in str(err.value) and f" in {where}" in str(err.value)


# --- fixed batch ---------------------------------------------------------------------------------------------


def _fixed_batch(path: Path, batch: int) -> Path:
    return _save_module(path, lambda x: None, spec=[tf.TensorSpec([batch, 8, 8, 3], tf.float32, name="x")])


def test_a_fixed_batch_saved_model_exports_to_every_format(tmp_path):
    report = export(_fixed_batch(tmp_path / "sm", 1), to="tflite,onnx,openvino", quant="fp32", out=tmp_path / "out")
    assert report.ok, [a.reason for a in report.artifacts]
    assert all(a.max_abs_diff < 1e-5 for a in report.artifacts)


@pytest.mark.parametrize("batch, shape, error", [
    (1, (3, 8, 8, 3), None),  # runs once per sample
    (2, (4, 8, 8, 3), None),  # in two slices of 2
    (2, (2, 8, 8, 3), None),
    (2, (3, 8, 8, 3), r"input 'x': expected shape 2x8x8x3, got 3x8x8x3$"),
    (1, (2, 9, 9, 3), r"input 'x': expected shape 1x8x8x3, got 1x9x9x3$"),
])
def test_a_fixed_batch_source_runs_in_slices_of_its_batch(tmp_path, batch, shape, error):
    source = open_source(_fixed_batch(tmp_path / "sm", batch))
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    if error:
        with pytest.raises(InputError, match=r"^SavedModel .* " + error):
            source.reference([x])
        return
    (y,) = source.reference([x])
    np.testing.assert_allclose(y, x.mean(axis=(1, 2)) @ np.ones((3, 4), np.float32), rtol=1e-5, atol=1e-5)


# --- Keras -----------------------------------------------------------------------------------------------------


def _keras_with_lambda(path: Path, marker: Path) -> Path:
    import keras

    target = str(marker)  # the lambda's closure is saved with it
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: (__import__("pathlib").Path(target).write_text("pwned"), t)[1], name="evil")(inp)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    model.save(path)
    marker.unlink(missing_ok=True)  # building the model ran the lambda once
    return path


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_keras_lambda_is_refused_unless_trusted(tmp_path, suffix):
    marker = tmp_path / "pwned.txt"
    path = _keras_with_lambda(tmp_path / f"evil{suffix}", marker)
    with pytest.raises(UnsafeModelError, match=r"^Keras model .* is refused: it holds Python code that Keras's safe mode "
                       r"does not load \(Requested the deserialization of a `Lambda` layer .*\); pass --trust-source") as err:
        export(path, to="onnx", quant="fp32", out=tmp_path / "out")
    assert "\n" not in str(err.value) and not marker.exists()
    source = open_source(path, trust_source=True)
    source.reference([np.zeros((1, 8, 8, 3), np.float32)])
    assert marker.read_text() == "pwned"


def test_a_keras_config_naming_a_function_outside_keras_is_not_loaded(tmp_path):
    import json
    import zipfile

    good = _keras_with_lambda(tmp_path / "lambda.keras", tmp_path / "pwned.txt")
    with zipfile.ZipFile(good) as z:
        files = {name: z.read(name) for name in z.namelist()}
    config = json.loads(files["config.json"])
    (layer,) = [la for la in config["config"]["layers"] if la["class_name"] == "Lambda"]
    layer["config"]["function"] = {"module": "os", "class_name": "function", "config": "system", "registered_name": "function"}
    files["config.json"] = json.dumps(config).encode()
    evil = tmp_path / "os_system.keras"
    with zipfile.ZipFile(evil, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    with pytest.raises(ModelFileError, match=r"^cannot load Keras model .*os_system.keras: Could not locate function 'system'"):
        open_source(evil)


def test_the_op_lists_in_docs_security_md_are_the_codes():
    from edgecv.converters.source_scan import REFUSED_OPS, REFUSED_PATTERNS, RESTORE_OPS, SAFE_STATEFUL_OPS, SAVE_OPS

    doc = (Path(__file__).parents[2] / "docs" / "security.md").read_text()
    named = {op for op in SAFE_STATEFUL_OPS | set(REFUSED_OPS) | SAVE_OPS | RESTORE_OPS if f"`{op}`" in doc}
    missing = sorted((SAFE_STATEFUL_OPS | set(REFUSED_OPS) | SAVE_OPS | RESTORE_OPS) - named)
    missing = [op for op in missing if not op.startswith("DataServiceDataset")]  # written as "(V2 to V4)"
    assert missing == []
    assert all(f"`{part}`" in doc for part, _ in REFUSED_PATTERNS)


# --- ONNX external data ------------------------------------------------------------------------------------------


def _onnx_with_external(path: Path, location: str) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.zeros(16, np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": "64"}.items():
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("location, refused", [
    ("../secret.bin", True),
    ("{secret}", True),  # absolute
    ("link.bin", True),  # a symbolic link out of the folder
    ("inside/../weights.bin", False),
    ("weights.bin", False),
])
def test_onnx_external_data_outside_the_models_folder_is_refused(tmp_path, location, refused):
    secret = tmp_path / "secret.bin"
    np.arange(16, dtype=np.float32).tofile(secret)
    folder = tmp_path / "model"
    folder.mkdir()
    np.arange(16, dtype=np.float32).tofile(folder / "weights.bin")
    (folder / "link.bin").symlink_to(secret)
    path = _onnx_with_external(folder / "m.onnx", location.format(secret=secret))
    if not refused:
        check_onnx_external_data(path)
        return
    with pytest.raises(UnsafeModelError, match=r"^ONNX model .* is refused: tensor 'w' keeps its data at .*, outside the "
                       r"model's folder"):
        export(path, to="onnx", quant="fp32", out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- optimize and the CLI ----------------------------------------------------------------------------------------


def test_optimize_refuses_an_untrusted_saved_model_before_building(tmp_path):
    from edgecv.converters.optimize import optimize

    marker = tmp_path / "pwned.txt"
    sm = _save_module(tmp_path / "sm", _write_file(marker))
    with pytest.raises(UnsafeModelError, match=r"WriteFile \(writes a file\) in function __inference_serve_"):
        optimize(sm, device="x86-64-avx2", calib=None, out=tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()


def _edgecv(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDGECV_CACHE_DIR": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-m", "edgecv", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_cli_refuses_with_one_line_and_runs_with_trust_source(tmp_path):
    marker = tmp_path / "pwned.txt"
    sm = _save_module(tmp_path / "sm", _write_file(marker))
    done = _edgecv("export", str(sm), "--to", "onnx", "--quant", "none", "--out", "out", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(f"edgecv: error: SavedModel {sm} is refused: WriteFile"), done.stderr
    assert "Traceback" not in done.stderr and not marker.exists()
    done = _edgecv("export", str(sm), "--to", "onnx", "--quant", "none", "--out", "out", "--trust-source", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert marker.read_text() == "pwned" and (tmp_path / "out" / "sm.fp32.onnx").is_file()
