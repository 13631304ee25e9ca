"""SSD anchors follow MediaPipe's SsdAnchorsCalculator: counts, order, sizes, same-stride merging."""

import math

import numpy as np
import pytest

from edgecv.detection import SsdAnchorOptions, generate_anchors
from edgecv.errors import ConfigError

BLAZEFACE = SsdAnchorOptions(
    input_size_height=128,
    input_size_width=128,
    min_scale=0.1484375,
    max_scale=0.75,
    num_layers=4,
    strides=(8, 16, 16, 16),
    aspect_ratios=(1.0,),
    anchor_offset_x=0.5,
    anchor_offset_y=0.5,
    interpolated_scale_aspect_ratio=1.0,
    fixed_anchor_size=True,
)

# MediaPipe's ssdlite_object_detection / TF's SSD MobileNet v1 on 300x300: the classic 1917 anchors.
SSD_MOBILENET = SsdAnchorOptions(
    input_size_height=300,
    input_size_width=300,
    min_scale=0.2,
    max_scale=0.95,
    num_layers=6,
    strides=(16, 32, 64, 128, 256, 512),
    aspect_ratios=(1.0, 2.0, 0.5, 3.0, 0.3333),
    interpolated_scale_aspect_ratio=1.0,
    reduce_boxes_in_lowest_layer=True,
)


def test_blazeface_short_range_has_896_anchors_in_mediapipe_order():
    a = generate_anchors(BLAZEFACE)
    assert a.shape == (896, 4) and a.dtype == np.float32
    # Stride 8: a 16x16 grid with 2 anchors per cell; strides 16, 16, 16 merge into one 8x8 grid with 6.
    np.testing.assert_allclose(a[0], [0.5 / 16, 0.5 / 16, 1, 1])
    np.testing.assert_allclose(a[1], a[0])
    np.testing.assert_allclose(a[2], [1.5 / 16, 0.5 / 16, 1, 1])
    np.testing.assert_allclose(a[32], [0.5 / 16, 1.5 / 16, 1, 1])  # next row after 16 cells x 2
    np.testing.assert_allclose(a[511], [15.5 / 16, 15.5 / 16, 1, 1])
    np.testing.assert_allclose(a[512:518], np.tile([0.5 / 8, 0.5 / 8, 1, 1], (6, 1)))
    np.testing.assert_allclose(a[518], [1.5 / 8, 0.5 / 8, 1, 1])
    np.testing.assert_allclose(a[895], [7.5 / 8, 7.5 / 8, 1, 1])


def test_ssd_mobilenet_anchor_sizes_follow_the_scale_schedule():
    a = generate_anchors(SSD_MOBILENET)
    assert a.shape == (1917, 4)  # 19*19*3 + (10*10 + 5*5 + 3*3 + 2*2 + 1*1) * 6
    r2 = math.sqrt(2.0)
    # Lowest layer, reduced: scale 0.1 at ratio 1, then 0.2 at ratios 2 and 0.5.
    np.testing.assert_allclose(a[:3, 2:], [[0.1, 0.1], [0.2 * r2, 0.2 / r2], [0.2 / r2, 0.2 * r2]], rtol=1e-6)
    np.testing.assert_allclose(a[0, :2], [0.5 / 19, 0.5 / 19], rtol=1e-6)
    # Layer 1 (stride 32, 10x10): scale 0.2 + 0.75 * 1/5 = 0.35, interpolated sqrt(0.35 * 0.5).
    s, s_next = 0.35, 0.5
    ratios = [1.0, 2.0, 0.5, 3.0, 0.3333]
    expected = [[s * math.sqrt(r), s / math.sqrt(r)] for r in ratios] + [[math.sqrt(s * s_next)] * 2]
    np.testing.assert_allclose(a[1083:1089, 2:], expected, rtol=1e-6)
    np.testing.assert_allclose(a[1083, :2], [0.05, 0.05], rtol=1e-6)
    # Last layer (1x1): its interpolated scale uses 1.0 as the next scale.
    np.testing.assert_allclose(a[-1], [0.5, 0.5, math.sqrt(0.95), math.sqrt(0.95)], rtol=1e-6)


def test_layers_with_the_same_stride_share_one_grid_in_layer_order():
    opts = SsdAnchorOptions(input_size_height=16, input_size_width=32, min_scale=0.2, max_scale=0.6, num_layers=2,
                            strides=(8, 8), interpolated_scale_aspect_ratio=0.0)
    a = generate_anchors(opts)
    assert a.shape == (2 * 4 * 2, 4)  # one 2x4 grid, 2 anchors per cell (one per layer)
    np.testing.assert_allclose(a[:2], [[0.5 / 4, 0.25, 0.2, 0.2], [0.5 / 4, 0.25, 0.6, 0.6]], rtol=1e-6)
    np.testing.assert_allclose(a[2, :2], [1.5 / 4, 0.25], rtol=1e-6)
    # The same two layers with different strides make two grids instead.
    apart = generate_anchors(SsdAnchorOptions(input_size_height=16, input_size_width=32, min_scale=0.2, max_scale=0.6,
                                              num_layers=2, strides=(8, 16), interpolated_scale_aspect_ratio=0.0))
    assert apart.shape == (2 * 4 + 1 * 2, 4)


def test_one_layer_uses_the_mean_scale_and_feature_maps_can_be_given():
    opts = SsdAnchorOptions(input_size_height=10, input_size_width=10, min_scale=0.2, max_scale=0.4, num_layers=1,
                            strides=(4,), interpolated_scale_aspect_ratio=0.0, feature_map_height=(2,),
                            feature_map_width=(5,))
    a = generate_anchors(opts)
    assert a.shape == (10, 4)
    np.testing.assert_allclose(a[0], [0.1, 0.25, 0.3, 0.3], rtol=1e-6)
    np.testing.assert_allclose(a[9, :2], [0.9, 0.75], rtol=1e-6)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"strides": (8, 16)}, r"anchors.strides: expected 4 values \(num_layers\), got \[8, 16\]"),
        ({"strides": (8, 0, 16, 16)}, "anchors.strides: expected positive values"),
        ({"num_layers": 0, "strides": ()}, "anchors.num_layers: expected a positive integer, got 0"),
        ({"input_size_height": 0}, "anchors.input_size: expected positive sizes"),
        ({"aspect_ratios": ()}, "anchors.aspect_ratios: expected one or more positive values"),
        ({"feature_map_height": (1, 2)}, "anchors.feature_map_height: expected none or 4 values"),
        ({"feature_map_height": (1, 1, 1, 1)}, r"anchors.feature_map_width: expected 4 values \(as feature_map_height\)"),
    ],
)
def test_bad_options_give_config_errors(change, message):
    fields = {k: getattr(BLAZEFACE, k) for k in BLAZEFACE.__dataclass_fields__}
    fields.update(change)
    with pytest.raises(ConfigError, match=message):
        SsdAnchorOptions(**fields)
