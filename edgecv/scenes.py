"""Synthetic scenes with exact ground truth, numpy only: shapes over clutter, as still frames or video.

Objects of the :data:`CLASSES` shapes, each of random colour (so only the shape tells the class), size, aspect
and rotation, are drawn in depth order over textured backgrounds with clutter that is none of the classes
(strokes, lobed blobs, rings), then lit unevenly, blurred and noised like a camera.

Ground truth is one :class:`~edgecv.detection.Detections` per frame, in pixel-edge coordinates (pixel column
``c`` spans ``[c, c + 1)``): ``xyxy`` is the tight box of all the object's pixels inside the frame, hidden ones
included (an object wholly inside gets its full extent; a cut one the extent of its in-frame part, for a rotated
shape possibly tighter than its full box clipped to the frame); ``confidence`` is 1; ``class_id`` indexes
:data:`CLASSES`; ``data["visibility"]`` is the share of all the object's pixels that are inside the frame and not
hidden by nearer objects. Objects with visibility 0 or under ``min_visibility`` are left out of that frame's
truth. :class:`SceneVideo` adds ``tracker_id``: identities from 1, never reused once an object has left.

Example:
    >>> frames, truth = scene_frames(2, seed=0)
    >>> frames.shape, frames.dtype, len(truth)
    ((2, 160, 160, 3), dtype('uint8'), 2)
    >>> [CLASSES[c] for c in truth[0].class_id], [round(float(v), 2) for v in truth[0].data["visibility"]]
    (['triangle', 'disc'], [1.0, 0.79])
    >>> video = SceneVideo(seed=0)
    >>> frame, gt = video.step()
    >>> frame.shape, gt.tracker_id.tolist(), gt.xyxy[0].tolist()
    ((160, 160, 3), [1, 2], [86.0, 0.0, 136.0, 25.0])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator

import numpy as np

from edgecv.detection.detections import Detections
from edgecv.errors import ConfigError

CLASSES = ("disc", "box", "triangle", "cross")

_F32 = np.float32


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v: Any, lo: float, hi: float) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and lo <= v <= hi


@dataclass(frozen=True)
class SceneOptions:
    """How scenes look.

    Object size (sqrt of width x height before rotation) is a share of ``min(height, width)``, drawn
    log-uniformly from ``[min_scale, max_scale]``; ``aspect_range`` bounds width / height (log-uniform);
    ``rotation`` is the largest rotation in degrees; ``texture`` (0 = flat colour) and ``lighting`` (0 = none)
    are strengths in [0, 1]; ``noise`` is the largest read-noise sigma on the 0..255 scale (shot noise of up to
    that sigma at full white comes on top); ``blur`` the largest Gaussian blur sigma in pixels; ``distractors``
    the most clutter shapes; ``max_occlusion`` the largest share of an object that nearer ones may hide in
    still frames (video objects cross freely); ``min_visibility`` the least visibility kept in the truth.
    """

    size: tuple[int, int] = (160, 160)  # (height, width)
    min_objects: int = 1
    max_objects: int = 6
    min_scale: float = 0.05
    max_scale: float = 0.45
    aspect_range: tuple[float, float] = (0.6, 1.6)
    rotation: float = 30.0
    texture: float = 1.0
    distractors: int = 4
    lighting: float = 0.5
    noise: float = 8.0
    blur: float = 1.0
    max_occlusion: float = 0.6
    min_visibility: float = 0.2

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise ConfigError(f"SceneOptions.{name}: expected {expected}, got {getattr(self, name)!r}")

        size, aspect = self.size, self.aspect_range
        pair = isinstance(size, (tuple, list)) and len(size) == 2
        need(pair and all(_is_int(s) and s >= 16 for s in size), "size", "(height, width) integers >= 16")
        need(_is_int(self.min_objects) and 0 <= self.min_objects <= 100, "min_objects", "an integer in [0, 100]")
        need(_is_int(self.max_objects) and self.min_objects <= self.max_objects <= 100, "max_objects",
             f"an integer in [{self.min_objects}, 100]")
        low = 2 / min(size)  # objects of at least 2 px
        need(_is_num(self.min_scale, low, 1), "min_scale", f"a number in [{low:.3g}, 1]")
        need(_is_num(self.max_scale, self.min_scale, 1), "max_scale", f"a number in [{self.min_scale}, 1]")
        pair = isinstance(aspect, (tuple, list)) and len(aspect) == 2 and _is_num(aspect[0], 0.1, 10)
        need(pair and _is_num(aspect[1], aspect[0], 10), "aspect_range", "(low, high) with 0.1 <= low <= high <= 10")
        for name, hi in (("rotation", 180), ("texture", 1), ("lighting", 1), ("noise", 100), ("blur", 8)):
            need(_is_num(getattr(self, name), 0, hi), name, f"a number in [0, {hi}]")
        need(_is_int(self.distractors) and 0 <= self.distractors <= 100, "distractors", "an integer in [0, 100]")
        for name in ("max_occlusion", "min_visibility"):
            need(_is_num(getattr(self, name), 0, 1), name, "a share in [0, 1]")
        object.__setattr__(self, "size", tuple(size))  # lists (from YAML) become tuples
        object.__setattr__(self, "aspect_range", tuple(aspect))


class _Obj:
    """One object: class, geometry, look, motion (video) and, after :meth:`raster`, its pixels."""

    def __init__(self, rng: np.random.Generator, o: SceneOptions) -> None:
        lo, hi = o.aspect_range
        self.kind = int(rng.integers(len(CLASSES)))
        self.size = min(o.size) * math.exp(rng.uniform(math.log(o.min_scale), math.log(o.max_scale)))
        self.aspect = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        self.angle = math.radians(rng.uniform(-o.rotation, o.rotation))
        self.colour = rng.uniform(0, 255, 3).astype(_F32)
        self.shade = rng.uniform(-0.15, 0.15, 2)
        self.depth = float(rng.uniform())
        self.cx = self.cy = self.vx = self.vy = self.growth = 0.0
        self.ident = 0

    def extent(self) -> tuple[float, float, float, float]:
        """Half width and height of the unrotated shape, then of its rotated bounding box."""
        hx, hy = self.size * math.sqrt(self.aspect) / 2, self.size / math.sqrt(self.aspect) / 2
        c, s = abs(math.cos(self.angle)), abs(math.sin(self.angle))
        return hx, hy, c * hx + s * hy, s * hx + c * hy

    def raster(self, h: int, w: int) -> _Obj:
        """Mask the shape over its own window (which may reach outside the frame), then keep the in-frame part."""
        hx, hy, ex, ey = self.extent()
        x0, y0 = math.floor(self.cx - ex), math.floor(self.cy - ey)
        xs = (np.arange(x0, math.ceil(self.cx + ex), dtype=_F32) + 0.5 - self.cx)[None, :]
        ys = (np.arange(y0, math.ceil(self.cy + ey), dtype=_F32) + 0.5 - self.cy)[:, None]
        c, s = math.cos(self.angle), math.sin(self.angle)
        u, v = (c * xs + s * ys) / hx, (c * ys - s * xs) / hy  # object frame: the shape fills [-1, 1]^2
        au, av = np.abs(u), np.abs(v)
        if self.kind == 0:
            m = u * u + v * v <= 1
        elif self.kind == 1:
            m = (au <= 1) & (av <= 1)
        elif self.kind == 2:
            m = (v <= 1) & (2 * au <= v + 1)  # apex at v = -1, base at v = 1
        else:
            m = ((au <= 0.3) & (av <= 1)) | ((av <= 0.3) & (au <= 1))
        fy0, fx0 = max(y0, 0), max(x0, 0)
        fy1, fx1 = max(min(y0 + m.shape[0], h), fy0), max(min(x0 + m.shape[1], w), fx0)
        win = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
        self.total, self.crop, self.inside = np.count_nonzero(m), (slice(fy0, fy1), slice(fx0, fx1)), m[win]
        self.count = np.count_nonzero(self.inside)
        rows, cols = np.flatnonzero(self.inside.any(axis=1)), np.flatnonzero(self.inside.any(axis=0))
        self.box = (fx0 + cols[0], fy0 + rows[0], fx0 + cols[-1] + 1, fy0 + rows[-1] + 1) if self.count else (0,) * 4
        self.fill = 1 + self.shade[0] * u[win][self.inside] + self.shade[1] * v[win][self.inside]  # per in-frame pixel
        return self

    # One channel at a time in both: a boolean mask over one plane is several times faster than over three.
    def draw(self, img: np.ndarray, labels: np.ndarray, index: int) -> None:
        """Paint into planar ``img [3, H, W]``; mark ``labels [H, W]`` with ``index``."""
        for plane, value in zip(img, self.colour):
            plane[self.crop][self.inside] = value * self.fill
        labels[self.crop][self.inside] = index

    def draw_hwc(self, img: np.ndarray, labels: np.ndarray, index: int, reverse: bool = False) -> None:
        """:meth:`draw` into ``img [H, W, 3]`` (its channels in reverse order with ``reverse``)."""
        window = img[self.crop]
        for ch, value in enumerate(self.colour[::-1] if reverse else self.colour):
            window[..., ch][self.inside] = self.fill * value
        labels[self.crop][self.inside] = index

    def contrast(self, rng: np.random.Generator, img: np.ndarray) -> None:
        """Push the colour away from the background under the object when the two are too alike."""
        under = img[:, self.crop[0], self.crop[1]][:, self.inside]
        mean = under.mean(axis=1) if under.size else img.mean(axis=(1, 2))
        if np.abs(self.colour - mean).sum() < 120:
            up, down = rng.uniform(np.minimum(mean + 70, 255), 255), rng.uniform(0, np.maximum(mean - 70, 0))
            self.colour = np.where(mean < 128, up, down).astype(_F32)


@lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel rows ``[h, 1]`` and columns ``[1, w]`` scaled to [-1, 1] (cached: callers only read them)."""
    return np.linspace(-1, 1, h, dtype=_F32)[:, None], np.linspace(-1, 1, w, dtype=_F32)[None, :]


@lru_cache(maxsize=64)
def _hat(n: int, g: int) -> np.ndarray:
    """``[n, g]`` linear-interpolation weights from ``g`` grid points to ``n`` pixels."""
    pos = np.linspace(0, g - 1, n, dtype=_F32)[:, None]
    return np.maximum(0, 1 - np.abs(pos - np.arange(g, dtype=_F32)[None, :]))


def _gauss(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Unit-variance, near-Gaussian noise: the sum of two random bytes, five times faster than normals."""
    b = np.frombuffer(rng.bytes(2 * math.prod(shape)), np.uint8).reshape(2, *shape)
    return (b[0].astype(_F32) + b[1] - 255) * _F32(1 / math.sqrt(2 * (256**2 - 1) / 12))


def _smooth(plane: np.ndarray, k: np.ndarray, axis: int = 0) -> np.ndarray:
    """``plane`` convolved with the odd kernel ``k`` along ``axis`` (0 or 1), edges repeated.

    Along axis 1 the work stays in the array's own memory order (no transposed copies); either way each output
    is ``k[0] * x[0] + k[1] * x[1] + ...`` in that order, so the two axes give the same numbers as a transpose.
    """
    r, n = len(k) // 2, plane.shape[axis]
    first, last = (plane[:1], plane[-1:]) if axis == 0 else (plane[:, :1], plane[:, -1:])
    pad = np.concatenate([first.repeat(r, axis), plane, last.repeat(r, axis)], axis=axis)
    window = (lambda i: pad[i : i + n]) if axis == 0 else (lambda i: pad[:, i : i + n])
    out = k[0] * window(0)
    tmp = np.empty_like(out)
    for i in range(1, len(k)):
        out += np.multiply(k[i], window(i), out=tmp)
    return out


def _background(rng: np.random.Generator, o: SceneOptions, out: np.ndarray | None = None) -> np.ndarray:
    """Gradient, stripes, smooth blotches and grain, then clutter: planar float32 ``[3, H, W]``.

    Work goes plane by plane, as everywhere here: whole-frame temporaries are slow (fresh pages every time).
    """
    h, w = o.size
    yn, xn = _grid(h, w)
    img = np.empty((3, h, w), _F32) if out is None else out
    img[:] = rng.uniform(30, 225, (3, 1, 1))
    t = o.texture
    if t > 0:
        g = (rng.uniform(-60, 60, (2, 3, 1, 1)) * t).astype(_F32)
        img += g[0] * xn
        img += g[1] * yn
        th, freq, phase = rng.uniform(0, math.pi), rng.uniform(2, 14), rng.uniform(0, 7)
        stripes = (rng.uniform(-30, 30, 3) * t * (rng.random() < 0.6)).astype(_F32)
        wave = np.sin(math.pi * freq * (math.cos(th) * xn + math.sin(th) * yn) + phase)
        gh, gw = rng.integers(3, 12, 2)
        blot = (rng.standard_normal((3, gh, gw)) * rng.uniform(5, 30) * t).astype(_F32)
        ah, aw = _hat(h, gh), _hat(w, gw).T
        grain = _gauss(rng, (h, w)) * _F32(rng.uniform(0, 8) * t)
        for c in range(3):
            img[c] += stripes[c] * wave
            img[c] += ah @ blot[c] @ aw
            img[c] += grain
    side = min(h, w)
    for _ in range(int(rng.integers(0, o.distractors + 1))):
        _clutter(rng, img, side * o.min_scale, side * min(o.max_scale, 0.3))
    return img


def _clutter(rng: np.random.Generator, img: np.ndarray, lo: float, hi: float) -> None:
    """A stroke, a lobed blob or a ring, shaded like the objects."""
    h, w = img.shape[1:]
    r = max(rng.uniform(lo, max(hi, lo)) / 2, 3.0)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    x0, y0 = max(math.floor(cx - r), 0), max(math.floor(cy - r), 0)
    xs = (np.arange(x0, min(math.ceil(cx + r), w), dtype=_F32) + 0.5 - cx)[None, :]
    ys = (np.arange(y0, min(math.ceil(cy + r), h), dtype=_F32) + 0.5 - cy)[:, None]
    kind, rad = rng.integers(3), np.hypot(xs, ys)
    if kind == 0:
        c, s = math.cos(th := rng.uniform(0, math.pi)), math.sin(th)
        m = (np.abs(c * xs + s * ys) <= r) & (np.abs(c * ys - s * xs) <= rng.uniform(0.7, 2.0))
    elif kind == 1:
        a, k = rng.uniform(0.25, 0.45), int(rng.integers(5, 9))
        m = rad <= r * (1 + a * np.sin(k * np.arctan2(ys, xs) + rng.uniform(0, 7))) / (1 + a)
    else:
        m = (rad <= r) & (rad >= r * rng.uniform(0.45, 0.8))
    shade = 1 + rng.uniform(-0.15, 0.15) * xs / r + rng.uniform(-0.15, 0.15) * ys / r
    img[:, y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]][:, m] = rng.uniform(0, 255, (3, 1)).astype(_F32) * shade[m]


def _light_params(rng: np.random.Generator, strength: float) -> np.ndarray:
    """log gain, offset, x and y illumination slopes, shadow depth, shadow direction, shadow position."""
    shadow = rng.uniform(0, 0.6) if rng.random() < 0.5 else 0.0
    p = np.array([rng.uniform(-0.35, 0.35), rng.uniform(-35, 35), *rng.uniform(-0.4, 0.4, 2), shadow])
    return np.array([*(p * strength), rng.uniform(0, 2 * math.pi), rng.uniform(-0.8, 0.8)])


def _camera_params(rng: np.random.Generator, o: SceneOptions) -> tuple[float, float, float]:
    """Blur sigma, read-noise sigma, shot-noise variance per unit of intensity."""
    return rng.uniform(0, o.blur), rng.uniform(0, o.noise), rng.uniform(0, o.noise**2 / 255)


def _camera(rng: np.random.Generator, img: np.ndarray, light: np.ndarray, cam: tuple[float, ...]) -> np.ndarray:
    """Lighting, Gaussian blur, read and shot noise on planar ``img`` (changed in place); uint8 ``[H, W, 3]``."""
    h, w = img.shape[1:]
    sigma, read, shot = cam
    if light[:5].any():
        yn, xn = _grid(h, w)
        field = _F32(math.exp(light[0])) * (1 + _F32(light[2]) * xn + _F32(light[3]) * yn)
        if light[4] > 0:  # a soft-edged shadow over part of the frame
            d = _F32(math.cos(light[5])) * xn + _F32(math.sin(light[5])) * yn - _F32(light[6])
            field = field * (1 - _F32(light[4]) / (1 + np.exp(-8 * d)))
        img *= np.clip(field, _F32(0.05), np.inf)
        img += _F32(light[1])
    r = math.ceil(2 * sigma)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / max(sigma, 1e-3)) ** 2)
    k = (k / k.sum()).astype(_F32)
    for c in range(3):
        plane = img[c]
        if sigma >= 0.3:
            plane = _smooth(_smooth(plane, k), k, axis=1)
        if read > 0 or shot > 0:
            sd = np.clip(plane, 0, np.inf)
            sd *= _F32(shot)
            sd += _F32(read * read)
            plane += _gauss(rng, (h, w)) * np.sqrt(sd, out=sd)
        img[c] = plane
    img += 0.5
    return np.clip(img, 0, 255, out=img).astype(np.uint8).transpose(1, 2, 0)


class _VideoCamera:
    """:func:`_camera` for a video, at a fraction of the cost per frame: what does not change between frames is
    done once, and the frame is built in its final pixel order ``[H, W, 3]``. The static background is blurred
    once and each frame blurs only the windows around its objects (the same result: blur is local); the
    lighting field is built from per-row and per-column factors (its shadow edge is a sigmoid of a linear
    function, whose exponential is a product of the two); the noise is a view at a random offset into a bank
    made once, scaled per pixel by the read and shot noise of its intensity. ``render`` returns a new frame,
    its channels in reverse order with ``reverse`` (BGR: no per-frame conversion for OpenCV)."""

    NOISE_PAD = 32

    def __init__(self, rng: np.random.Generator, background: np.ndarray, cam: tuple[float, ...],
                 reverse: bool = False) -> None:
        sigma, read, shot = cam
        self._rng = rng
        self._reverse = reverse
        hwc = background.transpose(1, 2, 0)
        self._bg = np.ascontiguousarray(hwc[..., ::-1] if reverse else hwc)  # [H, W, 3]
        r = math.ceil(2 * sigma)
        k = np.exp(-0.5 * (np.arange(-r, r + 1) / max(sigma, 1e-3)) ** 2)
        self._kernel = (k / k.sum()).astype(_F32)
        self._radius = r if sigma >= 0.3 else 0
        self._blurred = self._blur(self._bg) if self._radius else self._bg  # contiguous: read as [H, W * 3]
        self._read2, self._shot = _F32(read * read), _F32(shot)
        h, w, c = self._bg.shape
        pad = self.NOISE_PAD
        self._noise = _gauss(rng, (h + pad, w + pad, c)) if read > 0 or shot > 0 else None
        self._work, self._raw, self._sd = (np.empty_like(self._bg) for _ in range(3))
        self._field, self._shade = np.empty((h, w * c), _F32), np.empty((h, w * c), _F32)

    def _blur(self, img: np.ndarray) -> np.ndarray:
        """``img [h, w, 3]`` blurred down its columns, then along its rows."""
        return _smooth(_smooth(img, self._kernel), self._kernel, axis=1)

    def render(self, objs: list[_Obj], labels: np.ndarray, light: np.ndarray) -> np.ndarray:
        """The frame of ``objs`` (rastered, far to near) under ``light``; ``labels`` gets their indices."""
        img, (h, w, c) = self._work, self._bg.shape
        flat = img.reshape(h, w * c)
        field = self._light_field(h, w, c, light) if light[:5].any() else None
        if field is None:
            np.copyto(img, self._blurred)
        else:  # copied and lit in one pass
            np.multiply(self._blurred.reshape(h, w * c), field, out=flat)
        if objs:
            # Objects over the unblurred background, then each object's surroundings blurred (and lit) from
            # there: pixels within r of an object change, and their blur reads up to 2r away.
            r = self._radius
            windows = [(_grow(ob.crop[0], 2 * r, h), _grow(ob.crop[1], 2 * r, w), _grow(ob.crop[0], r, h),
                        _grow(ob.crop[1], r, w)) for ob in objs]
            y0, y1 = min(wy.start for wy, *_ in windows), max(wy.stop for wy, *_ in windows)
            x0, x1 = min(wx.start for _, wx, *_ in windows), max(wx.stop for _, wx, *_ in windows)
            raw = self._raw
            raw[y0:y1, x0:x1] = self._bg[y0:y1, x0:x1]
            for index, ob in enumerate(objs):
                ob.draw_hwc(raw, labels, index, self._reverse)
            for wy, wx, oy, ox in windows:
                part = self._blur(raw[wy, wx]) if r else raw[wy, wx]
                part = part[oy.start - wy.start : oy.stop - wy.start, ox.start - wx.start : ox.stop - wx.start]
                if field is None:
                    img[oy, ox] = part
                else:
                    lit = field[oy, ox.start * c : ox.stop * c].reshape(part.shape)
                    np.multiply(part, lit, out=img[oy, ox])
        if field is not None:
            flat += _F32(light[1])
        if self._noise is not None:
            dy, dx = self._rng.integers(0, self.NOISE_PAD + 1, 2)
            sd = self._sd
            np.clip(img, 0, np.inf, out=sd)  # max(img, 0), three times faster than np.maximum with a scalar
            sd *= self._shot
            sd += self._read2
            np.sqrt(sd, out=sd)
            sd *= self._noise[dy : dy + h, dx : dx + w]
            img += sd
        img += 0.5
        np.clip(img, 0, 255, out=img)
        return img.astype(np.uint8)

    def _light_field(self, h: int, w: int, c: int, light: np.ndarray) -> np.ndarray:
        """:func:`_camera`'s lighting gain as ``[H, W * 3]`` (each pixel's value for its three channels)."""
        yn, xn = _grid(h, w)
        x3 = np.repeat(xn[0], c)[None, :]
        field = self._field
        np.add(_F32(math.exp(light[0])) * (1 + _F32(light[2]) * x3), _F32(math.exp(light[0]) * light[3]) * yn, out=field)
        if light[4] > 0:  # shadow: 1 - depth * sigmoid(8 d), d = cos * x + sin * y - position
            ex = np.exp(-8 * _F32(math.cos(light[5])) * x3)
            ey = np.exp(-8 * (_F32(math.sin(light[5])) * yn - _F32(light[6])))
            shade = np.multiply(ey, ex, out=self._shade)
            shade += 1
            np.reciprocal(shade, out=shade)
            shade *= -_F32(light[4])
            shade += 1
            field *= shade
        # the gain never drops below 0.05: skip the clamp when its two parts' minima already ensure that
        # (the shade is at least 1 - depth)
        ends_x, ends_y = (float(x3[0, 0]), float(x3[0, -1])), (float(yn[0, 0]), float(yn[-1, 0]))
        low = math.exp(light[0]) * (min(1 + light[2] * x for x in ends_x) + min(light[3] * y for y in ends_y))
        depth = max(light[4], 0.0)
        low = low * (1 - depth) if low > 0 and depth < 1 else 0.0
        return field if low >= 0.06 else np.clip(field, _F32(0.05), np.inf, out=field)


def _grow(span: slice, by: int, size: int) -> slice:
    return slice(max(span.start - by, 0), min(span.stop + by, size))


def _truth(objs: list[_Obj], labels: np.ndarray, o: SceneOptions, tracked: bool) -> Detections:
    """Visibility from the label map; boxes, classes and identities of the objects visible enough (sorted by
    identity when ``tracked``, else in ``objs``' order)."""
    seen = [np.count_nonzero(labels[ob.crop][ob.inside] == i) / ob.total for i, ob in enumerate(objs)]
    vis = np.array(seen, _F32)
    keep = np.flatnonzero((vis > 0) & (vis >= o.min_visibility))
    idents = np.array([ob.ident for ob in objs], np.int64)
    if tracked:
        keep = keep[np.argsort(idents[keep])]
    return Detections(
        xyxy=np.array([ob.box for ob in objs], _F32).reshape(-1, 4)[keep],
        confidence=np.ones(len(keep), _F32),
        class_id=np.array([ob.kind for ob in objs], np.int64)[keep],
        tracker_id=idents[keep] if tracked else None,
        data={"visibility": vis[keep]},
    )


def scene_frames(
    count: int, *, seed: int = 0, options: SceneOptions = SceneOptions()
) -> tuple[np.ndarray, list[Detections]]:
    """``count`` independent frames uint8 ``[count, H, W, 3]`` (RGB) and their ground truth.

    Objects are placed one at a time, each nearer than the last, centred anywhere in the frame (so some are
    cut). A placement that would hide more than ``max_occlusion`` of an earlier object is redrawn, up to 20
    times before that object is dropped, so crowded frames may hold fewer than ``min_objects``.
    """
    if not isinstance(options, SceneOptions):
        raise ConfigError(f"scene_frames: expected options to be a SceneOptions, got {type(options).__name__}")
    if not _is_int(count) or count < 0:
        raise ConfigError(f"scene_frames: expected count to be an integer >= 0, got {count!r}")
    rng, o = np.random.default_rng(seed), options
    h, w = o.size
    frames, truth = np.empty((count, h, w, 3), np.uint8), []
    work = np.empty((3, h, w), _F32)
    for i in range(count):
        img = _background(rng, o, out=work)
        labels = np.full((h, w), -1, np.int16)
        objs: list[_Obj] = []
        visible = np.zeros(0, np.int64)  # pixels of each placed object still in view
        for _ in range(int(rng.integers(o.min_objects, o.max_objects + 1))):
            for _attempt in range(20):
                obj = _Obj(rng, o)
                obj.cx, obj.cy = rng.uniform(0, w), rng.uniform(0, h)
                if obj.raster(h, w).count == 0:
                    continue
                under = labels[obj.crop][obj.inside]
                after = visible - np.bincount(under[under >= 0], minlength=len(objs))
                seen, total = np.array([(p.count, p.total) for p in objs]).reshape(-1, 2).T
                if ((seen - after) / total > o.max_occlusion).any():
                    continue
                obj.contrast(rng, img)
                obj.draw(img, labels, len(objs))
                visible = np.append(after, obj.count)
                objs.append(obj)
                break
        frames[i] = _camera(rng, img, _light_params(rng, o.lighting), _camera_params(rng, o))
        truth.append(_truth(objs, labels, o, tracked=False))
    return frames, truth


class SceneVideo:
    """A video of moving objects with identities; ``step()`` returns the next (frame, truth).

    Objects move at about ``speed`` pixels per frame with a small random acceleration and slowly grow or
    shrink. They enter through the borders (with chance ``spawn_rate`` per frame while fewer than
    ``max_objects`` are in the scene, every frame while fewer than ``min_objects``) and leave for good once no
    pixel of theirs is in the frame. Background and clutter are fixed per video; the lighting drifts. Truth is
    sorted by ``tracker_id``; objects hidden below ``min_visibility`` drop out of it but keep their identity.
    ``alive`` holds the identities in the scene of the last frame, hidden ones included. ``order``: the
    frames' channel order, ``"RGB"`` or ``"BGR"`` (OpenCV's).
    """

    def __init__(
        self, *, seed: int = 0, options: SceneOptions = SceneOptions(), speed: float = 2.0, spawn_rate: float = 0.05,
        order: str = "RGB",
    ) -> None:
        if order not in ("RGB", "BGR"):
            raise ConfigError(f"SceneVideo.order: expected 'RGB' or 'BGR', got {order!r}")
        if not isinstance(options, SceneOptions):
            raise ConfigError(f"SceneVideo: expected options to be a SceneOptions, got {type(options).__name__}")
        if not _is_num(speed, 0, 100):
            raise ConfigError(f"SceneVideo.speed: expected pixels per frame in [0, 100], got {speed!r}")
        if not _is_num(spawn_rate, 0, 1):
            raise ConfigError(f"SceneVideo.spawn_rate: expected a probability in [0, 1], got {spawn_rate!r}")
        self.seed, self.options, self.speed, self.spawn_rate = seed, options, float(speed), float(spawn_rate)
        self.order = order
        self.reset()

    def reset(self) -> None:
        """Back to frame 0: the same seed replays the same video."""
        o = self.options
        self._rng = rng = np.random.default_rng(self.seed)
        self._bg = _background(rng, o)
        self._light, self._target = _light_params(rng, o.lighting), _light_params(rng, o.lighting)
        self._cam = _camera_params(rng, o)
        # the camera's own generator (noise), so that its draws never shift the scene's
        self._camera = _VideoCamera(np.random.default_rng([self.seed, 1]), self._bg, self._cam,
                                    reverse=self.order == "BGR")
        self._objs: list[_Obj] = []
        self._next_id = 1
        self.frame_index = 0
        self.alive: tuple[int, ...] = ()
        for _ in range(int(rng.integers(o.min_objects, o.max_objects + 1))):
            self._spawn(inside=True)

    def _spawn(self, inside: bool) -> None:
        """A new object anywhere (``inside``) or straddling a random border, heading into the frame."""
        rng, (h, w) = self._rng, self.options.size
        obj = _Obj(rng, self.options)
        ex, ey = obj.extent()[2:]
        speed = self.speed * rng.uniform(0.5, 1.5)
        if inside:
            obj.cx, obj.cy, th = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0, 2 * math.pi)
            obj.vx, obj.vy = speed * math.cos(th), speed * math.sin(th)
        else:
            side, into, across = int(rng.integers(4)), rng.uniform(0.1, 0.6), rng.uniform(-0.6, 0.6) * speed
            along = rng.uniform(0, w if side < 2 else h)
            if side < 2:  # top, bottom
                obj.cx, obj.cy = along, (into - 1) * ey if side == 0 else h + (1 - into) * ey
                obj.vx, obj.vy = across, speed if side == 0 else -speed
            else:  # left, right
                obj.cx, obj.cy = (into - 1) * ex if side == 2 else w + (1 - into) * ex, along
                obj.vx, obj.vy = speed if side == 2 else -speed, across
        obj.growth = rng.uniform(-0.01, 0.01)
        if obj.raster(h, w).count == 0:
            return
        obj.contrast(rng, self._bg)
        obj.ident, self._next_id = self._next_id, self._next_id + 1
        self._objs.append(obj)

    def step(self) -> tuple[np.ndarray, Detections]:
        """Render the current frame and its truth, then move the scene on by one frame."""
        o, (h, w) = self.options, self.options.size
        objs = [ob for ob in self._objs if ob.raster(h, w).count > 0]  # the others have left for good
        self._objs = objs = sorted(objs, key=lambda ob: -ob.depth)  # far to near
        labels = np.full((h, w), -1, np.int16)
        frame = self._camera.render(objs, labels, self._light)
        truth = _truth(objs, labels, o, tracked=True)
        self.alive = tuple(ob.ident for ob in objs)
        self._advance()
        return frame, truth

    def _advance(self) -> None:
        o, rng, s = self.options, self._rng, self.speed
        lo, hi = min(o.size) * o.min_scale, min(o.size) * o.max_scale
        for ob in self._objs:
            ob.vx, ob.vy = ob.vx + rng.normal(0, 0.04 * s), ob.vy + rng.normal(0, 0.04 * s)
            v = math.hypot(ob.vx, ob.vy)
            f = min(max(v, 0.25 * s), 2 * s) / v if v > 0 else 0.0  # keep moving, never race
            ob.vx, ob.vy = ob.vx * f, ob.vy * f
            ob.cx, ob.cy = ob.cx + ob.vx, ob.cy + ob.vy
            ob.size *= math.exp(ob.growth)
            if not lo <= ob.size <= hi:
                ob.growth, ob.size = -ob.growth, min(max(ob.size, lo), hi)
        if rng.random() < 0.02:  # now and then a new lighting to drift towards
            self._target = _light_params(rng, o.lighting)
        self._light += 0.03 * (self._target - self._light)
        n = len(self._objs)
        if n < o.min_objects or (n < o.max_objects and rng.random() < self.spawn_rate):
            self._spawn(inside=False)
        self.frame_index += 1

    def frames(self, count: int) -> Iterator[tuple[np.ndarray, Detections]]:
        """The next ``count`` frames with their truth."""
        for _ in range(count):
            yield self.step()

    def __iter__(self) -> Iterator[tuple[np.ndarray, Detections]]:
        while True:
            yield self.step()
