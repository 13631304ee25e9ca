"""Write TFLite artifacts with the TFLite converter from a SavedModel (Keras and SavedModel sources, and
ONNX and float TFLite sources through the SavedModel onnx2tf writes); fp32 and fp16 of ONNX and float TFLite
sources (the latter through tf2onnx) come from onnx2tf directly. fp32 of a float TFLite source is the file
itself, so it is refused, except for a sparse model, whose fp32 artifact is its dense copy.

Quantized precisions:
- ``dynamic``: int8 weights, float activations;
- ``int8``: full integer with a representative dataset, inputs/outputs float, int8 or uint8;
- ``int16x8``: int16 activations with int8 weights.
Layers kept in float (the accuracy fallback) are denylisted by their output tensor names, the way the
converter's quantization debugger does it.
"""

from __future__ import annotations

import csv
import io
import shutil
import warnings
from pathlib import Path

import numpy as np

from edgecv.converters.quant import QuantJob, QuantOptions
from edgecv.converters.sources import Source
from edgecv.converters.targets.base import ExportTarget, LayerError, QatModel
from edgecv.converters.tf_env import import_tensorflow
from edgecv.errors import ConversionError
from edgecv.formats import FORMATS

_IO_DTYPES = {"float": "float32", "int8": "int8", "uint8": "uint8"}


class TFLiteTarget(ExportTarget):
    """TFLite flatbuffers (:data:`edgecv.formats.FORMATS` ``["tflite"]``), written by the TFLite converter."""

    static_only = True
    integer_io = True
    writes_qat = True

    def convert(self, source: Source, precision: str, out_file: Path, work: Path, quant: QuantJob | None = None, *,
                static_batch: bool = False, input_shape: tuple[int, ...] | None = None) -> None:
        """``input_shape`` (in the source's layout) fixes the input's shape: TFLite converters need static
        spatial dims, so export passes it whenever the source has dynamic ones."""
        if source.kind == "tflite" and precision == "fp32":
            dense = source.view("tflite", work)  # a sparse source's dense copy (converters/densify.py)
            if dense == source.path:
                raise ConversionError("a .tflite source is already TFLite fp32; export it to onnx or openvino, or to another "
                                      "TFLite precision (fp16, dynamic, int8, int16x8)")
            shutil.copyfile(dense, out_file)
            return
        if source.kind in ("onnx", "tflite") and precision in ("fp32", "fp16") and (input_shape is not None or not static_batch):
            # A float .tflite goes through ONNX (tf2onnx) like the quantized precisions do: onnx2tf writes fp16.
            from edgecv.converters.onnx_to_tflite import onnx_to_tflite

            onnx_file, folder = _onnx_for(source, work, input_shape)
            shutil.copyfile(onnx_to_tflite(onnx_file, folder, precision=precision), out_file)
            return
        tf = import_tensorflow()
        saved_model = _saved_model(source, work, input_shape)
        converter = _converter(tf, saved_model, precision, quant, static_batch=static_batch, input_shape=_to_fix(source, input_shape))
        if precision == "int8":
            data = _quantized(tf, converter, precision, quant, _input_shape(tf, saved_model))
        elif precision == "int16x8" and quant.keep_float:
            data = _quantize_calibrated(tf, _calibrated(tf, converter), precision, quant, list(quant.keep_float))
        else:
            data = _run(converter)
        out_file.write_bytes(data)

    def layer_errors(self, source: Source, precision: str, artifact: Path, work: Path, quant: QuantJob, *,
                     input_shape: tuple[int, ...] | None = None) -> list[LayerError]:
        """Per-layer SQNR of int8 against float, each layer fed the same quantized input (isolated error).

        Uses the converter's quantization debugger, so the names are the ones ``denylisted_nodes`` takes.
        It gives no clip ratio: the debugger reports errors, not the float ranges on the eval set.
        """
        tf = import_tensorflow()
        saved_model = _saved_model(source, work, input_shape)
        converter = _converter(tf, saved_model, "int8", quant, input_shape=_to_fix(source, input_shape))
        shape = _input_shape(tf, saved_model)
        samples = list(quant.probe_samples(shape, limit=PROBE_SAMPLES))
        options = tf.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics={"sqnr": _sqnr_metric})
        try:
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=lambda: ([x] for x in samples), debug_options=options
            )
            debugger.run()
        except Exception as exc:
            raise ConversionError(f"TFLite quantization debugger failed: {_why(exc)}") from None
        table = io.StringIO()
        debugger.layer_statistics_dump(table)
        table.seek(0)
        rows = [LayerError(r["tensor_name"], r["op_name"], float(r["sqnr"])) for r in csv.DictReader(table)]
        return sorted(rows, key=lambda e: e.sqnr_db)

    def calibration_method(self, options: QuantOptions) -> str:
        return "tflite-converter"

    def write_qat(self, model: QatModel, out_file: Path, work: Path) -> None:
        """The QAT worker already converted the QAT model to int8 TFLite; this is that file."""
        shutil.copyfile(model.tflite_int8, out_file)


# Ops that only move or reinterpret data; one on a float tensor is not a missing int8 kernel.
_DATA_MOVEMENT = {"QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "SHAPE", "CAST"}


def _refuse_float_ops(data: bytes) -> None:
    """The converter quietly leaves an op without an int8 kernel in float, between a dequantize and a
    quantize, even when asked for full integer: an "int8" model that is not, which an int8-only
    accelerator rejects. That is an error here, naming the op."""
    from edgecv.deps import require

    litert = require("ai_edge_litert.interpreter", extra="litert", purpose="inspect TFLite models")
    interpreter = litert.Interpreter(model_content=data)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    for op in interpreter._get_ops_details():  # noqa: SLF001 - the interpreter's only op listing
        if op["op_name"] in _DATA_MOVEMENT:
            continue
        if any(i >= 0 and tensors[i]["dtype"] == np.float32 for i in op["inputs"]):
            out = tensors[op["outputs"][0]]["name"] if len(op["outputs"]) else "?"
            raise ConversionError(f"op {op['op_name']} (output {out!r}) has no int8 kernel in TFLite and would run in float "
                                  "inside the int8 model; export fp16 or dynamic, or replace the op")


def _onnx_for(source, work: Path, input_shape) -> tuple[Path, Path]:
    """The ONNX file onnx2tf converts (the source's ONNX view, or a copy with its input fixed) and its work folder."""
    if input_shape is None:
        return source.view("onnx", work), work / "onnx2tf"
    from edgecv.converters.targets.onnx import fixed_source

    return fixed_source(source, work, input_shape), work / f"onnx2tf-{'x'.join(map(str, input_shape))}"


def _saved_model(source, work: Path, input_shape) -> Path:
    """The SavedModel the TFLite converter starts from. With ``input_shape``, ONNX and TFLite sources go
    through ONNX with the input fixed (onnx2tf then writes a static SavedModel); Keras and SavedModel
    sources keep theirs, and the converter fixes the shape (:func:`_fixed`)."""
    if input_shape is None or source.kind not in ("onnx", "tflite"):
        return source.view("saved_model", work)
    from edgecv.converters.onnx_to_tflite import onnx_to_tflite

    onnx_file, folder = _onnx_for(source, work, input_shape)
    return onnx_to_tflite(onnx_file, folder, precision="fp32").parent


def _to_fix(source, input_shape):
    """The shape the converter itself must fix: none when :func:`_saved_model` already wrote it fixed."""
    return None if source.kind in ("onnx", "tflite") else input_shape


def _converter(tf, saved_model: Path, precision: str, quant, *, static_batch: bool = False, input_shape=None):
    if input_shape is not None:
        converter = _fixed(tf, saved_model, input_shape)
    elif static_batch:
        converter = _batch_one(tf, saved_model)
    else:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if precision == "fp32":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
        return converter
    if precision == "dynamic":
        return converter
    shape = _input_shape(tf, saved_model)
    converter.representative_dataset = lambda: ([x] for x in quant.samples(shape))
    if precision == "int16x8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        return converter
    if not quant.options.per_channel:
        converter._experimental_disable_per_channel = True  # the converter has no public switch
    # Full integer: an op without an int8 kernel is an error here, not a silent float fallback.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    io_dtype = getattr(tf, _IO_DTYPES[quant.options.io_type])
    converter.inference_input_type = io_dtype
    converter.inference_output_type = io_dtype
    return converter


def _batch_one(tf, saved_model: Path):
    """A converter for the serving signature with the batch dimension fixed to 1 (no -1 in any shape
    signature: static-shape delegates such as the Edge TPU's refuse dynamic tensors)."""
    return _fixed(tf, saved_model, None)


def _fixed(tf, saved_model: Path, input_shape):
    """A converter for the serving signature with its input fixed to ``input_shape`` (None: the batch to 1)."""
    loaded = tf.saved_model.load(str(saved_model))
    fn = loaded.signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    if len(specs) != 1:
        raise ConversionError(f"a static shape needs a model with one input; this one has {len(specs)}")
    name, spec = next(iter(specs.items()))
    if input_shape is None:
        shape = [1, *spec.shape[1:]]
        if any(d is None for d in shape):
            raise ConversionError(f"a static batch needs the other input dims known; input {name!r} is {list(spec.shape)}")
    else:
        shape = [int(d) for d in input_shape]
        if len(shape) != len(spec.shape) or any(w is not None and w != g for w, g in zip(spec.shape, shape)):
            raise ConversionError(f"input shape {shape} does not fit input {name!r} {list(spec.shape)}")

    @tf.function(input_signature=[tf.TensorSpec(shape, spec.dtype, name=name)])
    def serve(x):
        return fn(**{name: x})

    return tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], loaded)


def _run(converter) -> bytes:
    try:
        return converter.convert()
    except Exception as exc:  # the converter raises ConverterError and others
        raise ConversionError(f"TFLite converter failed: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    from edgecv.backends.base import first_line

    text = str(exc)
    # The converter's message for an op with no int8 kernel is long; keep the op's name.
    for line in text.splitlines():
        if "quantized" in line.lower() and ("op" in line.lower() or "kernel" in line.lower()):
            return line.strip()[:300]
    return first_line(exc)


def _calibrated(tf, converter) -> bytes:
    """The float model with calibration statistics, which the quantizer then turns into int8."""
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True  # as tf.lite.experimental.QuantizationDebugger does
    try:
        return converter.convert()
    except Exception as exc:
        raise ConversionError(f"TFLite calibration failed: {_why(exc)}") from None


CALIBRATOR_SAMPLES = 8  # the converter's own calibration only lays out the statistics (see _quantized)


def _quantized(tf, converter, precision: str, quant, shape) -> bytes:
    """Calibrated int8 TFLite: the converter lays out calibration statistics on a few samples,
    edgecv measures every tensor's range on the whole calibration set (:func:`_measured_ranges`), writes a
    detector's output ranges (:func:`_with_head_ranges`), and the converter's quantizer quantizes, leaving
    ``quant.keep_float`` in float. Integer I/O stays as asked unless an output joins boxes and scores."""
    converter.representative_dataset = lambda: ([x] for x in quant.samples(shape, limit=CALIBRATOR_SAMPLES))
    calibrated = _measured_ranges(_calibrated(tf, converter), quant.samples(shape))
    keep, heads = list(quant.keep_float), []
    if quant.output_ranges is not None:
        calibrated, heads = _with_head_ranges(calibrated, quant.output_ranges)
        keep += [n for n in heads if n not in keep]
    data = _quantize_calibrated(tf, calibrated, precision, quant, keep)
    if not keep:
        _refuse_float_ops(data)
    return data


def _quantize_calibrated(tf, calibrated: bytes, precision: str, quant, keep_float: list[str]) -> bytes:
    """The calibrated model quantized by the converter's MLIR quantizer, ``keep_float`` (output tensor names)
    left in float. Integer I/O is set afterwards, as the converter itself does (the quantizer knows no uint8):
    each input, and each output that int8 reaches, becomes ``io_type``; an output a float op makes (boxes and
    scores joined) stays float32."""
    from tensorflow.lite.python import convert as tfl_convert  # the quantizer the debugger uses
    from tensorflow.lite.python.util import modify_model_io_type

    io_type = quant.options.io_type
    int16 = precision == "int16x8"
    try:
        data = tfl_convert.mlir_quantize(
            calibrated,
            disable_per_channel=not quant.options.per_channel,
            fully_quantize=False,  # float I/O here; integer I/O below
            inference_type=tfl_convert._types_pb2.QUANTIZED_INT16 if int16 else tfl_convert._types_pb2.QUANTIZED_INT8,
            input_data_type=tf.float32,
            output_data_type=tf.float32,
            denylisted_nodes=keep_float,
        )
        if io_type != "float" and not int16:
            io_dtype = getattr(tf, _IO_DTYPES[io_type])
            data = modify_model_io_type(data, io_dtype, io_dtype)  # (its warning about float outputs: TF's logger is at ERROR)
        return data
    except Exception as exc:
        what = "with layers kept in float" if keep_float else "with the detector's output ranges"
        raise ConversionError(f"TFLite quantizer failed {what}: {_why(exc)}") from None


def _measured_ranges(calibrated: bytes, samples) -> bytes:
    """The calibrated model with each tensor's min/max measured anew on ``samples``, every intermediate
    tensor kept. The converter's calibration reads an op's inputs after the op ran, so an op that works in
    place (SUB, ADD) leaves its result in its input's statistics: an input ranging over [-3, 2.5] was recorded
    as [-998, 5], the range of the difference, and quantized with a step of 4."""
    from edgecv.deps import require

    fb = require("ai_edge_litert.tools.flatbuffer_utils", extra="litert", purpose="rewrite TFLite models")
    litert = require("ai_edge_litert.interpreter", extra="litert", purpose="run TFLite models")
    with warnings.catch_warnings():  # "intended for debugging": keeping every tensor is the point here
        warnings.simplefilter("ignore")
        interpreter = litert.Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    model = fb.convert_bytearray_to_object(bytearray(calibrated))
    sg = model.subgraphs[0]
    wanted = [i for i, t in enumerate(sg.tensors) if t.quantization is not None and t.quantization.min is not None
              and len(t.quantization.min) == 1 and not _constant(model, t)]
    ranges: dict[int, list[float]] = {}
    feed = interpreter.get_input_details()[0]["index"]
    for x in samples:
        interpreter.set_tensor(feed, np.asarray(x, np.float32))
        interpreter.invoke()
        for i in wanted:
            try:
                v = interpreter.get_tensor(i)
            except ValueError:  # a tensor the runtime does not keep (fused away)
                continue
            if v.size and v.dtype == np.float32:
                lo, hi = float(v.min()), float(v.max())
                old = ranges.get(i)
                ranges[i] = [lo, hi] if old is None else [min(old[0], lo), max(old[1], hi)]
    for i, (lo, hi) in ranges.items():
        q = sg.tensors[i].quantization
        q.min, q.max = [lo], [hi]
    return bytes(fb.convert_object_to_bytearray(model))


def _constant(model, tensor) -> bool:
    """A tensor with data in the model: a weight or a constant."""
    data = model.buffers[tensor.buffer].data if tensor.buffer else None
    return data is not None and len(data) > 0


_KINDS = {"CONCATENATION": "concat", "TRANSPOSE": "transpose", "RESHAPE": "shape", "SQUEEZE": "shape",
          "EXPAND_DIMS": "shape", "QUANTIZE": "shape", "DEQUANTIZE": "shape", "SLICE": "shape",
          "STRIDED_SLICE": "shape", "SPLIT": "shape", "ADD": "elementwise", "SUB": "elementwise",
          "MUL": "elementwise", "DIV": "elementwise", "SOFTMAX": "softmax"}


def _with_head_ranges(calibrated: bytes, ranges) -> tuple[bytes, list[str]]:
    """The calibrated model with a detector's output ranges (:mod:`edgecv.converters.output_ranges`) written
    over the calibration's min/max of the tensors that hold them, and the tensors to keep in float (a
    concatenation of boxes and scores: TFLite's int8 concatenation takes one scale for all its inputs)."""
    from edgecv.converters.output_ranges import GraphNode, plan_for_graph
    from edgecv.deps import require

    fb = require("ai_edge_litert.tools.flatbuffer_utils", extra="litert", purpose="rewrite TFLite models")
    schema = require("ai_edge_litert.schema_py_generated", extra="litert", purpose="rewrite TFLite models")
    ops = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = fb.convert_bytearray_to_object(bytearray(calibrated))
    sg = model.subgraphs[0]
    names = [t.name.decode() if isinstance(t.name, bytes) else str(t.name) for t in sg.tensors]
    shapes = {n: tuple(int(d) for d in t.shape) if t.shape is not None else () for n, t in zip(names, sg.tensors)}
    producers = {}
    for op in sg.operators:
        code = model.operatorCodes[op.opcodeIndex]
        op_name = ops.get(max(int(code.builtinCode), int(code.deprecatedBuiltinCode)), "")
        kind = _KINDS.get(op_name, "compute")
        inputs = [int(i) for i in op.inputs if int(i) >= 0]
        perm = axis = None
        if kind == "concat":
            rank = len(shapes[names[int(op.outputs[0])]]) or 1
            axis = int(op.builtinOptions.axis) % rank
        elif kind == "transpose" and len(inputs) > 1:
            buf = model.buffers[sg.tensors[inputs[1]].buffer].data
            perm = tuple(int(v) for v in np.frombuffer(bytes(buf), np.int32)) if buf is not None and len(buf) else None
        if kind == "elementwise":  # its non-constant operands
            data = tuple(names[i] for i in inputs if not _constant(model, sg.tensors[i]))
        else:
            data = tuple(names[i] for i in (inputs if kind == "concat" else inputs[1:2] if op_name == "SPLIT" else inputs[:1]))
        for o in op.outputs:
            producers[names[int(o)]] = GraphNode(names[int(op.outputs[0])], kind, data, axis=axis, perm=perm)
    out_names = [names[int(i)] for i in sg.outputs]
    plan = plan_for_graph(ranges, "TFLite", out_names, producers, shapes)
    if plan is None:
        return calibrated, []
    index = {n: i for i, n in enumerate(names)}
    for name, (lo, hi) in plan.ranges.items():
        tensor = sg.tensors[index[name]]
        if tensor.quantization is None:
            tensor.quantization = schema.QuantizationParametersT()
        tensor.quantization.min, tensor.quantization.max = [float(lo)], [float(hi)]
    keep = list(plan.keep_float)
    for name in plan.keep_float:
        # The quantizer gives a concatenation's inputs one scale even when it is denylisted, so the data
        # movement between it and the arithmetic that makes each input stays float too, and it has no statistics.
        sg.tensors[index[name]].quantization = None
        stack = list(producers[name].inputs)
        while stack:
            node = producers.get(stack.pop())
            if node is not None and node.kind in ("shape", "transpose") and node.name not in keep:
                keep.append(node.name)
                sg.tensors[index[node.name]].quantization = None
                stack.extend(node.inputs[:1])
    return bytes(fb.convert_object_to_bytearray(model)), keep


PROBE_SAMPLES = 32  # eval samples the quantization debugger runs on (held in memory: it iterates them twice)


def _sqnr_metric(float_tensors, quant_tensors, scale: float, zero_point: int) -> float:
    from edgecv.converters.metrics import sqnr_db

    ref = np.asarray(float_tensors, np.float64)
    got = (np.asarray(quant_tensors, np.float64) - zero_point) * scale
    return sqnr_db(ref, got)


_SHAPES: dict[str, list] = {}


def _input_shape(tf, saved_model: Path) -> list:
    """The serving signature's single input shape (None for unknown dims)."""
    key = str(saved_model)
    if key not in _SHAPES:
        fn = tf.saved_model.load(key).signatures["serving_default"]
        specs = fn.structured_input_signature[1]
        if len(specs) != 1:
            raise ConversionError(f"int8 calibration supports models with one image input; this one has {len(specs)}")
        _SHAPES[key] = list(next(iter(specs.values())).shape)
    return _SHAPES[key]


TARGET = TFLiteTarget(FORMATS["tflite"])
