"""Write OpenVINO IR (.xml + .bin) with ``openvino.convert_model`` from ONNX, TFLite or a SavedModel.

- ``fp16``: weights compressed to float16;
- ``dynamic``: int8 weights with float activations (NNCF weight compression);
- ``int8``: NNCF post-training quantization with bias correction; layers kept in float (the accuracy
  fallback, and a detector's box decoding: :func:`head_plan`) go in NNCF's ignored scope.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgecv.converters.quant import QuantJob, QuantOptions, fit_layout
from edgecv.converters.sources import ConversionPath, Source
from edgecv.converters.targets.base import ClipMeter, ExportTarget, LayerError, QatModel
from edgecv.deps import require
from edgecv.errors import ConversionError
from edgecv.formats import FORMATS

log = logging.getLogger(__name__)

# Op types NNCF quantizes (their inputs get FakeQuantize), which its ignored scope can keep in float.
# OpenVINO reads a TFLite source itself and converts no custom TFLite op.
OPENVINO_READS = ConversionPath("OpenVINO", "OpenVINO IR")

_QUANTIZABLE = {"Convolution", "GroupConvolution", "MatMul", "Add", "Multiply", "Concat", "ConvolutionBackpropData",
                "AvgPool", "MaxPool", "Subtract", "Interpolate", "ReduceMean"}


class OpenVINOTarget(ExportTarget):
    """OpenVINO IR (:data:`edgecv.formats.FORMATS` ``["openvino"]``), written by ``openvino.convert_model`` and NNCF."""

    writes_qat = True

    def convert(self, source: Source, precision: str, out_file: Path, work: Path, quant: QuantJob | None = None, *,
                static_batch: bool = False, input_shape: tuple[int, ...] | None = None) -> None:
        """``input_shape`` fixes the (first) input's shape in the IR; without it dynamic dims stay dynamic."""
        ov = require("openvino", extra="convert", purpose="write OpenVINO IR")
        model = float_model(ov, source, work)
        if input_shape is not None:
            try:
                model.reshape({model.inputs[0]: ov.PartialShape([int(d) for d in input_shape])})
            except Exception as exc:
                from edgecv.backends.base import first_line

                raise ConversionError(f"OpenVINO could not fix the input to {list(input_shape)}: {first_line(exc)}") from None
        elif static_batch:
            model.reshape({port: _batch_one(port.get_partial_shape()) for port in model.inputs})
        if precision in ("dynamic", "int8", "int4"):
            model = _quantized(model, precision, quant)
        # save_model compresses weights to fp16 unless told not to.
        ov.save_model(model, str(out_file), compress_to_fp16=(precision == "fp16"))

    def layer_errors(self, source: Source, precision: str, artifact: Path, work: Path, quant: QuantJob, *,
                     input_shape: tuple[int, ...] | None = None) -> list[LayerError]:
        """Per-layer error of the int8 IR against float, by running both with every quantized layer's output
        exposed. The error is accumulated along the graph, so each layer is ranked by how much SQNR it loses
        relative to the layers feeding it. Each layer's clip ratio is that of its activation inputs, where
        NNCF puts its quantizers. Names are the op names NNCF's ignored scope takes. Each sample's outputs
        are reduced to running sums before the next runs, so memory stays at one sample's activations."""
        ov = require("openvino", extra="convert", purpose="inspect OpenVINO models")
        core = ov.Core()
        quantized = core.read_model(str(artifact))
        floating = float_model(ov, source, work)
        by_name = {op.get_friendly_name(): op for op in floating.get_ordered_ops()}
        candidates = [op for op in quantized.get_ordered_ops() if op.get_type_name() in _QUANTIZABLE and op.get_friendly_name() in by_name]
        if not candidates:
            return []
        names = [op.get_friendly_name() for op in candidates]
        # The activation inputs of each candidate (not weights), in the float model: NNCF quantizes these.
        feeds = {n: [v for v in by_name[n].input_values() if not _is_constant(v.get_node())] for n in names}
        feed_keys = list(dict.fromkeys(_key(v) for n in names for v in feeds[n]))
        feed_outputs = {_key(v): v for n in names for v in feeds[n]}
        q_at = _expose(quantized, [(n, 0) for n in names])
        f_at = _expose(floating, [(n, 0) for n in names])
        feed_at = _expose(floating, feed_keys, [feed_outputs[k] for k in feed_keys])
        config = {"INFERENCE_PRECISION_HINT": "f32"}
        q_compiled, f_compiled = core.compile_model(quantized, "CPU", config), core.compile_model(floating, "CPU", config)
        shape = [d.get_length() if d.is_static else None for d in floating.inputs[0].get_partial_shape()]
        meter = ClipMeter()
        if quant.probe is not None:  # the calibrated ranges first; then how the eval set leaves them
            for x in quant.samples(shape):
                f_res = f_compiled(x)
                for k, i in zip(feed_keys, feed_at):
                    meter.calib(k, f_res[i])
        energy = {n: [0.0, 0.0] for n in names}  # sum ref^2, sum (ref - got)^2: metrics.sqnr_db over all samples
        for x in quant.probe_samples(shape, limit=PROBE_SAMPLES):
            q_res, f_res = q_compiled(x), f_compiled(x)
            for n, qi, fi in zip(names, q_at, f_at):
                ref = np.asarray(f_res[fi], np.float64)
                energy[n][0] += float(np.sum(ref**2))
                energy[n][1] += float(np.sum((ref - np.asarray(q_res[qi], np.float64)) ** 2))
            for k, i in zip(feed_keys, feed_at):
                meter.probe(k, f_res[i])
            del q_res, f_res
        sqnr = {n: 100.0 if noise == 0 else float(10.0 * np.log10(max(sig, 1e-30) / noise)) for n, (sig, noise) in energy.items()}
        rows = []
        for op in candidates:
            n = op.get_friendly_name()
            upstream = _upstream_sqnr(op, sqnr)
            loss = (upstream if upstream is not None else 100.0) - sqnr[n]
            measured = [_key(v) for v in feeds[n] if _key(v) in meter]
            ratio = max((meter.ratio(k) for k in measured), default=None)
            clip_db = min((meter.db(k) for k in measured), default=None)
            # Stored as the SQNR this layer alone would leave: lower is worse, like the other formats.
            rows.append(LayerError(n, op.get_type_name(), 100.0 - max(loss, 0.0), ratio, clip_db))
        return sorted(rows, key=lambda e: e.sqnr_db)

    def calibration_method(self, options: QuantOptions) -> str:
        return "nncf"

    def quantization_settings(self, options: QuantOptions) -> dict[str, Any]:
        return {"bias_correction": "full" if options.bias_correction else "fast"}

    def write_qat(self, model: QatModel, out_file: Path, work: Path) -> None:
        """OpenVINO reads the SavedModel (not a Keras object: pitfall 10) and keeps each fake-quant op as a
        FakeQuantize, which its CPU plugin runs in int8."""
        from edgecv.backends.base import first_line

        ov = require("openvino", extra="convert", purpose="write OpenVINO IR")
        try:
            converted = ov.convert_model(str(model.saved_model))
        except Exception as exc:
            raise ConversionError(f"OpenVINO could not convert the QAT model: {first_line(exc)}") from None
        if not any(op.get_type_name() == "FakeQuantize" for op in converted.get_ordered_ops()):
            raise ConversionError("OpenVINO converted the QAT model without FakeQuantize ops")
        ov.save_model(converted, str(out_file), compress_to_fp16=False)


def _batch_one(shape):
    """``shape`` with its first (batch) dimension set to 1; the others must be known."""
    dims = [1] + [d.get_length() if d.is_static else -1 for d in list(shape)[1:]]
    if -1 in dims[1:]:
        raise ConversionError(f"a static batch needs the other input dims known; the input is {shape}")
    return dims


def float_model(ov, source, work: Path):
    """The float model, converted once per work folder and read back from IR: convert_model names
    unnamed ops from a process-wide counter, so a second conversion would name layers differently from
    the ones the fallback ranked."""
    cached = work / "openvino-float" / "model.xml"
    if not cached.is_file():
        # OpenVINO reads ONNX and TFLite directly; Keras goes through its SavedModel (passing the Keras
        # object itself breaks once tfmot is imported).
        source.check_convertible(OPENVINO_READS)
        origin = source.path if source.kind in ("onnx", "tflite") else source.view("saved_model", work)
        try:
            model = ov.convert_model(str(origin))
        except Exception as exc:
            from edgecv.backends.base import first_line

            raise ConversionError(f"OpenVINO could not convert {origin.name}: {first_line(exc)}") from None
        cached.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(model, str(cached), compress_to_fp16=False)
    return ov.Core().read_model(str(cached))


INT4_GROUP = 32  # weights per scale in 4-bit compression (the same block as ONNX's MatMulNBits)


def _int4(nncf, model):
    """4-bit weights (symmetric, a scale per group of :data:`INT4_GROUP`, or a smaller power of two where the layer's
    input size needs it) on every MatMul NNCF can compress;
    the other weights (convolutions) go to int8, NNCF's backup. No MatMul to compress is an error: the file
    would be int8 under an int4 name."""
    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

    # A layer whose input size 32 does not divide (784 = 28 x 28) gets the largest power of two that does, down to 8,
    # as ONNX Runtime pads its blocks; below that it stays int8.
    adjust = AdvancedCompressionParameters(group_size_fallback_mode=GroupSizeFallbackMode.ADJUST, min_adjusted_group_size=8)
    compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT4_SYM, group_size=INT4_GROUP,
                                       ratio=1.0, all_layers=True, advanced_parameters=adjust)
    four = [op for op in compressed.get_ops() if op.get_type_name() == "Constant"
            and op.get_element_type().get_type_name() in ("i4", "u4")]
    if not four:
        raise ConversionError("int4: no MatMul weights to compress to 4 bits in this model (OpenVINO compresses "
                              "MatMul/linear layers only); use dynamic or int8")
    return compressed


def _quantized(model, precision: str, quant):
    nncf = require("nncf", extra="convert", purpose="quantize OpenVINO models")
    buffer = io.StringIO()
    # NNCF's logger writes INFO lines to the stdout it saw at import, which would corrupt --json output;
    # its notes go to edgecv's debug log instead, and the level is restored after.
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(buffer):  # NNCF draws progress bars on stdout
            if precision == "dynamic":
                return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
            if precision == "int4":
                return _int4(nncf, model)
            if len(model.inputs) != 1:
                raise ConversionError(f"int8 calibration supports models with one image input; this one has {len(model.inputs)}")
            shape = [d.get_length() if d.is_static else None for d in model.inputs[0].get_partial_shape()]
            samples = _Samples(quant, shape)  # NNCF iterates several times; each pass reads the samples anew
            keep = list(quant.keep_float)
            heads = head_plan(model, quant.output_ranges)
            if heads is not None:
                keep += [n for n in heads.keep_float if n not in keep]
            ignored = nncf.IgnoredScope(names=keep, validate=False) if keep else None
            settings = _nncf_settings(nncf, quant.options)  # the PTQ ladder's choices (converters/ladder.py)
            if quant.options.accuracy_control and quant.accuracy is not None:
                return _with_accuracy_control(nncf, model, samples, quant, shape, ignored, settings)
            return nncf.quantize(
                model,
                nncf.Dataset(samples),
                subset_size=len(samples),
                fast_bias_correction=not quant.options.bias_correction,
                **({"ignored_scope": ignored} if ignored else {}),
                **settings,
            )
    except ConversionError:
        raise
    except Exception as exc:
        from edgecv.backends.base import first_line

        raise ConversionError(f"NNCF could not quantize the model: {type(exc).__name__}: {first_line(exc)}") from None
    finally:
        nncf_log.setLevel(level)
        if buffer.getvalue().strip():
            log.debug("nncf: %s", buffer.getvalue().strip()[-2000:])


def _nncf_settings(nncf, options: QuantOptions) -> dict[str, Any]:
    """nncf.quantize's arguments for the PTQ ladder's settings (converters/ladder.py): range estimator, SmoothQuant."""
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    settings: dict[str, Any] = {}
    if options.openvino_ranges != "default":
        ranges = {"minmax": RangeEstimatorParametersSet.MINMAX, "histogram": RangeEstimatorParametersSet.HISTOGRAM}
        settings["advanced_parameters"] = AdvancedQuantizationParameters(activations_range_estimator_params=ranges[options.openvino_ranges])
    if options.openvino_smooth_quant:
        settings["model_type"] = nncf.ModelType.TRANSFORMER  # NNCF applies SmoothQuant in its transformer recipe only
    return settings


HEAD_KINDS = {"Concat": "concat", "Transpose": "transpose", "Reshape": "shape", "Squeeze": "shape",
              "Unsqueeze": "shape", "StridedSlice": "shape", "Slice": "shape", "Split": "shape",
              "VariadicSplit": "shape", "Convert": "shape", "Add": "elementwise", "Subtract": "elementwise",
              "Multiply": "elementwise", "Divide": "elementwise", "Softmax": "softmax", "SoftMax": "softmax"}


_WEIGHTED = {"Convolution", "GroupConvolution", "MatMul"}


def head_plan(model, ranges):
    """Which ops of a detector's head NNCF keeps in float (:func:`edgecv.converters.output_ranges.head_ranges`
    on the OpenVINO graph: box decoding and a box+score join; op friendly names, which NNCF's ignored scope
    takes). NNCF leaves model outputs float and picks activation ranges itself, so only the float ops are
    used. None without ranges or when the outputs do not match the source's."""
    if ranges is None:
        return None
    from edgecv.converters.output_ranges import GraphNode, plan_for_graph

    def tensor(port) -> str:
        return f"{port.get_node().get_friendly_name()}:{port.get_index()}"

    producers, shapes = {}, {}
    for op in model.get_ordered_ops():
        kind = HEAD_KINDS.get(op.get_type_name(), "compute")
        sources = [i.get_source_output() for i in op.inputs()]
        if kind == "elementwise" and {p.get_node().get_type_name() for p in sources} & _WEIGHTED:
            kind = "compute"  # a layer's bias (OpenVINO splits it from its convolution): part of the layer
        data = tuple(tensor(p) for p in sources if p.get_node().get_type_name() != "Constant")
        axis = perm = None
        if kind == "concat":
            rank = op.get_output_partial_shape(0).rank
            axis = int(op.get_attributes()["axis"]) % (rank.get_length() if rank.is_static else 1)
        elif kind == "transpose" and len(sources) > 1 and sources[1].get_node().get_type_name() == "Constant":
            perm = tuple(int(v) for v in sources[1].get_node().get_data())
        for out in op.outputs():
            name = tensor(out)
            producers[name] = GraphNode(op.get_friendly_name(), kind, data[:1] if kind in ("shape", "transpose") else data,
                                        axis=axis, perm=perm)
            shape = out.get_partial_shape()
            if shape.rank.is_static:
                shapes[name] = tuple(d.get_length() if d.is_static else None for d in shape)
    results = [tensor(r.input_value(0)) for r in model.get_results()]
    return plan_for_graph(ranges, "OpenVINO", [o.get_any_name() for o in model.outputs], producers, shapes, tensors=results)


def _with_accuracy_control(nncf, model, samples, quant, shape, ignored, settings: dict[str, Any]):
    """nncf.quantize_with_accuracy_control against the export's gate (``quant.accuracy``, higher is better): NNCF
    ranks its quantizers by output error on the eval samples and reverts the worst to float until the gate's
    metric is within ``quant.accuracy.max_drop`` of the float model's."""
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    probe = _Probe(quant, shape)

    def validate(compiled, items):
        if sum(1 for _ in items) != len(probe):  # NNCF then ranks by output error and validates whole sets only
            raise ValueError("the export's gate is measured on the whole eval set")
        return quant.accuracy(lambda x: list(compiled(fit_layout(x, shape)).to_tuple())), None

    advanced = settings.pop("advanced_parameters", None)
    restorer = AdvancedAccuracyRestorerParameters(max_num_iterations=quant.options.max_float_layers, num_ranking_workers=1)
    return nncf.quantize_with_accuracy_control(
        model, nncf.Dataset(samples), nncf.Dataset(probe), validate, max_drop=quant.accuracy.max_drop,
        drop_type=nncf.DropType.ABSOLUTE, subset_size=len(samples), fast_bias_correction=not quant.options.bias_correction,
        advanced_quantization_parameters=advanced, advanced_accuracy_restorer_parameters=restorer,
        **({"ignored_scope": ignored} if ignored else {}), **settings)


class _Samples:
    """The calibration samples as a re-iterable of known length, read anew on every pass rather than held
    in memory (300 samples at 640x480 are over 1 GB)."""

    def __init__(self, quant, shape) -> None:
        self._quant, self._shape = quant, shape

    def __iter__(self):
        return self._quant.samples(self._shape)

    def __len__(self) -> int:
        return len(self._quant.calib)


class _Probe(_Samples):
    """The eval samples (else the calibration samples), re-iterable, for NNCF's accuracy-aware quantization."""

    def __iter__(self):
        return self._quant.probe_samples(self._shape)

    def __len__(self) -> int:
        return len(self._quant.probe if self._quant.probe is not None else self._quant.calib)


PROBE_SAMPLES = 16  # eval samples the per-layer comparison runs on


def _expose(model, keys: list[tuple[str, int]], values=None) -> list[int]:
    """Make each (op name, port) a model output, unless it already is one; returns their output indices."""
    if values is None:
        ops = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
        values = [ops[name].output(port) for name, port in keys]
    def fed() -> dict[tuple[str, int], int]:  # model.outputs are Results: key them by what feeds them
        return {_key(o.get_node().input_value(0)): i for i, o in enumerate(model.outputs)}

    have = fed()
    missing = [v for k, v in zip(keys, values) if k not in have]
    if missing:
        model.add_outputs(missing)
        have = fed()
    return [have[k] for k in keys]


def _key(value) -> tuple[str, int]:
    return value.get_node().get_friendly_name(), value.get_index()


def _is_constant(node) -> bool:
    """A weight: a Constant, possibly behind Convert/Reshape/Transpose (decompression, layout)."""
    while node.get_type_name() in ("Convert", "Reshape", "Transpose", "Unsqueeze", "Squeeze"):
        node = node.input_value(0).get_node()
    return node.get_type_name() == "Constant"


def _upstream_sqnr(op, sqnr: dict[str, float]) -> float | None:
    """The lowest SQNR among the nearest measured layers feeding ``op`` (None at the graph input)."""
    found: list[float] = []
    stack = [v.get_node() for v in op.input_values()]
    seen = set()
    while stack:
        node = stack.pop()
        name = node.get_friendly_name()
        if name in seen:
            continue
        seen.add(name)
        if name in sqnr:
            found.append(sqnr[name])
            continue
        stack.extend(v.get_node() for v in node.input_values())
    return min(found) if found else None


TARGET = OpenVINOTarget(FORMATS["openvino"])
