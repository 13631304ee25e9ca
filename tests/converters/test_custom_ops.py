"""TFLite sources with custom ops: refused per format with one line naming the op before converting; and
ONNX fp16 of a dynamic-range (int8-weight) TFLite, whose DequantizeLinear nodes stay float32."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from edgecv.converters.sources import TF2ONNX, open_source, refuse_unconverted_ops
from edgecv.converters.targets import TARGETS
from edgecv.converters.targets.openvino import OPENVINO_READS
from edgecv.errors import ConversionError
from edgecv.model import load
from tests.edgecv.sparse_helper import build_model, encode, sparse_fc_model, to_bytes


def _transpose_conv_bias(path: Path, custom_code: str = "Convolution2DTransposeBias") -> Path:
    """A one-op TFLite model: MediaPipe's Convolution2DTransposeBias (2x2 kernel, stride 2, SAME), which
    LiteRT runs but neither tf2onnx nor OpenVINO converts."""
    from ai_edge_litert import schema_py_generated as s

    tensors = [dict(name="x", shape=[1, 4, 4, 2], buffer=1), dict(name="w", shape=[2, 2, 2, 2], buffer=2),
               dict(name="b", shape=[2], buffer=3), dict(name="y", shape=[1, 8, 8, 2], buffer=4)]
    data = {2: np.ones((2, 2, 2, 2), np.float32).tobytes(), 3: np.array([0.5, -0.5], np.float32).tobytes()}
    model = build_model(tensors, [(s.BuiltinOperator.CUSTOM, [0, 1, 2], [3], 0, None)], [0], [3], data)
    model.operatorCodes[0].customCode = custom_code
    # TfLiteTransposeConvParams: padding (1 = SAME), stride_width, stride_height
    model.subgraphs[0].operators[0].customOptions = np.frombuffer(struct.pack("<3i", 1, 2, 2), np.uint8)
    path.write_bytes(to_bytes(model))
    return path


@pytest.mark.parametrize("target, expected", [
    (TARGETS["onnx"], "tflite source uses custom op Convolution2DTransposeBias (MediaPipe), which tf2onnx cannot convert to ONNX"),
    (TARGETS["openvino"], "tflite source uses custom op Convolution2DTransposeBias (MediaPipe), which OpenVINO cannot convert to OpenVINO IR"),
])
def test_custom_op_refused_per_format_naming_the_op(tmp_path, target, expected):
    src = open_source(_transpose_conv_bias(tmp_path / "seg.tflite"))
    assert src.model.run([np.ones((1, 4, 4, 2), np.float32)])[0].shape == (1, 8, 8, 2)  # LiteRT runs it
    out, work = tmp_path / "out.artifact", tmp_path / "work"
    work.mkdir()
    with pytest.raises(ConversionError) as err:
        target.convert(src, "fp32", out, work)
    assert str(err.value) == expected
    assert not out.exists()


def test_model_without_custom_ops_passes_the_check(tmp_path):
    weights = np.eye(4, dtype=np.float32)  # DENSIFY + FULLY_CONNECTED: builtin ops only
    params, values = encode(weights, [0, 1], [0, 1])
    path = tmp_path / "fc.tflite"
    path.write_bytes(sparse_fc_model(weights, params, values))
    src = open_source(path)
    for path in (TF2ONNX, OPENVINO_READS):
        src.check_convertible(path)  # raises on a refused op


def test_tf2onnx_leftover_ops_are_refused():
    from onnx import helper

    graph = helper.make_graph([helper.make_node("TFL_Convolution2DTransposeBias", ["x"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
                              "g", [helper.make_tensor_value_info("x", 1, [1])], [helper.make_tensor_value_info("z", 1, [1])])
    with pytest.raises(ConversionError, match=r"^tf2onnx could not convert op TFL_Convolution2DTransposeBias to ONNX$"):
        refuse_unconverted_ops(helper.make_model(graph), "tf2onnx")
    refuse_unconverted_ops(helper.make_model(helper.make_graph([graph.node[1]], "g", [graph.input[0]], [graph.output[0]])), "tf2onnx")


@pytest.mark.workstation
def test_dynamic_range_tflite_exports_to_onnx_fp16_that_loads(corpus, tmp_path):
    src = open_source(corpus / "fer/data/emotion_model_quantized.tflite")
    fp32, fp16, work = tmp_path / "m.fp32.onnx", tmp_path / "m.fp16.onnx", tmp_path / "work"
    work.mkdir()
    TARGETS["onnx"].convert(src, "fp32", fp32, work)
    TARGETS["onnx"].convert(src, "fp16", fp16, work)
    import onnx

    assert any(n.op_type == "DequantizeLinear" for n in onnx.load(str(fp16)).graph.node)  # int8 weights kept
    x = np.random.default_rng(0).uniform(-1, 1, (1, *src.inputs[0].shape[1:])).astype(np.float32)
    want, got = load(fp32).run([x])[0], load(fp16).run([x])[0]
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=5e-3)
