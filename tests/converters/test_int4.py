"""int4 weights where a runtime executes them: ONNX Runtime's MatMulNBits and OpenVINO's 4-bit weight
compression (NNCF), each checked and scored like any artifact; TFLite refused per format in one line; a model
with no MatMul refused rather than written as int4 that is not."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.workstation
pytest.importorskip("nncf")


def _model(dense: bool):
    """A small CNN whose weights are mostly in two Dense layers (``dense``), or one with no Dense at all."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.MaxPooling2D()(x)
    if dense:
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(128, activation="relu")(x)
        out = keras.layers.Dense(4, activation="softmax", name="probs")(x)
    else:
        x = keras.layers.Conv2D(4, 1)(x)
        out = keras.layers.Softmax(name="probs")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def eval_npz(tmp_path_factory):
    from edgecv.synthetic import shape_images

    x, y = shape_images(64, size=16, seed=2)
    path = tmp_path_factory.mktemp("int4") / "eval.npz"
    np.savez(path, x=x, y=y)
    return path


def test_onnx_and_openvino_get_4_bit_matmul_weights_and_tflite_says_why_not(eval_npz, tmp_path):
    from edgecv.converters.export import export
    from edgecv.formats import FORMATS
    from edgecv.compat import read_graph

    report = export(_model(dense=True), to="tflite,onnx,openvino", quant="fp32,int4", eval_data=eval_npz,
                    out=tmp_path / "out", name="dense", labels=["a", "b", "c", "d"])
    rows = {(a.format, a.precision): a for a in report.artifacts}
    refused = rows[("tflite", "int4")]
    assert refused.status == "failed" and refused.path is None
    assert refused.reason == FORMATS["tflite"].cannot_write["int4"] and "docs/precisions.md" in refused.reason
    assert not report.ok  # asked for, not made: the command exits 1
    for fmt in ("onnx", "openvino"):
        four, fp32 = rows[(fmt, "int4")], rows[(fmt, "fp32")]
        assert four.status == "passed", four.reason
        assert read_graph(four.path).precision == "int4"
        # the 8x8x8 -> 128 Dense holds most weights: 4 bits plus a scale per 32 weights is about 1/6 of fp32
        assert four.size_bytes < 0.3 * fp32.size_bytes, (fmt, four.size_bytes, fp32.size_bytes)
        assert four.drop is not None and abs(four.drop) <= 5.0
    import onnx

    graph = onnx.load(str(rows[("onnx", "int4")].path)).graph
    assert [n.op_type for n in graph.node if n.op_type in ("MatMul", "MatMulNBits")] == ["MatMulNBits", "MatMulNBits"]
    assert {n.attribute[0].name for n in graph.node if n.op_type == "MatMulNBits"} <= {"K", "N", "bits", "block_size",
                                                                                       "accuracy_level"}
    bits = {a.name: a.i for n in graph.node if n.op_type == "MatMulNBits" for a in n.attribute}
    assert bits["bits"] == 4 and bits["block_size"] == 32


def test_a_model_with_no_matmul_is_not_written_as_int4(eval_npz, tmp_path):
    from edgecv.converters.export import export

    report = export(_model(dense=False), to="onnx,openvino", quant="int4", eval_data=eval_npz, out=tmp_path / "out",
                    name="convs")
    reasons = {a.format: (a.status, a.reason) for a in report.artifacts}
    assert reasons["onnx"][0] == "failed" and "no MatMul with constant weights" in reasons["onnx"][1]
    assert reasons["openvino"][0] == "failed" and "no MatMul weights to compress to 4 bits" in reasons["openvino"][1]


def test_device_profiles_say_which_devices_run_int4():
    from edgecv.devices import load_profile

    assert ("onnx", "int4") in load_profile("x86-64-avx2").candidates()
    assert ("openvino", "int4") in load_profile("intel-cpu").candidates()
    assert ("tflite", "int4") not in load_profile("x86-64-avx2").candidates()  # TFLite is not written in int4
    assert not any(p == "int4" for _, p in load_profile("android-phone").candidates())
