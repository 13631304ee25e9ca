import numpy as np
import pytest

from edgecv.tensors import QuantParams, TensorInfo, guess_layout, normalize_shape


@pytest.mark.parametrize(
    "shape, layout",
    [
        ((1, 224, 224, 3), "NHWC"),
        ((1, 3, 224, 224), "NCHW"),
        ((1, 28, 28, 1), "NHWC"),
        ((1, 1, 28, 28), "NCHW"),
        ((None, 64, 64, 3), "NHWC"),
        ((1, 3, 3, 3), "NHWC"),  # ambiguous: channels-last wins, a manifest can say otherwise
        ((1, 10), "NC"),
        ((1, 896, 16), "other"),
        ((1, 5, 7, 9), "other"),
    ],
)
def test_guess_layout(shape, layout):
    assert guess_layout(shape) == layout


def test_normalize_shape_marks_dynamic_dims_as_none():
    assert normalize_shape([-1, 0, "N", None, 3]) == (None, None, None, None, 3)


@pytest.mark.parametrize("dtype, zero", [(np.uint8, 128), (np.int8, 0)])
def test_quantize_dequantize_round_trip_within_half_a_step(dtype, zero):
    q = QuantParams((0.05,), (zero,))
    x = np.linspace(-3, 3, 101, dtype=np.float32)
    back = q.dequantize(q.quantize(x, np.dtype(dtype)))
    assert np.max(np.abs(back - x)) <= 0.05 / 2 + 1e-6


def test_quantize_saturates_at_the_dtype_limits():
    q = QuantParams((0.1,), (0,))
    assert q.quantize(np.array([100.0, -100.0]), np.dtype(np.int8)).tolist() == [127, -128]


def test_per_channel_dequantize_uses_the_axis():
    q = QuantParams((1.0, 2.0), (0, 1), axis=1)
    out = q.dequantize(np.array([[3, 3]], np.int8))
    assert out.tolist() == [[3.0, 4.0]]


def test_tensor_info_describe_and_dict():
    info = TensorInfo("x", (None, 3, 8, 8), "float32", quant=None)
    assert info.describe() == "x ?x3x8x8 float32 NCHW"
    assert info.to_dict() == {"name": "x", "shape": [None, 3, 8, 8], "dtype": "float32", "layout": "NCHW"}
