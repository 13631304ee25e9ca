"""A bounds-checking walk over a TFLite flatbuffer, so a corrupted file fails with a clear error instead
of crashing the interpreter.

It follows the TFLite schema for the tables the interpreter reads (model, subgraphs, tensors,
operators, buffers, signatures) and checks every offset, vector and string against the file size, every
tensor and opcode index against its table, and every constant buffer against its tensor's shape, in every
encoding the schema allows: data inside the flatbuffer or after it (``Buffer.offset``/``size``), packed
INT4/UINT4/INT2, STRING layouts, and sparse tensors, whose metadata (traversal order, block map, DENSE and
SPARSE_CSR levels with their index vectors) is bounds-checked and gives the number of values the buffer
must hold. Only what is provably inconsistent is refused: a type or index format newer than this reader is
left to the runtime, and dynamic dims are -1 in ``shape_signature`` only (LiteRT itself refuses -1 in
``shape``).

:func:`read_tflite` walks the same tables after that check and returns each subgraph's operators (builtin
names, custom ops by their custom_code) and tensors (dtype, shape, shape_signature), for
:mod:`edgecv.formats.tflite`.

Example:
    >>> verify_tflite("model.tflite")   # doctest: +SKIP
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from edgecv.errors import ModelFileError

# TensorType code -> bits per element of constant data as LiteRT lays it out: INT4, UINT4 and INT2 are packed
# (two or four to a byte). STRING (5) has a variable-size layout of its own; RESOURCE (13) and VARIANT (14) hold
# no constant data; a code missing here (a type newer than this table) is never a reason to refuse a file.
_TYPE_BITS = {0: 32, 1: 16, 2: 32, 3: 8, 4: 64, 6: 8, 7: 16, 8: 64, 9: 8, 10: 64, 11: 128, 12: 64, 15: 32, 16: 16,
              17: 4, 18: 16, 19: 2, 20: 4, 21: 8, 22: 8}
_STRING = 5
_MAX_ELEMENTS = 1 << 34
# SparseIndexVector union member -> numpy dtype of its values (Int32Vector, Uint16Vector, Uint8Vector).
_INDEX_TYPES = {1: "<i4", 2: "<u2", 3: "u1"}
_DENSE, _SPARSE_CSR = 0, 1


class _Corrupt(Exception):
    pass


class _Reader:
    def __init__(self, buf) -> None:
        self.buf = buf
        self.size = len(buf)

    def _need(self, pos: int, n: int, what: str) -> None:
        if pos < 0 or pos + n > self.size:
            raise _Corrupt(f"{what} at byte {pos} runs past the end of the file")

    def u8(self, pos: int) -> int:
        self._need(pos, 1, "byte")
        return self.buf[pos]

    def u16(self, pos: int) -> int:
        self._need(pos, 2, "uint16")
        return struct.unpack_from("<H", self.buf, pos)[0]

    def i32(self, pos: int) -> int:
        self._need(pos, 4, "int32")
        return struct.unpack_from("<i", self.buf, pos)[0]

    def u32(self, pos: int) -> int:
        self._need(pos, 4, "uint32")
        return struct.unpack_from("<I", self.buf, pos)[0]

    def u64(self, pos: int) -> int:
        self._need(pos, 8, "uint64")
        return struct.unpack_from("<Q", self.buf, pos)[0]

    def deref(self, pos: int) -> int:
        target = pos + self.u32(pos)
        self._need(target, 4, "offset target")
        return target

    def table(self, pos: int) -> _Table:
        vt = pos - self.i32(pos)
        vt_size = self.u16(vt)
        tbl_size = self.u16(vt + 2)
        if vt_size < 4 or vt_size % 2:
            raise _Corrupt(f"table at byte {pos} has a bad vtable size {vt_size}")
        self._need(vt, vt_size, "vtable")
        self._need(pos, tbl_size, "table")
        return _Table(self, pos, vt, vt_size, tbl_size)


class _Table:
    def __init__(self, r: _Reader, pos: int, vt: int, vt_size: int, tbl_size: int) -> None:
        self.r, self.pos, self.vt, self.vt_size, self.tbl_size = r, pos, vt, vt_size, tbl_size

    def field(self, index: int, width: int) -> int | None:
        slot = 4 + 2 * index
        if slot >= self.vt_size:
            return None
        off = self.r.u16(self.vt + slot)
        if off == 0:
            return None
        if off + width > self.tbl_size:
            raise _Corrupt(f"field {index} of the table at byte {self.pos} lies outside the table")
        return self.pos + off

    def scalar(self, index: int, reader: str, width: int, default: int = 0) -> int:
        at = self.field(index, width)
        return default if at is None else getattr(self.r, reader)(at)

    def vector(self, index: int, elem: int) -> tuple[int, int] | None:
        """(start, length) of a vector field; every element is checked to be inside the file."""
        at = self.field(index, 4)
        if at is None:
            return None
        v = self.r.deref(at)
        n = self.r.u32(v)
        self.r._need(v + 4, n * elem, "vector")
        return v + 4, n

    def ints(self, index: int) -> list[int]:
        vec = self.vector(index, 4)
        if vec is None:
            return []
        start, n = vec
        return list(struct.unpack_from(f"<{n}i", self.r.buf, start))

    def tables(self, index: int) -> list[_Table]:
        vec = self.vector(index, 4)
        if vec is None:
            return []
        start, n = vec
        return [self.r.table(self.r.deref(start + 4 * i)) for i in range(n)]

    def string(self, index: int) -> None:
        vec = self.vector(index, 1)
        if vec is not None:
            start, n = vec
            self.r._need(start, n + 1, "string")


def _buffers(r: _Reader, model: _Table) -> list[tuple[int, int]]:
    """(start, size) of each buffer's bytes in the file: its ``data`` vector, or data stored after the
    flatbuffer at ``offset`` (large models; valid when the offset is above 1); (0, 0) when empty."""
    out = []
    for b in model.tables(4):
        data = b.vector(0, 1)
        offset, size = b.scalar(1, "u64", 8), b.scalar(2, "u64", 8)
        if data is not None:
            out.append(data)
        elif offset > 1:
            if offset + size > r.size:
                raise _Corrupt(f"a buffer's data (offset {offset}, size {size}) runs past the end of the file")
            out.append((offset, size))
        else:
            out.append((0, 0))
    return out


def _index_vector(r: _Reader, md: _Table, type_field: int, where: str):
    """The values of a SparseIndexVector union (numpy array); None for a union member this reader does not know."""
    import numpy as np

    kind = md.scalar(type_field, "u8", 1)
    at = md.field(type_field + 1, 4)
    if kind == 0 or at is None:
        raise _Corrupt(f"{where} is SPARSE_CSR without its {'array_segments' if type_field == 2 else 'array_indices'}")
    dtype = _INDEX_TYPES.get(kind)
    if dtype is None:
        return None
    vec = r.table(r.deref(at)).vector(0, np.dtype(dtype).itemsize)
    if vec is None:
        return np.zeros(0, dtype)
    start, n = vec
    # A copy: a view would pin the mmap, which must close even when a check fails.
    return np.frombuffer(bytes(r.buf[start : start + n * np.dtype(dtype).itemsize]), dtype)


def _sparse_values(r: _Reader, sp: _Table, shape: list[int], where: str) -> int | None:
    """How many values a sparse tensor stores, from its SparsityParameters, after checking them against its
    dense ``shape`` (so that densifying it stays inside both arrays); None when it uses an index type or a
    dimension format this reader does not know."""
    order, block_map, dims = sp.ints(0), sp.ints(1), sp.tables(2)
    n, k = len(shape), len(block_map)
    if sorted(order[:n]) != list(range(n)) or sorted(order[n:]) != list(range(n, n + k)):
        raise _Corrupt(f"{where} has traversal order {order}: expected a permutation of its {n} dims, "
                       f"then of its {k} block dims")
    if len(dims) != n + k:
        raise _Corrupt(f"{where} has {len(dims)} dim_metadata entries: expected {n + k} (one per traversed dim)")
    if any(not 0 <= b < n for b in block_map) or len(set(block_map)) != k:
        raise _Corrupt(f"{where} has block_map {block_map}: expected distinct dims of its shape {shape}")
    sizes = list(shape)  # dims of shape, divided by their block size, then the block sizes
    for j, dim in enumerate(block_map):
        block = dims[order.index(n + j)].scalar(1, "i32", 4)
        if block <= 0 or shape[dim] % block:
            raise _Corrupt(f"{where} has block size {block} for dim {dim} of shape {shape}: expected a divisor")
        sizes[dim] //= block
        sizes.append(block)
    lo, hi = 0, 1  # the positions the previous level produced
    for level, md in enumerate(dims):
        size = sizes[order[level]]
        fmt = md.scalar(0, "u8", 1)
        if fmt == _DENSE:
            dense = md.scalar(1, "i32", 4)
            if dense != size:
                raise _Corrupt(f"{where} has dense level {level} of size {dense}: its shape {shape} says {size}")
            lo, hi = lo * size, hi * size
            if hi > _MAX_ELEMENTS:
                raise _Corrupt(f"{where} has an impossible shape {shape}")
        elif fmt == _SPARSE_CSR:
            seg = _index_vector(r, md, 2, f"level {level} of {where}")
            idx = _index_vector(r, md, 4, f"level {level} of {where}")
            if seg is None or idx is None:
                return None
            if len(seg) < hi + 1:
                raise _Corrupt(f"level {level} of {where} has {len(seg)} array_segments: expected at least {hi + 1}")
            seg = seg[lo : hi + 1].astype("int64")
            if seg[0] < 0 or (seg[1:] < seg[:-1]).any() or seg[-1] > len(idx):
                raise _Corrupt(f"level {level} of {where} has array_segments that decrease or pass its "
                               f"{len(idx)} array_indices")
            used = idx[seg[0] : seg[-1]]
            if len(used) and (int(used.min()) < 0 or int(used.max()) >= size):
                raise _Corrupt(f"level {level} of {where} has an array index outside 0..{size - 1}")
            lo, hi = int(seg[0]), int(seg[-1])
        else:
            return None
    return hi - lo


def _check_strings(r: _Reader, start: int, size: int, where: str) -> None:
    """A STRING tensor's buffer: int32 count N, N+1 int32 offsets into the buffer, then the bytes."""
    if size < 4:
        raise _Corrupt(f"{where} is a STRING tensor whose buffer ({size} bytes) has no string count")
    count = r.i32(start)
    header = 4 * (count + 2)
    if count < 0 or header > size:
        raise _Corrupt(f"{where} is a STRING tensor of {count} strings: its header needs {max(header, 0)} bytes, "
                       f"its buffer has {size}")
    offsets = struct.unpack_from(f"<{count + 1}i", r.buf, start + 4)
    if offsets[0] < header or offsets[-1] > size or any(b < a for a, b in zip(offsets, offsets[1:])):
        raise _Corrupt(f"{where} is a STRING tensor whose string offsets leave its {size}-byte buffer")


def _check_tensor(r: _Reader, t: _Table, buffers: list[tuple[int, int]], where: str) -> None:
    shape = t.ints(0)
    t.ints(7)
    t.string(3)
    for v in t.tables(9):  # the subtypes of a VARIANT tensor
        v.ints(0)
    ttype = t.scalar(1, "u8", 1)
    buf = t.scalar(2, "u32", 4)
    if buf >= len(buffers):
        raise _Corrupt(f"{where} names buffer {buf} of {len(buffers)}")
    if any(d < 0 for d in shape):  # dynamic dims are 1 here, -1 only in shape_signature; LiteRT refuses -1
        raise _Corrupt(f"{where} has a negative dimension {shape}")
    count = 1
    for d in shape:
        count *= d
    if count > _MAX_ELEMENTS:
        raise _Corrupt(f"{where} has an impossible shape {shape}")
    q = t.field(4, 4)
    if q is not None:
        qt = r.table(r.deref(q))
        qt.vector(0, 4), qt.vector(1, 4), qt.vector(2, 4), qt.vector(3, 8)
        if qt.field(5, 4) is not None:
            qt_details = r.table(r.deref(qt.field(5, 4)))
            if qt.scalar(4, "u8", 1) == 1:  # CustomQuantization
                qt_details.vector(0, 1)
    sparsity = t.field(6, 4)
    if sparsity is not None:
        count = _sparse_values(r, r.table(r.deref(sparsity)), shape, f"sparse {where}")
    start, size = buffers[buf] if buf else (0, 0)
    if not size or count is None:
        return
    if ttype == _STRING:
        _check_strings(r, start, size, where)
        return
    bits = _TYPE_BITS.get(ttype)
    if bits is not None and size * 8 < count * bits:
        need = (count * bits + 7) // 8
        if sparsity is not None:
            raise _Corrupt(f"a constant sparse {where} stores {count} values by its sparsity metadata: it needs "
                           f"{need} bytes, its buffer has {size}")
        raise _Corrupt(f"a constant {where} needs {need} bytes for {count} elements, its buffer has {size}")


def _check_operator(r: _Reader, op: _Table, n_opcodes: int, n_t: int, g: int) -> None:
    if op.scalar(0, "u32", 4) >= n_opcodes:
        raise _Corrupt(f"an operator of subgraph {g} uses an opcode index outside its table")
    for i in op.ints(1) + op.ints(2) + op.ints(8):
        if not -1 <= i < n_t:
            raise _Corrupt(f"an operator of subgraph {g} uses tensor index {i} of {n_t}")
    for options in (4, 12):  # builtin_options, builtin_options_2
        if op.field(options, 4) is not None:
            r.table(r.deref(op.field(options, 4)))
    op.vector(5, 1)
    op.vector(7, 1)
    offset, size = op.scalar(9, "u64", 8), op.scalar(10, "u64", 8)
    if offset > 1 and offset + size > r.size:
        raise _Corrupt(f"an operator's custom options (offset {offset}, size {size}) run past the end of the file")


def _check_model(r: _Reader) -> None:
    model = r.table(r.deref(0))
    opcodes = model.tables(1)
    for oc in opcodes:
        oc.string(1)
    buffers = _buffers(r, model)
    model.string(3)
    model.ints(5)
    for m in model.tables(6):
        m.string(0)
        if m.scalar(1, "u32", 4) >= len(buffers):
            raise _Corrupt("a metadata entry names a buffer that does not exist")
    for group in model.tables(8):  # external buffers live in other files; only their records are checked
        group.string(0)
    for ext in model.tables(9):
        ext.string(4)
    subgraphs = model.tables(2)
    if not subgraphs:
        raise _Corrupt("the model has no subgraph")
    for g, sg in enumerate(subgraphs):
        tensors = sg.tables(0)
        n_t = len(tensors)
        for i, t in enumerate(tensors):
            _check_tensor(r, t, buffers, f"tensor {i} of subgraph {g}")
        for name, ids in (("input", sg.ints(1)), ("output", sg.ints(2))):
            if any(not 0 <= i < n_t for i in ids):
                raise _Corrupt(f"subgraph {g} lists an {name} tensor index outside 0..{n_t - 1}")
        for op in sg.tables(3):
            _check_operator(r, op, len(opcodes), n_t, g)
        sg.string(4)
    for sd in model.tables(7):
        for tm in sd.tables(0) + sd.tables(1):
            tm.string(0)
        sd.string(2)
        if sd.scalar(4, "u32", 4) >= len(subgraphs):
            raise _Corrupt("a signature names a subgraph that does not exist")


def verify_tflite(path: str | Path) -> None:
    """Raise :class:`ModelFileError` when ``path`` is not a structurally sound TFLite flatbuffer."""
    path = Path(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        try:
            _check_model(_Reader(buf))
        except (_Corrupt, struct.error, RecursionError) as exc:
            raise ModelFileError(f"{path} is corrupted: {exc}") from None


# -- reading the graph (for edgecv.formats.tflite) --------------------------------------------------------

# BuiltinOperator names, indexed by code, as the TFLite schema spells them.
BUILTIN_OPS: tuple[str, ...] = tuple(
    """
    ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE EMBEDDING_LOOKUP FLOOR
    FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D LOCAL_RESPONSE_NORMALIZATION LOGISTIC LSH_PROJECTION
    LSTM MAX_POOL_2D MUL RELU RELU_N1_TO_1 RELU6 RESHAPE RESIZE_BILINEAR RNN SOFTMAX SPACE_TO_DEPTH SVDF TANH
    CONCAT_EMBEDDINGS SKIP_GRAM CALL CUSTOM EMBEDDING_LOOKUP_SPARSE PAD UNIDIRECTIONAL_SEQUENCE_RNN GATHER
    BATCH_TO_SPACE_ND SPACE_TO_BATCH_ND TRANSPOSE MEAN SUB DIV SQUEEZE UNIDIRECTIONAL_SEQUENCE_LSTM STRIDED_SLICE
    BIDIRECTIONAL_SEQUENCE_RNN EXP TOPK_V2 SPLIT LOG_SOFTMAX DELEGATE BIDIRECTIONAL_SEQUENCE_LSTM CAST PRELU MAXIMUM
    ARG_MAX MINIMUM LESS NEG PADV2 GREATER GREATER_EQUAL LESS_EQUAL SELECT SLICE SIN TRANSPOSE_CONV SPARSE_TO_DENSE
    TILE EXPAND_DIMS EQUAL NOT_EQUAL LOG SUM SQRT RSQRT SHAPE POW ARG_MIN FAKE_QUANT REDUCE_PROD REDUCE_MAX PACK
    LOGICAL_OR ONE_HOT LOGICAL_AND LOGICAL_NOT UNPACK REDUCE_MIN FLOOR_DIV REDUCE_ANY SQUARE ZEROS_LIKE FILL FLOOR_MOD
    RANGE RESIZE_NEAREST_NEIGHBOR LEAKY_RELU SQUARED_DIFFERENCE MIRROR_PAD ABS SPLIT_V UNIQUE CEIL REVERSE_V2 ADD_N
    GATHER_ND COS WHERE RANK ELU REVERSE_SEQUENCE MATRIX_DIAG QUANTIZE MATRIX_SET_DIAG ROUND HARD_SWISH IF WHILE
    NON_MAX_SUPPRESSION_V4 NON_MAX_SUPPRESSION_V5 SCATTER_ND SELECT_V2 DENSIFY SEGMENT_SUM BATCH_MATMUL
    PLACEHOLDER_FOR_GREATER_OP_CODES CUMSUM CALL_ONCE BROADCAST_TO RFFT2D CONV_3D IMAG REAL COMPLEX_ABS HASHTABLE
    HASHTABLE_FIND HASHTABLE_IMPORT HASHTABLE_SIZE REDUCE_ALL CONV_3D_TRANSPOSE VAR_HANDLE READ_VARIABLE
    ASSIGN_VARIABLE BROADCAST_ARGS RANDOM_STANDARD_NORMAL BUCKETIZE RANDOM_UNIFORM MULTINOMIAL GELU
    DYNAMIC_UPDATE_SLICE RELU_0_TO_1 UNSORTED_SEGMENT_PROD UNSORTED_SEGMENT_MAX UNSORTED_SEGMENT_SUM ATAN2
    UNSORTED_SEGMENT_MIN SIGN BITCAST BITWISE_XOR RIGHT_SHIFT STABLEHLO_LOGISTIC STABLEHLO_ADD STABLEHLO_DIVIDE
    STABLEHLO_MULTIPLY STABLEHLO_MAXIMUM STABLEHLO_RESHAPE STABLEHLO_CLAMP STABLEHLO_CONCATENATE
    STABLEHLO_BROADCAST_IN_DIM STABLEHLO_CONVOLUTION STABLEHLO_SLICE STABLEHLO_CUSTOM_CALL STABLEHLO_REDUCE
    STABLEHLO_ABS STABLEHLO_AND STABLEHLO_COSINE STABLEHLO_EXPONENTIAL STABLEHLO_FLOOR STABLEHLO_LOG STABLEHLO_MINIMUM
    STABLEHLO_NEGATE STABLEHLO_OR STABLEHLO_POWER STABLEHLO_REMAINDER STABLEHLO_RSQRT STABLEHLO_SELECT
    STABLEHLO_SUBTRACT STABLEHLO_TANH STABLEHLO_SCATTER STABLEHLO_COMPARE STABLEHLO_CONVERT STABLEHLO_DYNAMIC_SLICE
    STABLEHLO_DYNAMIC_UPDATE_SLICE STABLEHLO_PAD STABLEHLO_IOTA STABLEHLO_DOT_GENERAL STABLEHLO_REDUCE_WINDOW
    STABLEHLO_SORT STABLEHLO_WHILE STABLEHLO_GATHER STABLEHLO_TRANSPOSE DILATE STABLEHLO_RNG_BIT_GENERATOR
    REDUCE_WINDOW STABLEHLO_COMPOSITE STABLEHLO_SHIFT_LEFT STABLEHLO_CBRT STABLEHLO_CASE
    """.split()
)

# TensorType code -> numpy-style dtype name.
TENSOR_TYPES: dict[int, str] = dict(enumerate(
    "float32 float16 int32 uint8 int64 string bool int16 complex64 int8 float64 complex128 uint64 resource variant "
    "uint32 uint16 int4 bfloat16 int2 uint4 float8_e4m3fn float8_e5m2".split()
))


@dataclass(frozen=True)
class TfliteTensor:
    """One tensor of a subgraph: ``shape`` as stored (dynamic dims are 1 there), ``signature`` with -1 for
    dynamic dims (the shape when the file has no signature), ``const_bytes`` of constant data as stored (0: an
    activation), whether it carries quantization parameters and whether it is stored sparse."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    signature: tuple[int, ...]
    const_bytes: int
    quantized: bool
    sparse: bool = False


@dataclass(frozen=True)
class TfliteOp:
    """One operator: its builtin name, or for a custom op its ``custom_code``; tensor indices (-1: absent)."""

    name: str
    custom: bool
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class TfliteSubgraph:
    """One subgraph: its tensors, operators in execution order, and input/output tensor indices."""

    name: str
    tensors: tuple[TfliteTensor, ...]
    ops: tuple[TfliteOp, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def _text(t: _Table, index: int) -> str:
    vec = t.vector(index, 1)
    if vec is None:
        return ""
    start, n = vec
    return bytes(t.r.buf[start : start + n]).decode("utf-8", "replace")


def _op_name(oc: _Table) -> tuple[str, bool]:
    # Codes above 127 live in builtin_code; older files have only the int8 deprecated_builtin_code.
    code = max(oc.scalar(0, "u8", 1), oc.scalar(3, "i32", 4))
    if code == 32:  # CUSTOM
        return _text(oc, 1) or "CUSTOM", True
    return (BUILTIN_OPS[code] if 0 <= code < len(BUILTIN_OPS) else f"BUILTIN_{code}"), False


def _read_subgraphs(r: _Reader) -> list[TfliteSubgraph]:
    model = r.table(r.deref(0))
    opnames = [_op_name(oc) for oc in model.tables(1)]
    sizes = [size for _, size in _buffers(r, model)]
    out = []
    for sg in model.tables(2):
        tensors = []
        for t in sg.tables(0):
            shape = tuple(t.ints(0))
            buf = t.scalar(2, "u32", 4)
            q = t.field(4, 4)
            quantized = False
            if q is not None:
                qt = r.table(r.deref(q))
                scale = qt.vector(2, 4)
                quantized = bool(scale and scale[1])
            tensors.append(TfliteTensor(
                name=_text(t, 3),
                dtype=TENSOR_TYPES.get(t.scalar(1, "u8", 1), "unknown"),
                shape=shape,
                signature=tuple(t.ints(7)) or shape,
                const_bytes=sizes[buf] if 0 < buf < len(sizes) else 0,
                quantized=quantized,
                sparse=t.field(6, 4) is not None,
            ))
        ops = []
        for op in sg.tables(3):
            name, custom = opnames[op.scalar(0, "u32", 4)]
            ops.append(TfliteOp(name, custom, tuple(op.ints(1)), tuple(op.ints(2))))
        out.append(TfliteSubgraph(_text(sg, 4), tuple(tensors), tuple(ops), tuple(sg.ints(1)), tuple(sg.ints(2))))
    return out


def read_tflite(path: str | Path) -> list[TfliteSubgraph]:
    """The subgraphs of a TFLite file (the first is the main graph), after the structural check of
    :func:`verify_tflite`; a damaged file raises :class:`ModelFileError`.

    Example:
        >>> [op.name for op in read_tflite("model.tflite")[0].ops]   # doctest: +SKIP
        ['CONV_2D', 'MEAN', 'FULLY_CONNECTED']
    """
    path = Path(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        try:
            r = _Reader(buf)
            _check_model(r)
            return _read_subgraphs(r)
        except (_Corrupt, struct.error, RecursionError) as exc:
            raise ModelFileError(f"{path} is corrupted: {exc}") from None
