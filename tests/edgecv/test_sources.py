"""Frame sources: which kind claims which text, the generator's options and truth (given with each frame,
nothing kept per frame), globs, cameras and streams that cannot be opened (one-line SourceErrors), the frame
rate and size every source reports, and cut-short inputs: videos cut at a byte (truncated, or an error when
nothing can be read), JPEGs cut short, folders where some or all images do not decode."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgecv.errors import ConfigError, InputError, SourceError
from edgecv.sources import (SOURCES, TRUNCATION_TOLERANCE, Camera, ImageGlob, Stream, Synthetic, SyntheticOptions,
                            jpeg_cut_short, open_source)
from tests.edgecv.pipeline.test_sinks import need_ffmpeg

cv2 = pytest.importorskip("cv2")


@pytest.mark.parametrize("text, kind", [
    ("0", "camera"), ("12", "camera"),
    ("rtsp://10.0.0.2:554/live", "stream"), ("HTTP://cam/video.mjpg", "stream"), ("tcp://127.0.0.1:9000", "stream"),
    ("udp://@:1234", "stream"), ("synthetic", "synthetic"), ("synthetic:seed=3", "synthetic"),
    ("frames/*.png", "glob"), ("street.mp4", "video"), ("photo.JPG", "image"),
])
def test_each_text_is_claimed_by_the_right_kind(text, kind):
    claimed = next(name for name, cls in SOURCES.items() if cls.claims(text))
    assert claimed == kind


@pytest.mark.parametrize("text, options, error", [
    ("synthetic", SyntheticOptions(), None),
    ("synthetic:seed=3,frames=10,size=64x48,fps=12.5", SyntheticOptions(3, 10, (64, 48), 12.5), None),
    ("synthetic:frames=0", SyntheticOptions(frames=0), None),
    ("synthetic:seed=x", None, "cannot read 'seed=x'; expected synthetic"),
    ("synthetic:colour=red", None, "cannot read 'colour=red'"),
    ("synthetic:size=64", None, "cannot read 'size=64'"),
    ("synthetic:size=16x16", None, "both sides >= 32 px"),
    ("synthetic:fps=0", None, "fps > 0"),
    ("synthetic:frames=-1", None, "frames >= 0"),
])
def test_synthetic_options(text, options, error):
    if error is None:
        assert SyntheticOptions.parse(text) == options
    else:
        with pytest.raises(ConfigError, match=error):
            SyntheticOptions.parse(text)


def test_synthetic_source_frames_truth_rate_and_size():
    src = open_source("synthetic:seed=5,frames=6,size=96x64,fps=20")
    assert isinstance(src, Synthetic) and not src.live and src.is_video and src.has_truth
    assert (src.fps, src.size, src.length, src.name) == (20.0, (96, 64), 6, "synthetic_seed5")
    frames = list(src)
    assert [f.index for f in frames] == list(range(6)) and [f.time_ms for f in frames] == [0, 50, 100, 150, 200, 250]
    assert all(f.image.shape == (64, 96, 3) and f.image.dtype == np.uint8 for f in frames)
    assert all(f.truth is not None and f.truth.tracker_id is not None for f in frames)
    assert src.input_report() == {"expected_frames": 6, "read_frames": 6, "undecodable": 0, "undecodable_files": [],
                                  "truncated": None}
    # frames are BGR, as OpenCV sources give them: the generator renders them in that order (test_scenes checks
    # that this is its RGB frame with the channels reversed)
    from edgecv.scenes import SceneOptions, SceneVideo

    video = SceneVideo(seed=5, options=SceneOptions(size=(64, 96), min_scale=Synthetic.min_scale),
                       speed=2.0 * 64 / 160 * 30 / 20, order="BGR")
    bgr, truth = video.step()
    assert np.array_equal(frames[0].image, bgr)
    assert np.array_equal(frames[0].truth.xyxy, truth.xyxy) and np.array_equal(frames[0].truth.tracker_id,
                                                                                 truth.tracker_id)


def test_endless_synthetic_gives_no_truth():
    src = open_source("synthetic:frames=0,size=64x64")
    it = iter(src)
    frames = [next(it) for _ in range(5)]
    assert src.length is None and not src.has_truth and all(f.truth is None for f in frames)


def retained_bytes(*roots: object) -> int:
    """Bytes of every object reachable from ``roots`` (numpy buffers by their size; classes, modules and
    functions left out): what a source keeps alive between frames."""
    import gc
    import sys
    import types

    seen, stack, total = set(), list(roots), 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)):
            continue
        seen.add(id(obj))
        total += obj.nbytes if isinstance(obj, np.ndarray) and obj.base is None else sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def test_a_finite_generator_keeps_nothing_per_frame():
    """Issue 16 item 7: the truth of every frame read (about 1.4 KB a frame) was kept for the whole run; now
    it goes with its frame, and the source with its iterator stays the same size however far it has read.
    The size moves by a few KB with the objects in the scene; the old dict of truths grew 210 KB here."""
    src = open_source("synthetic:seed=2,frames=600,size=64x64")
    it = iter(src)
    sizes = {}
    for n in range(1, 601):
        frame = next(it)
        assert frame.truth is not None
        if n in (100, 600):
            sizes[n] = retained_bytes(src, it)
    del frame
    assert sizes[600] - sizes[100] < 40_000, sizes
    assert src.read == 600


def test_glob_reads_matching_images_in_order(tmp_path):
    for name in ("b.png", "a.png", "c.jpg", "notes.txt"):
        path = tmp_path / name
        if name.endswith("txt"):
            path.write_text("x")
        else:
            cv2.imwrite(str(path), np.full((8, 8, 3), ord(name[0]), np.uint8))
    src = open_source(str(tmp_path / "*.png"))
    assert isinstance(src, ImageGlob)
    assert [f.name for f in src] == ["a.png", "b.png"]
    with pytest.raises(InputError, match=r"no images .* match .*\*\.gif"):
        open_source(str(tmp_path / "*.gif"))


@pytest.mark.parametrize("text, cls, message", [
    ("99", Camera, "cannot open camera 99 (no such device, or it is busy)"),
    ("tcp://127.0.0.1:9", Stream, "cannot open stream tcp://127.0.0.1:9 (nothing serving there"),
])
def test_cameras_and_streams_that_cannot_be_opened_are_one_line_source_errors(text, cls, message):
    with pytest.raises(SourceError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        open_source(text)
    assert "\n" not in str(info.value) and cls.live


def test_a_video_file_reports_rate_and_size(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 8.0, (40, 24))
    for i in range(3):
        writer.write(np.full((24, 40, 3), 60 * i, np.uint8))
    writer.release()
    with open_source(path) as src:
        assert (src.kind, src.fps, src.size, src.length, src.live) == ("video", 8.0, (40, 24), 3, False)
        with pytest.raises(SourceError, match="cannot be reopened"):
            src.reopen()


def test_the_generator_source_makes_the_scenes_the_builtin_detector_was_trained_on():
    from edgecv.converters.builtin_detector import MIN_SCALE

    assert Synthetic.min_scale == MIN_SCALE


# -- cut-short inputs --------------------------------------------------------------------------------------
def write_clip(path: Path, frames: int = 100, fps: float = 10.0) -> Path:
    """``frames`` numbered 96x64 frames of a moving noise pattern, written by OpenCV: MJPG in .avi, MPEG-4
    part 2 in .mkv and .mp4 (an .mp4 whose index, the moov box, is at the end of the file)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (64, 96, 3), np.uint8)
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (96, 64))
    for i in range(frames):
        frame = np.roll(base, 2 * i, axis=1)
        cv2.putText(frame, str(i), (4, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
        writer.write(frame)
    writer.release()
    return path


def faststart(path: Path, out: Path) -> Path:
    """``path`` remuxed by ffmpeg with its index at the front (as a web video is): readable when cut."""
    need_ffmpeg()
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(path), "-c", "copy", "-movflags", "+faststart", str(out)],
                   check=True, timeout=60)
    return out


def cut(path: Path, keep: float, out: Path) -> Path:
    """The first ``keep`` share of ``path``'s bytes, as a copy cut short by a full disk or a dropped transfer."""
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * keep)])
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    for suffix in (".avi", ".mkv", ".mp4"):
        write_clip(folder / f"clip{suffix}")
    return folder


CUT_VIDEOS = [
    # (file, share of its bytes kept, the state it ends in, or the error and its message)
    ("clip.avi", 1.0, "ended", None),
    ("clip.mkv", 1.0, "ended", None),  # MKV's count is duration x rate, not an index: still exact here
    ("clip.mp4", 1.0, "ended", None),
    ("faststart.mp4", 1.0, "ended", None),
    ("clip.avi", 0.5, "truncated", None),
    ("clip.mkv", 0.5, "truncated", None),
    ("faststart.mp4", 0.5, "truncated", None),
    ("clip.avi", 0.02, "truncated", None),  # one frame left
    ("clip.mp4", 0.5, SourceError, r"cannot open video \S+ \(not a video, a file cut short, or no decoder"),
    ("clip.mkv", 0.02, InputError, r"no frame could be read from video \S+ \(the container declares 100\): cut short"),
]


@pytest.mark.parametrize("name, keep, state, message", CUT_VIDEOS, ids=[f"{n}-{k}" for n, k, _, _ in CUT_VIDEOS])
def test_a_video_cut_short_is_truncated_and_says_how_many_frames(clips, tmp_path, name, keep, state, message):
    source = clips / name if name != "faststart.mp4" else faststart(clips / "clip.mp4", tmp_path / name)
    path = cut(source, keep, tmp_path / f"cut_{name}")
    if not isinstance(state, str):
        with pytest.raises(state, match=message) as info:
            with open_source(path) as src:
                list(src)
        assert "\n" not in str(info.value)
        return
    with open_source(path) as src:
        n = sum(1 for _ in src)
        assert src.length == 100 and src.read == n
        report = src.input_report()
    if state == "ended":
        assert n == 100 and src.truncated is None and report["truncated"] is None
        return
    assert 0 < n < 100 - TRUNCATION_TOLERANCE
    assert re.fullmatch(rf"video {re.escape(str(path))}: expected 100 frames, read {n} \(ends at [\d.]+ s of 10.00 s: "
                        r"cut short or damaged\)", src.truncated), src.truncated
    assert report == {"expected_frames": 100, "read_frames": n, "undecodable": 0, "undecodable_files": [],
                      "truncated": src.truncated}


def test_a_video_read_only_in_part_is_not_truncated(clips):
    with open_source(clips / "clip.avi") as src:
        frames = iter(src)
        assert [next(frames).index for _ in range(10)] == list(range(10))
        frames.close()  # a caller that stops early (max frames, stop): the file was not cut short
        assert src.truncated is None and src.read == 10


def _jpeg(progressive: bool = False) -> bytes:
    image = (np.random.default_rng(1).random((60, 80, 3)) * 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    assert ok
    return buf.tobytes()


def _with_comment(jpeg: bytes, text: bytes) -> bytes:
    """A comment segment after the start marker (where EXIF and its thumbnail also sit)."""
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


JPEGS = [
    # (how the bytes are made, cut short)
    ("whole", lambda: _jpeg(), False),
    ("whole progressive", lambda: _jpeg(True), False),
    ("whole, data after the end (a phone's motion photo)", lambda: _jpeg() + b"\x00\x00\x00\x18ftypmp42" * 50, False),
    ("half", lambda: _jpeg()[: len(_jpeg()) // 2], True),
    ("half of a progressive one", lambda: _jpeg(True)[: len(_jpeg(True)) // 2], True),
    ("all but the end marker", lambda: _jpeg()[:-2], True),
    ("half, with an end marker in a header segment (a thumbnail's)",
     lambda: _with_comment(_jpeg(), b"thumb\xff\xd8..\xff\xd9")[: len(_jpeg()) // 2], True),
    ("not a JPEG", lambda: b"GIF89a....", False),
    ("a start marker and junk: decoding decides", lambda: b"\xff\xd8\xff not really a jpeg", False),
]


@pytest.mark.parametrize("make, short", [(m, s) for _, m, s in JPEGS], ids=[n for n, _, _ in JPEGS])
def test_jpeg_cut_short(make, short):
    data = make()
    assert jpeg_cut_short(data) is short
    if not short and data.startswith(b"\xff\xd8\xff\xe0"):
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (60, 80, 3)


def test_a_folder_skips_and_counts_what_does_not_decode(tmp_path):
    whole = _jpeg()
    (tmp_path / "a.jpg").write_bytes(whole)
    (tmp_path / "b.jpg").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "c.png").write_bytes(b"\x89PNG junk")
    (tmp_path / "d.jpg").write_bytes(whole)
    with open_source(tmp_path) as src:
        assert [f.name for f in src] == ["a.jpg", "d.jpg"]
    assert src.skipped == [("b.jpg", "the JPEG is cut short (no end-of-image marker after its image data)"),
                           ("c.png", "cannot decode the image")]
    assert src.input_report() == {"expected_frames": 4, "read_frames": 2, "undecodable": 2,
                                  "undecodable_files": ["b.jpg", "c.png"], "truncated": None}


@pytest.mark.parametrize("files, opened, error", [
    # (the folder's files, what is opened: the folder or one file, the error)
    ({"a.jpg": b"\xff\xd8junk", "b.png": b""}, ".", "no frame could be read from {src}: 2 of 2 image file(s) could "
     "not be decoded (a.jpg: cannot decode the image; b.png: cannot decode the image)"),
    ({"x.jpg": "half"}, ".", "no frame could be read from {src}: 1 of 1 image file(s) could not be decoded (x.jpg: "
     "the JPEG is cut short (no end-of-image marker after its image data))"),
    ({"x.jpg": "half"}, "x.jpg", "no frame could be read from {src}: 1 of 1 image file(s) could not be decoded "
     "(x.jpg: the JPEG is cut short (no end-of-image marker after its image data))"),
    ({f"{k}.png": b"" for k in range(5)}, ".", "no frame could be read from {src}: 5 of 5 image file(s) could not be "
     "decoded (0.png: cannot decode the image; 1.png: cannot decode the image; 2.png: cannot decode the image ...)"),
    ({}, ".", "no images (.jpg, .jpeg, .png, .bmp, .webp, .tif, .tiff) in folder {src}"),
])
def test_a_source_that_gives_no_frame_is_a_one_line_error(tmp_path, files, opened, error):
    for name, data in files.items():
        (tmp_path / name).write_bytes(_jpeg()[: len(_jpeg()) // 2] if data == "half" else data)
    text = tmp_path if opened == "." else tmp_path / opened
    with pytest.raises(InputError) as info:
        with open_source(text) as src:
            list(src)
    assert str(info.value) == error.format(src=text)
