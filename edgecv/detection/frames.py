"""Camera frames -> detector inputs, and detections back to the frame: resize, illumination, normalization.

A :class:`FramePreprocessor` turns one uint8 frame (gray ``[H, W]`` or ``[H, W, 1]``, colour ``[H, W, 3]``,
or ``[H, W, 4]`` whose alpha is dropped) into the model's input batch ``[1, ...]``, and returns the
:class:`FrameTransform` that maps the detector's boxes and keypoints, which are in model-input pixels,
back to frame pixels. The steps, in order:

1. resize the frame into the input size, by one of :data:`RESIZE_MODES`: ``stretch`` (plain resize) or
   ``letterbox`` (keep the aspect ratio, centred; ``letterbox_top_left`` puts the image in the top-left
   corner), padding with ``pad_value``;
2. an optional illumination step from :data:`ILLUMINATIONS` on the resized image (not on the padding):
   ``gamma``, ``auto_gamma`` (brings the mean luminance to mid-grey) or ``clahe`` (local contrast on
   the luminance channel only), for cameras facing hard lighting;
3. colour order, normalization, layout and dtype as :func:`edgecv.preprocess.to_model_input` does them.

Coordinates are continuous pixels: the frame spans ``[0, W] x [0, H]``, and input = frame * scale + pad.

Example:
    >>> pre = FramePreprocessor.from_model(model, spec=spec, options=FrameOptions(resize="letterbox"))  # doctest: +SKIP
    >>> x, transform = pre(frame)                                                                     # doctest: +SKIP
    >>> det = transform.to_frame(spec.detect(model.run(x), input_size=pre.input_size))                 # doctest: +SKIP
    >>> t = plan_letterbox((480, 640), (320, 320))
    >>> t.scale_x, t.pad_y, t.to_input_xy([[640, 480]]).tolist()
    (0.5, 40, [[320.0, 280.0]])
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import numpy as np

from edgecv.config import check
from edgecv.deps import require
from edgecv.detection.detections import Detections
from edgecv.errors import ConfigError, InputError
from edgecv.manifest import Preprocess
from edgecv.preprocess import to_model_input

if TYPE_CHECKING:
    from types import ModuleType

    from edgecv.model import Model

Size = tuple[int, int]
FRAME_COLORS = ("RGB", "BGR")
LAYOUTS = ("NHWC", "NCHW")


class InputSpec(Protocol):
    """What fitting frames to a model reads from a detector spec (a
    :class:`~edgecv.detection.spec.DetectorSpec` is one; this module does not import it, which imports this).
    None everywhere means "not said"."""

    @property
    def name(self) -> str: ...
    @property
    def decoder(self) -> str: ...
    @property
    def resize(self) -> str | None: ...
    @property
    def pad_value(self) -> int | None: ...
    @property
    def layout(self) -> str | None: ...
    @property
    def input_size(self) -> tuple[int, ...] | None: ...
    @property
    def mean(self) -> tuple[float, ...] | None: ...
    @property
    def std(self) -> tuple[float, ...] | None: ...
    @property
    def color(self) -> str | None: ...


# -- the mapping between frame and model-input pixels ------------------------------------------------------


@dataclass(frozen=True)
class FrameTransform:
    """How a frame became a model input: ``input = frame * scale + pad`` along each axis.

    ``frame_size`` and ``input_size`` are (height, width). The resized image covers ``content_size``
    pixels of the input starting at (``pad_x``, ``pad_y``); the rest is padding.
    """

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int
    frame_size: Size
    input_size: Size

    @property
    def content_size(self) -> Size:
        """(height, width) of the resized frame inside the input."""
        h, w = self.frame_size
        return (round(h * self.scale_y), round(w * self.scale_x))

    # -- points --------------------------------------------------------------------------------------------
    def to_frame_xy(self, xy: np.ndarray | Sequence, *, clip: bool = True) -> np.ndarray:
        """Points ``[..., 2]`` (x, y) in input pixels -> frame pixels (float64, a new array)."""
        xy = np.asarray(xy, np.float64)
        out = (xy - (self.pad_x, self.pad_y)) / (self.scale_x, self.scale_y)
        return _clip_xy(out, self.frame_size) if clip else out

    def to_input_xy(self, xy: np.ndarray | Sequence, *, clip: bool = True) -> np.ndarray:
        """Points ``[..., 2]`` (x, y) in frame pixels -> input pixels (float64, a new array)."""
        xy = np.asarray(xy, np.float64)
        out = xy * (self.scale_x, self.scale_y) + (self.pad_x, self.pad_y)
        return _clip_xy(out, self.input_size) if clip else out

    # -- detections ----------------------------------------------------------------------------------------
    def to_frame(self, detections: Detections, *, clip: bool = True) -> Detections:
        """New Detections with boxes and ``data["keypoints"]`` mapped from input to frame pixels.

        With ``clip`` (the default), coordinates are clipped to the frame. Other fields are copied.
        """
        return self._map(detections, self.to_frame_xy, clip)

    def to_input(self, detections: Detections, *, clip: bool = True) -> Detections:
        """New Detections mapped from frame to input pixels (ground truth, for instance); the inverse of
        :meth:`to_frame`."""
        return self._map(detections, self.to_input_xy, clip)

    @staticmethod
    def _map(det: Detections, fn: Callable[..., np.ndarray], clip: bool) -> Detections:
        if not isinstance(det, Detections):
            raise InputError(f"FrameTransform: expected Detections, got {type(det).__name__}")
        xyxy = fn(det.xyxy.reshape(-1, 2, 2), clip=clip).reshape(-1, 4)
        data = {k: np.array(v, copy=True) for k, v in det.data.items()}
        kps = data.get("keypoints")
        if kps is not None:
            if kps.ndim != 3 or kps.shape[2] < 2 or kps.dtype.kind not in "iuf":
                raise InputError(f"Detections.data['keypoints']: expected numbers [N,K,2], got {kps.dtype} "
                                 f"[{','.join(map(str, kps.shape))}]")
            if kps.dtype.kind != "f":
                kps = kps.astype(np.float32)
            kps[..., :2] = fn(kps[..., :2], clip=clip)
            data["keypoints"] = kps
        return Detections(
            xyxy=xyxy,
            confidence=det.confidence.copy(),
            class_id=det.class_id.copy(),
            tracker_id=None if det.tracker_id is None else det.tracker_id.copy(),
            data=data,
        )


def _clip_xy(xy: np.ndarray, size: Size) -> np.ndarray:
    h, w = size
    np.clip(xy[..., 0], 0, w, out=xy[..., 0])
    np.clip(xy[..., 1], 0, h, out=xy[..., 1])
    return xy


# -- resize modes: (frame size, input size) -> FrameTransform --------------------------------------------


def plan_stretch(frame_size: Size, input_size: Size) -> FrameTransform:
    """Plain resize to the input size; the aspect ratio changes when the two sizes' ratios differ."""
    (h, w), (ih, iw) = frame_size, input_size
    return FrameTransform(iw / w, ih / h, 0, 0, (h, w), (ih, iw))


def plan_letterbox(frame_size: Size, input_size: Size, *, centre: bool = True) -> FrameTransform:
    """Resize keeping the aspect ratio so the frame fits the input, centred (or top-left) in padding.

    The resized size is rounded to whole pixels, and the scales are those of the rounded size, so that
    the mapping is exact for the pixels the model sees.
    """
    (h, w), (ih, iw) = frame_size, input_size
    s = min(ih / h, iw / w)
    nh = min(ih, max(1, round(h * s)))
    nw = min(iw, max(1, round(w * s)))
    pad_x, pad_y = ((iw - nw) // 2, (ih - nh) // 2) if centre else (0, 0)
    return FrameTransform(nw / w, nh / h, pad_x, pad_y, (h, w), (ih, iw))


DEFAULT_RESIZE = "stretch"
DEFAULT_PAD_VALUE = 114
RESIZE_MODES: dict[str, Callable[[Size, Size], FrameTransform]] = {
    "stretch": plan_stretch,
    "letterbox": plan_letterbox,
    "letterbox_top_left": partial(plan_letterbox, centre=False),
}


# -- options ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameOptions:
    """How frames become inputs, besides the model's own normalization.

    ``resize``: one of :data:`RESIZE_MODES`; None (the default) takes the detector spec's ``resize``, else
    ``stretch``. ``pad_value``: the gray level (0..255) of letterbox padding; None takes the spec's, else
    114 (YOLO's). :meth:`resolved` fills both in. ``illumination``: one of :data:`ILLUMINATIONS`.
    ``gamma``: the exponent of ``gamma``, ``out = 255 * (in / 255) ** gamma`` (below 1 brightens, above 1
    darkens); ``auto_gamma`` picks it per frame so that the mean luminance goes to mid-grey, within 0.25..4.
    ``clahe_clip`` and ``clahe_tiles``: OpenCV CLAHE's clip limit and tiles per side. ``frame_color``: the
    channel order of 3- and 4-channel frames, ``BGR`` for frames OpenCV decoded.
    """

    resize: str | None = None
    pad_value: int | None = None
    illumination: str = "none"
    gamma: float = 0.7
    clahe_clip: float = 2.0
    clahe_tiles: int = 8
    frame_color: str = "RGB"

    def __post_init__(self) -> None:
        if self.resize is not None:
            check(self.resize in RESIZE_MODES, "resize", f"one of {', '.join(RESIZE_MODES)}", self.resize)
        check(self.illumination in ILLUMINATIONS, "illumination", f"one of {', '.join(ILLUMINATIONS)}",
              self.illumination)
        check(self.frame_color in FRAME_COLORS, "frame_color", f"one of {', '.join(FRAME_COLORS)}", self.frame_color)
        if self.pad_value is not None:
            check(_is_int(self.pad_value) and 0 <= self.pad_value <= 255, "pad_value", "an integer in 0..255",
                  self.pad_value)
        check(_is_positive(self.gamma), "gamma", "a positive number", self.gamma)
        check(_is_positive(self.clahe_clip), "clahe_clip", "a positive number", self.clahe_clip)
        check(_is_int(self.clahe_tiles) and self.clahe_tiles >= 1, "clahe_tiles", "a positive integer",
              self.clahe_tiles)

    def resolved(self, spec: InputSpec | None = None) -> FrameOptions:
        """These options with ``resize`` and ``pad_value`` filled in: given ones win, then ``spec``'s, then
        :data:`DEFAULT_RESIZE` and :data:`DEFAULT_PAD_VALUE`.

        Example:
            >>> FrameOptions().resolved().resize, FrameOptions(resize="letterbox").resolved().pad_value
            ('stretch', 114)
        """
        resize = self.resize or (spec.resize if spec is not None else None) or DEFAULT_RESIZE
        pad = self.pad_value
        if pad is None:
            pad = spec.pad_value if spec is not None and spec.pad_value is not None else DEFAULT_PAD_VALUE
        if (resize, pad) == (self.resize, self.pad_value):
            return self
        return dataclasses.replace(self, resize=resize, pad_value=pad)


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_size(size: object) -> None:
    ok = isinstance(size, (tuple, list)) and len(size) == 2 and all(_is_int(v) and v > 0 for v in size)
    check(ok, "input_size", "(height, width), two positive integers", size)


def _is_positive(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


# -- illumination: options -> a step on RGB uint8 [H, W, 3], or None for no step ---------------------------

Step = Callable[[np.ndarray], np.ndarray]
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_AUTO_GAMMA_RANGE = (0.25, 4.0)  # keeps a nearly black or white frame from being stretched into noise


def gamma_lut(gamma: float) -> np.ndarray:
    """The 256-entry uint8 table of ``255 * (i / 255) ** gamma``."""
    return np.rint(255.0 * (np.arange(256) / 255.0) ** gamma).astype(np.uint8)


def _no_illumination(options: FrameOptions) -> Step | None:
    return None


def _gamma(options: FrameOptions) -> Step:
    lut = gamma_lut(options.gamma)
    return lambda rgb: lut[rgb]


def _auto_gamma(options: FrameOptions) -> Step:
    def step(rgb: np.ndarray) -> np.ndarray:
        # The exponent that takes the mean luminance m to 0.5: m ** g = 0.5. Every 4th pixel is plenty.
        m = float((rgb[::4, ::4].astype(np.float32) @ _LUMA).mean()) / 255.0
        m = min(max(m, 1 / 255), 254 / 255)
        g = min(max(math.log(0.5) / math.log(m), _AUTO_GAMMA_RANGE[0]), _AUTO_GAMMA_RANGE[1])
        return gamma_lut(g)[rgb]

    return step


def _clahe(options: FrameOptions) -> Step:
    cv2 = _cv2("equalize frames with CLAHE")
    clahe = cv2.createCLAHE(clipLimit=float(options.clahe_clip), tileGridSize=(options.clahe_tiles,) * 2)

    def step(rgb: np.ndarray) -> np.ndarray:
        ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
        ycc[..., 0] = clahe.apply(np.ascontiguousarray(ycc[..., 0]))
        return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)

    return step


ILLUMINATIONS: dict[str, Callable[[FrameOptions], Step | None]] = {
    "none": _no_illumination,
    "gamma": _gamma,
    "auto_gamma": _auto_gamma,
    "clahe": _clahe,
}


def _cv2(purpose: str) -> ModuleType:
    return require("cv2", extra="opencv", purpose=purpose, package="opencv-python-headless")


# -- frames ----------------------------------------------------------------------------------------------


def check_frame(frame: object) -> np.ndarray:
    """``frame`` if it is a uint8 ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]`` image, else InputError."""
    want = "a uint8 frame [H,W], [H,W,1], [H,W,3] or [H,W,4]"
    if not isinstance(frame, np.ndarray):
        raise InputError(f"frame: expected {want}, got {type(frame).__name__}")
    got = f"{frame.dtype} [{','.join(map(str, frame.shape))}]"
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3, 4)):
        raise InputError(f"frame: expected {want}, got {got}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputError(f"frame: expected a non-empty image, got {got}")
    return frame


def _to_rgb(image: np.ndarray, frame_color: str, cv2: ModuleType) -> np.ndarray:
    """A resized frame (``[h, w]``, ``[h, w, 3|4]``) -> contiguous RGB ``[h, w, 3]``; alpha is dropped."""
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    if frame_color == "BGR":  # OpenCV's swap: 0.002 ms at 160x160 against 0.085 for numpy's reversed copy
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(image[..., :3])


def resize_image(image: np.ndarray, size: tuple[int, int], *, cv2: ModuleType | None = None) -> np.ndarray:
    """``image`` resized to ``size`` (width, height): an area average when shrinking, bilinear when enlarging.

    Calibration images and camera frames go through this one function, so a model sees the same pixels in
    both. A shrink of more than 2x runs in two passes: bilinear to k times ``size`` (k keeps that step at 2x
    or less, so every source pixel still weighs in), then an exact k x k average. OpenCV's area resize at a
    non-integer ratio costs 2.5-3.4x that (768x576 to 160x160: 1.47 ms against 0.60; to 300x300: 2.25 against
    0.66), and the two differ by a third of a grey level on average (``benchmarks/resize_frames.py``).

    >>> resize_image(np.zeros((576, 768, 3), np.uint8), (160, 160)).shape
    (160, 160, 3)
    """
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f"resize: expected a size (width, height) of at least 1x1, got {tuple(size)!r}")
    if image.ndim not in (2, 3) or 0 in image.shape[:2]:
        raise InputError(f"resize: expected a non-empty image [H,W] or [H,W,C], got shape {list(image.shape)}")
    cv2 = cv2 or _cv2("resize images")
    (h, w), (cw, ch) = image.shape[:2], size
    if ch * cw >= h * w:  # INTER_AREA is blocky when enlarging
        return cv2.resize(image, (cw, ch), interpolation=cv2.INTER_LINEAR)
    k = math.ceil(max(h / ch, w / cw) / 2)
    if k > 1:
        image = cv2.resize(image, (cw * k, ch * k), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(image, (cw, ch), interpolation=cv2.INTER_AREA)


def resize_frame(
    frame: np.ndarray,
    input_size: Size,
    *,
    mode: str = "stretch",
    pad_value: int = 114,
    frame_color: str = "RGB",
    illumination: Step | None = None,
    cv2: ModuleType | None = None,
) -> tuple[np.ndarray, FrameTransform]:
    """A frame resized into ``input_size`` (h, w) as RGB uint8 ``[h, w, 3]``, and its :class:`FrameTransform`.

    ``illumination`` (a step of :data:`ILLUMINATIONS`) runs on the resized image before padding. The
    frame is never modified. Gray frames are replicated to 3 channels; the alpha of 4-channel frames is
    dropped (colours are kept as they are, not composited).
    """
    frame = check_frame(frame)
    _check_size(input_size)
    plan = RESIZE_MODES.get(mode)
    if plan is None:
        raise ConfigError(f"resize: expected one of {', '.join(RESIZE_MODES)}, got {mode!r}")
    cv2 = cv2 or _cv2("resize frames")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[..., 0]
    transform = plan(frame.shape[:2], tuple(input_size))
    (h, w), (ch, cw) = frame.shape[:2], transform.content_size
    content = frame if (ch, cw) == (h, w) else resize_image(frame, (cw, ch), cv2=cv2)
    rgb = _to_rgb(content, frame_color, cv2)
    if np.may_share_memory(rgb, frame):  # the frame already had the content size: never hand it back
        rgb = rgb.copy()
    if illumination is not None:
        rgb = illumination(rgb)
    if (ch, cw) == transform.input_size:
        return rgb, transform
    canvas = np.full((*transform.input_size, 3), pad_value, np.uint8)
    canvas[transform.pad_y : transform.pad_y + ch, transform.pad_x : transform.pad_x + cw] = rgb
    return canvas, transform


# -- the preprocessor ------------------------------------------------------------------------------------


class FramePreprocessor:
    """Frames -> model input batches ``[1, ...]`` plus the :class:`FrameTransform` back to the frame.

    ``input_size`` is the model input's (height, width); ``preprocess`` gives its layout, colour order
    (``GRAY`` makes one channel) and normalization; ``dtype`` is the input's dtype (integer inputs get raw
    pixels, int8 ones pixel - 128, as :func:`~edgecv.preprocess.to_model_input` does). Build it from a
    loaded model with :meth:`from_model`. One preprocessor per thread: the CLAHE step keeps OpenCV state.
    """

    def __init__(
        self,
        input_size: Size,
        preprocess: Preprocess,
        *,
        dtype: str = "float32",
        options: FrameOptions = FrameOptions(),
    ) -> None:
        _check_size(input_size)
        check(isinstance(preprocess, Preprocess), "preprocess", "a Preprocess", type(preprocess).__name__)
        check(preprocess.layout in LAYOUTS, "preprocess layout", f"one of {', '.join(LAYOUTS)}", preprocess.layout)
        check(isinstance(options, FrameOptions), "options", "a FrameOptions", type(options).__name__)
        try:
            kind = np.dtype(dtype).kind
        except TypeError:
            kind = ""
        check(kind in "iuf" and kind != "", "dtype", "a numpy integer or float dtype name", dtype)
        channels = 1 if preprocess.color == "GRAY" else 3
        counts = "1 value for a GRAY input" if channels == 1 else "1 or 3 values for an RGB or BGR input"
        for key in ("mean", "std"):
            values = getattr(preprocess, key)
            check(len(values) in (1, channels), f"preprocess {key}", counts, list(values))
        self.input_size: Size = (int(input_size[0]), int(input_size[1]))
        self.preprocess = preprocess
        self.dtype = np.dtype(dtype).name
        self.options = options.resolved()
        self.channels = channels
        self._cv2 = _cv2("resize frames")
        self._illumination = ILLUMINATIONS[options.illumination](options)

    @classmethod
    def from_model(
        cls,
        model: Model,
        *,
        spec: InputSpec | None = None,
        options: FrameOptions = FrameOptions(),
        input_size: Size | None = None,
    ) -> FramePreprocessor:
        """A preprocessor for ``model``'s first input: its size, layout and dtype.

        Normalization and colour order come from ``spec`` when it gives them, else from the model's
        manifest; a float input with neither is a ConfigError (integer inputs take raw pixels). A model
        loaded with ``float_io=True`` takes float input even when quantized. ``input_size`` (h, w) is
        needed only when the model's height or width is dynamic; the spec's ``input_size`` is the
        default. The spec's ``layout`` replaces the one guessed from the input's shape; its ``resize`` and
        ``pad_value`` fill in what ``options`` leaves unset.
        """
        if not model.inputs:
            raise ConfigError(f"{model.path.name}: expected a model with an image input, got no inputs")
        info = model.inputs[0]
        layout = (spec.layout if spec is not None else None) or info.layout
        if layout not in LAYOUTS or len(info.shape) != 4:
            raise ConfigError(f"{model.path.name}: expected an NHWC or NCHW image input, got {info.describe()}"
                              + ("" if len(info.shape) != 4 else "; set layout: NHWC or NCHW in the detector spec"))
        h, w, c = info.shape[1:] if layout == "NHWC" else (*info.shape[2:], info.shape[1])
        if c is not None and c not in (1, 3):
            raise ConfigError(f"{model.path.name}: input {info.describe()} read as {layout} has {c} channels; "
                              "expected 1 or 3 (check the detector spec's layout)")
        if input_size is None and spec is not None:
            input_size = spec.input_size
        if input_size is not None:
            dims = "x".join("?" if d is None else str(d) for d in (h, w))
            check(all(m is None or m == g for m, g in zip((h, w), input_size)), "input_size",
                  f"the model's {dims}", tuple(input_size))
        elif h is None or w is None:
            raise ConfigError(f"{model.path.name}: input {info.describe()} has a dynamic height or width; "
                              "set input_size: [height, width] in the detector spec (or pass input_size=(h, w))")
        size = tuple(input_size) if input_size is not None else (h, w)
        dtype = "float32" if (model.float_io and info.is_quantized) else info.dtype
        manifest_pre = model.manifest.preprocess if model.manifest is not None else None
        if spec is not None and spec.mean is not None:
            mean, std = spec.mean, spec.std
        elif manifest_pre is not None:
            mean, std = manifest_pre.mean, manifest_pre.std
        elif np.dtype(dtype).kind in "iu":
            mean, std = Preprocess().mean, Preprocess().std  # not used: integer inputs take raw pixels
        else:
            has = f"detector spec {spec.name or spec.decoder!r} gives no mean/std" if spec else "no detector spec"
            raise ConfigError(f"{model.path.name}: no input normalization (no manifest, {has}); "
                              "pass --mean/--std or a detector spec with mean and std")
        color = (spec.color if spec is not None else None) or (manifest_pre.color if manifest_pre else None)
        color = color or ("GRAY" if c == 1 else "RGB")
        if c is not None and (c == 1) != (color == "GRAY"):
            raise ConfigError(f"{model.path.name}: input {info.describe()} has {c} channel(s) but the colour "
                              f"order is {color}; 1 channel needs GRAY, 3 need RGB or BGR")
        pre = Preprocess(layout=layout, color=color, mean=mean, std=std)
        return cls(size, pre, dtype=dtype, options=options.resolved(spec))

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """The shape of the batches :meth:`run` returns."""
        h, w = self.input_size
        return (1, h, w, self.channels) if self.preprocess.layout == "NHWC" else (1, self.channels, h, w)

    def __repr__(self) -> str:
        dims = "x".join(map(str, self.input_shape))
        o = self.options
        return (f"FramePreprocessor({dims} {self.dtype} {self.preprocess.layout} {self.preprocess.color}, "
                f"resize={o.resize}, illumination={o.illumination})")

    def run(self, frame: np.ndarray) -> tuple[np.ndarray, FrameTransform]:
        """One uint8 frame -> (model input ``[1, ...]``, the transform back to the frame). The frame is not
        modified."""
        o = self.options
        rgb, transform = resize_frame(frame, self.input_size, mode=o.resize, pad_value=o.pad_value,
                                      frame_color=o.frame_color, illumination=self._illumination, cv2=self._cv2)
        return to_model_input(rgb[None], self.preprocess, dtype=self.dtype), transform

    __call__ = run
