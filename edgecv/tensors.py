"""Descriptions of a model's input and output tensors, the same for every backend.

Example:
    >>> info = TensorInfo(name="images", shape=(1, 224, 224, 3), dtype="float32")
    >>> info.layout
    'NHWC'
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LAYOUTS = ("NHWC", "NCHW", "NC", "other")


@dataclass(frozen=True)
class QuantParams:
    """Affine quantization of an integer tensor: ``real = (q - zero_point) * scale``.

    ``scale`` and ``zero_point`` are tuples with one value per tensor, or one per channel along ``axis``.
    """

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int = 0

    @property
    def per_tensor(self) -> bool:
        return len(self.scale) == 1

    def quantize(self, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
        info = np.iinfo(dtype)
        scale, zero = self._broadcast(x.ndim)
        q = np.rint(np.asarray(x, dtype=np.float32) / scale) + zero
        return np.clip(q, info.min, info.max).astype(dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        scale, zero = self._broadcast(q.ndim)
        return (q.astype(np.float32) - zero) * scale

    def _broadcast(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        scale = np.asarray(self.scale, dtype=np.float32)
        zero = np.asarray(self.zero_point, dtype=np.float32)
        if self.per_tensor:
            return scale[0], zero[0]
        shape = [1] * ndim
        shape[self.axis] = -1
        return scale.reshape(shape), zero.reshape(shape)

    def to_dict(self) -> dict:
        return {"scale": list(self.scale), "zero_point": list(self.zero_point), "axis": self.axis}

    @classmethod
    def from_dict(cls, d: dict) -> QuantParams:
        return cls(tuple(float(s) for s in d["scale"]), tuple(int(z) for z in d["zero_point"]), int(d.get("axis", 0)))


@dataclass(frozen=True)
class TensorInfo:
    """One input or output: name, shape (None for a dynamic dimension), dtype, layout, quantization."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str
    layout: str = ""
    quant: QuantParams | None = None
    index: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
        if not self.layout:
            object.__setattr__(self, "layout", guess_layout(self.shape))

    @property
    def is_quantized(self) -> bool:
        return self.quant is not None and np.issubdtype(np.dtype(self.dtype), np.integer)

    @property
    def batch_dynamic(self) -> bool:
        return len(self.shape) > 0 and self.shape[0] is None

    def describe(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        text = f"{self.name} {dims} {self.dtype}"
        if self.layout not in ("", "other"):
            text += f" {self.layout}"
        if self.quant is not None and self.quant.per_tensor:
            text += f" (scale {self.quant.scale[0]:.6g}, zero {self.quant.zero_point[0]})"
        return text

    def to_dict(self) -> dict:
        d = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "layout": self.layout}
        if self.quant is not None:
            d["quantization"] = self.quant.to_dict()
        return d


def guess_layout(shape: tuple[int | None, ...]) -> str:
    """Guess NHWC or NCHW for a 4-D image tensor from where the 1-, 3- or 4-channel axis sits."""
    if len(shape) == 2:
        return "NC"
    if len(shape) != 4:
        return "other"
    channels = (1, 3, 4)
    if shape[3] in channels and shape[1] not in channels:
        return "NHWC"
    if shape[1] in channels and shape[3] not in channels:
        return "NCHW"
    if shape[3] in channels:
        return "NHWC"
    return "other"


def normalize_shape(dims) -> tuple[int | None, ...]:
    """Turn a runtime's shape (with -1, 0, None, '?' or symbolic names for dynamic dims) into ints/None."""
    out: list[int | None] = []
    for d in dims:
        if isinstance(d, (int, np.integer)) and int(d) > 0:
            out.append(int(d))
        else:
            out.append(None)
    return tuple(out)
