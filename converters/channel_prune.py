"""Structured channel pruning of Keras 3 models: remove whole filters and rebuild a physically smaller model.

:func:`plan_channels` follows every channel through the layer graph. Each Conv (and hidden Dense) filter is
a channel; layers that must see the same channels (the inputs of a residual ``Add``, a depthwise conv and
its input, BatchNormalization) tie them together (union-find), ``Concatenate`` maps its output ranges back
to its inputs and ``Flatten`` repeats them per position (NHWC order). Tied filters form *units*, removed
together, and units that meet in an ``Add`` form *groups*; in every group the ``sparsity`` share of units
with the lowest score (the sum of their members' kernel L1 norms, or |gamma| of the BatchNormalization
that follows) is removed. Channels that reach a model output or a layer the planner does not know
(Reshape, custom layers, ...) are kept, and that is logged. :func:`apply_plan` then clones the model with
new, smaller layer objects and sliced weights; the given model is never changed.

Example:
    >>> plan = plan_channels(model, sparsity=0.5)               # doctest: +SKIP
    >>> small = apply_plan(model, plan)                         # doctest: +SKIP
    >>> plan.removed, plan.total, small.count_params() < model.count_params()   # doctest: +SKIP
    (60, 120, True)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from edgecv.converters.flops import graph_nodes, graph_of
from edgecv.errors import ConfigError

log = logging.getLogger(__name__)

FIXED = 0  # the channel element every unprunable channel is tied to

CRITERIA = ("l1", "bn_gamma")


class _UnionFind:
    """Union-find over integer ids; id 0 (FIXED) always stays its set's root."""

    def __init__(self) -> None:
        self.parent: list[int] = [0]

    def add(self, n: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return np.arange(start, start + n, dtype=np.int64)

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(int(a)), self.find(int(b))
        if ra == rb:
            return
        if rb == FIXED:
            ra, rb = rb, ra
        self.parent[rb] = ra


@dataclass
class _Producer:
    """A layer whose output channels are its own filters (Conv, SeparableConv, hidden Dense)."""

    layer: Any
    ids: np.ndarray  # channel element of each filter
    scores: np.ndarray


@dataclass
class ChannelPlan:
    """What :func:`apply_plan` changes: per layer (by ``id``) new config values and new weights."""

    config: dict[int, dict] = field(default_factory=dict)
    weights: dict[int, list] = field(default_factory=dict)
    removed: int = 0  # filters removed
    total: int = 0  # filters of every candidate layer (the model's output layers are not candidates)
    kept_by_layer: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (kept, before)
    blocked: list[str] = field(default_factory=list)  # layers that kept channels unpruned (unknown consumers)

    @property
    def fraction(self) -> float:
        return self.removed / self.total if self.total else 0.0


# --- channel propagation rules, one per layer kind ---------------------------------------------------------


class _Analysis:
    """Walks the graph once, giving every tensor's last axis a label per position (a channel element)."""

    def __init__(self, model, *, dense: bool, criterion: str) -> None:
        self.model = model
        self.dense = dense
        self.criterion = criterion
        self.uf = _UnionFind()
        self.spaces = _UnionFind()  # groups: spaces (one per producer) tied by merges
        self.space_of: list[int] = [0]  # space of each channel element
        self.owner: list[str] = [""]  # producer layer name of each element
        self.labels: dict[int, np.ndarray] = {}
        self.producers: list[_Producer] = []
        self.node_inputs: dict[int, list[np.ndarray]] = {}  # id(node) -> labels of its input tensors
        self.node_output: dict[int, np.ndarray] = {}
        self.kinds: dict[int, str] = {}  # id(layer) -> rule name used
        self.blocked: list[str] = []
        self.consumers: dict[int, list] = {}

    # helpers
    def new_channels(self, layer, n: int, scores: np.ndarray) -> np.ndarray:
        ids = self.uf.add(n)
        space = int(self.spaces.add(1)[0])
        self.space_of.extend([space] * n)
        self.owner.extend([layer.name] * n)
        self.producers.append(_Producer(layer, ids, scores))
        return ids

    def tie(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a.tolist(), b.tolist()):
            if x != FIXED and y != FIXED:
                self.spaces.union(self.space_of[x], self.space_of[y])
            self.uf.union(x, y)

    def fix(self, labels: np.ndarray) -> None:
        for x in set(labels.tolist()) - {FIXED}:
            self.uf.union(FIXED, x)

    def block(self, node, ins: list[np.ndarray], reason: str) -> list[np.ndarray]:
        """A layer the planner cannot follow: its input channels stay, its outputs are new fixed channels."""
        owners = sorted({self.owner[x] for lab in ins for x in set(lab.tolist()) if x != FIXED})
        for lab in ins:
            self.fix(lab)
        if owners:
            self.blocked.append(node.operation.name)
            log.info("layer %s (%s): %s; channels of %s left unpruned", node.operation.name,
                     type(node.operation).__name__, reason, ", ".join(owners))
        return [np.zeros(_channels(t), np.int64) for t in node.outputs]

    def score(self, layer, kernel: np.ndarray, out_tensor) -> np.ndarray:
        l1 = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
        if self.criterion == "bn_gamma":
            users = self.consumers.get(id(out_tensor), [])
            if len(users) == 1 and _rule_name(users[0].operation) == "norm" and users[0].operation.scale:
                return np.abs(np.asarray(users[0].operation.gamma)).astype(np.float64)
            log.debug("layer %s: no BatchNormalization follows; ranked by kernel L1", layer.name)
        return l1.astype(np.float64)

    # the walk
    def run(self) -> None:
        nodes = graph_nodes(self.model)
        calls: dict[int, int] = {}
        for node in nodes:
            calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
            for t in node.input_tensors:
                self.consumers.setdefault(id(t), []).append(node)
        for t in graph_of(self.model).inputs:
            self.labels[id(t)] = np.zeros(_channels(t), np.int64)
        for node in nodes:
            ins = [self.labels.get(id(t), np.zeros(_channels(t), np.int64)) for t in node.input_tensors]
            layer = node.operation
            kind = _rule_name(layer)
            if calls[id(layer)] > 1:
                outs = self.block(node, ins, "shared by several calls")
            elif kind is None:
                outs = self.block(node, ins, "not a layer kind channel pruning knows")
            else:
                outs = RULES[kind](self, node, ins)
            self.kinds[id(layer)] = kind if calls[id(layer)] == 1 else None
            self.node_inputs[id(node)] = ins
            self.node_output[id(node)] = outs[0] if outs else np.zeros(0, np.int64)
            for t, lab in zip(node.outputs, outs):
                self.labels[id(t)] = lab
        self.output_elements: set[int] = set()
        for t in graph_of(self.model).outputs:
            lab = self.labels[id(t)]
            self.output_elements |= set(lab.tolist())
            self.fix(lab)


def _channels(tensor) -> int:
    shape = tuple(tensor.shape)
    return int(shape[-1]) if shape and shape[-1] is not None else 0


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") in (None, "channels_last")


def _pass(an: _Analysis, node, ins):
    if not _channels_last(node.operation):
        return an.block(node, ins, "channels_first")
    return [ins[0]]


def _activation(an: _Analysis, node, ins):
    name = node.operation.get_config().get("activation")
    if not isinstance(name, str) or name in ("softmax", "log_softmax"):
        return an.block(node, ins, f"activation {name!r} mixes channels")
    return [ins[0]]


def _norm(an: _Analysis, node, ins):
    layer = node.operation
    rank = len(node.input_tensors[0].shape)
    if layer.axis not in (-1, rank - 1):
        return an.block(node, ins, f"normalizes axis {layer.axis}")
    return [ins[0]]


def _kernel(an: _Analysis, node, ins):
    layer = node.operation
    kind = type(layer).__name__
    expected = 1 + bool(layer.use_bias)
    if len(layer.weights) != expected or not _channels_last(layer) or getattr(layer, "groups", 1) != 1:
        return an.block(node, ins, "grouped, channels_first or extra weights")
    weights = layer.get_weights()
    _fit_input(ins, weights[0].shape[-2])
    kernel = weights[1] if kind == "SeparableConv2D" else weights[0]
    n = kernel.shape[-1]
    if kind == "Dense" and not an.dense:
        return [np.zeros(n, np.int64)]
    return [an.new_channels(layer, n, an.score(layer, kernel, node.outputs[0]))]


def _depthwise(an: _Analysis, node, ins):
    layer = node.operation
    if len(layer.weights) != 1 + bool(layer.use_bias) or not _channels_last(layer):
        return an.block(node, ins, "channels_first or extra weights")
    _fit_input(ins, layer.get_weights()[0].shape[-2])
    return [np.repeat(ins[0], int(layer.depth_multiplier))]


def _fit_input(ins: list[np.ndarray], channels: int) -> None:
    """Input labels that do not match the kernel (an unknown producer of dynamic width) become fixed."""
    if len(ins[0]) != channels:
        ins[0] = np.zeros(channels, np.int64)


def _merge(an: _Analysis, node, ins):
    if len({len(lab) for lab in ins}) != 1:
        return an.block(node, ins, "broadcasts over channels")
    for lab in ins[1:]:
        an.tie(ins[0], lab)
    return [ins[0]]


def _concat(an: _Analysis, node, ins):
    rank = len(node.outputs[0].shape)
    if node.operation.axis in (-1, rank - 1):
        return [np.concatenate(ins)]
    return _merge(an, node, ins)


def _flatten(an: _Analysis, node, ins):
    shape = tuple(node.input_tensors[0].shape)
    if len(shape) <= 2:
        return [ins[0]]
    if not _channels_last(node.operation) or any(d is None for d in shape[1:]):
        return an.block(node, ins, "channels_first or unknown spatial size")
    return [np.tile(ins[0], math.prod(int(d) for d in shape[1:-1]))]


RULES: dict[str, Callable] = {
    "pass": _pass,
    "activation": _activation,
    "norm": _norm,
    "kernel": _kernel,
    "depthwise": _depthwise,
    "merge": _merge,
    "concat": _concat,
    "flatten": _flatten,
}

# Keras layer classes (exact types; subclasses are unknown) by rule.
LAYER_KINDS: dict[str, str] = {
    **{name: "pass" for name in (
        "ReLU", "LeakyReLU", "ELU", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
        "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity",
        "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
        "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
        "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
        "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
        "UpSampling1D", "UpSampling2D", "UpSampling3D")},
    "Activation": "activation",
    "BatchNormalization": "norm",
    **{name: "kernel" for name in ("Conv1D", "Conv2D", "Conv3D", "SeparableConv2D", "Dense")},
    **{name: "depthwise" for name in ("DepthwiseConv1D", "DepthwiseConv2D")},
    **{name: "merge" for name in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")},
    "Concatenate": "concat",
    "Flatten": "flatten",
}


def _rule_name(layer) -> str | None:
    import keras

    kind = LAYER_KINDS.get(type(layer).__name__)
    if kind is None or type(layer) is not getattr(keras.layers, type(layer).__name__, None):
        return None
    return kind


# --- choosing the units to remove ---------------------------------------------------------------------------


def plan_channels(model, *, sparsity: float, criterion: str = "l1", dense: bool = True) -> ChannelPlan:
    """Choose the filters to remove from a Functional or Sequential Keras 3 ``model`` and compute the new
    layer configs and weights. ``sparsity`` is the share of units removed in every group."""
    if graph_of(model) is None:
        raise ConfigError(f"channel pruning needs a Functional or Sequential Keras model, got {type(model).__name__}")
    if criterion not in CRITERIA:
        raise ConfigError(f"criterion: expected one of {', '.join(CRITERIA)}, got {criterion!r}")
    an = _Analysis(model, dense=dense, criterion=criterion)
    an.run()
    uf = an.uf
    roots = np.array([uf.find(i) for i in range(len(uf.parent))], np.int64)

    unit_score: dict[int, float] = {}
    groups: dict[int, list[int]] = {}
    for p in an.producers:
        for e, s in zip(p.ids.tolist(), p.scores.tolist()):
            r = int(roots[e])
            if r == FIXED:
                continue
            if r not in unit_score:
                groups.setdefault(an.spaces.find(an.space_of[e]), []).append(r)
                unit_score[r] = 0.0
            unit_score[r] += s
    removed = np.zeros(len(roots), bool)
    for units in groups.values():
        units.sort(key=lambda r: (unit_score[r], r))
        n_remove = min(math.floor(sparsity * len(units) + 0.5), len(units) - 1)  # half rounds up
        removed[units[:n_remove]] = True
    for p in an.producers:  # a layer must keep at least one filter
        keep = ~removed[roots[p.ids]]
        if not keep.any():
            best = int(np.argmax(p.scores))
            removed[roots[p.ids[best]]] = False
            log.debug("layer %s keeps filter %d so it is not emptied", p.layer.name, best)

    plan = ChannelPlan(blocked=an.blocked)
    for p in an.producers:
        n = len(p.ids)
        kept = int((~removed[roots[p.ids]]).sum())
        if set(p.ids.tolist()) <= an.output_elements:
            continue  # the model's output layer is never a candidate
        plan.total += n
        plan.removed += n - kept
        plan.kept_by_layer[p.layer.name] = (kept, n)
    if not plan.total:
        log.warning("no prunable Conv or Dense filters found in model %s", model.name)

    def keep_of(labels: np.ndarray) -> np.ndarray:
        return ~removed[roots[labels]]

    for node in graph_nodes(model):
        layer = node.operation
        kind = an.kinds.get(id(layer))
        if kind not in _RESIZE:
            continue
        ins = [keep_of(lab) for lab in an.node_inputs[id(node)]]
        out = keep_of(an.node_output[id(node)])
        if all(k.all() for k in ins) and out.all():
            continue
        change, weights = _RESIZE[kind](layer, layer.get_weights(), ins, out)
        plan.config[id(layer)] = change
        plan.weights[id(layer)] = weights
    return plan


# --- new configs and sliced weights -------------------------------------------------------------------------


def _resize_kernel(layer, w, ins, out):
    kind = type(layer).__name__
    key = "units" if kind == "Dense" else "filters"
    if kind == "SeparableConv2D":
        m = int(layer.depth_multiplier)
        depthwise = w[0][..., ins[0], :]
        pointwise = w[1][..., np.repeat(ins[0], m), :][..., out]
        return {key: int(out.sum())}, [depthwise, pointwise] + [b[out] for b in w[2:]]
    kernel = w[0][..., ins[0], :][..., out]
    return {key: int(out.sum())}, [kernel] + [b[out] for b in w[1:]]


def _resize_depthwise(layer, w, ins, out):
    return {}, [w[0][..., ins[0], :]] + [b[out] for b in w[1:]]


def _resize_norm(layer, w, ins, out):
    return {}, [v[out] for v in w]


_RESIZE: dict[str, Callable] = {"kernel": _resize_kernel, "depthwise": _resize_depthwise, "norm": _resize_norm}


def apply_plan(model, plan: ChannelPlan):
    """A new model: every layer a new object, the planned ones smaller with sliced weights, the others
    with copies of their weights."""
    import keras

    pairs: list[tuple[Any, Any]] = []

    def clone(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer  # a stateless keras.ops operation
        config = {**layer.get_config(), **plan.config.get(id(layer), {})}
        new = layer.__class__.from_config(config)
        pairs.append((layer, new))
        return new

    new_model = keras.models.clone_model(model, clone_function=clone)
    for old, new in pairs:
        weights = plan.weights.get(id(old))
        new.set_weights(weights if weights is not None else old.get_weights())
    return new_model


def prune_channels(model, *, sparsity: float, criterion: str = "l1", dense: bool = True):
    """Plan and rebuild in one step: returns ``(new_model, plan)``."""
    plan = plan_channels(model, sparsity=sparsity, criterion=criterion, dense=dense)
    new_model = apply_plan(model, plan)
    log.info("channel pruning removed %d of %d filters (%s)", plan.removed, plan.total,
             ", ".join(f"{k} {a}/{b}" for k, (a, b) in plan.kept_by_layer.items()))
    return new_model, plan


__all__ = ["ChannelPlan", "plan_channels", "apply_plan", "prune_channels", "LAYER_KINDS", "CRITERIA"]
