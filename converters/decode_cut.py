"""Cut a detector's box decoding off its ONNX graph, so an integer-only accelerator runs the whole model and the
decoding runs exactly, in float, in edgecv's decoder on the CPU (``edgecv export --cut-decode``).

YOLOv8/v11 end with a softmax over distance bins (DFL), its expectation, anchor grids and strides. In int8 that
tail moves every box edge; kept in float it runs on the CPU between accelerator calls (the Edge TPU compiler
stops mapping ops at the first float op, so everything after it stays on the CPU). Cut before it, the model
outputs the bin logits and the class scores (:class:`edgecv.detection.decoders.yolo_dfl.YoloDflDecoder`
decodes them) and every remaining op is a convolution, an activation, a reshape or a join.

Each cut is checked before it is used: the cut model's outputs, decoded, must give the boxes and scores of
the full model on the export's sample inputs (within :data:`BOX_TOLERANCE` pixels), or the export stops.

:data:`CUTS` holds one cut per decoder of the full model's spec.

Example:
    >>> sorted(CUTS)
    ['yolo']
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgecv.errors import ConfigError, ConversionError

log = logging.getLogger(__name__)

BOX_TOLERANCE = 0.01  # pixels: float32 reordering of the same arithmetic, nothing more
SCORE_TOLERANCE = 1e-5
PASS_THROUGH = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten")


@dataclass(frozen=True)
class DecodeCut:
    """A cut model: its ONNX ``path``, the ``spec`` that decodes it, what was cut and how well it matches."""

    path: Path
    spec: Any  # edgecv.detection.DetectorSpec
    outputs: tuple[str, ...]
    removed_ops: int
    max_box_error: float
    max_score_error: float

    def to_dict(self) -> dict[str, Any]:
        return {"decoder": self.spec.decoder, "decoder_options": self.spec.decoder_options.to_dict(),
                "outputs": list(self.outputs), "removed_ops": self.removed_ops,
                "max_box_error_px": round(self.max_box_error, 6), "max_score_error": float(f"{self.max_score_error:.3g}")}


def cut_source(source, spec, *, inputs: list[np.ndarray], reference: list[np.ndarray]):
    """``(cut source, cut spec, its outputs on inputs, DecodeCut)`` for an ONNX ``source`` whose ``spec`` decoder
    has a cut; ``reference`` is the full model's outputs on ``inputs``. The cut file lives in a temporary folder
    removed with the returned source. One-line ConfigError when the source or spec cannot be cut."""
    from edgecv.converters.sources import OnnxSource

    if spec is None:
        raise ConfigError("--cut-decode (cut_decode=True) needs a detector spec (--spec) saying how the outputs decode")
    if spec.decoder not in CUTS:
        raise ConfigError(f"--cut-decode: no cut for decoder {spec.decoder!r}; decoders with a cut: {', '.join(CUTS)}")
    if source.kind != "onnx":
        raise ConfigError(f"--cut-decode cuts an ONNX graph; this source is {source.kind}: export it to ONNX first "
                          "(edgecv export MODEL --to onnx --quant fp32), then cut that")
    folder = Path(tempfile.mkdtemp(prefix="edgecv-cut-"))
    try:
        path, cut_spec, outputs, removed = CUTS[spec.decoder](source.path, spec, folder / f"{source.path.stem}.cut.onnx")
        cut = OnnxSource(path)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    weakref.finalize(cut, shutil.rmtree, folder, True)
    cut_reference = cut.reference(inputs)
    box_error, score_error = _compare(spec, reference, cut_spec, cut_reference, inputs[0].shape, source.layout)
    if box_error > BOX_TOLERANCE or score_error > SCORE_TOLERANCE:
        raise ConversionError(f"--cut-decode: the cut model does not reproduce the full model's detections (boxes differ "
                              f"by up to {box_error:.3g} px, scores by {score_error:.3g}); export without --cut-decode")
    record = DecodeCut(path, cut_spec, tuple(outputs), removed, box_error, score_error)
    log.info("decode cut: %d ops removed, outputs %s, decoded by %s %s; boxes within %.2g px of the full model's",
             removed, ", ".join(outputs), cut_spec.decoder, cut_spec.decoder_options.to_dict(), box_error)
    return cut, cut_spec, cut_reference, record


def _compare(spec, reference, cut_spec, cut_reference, input_shape, layout: str) -> tuple[float, float]:
    """Largest box (pixels) and score difference between every candidate of the two decodings, image by image."""
    size = tuple(input_shape[2:4]) if layout == "NCHW" else tuple(input_shape[1:3])
    full_decoder = replace(spec.decoder_options, min_score_thresh=None)
    cut_decoder = replace(cut_spec.decoder_options, min_score_thresh=None)
    box, score = 0.0, 0.0
    for i in range(len(reference[0])):
        a = full_decoder.decode([o[i : i + 1] for o in reference], input_size=size)
        b = cut_decoder.decode([o[i : i + 1] for o in cut_reference], input_size=size)
        if len(a) != len(b):
            return float("inf"), float("inf")
        box = max(box, float(np.abs(a.xyxy - b.xyxy).max(initial=0.0)))
        score = max(score, float(np.abs(a.confidence - b.confidence).max(initial=0.0)))
    return box, score


# -- YOLOv8/v11: cut before the DFL ------------------------------------------------------------------------


def cut_yolov8(path: Path, spec, target: Path) -> tuple[Path, Any, list[str], int]:
    """Cut an Ultralytics v8/v11 ONNX export before its DFL: outputs ``boxes`` (the bin logits, ``[1, 4R, N]``)
    and ``scores`` (the class scores, ``[1, nc, N]``). Returns the file, the spec that decodes it, the output
    names and how many ops were removed."""
    import onnx
    from onnx import numpy_helper, shape_inference

    from edgecv.detection.decoders.yolo_dfl import YoloDflDecoder

    model = onnx.load(str(path))
    graph = model.graph
    if len(graph.output) != 1:
        raise ConfigError(f"--cut-decode: expected one YOLO output [1,4+nc,N], got {len(graph.output)} outputs")
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            constants[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)

    softmax = [n for n in graph.node if n.op_type == "Softmax"]
    found = [(s, _dfl_bins(s, consumers, constants)) for s in softmax]
    found = [(s, bins) for s, bins in found if bins]
    if len(found) != 1:
        raise ConfigError(f"--cut-decode: expected one DFL (a softmax over distance bins, then their expectation) in "
                          f"{path.name}, found {len(found)}; is this an Ultralytics v8/v11 detection export?")
    dfl, reg_max = found[0]
    box_tensor = _through(dfl.input[0], producers, PASS_THROUGH)

    joins = producers.get(graph.output[0].name)
    if joins is None or joins.op_type != "Concat" or len(joins.input) != 2:
        raise ConfigError("--cut-decode: expected the YOLO output to join boxes and scores in one Concat")
    score_inputs = [t for t in joins.input if dfl.output[0] not in _ancestors(t, producers) | {t}]
    if len(score_inputs) != 1:
        raise ConfigError("--cut-decode: cannot tell the class scores from the boxes in the YOLO output's Concat")
    score_tensor = score_inputs[0]

    inferred = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    box_shape, score_shape = shapes.get(box_tensor), shapes.get(score_tensor)
    if box_shape is None or len(box_shape) != 3 or box_shape[1] != 4 * reg_max or score_shape is None or len(score_shape) != 3:
        raise ConfigError(f"--cut-decode: expected the DFL's input [1,{4 * reg_max},N] and scores [1,nc,N], got "
                          f"{box_shape} and {score_shape}")
    strides = _strides(dfl.output[0], producers, constants, graph.output[0].name) or (8, 16, 32)

    inputs = [i.name for i in graph.input if i.name not in constants]
    cut = onnx.utils.Extractor(inferred).extract_model(inputs, [box_tensor, score_tensor])
    _rename(cut.graph, {box_tensor: "boxes", score_tensor: "scores"})
    onnx.checker.check_model(cut)
    onnx.save(cut, str(target))
    removed = len(graph.node) - len(cut.graph.node)
    options = YoloDflDecoder(reg_max=reg_max, strides=strides, num_classes=score_shape[1],
                             min_score_thresh=getattr(spec.decoder_options, "min_score_thresh", None))
    return target, replace(spec, decoder=YoloDflDecoder.name, decoder_options=options), ["boxes", "scores"], removed


def _dfl_bins(softmax, consumers: dict, constants: dict) -> int:
    """The number of bins when ``softmax`` feeds (through reshapes) a 1x1 Conv or MatMul with weights 0..R-1."""
    tensor = softmax.output[0]
    while True:
        nxt = consumers.get(tensor, [])
        if len(nxt) != 1:
            return 0
        node = nxt[0]
        if node.op_type in PASS_THROUGH:
            tensor = node.output[0]
            continue
        if node.op_type not in ("Conv", "MatMul") or len(node.input) < 2 or node.input[1] not in constants:
            return 0
        weights = np.asarray(constants[node.input[1]], np.float64).ravel()
        return len(weights) if len(weights) > 1 and np.allclose(weights, np.arange(len(weights))) else 0


def _through(tensor: str, producers: dict, ops: tuple[str, ...]) -> str:
    """Walk back from ``tensor`` through ``ops`` to the first tensor another kind of op makes."""
    node = producers.get(tensor)
    while node is not None and node.op_type in ops:
        tensor = node.input[0]
        node = producers.get(tensor)
    return tensor


def _ancestors(tensor: str, producers: dict) -> set[str]:
    seen, stack = set(), [tensor]
    while stack:
        node = producers.get(stack.pop())
        if node is None:
            continue
        for i in node.input:
            if i and i not in seen:
                seen.add(i)
                stack.append(i)
    return seen


def _strides(dfl: str, producers: dict, constants: dict, output: str) -> tuple[int, ...] | None:
    """The strides the box path multiplies by: a per-candidate constant of a Mul between the DFL and the output,
    its distinct values in order."""
    on_path = _ancestors(output, producers)
    for name in on_path:
        node = producers.get(name)
        if node is None or node.op_type != "Mul" or dfl not in _ancestors(name, producers):
            continue
        for i in node.input:
            values = constants.get(i)
            if values is not None and values.size > 1:
                flat = np.asarray(values, np.float64).ravel()
                distinct = list(dict.fromkeys(flat.tolist()))
                if all(v > 0 and float(v).is_integer() for v in distinct) and len(distinct) < 8:
                    return tuple(int(v) for v in distinct)
    return None


def _rename(graph, names: dict[str, str]) -> None:
    """Rename tensors in ``graph`` (nodes' inputs and outputs, graph outputs)."""
    for node in graph.node:
        node.input[:] = [names.get(i, i) for i in node.input]
        node.output[:] = [names.get(o, o) for o in node.output]
    for out in graph.output:
        out.name = names.get(out.name, out.name)
    for info in graph.value_info:
        info.name = names.get(info.name, info.name)


CUTS: dict[str, Callable[[Path, Any, Path], tuple[Path, Any, list[str], int]]] = {"yolo": cut_yolov8}
