"""A bounds-checking walk over a TFLite flatbuffer, so a corrupted file fails with a clear error instead
of crashing the interpreter.

It follows the TFLite schema for the tables the interpreter reads (model, subgraphs, tensors,
operators, buffers, signatures) and checks every offset, vector and string against the file size, every
tensor and opcode index against its table, and every constant buffer against its tensor's shape.

:func:`read_tflite` walks the same tables after that check and returns each subgraph's operators (builtin
names, custom ops by their custom_code) and tensors (dtype, shape, shape_signature), for
:mod:`edgecv.compat`.

Example:
    >>> verify_tflite("model.tflite")   # doctest: +SKIP
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from edgecv.errors import ModelFileError

# TFLite TensorType -> bytes per element (0 where the size is not fixed).
_TYPE_SIZES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 5: 0, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 13: 0, 14: 0, 15: 4, 16: 2, 17: 0, 18: 2}
_MAX_ELEMENTS = 1 << 34


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


def _check_model(r: _Reader) -> None:
    model = r.table(r.deref(0))
    opcodes = model.tables(1)
    for oc in opcodes:
        oc.string(1)
    buffers = model.tables(4)
    buffer_bytes = []
    for b in buffers:
        data = b.vector(0, 1)
        offset, size = b.scalar(1, "u64", 8), b.scalar(2, "u64", 8)
        if offset > 1 and offset + size > r.size:
            raise _Corrupt(f"a buffer's data (offset {offset}, size {size}) runs past the end of the file")
        buffer_bytes.append(data[1] if data else (size if offset > 1 else 0))
    for m in model.tables(6):
        m.string(0)
        if m.scalar(1, "u32", 4) >= len(buffers):
            raise _Corrupt("a metadata entry names a buffer that does not exist")
    subgraphs = model.tables(2)
    if not subgraphs:
        raise _Corrupt("the model has no subgraph")
    for g, sg in enumerate(subgraphs):
        tensors = sg.tables(0)
        n_t = len(tensors)
        for t in tensors:
            shape = t.ints(0)
            t.ints(7)
            t.string(3)
            ttype = t.scalar(1, "u8", 1)
            buf = t.scalar(2, "u32", 4)
            if buf >= len(buffers):
                raise _Corrupt(f"a tensor of subgraph {g} names buffer {buf} of {len(buffers)}")
            if any(d < 0 for d in shape):
                raise _Corrupt(f"a tensor of subgraph {g} has a negative dimension {shape}")
            count = 1
            for d in shape:
                count *= d
            if count > _MAX_ELEMENTS:
                raise _Corrupt(f"a tensor of subgraph {g} has an impossible shape {shape}")
            width = _TYPE_SIZES.get(ttype)
            if width is None:
                raise _Corrupt(f"a tensor of subgraph {g} has unknown type code {ttype}")
            if buf and buffer_bytes[buf] and width and buffer_bytes[buf] < count * width:
                raise _Corrupt(f"a constant tensor of subgraph {g} needs {count * width} bytes, its buffer has {buffer_bytes[buf]}")
            q = t.field(4, 4)
            if q is not None:
                qt = r.table(r.deref(q))
                qt.vector(0, 4), qt.vector(1, 4), qt.vector(2, 4), qt.vector(3, 8)
        for name, ids in (("input", sg.ints(1)), ("output", sg.ints(2))):
            if any(not 0 <= i < n_t for i in ids):
                raise _Corrupt(f"subgraph {g} lists an {name} tensor index outside 0..{n_t - 1}")
        for op in sg.tables(3):
            if op.scalar(0, "u32", 4) >= len(opcodes):
                raise _Corrupt(f"an operator of subgraph {g} uses an opcode index outside its table")
            for i in op.ints(1) + op.ints(2) + op.ints(8):
                if not -1 <= i < n_t:
                    raise _Corrupt(f"an operator of subgraph {g} uses tensor index {i} of {n_t}")
            if op.field(4, 4) is not None:
                r.table(r.deref(op.field(4, 4)))
            op.vector(5, 1)
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


# -- reading the graph (for edgecv.compat) ----------------------------------------------------------------

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
    dynamic dims (the shape when the file has no signature), ``const_bytes`` of constant data (0: an
    activation) and whether it carries quantization parameters."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    signature: tuple[int, ...]
    const_bytes: int
    quantized: bool


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
    sizes = []
    for b in model.tables(4):
        data = b.vector(0, 1)
        offset, size = b.scalar(1, "u64", 8), b.scalar(2, "u64", 8)
        sizes.append(data[1] if data else (size if offset > 1 else 0))
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
