"""Check an artifact against its source: same inputs, compare outputs, decide pass or fail.

Example:
    >>> import numpy as np
    >>> ref = [np.array([[0.1, 0.9], [0.8, 0.2]], np.float32)]
    >>> d = compare_outputs(ref, [ref[0] + 1e-6], names=["probs"])[0]
    >>> d.top1_agreement, d.max_abs_diff < 1e-5
    (1.0, True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgecv.errors import ConfigError
from edgecv.manifest import Preprocess
from edgecv.preprocess import normalize
from edgecv.tensors import TensorInfo

_TO_NHWC = (0, 2, 3, 1)
_TO_NCHW = (0, 3, 1, 2)


@dataclass(frozen=True)
class Tolerance:
    """An artifact passes when every output's ``max|diff| / max|reference|`` is at most ``rel`` (or its
    ``max|diff|`` at most ``atol``) and top-1 agreement (for class-score outputs) is at least ``min_top1``.

    ``atol`` is for outputs near zero on the check inputs (a text detector's probability map on images
    without text peaks at 5e-5): float rounding of 1e-7 there is a large relative difference but none
    that matters."""

    rel: float
    min_top1: float
    atol: float = 0.0


@dataclass(frozen=True)
class OutputDiff:
    name: str
    max_abs_diff: float
    rel_diff: float
    top1_agreement: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def sample_inputs(
    inputs: list[TensorInfo],
    preprocess: Preprocess,
    *,
    count: int,
    seed: int,
    input_shape: tuple[int, ...] | None = None,
) -> list[np.ndarray]:
    """Deterministic image-like inputs: pixels 0..255 (half noise, half smooth blocks), normalized."""
    rng = np.random.default_rng(seed)
    arrays = []
    for k, info in enumerate(inputs):
        shape = list(input_shape) if (input_shape and k == 0) else list(info.shape)
        if shape and shape[0] in (None, 1):
            shape[0] = count  # a fixed batch of 1 is run once per sample by edgecv's Model
        if any(d is None for d in shape):
            dims = "x".join("?" if d is None else str(d) for d in info.shape)
            raise ConfigError(f"input {info.name!r} is {dims}, with dynamic dims: give a concrete input shape "
                              "(--input-shape, input_shape=, sets the first input's)")
        pixels = rng.uniform(0, 255, size=shape)
        if len(shape) == 4 and shape[0] > 1:
            half = shape[0] // 2
            pixels[half:] = _smooth(rng, [shape[0] - half, *shape[1:]])
        dtype = np.dtype(info.dtype)
        if np.issubdtype(dtype, np.integer):
            offset = 128 if dtype == np.int8 else 0
            arrays.append((np.rint(pixels) - offset).astype(dtype))
            continue
        arrays.append(normalize(pixels, preprocess, channels_last=info.layout != "NCHW").astype(dtype))
    return arrays


def _smooth(rng: np.random.Generator, shape: list[int]) -> np.ndarray:
    """Blocky low-frequency images: a coarse random grid repeated up to full size."""
    n, a, b, c = shape
    coarse = rng.uniform(0, 255, size=(n, max(1, a // 8 + 1), max(1, b // 8 + 1), c))
    full = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)
    return full[:, :a, :b, :]


def to_layout(array: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Transpose a 4-D array between NHWC and NCHW; other cases pass through."""
    if array.ndim != 4 or src == dst or {src, dst} != {"NHWC", "NCHW"}:
        return array
    return np.ascontiguousarray(array.transpose(_TO_NHWC if dst == "NHWC" else _TO_NCHW))


def _pair(shape: tuple[int, ...], got: np.ndarray) -> np.ndarray | None:
    """``got`` arranged to ``shape``, allowing a layout transpose or a squeezed/added unit axis."""
    if got.shape == shape:
        return got
    if got.ndim == 4:
        for perm in (_TO_NHWC, _TO_NCHW):
            if got.transpose(perm).shape == shape:
                return got.transpose(perm)
    if got.size == int(np.prod(shape)) and tuple(d for d in got.shape if d != 1) == tuple(d for d in shape if d != 1):
        return got.reshape(shape)
    return None


def match_outputs(shapes: list[tuple[int, ...]], got: list[np.ndarray]) -> list[np.ndarray | None]:
    """For each source output shape, in order, the first artifact output not yet taken that can be arranged to
    it; None where none can. Converters may reorder outputs (TFLite does), so order alone is not enough."""
    remaining = [np.asarray(g) for g in got]
    matched: list[np.ndarray | None] = []
    for shape in shapes:
        match = None
        for i, g in enumerate(remaining):
            match = _pair(tuple(shape), g)
            if match is not None:
                remaining.pop(i)
                break
        matched.append(match)
    return matched


def compare_outputs(reference: list[np.ndarray], got: list[np.ndarray], *, names: list[str]) -> list[OutputDiff]:
    """Compare outputs pairwise. Outputs are matched by order, or by shape when the order differs."""
    diffs = []
    for name, ref, match in zip(names, reference, match_outputs([r.shape for r in reference], got)):
        if match is None:
            diffs.append(OutputDiff(name, float("inf"), float("inf"), None))
            continue
        r = ref.astype(np.float64)
        m = match.astype(np.float64)
        max_abs = float(np.max(np.abs(r - m))) if r.size else 0.0
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        rel = max_abs / scale if scale > 0 else max_abs
        top1 = None
        if r.ndim == 2 and r.shape[1] > 1:
            top1 = float(np.mean(np.argmax(r, axis=1) == np.argmax(m, axis=1)))
        diffs.append(OutputDiff(name, max_abs, rel, top1))
    return diffs


def judge(diffs: list[OutputDiff], tol: Tolerance) -> str | None:
    """None when the artifact passes, else the reason it fails."""
    for d in diffs:
        if not np.isfinite(d.rel_diff):
            return f"output {d.name!r} has no counterpart of the same shape in the artifact"
        if d.rel_diff > tol.rel and d.max_abs_diff > tol.atol:
            return f"output {d.name!r} differs by {d.rel_diff:.2e} relative (max {tol.rel:.0e}), {d.max_abs_diff:.2e} absolute (max {tol.atol:.0e})"
        if d.top1_agreement is not None and d.top1_agreement < tol.min_top1:
            return f"output {d.name!r} top-1 agreement {d.top1_agreement:.1%} (min {tol.min_top1:.0%})"
    return None
