"""Write ONNX artifacts: tf2onnx for Keras, SavedModel and TFLite sources; fp16 by converting the fp32 graph
with float inputs and outputs kept; ``dynamic`` and ``int8`` with ONNX Runtime's quantizer.

int8 is static QDQ: the graph is pre-processed (shape inference, fusions) once, weights are quantized per
channel, activations are calibrated with MinMax, Entropy or Percentile. Layers kept in float (the
accuracy fallback) are excluded by node name.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from pathlib import Path

import numpy as np

from edgecv.deps import require
from edgecv.errors import ConversionError

log = logging.getLogger(__name__)

# Dynamic quantization pays off only where weights dominate: matrix products. On convolutions ONNX
# Runtime's ConvInteger is slower than float Conv on x86.
DYNAMIC_OPS = ["MatMul", "Gemm"]
MIN_QDQ_OPSET = 13  # per-channel DequantizeLinear needs the axis attribute


def convert(source, precision: str, out_file: Path, work: Path, quant=None, *, static_batch: bool = False) -> None:
    _convert(source, precision, out_file, work, quant)
    if static_batch:
        _batch_one(out_file)


def _batch_one(path: Path) -> None:
    """Fix the batch (first) dimension of every graph input and output to 1, then infer the shapes inside."""
    onnx = require("onnx", extra="convert", purpose="fix the batch dimension of an ONNX model")
    model = onnx.load(str(path))
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and (dims[0].HasField("dim_param") or dims[0].dim_value <= 0):
            dims[0].Clear()
            dims[0].dim_value = 1
    del model.graph.value_info[:]  # stale dynamic shapes; inferred again below
    onnx.save(onnx.shape_inference.infer_shapes(model), str(path))


def _convert(source, precision: str, out_file: Path, work: Path, quant=None) -> None:
    fp32 = source.view("onnx", work)
    if precision == "fp32":
        shutil.copyfile(fp32, out_file)
        return
    onnx = require("onnx", extra="convert", purpose="write quantized ONNX")
    from converters.onnx_graph import load_without_initializer_inputs

    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(load_without_initializer_inputs(fp32), keep_io_types=True)
        onnx.save(model, str(out_file))
        return
    from onnxruntime.quantization import QuantType, quantize_dynamic, quantize_static

    prepared = _prepared(fp32, work)
    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    if precision == "dynamic":
        weight = types[quant.options.onnx_weight_type] if quant else QuantType.QInt8
        per_channel = quant.options.per_channel if quant else True
        _quietly(quantize_dynamic, prepared, out_file, op_types_to_quantize=DYNAMIC_OPS, per_channel=per_channel, weight_type=weight)
        return
    if precision != "int8":
        raise ConversionError(f"ONNX has no {precision} export")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat

    o = quant.options
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
    _quietly(
        quantize_static,
        prepared,
        out_file,
        _Reader(prepared, quant),
        quant_format=QuantFormat.QDQ,
        per_channel=o.per_channel,
        activation_type=types[o.onnx_activation_type],
        weight_type=types[o.onnx_weight_type],
        calibrate_method=methods[o.calibration],
        reduce_range=o.onnx_reduce_range,
        nodes_to_exclude=list(quant.keep_float),
        extra_options={"CalibPercentile": o.percentile},
    )


def _quietly(fn, *args, **kwargs) -> None:
    """Run an ONNX Runtime quantizer; it prints progress to stdout, which belongs in the log here."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            fn(*(str(a) if isinstance(a, Path) else a for a in args), **kwargs)
    except ConversionError:
        raise
    except Exception as exc:
        from edgecv.backends.base import first_line

        raise ConversionError(f"ONNX Runtime quantizer failed: {type(exc).__name__}: {first_line(exc)}") from None
    finally:
        if buffer.getvalue().strip():
            log.debug("onnxruntime quantizer: %s", buffer.getvalue().strip())


def _prepared(fp32: Path, work: Path) -> Path:
    """The float graph ready for quantization (cached per work folder): weights not listed as inputs,
    opset >= 13, ONNX Runtime's quantization pre-processing, then every node named."""
    target = work / "onnx-quant" / "prepared.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from converters.onnx_graph import load_without_initializer_inputs

    model = load_without_initializer_inputs(fp32)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), MIN_QDQ_OPSET)
    if opset < MIN_QDQ_OPSET:
        model = version_converter.convert_version(model, MIN_QDQ_OPSET)
    staged, processed = target.with_name("staged.onnx"), target.with_name("processed.onnx")
    onnx.save(model, str(staged))
    try:
        _quietly(quant_pre_process, staged, processed)
    except ConversionError as exc:
        # Pre-processing only helps (fusions, shapes); quantizing without it still works.
        log.info("ONNX quantization pre-processing skipped: %s", exc)
        processed = staged
    model = onnx.load(str(processed))
    _name_nodes(model)
    _flatten_gemm_bias(model)
    onnx.save(model, str(target))
    return target


def _name_nodes(model) -> None:
    """Give every node a unique name: excluding a layer from quantization goes by node name."""
    used = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = _unique(f"{node.op_type}_{i}", used)


def _flatten_gemm_bias(model) -> None:
    """A Gemm bias of shape [1, N] trips ONNX Runtime 1.31's per-channel bias check; [N] means the same."""
    from onnx import numpy_helper

    weights = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2] in weights:
            bias = numpy_helper.to_array(weights[node.input[2]])
            if bias.ndim == 2 and bias.shape[0] == 1:
                weights[node.input[2]].CopyFrom(numpy_helper.from_array(bias.reshape(-1), node.input[2]))


def _unique(name: str, used: set[str]) -> str:
    while name in used:
        name += "_"
    used.add(name)
    return name


class _Reader:
    """ONNX Runtime calibration reader over edgecv's calibration samples."""

    def __init__(self, model_path: Path, quant, *, limit: int | None = None, probe: bool = False) -> None:
        import onnx

        graph = onnx.load(str(model_path), load_external_data=False).graph
        weights = {i.name for i in graph.initializer}
        inputs = [i for i in graph.input if i.name not in weights]
        if len(inputs) != 1:
            raise ConversionError(f"int8 calibration supports models with one image input; this one has {len(inputs)}")
        self._name = inputs[0].name
        shape = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
        self._samples = (quant.probe_samples if probe else quant.samples)(shape, limit=limit)

    def get_next(self):
        x = next(self._samples, None)
        return None if x is None else {self._name: x}

    def rewind(self) -> None:  # part of ONNX Runtime's reader interface; not needed for one pass
        pass

    def __iter__(self):  # the QDQ debugging tools iterate the reader
        return iter(self.get_next, None)


def layer_errors(source, precision: str, artifact: Path, work: Path, quant) -> list:
    """Per-tensor SQNR between each QDQ'd activation and its float value in the same graph (isolated
    quantization error), with ONNX Runtime's QDQ debugging tools, on eval samples. A node's clipping is
    the worst of its activation inputs and outputs: a tensor keeps its QDQ while its producer or any
    consumer is quantized. Names are node names for ``nodes_to_exclude``."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    from converters.targets import ClipMeter, LayerError

    prepared = _prepared(source.view("onnx", work), work)
    debug = work / "onnx-quant" / "debug"
    debug.mkdir(exist_ok=True)
    float_aug, qdq_aug = debug / "float.onnx", debug / "qdq.onnx"
    _quietly(modify_model_output_intermediate_tensors, prepared, float_aug)
    _quietly(modify_model_output_intermediate_tensors, artifact, qdq_aug)
    with contextlib.redirect_stdout(io.StringIO()):
        float_acts = collect_activations(str(float_aug), _Reader(prepared, quant, limit=PROBE_SAMPLES, probe=True))
        qdq_acts = collect_activations(str(qdq_aug), _Reader(prepared, quant, limit=PROBE_SAMPLES, probe=True))
        errors = compute_activation_error(create_activation_matching(qdq_acts, float_acts))
    graph = onnx.load(str(prepared)).graph
    weights = {i.name for i in graph.initializer}
    meter = ClipMeter()
    if quant.probe is not None:
        _calib_ranges(float_aug, _Reader(prepared, quant), meter)
        for tensor, arrays in float_acts.items():
            for a in arrays:
                meter.probe(tensor, a)
    heads = _heads(graph)
    rows = []
    for node in graph.node:
        if node.op_type in SHAPE_ONLY:  # excluding a reshape changes no arithmetic
            continue
        outputs = [t for t in node.output if t in errors and "qdq_err" in errors[t] and np.isfinite(errors[t]["qdq_err"])]
        measured = [t for t in (*node.input, *node.output) if t and t not in weights and t in meter]
        if not outputs and not measured:
            continue
        rows.append(LayerError(
            node.name,
            node.op_type,
            min((float(errors[t]["qdq_err"]) for t in outputs), default=100.0),
            max((meter.ratio(t) for t in measured), default=None),
            min((meter.db(t) for t in measured), default=None),
            node.name in heads,
        ))
    return sorted(rows, key=lambda e: e.sqnr_db)


PROBE_SAMPLES = 16  # eval samples the per-layer comparison runs on
SHAPE_ONLY = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity"}


def _heads(graph) -> set[str]:
    """Nodes that make a model output: walking back from each output through shape-only ops and
    concatenations, to the first node that computes."""
    producers = {out: node for node in graph.node for out in node.output}
    heads: set[str] = set()
    stack = [o.name for o in graph.output]
    while stack:
        node = producers.get(stack.pop())
        if node is None or node.name in heads:
            continue
        heads.add(node.name)
        if node.op_type in SHAPE_ONLY or node.op_type == "Concat":
            stack.extend(t for t in node.input if t)
    return heads


def _calib_ranges(model_path: Path, reader, meter) -> None:
    """Feed ``meter`` every intermediate tensor of ``model_path`` (a graph with them exposed) on the
    calibration samples, one sample at a time so memory stays flat."""
    import onnxruntime as ort
    from onnxruntime.quantization.qdq_loss_debug import _TENSOR_SAVE_POSTFIX as saved  # the debug tools' naming

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    tensor = {n: n[: -len(saved)] if n.endswith(saved) else n for n in names}
    for feed in reader:
        for name, value in zip(names, session.run(names, feed)):
            value = np.asarray(value)
            if value.size and np.issubdtype(value.dtype, np.floating):
                meter.calib(tensor[name], value)
