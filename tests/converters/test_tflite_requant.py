"""A float .tflite quantized to int8 TFLite (through ONNX and a SavedModel), judged against the float model;
its fp32 is still refused (it already is that file; fp16: test_tflite_from_tflite.py)."""

from __future__ import annotations

import pytest

from edgecv.errors import ConversionError

pytestmark = pytest.mark.workstation
pytest.importorskip("tensorflow")
pytest.importorskip("onnx2tf")


def test_a_float_tflite_becomes_full_integer_tflite(exported, tmp_path):
    import numpy as np

    from edgecv.converters.export import export
    from edgecv.compat import read_graph
    from edgecv.synthetic import shape_images

    src = next(a.path for a in exported.artifacts if a.format == "tflite" and a.precision == "fp32")
    calib, _ = shape_images(64, size=16, seed=7)
    images, labels = shape_images(200, size=16, seed=1)
    np.savez(tmp_path / "eval.npz", x=images, y=labels)
    report = export(src, to="tflite", quant="int8", calib=list(calib), eval_data=tmp_path / "eval.npz", max_drop=5.0,
                    out=tmp_path / "out", labels=["circle", "square", "triangle", "cross"])
    (a,) = report.artifacts
    assert a.status == "passed", a.reason
    assert a.drop is not None and a.drop <= 5.0
    graph = read_graph(a.path)
    assert graph.precision == "int8"
    assert {t.dtype for t in graph.tensors.values() if not t.constant} <= {"int8", "float32", "int32"}

    with pytest.raises(ConversionError, match="a .tflite source is already TFLite"):
        from edgecv.converters.sources import open_source
        from edgecv.converters.targets import TARGETS

        TARGETS["tflite"].convert(open_source(src), "fp32", tmp_path / "x.tflite", tmp_path / "work")
