"""Will this artifact run on that device? A static check of a model file against a device profile, on the
device side: no TensorFlow, no ``onnx`` package, no runtime.

:func:`read_graph` lists a model's ops (in execution order) and tensors from the file itself: TFLite through
the flatbuffer walker in :mod:`edgecv.flatbuffer`, ONNX through a minimal protobuf reader, OpenVINO IR
through its ``.xml``. :func:`check_artifact` compares that graph with a :class:`~edgecv.devices.DeviceProfile`
and sorts what it finds into *blockers* (the device cannot run the file: wrong format, over budget, a float
model for an integer-only accelerator, a dynamic shape an accelerator must compile statically, an op the
accelerator must take and cannot) and *fallbacks* (it runs, slower: ops that go to the CPU, parameters that
do not fit the accelerator's memory).

Example:
    >>> from edgecv.devices import load_profile
    >>> report = check_artifact("face_detection_short_range.tflite", load_profile("coral-edgetpu"))  # doctest: +SKIP
    >>> report.ok, next(f.message for f in report.blockers if f.op == "CONV_2D")                  # doctest: +SKIP
    (False, "float op CONV_2D 'conv2d' on tensor 'input' float32: the Edge TPU runs full-integer models only")
"""

from __future__ import annotations

import math
import mmap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from edgecv.errors import ModelFileError

if TYPE_CHECKING:
    from edgecv.devices import DeviceProfile

FLOATS = frozenset({"float32", "float16", "bfloat16", "float64"})
_SIZES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2,
          "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "bool": 1, "complex64": 8, "complex128": 16,
          "int4": 0.5, "uint4": 0.5, "float8_e4m3fn": 1, "float8_e5m2": 1, "u1": 0.125}


@dataclass(frozen=True)
class Tensor:
    """A tensor of the graph. ``shape`` has -1 for a dynamic dim (``dims`` keeps ONNX's dim_param names and
    OpenVINO's ranges); ``dtype`` is a numpy-style name, or None where the file does not say (intermediate ONNX
    tensors without value_info). ``nbytes``: size of constant data (0 for an activation)."""

    name: str
    dtype: str | None
    shape: tuple[int, ...] | None
    dims: tuple[str, ...] = ()
    constant: bool = False
    nbytes: int = 0
    quantized: bool = False

    @property
    def dynamic(self) -> bool:
        """True when the rank or a dimension is unknown until run time."""
        return self.shape is None or any(d < 0 for d in self.shape)

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    def shape_text(self) -> str:
        if self.shape is None:
            return "[?]"
        return "[" + ",".join(n if d < 0 and n else str(d) for d, n in zip(self.shape, self.dims or [""] * len(self.shape))) + "]"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": None if self.shape is None else list(self.shape),
                "dims": list(self.dims), "dynamic": self.dynamic, "constant": self.constant, "nbytes": self.nbytes}


@dataclass(frozen=True)
class Op:
    """One op: its type as the format spells it (TFLite builtin name or custom_code, ONNX op_type, OpenVINO
    layer type), a name (for TFLite, which has no op names: its first output tensor's, up to the first ';'),
    and input/output tensor names."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    custom: bool = False
    domain: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "inputs": list(self.inputs), "outputs": list(self.outputs),
                "custom": self.custom, "domain": self.domain}


@dataclass(frozen=True)
class Graph:
    """A model's main graph as :func:`read_graph` reads it."""

    format: str
    path: Path
    ops: tuple[Op, ...]
    tensors: dict[str, Tensor]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def param_bytes(self) -> int:
        """Bytes of constant data (weights, biases, other constants)."""
        return sum(t.nbytes for t in self.tensors.values() if t.constant)

    @property
    def precision(self) -> str:
        """What the model computes in: fp32, fp16, dynamic, int8, int16x8 or mixed (:mod:`edgecv.precision`)."""
        from edgecv.precision import graph_precision

        return graph_precision(self)

    def op_types(self) -> Counter[str]:
        return Counter(op.type for op in self.ops)

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "path": str(self.path), "precision": self.precision,
                "inputs": list(self.inputs), "outputs": list(self.outputs),
                "ops": [op.to_dict() for op in self.ops],
                "tensors": [t.to_dict() for t in self.tensors.values()]}


# -- reading ----------------------------------------------------------------------------------------------


def read_graph(path: str | Path) -> Graph:
    """The ops and tensors of the model at ``path`` (``.tflite``, ``.onnx`` or OpenVINO ``.xml``), read from
    the file alone. A missing, unknown or damaged file raises a one-line :class:`ModelFileError`.

    Example:
        >>> g = read_graph("model.int8.tflite")   # doctest: +SKIP
        >>> [op.type for op in g.ops][:3], g.precision   # doctest: +SKIP
        (['QUANTIZE', 'CONV_2D', 'MEAN'], 'int8')
    """
    from edgecv.formats import check_model_file

    path = Path(path)
    fmt = check_model_file(path)
    reader = {"tflite": _read_tflite, "onnx": _read_onnx, "openvino": _read_openvino}[fmt.name]
    return reader(path)


def _read_tflite(path: Path) -> Graph:
    from edgecv.flatbuffer import read_tflite

    sg = read_tflite(path)[0]
    names = _unique([t.name for t in sg.tensors])
    tensors = {
        n: Tensor(n, t.dtype, t.signature, constant=t.const_bytes > 0, nbytes=t.const_bytes, quantized=t.quantized)
        for n, t in zip(names, sg.tensors)
    }

    def tname(i: int) -> str | None:
        return names[i] if 0 <= i < len(names) else None

    ops = []
    for k, op in enumerate(sg.ops):
        outs = tuple(n for n in map(tname, op.outputs) if n is not None)
        ins = tuple(n for n in map(tname, op.inputs) if n is not None)
        # The converter names fused ops after every tensor it folded in ("a;b;c"): the first says enough.
        label = outs[0].split(";")[0] if outs else f"op{k}"
        ops.append(Op(op.name, label, ins, outs, custom=op.custom))
    return Graph("tflite", path, tuple(ops), tensors, tuple(names[i] for i in sg.inputs),
                 tuple(names[i] for i in sg.outputs))


def _unique(names: list[str]) -> list[str]:
    """Tensor names made unique (TFLite does not promise unique or non-empty names)."""
    seen = Counter(names)
    return [n if n and seen[n] == 1 else f"{n or 'tensor'}#{i}" for i, n in enumerate(names)]


# ONNX: a protobuf wire-format reader for the few fields the check needs.

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


def _read_onnx(path: Path) -> Graph:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        buf = memoryview(mm)
        try:
            return _parse_onnx(buf, path)
        except (_Bad, IndexError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"{path} is corrupted: {exc}") from None
        finally:
            buf.release()


def _parse_onnx(buf: memoryview, path: Path) -> Graph:
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
    return Graph("onnx", path, tuple(ops), tensors, ins, tuple(t.name for t in outputs if t is not None))


def _nbytes(dtype: str | None, dims: tuple[int, ...]) -> int:
    return int(math.ceil(math.prod(max(d, 0) for d in dims) * _SIZES.get(dtype or "", 0)))


# OpenVINO IR

_OV_TYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "f64": "float64", "i8": "int8", "u8": "uint8",
             "i16": "int16", "u16": "uint16", "i32": "int32", "u32": "uint32", "i64": "int64", "u64": "uint64",
             "boolean": "bool", "bool": "bool", "u1": "u1", "i4": "int4", "u4": "uint4", "f8e4m3": "float8_e4m3fn",
             "f8e5m2": "float8_e5m2", "string": "string"}


def _ov_type(text: str | None) -> str | None:
    if not text:
        return None
    t = text.lower()
    t = {"fp32": "f32", "fp16": "f16", "fp64": "f64"}.get(t, t)
    return _OV_TYPES.get(t, t)


def _ov_dim(text: str) -> tuple[int, str]:
    text = (text or "").strip()
    try:
        value = int(text)
        return (value, "" if value >= 0 else "?")
    except ValueError:
        return -1, text or "?"


def _read_openvino(path: Path) -> Graph:
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise ModelFileError(f"{path} is not a readable OpenVINO IR: {str(exc).splitlines()[0]}") from None
    layers = root.find("layers")
    if root.tag != "net" or layers is None:
        raise ModelFileError(f"{path} is not an OpenVINO IR: no <net><layers>")
    tensors: dict[str, Tensor] = {}
    port_name: dict[tuple[str, str], str] = {}
    records = []
    for layer in layers.findall("layer"):
        lid, ltype, lname = layer.get("id", ""), layer.get("type", ""), layer.get("name", "")
        data = layer.find("data")
        outs = []
        out_el = layer.find("output")
        for port in (out_el.findall("port") if out_el is not None else []):
            pid = port.get("id", "")
            names = [n.strip() for n in (port.get("names") or "").split(",") if n.strip()]
            tname = names[0] if names else lname
            if tname in tensors:  # an unnamed port whose layer name is another tensor's name
                tname = f"{lname}:{pid}" if f"{lname}:{pid}" not in tensors else f"{lname}#{lid}:{pid}"
            dims = [_ov_dim(d.text or "") for d in port.findall("dim")]
            dtype = _ov_type(port.get("precision") or (data.get("element_type") if data is not None else None))
            const = ltype == "Const"
            nbytes = int(data.get("size", 0)) if const and data is not None else 0
            tensors[tname] = Tensor(tname, dtype, tuple(d for d, _ in dims), tuple(n for _, n in dims),
                                    constant=const, nbytes=nbytes)
            port_name[(lid, pid)] = tname
            outs.append(tname)
        in_el = layer.find("input")
        in_ports = [p.get("id", "") for p in (in_el.findall("port") if in_el is not None else [])]
        records.append((lid, ltype, lname, in_ports, outs))
    feeds: dict[tuple[str, str], str] = {}
    deps: dict[str, set[str]] = {r[0]: set() for r in records}
    edges = root.find("edges")
    for e in (edges.findall("edge") if edges is not None else []):
        src = (e.get("from-layer", ""), e.get("from-port", ""))
        dst = (e.get("to-layer", ""), e.get("to-port", ""))
        if src in port_name:
            feeds[dst] = port_name[src]
        if dst[0] in deps:
            deps[dst[0]].add(src[0])
    by_id = {r[0]: r for r in records}
    ops, inputs, outputs = [], [], []
    for lid in _topological([r[0] for r in records], deps):
        _, ltype, lname, in_ports, outs = by_id[lid]
        ins = tuple(feeds[(lid, p)] for p in in_ports if (lid, p) in feeds)
        ops.append(Op(ltype, lname, ins, tuple(outs)))
        if ltype == "Parameter":
            inputs += outs
        elif ltype == "Result":
            outputs += ins
    return Graph("openvino", path, tuple(ops), tensors, tuple(inputs), tuple(outputs))


def _topological(order: list[str], deps: dict[str, set[str]]) -> list[str]:
    """Layers in an order where each comes after what feeds it, keeping the file's order where it can."""
    import heapq

    rank = {lid: i for i, lid in enumerate(order)}
    users: dict[str, list[str]] = {lid: [] for lid in order}
    waiting = {lid: len({d for d in deps[lid] if d in rank}) for lid in order}
    for lid in order:
        for d in deps[lid]:
            if d in users:
                users[d].append(lid)
    ready = [rank[lid] for lid in order if waiting[lid] == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        lid = order[heapq.heappop(ready)]
        out.append(lid)
        for u in users[lid]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, rank[u])
    if len(out) != len(order):
        raise ModelFileError("the OpenVINO IR has a cycle among its layers")
    return out


# -- checking ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One thing the check found: ``kind`` (format, size, precision, float, dynamic, op, rank, dtype, memory,
    io, accelerator), the ``op`` type and ``name`` or the ``tensor`` it is about, and a one-line ``message``."""

    kind: str
    message: str
    op: str | None = None
    name: str | None = None
    tensor: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "op": self.op, "name": self.name, "tensor": self.tensor}


@dataclass(frozen=True)
class CompatReport:
    """What :func:`check_artifact` found. ``ok``: no blockers (the device can run the file, maybe with
    fallbacks). ``accelerator_ops``: how many ops the accelerator would run (None without an accelerator)."""

    artifact: Path
    device: str
    format: str
    precision: str
    size_bytes: int
    ops: int
    blockers: tuple[Finding, ...] = ()
    fallbacks: tuple[Finding, ...] = ()
    accelerator: str | None = None
    accelerator_ops: int | None = None
    op_types: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.blockers

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": str(self.artifact), "device": self.device, "ok": self.ok, "format": self.format,
                "precision": self.precision, "size_bytes": self.size_bytes, "ops": self.ops,
                "accelerator": self.accelerator, "accelerator_ops": self.accelerator_ops,
                "op_types": dict(self.op_types),
                "blockers": [f.to_dict() for f in self.blockers],
                "fallbacks": [f.to_dict() for f in self.fallbacks]}


# Ops that only carry constants or mark the graph's ends: never placed on a device.
_STRUCTURAL = {"Parameter", "Result", "Const", "Constant"}


def _cpu_path(profile: DeviceProfile, fmt: str) -> bool:
    """Can the profile's runtimes run ``fmt`` on the CPU (where an accelerator's leftovers go)?"""
    rt = profile.runtimes
    if fmt == "tflite":
        return "litert" in rt  # LiteRT's built-in kernels always run what a delegate leaves
    ov = "openvino" in rt and (not rt["openvino"].devices or "CPU" in rt["openvino"].devices)
    if fmt == "onnx":
        ort = "onnxruntime" in rt and (not rt["onnxruntime"].providers or "CPUExecutionProvider" in rt["onnxruntime"].providers)
        return ort or ov
    return ov


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def check_artifact(path: str | Path, profile: DeviceProfile) -> CompatReport:
    """Check the model file at ``path`` against ``profile``: format, size budget, required quantization, and
    what the profile's accelerator takes (op list, integer-only, dtypes, rank, static shapes, partitions,
    on-chip memory). See the module docstring for blockers vs fallbacks.

    Example:
        >>> from edgecv.devices import load_profile
        >>> r = check_artifact("model.int8.tflite", load_profile("coral-edgetpu"))   # doctest: +SKIP
        >>> r.ok, [f.message for f in r.fallbacks]                                  # doctest: +SKIP
        (True, [])
    """
    from edgecv.formats import FORMATS, check_model_file

    path = Path(path)
    fmt = check_model_file(path)
    size = sum(p.stat().st_size for p in fmt.files(path) if p.is_file())
    blockers: list[Finding] = []
    fallbacks: list[Finding] = []
    model_mb = profile.budgets.model_mb
    if model_mb is not None and size > model_mb * 1e6:
        blockers.append(Finding("size", f"the file is {_mb(size)}, over {profile.name}'s budget of {model_mb:g} MB "
                                        f"(budgets.model_mb)"))
    if fmt.name not in profile.formats:
        blockers.append(Finding("format", f"format {fmt.name}: {profile.name} runs {', '.join(profile.formats)} "
                                          f"only ({', '.join(FORMATS[f].suffix for f in profile.formats)})"))
        return CompatReport(path, profile.name, fmt.name, "unknown", size, 0, tuple(blockers), (),
                            profile.accelerator.name if profile.accelerator else None)
    graph = read_graph(path)
    acc = profile.accelerator
    acc_ops = _check_accelerator(graph, profile, blockers, fallbacks) if acc and fmt.name in acc.formats else None
    if acc and fmt.name not in acc.formats:
        fallbacks.append(Finding("accelerator", f"the {acc.name} does not run {fmt.name} files "
                                                f"(it takes {', '.join(acc.formats)}): the whole model runs on the CPU"))
    required = profile.quantization.required
    precision = graph.precision
    if required and precision != required and not any(f.kind == "float" for f in blockers):
        blockers.append(Finding("precision", f"{profile.name} needs {required} models (quantization.required); "
                                             f"this one is {precision}"))
    return CompatReport(path, profile.name, fmt.name, precision, size, len(graph.ops), tuple(blockers),
                        tuple(fallbacks), acc.name if acc else None, acc_ops, dict(graph.op_types()))


def _check_accelerator(graph: Graph, profile: DeviceProfile, blockers: list[Finding], fallbacks: list[Finding]) -> int:
    """Add the accelerator's findings; return how many ops it would run."""
    acc = profile.accelerator
    assert acc is not None
    soft = acc.fallback == "cpu" and _cpu_path(profile, graph.format)
    T = graph.tensors
    if acc.static_shapes:  # a compiler of static shapes refuses a dynamic input outright
        for name in graph.inputs:
            if T[name].dynamic:
                blockers.append(Finding("dynamic", f"dynamic shape on input {name!r} {T[name].shape_text()}: the "
                                                   f"{acc.name} compiles static shapes only; fix the shape at export",
                                        tensor=name))
    float_blocked, boundary = _full_integer(graph, profile, blockers, fallbacks) if acc.full_integer else (set(), set())
    reasons = _reasons(graph, profile, skip=float_blocked | boundary)
    compute = [i for i, op in enumerate(graph.ops) if op.type not in _STRUCTURAL and i not in boundary]
    cut = _partition_cut(compute, reasons, acc.partitions)
    after = len([i for i in compute if i > cut]) if cut is not None else 0
    for i, why in reasons.items():
        op = graph.ops[i]
        kind, text, tensor = why[0]
        extra = f" (and {len(why) - 1} more reason{'s' * (len(why) > 2)})" if len(why) > 1 else ""
        if not soft:
            tail = f"the model does not compile for the {acc.name}"
        elif i == cut and after:
            tail = (f"it and the {after} op{'s' * (after != 1)} after it run on the CPU "
                    f"({_spell(acc.partitions)} partition{'s' * (acc.partitions != 1)})")
        elif i == cut:
            tail = "it runs on the CPU (the last op)"
        else:
            tail = "runs on the CPU"
        (fallbacks if soft else blockers).append(Finding(kind, f"{text}{extra}: {tail}", op.type, op.name, tensor))
    on_acc = [i for i in compute if i not in reasons and i not in float_blocked and (cut is None or i < cut)]
    if acc.memory_mb is not None:
        consts = {n for i in on_acc for n in graph.ops[i].inputs if T[n].constant}
        params = sum(T[n].nbytes for n in consts)
        if params > acc.memory_mb * 1e6:
            fallbacks.append(Finding("memory", f"the parameters of the ops on the {acc.name} take {_mb(params)}, more "
                                               f"than its ~{acc.memory_mb:g} MB on-chip memory: the rest stream from "
                                               f"host memory on every run (slower)"))
    return 0 if float_blocked else len(on_acc)


def _full_integer(graph: Graph, profile: DeviceProfile, blockers: list[Finding],
                  fallbacks: list[Finding]) -> tuple[set[int], set[int]]:
    """Float ops of an integer-only accelerator (blockers), and the float/integer conversions at the model's
    ends. Returns the indices of both."""
    acc, T = profile.accelerator, graph.tensors
    assert acc is not None
    ends = set(graph.inputs) | set(graph.outputs)
    # A float model input's QUANTIZE and a float output's DEQUANTIZE are host work at the model's ends:
    # they run on the CPU without cutting the accelerator's partition.
    boundary = {
        i for i, op in enumerate(graph.ops)
        if (op.type in ("QUANTIZE", "QuantizeLinear") and op.inputs and op.inputs[0] in graph.inputs
            and T[op.inputs[0]].dtype in FLOATS)
        or (op.type in ("DEQUANTIZE", "DequantizeLinear") and op.outputs and op.outputs[0] in graph.outputs
            and op.inputs and not T[op.inputs[0]].constant)
    }
    blocked: set[int] = set()
    for i, op in enumerate(graph.ops):
        bad = [T[n] for n in op.inputs + op.outputs if n not in ends and T[n].dtype in FLOATS]
        if bad and op.type not in _STRUCTURAL and i not in boundary:
            floats_in = [T[n] for n in op.inputs if T[n].dtype in FLOATS]
            t = next((x for x in floats_in if not x.constant), floats_in[0] if floats_in else bad[0])
            blocked.add(i)
            blockers.append(Finding("float", f"float op {op.type} {op.name!r} on tensor {t.name!r} {t.dtype}: "
                                             f"the {acc.name} runs full-integer models only", op.type, op.name, t.name))
    io = profile.quantization.io
    for i in sorted(boundary) if not blocked else ():
        op = graph.ops[i]
        if op.type.startswith("Q"):
            name, side, what = op.inputs[0], "input", f"its {op.type} to {T[op.outputs[0]].dtype}"
        else:
            name, side, what = op.outputs[0], "output", f"the {op.type} to it"
        prefer = f" ({profile.name} takes {io} I/O: export with {io} inputs and outputs to skip it)" if io != "float" else ""
        fallbacks.append(Finding("io", f"{side} {name!r} is {T[name].dtype}: {what} runs on the CPU{prefer}",
                                 op.type, op.name, name))
    return blocked, boundary


def _reasons(graph: Graph, profile: DeviceProfile, *, skip: set[int]) -> dict[int, list[tuple[str, str, str | None]]]:
    """Per op the accelerator cannot take: (kind, why, tensor) for each reason."""
    acc, T = profile.accelerator, graph.tensors
    assert acc is not None
    ends = set(graph.inputs) | set(graph.outputs)
    allowed = set(acc.ops.get(graph.format, ()))
    # With static inputs, a dynamic tensor inside comes from a data-dependent op; with dynamic inputs, every
    # tensor downstream is dynamic too and the input's blocker says it all.
    follow_dynamic = acc.static_shapes and not any(T[n].dynamic for n in graph.inputs)
    reasons: dict[int, list[tuple[str, str, str | None]]] = {}
    for i, op in enumerate(graph.ops):
        if op.type in _STRUCTURAL or i in skip:
            continue
        why: list[tuple[str, str, str | None]] = []
        if allowed and op.type not in allowed:
            why.append(("op", f"{'custom op' if op.custom else 'op'} {op.type} {op.name!r} is not in the "
                              f"{acc.name}'s op list", None))
        for n in dict.fromkeys(op.inputs + op.outputs):
            t = T[n]
            if t.constant:
                continue
            where = f"tensor {n!r} of {op.type} {op.name!r}"
            if acc.max_rank is not None and t.rank is not None and t.rank > acc.max_rank:
                why.append(("rank", f"{where} has rank {t.rank} {t.shape_text()}, the {acc.name} takes at most "
                                    f"{acc.max_rank - 1} dimensions besides batch", n))
            if acc.dtypes and t.dtype and t.dtype not in acc.dtypes and not (acc.full_integer and t.dtype in FLOATS):
                why.append(("dtype", f"{where} is {t.dtype}, the {acc.name} takes {', '.join(acc.dtypes)}", n))
            if follow_dynamic and t.dynamic and n not in ends and t.shape is not None:
                why.append(("dynamic", f"{where} has a dynamic shape {t.shape_text()}, the {acc.name} takes static "
                                       f"shapes only", n))
        if why:
            reasons[i] = why
    return reasons


def _partition_cut(compute: list[int], reasons: dict[int, list], partitions: int | None) -> int | None:
    """The op from which everything runs on the CPU because the compiler makes at most ``partitions``
    accelerator segments: the start of the ``partitions``-th run of ops it cannot take (1: the first such op).
    None without such a limit, or when there is no such op."""
    if partitions is None:
        return None
    runs, prev_bad = 0, False
    for i in compute:
        bad = i in reasons
        if bad and not prev_bad:
            runs += 1
            if runs == partitions:
                return i
        prev_bad = bad
    return None


def _spell(n: int | None) -> str:
    return {1: "one", 2: "two", 3: "three"}.get(n or 0, str(n))
