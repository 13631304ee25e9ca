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
from typing import Any

import numpy as np

from edgecv.converters.quant import QuantJob, QuantOptions
from edgecv.converters.sources import Source, saved_model_to_onnx
from edgecv.converters.targets.base import ClipMeter, ExportTarget, LayerError, QatModel
from edgecv.deps import require
from edgecv.errors import ConversionError
from edgecv.formats import FORMATS

log = logging.getLogger(__name__)

# Dynamic quantization pays off only where weights dominate: matrix products. On convolutions ONNX
# Runtime's ConvInteger is slower than float Conv on x86.
DYNAMIC_OPS = ["MatMul", "Gemm"]
MIN_QDQ_OPSET = 13  # per-channel DequantizeLinear needs the axis attribute
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


class OnnxTarget(ExportTarget):
    """ONNX (:data:`edgecv.formats.FORMATS` ``["onnx"]``): tf2onnx for TensorFlow sources, ONNX Runtime's quantizer."""

    writes_qat = True

    def convert(self, source: Source, precision: str, out_file: Path, work: Path, quant: QuantJob | None = None, *,
                static_batch: bool = False, input_shape: tuple[int, ...] | None = None) -> None:
        """``input_shape`` fixes the (first) input's shape in the artifact; without it dynamic dims stay dynamic."""
        _convert(source, precision, out_file, work, quant)
        if input_shape is not None:
            fix_input_shape(out_file, input_shape)
        elif static_batch:
            batch_one(out_file)

    def layer_errors(self, source: Source, precision: str, artifact: Path, work: Path, quant: QuantJob, *,
                     input_shape: tuple[int, ...] | None = None) -> list[LayerError]:
        """Per-tensor SQNR between each QDQ'd activation and its float value in the same graph (isolated
        quantization error), with ONNX Runtime's QDQ debugging graphs, on eval samples. A node's clipping is
        the worst of its activation inputs and outputs: a tensor keeps its QDQ while its producer or any
        consumer is quantized. Names are node names for ``nodes_to_exclude``.

        Memory stays at one sample's activations: each sample's intermediate tensors are reduced to running
        sums (signal and noise energy, ranges) before the next runs, where ONNX Runtime's
        ``collect_activations`` would keep every tensor of every sample of both graphs (at 640x480, GBs)."""
        import onnx
        from onnxruntime.quantization.qdq_loss_debug import modify_model_output_intermediate_tensors

        prepared = _prepared(source.view("onnx", work), work)
        debug = work / "onnx-quant" / "debug"
        debug.mkdir(exist_ok=True)
        float_aug, qdq_aug = debug / "float.onnx", debug / "qdq.onnx"
        _quietly(modify_model_output_intermediate_tensors, prepared, float_aug)
        _quietly(modify_model_output_intermediate_tensors, artifact, qdq_aug)
        errors = qdq_errors(qdq_aug, _Reader(prepared, quant, limit=PROBE_SAMPLES, probe=True))
        graph = onnx.load(str(prepared), load_external_data=False).graph
        weights = {i.name for i in graph.initializer}
        meter = ClipMeter()
        if quant.probe is not None:
            _calib_ranges(float_aug, _Reader(prepared, quant), meter)
            _each_tensor(float_aug, _Reader(prepared, quant, limit=PROBE_SAMPLES, probe=True), meter.probe, debug_session=True)
        heads = _heads(graph)
        rows = []
        for node in graph.node:
            if node.op_type in SHAPE_ONLY:  # excluding a reshape changes no arithmetic
                continue
            outputs = [t for t in node.output if t in errors and np.isfinite(errors[t])]
            measured = [t for t in (*node.input, *node.output) if t and t not in weights and t in meter]
            if not outputs and not measured:
                continue
            rows.append(LayerError(
                node.name,
                node.op_type,
                min((errors[t] for t in outputs), default=100.0),
                max((meter.ratio(t) for t in measured), default=None),
                min((meter.db(t) for t in measured), default=None),
                node.name in heads,
            ))
        return sorted(rows, key=lambda e: e.sqnr_db)

    def calibration_method(self, options: QuantOptions) -> str:
        return options.calibration

    def quantization_settings(self, options: QuantOptions) -> dict[str, Any]:
        return {"activation_type": options.onnx_activation_type, "weight_type": options.onnx_weight_type}

    def write_qat(self, model: QatModel, out_file: Path, work: Path) -> None:
        """tf2onnx (command line: it has no SavedModel API) turns each activation FakeQuantWithMinMaxVars
        into a QuantizeLinear/DequantizeLinear pair; the weights it folds into float constants are then
        stored quantized (:func:`quantize_qat_weights`)."""
        import onnx

        saved_model_to_onnx(model.saved_model, out_file, failure="tf2onnx could not convert the QAT model",
                            env={"TF_USE_LEGACY_KERAS": None})
        proto = onnx.load(str(out_file))
        if not {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in proto.graph.node}:
            raise ConversionError("tf2onnx wrote the QAT model without QuantizeLinear/DequantizeLinear nodes")
        quantize_qat_weights(proto, model.onnx_weight_type)
        onnx.save(proto, str(out_file))


def fix_input_shape(path: Path, shape: tuple[int, ...], dst: Path | None = None) -> Path:
    """Fix the first graph input of ``path`` to ``shape`` (written to ``dst``, default in place), then infer
    the shapes inside and of the outputs (dims that inference cannot fix stay dynamic)."""
    onnx = require("onnx", extra="convert", purpose="fix the input shape of an ONNX model")
    from edgecv.converters.onnx_graph import load_without_initializer_inputs

    model = load_without_initializer_inputs(path)
    value = model.graph.input[0]
    dims = value.type.tensor_type.shape.dim
    if len(dims) != len(shape):
        raise ConversionError(f"input shape {list(shape)} has {len(shape)} dims; input {value.name!r} has {len(dims)}")
    for d, n in zip(dims, shape):
        if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != n:
            raise ConversionError(f"input shape {list(shape)} does not fit input {value.name!r}: a dim fixed to {d.dim_value} is given as {n}")
        d.Clear()
        d.dim_value = int(n)
    for out in model.graph.output:
        for d in out.type.tensor_type.shape.dim:
            if not (d.HasField("dim_value") and d.dim_value > 0):
                d.Clear()  # unknown: inferred below from the fixed input
    del model.graph.value_info[:]  # stale dynamic shapes; inferred again below
    target = dst or path
    onnx.save(onnx.shape_inference.infer_shapes(model), str(target))
    return target


def batch_one(path: Path) -> None:
    """Fix the batch (first) dim of every graph input and output of ``path`` to 1, in place, then infer the
    shapes inside (the other dims stay as they are)."""
    onnx = require("onnx", extra="convert", purpose="fix the batch dimension of an ONNX model")
    from edgecv.converters.onnx_graph import load_without_initializer_inputs

    model = load_without_initializer_inputs(path)
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not (dims[0].HasField("dim_value") and dims[0].dim_value > 0):
            dims[0].Clear()
            dims[0].dim_value = 1
    del model.graph.value_info[:]  # stale dynamic shapes; inferred again below
    onnx.save(onnx.shape_inference.infer_shapes(model), str(path))


def fixed_source(source, work: Path, shape: tuple[int, ...]) -> Path:
    """The source as ONNX with its input fixed to ``shape`` (cached per work folder and shape)."""
    target = work / f"onnx-fixed-{'x'.join(map(str, shape))}" / "source.onnx"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        fix_input_shape(source.view("onnx", work), shape, target)
    return target


INT4_BLOCK = 32  # weights per scale in MatMulNBits (the same group as OpenVINO's int4)


def _int4(onnx, fp32: Path, out_file: Path) -> None:
    """Every MatMul with a constant weight as ONNX Runtime's MatMulNBits: 4-bit symmetric weights, a scale per
    block of :data:`INT4_BLOCK` along the input dimension, float activations. Convolutions stay float (ONNX
    Runtime has no 4-bit Conv). No MatMul to convert is an error: the file would be the float model."""
    require("onnx_ir", extra="convert", purpose="write int4 ONNX (MatMulNBits)", package="onnx-ir")
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from edgecv.converters.onnx_graph import load_without_initializer_inputs

    quantizer = MatMulNBitsQuantizer(load_without_initializer_inputs(fp32), bits=4, block_size=INT4_BLOCK,
                                     is_symmetric=True, op_types_to_quantize=("MatMul",))
    _quietly(quantizer.process)
    model = quantizer.model.model if hasattr(quantizer.model, "model") else quantizer.model
    if not any(n.op_type == "MatMulNBits" for n in model.graph.node):
        raise ConversionError("int4: no MatMul with constant weights in this model (ONNX Runtime's 4-bit format "
                              "is MatMulNBits only); use dynamic or int8")
    onnx.save(model, str(out_file))


def _convert(source, precision: str, out_file: Path, work: Path, quant=None) -> None:
    fp32 = source.view("onnx", work)
    if precision == "fp32":
        shutil.copyfile(fp32, out_file)
        return
    onnx = require("onnx", extra="convert", purpose="write quantized ONNX")
    from edgecv.converters.onnx_graph import load_without_initializer_inputs

    if precision == "fp16":
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

        # Quantize/DequantizeLinear (a dynamic-range TFLite's int8 weights) take a float16 scale only from
        # opset 19; they stay float32 and the float16 graph around them gets Casts.
        blocked = [*DEFAULT_OP_BLOCK_LIST, *QDQ_OPS]
        model = convert_float_to_float16(load_without_initializer_inputs(fp32), keep_io_types=True, op_block_list=blocked)
        onnx.save(model, str(out_file))
        return
    if precision == "int4":
        _int4(onnx, fp32, out_file)
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
    extra: dict[str, Any] = {"CalibPercentile": o.percentile, "CalibMovingAverage": o.onnx_moving_average}
    exclude = list(quant.keep_float)
    heads = head_plan(prepared, quant.output_ranges)
    if heads is not None:
        extra["TensorQuantOverrides"] = {t: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for t, (lo, hi) in heads.ranges.items()}
        exclude += [n for n in heads.keep_float if n not in exclude]
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
        nodes_to_exclude=exclude,
        extra_options=extra,
    )


HEAD_KINDS = {"Concat": "concat", "Transpose": "transpose", "Slice": "shape", "Split": "shape",
              "Add": "elementwise", "Sub": "elementwise", "Mul": "elementwise", "Div": "elementwise",
              "Softmax": "softmax"}


def head_plan(model_path: Path, ranges):
    """Where a detector's output ranges (:mod:`edgecv.converters.output_ranges`) go in the ONNX graph at
    ``model_path``: tensor overrides for ONNX Runtime's quantizer and nodes to keep in float; None without ranges."""
    if ranges is None:
        return None
    import onnx

    from edgecv.converters.output_ranges import GraphNode, plan_for_graph

    graph = onnx.load(str(model_path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    shapes = {}
    for v in (*graph.value_info, *graph.output, *graph.input):
        dims = v.type.tensor_type.shape.dim
        shapes[v.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    producers = {}
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        data = tuple(t for t in node.input if t and t not in weights)
        kind = HEAD_KINDS.get(node.op_type, "shape" if node.op_type in SHAPE_ONLY else "compute")
        if kind == "concat":
            rank = len(shapes.get(node.output[0], ())) or 1
            axis = int(attrs.get("axis", 0)) % rank
        else:
            axis = None
        perm = tuple(int(p) for p in attrs["perm"]) if kind == "transpose" and "perm" in attrs else None
        for out in node.output:
            producers[out] = GraphNode(node.name, kind, data, axis=axis, perm=perm)
    return plan_for_graph(ranges, "ONNX", [o.name for o in graph.output], producers, shapes)


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

    from edgecv.converters.onnx_graph import load_without_initializer_inputs

    model = load_without_initializer_inputs(fp32)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), MIN_QDQ_OPSET)
    if opset < MIN_QDQ_OPSET:
        model = version_converter.convert_version(model, MIN_QDQ_OPSET)
    staged, processed = target.with_name("staged.onnx"), target.with_name("processed.onnx")
    onnx.save(model, str(staged))
    try:
        _pre_process(staged, processed, target.parent / "pre-process")
    except ConversionError as exc:
        # Pre-processing only helps (fusions, shapes); quantizing without it still works.
        log.info("ONNX quantization pre-processing skipped: %s", exc)
        processed = staged
    model = onnx.load(str(processed))
    _name_nodes(model)
    _flatten_gemm_bias(model)
    onnx.save(model, str(target))
    return target


# ONNX Runtime's quantization pre-processing runs in a child process whose working directory is a scratch
# folder of the export: its symbolic shape inference, when incomplete (dynamic dims, as in DB text
# detectors), saves "sym_shape_infer_temp.onnx" and a "<uuid>.data" file of every weight into the current
# directory before raising. The rest of the pre-processing (fusions, ONNX shape inference) then runs without it.
def pre_process_in_child(request: dict[str, str]) -> str | None:
    """The child's work: ``quant_pre_process(request["src"], request["dst"])``, retried without symbolic shape
    inference when that fails; returns a note saying so, or None."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(request["src"], request["dst"])
        return None
    except Exception as exc:  # noqa: BLE001 - the retry below raises its own error
        line = (str(exc).strip().splitlines() or [""])[0][:300]
        note = f"pre-processing without symbolic shape inference ({type(exc).__name__}: {line})"
    quant_pre_process(request["src"], request["dst"], skip_symbolic_shape=True)
    return note


def _pre_process(src: Path, dst: Path, scratch: Path) -> None:
    """``quant_pre_process(src, dst)`` with nothing written outside ``scratch`` (see :func:`pre_process_in_child`)."""
    from edgecv.child import call

    scratch.mkdir(parents=True, exist_ok=True)
    try:
        note = call("edgecv.converters.targets.onnx:pre_process_in_child", {"src": str(src.resolve()), "dst": str(dst.resolve())},
                    failure="ONNX Runtime quantization pre-processing failed", error=ConversionError, cwd=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # the symbolic step's leftovers: a copy of every weight
    if note:
        log.info("ONNX quantization %s", note)
    if not dst.is_file():
        raise ConversionError("ONNX Runtime quantization pre-processing failed: it wrote no file")


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


def _qdq_pairs(names: list[str]) -> dict[str, tuple[str, str]]:
    """Activation -> (its tensor before QuantizeLinear, after DequantizeLinear), among the exposed tensor
    ``names`` of a QDQ graph: ONNX Runtime's ``create_activation_matching``, on names instead of values."""
    from onnxruntime.quantization.quant_utils import DEQUANT_OUTPUT_SUFFIX, QUANT_INPUT_SUFFIX

    have = set(names)
    post1 = DEQUANT_OUTPUT_SUFFIX + "_1"
    pairs: dict[str, tuple[str, str]] = {}
    for name in names:
        if name.endswith(QUANT_INPUT_SUFFIX):
            act = name[: -len(QUANT_INPUT_SUFFIX)]
            pre, post = name, act
        elif name.endswith(DEQUANT_OUTPUT_SUFFIX):
            act = name[: -len(DEQUANT_OUTPUT_SUFFIX)]
            pre, post = act, name
        elif name.endswith(post1):
            act = name[: -len(post1)]
            pre, post = act, name
        else:
            continue
        if pre in have and post in have:
            pairs[act] = (pre, post)
    return pairs


def qdq_errors(qdq_aug: Path, reader) -> dict[str, float]:
    """Activation -> SQNR (dB) of its value after QDQ against before, over every sample of ``reader``
    (``20 log10(|pre| / |pre - post|)`` over all samples, as ONNX Runtime's debugger computes it)."""
    session = _debug_session(qdq_aug)
    names = _saved_names(session)
    pairs = _qdq_pairs(list(names.values()))
    wanted = {n for pair in pairs.values() for n in pair}
    outputs = [o for o, t in names.items() if t in wanted]
    sums = {act: [0.0, 0.0] for act in pairs}
    for feed in reader:
        values = {names[o]: np.asarray(v) for o, v in zip(outputs, session.run(outputs, feed))}
        for act, (pre, post) in pairs.items():
            a = values[pre].astype(np.float64)
            sums[act][0] += float(np.sum(a * a))
            sums[act][1] += float(np.sum((a - values[post]) ** 2))
        del values
    eps = float(np.finfo(float).eps)  # as ONNX Runtime clamps both norms
    return {act: float(20 * np.log10(max(np.sqrt(sig), eps) / max(np.sqrt(noise), eps))) for act, (sig, noise) in sums.items()}


def _debug_session(model_path: Path):
    """A session on a debugging graph, without graph optimizations (as ONNX Runtime's debugger runs it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def _saved_names(session) -> dict[str, str]:
    """Output name -> the tensor it exposes, for the outputs the debugging graph added."""
    from onnxruntime.quantization.qdq_loss_debug import _TENSOR_SAVE_POSTFIX as saved  # the debug tools' naming

    return {o.name: o.name[: -len(saved)] for o in session.get_outputs() if o.name.endswith(saved)}


def _each_tensor(model_path: Path, reader, fn, *, debug_session: bool = False) -> None:
    """``fn(tensor, value)`` for every exposed float tensor of ``model_path`` on each sample of ``reader``,
    one sample at a time."""
    import onnxruntime as ort

    if debug_session:
        session = _debug_session(model_path)
    else:
        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = _saved_names(session)
    outputs = list(names)
    for feed in reader:
        for name, value in zip(outputs, session.run(outputs, feed)):
            value = np.asarray(value)
            if value.size and np.issubdtype(value.dtype, np.floating):
                fn(names[name], value)


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
    _each_tensor(model_path, reader, meter.calib)


def float_clip_meter(model_path: Path, work: Path, quant: QuantJob, *, probe_limit: int | None = PROBE_SAMPLES) -> ClipMeter:
    """A :class:`ClipMeter` over every intermediate float tensor of the float ONNX graph at ``model_path``:
    ranges on all of ``quant``'s calibration samples, then the first ``probe_limit`` probe (eval) samples
    against them. The graph with its tensors exposed is cached in ``work``.

    Example:
        >>> meter = float_clip_meter(source.view("onnx", work), work, QuantJob(calib, probe=eval_set))  # doctest: +SKIP
    """
    from onnxruntime.quantization.qdq_loss_debug import modify_model_output_intermediate_tensors

    exposed = work / "onnx-clip" / f"{model_path.stem}.exposed.onnx"
    if not exposed.is_file():
        exposed.parent.mkdir(parents=True, exist_ok=True)
        _quietly(modify_model_output_intermediate_tensors, model_path, exposed)
    meter = ClipMeter()
    _calib_ranges(exposed, _Reader(model_path, quant), meter)
    _each_tensor(exposed, _Reader(model_path, quant, limit=probe_limit, probe=True), meter.probe)
    return meter


def quantize_qat_weights(model, weight_type: str) -> int:
    """Store each float Conv/MatMul/Gemm weight as 8-bit integers behind a DequantizeLinear, as tfmot
    quantized them: symmetric, narrow range (+-127), per output channel for convolutions and per tensor
    for dense layers, so weights already on tfmot's grid come back exactly (a batch norm folded into a
    convolution is rounded anew, as the TFLite converter does). Returns how many weights it stored.

    tf2onnx folds the weights' fake-quant ops into float constants. Left float, ONNX Runtime (1.31)
    quantizes them itself, per tensor, and its x86 u8 x s8 kernels on CPUs without VNNI saturate 16-bit
    sums of full-range int8 weights: on the test model a quarter of the first conv's outputs moved by up
    to 2.0 and 6% of top-1 decisions changed. ``uint8`` stores the same values plus 128 with zero point
    128, which ONNX Runtime runs through u8 x u8 kernels without saturation (all decisions kept).
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    inserts = []
    for index, node in enumerate(graph.node):
        weight = node.input[1] if node.op_type in ("Conv", "MatMul", "Gemm") and len(node.input) > 1 else ""
        w = numpy_helper.to_array(inits[weight]) if weight in inits else None
        if w is None or w.dtype != np.float32 or w.ndim < 2:
            continue
        # Per output channel for a convolution (OIHW); one scale for a dense layer's kernel, as tfmot.
        axis, reduce = (0, tuple(range(1, w.ndim))) if node.op_type == "Conv" else (None, None)
        scale = (np.maximum(np.max(np.abs(w), axis=reduce), 1e-12) / 127.0).astype(np.float32)
        shaped = scale.reshape([-1] + [1] * (w.ndim - 1)) if axis is not None else scale
        q = np.clip(np.round(w / shaped), -127, 127)
        if weight_type == "uint8":
            q, zero = (q + 128).astype(np.uint8), np.full(scale.shape, 128, np.uint8)
        else:
            q, zero = q.astype(np.int8), np.zeros(scale.shape, np.int8)
        base = f"{weight}_q{len(inserts)}"
        graph.initializer.extend([numpy_helper.from_array(q, base), numpy_helper.from_array(scale, f"{base}_scale"),
                                  numpy_helper.from_array(zero, f"{base}_zero_point")])
        attrs = {"axis": axis} if axis is not None else {}
        inserts.append((index, helper.make_node("DequantizeLinear", [base, f"{base}_scale", f"{base}_zero_point"],
                                                [f"{base}_dq"], name=f"{base}_DequantizeLinear", **attrs)))
        node.input[1] = f"{base}_dq"
        uses[weight] -= 1
        if uses[weight] == 0:
            graph.initializer.remove(inits[weight])
    for index, dq in reversed(inserts):  # each DequantizeLinear just before its consumer: still topological
        graph.node.insert(index, dq)
    return len(inserts)


TARGET = OnnxTarget(FORMATS["onnx"])
