"""A model's graph as read from the file alone (ops in execution order, tensors), and what it computes in.

Each artifact format's reader (:mod:`edgecv.formats`) builds a :class:`Graph`; :mod:`edgecv.compat` checks it
against a device. :attr:`Graph.precision` reads the precision from the graph alone (no manifest, no runtime):
``fp32``, ``fp16``, ``dynamic``, ``int8``, ``int16x8`` or ``mixed``.

Each op with weights (convolutions, fully-connected and matmul layers; the format lists them in its
:class:`WeightOps`) is classified by the activation it takes and the weight it stores:

- the activation: quantized when it is an 8-bit tensor (TFLite int8/uint8), or comes out of a
  ``DequantizeLinear`` (ONNX QDQ) or a ``FakeQuantize`` (OpenVINO); 16-bit quantized activations make
  ``int16x8``;
- the weight: followed back through the ops that only carry it from its stored form (``DEQUANTIZE``,
  ``DequantizeLinear``, OpenVINO's ``Convert``/``Subtract``/``Multiply`` decompression, reshapes) to the
  largest constant it comes from: 8- or 4-bit integers, float16, or float32.

Quantized activation and integer weights: ``int8`` (or ``int16x8``). Float activation with integer
weights: ``dynamic`` (TFLite hybrid ops, ONNX ``ConvInteger``/``MatMulInteger`` after
``DynamicQuantizeLinear``, OpenVINO compressed weights). Float weights: the op runs in float whatever it is
fed (an op kept in float in a QDQ graph), ``fp16`` for float16 weights, else ``fp32``. The model: ``mixed`` when some
weighted ops run quantized and others in float (an int8 model with layers kept in float), else the one kind
(``dynamic`` and ``fp16`` models may keep small layers in fp32, as their converters do). A graph without
weighted ops is read from its tensor types.

Example:
    >>> x, w = Tensor("x", "float32", (1, 4)), Tensor("w", "int8", (4, 4), constant=True, nbytes=16)
    >>> y = Tensor("y", "float32", (1, 4))
    >>> g = Graph("tflite", Path("m.tflite"), (Op("FULLY_CONNECTED", "y", ("x", "w"), ("y",)),),
    ...           {"x": x, "w": w, "y": y}, ("x",), ("y",), WeightOps({"FULLY_CONNECTED": (0, 1)}, typed=True))
    >>> g.precision
    'dynamic'
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

FLOATS = frozenset({"float32", "float16", "bfloat16", "float64"})
MIXED = "mixed"  # the precision of a graph whose weighted ops run partly quantized, partly in float


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
class WeightOps:
    """What the precision reader needs from a format: its ops with weights, as op type -> (activation input,
    weight input), and whether its tensor types tell a quantized activation (``typed``: TFLite stores one as
    an integer tensor; ONNX QDQ and OpenVINO IR keep float tensors and mark quantization with ops).

    Example:
        >>> WeightOps({"Conv": (0, 1)}).slots["Conv"]
        (0, 1)
    """

    slots: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    typed: bool = False


@dataclass(frozen=True)
class Graph:
    """A model's main graph as its format's reader reads it (:func:`edgecv.formats.read_graph`).
    ``weight_ops``: the format's table of weighted ops, which :attr:`precision` reads by."""

    format: str
    path: Path
    ops: tuple[Op, ...]
    tensors: dict[str, Tensor]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    weight_ops: WeightOps = field(default=WeightOps(), compare=False, repr=False)

    @property
    def param_bytes(self) -> int:
        """Bytes of constant data (weights, biases, other constants)."""
        return sum(t.nbytes for t in self.tensors.values() if t.constant)

    @property
    def precision(self) -> str:
        """What the model computes in: fp32, fp16, dynamic, int8, int16x8 or mixed (see the module docstring)."""
        return _graph_precision(self)

    def op_types(self) -> Counter[str]:
        return Counter(op.type for op in self.ops)

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "path": str(self.path), "precision": self.precision,
                "inputs": list(self.inputs), "outputs": list(self.outputs),
                "ops": [op.to_dict() for op in self.ops],
                "tensors": [t.to_dict() for t in self.tensors.values()]}


# -- precision ----------------------------------------------------------------------------------------------

# Ops between a stored weight and the op using it: dequantization, decompression, layout.
_CARRY = {"DEQUANTIZE", "DequantizeLinear", "QuantizeLinear", "Convert", "Subtract", "Multiply", "Reshape", "Transpose",
          "Cast", "Unsqueeze", "Squeeze", "Identity", "FakeQuantize", "RESHAPE", "TRANSPOSE"}
_QUANTIZERS = {"DequantizeLinear", "QuantizeLinear", "FakeQuantize"}
_INT_WEIGHTS = {"int8", "uint8", "int4", "uint4", "int16"}
_HALF = {"float16", "bfloat16"}
_INTEGER_OPS = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}
_FOUR_BIT = {"int4", "uint4"}
_FOUR_BIT_OPS = {"MatMulNBits"}  # ONNX Runtime's block-wise 4-bit MatMul (its weights are packed in uint8)
# Ops whose output is as quantized as their input (OpenVINO and ONNX QDQ graphs put the quantizer before them).
_KEEPS_QUANTIZED = {"MaxPool", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Pad", "StridedSlice",
                    "Concat", "Split", "VariadicSplit", "Identity"}


def _graph_precision(graph: Graph) -> str:
    producer = {name: op for op in graph.ops for name in op.outputs}
    weighted = graph.weight_ops.slots
    kinds = set()
    for op in graph.ops:
        slots = weighted.get(op.type)
        if slots is None or len(op.inputs) <= max(slots):
            continue
        weight = _stored_weight(graph, producer, op.inputs[slots[1]])
        if weight is None:
            continue  # activation x activation (attention): no weights to tell by
        kinds.add(_op_kind(graph, producer, op, op.inputs[slots[0]], weight))
    if not kinds:
        return _from_tensors(graph)
    integer = kinds & {"int8", "int16x8"}
    if integer and (len(integer) > 1 or kinds - integer):
        return MIXED
    if integer:
        return integer.pop()
    # weight-only kinds: the lowest-bit weights name the file (an int4 file keeps its convolutions in int8 or float)
    return next(k for k in ("int4", "dynamic", "fp16", "fp32") if k in kinds)


def _stored_weight(graph: Graph, producer: dict[str, Op], name: str, depth: int = 0) -> tuple[str, bool] | None:
    """``(dtype, through a quantizer)`` of the largest constant ``name`` is carried from; None when it
    comes from an activation."""
    found = _constant_source(graph, producer, name, depth)
    return None if found is None else found[:2]


def _constant_source(graph: Graph, producer: dict[str, Op], name: str, depth: int) -> tuple[str, bool, int] | None:
    tensor = graph.tensors.get(name)
    if tensor is not None and tensor.constant:
        return (tensor.dtype or "float32"), False, tensor.nbytes
    op = producer.get(name)
    if op is None or depth > 8 or op.type not in _CARRY:
        return None
    found = [w for i in op.inputs if (w := _constant_source(graph, producer, i, depth + 1)) is not None]
    if not found:
        return None
    dtype, quantized, nbytes = max(found, key=lambda f: f[2])  # the weight, not its scale or zero point
    return dtype, quantized or op.type in _QUANTIZERS, nbytes


def _op_kind(graph: Graph, producer: dict[str, Op], op: Op, act: str, weight: tuple[str, bool]) -> str:
    w_dtype, w_quantized = weight
    int_weight = w_dtype in _INT_WEIGHTS or w_quantized
    bits = _quantized_bits(graph, producer, act)
    if op.type in _FOUR_BIT_OPS or w_dtype in _FOUR_BIT:
        return "int4"  # 4-bit weights, float activations (weight-only)
    if op.type in _INTEGER_OPS:
        source = producer.get(act)
        if source is not None and source.type == "DynamicQuantizeLinear":
            return "dynamic"
        return "int16x8" if bits == 16 else "int8"
    if bits and int_weight:
        return "int16x8" if bits == 16 else "int8"
    if int_weight:
        return "dynamic"
    # Float weights: the op runs in float, even on a dequantized input (an op kept in float in a QDQ graph).
    return "fp16" if w_dtype in _HALF else "fp32"


def _quantized_bits(graph: Graph, producer: dict[str, Op], act: str, depth: int = 0) -> int:
    """8 or 16 when the activation ``act`` is quantized, else 0. Followed back through ops that keep a
    quantized tensor quantized (pooling, reshapes), as OpenVINO puts a FakeQuantize before a MaxPool."""
    tensor = graph.tensors.get(act)
    dtype = tensor.dtype if tensor is not None else None
    if dtype in ("int8", "uint8"):
        return 8
    if dtype in ("int16", "uint16"):
        return 16
    source = producer.get(act)
    if source is None or not source.inputs:
        return 0
    if source.type == "FakeQuantize":
        return 8
    if source.type == "DequantizeLinear":
        stored = [graph.tensors.get(i) for i in source.inputs[:1] + source.inputs[2:3]]
        return 16 if any(t is not None and t.dtype in ("int16", "uint16") for t in stored) else 8
    # Where tensor types tell (TFLite), a float tensor is a float activation; elsewhere look past it.
    typed_float = graph.weight_ops.typed and dtype in FLOATS
    if source.type in _KEEPS_QUANTIZED and depth < 8 and not typed_float:
        return _quantized_bits(graph, producer, source.inputs[0], depth + 1)
    return 0


def _from_tensors(graph: Graph) -> str:
    """A graph without weighted ops: by its activation and constant types."""
    acts = [t for t in graph.tensors.values() if not t.constant and t.dtype and t.name not in graph.inputs]
    if any(t.dtype in ("int16", "uint16") and t.quantized for t in acts):
        return "int16x8"
    if any(t.dtype in ("int8", "uint8") for t in acts) or any(op.type in _QUANTIZERS | _INTEGER_OPS for op in graph.ops):
        return "int8"
    if any(t.dtype in _HALF for t in graph.tensors.values()):
        return "fp16"
    return "fp32"
