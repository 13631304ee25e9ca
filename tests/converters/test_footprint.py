"""Artifact figures shared by the compression commands: size, zipped size, top-1, latency."""

from __future__ import annotations

import numpy as np
import pytest

from edgecv.converters.footprint import measure_artifacts, zipped_size
from tests.conftest import make_tiny_onnx


def test_zipped_size_sees_the_zeros_pruning_makes(tmp_path):
    import onnx
    from onnx import numpy_helper

    dense = make_tiny_onnx(tmp_path / "dense.onnx")
    model = onnx.load(str(dense))
    for init in model.graph.initializer:  # zero every weight: what 100% sparsity would leave
        init.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(init)), init.name))
    onnx.save(model, str(tmp_path / "sparse.onnx"))
    assert zipped_size(tmp_path / "sparse.onnx") < 0.5 * zipped_size(dense)
    assert zipped_size(dense) < dense.stat().st_size  # DEFLATE always saves something on protobuf


def test_measure_artifacts_scores_and_times(tmp_path, tiny_onnx):
    from tests.conftest import tiny_cnn_reference, tiny_cnn_weights

    x = np.random.default_rng(0).uniform(0, 1, (20, 8, 8, 3)).astype(np.float32)
    logits = tiny_cnn_reference(x.transpose(0, 3, 1, 2), tiny_cnn_weights())
    y = np.argmax(logits, axis=1)
    y[:5] = (y[:5] + 1) % logits.shape[1]  # five wrong labels: top-1 must be exactly 0.75
    (row,) = measure_artifacts([tiny_onnx], x=x, y=y, runs=5)
    assert row.format == "onnx" and row.size_bytes == tiny_onnx.stat().st_size
    assert row.top1 == pytest.approx(0.75)
    assert row.p50_ms is not None and row.p50_ms > 0
