"""Turn uint8 images into model inputs as a manifest's :class:`Preprocess` describes.

Example:
    >>> import numpy as np
    >>> from edgecv.manifest import Preprocess
    >>> x = to_model_input(np.full((1, 2, 2, 3), 255, np.uint8), Preprocess(layout="NCHW", mean=(0,), std=(255,)))
    >>> x.shape, float(x.max())
    ((1, 3, 2, 2), 1.0)
"""

from __future__ import annotations

import numpy as np

from edgecv.manifest import Preprocess


def normalize(pixels: np.ndarray, pre: Preprocess, *, channels_last: bool = True) -> np.ndarray:
    """``(pixels - mean) / std`` in float32, per channel when several values are given."""
    mean = np.asarray(pre.mean, dtype=np.float32)
    std = np.asarray(pre.std, dtype=np.float32)
    if pixels.ndim == 4 and mean.size > 1:
        shape = (1, 1, 1, -1) if channels_last else (1, -1, 1, 1)
        mean, std = mean.reshape(shape), std.reshape(shape)
    return (pixels.astype(np.float32) - mean) / std


def to_model_input(images: np.ndarray, pre: Preprocess, *, dtype: str = "float32") -> np.ndarray:
    """RGB uint8 images ``[N, H, W, C]`` -> the model's input: colour order, normalization, layout, dtype."""
    if images.ndim != 4:
        raise ValueError(f"images: expected shape [N, H, W, C], got {images.shape}")
    if pre.color == "BGR":
        images = images[..., ::-1]
    elif pre.color == "GRAY" and images.shape[-1] == 3:
        images = (images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    if np.dtype(dtype) == np.int8:
        x = (images.astype(np.int16) - 128).astype(np.int8)  # int8 models take pixels shifted by 128
    elif np.issubdtype(np.dtype(dtype), np.integer):
        x = images.astype(dtype)
    else:
        x = normalize(images, pre).astype(dtype)
    if pre.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x)
