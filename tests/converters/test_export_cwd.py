"""Export writes nothing outside its output folder: not into the user's working directory.

ONNX Runtime's quantization pre-processing saves ``sym_shape_infer_temp.onnx`` and a ``<uuid>.data`` copy of
the weights into the working directory when its symbolic shape inference is incomplete (dynamic dims whose
sizes it cannot prove equal, as in DB text detectors); onnx2tf and the other converters run there too.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from edgecv.converters.export import ExportOptions, export

pytest.importorskip("onnxruntime")


def make_unmerged_dims_onnx(path: Path) -> Path:
    """``x (N x 3 x H x W)`` -> a stride-1 conv plus a stride-2 conv upsampled by 2: it runs at every even
    H, W, but symbolic shape inference cannot prove ``2 * (floor((H - 1) / 2) + 1) == H`` for the Add."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.normal(0, 0.2, (16, 3, 3, 3)).astype(np.float32), "w1"),  # over ORT's 1 KB
        numpy_helper.from_array(rng.normal(0, 0.2, (16, 3, 3, 3)).astype(np.float32), "w2"),  # external-data size
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["x", "w2"], ["b"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Resize", ["b", "", "scales"], ["u"], mode="nearest", nearest_mode="floor",
                         coordinate_transformation_mode="asymmetric"),  # as TensorFlow's, for onnx2tf
        helper.make_node("Add", ["a", "u"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "unmerged", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16, "H", "W"])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def unmerged_onnx(tmp_path_factory) -> Path:
    return make_unmerged_dims_onnx(tmp_path_factory.mktemp("unmerged") / "unmerged.onnx")


def test_the_model_makes_symbolic_shape_inference_incomplete(unmerged_onnx, tmp_path, monkeypatch):
    """The precondition of the test below: this model takes ONNX Runtime down the path that writes to the cwd."""
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match="Incomplete symbolic shape inference"):
        SymbolicShapeInference.infer_shapes(onnx.load(str(unmerged_onnx)))


# (format, precision, model): each runs its converters from an empty working directory.
CASES = [
    pytest.param("onnx", "int8", "unmerged", id="onnx-int8"),  # ONNX Runtime's quantization pre-processing
    pytest.param("openvino", "int8", "unmerged", marks=pytest.mark.workstation, id="openvino-int8"),  # NNCF
    # onnx2tf (the unmerged model's stride-2 conv + resize is not one onnx2tf converts right; the tiny CNN is)
    pytest.param("tflite", "fp16", "tiny", marks=pytest.mark.workstation, id="tflite-fp16"),
]


@pytest.mark.parametrize("fmt, precision, model", CASES)
def test_export_leaves_the_working_directory_unchanged(unmerged_onnx, tiny_onnx, tmp_path, monkeypatch, caplog, fmt,
                                                       precision, model):
    if fmt == "openvino":
        pytest.importorskip("nncf")
    if fmt == "tflite":
        pytest.importorskip("onnx2tf")
    src, size = {"unmerged": (unmerged_onnx, 16), "tiny": (tiny_onnx, 8)}[model]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(1).integers(0, 256, size=(16, size, size, 3), dtype=np.uint8))
    monkeypatch.chdir(cwd)
    with caplog.at_level(logging.INFO, logger="edgecv.converters.targets.onnx"):
        report = export(src, to=fmt, quant=precision, calib=calib, out=tmp_path / "out",
                        input_shape=(1, 3, size, size), options=ExportOptions(bench_runs=0))
    (a,) = report.artifacts
    assert a.status == "passed", a.reason
    assert a.path is not None and a.path.is_file() and a.path.parent == tmp_path / "out"
    assert sorted(os.listdir(cwd)) == []
    if (fmt, precision) == ("onnx", "int8"):  # the pre-processing ran, without its symbolic step
        assert "ONNX quantization pre-processing without symbolic shape inference" in caplog.text
