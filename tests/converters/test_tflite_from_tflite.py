"""A float .tflite exported to fp16 TFLite (through tf2onnx and onnx2tf, as int8 is), checked against the
source like every artifact; fp32 of a plain float .tflite is the file itself and stays a one-line refusal."""

from __future__ import annotations

import numpy as np
import pytest

import edgecv
from edgecv.converters.export import ExportOptions, export
from edgecv.converters.metrics import sqnr_db
from edgecv.compat import read_graph
from edgecv.manifest import Preprocess

pytestmark = pytest.mark.workstation
pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
pytest.importorskip("onnx2tf")

# (root fixture, model, fp16 size / source size, SQNR floor in dB against the source on random inputs)
MODELS = [
    # fp32 weights: the fp16 file is smaller (the graph's fixed overhead keeps this small model above 1/2)
    ("corpus", "mediapipe/modules/holistic_landmark/hand_recrop.tflite", (0.6, 0.8), 50.0),
    # MediaPipe already ships fp16 weights: the same size, and the same values (fp16 -> fp32 -> fp16 is exact)
    ("shared_data", "models/face_detection_short_range.tflite", (0.9, 1.1), 90.0),
]


@pytest.mark.parametrize("root, rel, ratio, min_sqnr", MODELS, ids=[m[1].rsplit("/", 1)[-1] for m in MODELS])
def test_a_float_tflite_becomes_fp16_tflite_matching_the_source(request, tmp_path, root, rel, ratio, min_sqnr):
    src = request.getfixturevalue(root) / rel
    report = export(src, to="tflite", quant="fp32,fp16", out=tmp_path / "out", preprocess=Preprocess(mean=(127.5,), std=(127.5,)),
                    options=ExportOptions(bench_runs=0))
    rows = {a.precision: a for a in report.artifacts}
    assert rows["fp32"].status == "failed" and rows["fp32"].path is None
    assert rows["fp32"].reason.startswith("a .tflite source is already TFLite fp32; export it to onnx or openvino")
    a = rows["fp16"]
    assert a.status == "passed", a.reason
    assert a.path == tmp_path / "out" / f"{src.stem}.fp16.tflite" and a.path.is_file()
    assert ratio[0] < a.path.stat().st_size / src.stat().st_size < ratio[1]
    assert read_graph(a.path).precision == "fp16"
    assert a.scores.sqnr_db >= min_sqnr  # the export's own check
    # the same interface as the source, and the same outputs up to fp16 rounding, checked here independently
    want_model, got_model = edgecv.load(src), edgecv.load(a.path)
    assert [(t.shape, t.dtype) for t in got_model.inputs] == [(t.shape, t.dtype) for t in want_model.inputs]
    assert sorted(t.shape for t in got_model.outputs) == sorted(t.shape for t in want_model.outputs)
    x = np.random.default_rng(0).uniform(-1, 1, want_model.inputs[0].shape).astype(np.float32)
    want = sorted(want_model.run([x]), key=lambda o: o.shape)
    got = sorted(got_model.run([x]), key=lambda o: o.shape)
    for g, w in zip(got, want):
        assert sqnr_db(w, g) >= min_sqnr
