"""Multiply-accumulate counts of a Keras 3 model, from its layer shapes, and the walk over its layer graph.

Only the layers that do the arithmetic are counted: Conv1D/2D/3D, DepthwiseConv2D, SeparableConv2D and
Dense (one MAC per weight use; biases, BN, activations and pooling are ignored). Nested models are counted
with their own layers.

Example:
    >>> count_macs(model)                    # doctest: +SKIP
    4037632
    >>> layer_macs(model)["conv2d"]          # doctest: +SKIP
    112896
"""

from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)

_CONVS = ("Conv1D", "Conv2D", "Conv3D")


def graph_of(model):
    """The Functional graph behind ``model`` (a Functional model, or the one a built Sequential wraps);
    None for a subclassed model."""
    if hasattr(model, "_nodes_by_depth"):
        return model
    inner = getattr(model, "_functional", None)
    return inner if inner is not None and hasattr(inner, "_nodes_by_depth") else None


def graph_nodes(model) -> list:
    """The call nodes of ``model``'s graph in execution order (inputs first), input nodes left out."""
    graph = graph_of(model)
    if graph is None:
        return []
    by_depth = graph._nodes_by_depth
    return [n for d in sorted(by_depth, reverse=True) for n in by_depth[d] if n.operation is not None and not n.is_input]


def _prod(dims) -> int | None:
    if any(d is None for d in dims):
        return None
    return int(math.prod(int(d) for d in dims))


def node_macs(node) -> int:
    """MACs of one call of a layer (batch 1); 0 for layers that are not counted or whose shape is unknown."""
    layer = node.operation
    kind = type(layer).__name__
    if not node.input_tensors or not node.outputs:
        return 0
    inp, out = node.input_tensors[0].shape, node.outputs[0].shape
    if kind == "Dense":
        rows = _prod(out[1:-1])
        return 0 if rows is None or inp[-1] is None else rows * int(inp[-1]) * int(layer.units)
    if kind not in _CONVS + ("DepthwiseConv2D", "SeparableConv2D"):
        return 0
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        spatial, cin = out[2:], inp[1]
    else:
        spatial, cin = out[1:-1], inp[-1]
    positions, window = _prod(spatial), _prod(layer.kernel_size)
    if positions is None or cin is None:
        log.debug("layer %s: unknown spatial size, not counted", layer.name)
        return 0
    cin = int(cin)
    if kind in _CONVS:
        return positions * window * cin // int(getattr(layer, "groups", 1)) * int(layer.filters)
    mult = int(layer.depth_multiplier)
    depthwise = positions * window * cin * mult
    return depthwise + (positions * cin * mult * int(layer.filters) if kind == "SeparableConv2D" else 0)


def layer_macs(model) -> dict[str, int]:
    """MACs per layer name (summed over a shared layer's calls); nested models' layers as ``outer/inner``."""
    counts: dict[str, int] = {}
    for node in graph_nodes(model):
        layer = node.operation
        if graph_of(layer) is not None and layer is not model:
            for name, macs in layer_macs(layer).items():
                counts[f"{layer.name}/{name}"] = counts.get(f"{layer.name}/{name}", 0) + macs
            continue
        macs = node_macs(node)
        if macs:
            counts[layer.name] = counts.get(layer.name, 0) + macs
    return counts


def count_macs(model) -> int:
    """Total multiply-accumulates of one inference at batch 1 (FLOPs are about twice this)."""
    return sum(layer_macs(model).values())


__all__ = ["count_macs", "layer_macs", "node_macs", "graph_nodes", "graph_of"]
