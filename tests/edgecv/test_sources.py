"""Frame sources: which kind claims which text, the generator's options and truth, globs, cameras and streams
that cannot be opened (one-line SourceErrors), and the frame rate and size every source reports."""

from __future__ import annotations

import numpy as np
import pytest

from edgecv.errors import ConfigError, InputError, SourceError
from edgecv.sources import SOURCES, Camera, ImageGlob, Stream, Synthetic, SyntheticOptions, open_source

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
    assert isinstance(src, Synthetic) and not src.live and src.is_video
    assert (src.fps, src.size, src.length, src.name) == (20.0, (96, 64), 6, "synthetic_seed5")
    frames = list(src)
    assert [f.index for f in frames] == list(range(6)) and [f.time_ms for f in frames] == [0, 50, 100, 150, 200, 250]
    assert all(f.image.shape == (64, 96, 3) and f.image.dtype == np.uint8 for f in frames)
    assert sorted(src.truth) == list(range(6)) and all(src.truth[i].tracker_id is not None for i in range(6))
    # frames are BGR, as OpenCV sources give them: the generator's RGB frame, channels reversed
    from edgecv.scenes import SceneOptions, SceneVideo

    video = SceneVideo(seed=5, options=SceneOptions(size=(64, 96), min_scale=Synthetic.min_scale),
                       speed=2.0 * 64 / 160 * 30 / 20)
    rgb, truth = video.step()
    assert np.array_equal(frames[0].image, rgb[..., ::-1])
    assert np.array_equal(src.truth[0].xyxy, truth.xyxy)


def test_endless_synthetic_keeps_no_truth():
    src = open_source("synthetic:frames=0,size=64x64")
    it = iter(src)
    for _ in range(5):
        next(it)
    assert src.length is None and src.truth == {}


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
