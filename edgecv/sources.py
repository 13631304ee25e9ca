"""Where frames come from: a webcam, a network stream, a video file, an image folder or glob, or the built-in
scene generator, behind one interface.

:func:`open_source` picks the kind of source from its text (or from ``kind=``) through :data:`SOURCES`, an
ordered registry of :class:`FrameSource` classes. Each class says whether it ``claims`` a text; the first
that does opens it: ``0`` is a camera index, ``rtsp://``, ``http(s)://``, ``tcp://``... a stream,
``synthetic[:seed=3,frames=600,size=320x320,fps=30]`` the scene generator, a text with ``*``, ``?`` or ``[``
a glob of images, then folders, image files and video files.

Live sources (cameras and streams) set ``live``: their frames come when the camera makes them, and a
dropped one can be opened again with :meth:`FrameSource.reopen` (:mod:`edgecv.pipeline.capture` does it
with backoff). Every source reports ``fps`` (None for still images) and ``size`` (width, height; None until
known for images).

Iterating a source yields :class:`Frame` objects: the uint8 image as OpenCV decodes it (``[H, W]`` gray,
``[H, W, 3]`` BGR; alpha is dropped and 16-bit images are scaled to 8 bits), its position and a name. An
image that cannot be decoded (or a JPEG cut short) is skipped with a logged warning and recorded in
``source.skipped``; the rest continue, and a file source that yields no frame at all raises
:class:`~edgecv.errors.InputError`. OpenCV is imported when a source is opened, not when this module is.

File sources know how many frames they should give (``length``: the images found, or the frame count
the video's container declares) and count what they gave (``read``). A video file that ends before its
declared count (beyond :data:`TRUNCATION_TOLERANCE` frames, and with its last frame's time short of the
declared duration too, so that an approximate count does not cry wolf) sets ``truncated`` to a
one-line message, ``"video clip.avi: expected 100 frames, read 51 ..."``; the pipeline ends such a run in
the state ``truncated``. Live sources have no declared count.

Example:
    >>> with open_source("street.mp4") as frames:                        # doctest: +SKIP
    ...     for frame in frames:
    ...         detections = detector.detect(frame.image)
"""

from __future__ import annotations

import glob
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator

import numpy as np

from edgecv.deps import require
from edgecv.errors import ConfigError, InputError, SourceError

if TYPE_CHECKING:
    from types import ModuleType

log = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "tcp", "udp", "srt")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")
# Frames a video may fall short of its declared count and still count as whole: containers without a
# frame index (MKV, WebM) declare duration x rate rounded to a frame, and a start offset or a last frame's
# duration moves that by one more. A file cut short misses far more than two frames.
TRUNCATION_TOLERANCE = 2
_JPEG_SUFFIXES = (".jpg", ".jpeg")


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def redact(text: str) -> str:
    """``text`` with the user and password of any URL in it hidden (for logs, errors, the API).

    Example:
        >>> redact("rtsp://admin:secret@10.0.0.7/stream1")
        'rtsp://***@10.0.0.7/stream1'
    """
    return _USERINFO.sub("***@", text)


def _cv2(purpose: str) -> ModuleType:
    quiet_opencv()
    return require("cv2", extra="opencv", purpose=purpose, package="opencv-python-headless")


def quiet_opencv() -> None:
    """FFmpeg's own messages inside OpenCV off (they print a stream's URL with its user and password, straight
    to the terminal), unless ``OPENCV_FFMPEG_LOGLEVEL`` is set; OpenCV's own warnings too, unless
    ``OPENCV_LOG_LEVEL`` is. What failed is still said, in edgecv's own errors. FFmpeg reads its setting when
    OpenCV first opens a video in the process, so this runs before that (the CLI calls it at start)."""
    import os

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")


@dataclass(frozen=True, eq=False)
class Frame:
    """One frame: ``image`` uint8 ``[H, W]`` (gray) or ``[H, W, 3]`` (BGR), as OpenCV decodes it.

    ``index`` is its position in the source (counting skipped images), ``name`` a file-like name that is
    unique within the source (the image's file name, or ``<video stem>_<index>`` for a video frame),
    ``time_ms`` the video timestamp (None for still images), ``path`` the file it came from, ``truth`` the
    exact ground truth of a generated frame (:class:`~edgecv.detection.Detections` with identities; None
    for other sources): it travels with its frame, so that nothing keeps the truth of a whole run.
    """

    image: np.ndarray
    index: int
    name: str
    time_ms: float | None = None
    path: Path | None = None
    truth: Any = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.image.shape[1]), int(self.image.shape[0])


class FrameSource:
    """Base of every source: iterate it for :class:`Frame` objects; close it (or use ``with``) when done.

    ``kind`` is the registry name, ``name`` a short name for output files, ``fps`` the frame rate of a
    video (None for still images), ``size`` the frame (width, height) when known, ``length`` the number of
    frames when known (None otherwise, e.g. for a stream), ``read`` the frames given so far, ``skipped`` the
    (name, reason) of every frame that could not be read, ``truncated`` a one-line message once a file
    source has ended short of its ``length`` (None otherwise). ``live`` sources (cameras, streams) make
    frames in real time whether read or not.
    """

    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    live: ClassVar[bool] = False

    def __init__(self, text: str) -> None:
        self.text = text
        self.name = text
        self.fps: float | None = None
        self.size: tuple[int, int] | None = None
        self.length: int | None = None
        self.read = 0
        self.skipped: list[tuple[str, str]] = []
        self.truncated: str | None = None

    @property
    def shown(self) -> str:
        """``text`` as logs and messages show it: a URL's user and password hidden."""
        return redact(self.text)

    def reopen(self) -> None:
        """Open a live source again after it dropped; raises :class:`~edgecv.errors.SourceError` while it
        cannot be opened. Files cannot be reopened."""
        raise SourceError(f"{self.kind} source {self.shown} cannot be reopened")

    @classmethod
    def claims(cls, text: str) -> bool:
        """Whether ``text`` names a source of this kind (used when no kind is given)."""
        raise NotImplementedError

    @property
    def is_video(self) -> bool:
        """True for sources whose frames form a timed sequence (videos, cameras, streams, the generator)."""
        return self.fps is not None

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the source (a no-op for image files)."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.text!r})"

    def _skip(self, name: str, reason: str) -> None:
        log.warning("skipping %s: %s", name, reason)
        self.skipped.append((name, reason))

    def input_report(self) -> dict[str, Any]:
        """What the source declared and gave, for a run's summary: ``expected_frames`` (``length``; None
        when unknown or live), ``read_frames``, ``undecodable`` (frames skipped, the first ten named in
        ``undecodable_files``) and the ``truncated`` message (None unless the file ended short)."""
        return {"expected_frames": None if self.live else self.length, "read_frames": self.read,
                "undecodable": len(self.skipped), "undecodable_files": [name for name, _ in self.skipped[:10]],
                "truncated": self.truncated}


def decode_image(data: bytes | np.ndarray, *, cv2: ModuleType | None = None) -> np.ndarray | None:
    """Encoded image bytes -> uint8 ``[H, W]`` (gray) or ``[H, W, 3]`` (BGR), EXIF orientation applied;
    None when OpenCV cannot decode them. Alpha is dropped; 16-bit images are scaled to 8 bits."""
    cv2 = cv2 or _cv2("decode images")
    buf = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray)) else data
    if buf.size == 0:
        return None
    # IMREAD_ANYCOLOR keeps gray images one channel, converts the rest to BGR and applies EXIF
    # orientation (as eval-det's image sizes do); without IMREAD_ANYDEPTH, 16-bit images become 8-bit.
    image = cv2.imdecode(buf, cv2.IMREAD_ANYCOLOR)
    if image is None or image.size == 0:
        return None
    if image.dtype != np.uint8:  # defensive: some OpenCV builds hand back other depths
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(float(image.max()), 1.0))
    return image


def jpeg_cut_short(data: bytes) -> bool:
    """True when JPEG ``data`` holds image data (a start-of-scan) with no end-of-image marker after it: a file
    cut short, which OpenCV 4 decodes with only a libjpeg warning on stderr, grey below the cut (OpenCV 5
    refuses it); skipped with this reason either way. The headers before the scan are
    walked by their lengths, so an EXIF thumbnail's own end marker does not count; data after the end
    marker (phones append a video there) is fine. Not a JPEG, or no scan at all: False (decoding decides).

    Example:
        >>> head = b"\\xff\\xd8\\xff\\xda\\x00\\x02"  # start of image, then a scan
        >>> jpeg_cut_short(head + b"scan data"), jpeg_cut_short(head + b"scan data\\xff\\xd9")
        (True, False)
    """
    if not data.startswith(b"\xff\xd8"):
        return False
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False  # not a marker where one belongs: damaged in another way
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return False  # an end of image before any scan: nothing cut
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xDA:
            # in the entropy-coded data a 0xFF byte is followed by 0x00 or a restart marker, so 0xFF 0xD9
            # there is the end of the image (a progressive JPEG's later scans and tables come before it)
            return b"\xff\xd9" not in data[pos + 2 + length:]
        pos += 2 + length
    return False


class _Images(FrameSource):
    """Still images read from files, in a fixed order."""

    def __init__(self, text: str, files: list[Path]) -> None:
        super().__init__(text)
        self.files = files
        self.length = len(files)
        self._cv2 = _cv2("read images")

    def __iter__(self) -> Iterator[Frame]:
        for index, path in enumerate(self.files):
            try:
                data = path.read_bytes()
            except OSError as exc:
                self._skip(path.name, f"cannot read the file ({exc.strerror or exc})")
                continue
            if path.suffix.lower() in _JPEG_SUFFIXES and jpeg_cut_short(data):
                self._skip(path.name, "the JPEG is cut short (no end-of-image marker after its image data)")
                continue
            image = decode_image(data, cv2=self._cv2)
            if image is None:
                self._skip(path.name, "cannot decode the image")
                continue
            self.read += 1
            yield Frame(image=image, index=index, name=path.name, path=path)
        if not self.read:
            shown = "; ".join(f"{n}: {r}" for n, r in self.skipped[:3]) + (" ..." if len(self.skipped) > 3 else "")
            raise InputError(f"no frame could be read from {self.text}: {len(self.skipped)} of {len(self.files)} "
                             f"image file(s) could not be decoded ({shown})")


class ImageFile(_Images):
    """One image file."""

    kind = "image"
    description = f"an image file ({', '.join(IMAGE_SUFFIXES)})"

    def __init__(self, text: str) -> None:
        path = Path(text)
        if not path.is_file():
            raise InputError(f"source not found: {path}")
        super().__init__(text, [path])
        self.name = path.stem

    @classmethod
    def claims(cls, text: str) -> bool:
        return Path(text).suffix.lower() in IMAGE_SUFFIXES


class ImageFolder(_Images):
    """Every image file directly in a folder, by name (sub-folders and other files are ignored)."""

    kind = "folder"
    description = "a folder of image files"

    def __init__(self, text: str) -> None:
        folder = Path(text)
        if not folder.is_dir():
            raise InputError(f"source folder not found: {folder}")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {folder}")
        super().__init__(text, files)
        self.name = folder.resolve().name or "images"
        self.folder = folder

    @classmethod
    def claims(cls, text: str) -> bool:
        return Path(text).is_dir()


class ImageGlob(_Images):
    """Every image file a glob pattern matches (``frames/*.png``, ``cam[12]/**/*.jpg``), by path."""

    kind = "glob"
    description = "a glob of image files (frames/*.jpg)"

    def __init__(self, text: str) -> None:
        files = sorted(Path(p) for p in glob.glob(text, recursive=True)
                       if Path(p).suffix.lower() in IMAGE_SUFFIXES and Path(p).is_file())
        if not files:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) match {text}")
        super().__init__(text, files)
        self.name = files[0].parent.resolve().name or "images"

    @classmethod
    def claims(cls, text: str) -> bool:
        return glob.has_magic(text) and not Path(text).exists()


class _OpenCvCapture(FrameSource):
    """A source OpenCV's VideoCapture reads: a video file, a camera or a stream."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._cv2 = _cv2(f"read {self.description}")
        self._cap: Any = None
        self._index = 0
        self._open()

    def _target(self) -> tuple[Any, ...]:
        """The arguments of ``cv2.VideoCapture`` for this source."""
        raise NotImplementedError

    def _open(self) -> None:
        cv2 = self._cv2
        self._cap = cv2.VideoCapture(*self._target())
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(self._cannot_open())
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        # some containers and cameras carry no rate (or absurd ones); 25 keeps written videos playable
        self.fps = fps if 0 < fps <= 1000 else 25.0
        w, h = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        self.size = (w, h) if w > 0 and h > 0 else None

    def _cannot_open(self) -> str:
        return f"cannot open {self.description} {self.shown}"

    def _timestamp_ms(self) -> float:
        return float(self._cap.get(self._cv2.CAP_PROP_POS_MSEC))

    def __iter__(self) -> Iterator[Frame]:
        while self._cap is not None:
            ok, image = self._cap.read()
            if not ok or image is None:
                break
            index, self._index = self._index, self._index + 1
            if self.size is None:
                self.size = (int(image.shape[1]), int(image.shape[0]))
            self.read += 1
            yield Frame(image=image, index=index, name=f"{self.name}_{index:06d}", time_ms=self._timestamp_ms(),
                        path=getattr(self, "path", None))

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()


class VideoFile(_OpenCvCapture):
    """A video file, frame by frame. ``length`` is the container's frame count (exact where the container
    indexes its frames, as AVI and MP4 do; duration x rate rounded where it does not, as MKV). Reading to
    the end checks what was read against it (see the module docstring); a file that gives no frame at all
    raises :class:`~edgecv.errors.InputError`."""

    kind = "video"
    description = f"a video file ({', '.join(VIDEO_SUFFIXES)})"

    def __init__(self, text: str) -> None:
        path = Path(text)
        if not path.is_file():
            raise InputError(f"source not found: {path}")
        self.path = path
        self._read = False
        super().__init__(text)
        self.name = path.stem
        count = int(self._cap.get(self._cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.length = count if count > 0 else None

    def _target(self) -> tuple[Any, ...]:
        return (str(self.path),)

    def _cannot_open(self) -> str:
        return f"cannot open video {self.path} (not a video, a file cut short, or no decoder for it in this OpenCV)"

    @classmethod
    def claims(cls, text: str) -> bool:
        return Path(text).suffix.lower() in VIDEO_SUFFIXES

    def __iter__(self) -> Iterator[Frame]:
        if self._read:
            raise InputError(f"video {self.path} can be read once; open it again to read it again")
        self._read = True
        last_ms: float | None = None
        for frame in super().__iter__():
            last_ms = frame.time_ms
            yield frame
        self._check_end(last_ms)

    def _check_end(self, last_ms: float | None) -> None:
        """After the last frame: no frame is an error; fewer than declared sets ``truncated``."""
        declared = f" (the container declares {self.length})" if self.length else ""
        if not self.read:
            raise InputError(f"no frame could be read from video {self.path}{declared}: cut short or damaged")
        if self.length is None or self.length - self.read <= TRUNCATION_TOLERANCE:
            return
        frame_ms = 1000.0 / self.fps if self.fps else 0.0
        duration_ms = self.length * frame_ms
        covered_ms = (last_ms or 0.0) + frame_ms
        if frame_ms and covered_ms >= duration_ms - TRUNCATION_TOLERANCE * frame_ms:
            # fewer frames than declared, but they span the declared duration: a variable frame rate or an
            # estimated count, not a file cut short
            log.info("video %s: %d frames where the container estimated %d, over its whole duration",
                     self.path, self.read, self.length)
            return
        self.truncated = (f"video {self.path}: expected {self.length} frames, read {self.read} "
                          f"(ends at {covered_ms / 1000:.2f} s of {duration_ms / 1000:.2f} s: cut short or damaged)")
        log.warning("%s", self.truncated)


class _Live(_OpenCvCapture):
    """A camera or stream: frames are timed by the clock that received them (monotonic, from the first
    opening), so times keep increasing across reconnections; indices keep counting too."""

    live = True

    def __init__(self, text: str) -> None:
        self._clock0 = time.monotonic()
        super().__init__(text)

    def _timestamp_ms(self) -> float:
        return (time.monotonic() - self._clock0) * 1000.0

    def reopen(self) -> None:
        self.close()
        self._cap = None
        self._open()


class Camera(_Live):
    """A local camera by its index (``0`` is the first), through OpenCV."""

    kind = "camera"
    description = "a camera index (0, 1, ...)"

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.name = f"camera{int(text)}"

    @classmethod
    def claims(cls, text: str) -> bool:
        return text.strip().isdigit()

    def _target(self) -> tuple[Any, ...]:
        return (int(self.text),)

    def _cannot_open(self) -> str:
        return f"cannot open camera {self.text} (no such device, or it is busy)"


class Stream(_Live):
    """A network stream (RTSP, HTTP(S), TCP, UDP, RTMP, SRT) through OpenCV's FFmpeg backend, with open and
    read timeouts so that a dead peer is noticed in seconds, not minutes."""

    kind = "stream"
    description = f"a stream URL ({', '.join(s + '://' for s in STREAM_SCHEMES[:6])}...)"
    timeout_ms: ClassVar[int] = 5000

    def __init__(self, text: str) -> None:
        super().__init__(text)
        tail = text.split("://", 1)[1].split("?", 1)[0].rstrip("/")
        self.name = "".join(c if c.isalnum() or c in "-_." else "_" for c in tail.replace("/", "_")) or "stream"

    @classmethod
    def claims(cls, text: str) -> bool:
        return "://" in text and text.split("://", 1)[0].lower() in STREAM_SCHEMES

    def _target(self) -> tuple[Any, ...]:
        cv2 = self._cv2
        return (self.text, cv2.CAP_FFMPEG,
                [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self.timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.timeout_ms])

    def _cannot_open(self) -> str:
        return f"cannot open stream {self.shown} (nothing serving there, or a format this OpenCV cannot read)"


@dataclass(frozen=True)
class SyntheticOptions:
    """The ``synthetic:key=value,...`` settings: generator ``seed``, ``frames`` (0: endless), ``size``
    (width, height) and ``fps``. Objects move a fixed share of the frame per second whatever the size."""

    seed: int = 0
    frames: int = 600
    size: tuple[int, int] = (320, 320)
    fps: float = 30.0

    @classmethod
    def parse(cls, text: str) -> SyntheticOptions:
        """``synthetic`` or ``synthetic:seed=3,frames=900,size=640x480,fps=25``."""
        form = "synthetic[:seed=N,frames=N,size=WxH,fps=F]"
        _, _, rest = text.partition(":")
        values: dict[str, Any] = {}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = item.partition("=")
            try:
                if not eq or key not in ("seed", "frames", "size", "fps"):
                    raise ValueError
                if key == "size":
                    w, h = value.lower().split("x")
                    values[key] = (int(w), int(h))
                else:
                    values[key] = float(value) if key == "fps" else int(value)
            except ValueError:
                raise ConfigError(f"source {text!r}: cannot read {item!r}; expected {form}") from None
        o = cls(**values)
        if o.frames < 0 or o.fps <= 0 or min(o.size) < 32:
            raise ConfigError(f"source {text!r}: expected frames >= 0, fps > 0 and both sides >= 32 px; form {form}")
        return o


class Synthetic(FrameSource):
    """Video from the built-in scene generator (:class:`edgecv.scenes.SceneVideo`), with exact truth: each
    frame's ``truth`` is its ground truth with identities (given only when the video has a length: an
    endless run could not be scored at its end). Nothing is kept here: the truth goes with its frame.

    Objects are from a tenth of the frame's short side up, the scale the built-in detector was trained on.
    """

    kind = "synthetic"
    description = "the built-in scene generator (synthetic[:seed=N,frames=N,size=WxH,fps=F])"
    min_scale: ClassVar[float] = 0.1

    def __init__(self, text: str) -> None:
        from edgecv.scenes import SceneOptions, SceneVideo

        super().__init__(text)
        self.options = o = SyntheticOptions.parse(text)
        self.name = f"synthetic_seed{o.seed}"
        self.fps, self.size, self.length = o.fps, o.size, (o.frames or None)
        w, h = o.size
        # SceneVideo's default motion is 2 px per frame at 160 px and 30 fps: keep that share per second
        speed = 2.0 * min(w, h) / 160 * 30.0 / o.fps
        self.video = SceneVideo(seed=o.seed, options=SceneOptions(size=(h, w), min_scale=self.min_scale), speed=speed,
                                order="BGR")

    @property
    def has_truth(self) -> bool:
        """Whether frames carry their ground truth (a finite video)."""
        return self.length is not None

    @classmethod
    def claims(cls, text: str) -> bool:
        return text == "synthetic" or text.startswith("synthetic:")

    def __iter__(self) -> Iterator[Frame]:
        index = self.video.frame_index
        while self.length is None or index < self.length:
            bgr, truth = self.video.step()  # rendered in OpenCV's order, a new array each frame
            self.read += 1
            yield Frame(image=bgr, index=index, name=f"{self.name}_{index:06d}",
                        time_ms=1000.0 * index / self.options.fps, truth=truth if self.has_truth else None)
            index += 1


# Checked in order by open_source(): the kinds recognized by their text go before the file-based ones.
SOURCES: dict[str, type[FrameSource]] = {
    Camera.kind: Camera,
    Stream.kind: Stream,
    Synthetic.kind: Synthetic,
    ImageGlob.kind: ImageGlob,
    ImageFolder.kind: ImageFolder,
    ImageFile.kind: ImageFile,
    VideoFile.kind: VideoFile,
}


def open_source(text: str | Path, *, kind: str | None = None) -> FrameSource:
    """Open ``text`` as the source of kind ``kind`` (a key of :data:`SOURCES`), or of the first kind that
    claims it. Missing files, empty folders and unknown kinds raise one-line errors."""
    text = str(text)
    if kind is not None:
        cls = SOURCES.get(kind)
        if cls is None:
            raise ConfigError(f"unknown source kind {kind!r}; valid kinds: {', '.join(SOURCES)}")
        return cls(text)
    for cls in SOURCES.values():
        if cls.claims(text):
            return cls(text)
    if not Path(text).exists():
        raise InputError(f"source not found: {text}")
    kinds = "; ".join(c.description for c in SOURCES.values())
    raise InputError(f"cannot tell what kind of source {text} is; expected {kinds}")
