"""Culprit ranking for the float fallback, and the clipping measures it ranks by."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgecv.converters.fallback import rank
from edgecv.converters.targets import ClipMeter, LayerError, clip_ratio

ROWS = [
    LayerError("quiet", "Conv", 12.0, 1.0, 100.0),  # worst error, no clipping
    LayerError("clipped", "Conv", 30.0, 6.7, 8.0),  # eval activations far past the calibrated range
    LayerError("mild", "Conv", 20.0, 1.2, 40.0),  # clips a little: not enough to rank by clipping
    LayerError("worse-clipped", "Add", 35.0, 3.0, 5.0),
    LayerError("head", "Conv", 45.0, 1.1, 60.0, head=True),  # makes a model output
]


@pytest.mark.parametrize(
    "rows, method, expected",
    [
        (ROWS, "error", ["quiet", "mild", "clipped", "worse-clipped", "head"]),
        (ROWS, "clipping", ["head", "worse-clipped", "clipped", "quiet", "mild"]),
        (ROWS, "auto", ["head", "worse-clipped", "clipped", "quiet", "mild"]),
        (ROWS, "leave-one-out", ["head", "worse-clipped", "clipped", "quiet", "mild"]),  # its candidates' order
        # Without an eval set apart from calibration there is no clipping figure: error order, heads included.
        ([LayerError(r.name, r.op_type, r.sqnr_db, head=r.head) for r in ROWS], "auto",
         ["quiet", "mild", "clipped", "worse-clipped", "head"]),
        ([], "auto", []),
    ],
)
def test_rank(rows, method, expected):
    assert rank(rows, method) == expected


@pytest.mark.parametrize(
    "calib, probe, expected",
    [
        ((-10.0, 10.0), (-5.0, 5.0), 1.0),  # inside
        ((-10.0, 10.0), (-5.0, 30.0), 3.0),  # three times as far from zero on the top side
        ((-10.0, 10.0), (-40.0, 0.0), 4.0),
        ((0.0, 6.0), (0.0, 18.0), 3.0),  # a ReLU output
        # never positive during calibration: measured against a twentieth of the width (2.0)
        ((-41.0, -1.0), (-30.0, 3.0), 3.0),
    ],
)
def test_clip_ratio(calib, probe, expected):
    assert clip_ratio(calib, probe) == pytest.approx(expected)


def test_clip_meter_measures_the_signal_clipping_destroys():
    meter = ClipMeter()
    rng = np.random.default_rng(0)
    meter.calib("t", rng.uniform(-1, 1, 1000))
    meter.calib("t", np.array([0.0]))
    inside = rng.uniform(-0.9, 0.9, 1000)
    meter.probe("t", inside)
    assert meter.db("t") == 100.0 and meter.ratio("t") == pytest.approx(1.0)
    meter.probe("t", np.array([10.0]))  # one value ten times past the range
    lost = (10.0 - meter._range["t"][1]) ** 2
    assert meter.db("t") == pytest.approx(10 * np.log10((np.sum(inside**2) + 100.0) / lost))
    assert meter.ratio("t") == pytest.approx(10.0, rel=0.01)
    meter.probe("never-calibrated", np.ones(3))
    assert "never-calibrated" not in meter


def test_streamed_qdq_errors_equal_onnx_runtimes_over_all_samples(tmp_path):
    """The per-layer SQNR the ONNX fallback ranks by is reduced sample by sample (memory stays at one
    sample's activations); it must equal ONNX Runtime's debugger, which keeps every tensor of every sample."""
    import contextlib
    import io

    from onnxruntime.quantization import QuantFormat, quantize_static
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    from edgecv.converters.targets.onnx import qdq_errors
    from tests.conftest import make_tiny_onnx

    src = make_tiny_onnx(tmp_path / "tiny.onnx")
    samples = [np.random.default_rng(i).uniform(0, 1, (1, 3, 8, 8)).astype(np.float32) for i in range(5)]

    class Reader:
        def __init__(self):
            self._it = iter({"x": s} for s in samples)

        def get_next(self):
            return next(self._it, None)

        def __iter__(self):
            return iter(self.get_next, None)

    qdq, aug, float_aug = tmp_path / "qdq.onnx", tmp_path / "qdq_aug.onnx", tmp_path / "float_aug.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(str(src), str(qdq), Reader(), quant_format=QuantFormat.QDQ)
        modify_model_output_intermediate_tensors(str(qdq), str(aug))
        modify_model_output_intermediate_tensors(str(src), str(float_aug))
        matching = create_activation_matching(collect_activations(str(aug), Reader()), collect_activations(str(float_aug), Reader()))
        expected = compute_activation_error(matching)
    got = qdq_errors(aug, Reader())
    want = {k: v["qdq_err"] for k, v in expected.items() if "qdq_err" in v}
    assert sorted(got) == sorted(want) and len(got) >= 2
    for name, value in want.items():
        assert got[name] == pytest.approx(value, abs=1e-6), name


def test_artifacts_are_run_in_bounded_slices(monkeypatch):
    """A runtime given 64 full-resolution images at once holds all their activations (and ONNX Runtime keeps
    its arena at that peak): scoring runs at most RUN_ELEMENTS input elements per call."""
    import edgecv.converters.build as build_module

    monkeypatch.setattr(build_module, "RUN_ELEMENTS", 3 * 4 * 4 * 5)  # five samples of 3x4x4
    calls = []

    def run(arrays):
        calls.append(len(arrays[0]))
        return [arrays[0].sum(axis=(1, 2, 3)), arrays[0][:, :1]]

    x = np.arange(12 * 3 * 4 * 4, dtype=np.float32).reshape(12, 3, 4, 4)
    out = build_module.in_parts(run, [x])
    assert calls == [5, 5, 2]
    np.testing.assert_array_equal(out[0], x.sum(axis=(1, 2, 3)))
    np.testing.assert_array_equal(out[1], x[:, :1])
    calls.clear()
    build_module.in_parts(run, [x[:4]])
    assert calls == [4]


def test_fallback_costs_are_timed_as_edgecv_bench_times(tmp_path, monkeypatch):
    import edgecv.bench
    from edgecv.converters.export import ExportOptions, export
    from edgecv.converters.quant import QuantOptions
    from edgecv.manifest import Preprocess
    from tests.conftest import make_outlier_onnx

    calls = []
    real = edgecv.bench.benchmark

    def timed(path, **kw):
        calls.append(kw)
        r = real(path, **kw)
        # Whether int8 with one float layer beats fp32 on a 0.1 ms model is a coin toss under load (CI once
        # measured 0.0988 against 0.0755 ms and failed the artifact): this test is about how the costs are
        # timed, so fp32 is made clearly slower. The verdict itself has its own tests.
        return dataclasses.replace(r, p50_ms=r.p50_ms + 1.0) if "-fp32-latency" in str(path) else r

    monkeypatch.setattr(edgecv.bench, "benchmark", timed)
    np.save(tmp_path / "pixels.npy", np.random.default_rng(0).integers(0, 256, (64, 8, 8, 3), dtype=np.uint8))
    report = export(make_outlier_onnx(tmp_path / "outlier.onnx"), to="onnx", quant="int8", calib=tmp_path / "pixels.npy",
                    out=tmp_path / "out", preprocess=Preprocess(mean=(127.5,), std=(127.5,)),
                    options=ExportOptions(bench_runs=3, bench_warmup=1, quant=QuantOptions(max_drop=1.0)))
    (a,) = report.artifacts
    assert a.status == "passed" and a.fallback["kept"] == ["conv"]
    assert [c["layer"] for c in a.fallback["costs"]] == ["conv", "(all kept layers)"]
    assert all(isinstance(c["added_p50_ms"], float) for c in a.fallback["costs"])
    # plain int8, each prefix, all kept, fp32 (is int8 with float layers still faster?), then the artifact
    # itself: every one in its own process, bench's way
    assert isinstance(a.fallback["fp32_p50_ms"], float)
    assert len(calls) == 5 and all(kw == {"runs": 3, "warmup": 1, "threads": None, "input_shape": None, "isolate": True} for kw in calls)
