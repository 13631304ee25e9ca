"""SSD anchors as MediaPipe's ``SsdAnchorsCalculator`` makes them (BlazeFace, BlazePalm, SSD MobileNet).

Consecutive layers with the same stride share one feature-map grid; each cell then holds the anchors of all
those layers, in layer order. Anchors are ``(cx, cy, w, h)``, relative to the input image.

Example:
    >>> opts = SsdAnchorOptions(input_size_height=128, input_size_width=128, min_scale=0.1484375,
    ...     max_scale=0.75, num_layers=4, strides=(8, 16, 16, 16), interpolated_scale_aspect_ratio=1.0,
    ...     fixed_anchor_size=True)
    >>> generate_anchors(opts).shape
    (896, 4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgecv.config import check


@dataclass(frozen=True)
class SsdAnchorOptions:
    """The fields of MediaPipe's ``SsdAnchorsCalculatorOptions`` (same names, same defaults).

    ``feature_map_height``/``feature_map_width`` override the grid size per layer; by default it is
    ``ceil(input size / stride)``.
    """

    input_size_height: int
    input_size_width: int
    min_scale: float
    max_scale: float
    num_layers: int
    strides: tuple[int, ...]
    aspect_ratios: tuple[float, ...] = (1.0,)
    anchor_offset_x: float = 0.5
    anchor_offset_y: float = 0.5
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = False
    fixed_anchor_size: bool = False
    feature_map_height: tuple[int, ...] = ()
    feature_map_width: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("strides", "aspect_ratios", "feature_map_height", "feature_map_width"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        w = "anchors"
        check(self.input_size_height > 0 and self.input_size_width > 0, f"{w}.input_size", "positive sizes",
              (self.input_size_height, self.input_size_width))
        check(self.num_layers > 0, f"{w}.num_layers", "a positive integer", self.num_layers)
        check(len(self.strides) == self.num_layers, f"{w}.strides", f"{self.num_layers} values (num_layers)",
              list(self.strides))
        check(all(s > 0 for s in self.strides), f"{w}.strides", "positive values", list(self.strides))
        check(len(self.aspect_ratios) > 0 and all(r > 0 for r in self.aspect_ratios), f"{w}.aspect_ratios",
              "one or more positive values", list(self.aspect_ratios))
        for name in ("feature_map_height", "feature_map_width"):
            value = getattr(self, name)
            check(len(value) in (0, self.num_layers), f"{w}.{name}", f"none or {self.num_layers} values", list(value))
        check(len(self.feature_map_height) == len(self.feature_map_width), f"{w}.feature_map_width",
              f"{len(self.feature_map_height)} values (as feature_map_height)", list(self.feature_map_width))


def _scale(min_scale: float, max_scale: float, index: int, count: int) -> float:
    if count == 1:
        return (min_scale + max_scale) * 0.5
    return min_scale + (max_scale - min_scale) * index / (count - 1.0)


def generate_anchors(options: SsdAnchorOptions) -> np.ndarray:
    """Anchors ``[A, 4]`` float32 as (cx, cy, w, h) relative to the input, in MediaPipe's order.

    With ``fixed_anchor_size`` every anchor has w = h = 1 (the box coder then reads sizes directly).
    """
    o = options
    n = len(o.strides)
    parts = []
    layer = 0
    while layer < o.num_layers:
        scales: list[float] = []
        ratios: list[float] = []
        last = layer
        while last < n and o.strides[last] == o.strides[layer]:
            scale = _scale(o.min_scale, o.max_scale, last, n)
            if last == 0 and o.reduce_boxes_in_lowest_layer:
                ratios += [1.0, 2.0, 0.5]
                scales += [0.1, scale, scale]
            else:
                ratios += list(o.aspect_ratios)
                scales += [scale] * len(o.aspect_ratios)
                if o.interpolated_scale_aspect_ratio > 0.0:
                    scale_next = 1.0 if last == n - 1 else _scale(o.min_scale, o.max_scale, last + 1, n)
                    scales.append(math.sqrt(scale * scale_next))
                    ratios.append(o.interpolated_scale_aspect_ratio)
            last += 1
        sqrt_ratio = np.sqrt(np.asarray(ratios, np.float64))
        heights = np.asarray(scales) / sqrt_ratio
        widths = np.asarray(scales) * sqrt_ratio
        if o.feature_map_height:
            fh, fw = o.feature_map_height[layer], o.feature_map_width[layer]
        else:
            fh = math.ceil(o.input_size_height / o.strides[layer])
            fw = math.ceil(o.input_size_width / o.strides[layer])
        # Order: row, column, then anchor within the cell (the model's output order).
        ys, xs, k = np.meshgrid(np.arange(fh), np.arange(fw), np.arange(len(scales)), indexing="ij")
        cx = (xs + o.anchor_offset_x) / fw
        cy = (ys + o.anchor_offset_y) / fh
        if o.fixed_anchor_size:
            w = np.ones_like(cx, dtype=np.float64)
            h = np.ones_like(cy, dtype=np.float64)
        else:
            w, h = widths[k], heights[k]
        parts.append(np.stack([cx, cy, w, h], axis=-1).reshape(-1, 4))
        layer = last
    return np.concatenate(parts).astype(np.float32)
