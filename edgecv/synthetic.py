"""Synthetic images made with numpy alone: coloured shapes on textured backgrounds, with exact labels.

They feed the built-in default model and tests, so nothing has to be downloaded.

Example:
    >>> images, labels = shape_images(4, size=32, seed=0)
    >>> images.shape, images.dtype, labels.tolist()
    ((4, 32, 32, 3), dtype('uint8'), [0, 1, 2, 3])
"""

from __future__ import annotations

import numpy as np

SHAPE_CLASSES = ("circle", "square", "triangle", "cross")


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A background of smooth colour gradients plus fine noise, different every time."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(40, 200, size=3)
    gx, gy = rng.uniform(-60, 60, size=(2, 3))
    img = base + gx * xx[..., None] + gy * yy[..., None]
    freq = rng.uniform(2, 8)
    img += 15 * np.sin(2 * np.pi * freq * (xx + rng.uniform()) )[..., None]
    img += rng.normal(0, 8, size=(size, size, 3))
    return img


def _mask(kind: str, size: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    if kind == "circle":
        return dx * dx + dy * dy <= r * r
    if kind == "square":
        return (np.abs(u) <= r * 0.85) & (np.abs(v) <= r * 0.85)
    if kind == "triangle":
        # An equilateral triangle pointing up in the rotated frame.
        return (v <= r * 0.5) & (np.sqrt(3) * u - v <= r) & (-np.sqrt(3) * u - v <= r)
    if kind == "cross":
        w = r * 0.3
        return ((np.abs(u) <= w) & (np.abs(v) <= r)) | ((np.abs(v) <= w) & (np.abs(u) <= r))
    raise ValueError(f"unknown shape {kind!r}; choose from {SHAPE_CLASSES}")


def shape_images(count: int, *, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` RGB uint8 images, one shape each, and their class ids (cycling through the classes)."""
    rng = np.random.default_rng(seed)
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    labels = np.arange(count) % len(SHAPE_CLASSES)
    for i, label in enumerate(labels):
        img = _texture(rng, size)
        r = rng.uniform(0.18, 0.32) * size
        cx, cy = rng.uniform(r, size - r, size=2)
        mask = _mask(SHAPE_CLASSES[label], size, cx, cy, r, rng.uniform(0, np.pi))
        colour = rng.uniform(0, 255, size=3)
        # Keep the shape visible against its background.
        if np.abs(colour - img[mask].mean(axis=0)).sum() < 120:
            colour = 255 - colour
        img[mask] = colour + rng.normal(0, 6, size=(int(mask.sum()), 3))
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    return images, labels
