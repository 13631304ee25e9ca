"""The export targets: one per format of edgecv.formats.FORMATS, behind the ExportTarget interface."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgecv.converters.quant import PRECISIONS, QuantOptions
from edgecv.converters.targets import TARGETS, ExportTarget, artifact_name, parse_targets
from edgecv.errors import ConfigError
from edgecv.formats import FORMATS


def test_the_targets_are_the_formats_that_name_a_target_module_with_their_suffixes_and_precisions():
    assert list(TARGETS) == [name for name, fmt in FORMATS.items() if fmt.target]
    for name, target in TARGETS.items():
        assert isinstance(target, ExportTarget) and type(target).__module__ == FORMATS[name].target
        assert (target.name, target.suffix, target.precisions) == (name, FORMATS[name].suffix, FORMATS[name].precisions)


def test_precisions_are_the_ordered_union_of_the_formats_precisions():
    union = list(dict.fromkeys(p for fmt in FORMATS.values() for p in fmt.precisions))
    assert list(PRECISIONS) == union == ["fp32", "fp16", "dynamic", "int8", "int16x8", "int4"]


@pytest.mark.parametrize("names, expected, error", [
    ("onnx,TFLITE, onnx", ["onnx", "tflite"], None),
    (["openvino"], ["openvino"], None),
    ("rknn", None, "unknown export format 'rknn'; choose from: tflite, onnx, openvino"),
    (" , ", None, "no export format given; choose from: tflite, onnx, openvino"),
])
def test_parse_targets(names, expected, error):
    if error:
        with pytest.raises(ConfigError, match=f"^{error}$"):
            parse_targets(names)
    else:
        assert [t.name for t in parse_targets(names)] == expected


@pytest.mark.parametrize("name, static_only, integer_io, method, settings", [
    ("tflite", True, True, "tflite-converter", {}),
    ("onnx", False, False, "entropy", {"activation_type": "uint8", "weight_type": "int8"}),
    ("openvino", False, False, "nncf", {"bias_correction": "fast"}),
])
def test_what_each_target_tells_export_and_optimize(name, static_only, integer_io, method, settings):
    target, options = TARGETS[name], QuantOptions(calibration="entropy", bias_correction=False)
    assert (target.static_only, target.integer_io, target.writes_qat) == (static_only, integer_io, True)
    assert target.calibration_method(options) == method
    assert target.quantization_settings(options) == settings
    assert artifact_name("net", target, "int8") == f"net.int8{FORMATS[name].suffix}"


def test_a_target_whose_convert_signature_differs_is_refused_when_defined():
    with pytest.raises(TypeError, match=r"^Positional\.convert\(.*\) does not match ExportTarget\.convert"):
        class Positional(type(TARGETS["onnx"])):
            def convert(self, source, precision, out_file, work, quant=None, static_batch=False, input_shape=None):
                pass


def test_a_target_without_qat_refuses_to_write_one(tmp_path):
    class NoQat(type(TARGETS["onnx"])):
        writes_qat = False
        write_qat = ExportTarget.write_qat

    with pytest.raises(ConfigError, match="^edgecv writes no QAT onnx artifact$"):
        NoQat(FORMATS["onnx"]).write_qat(None, Path(tmp_path / "x.onnx"), tmp_path)


@pytest.mark.parametrize("to, error", [
    ("tflite,rknn", "unknown QAT artifact format(s) rknn; choose from: tflite, onnx, openvino"),
    (" ", "no QAT artifact format given; choose from: tflite, onnx, openvino"),
])
def test_qat_artifacts_are_written_for_the_targets_that_write_qat(tmp_path, to, error):
    from edgecv.converters.qat import QAT_FORMATS, QatResult, qat_artifacts

    assert QAT_FORMATS == tuple(name for name, target in TARGETS.items() if target.writes_qat)
    result = QatResult(saved_model=tmp_path / "sm", tflite_int8=tmp_path / "m.tflite", top1_float=None, top1_qat=None,
                       history={}, seconds=0.0, validation=tmp_path / "validation.npz")
    with pytest.raises(ConfigError, match=f"^{re.escape(error)}$"):
        qat_artifacts(result, out=tmp_path / "out", name="m", to=to)
    assert not (tmp_path / "out").exists()


def test_onnx_static_batch_fixes_only_the_batch_and_the_model_still_runs(tmp_path):
    onnx = pytest.importorskip("onnx")
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from edgecv.converters.sources import open_source

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "dyn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])])
    path = tmp_path / "dyn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    out = tmp_path / "out.onnx"
    TARGETS["onnx"].convert(open_source(path), "fp32", out, tmp_path / "work", static_batch=True)

    def dims(v):
        return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]

    model = onnx.load(str(out))
    assert [dims(v) for v in [*model.graph.input, *model.graph.output]] == [[1, 3, "H", "W"]] * 2
    x = np.linspace(-1, 1, 3 * 5 * 7, dtype=np.float32).reshape(1, 3, 5, 7)
    y = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    assert dims(onnx.load(str(path)).graph.input[0]) == ["N", 3, "H", "W"]  # the user's file is untouched
