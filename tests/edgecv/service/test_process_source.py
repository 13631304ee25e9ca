"""A source read in a child process gives the same frames, metadata and errors as the source itself, hides
credentials, and leaves no child behind."""

from __future__ import annotations

import numpy as np
import pytest

from edgecv.errors import InputError, SourceError
from edgecv.service.process_source import ProcessSource
from edgecv.sources import open_source

cv2 = pytest.importorskip("cv2")


def shared_files() -> set[str]:
    """The rings of shared frames left in /dev/shm (by any process)."""
    import glob

    return set(glob.glob("/dev/shm/edgecv-frames-*"))


@pytest.mark.parametrize("shared", [True, False])
def test_frames_and_metadata_are_the_sources_own(shared):
    text = "synthetic:frames=12,size=96x64,seed=5,fps=12"
    with ProcessSource(text, shared=shared) as child, open_source(text) as here:
        assert (child.kind, child.name, child.fps, child.size, child.length, child.live, child.has_truth) == \
            (here.kind, here.name, here.fps, here.size, here.length, here.live, True)
        got, want = list(child), list(here)
        assert child.read == here.read == 12 and child.truncated is None
    assert len(got) == len(want) == 12
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.image, b.image)
        assert (a.index, a.name, a.time_ms) == (b.index, b.name, b.time_ms)
        np.testing.assert_array_equal(a.truth.xyxy, b.truth.xyxy)
        assert a.image.flags.writeable  # sinks may draw on it


def test_shared_frames_follow_a_change_of_size_and_leave_nothing_in_shared_memory(tmp_path):
    """A folder of images of three sizes: a larger frame gets a new ring, a smaller one fits the one there is;
    each ring's file is gone once this process has mapped it, and nothing is left after close."""
    sizes = [(48, 64), (96, 128), (24, 32), (96, 128)]
    for i, (h, w) in enumerate(sizes):
        image = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), image)
    before = shared_files()
    with ProcessSource(str(tmp_path)) as child, open_source(str(tmp_path)) as here:
        got, want = list(child), list(here)
        assert shared_files() == before  # each ring mapped here, so unlinked: a crash of both leaves nothing either
        rings = child._ring  # noqa: SLF001  (the last ring mapped, to see that the larger frame made a new one)
    assert [f.image.shape[:2] for f in got] == sizes
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.image, b.image)
    assert rings is not None and rings[2] == 1 and rings[1] == 96 * 128 * 3
    assert shared_files() == before


def test_a_video_file_cut_short_is_reported_as_such(tmp_path):
    from tests.edgecv.test_sources import cut, write_clip

    clip = write_clip(tmp_path / "clip.avi", 30)
    short = cut(clip, 0.5, tmp_path / "short.avi")
    with ProcessSource(str(short)) as child, open_source(str(short)) as here:
        n_child, n_here = len(list(child)), len(list(here))
        assert n_child == n_here and child.truncated == here.truncated and child.truncated is not None


@pytest.mark.parametrize("text, error, message", [
    ("/no/such/clip.mp4", InputError, "source not found: /no/such/clip.mp4"),
    ("tcp://admin:pw1234secret@127.0.0.1:1", SourceError, "cannot open stream tcp://***@127.0.0.1:1"),
])
def test_errors_come_back_as_the_same_one_line_errors(text, error, message):
    with pytest.raises(error) as err:
        ProcessSource(text)
    assert message in str(err.value) and "pw1234secret" not in str(err.value) and "\n" not in str(err.value)


def test_closing_mid_stream_stops_the_child():
    src = ProcessSource("synthetic:frames=0,size=64x64")
    proc = src._proc  # noqa: SLF001  (the child, to see it gone)
    frames = iter(src)
    assert next(frames).image.shape == (64, 64, 3)
    src.close()
    assert not proc.is_alive() and proc.exitcode is not None
