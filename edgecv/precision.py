"""What a model computes in, read from its graph alone (no manifest, no runtime): ``fp32``, ``fp16``,
``dynamic``, ``int8``, ``int16x8`` or ``mixed``.

Each op with weights (convolutions, fully-connected and matmul layers) is classified by the activation it
takes and the weight it stores:

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
    >>> from edgecv.compat import read_graph
    >>> graph_precision(read_graph("detect.tflite"))   # doctest: +SKIP
    'int8'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgecv.compat import Graph, Op

PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "int16x8", "mixed")

# Op type -> (activation input, weight input), per format.
_WEIGHTED: dict[str, dict[str, tuple[int, int]]] = {
    "tflite": {"CONV_2D": (0, 1), "DEPTHWISE_CONV_2D": (0, 1), "FULLY_CONNECTED": (0, 1), "TRANSPOSE_CONV": (2, 1),
               "CONV_3D": (0, 1), "CONV_3D_TRANSPOSE": (2, 1), "BATCH_MATMUL": (0, 1)},
    "onnx": {"Conv": (0, 1), "ConvTranspose": (0, 1), "MatMul": (0, 1), "Gemm": (0, 1), "QLinearConv": (0, 3),
             "QLinearMatMul": (0, 3), "ConvInteger": (0, 1), "MatMulInteger": (0, 1)},
    "openvino": {"Convolution": (0, 1), "GroupConvolution": (0, 1), "ConvolutionBackpropData": (0, 1),
                 "GroupConvolutionBackpropData": (0, 1), "MatMul": (0, 1)},
}
# Ops between a stored weight and the op using it: dequantization, decompression, layout.
_CARRY = {"DEQUANTIZE", "DequantizeLinear", "QuantizeLinear", "Convert", "Subtract", "Multiply", "Reshape", "Transpose",
          "Cast", "Unsqueeze", "Squeeze", "Identity", "FakeQuantize", "RESHAPE", "TRANSPOSE"}
_QUANTIZERS = {"DequantizeLinear", "QuantizeLinear", "FakeQuantize"}
_INT_WEIGHTS = {"int8", "uint8", "int4", "uint4", "int16"}
_HALF = {"float16", "bfloat16"}
_INTEGER_OPS = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}
# Ops whose output is as quantized as their input (OpenVINO and ONNX QDQ graphs put the quantizer before them).
_KEEPS_QUANTIZED = {"MaxPool", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Pad", "StridedSlice",
                    "Concat", "Split", "VariadicSplit", "Identity"}
_FLOAT_TYPES = {"float32", "float16", "bfloat16", "float64"}


def graph_precision(graph: Graph) -> str:
    """One of :data:`PRECISIONS` for ``graph`` (see the module docstring)."""
    producer = {name: op for op in graph.ops for name in op.outputs}
    weighted = _WEIGHTED.get(graph.format, {})
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
        return "mixed"
    if integer:
        return integer.pop()
    return next(k for k in ("dynamic", "fp16", "fp32") if k in kinds)


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
    if source.type in _KEEPS_QUANTIZED and depth < 8 and (dtype is None or dtype not in _FLOAT_TYPES or graph.format != "tflite"):
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
