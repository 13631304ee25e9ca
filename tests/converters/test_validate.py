import numpy as np
import pytest

from edgecv.converters.validate import OutputDiff, Tolerance, compare_outputs, judge, sample_inputs, to_layout
from edgecv.errors import ConfigError
from edgecv.manifest import Preprocess
from edgecv.tensors import TensorInfo


def test_sample_inputs_are_deterministic_and_normalized():
    info = [TensorInfo("x", (None, 8, 8, 3), "float32")]
    a = sample_inputs(info, Preprocess(mean=(127.5,), std=(127.5,)), count=4, seed=0)[0]
    b = sample_inputs(info, Preprocess(mean=(127.5,), std=(127.5,)), count=4, seed=0)[0]
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, 8, 8, 3) and a.dtype == np.float32
    assert -1.0 <= a.min() and a.max() <= 1.0 and a.max() - a.min() > 1.5


def test_sample_inputs_for_integer_and_fixed_batch_inputs():
    (u8,) = sample_inputs([TensorInfo("x", (1, 4, 4, 3), "uint8")], Preprocess(), count=3, seed=0)
    assert u8.shape == (3, 4, 4, 3) and u8.dtype == np.uint8


def test_dynamic_spatial_dims_need_a_shape():
    info = [TensorInfo("x", (None, None, None, 3), "float32")]
    with pytest.raises(ConfigError, match="give a concrete input shape"):
        sample_inputs(info, Preprocess(), count=2, seed=0)
    assert sample_inputs(info, Preprocess(), count=2, seed=0, input_shape=(2, 5, 5, 3))[0].shape == (2, 5, 5, 3)


def test_to_layout_round_trip():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    assert to_layout(x, "NCHW", "NHWC").shape == (2, 4, 5, 3)
    np.testing.assert_array_equal(to_layout(to_layout(x, "NCHW", "NHWC"), "NHWC", "NCHW"), x)
    assert to_layout(x, "NHWC", "other") is x


def test_outputs_are_paired_by_shape_when_the_order_differs():
    boxes, scores = np.zeros((1, 10, 4)), np.eye(1, 3)
    diffs = compare_outputs([boxes, scores], [scores, boxes], names=["boxes", "scores"])
    assert [d.max_abs_diff for d in diffs] == [0.0, 0.0]


def test_transposed_feature_maps_are_compared_in_the_reference_layout():
    ref = np.random.default_rng(0).normal(size=(1, 4, 5, 6))
    (d,) = compare_outputs([ref], [ref.transpose(0, 2, 3, 1)], names=["f"])
    assert d.max_abs_diff == 0.0


@pytest.mark.parametrize(
    "diff, verdict",
    [
        (OutputDiff("p", 1e-6, 1e-6, 1.0), None),
        (OutputDiff("p", 0.5, 0.5, 1.0), "differs by 5.00e-01 relative"),
        (OutputDiff("p", 1e-6, 1e-6, 0.5), "top-1 agreement 50.0%"),
        (OutputDiff("p", float("inf"), float("inf"), None), "no counterpart"),
    ],
)
def test_judge(diff, verdict):
    result = judge([diff], Tolerance(rel=1e-3, min_top1=1.0))
    assert result == verdict if verdict is None else verdict in result


@pytest.mark.parametrize(
    "diff, verdict",
    [
        # A probability map that peaks at 5e-5 on the check inputs: float rounding of 1.4e-7 is 2.6e-3 relative.
        (OutputDiff("map", 1.4e-7, 2.6e-3, None), None),
        (OutputDiff("map", 2e-6, 2.6e-3, None), "differs by 2.60e-03 relative (max 1e-03), 2.00e-06 absolute (max 1e-06)"),
        (OutputDiff("map", 2e-6, 5e-4, None), None),  # within the relative tolerance
    ],
)
def test_judge_with_an_absolute_floor(diff, verdict):
    assert judge([diff], Tolerance(rel=1e-3, min_top1=1.0, atol=1e-6)) == (verdict if verdict is None else f"output 'map' {verdict}")
