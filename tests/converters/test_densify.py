"""Dense copies of sparse TFLite models (converters/densify.py): every sparse encoding expands to the exact
dense tensor, the copy computes what LiteRT computes on the sparse original, and export of a real sparse
model writes ONNX, OpenVINO and TFLite artifacts that match LiteRT on the original file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgecv
from edgecv.converters.densify import dense_copy, dense_view, densify_values, is_sparse
from edgecv.errors import ModelFileError
from edgecv.flatbuffer import read_tflite
from tests.edgecv.sparse_helper import encode, rewrite
from tests.edgecv.test_tflite_encodings import ENCODINGS, SPARSE_CORPUS, X, _sparse_model, _weights

pytest.importorskip("ai_edge_litert")


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_every_encoding_densifies_to_the_exact_tensor(name):
    order, formats, block_map, block_sizes, index = ENCODINGS[name]
    w = _weights(block_map, block_sizes)
    sparsity, values = encode(w, order, formats, block_map=block_map, block_sizes=block_sizes, index=index)
    assert len(values) < w.size
    np.testing.assert_array_equal(densify_values(values, list(w.shape), sparsity), w)


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_the_dense_copy_computes_what_litert_computes_on_the_sparse_file(tmp_path, name):
    sparse, w = _sparse_model(tmp_path, name)
    result = dense_copy(sparse, tmp_path / "dense.tflite")
    assert (result.tensors, result.ops) == (1, 1)
    assert not is_sparse(result.path) and is_sparse(sparse)
    (sg,) = read_tflite(result.path)
    assert [op.name for op in sg.ops] == ["FULLY_CONNECTED"]
    (want,) = edgecv.load(sparse).run([X])
    (got,) = edgecv.load(result.path).run([X])
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    np.testing.assert_allclose(got, X @ w.T, atol=1e-5, rtol=0)


def test_a_corrupted_sparse_file_is_refused_not_densified(tmp_path):
    sparse, _ = _sparse_model(tmp_path, "row-major csr int32")

    def cut_values(model):
        buffer = model.buffers[model.subgraphs[0].tensors[1].buffer]
        buffer.data = buffer.data[:-8]

    bad = rewrite(sparse, tmp_path / "bad.tflite", cut_values)
    with pytest.raises(ModelFileError, match="stores 399 values by its sparsity metadata: it needs 1596 bytes, its buffer has 1588"):
        dense_copy(bad, tmp_path / "dense.tflite")
    assert not (tmp_path / "dense.tflite").exists() and not (tmp_path / "dense.tflite.partial").exists()


def test_a_dense_model_is_its_own_view(tmp_path, shared_data):
    path = shared_data / "models" / "face_detection_short_range.tflite"
    assert dense_view(path, tmp_path) == path
    assert list(tmp_path.iterdir()) == []


def _litert(path: Path, x: np.ndarray) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


@pytest.mark.parametrize("rel", SPARSE_CORPUS)
def test_corpus_sparse_detectors_densify_exactly(corpus, tmp_path, rel):
    view = dense_view(corpus / rel, tmp_path)
    assert view != corpus / rel and not is_sparse(view)
    (sg,) = read_tflite(view)
    assert "DENSIFY" not in {op.name for op in sg.ops}
    x = np.random.default_rng(3).uniform(-1, 1, (1, 192, 192, 3)).astype(np.float32)
    for got, want in zip(_litert(view, x), _litert(corpus / rel, x)):
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    assert dense_view(corpus / rel, tmp_path) == view  # made once per work folder


# (format, precision, expected status, max |diff| against LiteRT on the sparse original or the refusal)
EXPORT_ROWS = [
    ("onnx", "fp32", "passed", 1e-3),
    ("onnx", "fp16", "passed", 0.5),
    ("openvino", "fp32", "passed", 1e-3),
    ("openvino", "fp16", "passed", 0.5),
    ("tflite", "fp32", "passed", 1e-6),
    ("tflite", "fp16", "passed", 0.5),
]


@pytest.mark.workstation
def test_export_of_a_sparse_detector(corpus, tmp_path):
    pytest.importorskip("tf2onnx")
    pytest.importorskip("openvino")
    from edgecv.converters.export import export

    src = corpus / SPARSE_CORPUS[0]
    report = export(src, to=("onnx", "openvino", "tflite"), quant=("fp32", "fp16"), out=tmp_path / "out")
    rows = {(a.format, a.precision): a for a in report.artifacts}
    assert sorted(rows) == sorted((f, p) for f, p, _, _ in EXPORT_ROWS)
    x = np.random.default_rng(4).uniform(-1, 1, (1, 192, 192, 3)).astype(np.float32)
    want = _litert(src, x)
    for fmt, precision, status, bound in EXPORT_ROWS:
        a = rows[fmt, precision]
        assert a.status == status, (fmt, precision, a.reason)
        if status == "failed":
            assert bound in a.reason and "\n" not in a.reason
            continue
        assert a.path is not None and a.path.is_file() and a.path.parent == tmp_path / "out", (fmt, precision)
        model = edgecv.load(a.path)  # checked and loaded from disk, as a user would
        got = model.run([x if model.inputs[0].shape[-1] == 3 else x.transpose(0, 3, 1, 2)])
        for g, w in zip(got, want):
            assert float(np.abs(g - w).max()) <= bound, (fmt, precision, float(np.abs(g - w).max()))
        assert a.max_abs_diff is not None and a.max_abs_diff <= bound
    tflite = rows["tflite", "fp32"].path
    assert not is_sparse(tflite) and "DENSIFY" not in {op.name for op in read_tflite(tflite)[0].ops}
