"""Quantization ranges for a detector's outputs, from what each value means (the spec's decoder says which
values are box coordinates and which are scores), rather than from the extremes calibration happened to see.

A calibrated int8 quantizer gives a tensor the range [min, max] it saw. For a detector's heads that range is
the wrong one:
- **score logits** reach -1000 on background anchors (MediaPipe BlazeFace), so one int8 step is 4.7 logits and
  every score near the threshold rounds to 0 or 1. Beyond +-8 a sigmoid is flat, so logits get [-8, 8];
- **scores** after a sigmoid get exactly [0, 1];
- **box coordinates** of background candidates are garbage far outside the boxes of real objects; the range is
  that of the candidates whose float score reaches a tenth of the spec's threshold (a quarter wider), so
  garbage saturates and real boxes keep their precision. Box decoding inside the graph (adding anchor grids,
  multiplying by strides: YOLOv8) stays float: int8 would round an anchor grid to steps of the whole pixel range;
- **one tensor holding both** (YOLOv8's ``[1, 4+nc, N]``: boxes in pixels, scores in [0, 1]) cannot have one
  scale: the concatenation that joins them stays in float and each of its inputs gets its own range.

:func:`plan_output_ranges` measures the ranges on the float model's outputs on the calibration set;
:func:`head_ranges` walks a format's graph back from an output to the tensors to give them to, and the
concatenation to keep in float. Each target applies them with its own quantizer's means: ONNX Runtime and
the TFLite converter take the ranges and the float ops; NNCF (OpenVINO) picks its own activation ranges and
leaves outputs float, so it takes only the float ops (box decoding, the box+score join, and YOLOv8's DFL
softmax and expectation), as its ignored scope.

Example:
    >>> from edgecv.detection.decoders.base import OutputRole
    >>> r = OutputRange("scores", 1, OutputRole(1, 2, 0, 1, "logit"), -8.0, 8.0, (-1204.0, 4.7), "logits")
    >>> r.to_dict()["range"], r.to_dict()["calibrated"]
    ([-8.0, 8.0], [-1204.0, 4.7])
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

log = logging.getLogger(__name__)

LOGIT_LIMIT = 8.0  # sigmoid(8) = 0.9997: beyond it a score logit changes no score
RELEVANT_FRACTION = 0.1  # candidates scoring at least this share of the spec's threshold keep box precision
BOX_MARGIN = 0.25  # relevant boxes' range widened by this share of its width (eval objects differ a little)


@dataclass(frozen=True)
class OutputRange:
    """The range one slice of one output is quantized with, and what calibration alone would have given."""

    output: str
    index: int
    role: Any  # edgecv.detection.decoders.base.OutputRole
    low: float
    high: float
    calibrated: tuple[float, float]
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.role.to_dict(), "output": self.output, "index": self.role.output, "range": [round(self.low, 4), round(self.high, 4)],
                "calibrated": [round(float(v), 4) for v in self.calibrated], "why": self.why}


@dataclass(frozen=True)
class OutputRanges:
    """Every output slice's range, for one model (``shapes``: its output shapes, batch 1)."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    ranges: tuple[OutputRange, ...]

    def of(self, index: int) -> list[OutputRange]:
        return [r for r in self.ranges if r.index == index]

    def to_dict(self) -> dict[str, Any]:
        return {"outputs": [r.to_dict() for r in self.ranges]}


def plan_output_ranges(spec, names: Sequence[str], batches: Iterable[list[np.ndarray]]) -> OutputRanges | None:
    """The ranges for the outputs of a detector with ``spec`` (a DetectorSpec), measured on ``batches``: the
    float model's outputs on the calibration set, a list of arrays (batch first) per batch. None when the
    decoder names no roles for these outputs (a model whose outputs are final detections)."""
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        return None
    shapes = tuple((1, *np.shape(o)[1:]) for o in first)
    roles = spec.decoder_options.output_roles(shapes)
    if not roles:
        return None
    relevant = max(RELEVANT_FRACTION * float(spec.score_threshold or 0.0), 1e-3)
    full = {i: [np.inf, -np.inf] for i in range(len(roles))}
    kept = {i: [np.inf, -np.inf, 0] for i in range(len(roles))}
    for outs in _chain(first, batches):
        conf = _confidence(outs, roles)
        for i, role in enumerate(roles):
            values = _values(outs[role.output], role)
            full[i] = [min(full[i][0], float(values.min())), max(full[i][1], float(values.max()))]
            if role.kind == "box" and conf is not None and values.shape[1] == conf.shape[1]:
                chosen = values[conf >= relevant]
                if chosen.size:
                    kept[i] = [min(kept[i][0], float(chosen.min())), max(kept[i][1], float(chosen.max())), kept[i][2] + len(chosen)]
    out = []
    for i, role in enumerate(roles):
        lo, hi = full[i]
        if role.kind == "logit":
            low, high, why = max(lo, -LOGIT_LIMIT), LOGIT_LIMIT, f"score logits: within +-{LOGIT_LIMIT:g} (a sigmoid is flat beyond)"
        elif role.kind == "score":
            low, high, why = 0.0, 1.0, "scores in [0, 1]"
        elif kept[i][2]:
            k_lo, k_hi, count = kept[i]
            pad = BOX_MARGIN * (k_hi - k_lo)
            low, high = max(lo, k_lo - pad), min(hi, k_hi + pad)
            why = f"boxes of the {count} candidates scoring {relevant:g} or more, {BOX_MARGIN:.0%} wider"
        else:
            low, high, why = lo, hi, f"boxes: calibrated range (no candidate scored {relevant:g} or more)"
        out.append(OutputRange(names[role.output], role.output, role, float(low), float(high), (lo, hi), why))
    return OutputRanges(tuple(names), shapes, tuple(out))


CALIB_BATCH = 16


def detector_ranges(spec, source, calib, precisions: Sequence[str], options) -> OutputRanges | None:
    """:func:`plan_output_ranges` for an export: the float ``source`` run on the calibration set ``calib``
    (a Dataset of samples in the source's layout), when ``spec`` marks a detector, a precision is calibrated and
    ``options`` (QuantOptions) leave ``detector_ranges`` on."""
    from edgecv.converters.quant import PRECISIONS

    if spec is None or calib is None or not options.detector_ranges or not any(PRECISIONS[p].needs_calibration for p in precisions):
        return None

    def batches():
        batch = []
        for x in calib.inputs():
            batch.append(x)
            if len(batch) == CALIB_BATCH:
                yield [np.asarray(o) for o in source.reference(np.concatenate(batch))]
                batch = []
        if batch:
            yield [np.asarray(o) for o in source.reference(np.concatenate(batch))]

    ranges = plan_output_ranges(spec, [t.name for t in source.outputs], batches())
    if ranges is not None:
        for r in ranges.ranges:
            log.info("int8 range of %s %s %d:%d: [%.4g, %.4g] (calibration saw [%.4g, %.4g]): %s", r.output, r.role.kind,
                     r.role.start, r.role.stop, r.low, r.high, *r.calibrated, r.why)
    return ranges


def _chain(first, rest):
    yield first
    yield from rest


def _values(output: np.ndarray, role) -> np.ndarray:
    """The role's values of ``output`` as ``[batch, candidates, width]``."""
    a = np.asarray(output, np.float32)
    if a.ndim <= role.axis:  # a [1, A] score tensor: one value per candidate
        a = a[..., None]
    a = np.moveaxis(a, role.axis, -1)[..., role.start : role.stop]
    return a.reshape(a.shape[0], -1, a.shape[-1])


def _confidence(outs: list[np.ndarray], roles) -> np.ndarray | None:
    """Each candidate's best score, ``[batch, candidates]`` (logits through a sigmoid), or None without scores."""
    best = None
    for role in roles:
        if role.kind == "box":
            continue
        v = _values(outs[role.output], role).max(axis=-1)
        if role.kind == "logit":
            v = 1.0 / (1.0 + np.exp(-np.clip(v, -60, 60)))
        best = v if best is None or best.shape != v.shape else np.maximum(best, v)
    return best


@dataclass(frozen=True)
class GraphNode:
    """A node of a format's graph as :func:`head_ranges` needs it: ``kind`` is ``concat`` (joins its inputs
    along ``axis``), ``transpose`` (``perm``), ``shape`` (moves data without arithmetic: reshapes, slices),
    ``elementwise`` (add, subtract, multiply, divide), ``softmax`` or ``compute``; ``inputs`` are its non-constant inputs;
    ``name`` is what the format's quantizer takes to keep the node in float."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    axis: int | None = None
    perm: tuple[int, ...] | None = None


@dataclass
class HeadPlan:
    """Per tensor, the (low, high) to quantize it with; nodes to keep in float; what could not be done."""

    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    keep_float: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def head_ranges(plan: OutputRanges, outputs: Sequence[str], producers: dict[str, GraphNode],
                shapes: dict[str, tuple[int, ...]]) -> HeadPlan:
    """Walk back from each graph output (``outputs``, in the order of ``plan.names``) to the tensors that
    hold its values, and give each the range of the values it holds.

    Example:
        >>> from edgecv.detection.decoders.base import OutputRole
        >>> rs = (OutputRange("y", 0, OutputRole(0, 1, 0, 4, "box"), 0.0, 320.0, (0, 330), ""),
        ...       OutputRange("y", 0, OutputRole(0, 1, 4, 6, "score"), 0.0, 1.0, (0, 1), ""))
        >>> nodes = {"y": GraphNode("cat", "concat", ("b", "s"), axis=1)}
        >>> p = head_ranges(OutputRanges(("y",), ((1, 6, 9),), rs), ["y"], nodes, {"b": (1, 4, 9), "s": (1, 2, 9)})
        >>> p.ranges, p.keep_float
        ({'b': (0.0, 320.0), 's': (0.0, 1.0)}, ['cat'])
    """
    head = HeadPlan()
    for index, tensor in enumerate(outputs):
        ranges = plan.of(index)
        if not ranges:
            continue
        axis = ranges[0].role.axis
        slices = [(r.role.start, r.role.stop, (r.low, r.high, r.role.kind)) for r in sorted(ranges, key=lambda r: r.role.start)]
        _assign(tensor, axis, slices, producers, shapes, head, plan.names[index])
    return head


def _assign(tensor: str, axis: int, slices: list, producers: dict[str, GraphNode], shapes: dict, head: HeadPlan,
            output: str) -> None:
    if not slices:  # values no role names: calibration decides
        return
    ranges = {s[2] for s in slices}
    node = producers.get(tensor)
    if len(ranges) == 1:  # one range for the whole tensor: it and every tensor it is made of, back to the arithmetic
        low, high, kind = ranges.pop()
        stack, seen = [(tensor, True)], set()
        while stack:
            t, assign = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            if assign:
                head.ranges[t] = _union(head.ranges.get(t), (low, high))
            n = producers.get(t)
            if n is None:
                continue
            if n.kind in ("concat", "transpose", "shape"):
                if kind == "box" and not assign and n.kind == "concat" and n.name not in head.keep_float \
                        and any(getattr(producers.get(i), "kind", None) == "elementwise" for i in n.inputs):
                    # A join of float decode results (YOLOv8 joins centre and size before scaling by the stride):
                    # TFLite's and ONNX Runtime's quantizers would put an int8 step of the grid range between two
                    # float ops (TFLite YOLOv8n: 0.165 grid units, 2.6 px at stride 32). Joins and reshapes of the
                    # int8 layers' outputs stay int8: an integer-only accelerator keeps them.
                    head.keep_float.append(n.name)
                stack.extend((i, assign) for i in (n.inputs if n.kind == "concat" else n.inputs[:1]))
            elif kind == "box" and (n.kind in ("elementwise", "softmax") or _expectation(n, producers)):
                # Box decoding in the graph (anchor grids, strides): int8 would round the constants to a step
                # of the pixel range (2.5 px at 320), so it stays float, back to the layer that predicts offsets.
                # So does an expectation over distance bins (a softmax, then a fixed conv: YOLOv8's DFL), whose
                # int8 probabilities move every box edge (OpenVINO YOLOv8n: mAP@[.5:.95] -1.25 -> -0.56 points).
                if n.name not in head.keep_float:
                    head.keep_float.append(n.name)
                stack.extend((i, False) for i in n.inputs)
        return
    head.ranges.pop(tensor, None)
    if node is not None and node.kind == "transpose" and node.perm is not None:
        _assign(node.inputs[0], node.perm[axis], slices, producers, shapes, head, output)
        return
    if node is not None and node.kind == "shape" and tensor in shapes and node.inputs[0] in shapes \
            and tuple(shapes[tensor]) == tuple(shapes[node.inputs[0]]):
        _assign(node.inputs[0], axis, slices, producers, shapes, head, output)
        return
    if node is None or node.kind != "concat" or node.axis is None or node.axis % max(len(shapes.get(tensor, ())), 1) != axis:
        head.notes.append(f"{output}: boxes and scores share one tensor made by {node.name if node else 'the input'}, "
                          "which cannot be split; they share one int8 scale")
        return
    head.keep_float.append(node.name)
    start = 0
    for t in node.inputs:
        width = shapes.get(t, (None,) * (axis + 1))[axis] if len(shapes.get(t, ())) > axis else None
        if width is None:
            head.notes.append(f"{output}: the width of {t} along axis {axis} is unknown; its range is left to calibration")
            return
        part = [(max(a, start) - start, min(b, start + width) - start, r) for a, b, r in slices if a < start + width and b > start]
        _assign(t, axis, part, producers, shapes, head, output)
        start += width


def plan_for_graph(plan: OutputRanges, fmt: str, names: Sequence[str], producers: dict[str, GraphNode],
                   shapes: dict[str, tuple[int, ...]], tensors: Sequence[str] | None = None) -> HeadPlan | None:
    """:func:`head_ranges` on one format's graph: its outputs ``names`` matched to the source's (``tensors``:
    the graph tensor behind each name, when they differ), and what cannot be done logged as ``int8 <fmt>``
    warnings. None, with a warning, when the outputs cannot be matched."""
    tensors = list(tensors) if tensors is not None else list(names)
    order = match_outputs(plan, names, [shapes.get(t) for t in tensors])
    if order is None:
        log.warning("int8 %s: the detector's output ranges are not applied: its outputs %s do not match the source's %s",
                    fmt, list(names), list(plan.names))
        return None
    head = head_ranges(plan, [tensors[list(names).index(n)] for n in order], producers, shapes)
    for note in head.notes:
        log.warning("int8 %s: %s", fmt, note)
    log.debug("int8 %s: output ranges %s; kept in float: %s", fmt, head.ranges, head.keep_float)
    return head


def _expectation(node: GraphNode, producers: dict[str, GraphNode]) -> bool:
    """A compute node fed (through reshapes and transposes) by a softmax: a weighted sum over bins."""
    if node.kind != "compute" or not node.inputs:
        return False
    source = producers.get(node.inputs[0])
    while source is not None and source.kind in ("shape", "transpose"):
        source = producers.get(source.inputs[0]) if source.inputs else None
    return source is not None and source.kind == "softmax"


def match_outputs(plan: OutputRanges, names: Sequence[str], shapes: Sequence[tuple | None]) -> list[str] | None:
    """The format's output names in the order of ``plan.names``: by name, else by shape when each shape is
    unique, else by position when the shapes agree in order; None when they cannot be matched.

    Example:
        >>> p = OutputRanges(("boxes", "scores"), ((1, 9, 4), (1, 9, 1)), ())
        >>> match_outputs(p, ["Identity_1", "Identity"], [(1, 9, 1), (1, 9, 4)])
        ['Identity', 'Identity_1']
    """
    if set(plan.names) <= set(names):
        return list(plan.names)
    fixed = [tuple(s) if s is not None else None for s in shapes]
    if len(set(plan.shapes)) == len(plan.shapes) and all(fixed.count(s) == 1 for s in plan.shapes):
        return [names[fixed.index(s)] for s in plan.shapes]
    if list(plan.shapes) == fixed:
        return list(names)
    return None


def _union(old: tuple[float, float] | None, new: tuple[float, float]) -> tuple[float, float]:
    return new if old is None else (min(old[0], new[0]), max(old[1], new[1]))
