"""The PTQ ladder before the float fallback: its rung table, a rung that passes stops it, a ladder that never
passes goes on to the fallback, and an int8 artifact that float layers make slower than fp32 fails."""

from __future__ import annotations

import json
from dataclasses import fields, replace

import numpy as np
import pytest

from edgecv.converters.export import ExportOptions, export
from edgecv.converters.fallback import no_useful_int8
from edgecv.converters.ladder import NOTES, RUNGS, options_for, rungs_for, shortfall
from edgecv.converters.metrics import Verdict
from edgecv.converters.quant import QuantOptions
from edgecv.manifest import Preprocess
from tests.conftest import make_outlier_onnx

CENTERED = Preprocess(mean=(127.5,), std=(127.5,))
AS_IS = Preprocess(mean=(0.0,), std=(1.0,))  # float arrays are model inputs
# One outlier pixel in 3x96x96 is 1 value in 27648: more than the 99.999th percentile cuts (1 in 200000 a side),
# less than the 99.99th does (1 in 20000).
SIZE = 96


@pytest.mark.parametrize(
    "fmt, expected",
    [
        ("onnx", ["per-channel", "moving-average", "percentile-99.999", "percentile-99.99", "entropy"]),
        ("openvino", ["bias-correction", "global-minmax", "histogram", "smooth-quant"]),
        ("tflite", ["per-channel"]),  # the converter has no other calibration choice
    ],
)
def test_rungs_per_format_cheapest_first(fmt, expected):
    assert [r.name for r in rungs_for(fmt)] == expected


def test_every_rung_is_a_valid_change_of_quant_options():
    names = {f.name for f in fields(QuantOptions)}
    for rung in RUNGS:
        assert rung.changes and set(rung.changes) <= names, rung.name
        assert options_for(rung, QuantOptions()) == replace(QuantOptions(), **rung.changes)  # validated by __post_init__
    assert "per-channel" in NOTES["tflite"]


@pytest.mark.parametrize(
    "what, p50, fp32, int8, expected",
    [
        # Measured: BlazeFace ONNX int8 with 8 float layers against its fp32 ONNX.
        ("8 layers in float", 10.3, 0.7, None,
         "no useful int8 model: with 8 layers in float it runs at 10.3 ms, slower than fp32 (0.7 ms)"),
        ("3 layers in float", 0.869, 0.7, 0.811, "no useful int8 model: with 3 layers in float it runs at 0.869 ms, "
                                                 "slower than fp32 (0.7 ms); without them int8 runs at 0.811 ms"),
        ("3 layers in float", 0.865, 0.9, None, None),  # faster than fp32: worth having
        ("3 layers in float", 0.9, 0.9, None, None),  # as fast: not slower
        ("1 layer in float", 0.76, 0.7, None, None),  # 0.06 ms slower: within 10% of fp32, timing noise
        ("1 layer in float", 0.0153, 0.014, None, None),  # 9% but 1.3 us slower: timing noise
        ("1 layer in float", 2.0, None, None, None),  # no fp32 figure (timing off): nothing to compare with
        ("1 layer in float", None, 0.7, None, None),
    ],
)
def test_no_useful_int8_when_slower_than_fp32(what, p50, fp32, int8, expected):
    assert no_useful_int8(what, p50, fp32, int8) == expected


@pytest.mark.parametrize(
    "verdict, sqnr, options, expected",
    [
        (Verdict(True, 4.0), None, QuantOptions(max_drop=5), 0.0),
        (Verdict(False, 7.5), None, QuantOptions(max_drop=5), -2.5),
        (Verdict(False, None, "SQNR"), 12.0, QuantOptions(min_sqnr=20), -8.0),
        (Verdict(False, None, "NaN"), None, QuantOptions(), -100.0),
    ],
)
def test_shortfall_is_the_gate_as_a_metric(verdict, sqnr, options, expected):
    assert shortfall(verdict, sqnr, options) == pytest.approx(expected)


def outlier_weights() -> np.ndarray:
    """Input channel 0 feeds output channel 0 only, so an outlier pixel there is one value in each tensor."""
    w = np.random.default_rng(0).normal(0, 1.0, (4, 3, 1, 1)).astype(np.float32)
    w[:, 0] = 0.0
    w[0, 0] = 1.0
    return w


def make_conv_onnx(path, w: np.ndarray):
    """x [N, 3, 96, 96] -> 1x1 conv ``w`` to 4 channels -> ReLU -> y (a feature map: judged by output SQNR)."""
    from onnx import TensorProto, helper, numpy_helper, save

    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"), helper.make_node("Relu", ["c"], ["y"], name="relu")],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, SIZE, SIZE])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.full(4, 0.1, np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return path


def test_a_passing_rung_stops_the_ladder(tmp_path):
    """Each calibration sample has one pixel of 100 among values in 0..1: minmax ranges (extremes, or their
    mean over samples) and the 99.999th percentile keep it and crush everything else to a few levels; the
    99.99th percentile leaves the outliers out and passes. Every attempt is recorded; entropy, after it, is not tried."""
    rng = np.random.default_rng(1)
    calib = rng.uniform(0, 1, (64, 3, SIZE, SIZE)).astype(np.float32)
    calib[np.arange(64), 0, rng.integers(0, SIZE, 64), rng.integers(0, SIZE, 64)] = 100.0  # rare huge outliers
    evals = rng.uniform(0, 1, (16, 3, SIZE, SIZE)).astype(np.float32)
    options = ExportOptions(bench_runs=0, quant=QuantOptions(min_sqnr=30.0, fallback=False))
    report = export(make_conv_onnx(tmp_path / "conv.onnx", outlier_weights()), to="onnx", quant="int8", calib=calib, eval_data=evals,
                    out=tmp_path / "out", preprocess=AS_IS, options=options)
    a = report.artifacts[0]
    assert a.status == "passed", a.reason
    ladder = a.ladder
    assert ladder["chosen"] == ladder["best"] == "percentile-99.99"
    rows = {r["rung"]: r for r in ladder["attempts"]}
    assert list(rows) == ["base", "per-channel", "moving-average", "percentile-99.999", "percentile-99.99"]  # no entropy
    assert rows["per-channel"]["skipped"] == "the base already uses it"
    for name in ("base", "moving-average", "percentile-99.999"):  # an outlier in every sample: all keep it in range
        assert rows[name]["passed"] is False and rows[name]["sqnr_db"] < 20.0, name
    assert rows["percentile-99.99"]["passed"] is True and rows["percentile-99.99"]["sqnr_db"] > 40.0
    assert rows["percentile-99.99"]["changes"] == {"calibration": "percentile", "percentile": 99.99}
    assert rows["percentile-99.999"]["changes"] == {"calibration": "percentile"}  # 99.999 is the default percentile
    assert all(r["seconds"] >= 0 for r in ladder["attempts"] if "skipped" not in r and r["rung"] != "base")
    assert a.fallback is None
    manifest = json.loads(a.path.with_name(a.path.name + ".json").read_text())
    assert manifest["quantization"]["method"] == "percentile"  # the manifest names the settings that passed
    saved = json.loads((tmp_path / "out" / "report.json").read_text())["artifacts"][0]["ladder"]
    assert saved["chosen"] == "percentile-99.99"
    assert "percentile-99.99" in (tmp_path / "out" / "report.md").read_text()


def test_a_passing_rung_stops_the_ladder_early(tmp_path):
    """Per-tensor weights (per_channel=False) where one output channel has a weight of 1e3 on an input channel
    that is always 0: its scale crushes every other weight to 0. The first rung, per-channel weights, passes,
    and no later rung is tried."""
    w = np.random.default_rng(0).normal(0, 1.0, (4, 3, 1, 1)).astype(np.float32)
    w[1] = 0.0
    w[1, 0] = 1e3  # a stray huge weight on a dead input channel
    rng = np.random.default_rng(2)
    calib, evals = (rng.uniform(0, 1, (n, 3, SIZE, SIZE)).astype(np.float32) for n in (16, 8))
    calib[:, 0] = evals[:, 0] = 0.0
    options = ExportOptions(bench_runs=0, quant=QuantOptions(per_channel=False, min_sqnr=20.0, fallback=False))
    report = export(make_conv_onnx(tmp_path / "conv.onnx", w), to="onnx", quant="int8", calib=calib, eval_data=evals,
                    out=tmp_path / "out", preprocess=AS_IS, options=options)
    a = report.artifacts[0]
    assert a.status == "passed", a.reason
    assert [(r["rung"], r["passed"]) for r in a.ladder["attempts"]] == [("base", False), ("per-channel", True)]
    assert a.ladder["attempts"][0]["sqnr_db"] < 10.0 and a.ladder["chosen"] == "per-channel"
    manifest = json.loads(a.path.with_name(a.path.name + ".json").read_text())
    assert manifest["quantization"]["per_channel"] is True


@pytest.fixture(scope="module")
def pixels(tmp_path_factory):
    path = tmp_path_factory.mktemp("calib") / "pixels.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (64, 8, 8, 3), dtype=np.uint8))
    return path


def test_a_ladder_that_never_passes_goes_on_to_the_fallback(pixels, tmp_path):
    """An outlier channel in every sample: no range setting saves the small channels beside it, so every
    ONNX rung fails and the fallback keeps the conv in float, starting from the best rung's settings."""
    src = make_outlier_onnx(tmp_path / "outlier.onnx")
    report = export(src, to="onnx", quant="int8", calib=pixels, out=tmp_path / "out", preprocess=CENTERED,
                    options=ExportOptions(bench_runs=0))
    a = report.artifacts[0]
    assert a.status == "passed", a.reason
    ladder = a.ladder
    assert ladder["chosen"] is None
    tried = [r for r in ladder["attempts"] if "skipped" not in r]
    assert [r["rung"] for r in tried] == ["base", "moving-average", "percentile-99.999", "percentile-99.99", "entropy"]
    assert not any(r["passed"] for r in tried)
    assert a.fallback["kept"] == ["conv"]
    assert a.fallback["fp32_p50_ms"] is None and a.fallback["useful"] is None  # timing off: nothing to compare
    text = (tmp_path / "out" / "report.md").read_text()
    assert "PTQ ladder" in text and "float fallback" in text


def test_without_ladder_the_fallback_runs_alone(pixels, tmp_path):
    src = make_outlier_onnx(tmp_path / "outlier.onnx")
    report = export(src, to="onnx", quant="int8", calib=pixels, out=tmp_path / "out", preprocess=CENTERED,
                    options=ExportOptions(bench_runs=0, quant=QuantOptions(ladder=False)))
    a = report.artifacts[0]
    assert a.status == "passed" and a.ladder is None and a.fallback["kept"] == ["conv"]


def test_accuracy_control_is_an_opt_in_last_rung():
    assert rungs_for("openvino", QuantOptions(ladder_accuracy_control=True))[-1].name == "accuracy-control"
    assert "accuracy-control" not in [r.name for r in rungs_for("openvino")]


def test_openvino_accuracy_control_is_the_last_rung(pixels, tmp_path):
    """OpenVINO on the outlier-channel model: no range setting passes, SmoothQuant does not apply to a CNN,
    and NNCF's accuracy-aware quantization, judged by the export's own gate, reverts the conv's quantizer."""
    src = make_outlier_onnx(tmp_path / "outlier.onnx")
    report = export(src, to="openvino", quant="int8", calib=pixels, out=tmp_path / "out", preprocess=CENTERED,
                    options=ExportOptions(bench_runs=0, quant=QuantOptions(ladder_accuracy_control=True)))
    a = report.artifacts[0]
    assert a.status == "passed", a.reason
    rows = {r["rung"]: r for r in a.ladder["attempts"]}
    assert list(rows) == ["base", "bias-correction", "global-minmax", "histogram", "smooth-quant", "accuracy-control"]
    assert rows["bias-correction"]["skipped"] == "the base already uses it"
    assert rows["smooth-quant"]["skipped"].startswith("not applicable: 0 MatMul and 1 convolution layers")
    assert not any(rows[n]["passed"] for n in ("base", "global-minmax", "histogram"))
    assert rows["accuracy-control"]["passed"] and rows["accuracy-control"]["quantizers_reverted"] >= 1
    assert a.ladder["chosen"] == "accuracy-control" and a.fallback is None
    assert a.scores.agreement == 1.0
