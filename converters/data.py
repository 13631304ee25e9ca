"""Calibration and evaluation data for post-training quantization: image folders, videos, arrays.

:func:`open_dataset` turns what a user has into a :class:`Dataset` that streams one model input at a time
(batch 1, already preprocessed) with an optional integer label. Accepted data:

- a folder of images (searched recursively; ``root/<class>/image.png`` gives labels),
- one image file, or a glob of image files (``photos/*.jpg``, ``data/**/*.png``): the same rules as a folder,
  whose root is the glob's part before its first wildcard (``data/*/*.png`` gives labels from ``data/<class>/``),
- a video file (frames sampled evenly across it),
- a ``.npy`` array or a ``.npz`` file (images under ``x``/``images``, labels under ``y``/``labels``),
- a numpy array, or an iterable of arrays or ``(array, label)`` pairs (Python API only),
- a :class:`Dataset`, passed through.

Images from folders and videos get a plain resize (no crop, no letterbox) to the model's height and width:
an area average when shrinking, bilinear when enlarging (``edgecv.detection.frames.resize_image``, as on
the device). Arrays are never resized: uint8 arrays are pixels that must have the model's height, width and
channels. A float array for an image input is read by its value range (over the chosen samples), against the
model range that ``mean``/``std`` give pixels 0..255 (``edgecv export --help`` says the same):

- inside the model range (2% slack): model inputs, used as-is;
- outside it but inside 0..255: float pixels (channels in the model's layout and colour order),
  normalized once with ``mean``/``std`` (a warning says so, and the set's description);
- inside both, spanning more than 10% of 0..255 (``mean 123.7, std 1`` and values 0..130): ambiguous,
  refused with both readings named; give uint8 pixels instead;
- inside neither: model inputs used as-is, with a warning that ``mean``/``std`` do not describe them.

Example:
    >>> spec = InputSpec((1, 28, 28, 1), "NHWC", preprocess=Preprocess(mean=(0,), std=(255,)))
    >>> ds = open_dataset("digits/", spec=spec, limit=100)        # doctest: +SKIP
    >>> len(ds), ds.description, next(iter(ds))[0].shape          # doctest: +SKIP
    (100, '100 of 2000 images in digits/', (1, 28, 28, 1))
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgecv.deps import require
from edgecv.detection.frames import resize_image
from edgecv.errors import ConfigError, InputError
from edgecv.manifest import Preprocess
from edgecv.preprocess import normalize, to_model_input
from edgecv.tensors import TensorInfo

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
ACCEPTED = (
    f"expected a folder of images, an image or a glob of them ({', '.join(IMAGE_SUFFIXES)}), a video "
    f"({', '.join(VIDEO_SUFFIXES)}), a .npy or .npz array, or (from Python) an iterable of arrays"
)
_GLOB_CHARS = "*?["
_CHECK_CHUNK = 256  # samples per block when scanning a (memory-mapped) float array for NaN/inf


@dataclass(frozen=True)
class InputSpec:
    """What one model input needs: shape with batch (which may be None), layout, dtype and preprocessing.

    Example:
        >>> s = InputSpec((None, 1, 28, 28), "NCHW")
        >>> s.height, s.width, s.channels, s.sample_shape
        (28, 28, 1, (1, 1, 28, 28))
    """

    shape: tuple[int | None, ...]
    layout: str
    dtype: str = "float32"
    preprocess: Preprocess = Preprocess()

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(None if d is None else int(d) for d in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)

    @classmethod
    def from_tensor(cls, info: TensorInfo, preprocess: Preprocess) -> InputSpec:
        """The spec of a model input; a 4-D input whose layout cannot be guessed takes the preprocess layout."""
        layout = info.layout
        if len(info.shape) == 4 and layout not in ("NHWC", "NCHW"):
            layout = preprocess.layout
        return cls(tuple(info.shape), layout, info.dtype, preprocess)

    def _axis(self, letter: str) -> int | None:
        if len(self.shape) != 4 or self.layout not in ("NHWC", "NCHW"):
            return None
        return self.shape[self.layout.index(letter)]

    @property
    def height(self) -> int | None:
        return self._axis("H")

    @property
    def width(self) -> int | None:
        return self._axis("W")

    @property
    def channels(self) -> int | None:
        return self._axis("C")

    @property
    def sample_shape(self) -> tuple[int | None, ...]:
        """The shape of one yielded sample: the spec's shape with batch 1."""
        return (1, *self.shape[1:])


class Dataset:
    """A re-iterable, deterministic stream of ``(x, label)``: ``x`` is one model input with batch 1.

    Samples are read lazily on every iteration (image files, video frames, memory-mapped .npy rows); only the
    chosen indices are kept. (.npz members and Python data are in memory anyway.) ``label`` is an int or None.
    """

    def __init__(self, reader: _Reader, indices: np.ndarray, spec: InputSpec, description: str) -> None:
        self._reader = reader
        self._indices = indices
        self.spec = spec
        self.description = description

    def __len__(self) -> int:
        return len(self._indices)

    def __iter__(self) -> Iterator[tuple[np.ndarray, int | None]]:
        return self._reader.samples(self._indices)

    def __repr__(self) -> str:
        return f"Dataset({self.description})"

    @property
    def has_labels(self) -> bool:
        """True when every sample has a label."""
        return self._reader.unlabeled(self._indices) == 0

    def files(self) -> list[Path] | None:
        """The image file of each sample, in order, for a set of image files; None for others."""
        paths = getattr(self._reader, "files", None)
        return None if paths is None else [paths[i] for i in self._indices]

    def inputs(self) -> Iterator[np.ndarray]:
        """Just the model inputs."""
        return (x for x, _ in self)

    def batch(self, n: int | None = None) -> np.ndarray:
        """The first ``n`` samples (all when None) stacked along the batch axis; for small sets and tests."""
        return np.concatenate(list(itertools.islice(self.inputs(), n)), axis=0)

    def spread(self, n: int) -> Dataset:
        """At most ``n`` of this set's samples, evenly spread over it (the set itself when it has no more).

        Example:
            >>> len(open_dataset(np.zeros((10, 4, 4, 3), np.uint8), spec=InputSpec((1, 4, 4, 3), "NHWC")).spread(3))
            3
        """
        if n >= len(self):
            return self
        keep = self._indices[np.unique(np.linspace(0, len(self) - 1, max(n, 1)).round().astype(np.int64))]
        return Dataset(self._reader, keep, self.spec, f"{len(keep)} spread over {self.description}")


def chain(first: Dataset, second: Dataset, description: str) -> Dataset:
    """``first``'s samples, then ``second``'s, as one set (both must fit the same input).

    Example:
        >>> spec = InputSpec((1, 4, 4, 3), "NHWC")
        >>> a, b = (open_dataset(np.zeros((n, 4, 4, 3), np.uint8), spec=spec) for n in (2, 3))
        >>> len(chain(a, b, "both"))
        5
    """
    if first.spec != second.spec:
        raise ConfigError(f"cannot join {first.description} and {second.description}: they fit different inputs")
    reader = _ChainReader(first, second)
    return Dataset(reader, np.arange(reader.size), first.spec, description)


def open_dataset(
    data: Any,
    *,
    spec: InputSpec,
    limit: int | None = 300,
    seed: int = 0,
    labels: list[str] | None = None,
    require_labels: bool = False,
    what: str = "calibration",
) -> Dataset:
    """Open ``data`` as a :class:`Dataset` of at most ``limit`` samples (None: all) fitting ``spec``.

    ``labels`` are the model's class names (folder names map to them; label values are checked against
    their count). ``what`` names the set in error messages: "calibration set photos/ is empty".
    """
    if isinstance(data, Dataset):
        return data
    if limit is not None and limit < 1:
        raise ConfigError(f"{what} limit: expected a positive number of samples or None, got {limit}")
    ctx = _Context(spec, what, labels, require_labels, limit)
    kind = _kind_of(data, what)
    if isinstance(data, (str, Path)):
        data = str(data) if kind == "glob" else Path(data)
    reader = _READERS[kind](data, ctx)
    if reader.size == 0:
        raise InputError(f"{what} set {reader.name} is empty")
    indices = _choose(reader.size, limit, seed, evenly=reader.evenly)
    reader.check(indices)
    if require_labels and (missing := reader.unlabeled(indices)):
        count = f"{missing} of {len(indices)} samples"
        raise InputError(f"{what} set {reader.name}: {count} have no label{reader.label_hint}")
    of = f"{len(indices)} of {reader.size}" if len(indices) < reader.size else f"{reader.size}"
    return Dataset(reader, indices, spec, f"{of} {reader.unit} {reader.where}{reader.note}")


# --- choosing samples --------------------------------------------------------------------------------------


def _choose(n: int, limit: int | None, seed: int, *, evenly: bool) -> np.ndarray:
    """All of ``0..n-1`` when they fit the limit, else ``limit`` of them: evenly spaced or seeded-random, sorted."""
    if limit is None or n <= limit:
        return np.arange(n)
    if evenly:
        return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


@dataclass(frozen=True)
class _Context:
    spec: InputSpec
    what: str
    labels: list[str] | None
    require_labels: bool
    limit: int | None


# --- pixels -> model input ---------------------------------------------------------------------------------


def _image_spec(ctx: _Context, *, need_size: bool) -> None:
    """Check that the model input is an image that pixels can be turned into; ConfigError if not."""
    spec = ctx.spec
    if len(spec.shape) != 4:
        raise ConfigError(f"input {_dims(spec.shape)} is not an image; give model inputs as a float .npy")
    if spec.layout not in ("NHWC", "NCHW"):
        raise ConfigError(f"input {_dims(spec.shape)} has layout {spec.layout!r}; images need NHWC or NCHW")
    if need_size and (spec.height is None or spec.width is None):
        raise ConfigError("input has dynamic height/width; give --input-shape")
    if spec.channels not in (1, 3):
        raise ConfigError(f"input {_dims(spec.shape)} has {spec.channels} channels; images give 1 (gray) or 3 (colour)")
    if spec.channels == 3 and spec.preprocess.color == "GRAY":
        raise ConfigError(f"preprocess color is GRAY but input {_dims(spec.shape)} takes 3 channels")
    for key in ("mean", "std"):
        values = getattr(spec.preprocess, key)
        if len(values) not in (1, spec.channels):
            raise ConfigError(f"preprocess {key} has {len(values)} values for {spec.channels} input channel(s)")


def _pixels_to_input(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 ``[1, H, W, C]`` pixels (RGB, or gray when C is 1) -> the model input.

    Float inputs are normalized; integer inputs get raw pixels (int8 as pixel - 128, like the validation
    inputs of edgecv.converters.validate; to_model_input's plain cast would wrap 200 to -56).
    """
    pre = replace(spec.preprocess, layout=spec.layout)
    if spec.dtype == "int8":
        return (to_model_input(pixels, pre, dtype="int16") - 128).astype(np.int8)
    return to_model_input(pixels, pre, dtype=spec.dtype)


def _bgr_to_input(cv2, image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """A decoded BGR image or video frame -> gray or RGB, plain resize to the model's size -> model input."""
    if spec.channels == 1:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[..., None]
    else:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    h, w = image.shape[:2]
    if (h, w) != (spec.height, spec.width):
        image = resize_image(image, (spec.width, spec.height), cv2=cv2)  # as the device resizes a frame
        if image.ndim == 2:  # cv2.resize drops a single channel axis
            image = image[..., None]
    return _pixels_to_input(image[None], spec)


def _read_image(cv2, path: Path, what: str) -> np.ndarray:
    # np.fromfile + imdecode instead of imread: imread cannot open non-ASCII paths on Windows.
    try:
        buf = np.fromfile(path, dtype=np.uint8)
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    except (OSError, cv2.error):
        image = None
    if image is None:
        raise InputError(f"{what} image {path} cannot be read: not an image OpenCV can decode")
    return image


# --- readers: one per kind of data ---------------------------------------------------------------------------


class _Reader:
    """Where samples come from. ``samples(indices)`` yields ``(x, label)`` for sorted indices."""

    size: int = 0
    name: str = ""  # for errors: "photos/", "x.npy"
    where: str = ""  # for descriptions: "in photos/", "of vtest.avi"
    unit: str = "samples"
    evenly: bool = False  # sample evenly spaced indices (videos) instead of seeded-random ones
    label_hint: str = ""
    note: str = ""  # appended to the description: how float arrays were read

    def samples(self, indices: np.ndarray) -> Iterator[tuple[np.ndarray, int | None]]:
        raise NotImplementedError

    def unlabeled(self, indices: np.ndarray) -> int:
        """How many of ``indices`` have no label."""
        return len(indices)

    def check(self, indices: np.ndarray) -> None:
        """Validate the chosen samples before any iteration (cheap checks only)."""


class _ChainReader(_Reader):
    """Two datasets one after the other (:func:`chain`)."""

    def __init__(self, first: Dataset, second: Dataset) -> None:
        self.parts = (first, second)
        self.size = len(first) + len(second)
        self.name = f"{first.description} + {second.description}"

    def _split(self, indices: np.ndarray) -> Iterator[tuple[Dataset, np.ndarray]]:
        offset = 0
        for part in self.parts:
            mine = indices[(indices >= offset) & (indices < offset + len(part))] - offset
            yield part, part._indices[mine]
            offset += len(part)

    def samples(self, indices: np.ndarray) -> Iterator[tuple[np.ndarray, int | None]]:
        for part, chosen in self._split(np.asarray(indices)):
            yield from part._reader.samples(chosen)

    def unlabeled(self, indices: np.ndarray) -> int:
        return sum(part._reader.unlabeled(chosen) for part, chosen in self._split(np.asarray(indices)))


class _FolderReader(_Reader):
    """Images under a folder, sorted by path; ``root/<class>/...`` gives the label of ``<class>``. Also one
    image file, and the image files a glob matches (its root: the part before the first wildcard)."""

    unit = "images"

    def __init__(self, source: Path | str, ctx: _Context) -> None:
        _image_spec(ctx, need_size=True)
        self.cv2 = require("cv2", extra="opencv", purpose="read calibration images")
        self.ctx = ctx
        if isinstance(source, str):  # a glob
            root, found = _glob(source, ctx.what)
            self.name, self.where = source, f"matching {source}"
        elif source.is_file():
            root, found = source.parent, [Path(source.name)]
            self.name, self.where = str(source), f"from {source.name}"
        else:
            root = source
            found = [p.relative_to(root) for p in root.rglob("*")
                     if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not _hidden(p.relative_to(root))]
            self.name, self.where = f"{root}/", f"in {root.name or root.resolve().name}/"
            if not found:
                raise InputError(f"{ctx.what} set {self.name} has no images (looked for {', '.join(IMAGE_SUFFIXES)})")
        self.label_hint = f" (labels come from class folders: {root}/<class>/image.png)"
        found.sort(key=lambda rel: rel.as_posix())
        self.files = [root / rel for rel in found]
        self.size = len(self.files)
        if self.size == 1:
            self.unit = "image"
        self.labels = self._folder_labels([rel.parts[0] if len(rel.parts) > 1 else None for rel in found])

    def _folder_labels(self, folders: list[str | None]) -> list[int | None]:
        names = sorted({f for f in folders if f is not None})
        if not names:
            return [None] * len(folders)
        ctx = self.ctx
        if ctx.labels is not None:
            unknown = [n for n in names if n not in ctx.labels]
            if unknown:
                raise InputError(
                    f"{ctx.what} set {self.name}: class folders {_shorten(unknown)} are not among the model's "
                    f"classes ({_shorten(ctx.labels)})"
                )
            index = {name: ctx.labels.index(name) for name in names}
        elif all(n.isascii() and n.isdigit() for n in names):
            index = {name: int(name) for name in names}
        elif ctx.require_labels:
            odd = [n for n in names if not (n.isascii() and n.isdigit())]
            raise InputError(
                f"{ctx.what} set {self.name}: class folders {_shorten(odd)} are not class numbers; "
                "pass the model's labels to map folder names to classes"
            )
        else:
            # Calibration without class names: sub-folders are just how the photos are organised.
            log.info("%s set %s: sub-folders are not class numbers; samples are unlabeled", ctx.what, self.name)
            return [None] * len(folders)
        return [None if f is None else index[f] for f in folders]

    def samples(self, indices: np.ndarray) -> Iterator[tuple[np.ndarray, int | None]]:
        for i in indices:
            image = _read_image(self.cv2, self.files[i], self.ctx.what)
            yield _bgr_to_input(self.cv2, image, self.ctx.spec), self.labels[i]

    def unlabeled(self, indices: np.ndarray) -> int:
        return sum(self.labels[i] is None for i in indices)


class _VideoReader(_Reader):
    """Frames of a video, read sequentially (grab to skip, retrieve to decode): seeking is unreliable."""

    unit = "frames"
    evenly = True
    label_hint = " (video frames have no labels)"

    def __init__(self, path: Path, ctx: _Context) -> None:
        _image_spec(ctx, need_size=True)
        self.cv2 = require("cv2", extra="opencv", purpose="read calibration video")
        self.path, self.ctx = path, ctx
        self.name, self.where = str(path), f"of {path.name}"
        cap = self._open()
        try:
            ok, _ = cap.read()
            if not ok:
                raise InputError(f"{ctx.what} video {path} has no readable frames")
            count = int(cap.get(self.cv2.CAP_PROP_FRAME_COUNT))
            if count <= 0:  # unknown for some containers and streams: count by grabbing once
                count = 1
                while cap.grab():
                    count += 1
        finally:
            cap.release()
        self.size = count

    def _open(self):
        cap = self.cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise InputError(f"{self.ctx.what} video {self.path} cannot be opened by OpenCV")
        return cap

    def samples(self, indices: np.ndarray) -> Iterator[tuple[np.ndarray, None]]:
        cap = self._open()
        try:
            position = 0  # index of the frame the next grab() returns
            for i in indices:
                while position <= i:
                    if not cap.grab():
                        raise InputError(
                            f"{self.ctx.what} video {self.path} ended after {position} frames; it reports {self.size}"
                        )
                    position += 1
                ok, frame = cap.retrieve()
                if not ok:
                    raise InputError(f"{self.ctx.what} video {self.path}: frame {i} cannot be decoded")
                yield _bgr_to_input(self.cv2, frame, self.ctx.spec), None
        finally:
            cap.release()


class _Block:
    """One array of samples along axis 0, validated once: uint8 pixels or ready model inputs.

    Rules: uint8 ``[N, H, W]`` or ``[N, H, W, C]`` must have the model's H, W, C (no resize); float (or the
    model's own integer dtype) must be ``[N, *input shape without batch]``, or ``[N, H, W]`` for a one-channel
    input; it is used as-is.
    """

    def __init__(self, array: np.ndarray, ctx: _Context, name: str) -> None:
        self.array, self.ctx, self.name = array, ctx, name
        spec = ctx.spec
        self.channel_axis: int | None = None  # where a missing channel axis goes
        self.float_pixels = False  # a float array read as pixels 0..255 (module docstring): normalized here
        if array.dtype == np.uint8:
            self.pixels = True
            self._check_pixels(array.shape)
        elif np.issubdtype(array.dtype, np.floating) and np.issubdtype(np.dtype(spec.dtype), np.integer):
            raise InputError(f"{name} is {array.dtype} but the model takes {spec.dtype}; give uint8 pixels")
        elif np.issubdtype(array.dtype, np.floating) or array.dtype == np.dtype(spec.dtype):
            self.pixels = False
            self._check_inputs(array.shape)
        else:
            raise InputError(f"{name} has dtype {array.dtype}: expected uint8 pixels or float model inputs")

    def _check_pixels(self, shape: tuple[int, ...]) -> None:
        _image_spec(self.ctx, need_size=False)
        spec = self.ctx.spec
        if len(shape) not in (3, 4):
            raise InputError(f"{self.name}: expected uint8 images [N, H, W] or [N, H, W, C], got shape {shape}")
        if len(shape) == 3:
            self.channel_axis = -1
        got = (*shape[1:3], shape[3] if len(shape) == 4 else 1)
        want = (spec.height, spec.width, spec.channels)
        if not _fits(got, want):
            raise InputError(f"{self.name}: images are {_dims(got)}, the model takes {_dims(want)}")

    def _check_inputs(self, shape: tuple[int, ...]) -> None:
        spec = self.ctx.spec
        want = spec.shape[1:]
        if len(shape) == len(want) and spec.channels == 1 and _fits(shape[1:], (spec.height, spec.width)):
            self.channel_axis = 1 if spec.layout == "NCHW" else -1
        elif len(shape) != len(spec.shape) or not _fits(shape[1:], want):
            raise InputError(f"{self.name}: samples are {_dims(shape[1:])}, the model takes {_dims(want)}")

    def __len__(self) -> int:
        return self.array.shape[0]

    def sample(self, i: int) -> np.ndarray:
        x = np.asarray(self.array[i : i + 1])
        if self.channel_axis is not None:
            x = np.expand_dims(x, self.channel_axis)
        if self.pixels:
            return _pixels_to_input(x, self.ctx.spec)
        if self.float_pixels:
            spec = self.ctx.spec
            return normalize(x, spec.preprocess, channels_last=spec.layout != "NCHW").astype(spec.dtype)
        return x.astype(self.ctx.spec.dtype)  # a copy: never hand out a view of the user's array or file

    @property
    def is_float(self) -> bool:
        return not self.pixels and np.issubdtype(self.array.dtype, np.floating)

    def scan(self, rows: np.ndarray) -> tuple[tuple[int, str] | None, float, float]:
        """The first of ``rows`` holding NaN or inf (and which), and the value range of ``rows``; reads
        ``_CHECK_CHUNK`` rows at a time. Only for float arrays."""
        lo, hi = np.inf, -np.inf
        for start in range(0, len(rows), _CHECK_CHUNK):
            part = rows[start : start + _CHECK_CHUNK]
            block = np.asarray(self.array[part]).reshape(len(part), -1)
            bad = ~np.isfinite(block).all(axis=1)
            if bad.any():
                k = int(np.argmax(bad))
                return (int(part[k]), "NaN" if np.isnan(block[k]).any() else "inf"), lo, hi
            if block.size:
                lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
        return None, lo, hi


def _read_floats_as_pixels(lo: float, hi: float, ctx: _Context, name: str) -> bool:
    """Whether a float array holding ``lo..hi`` is pixels 0..255 to normalize (True) or model inputs to use
    as-is (False), by the rule in the module docstring; InputError when both readings fit."""
    spec, pre = ctx.spec, ctx.spec.preprocess
    mean, std = np.asarray(pre.mean, np.float64), np.asarray(pre.std, np.float64)
    if len(spec.shape) != 4 or spec.layout not in ("NHWC", "NCHW") or not np.isfinite(lo) or (np.all(mean == 0) and np.all(std == 1)):
        return False  # not an image input, no samples, or both readings are the same numbers
    ends = np.concatenate([(0.0 - mean) / std, (255.0 - mean) / std])
    low, high = float(ends.min()), float(ends.max())
    slack = 0.02 * (high - low)
    as_inputs = low - slack <= lo and hi <= high + slack
    as_pixels = -0.5 <= lo and hi <= 255.5
    held = f"{name} holds {lo:.4g}..{hi:.4g}"
    model = f"model inputs for mean {_values(pre.mean)}, std {_values(pre.std)} ({low:.4g}..{high:.4g})"
    if as_inputs and as_pixels and hi - lo > 25.5:
        raise InputError(f"{held}: that reads both as {model} and as pixels 0..255; give the pixels as uint8")
    if as_inputs:
        log.info("%s: %s, used as-is", held, model)
        return False
    if as_pixels:
        log.warning("%s, outside %s: read as pixels 0..255 and normalized once with mean/std", held, model)
        return True
    log.warning("%s: neither %s nor pixels 0..255; used as model inputs as-is (do --mean/--std describe the model?)", held, model)
    return False


def _values(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)


class _ArrayReader(_Reader):
    """A .npy (memory-mapped), a .npz, or an in-memory array; with optional labels."""

    def __init__(self, data: Path | np.ndarray, ctx: _Context) -> None:
        self.ctx = ctx
        if isinstance(data, np.ndarray):
            x, y, self.name, self.where = data, None, "<array>", "of an array"
        else:
            x, y = _load(data, ctx) if data.suffix.lower() == ".npy" else _load_npz(data, ctx)
            self.name, self.where = str(data), f"of {data.name}"
        self.label_hint = " (give labels under 'y' or 'labels' in a .npz)"
        self.block = _Block(x, ctx, f"{ctx.what} array {self.name}")
        self.size = len(self.block)
        self.labels = None if y is None else _check_labels(y, self.size, ctx, self.name)

    def samples(self, indices: np.ndarray) -> Iterator[tuple[np.ndarray, int | None]]:
        for i in indices:
            yield self.block.sample(int(i)), None if self.labels is None else int(self.labels[i])

    def unlabeled(self, indices: np.ndarray) -> int:
        return len(indices) if self.labels is None else 0

    def check(self, indices: np.ndarray) -> None:
        if not self.block.is_float:
            return
        bad, lo, hi = self.block.scan(indices)
        if bad:
            raise InputError(f"{self.block.name} has {bad[1]} at sample {bad[0]}")
        self.block.float_pixels = _read_floats_as_pixels(lo, hi, self.ctx, self.block.name)
        self.note = " (float pixels, normalized with mean/std)" if self.block.float_pixels else ""


def _load(path: Path, ctx: _Context) -> tuple[np.ndarray, None]:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False), None
    except (OSError, ValueError) as exc:
        raise InputError(f"{ctx.what} array {path} cannot be read: {exc}") from None


def _load_npz(path: Path, ctx: _Context) -> tuple[np.ndarray, np.ndarray | None]:
    """Images and labels of a .npz. Members of a zip cannot be memory-mapped, so they are read whole."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            x_key = next((k for k in ("x", "images") if k in keys), keys[0] if len(keys) == 1 else None)
            if x_key is None:
                raise InputError(f"{ctx.what} array {path}: no images under 'x' or 'images' (keys: {', '.join(keys)})")
            y_key = next((k for k in ("y", "labels") if k in keys), None)
            return npz[x_key], None if y_key is None else npz[y_key]
    except (OSError, ValueError) as exc:
        raise InputError(f"{ctx.what} array {path} cannot be read: {exc}") from None


def _check_labels(y: Any, count: int, ctx: _Context, name: str) -> np.ndarray:
    """Labels as int64, one per sample, each a valid class index."""
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"{ctx.what} labels: expected one integer class index per sample, got {y.dtype} {y.shape}")
    if len(y) != count:
        raise InputError(f"{ctx.what} set {name} has {count} samples but {len(y)} labels")
    if len(y) and y.min() < 0:
        raise InputError(f"{ctx.what} labels include {int(y.min())}; class indices start at 0")
    if ctx.labels is not None and len(y) and y.max() >= len(ctx.labels):
        raise InputError(f"{ctx.what} labels go up to {int(y.max())} but the model has {len(ctx.labels)} classes")
    return y.astype(np.int64)


class _IterableReader(_Reader):
    """Arrays or (array, label) pairs from Python. Each item is one sample (with or without batch axis)
    or a batch of them; batches are split into sample views.

    The items are read once, when the dataset is opened, because a generator cannot be read twice. A list
    or tuple is then sampled like any other source; a one-shot iterator is read only up to ``limit``
    samples (its first ones), since it cannot be sampled across without reading it all.
    """

    label_hint = " (give (array, label) pairs)"

    def __init__(self, data: Iterable, ctx: _Context) -> None:
        self.ctx = ctx
        if callable(data) and not isinstance(data, Iterable):
            data = data()  # a generator factory
        self.name, self.where = f"<{type(data).__name__}>", "from Python"
        stop = ctx.limit if not isinstance(data, Sized) else None
        self.rows: list[tuple[_Block, int, int | None]] = []
        for k, item in enumerate(data):
            array, label = item if isinstance(item, tuple) and len(item) == 2 else (item, None)
            block = _Block(self._with_batch(np.asarray(array)), ctx, f"{ctx.what} data item {k}")
            labels = self._item_labels(label, len(block))
            self.rows += [(block, i, labels[i]) for i in range(len(block))]
            if stop is not None and len(self.rows) >= stop:
                del self.rows[stop:]
                break
        self.size = len(self.rows)

    def _with_batch(self, array: np.ndarray) -> np.ndarray:
        """Add the batch axis when ``array`` is exactly one sample without it."""
        spec = self.ctx.spec
        one = [(spec.height, spec.width, spec.channels)] if array.dtype == np.uint8 else [spec.shape[1:]]
        if spec.channels == 1:
            one.append((spec.height, spec.width))  # the channel axis may be left out too
        if any(len(array.shape) == len(s) and _fits(array.shape, s) for s in one):
            return array[None]
        return array

    def _item_labels(self, label: Any, n: int) -> list[int | None]:
        if label is None:
            return [None] * n
        values = np.atleast_1d(np.asarray(label))
        if len(values) == 1 and n > 1:
            values = np.repeat(values, n)
        return [int(v) for v in _check_labels(values, n, self.ctx, self.name)]

    def samples(self, indices: np.ndarray) -> Iterator[tuple[np.ndarray, int | None]]:
        for i in indices:
            block, row, label = self.rows[i]
            yield block.sample(row), label

    def unlabeled(self, indices: np.ndarray) -> int:
        return sum(self.rows[i][2] is None for i in indices)

    def check(self, indices: np.ndarray) -> None:
        lo, hi = np.inf, -np.inf
        for i in indices:
            block, row, _ = self.rows[i]
            if not block.is_float:
                continue
            bad, b_lo, b_hi = block.scan(np.array([row]))
            if bad:
                raise InputError(f"{block.name} has {bad[1]} at sample {i}")
            lo, hi = min(lo, b_lo), max(hi, b_hi)
        pixels = _read_floats_as_pixels(lo, hi, self.ctx, f"{self.ctx.what} data {self.name}")
        for block, _, _ in self.rows:
            block.float_pixels = pixels and block.is_float
        self.note = " (float pixels, normalized with mean/std)" if pixels else ""


def _glob(pattern: str, what: str) -> tuple[Path, list[Path]]:
    """The root of a glob (its folders before the first wildcard) and the image files it matches, relative
    to the root; hidden ones left out as in a folder."""
    parts = Path(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if any(c in part for c in _GLOB_CHARS))
    root = Path(*parts[:fixed]) if fixed else Path(".")
    rest = str(Path(*parts[fixed:]))
    try:
        matched = [p for p in root.glob(rest) if p.is_file()]
    except ValueError as exc:  # a malformed pattern ("a**b")
        raise InputError(f"{what} data {pattern} is not a usable glob: {exc}") from None
    found = [p.relative_to(root) for p in matched if p.suffix.lower() in IMAGE_SUFFIXES and not _hidden(p.relative_to(root))]
    if not found:
        other = f"; it matches {len(matched)} files, none an image ({', '.join(IMAGE_SUFFIXES)})" if matched else " matches no file"
        raise InputError(f"{what} data {pattern}{other}")
    return root, found


_READERS: dict[str, Callable[[Any, _Context], _Reader]] = {
    "folder": _FolderReader,
    "image": _FolderReader,
    "glob": _FolderReader,
    "video": _VideoReader,
    "array": _ArrayReader,
    "iterable": _IterableReader,
}


def _kind_of(data: Any, what: str) -> str:
    """Which reader opens ``data``; InputError listing the accepted forms when none does."""
    if isinstance(data, np.ndarray):
        return "array"
    if isinstance(data, (str, Path)):
        path = Path(data)
        if path.is_dir():
            return "folder"
        if not path.exists():
            if any(c in str(data) for c in _GLOB_CHARS):
                return "glob"
            raise InputError(f"{what} data {data} not found; {ACCEPTED}")
        suffix = path.suffix.lower()
        if path.is_file() and suffix in VIDEO_SUFFIXES:
            return "video"
        if path.is_file() and suffix in (".npy", ".npz"):
            return "array"
        if path.is_file() and suffix in IMAGE_SUFFIXES:
            return "image"
        raise InputError(f"{what} data {data} is not a folder, image, video or array ({suffix or 'no suffix'}); {ACCEPTED}")
    if (isinstance(data, Iterable) and not isinstance(data, (bytes, dict))) or callable(data):
        return "iterable"
    raise InputError(f"{what} data of type {type(data).__name__} is not usable; {ACCEPTED}")


# --- small helpers ---------------------------------------------------------------------------------------------


def _hidden(rel: Path) -> bool:
    """Inside a dot-folder or a dot-file (.ipynb_checkpoints, ._photo.jpg from macOS)."""
    return any(part.startswith(".") for part in rel.parts)


def _fits(got: tuple, want: tuple) -> bool:
    """Shapes agree, with None in ``want`` matching any size."""
    return len(got) == len(want) and all(w is None or g == w for g, w in zip(got, want))


def _dims(shape: tuple) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def _shorten(names: list[str], keep: int = 10) -> str:
    text = ", ".join(names[:keep])
    return text if len(names) <= keep else f"{text}, ... ({len(names)} in all)"
