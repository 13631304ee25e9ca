"""ONNX models (``.onnx``), run by ONNX Runtime (preferred) or OpenVINO: the cheap check, and a graph reader
that is a minimal protobuf wire-format reader for the few fields the compatibility check needs (no ``onnx``
package on the device).

Example:
    >>> [op.type for op in ONNX().read_graph(Path("model.onnx")).ops][:2]   # doctest: +SKIP
    ['Conv', 'Relu']
"""

from __future__ import annotations

import math
import mmap
from pathlib import Path
from typing import Any, Iterator

from edgecv.errors import ModelFileError
from edgecv.formats.base import ArtifactFormat
from edgecv.graph import Graph, Op, Tensor, WeightOps

# The first byte of a ModelProto: a protobuf tag; field 1 (ir_version, varint) is 0x08 in every writer.
_FIRST_TAGS = (b"\x08", b"\x12", b"\x1a", b"\x22", b"\x2a", b"\x32", b"\x3a", b"\x42")


class ONNX(ArtifactFormat):
    """ONNX: one file (external data is not supported)."""

    name = "onnx"
    suffix = ".onnx"
    backends = ("onnxruntime", "openvino")
    precisions = ("fp32", "fp16", "dynamic", "int8", "int4")
    target = "edgecv.converters.targets.onnx"
    weight_ops = WeightOps(
        {"Conv": (0, 1), "ConvTranspose": (0, 1), "MatMul": (0, 1), "Gemm": (0, 1), "QLinearConv": (0, 3),
         "QLinearMatMul": (0, 3), "ConvInteger": (0, 1), "MatMulInteger": (0, 1), "MatMulNBits": (0, 1)},
    )

    def check(self, path: Path) -> None:
        with open(path, "rb") as f:
            head = f.read(1)
        if head not in _FIRST_TAGS:
            raise ModelFileError(f"{path} is not an ONNX protobuf; the file is corrupted or not a .onnx")

    def read_graph(self, path: Path) -> Graph:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            buf = memoryview(mm)
            try:
                return self._parse(buf, path)
            except (_Bad, IndexError, UnicodeDecodeError) as exc:
                raise ModelFileError(f"{path} is corrupted: {exc}") from None
            finally:
                buf.release()

    def _parse(self, buf: memoryview, path: Path) -> Graph:
        graph = None
        for num, wire, v in _fields(buf):
            if num == 7 and wire == 2:
                graph = v
        if graph is None:
            raise ModelFileError(f"{path} is not an ONNX model: it has no graph")
        ops: list[Op] = []
        tensors: dict[str, Tensor] = {}
        inputs, outputs, infos = [], [], []
        for num, wire, v in _fields(buf, *graph):
            if wire != 2:
                continue
            if num == 1:
                op, const = _onnx_node(buf, v)
                ops.append(op)
                if const is not None and op.outputs:
                    dtype, dims = const[1], const[2]
                    tensors[op.outputs[0]] = Tensor(op.outputs[0], dtype, dims, constant=True, nbytes=_nbytes(dtype, dims))
            elif num == 5:
                name, dtype, dims = _onnx_tensor(buf, v)
                tensors[name] = Tensor(name, dtype, dims, constant=True, nbytes=_nbytes(dtype, dims))
            elif num in (11, 12, 13):
                info = _onnx_value_info(buf, v)
                (inputs if num == 11 else outputs if num == 12 else infos).append(info)
        for info in infos + inputs + outputs:
            if info is not None and info.name not in tensors:
                tensors[info.name] = info
        # Old exporters list initializers among the graph inputs too; those are weights, not inputs.
        ins = tuple(t.name for t in inputs if t is not None and not tensors[t.name].constant)
        for op in ops:
            for n in op.inputs + op.outputs:
                tensors.setdefault(n, Tensor(n, None, None))
        return Graph(self.name, path, tuple(ops), tensors, ins, tuple(t.name for t in outputs if t is not None),
                     self.weight_ops)


_SIZES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2,
          "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "bool": 1, "complex64": 8, "complex128": 16,
          "int4": 0.5, "uint4": 0.5, "float8_e4m3fn": 1, "float8_e5m2": 1, "u1": 0.125}


def _nbytes(dtype: str | None, dims: tuple[int, ...]) -> int:
    return int(math.ceil(math.prod(max(d, 0) for d in dims) * _SIZES.get(dtype or "", 0)))


_ONNX_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
               9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64",
               15: "complex128", 16: "bfloat16", 17: "float8_e4m3fn", 18: "float8_e4m3fnuz", 19: "float8_e5m2",
               20: "float8_e5m2fnuz", 21: "uint4", 22: "int4", 23: "float4_e2m1"}


class _Bad(Exception):
    pass


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Bad(f"a varint at byte {pos} runs past its message")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message; a length-delimited value is a (start, end) span."""
    pos, end = start, len(buf) if end is None else end
    while pos < end:
        key, pos = _varint(buf, pos, end)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 2:
            n, pos = _varint(buf, pos, end)
            if pos + n > end:
                raise _Bad(f"field {num} at byte {pos} ({n} bytes) runs past its message")
            value, pos = (pos, pos + n), pos + n
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise _Bad(f"unsupported wire type {wire} at byte {pos}")
        if num == 0 or pos > end:
            raise _Bad(f"a bad field at byte {pos}")
        yield num, wire, value


def _str(buf: memoryview, span: tuple[int, int]) -> str:
    return bytes(buf[span[0] : span[1]]).decode("utf-8", "replace")


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _onnx_tensor(buf: memoryview, span: tuple[int, int]) -> tuple[str, str | None, tuple[int, ...]]:
    """(name, dtype, dims) of a TensorProto."""
    name, dtype, dims = "", None, []
    for num, wire, v in _fields(buf, *span):
        if num == 1:
            if wire == 2:  # packed
                pos = v[0]
                while pos < v[1]:
                    d, pos = _varint(buf, pos, v[1])
                    dims.append(_signed(d))
            else:
                dims.append(_signed(v))
        elif num == 2 and wire == 0:
            dtype = _ONNX_TYPES.get(v, f"onnx_type_{v}")
        elif num == 8 and wire == 2:
            name = _str(buf, v)
    return name, dtype, tuple(dims)


def _onnx_value_info(buf: memoryview, span: tuple[int, int]) -> Tensor | None:
    """A ValueInfoProto of a tensor type, or None (sequence, map, optional types)."""
    name, ttype = "", None
    for num, wire, v in _fields(buf, *span):
        if num == 1 and wire == 2:
            name = _str(buf, v)
        elif num == 2 and wire == 2:
            for n2, w2, v2 in _fields(buf, *v):
                if n2 == 1 and w2 == 2:
                    ttype = v2
    if ttype is None:
        return Tensor(name, None, None)
    dtype, shape, dims = None, None, []
    for num, wire, v in _fields(buf, *ttype):
        if num == 1 and wire == 0:
            dtype = _ONNX_TYPES.get(v, f"onnx_type_{v}")
        elif num == 2 and wire == 2:
            shape = []
            for n2, w2, dim in _fields(buf, *v):
                if n2 != 1 or w2 != 2:
                    continue
                value, param = -1, ""
                for n3, w3, v3 in _fields(buf, *dim):
                    if n3 == 1 and w3 == 0:
                        value = _signed(v3)
                    elif n3 == 2 and w3 == 2:
                        param = _str(buf, v3)
                shape.append(value)
                dims.append(param or ("" if value >= 0 else "?"))
    return Tensor(name, dtype, None if shape is None else tuple(shape), tuple(dims))


def _onnx_node(buf: memoryview, span: tuple[int, int]) -> tuple[Op, tuple[str, str | None, tuple[int, ...]] | None]:
    ins, outs, name, op_type, domain, value = [], [], "", "", "", None
    for num, wire, v in _fields(buf, *span):
        if wire != 2:
            continue
        if num == 1:
            ins.append(_str(buf, v))
        elif num == 2:
            outs.append(_str(buf, v))
        elif num == 3:
            name = _str(buf, v)
        elif num == 4:
            op_type = _str(buf, v)
        elif num == 7:
            domain = _str(buf, v)
        elif num == 5:
            attr_name, tensor = "", None
            for n2, w2, v2 in _fields(buf, *v):
                if n2 == 1 and w2 == 2:
                    attr_name = _str(buf, v2)
                elif n2 == 5 and w2 == 2:
                    tensor = v2
            if attr_name == "value" and tensor is not None:
                value = _onnx_tensor(buf, tensor)
    custom = domain not in ("", "ai.onnx")
    op = Op(op_type, name or (outs[0] if outs else op_type), tuple(i for i in ins if i), tuple(outs), custom, domain)
    return op, value if op_type == "Constant" and not custom else None
