"""Where frames come from: an image file, a folder of images or a video file, behind one interface.

:func:`open_source` picks the kind of source from its text (or from ``kind=``) through :data:`SOURCES`, an
ordered registry of :class:`FrameSource` classes. Each class says whether it ``claims`` a text; the first
that does opens it. A camera index (``0``) or a stream URL (``rtsp://...``) fits as one more entry whose
``claims`` recognizes its text, placed before the file-based ones.

Iterating a source yields :class:`Frame` objects: the uint8 image as OpenCV decodes it (``[H, W]`` gray,
``[H, W, 3]`` BGR; alpha is dropped and 16-bit images are scaled to 8 bits), its position and a name. An
image that cannot be decoded is skipped with a logged warning and recorded in ``source.skipped``; the
rest continue. OpenCV is imported when a source is opened, not when this module is.

Example:
    >>> with open_source("street.mp4") as frames:                        # doctest: +SKIP
    ...     for frame in frames:
    ...         detections = detector.detect(frame.image)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Iterator

import numpy as np

from edgecv.deps import require
from edgecv.errors import ConfigError, InputError

if TYPE_CHECKING:
    from types import ModuleType

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")


def _cv2(purpose: str) -> ModuleType:
    return require("cv2", extra="opencv", purpose=purpose, package="opencv-python-headless")


@dataclass(frozen=True, eq=False)
class Frame:
    """One frame: ``image`` uint8 ``[H, W]`` (gray) or ``[H, W, 3]`` (BGR), as OpenCV decodes it.

    ``index`` is its position in the source (counting skipped images), ``name`` a file-like name that is
    unique within the source (the image's file name, or ``<video stem>_<index>`` for a video frame),
    ``time_ms`` the video timestamp (None for still images), ``path`` the file it came from.
    """

    image: np.ndarray
    index: int
    name: str
    time_ms: float | None = None
    path: Path | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.image.shape[1]), int(self.image.shape[0])


class FrameSource:
    """Base of every source: iterate it for :class:`Frame` objects; close it (or use ``with``) when done.

    ``kind`` is the registry name, ``name`` a short name for output files, ``fps`` the frame rate of a
    video (None for still images), ``length`` the number of frames when known (None otherwise, e.g. for a
    stream), ``skipped`` the (name, reason) of every frame that could not be read.
    """

    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self, text: str) -> None:
        self.text = text
        self.name = text
        self.fps: float | None = None
        self.length: int | None = None
        self.skipped: list[tuple[str, str]] = []

    @classmethod
    def claims(cls, text: str) -> bool:
        """Whether ``text`` names a source of this kind (used when no kind is given)."""
        raise NotImplementedError

    @property
    def is_video(self) -> bool:
        """True for sources whose frames form a timed sequence (video files; cameras and streams later)."""
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
                data = np.fromfile(str(path), np.uint8)
            except OSError as exc:
                self._skip(path.name, f"cannot read the file ({exc.strerror or exc})")
                continue
            image = decode_image(data, cv2=self._cv2)
            if image is None:
                self._skip(path.name, "cannot decode the image")
                continue
            yield Frame(image=image, index=index, name=path.name, path=path)


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


class VideoFile(FrameSource):
    """A video file, frame by frame. ``length`` is the container's frame count (it can be approximate)."""

    kind = "video"
    description = f"a video file ({', '.join(VIDEO_SUFFIXES)})"

    def __init__(self, text: str) -> None:
        super().__init__(text)
        path = Path(text)
        if not path.is_file():
            raise InputError(f"source not found: {path}")
        cv2 = _cv2("read videos")
        self._cv2 = cv2
        self.path = path
        self.name = path.stem
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            self._cap.release()
            raise InputError(f"cannot open video {path} (not a video, or no decoder for it in this OpenCV)")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if fps > 0 else 25.0  # some containers carry no rate; 25 keeps written videos playable
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.length = count if count > 0 else None
        self._read = False

    @classmethod
    def claims(cls, text: str) -> bool:
        return Path(text).suffix.lower() in VIDEO_SUFFIXES

    def __iter__(self) -> Iterator[Frame]:
        if self._read:
            raise InputError(f"video {self.path} can be read once; open it again to read it again")
        self._read = True
        cv2 = self._cv2
        index = 0
        while True:
            ok, image = self._cap.read()
            if not ok:
                break
            t = float(self._cap.get(cv2.CAP_PROP_POS_MSEC))
            yield Frame(image=image, index=index, name=f"{self.name}_{index:06d}", time_ms=t, path=self.path)
            index += 1

    def close(self) -> None:
        self._cap.release()


# Checked in order by open_source(); camera and stream sources go before the file-based ones.
SOURCES: dict[str, type[FrameSource]] = {
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
