"""Sinks: the exact JSON line and MOT rows of a known result, text flushed to disk while the run goes, the
annotated video read back (frames, size, rate; .mp4, .mkv, .avi), bad file types and sink names, and the
registry the CLI's choices come from."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import edgecv.pipeline.sinks as sinks_module
from edgecv.detection.detections import Detections
from edgecv.errors import ConfigError, OutputError
from edgecv.pipeline.events import TrackEvent
from edgecv.pipeline.runner import FrameResult
from edgecv.pipeline.sinks import SINKS, FfmpegMp4, JsonlSink, MotSink, Sink, TruthSink, VideoSink, make_sink
from edgecv.pipeline.zones import Line, LineCounter, Zone, ZoneCounter
from edgecv.sources import Frame

FFMPEG = shutil.which("ffmpeg")


def need_ffmpeg() -> None:
    """Skip without the ffmpeg program (the default .mp4 is written by it), or fail in CI, which installs it."""
    if FFMPEG is None:
        if os.environ.get("EDGECV_CI"):
            pytest.fail("ffmpeg is missing: .ci/run installs Debian's ffmpeg, which writes the default .mp4")
        pytest.skip("needs the ffmpeg program (apt-get install ffmpeg): it writes the default .mp4")


INFO = {"kind": "video", "text": "clip.mp4", "name": "clip", "fps": 25.0, "size": [64, 48], "live": False,
        "length": 10, "labels": ["cat", "dog"], "policy": "every"}


def result(index: int = 7, *, tracked: bool = True, empty: bool = False, image: np.ndarray | None = None,
           seq: int | None = None, events: list | None = None) -> FrameResult:
    """Frame ``index`` with two detections (dog 0.87654 and class 5, which has no label) or none."""
    if empty:
        dets = Detections.empty()
        if tracked:
            dets = Detections(dets.xyxy, dets.confidence, dets.class_id, tracker_id=np.zeros(0, np.int64))
    else:
        dets = Detections(np.array([[1.26, 2.0, 10.04, 20.0], [30.0, 5.55, 40.5, 25.25]]), [0.87654, 0.5], [1, 5],
                          tracker_id=[3, 12] if tracked else None)
    img = np.zeros((48, 64, 3), np.uint8) if image is None else image
    return FrameResult(Frame(img, index, f"clip_{index:06d}", time_ms=index * 40.0), index if seq is None else seq,
                       dets, events or [], captured_at=100.0, result_at=100.0125, time_s=index * 0.04 + 1e-6)


ENTER = TrackEvent("enter", 3, frame=7, time_s=0.28, class_id=1, xyxy=(1.26, 2.0, 10.04, 20.0))
LINE_IN = TrackEvent("line_in", 12, frame=7, time_s=0.28, class_id=5, xyxy=(30, 5.555, 40.5, 25.25), where="door")


# -- JSON lines --------------------------------------------------------------------------------------------
def test_jsonl_line_exact(tmp_path):
    sink = JsonlSink(tmp_path / "tracks.jsonl")
    sink.open(INFO)
    sink.write(result(events=[ENTER, LINE_IN]))
    sink.write(result(8, tracked=False))
    sink.write(result(9, empty=True))
    sink.close()
    sink.close()  # idempotent
    lines = (tmp_path / "tracks.jsonl").read_text().split("\n")
    assert lines[3] == "" and len(lines) == 4 and sink.frames == 3
    assert lines[0] == (
        '{"frame": 7, "time_s": 0.28, "latency_ms": 12.5, "tracks": ['
        '{"id": 3, "class_id": 1, "label": "dog", "score": 0.8765, "xyxy": [1.3, 2.0, 10.0, 20.0]}, '
        '{"id": 12, "class_id": 5, "label": "5", "score": 0.5, "xyxy": [30.0, 5.6, 40.5, 25.2]}], '
        '"events": ['
        '{"kind": "enter", "track_id": 3, "frame": 7, "time_s": 0.28, "class_id": 1, "xyxy": [1.26, 2.0, 10.04, 20.0], '
        '"where": ""}, '
        '{"kind": "line_in", "track_id": 12, "frame": 7, "time_s": 0.28, "class_id": 5, "xyxy": [30.0, 5.55, 40.5, 25.25], '
        '"where": "door"}]}')
    untracked = json.loads(lines[1])
    assert [t["id"] for t in untracked["tracks"]] == [None, None] and untracked["frame"] == 8
    assert json.loads(lines[2]) == {"frame": 9, "time_s": 0.36, "latency_ms": 12.5, "tracks": [], "events": []}


def test_jsonl_without_labels_and_without_time(tmp_path):
    sink = JsonlSink(tmp_path / "t.jsonl")
    sink.open({**INFO, "labels": None})
    r = result()
    sink.write(FrameResult(r.frame, r.seq, r.detections, [], r.captured_at, r.result_at, None))
    sink.close()
    d = json.loads((tmp_path / "t.jsonl").read_text())
    assert d["time_s"] is None and [t["label"] for t in d["tracks"]] == ["1", "5"]


def test_jsonl_ends_with_how_the_run_ended(tmp_path):
    sink = JsonlSink(tmp_path / "t.jsonl")
    sink.open(INFO)
    sink.write(result(0))
    end = {"end": "truncated", "frames": 1, "expected_frames": 10, "read_frames": 1,
           "message": "video clip.mp4: expected 10 frames, read 1"}
    sink.end(end)
    assert json.loads((tmp_path / "t.jsonl").read_text().splitlines()[-1]) == end  # flushed at once
    sink.close()
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["frame"] == 0 and json.loads(lines[1]) == end


# -- ground truth ------------------------------------------------------------------------------------------
def test_truth_rows_of_the_frames_written_and_classes_kept(tmp_path):
    truth = Detections(np.array([[0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 7.0, 9.0]]), [1.0, 1.0], [0, 2], tracker_id=[4, 9])
    sink = TruthSink(tmp_path / "gt.mot.txt", classes=[2, 7])
    sink.open(INFO)
    for index, frame_truth in ((0, truth), (3, truth), (4, None), (5, truth[:1])):
        r = result(index, empty=True)
        sink.write(FrameResult(Frame(r.frame.image, index, r.frame.name, truth=frame_truth), index,
                               r.detections, [], 0.0, 0.0))
    sink.close()
    # only class 2 kept; frames 4 (no truth) and 5 (class 0 only) have no rows; frame numbers from 1
    assert (tmp_path / "gt.mot.txt").read_text() == "1,9,5,5,2,4,1,-1,-1,-1\n4,9,5,5,2,4,1,-1,-1,-1\n"
    assert sink.frames == 4 and TruthSink.name not in SINKS


# -- MOT rows ----------------------------------------------------------------------------------------------
def test_mot_rows_exact(tmp_path):
    sink = MotSink(tmp_path / "tracks.mot.txt")
    sink.open(INFO)
    sink.write(result(0))
    sink.write(result(1, tracked=False))  # raw detections have no identity: no rows
    sink.write(result(2, empty=True))
    sink.write(result(7))
    sink.close()
    assert (tmp_path / "tracks.mot.txt").read_text() == (
        "1,3,1.26,2,8.78,18,0.87654,-1,-1,-1\n"
        "1,12,30,5.55,10.5,19.7,0.5,-1,-1,-1\n"
        "8,3,1.26,2,8.78,18,0.87654,-1,-1,-1\n"
        "8,12,30,5.55,10.5,19.7,0.5,-1,-1,-1\n")
    assert sink.frames == 4


def test_mot_rows_are_what_track_eval_reads(tmp_path):
    from edgecv.tracking.mot import read_mot

    sink = MotSink(tmp_path / "m.txt")
    sink.open(INFO)
    for i in range(3):
        sink.write(result(i))
    sink.close()
    seq = read_mot(tmp_path / "m.txt", kind="tracks", seqinfo=False)
    assert seq.num_frames == 3 and seq.rows.shape == (6, 10)
    assert seq.rows[:, :2].tolist() == [[1, 3], [1, 12], [2, 3], [2, 12], [3, 3], [3, 12]]
    np.testing.assert_allclose(seq.rows[0, 2:7], [1.26, 2, 8.78, 18, 0.87654])


def test_mot_sink_writes_what_write_mot_writes(tmp_path):
    """One row formatter (edgecv.tracking.mot): the live sink's file is write_mot's, byte for byte, and reads
    back as exactly the rows the in-memory evaluation uses, also where 6 significant digits were too few
    (boxes past 1000 pixels, scores under 0.1, float32 noise in a width)."""
    from edgecv.tracking.mot import MotSequence, read_mot, write_mot

    big = Detections(np.array([[1234.5678, 20.25, 1300.1234, 90.5], [10.1, 0.0001, 20.2, 5.0]], np.float32),
                     [0.0123456789, 0.9], [0, 0], tracker_id=[3, 4])
    frames = {1: big, 2: result(1).detections, 3: Detections.empty()}
    sink = MotSink(tmp_path / "sink.txt")
    sink.open(INFO)
    for f, d in frames.items():
        frame = result(f - 1)
        sink.write(FrameResult(frame.frame, frame.seq, d, [], captured_at=1.0, result_at=1.0, time_s=None))
    sink.close()
    write_mot(tmp_path / "write_mot.txt", frames)
    assert (tmp_path / "sink.txt").read_text() == (tmp_path / "write_mot.txt").read_text()
    assert (tmp_path / "sink.txt").read_text().splitlines()[:2] == [
        "1,3,1234.568,20.25,65.556,70.25,0.012346,-1,-1,-1", "1,4,10.1,0,10.1,5,0.9,-1,-1,-1"]
    back = read_mot(tmp_path / "sink.txt", kind="tracks", seqinfo=False)
    assert back.rows.tobytes() == MotSequence.from_frames(frames).rows.tobytes()


# -- flushing ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [JsonlSink, MotSink])
def test_text_sinks_flush_while_running(tmp_path, monkeypatch, cls):
    path = tmp_path / "out.txt"
    monkeypatch.setattr(sinks_module, "FLUSH_S", 3600.0)
    sink = cls(path)
    sink.open(INFO)
    sink.write(result(0))
    assert path.read_text() == ""  # buffered: not due yet
    monkeypatch.setattr(sinks_module, "FLUSH_S", 0.0)
    sink.write(result(1))
    on_disk = path.read_text()
    assert on_disk.endswith("\n") and len(on_disk.splitlines()) == (2 if cls is JsonlSink else 4)
    sink.close()
    assert path.read_text() == on_disk


def test_a_text_sink_that_cannot_open_is_an_output_error(tmp_path):
    with pytest.raises(OutputError) as exc:
        JsonlSink(tmp_path / "missing" / "t.jsonl").open(INFO)
    assert str(exc.value) == f"cannot write {tmp_path / 'missing' / 't.jsonl'}: No such file or directory"
    JsonlSink(tmp_path / "never.jsonl").close()  # closing a sink never opened is fine


# -- video -------------------------------------------------------------------------------------------------
def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    cv2 = pytest.importorskip("cv2")
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames, fps


def moving(i: int) -> np.ndarray:
    img = np.full((48, 64, 3), 40, np.uint8)
    img[10:30, 4 + 2 * i : 20 + 2 * i] = 200
    return img


def test_ffmpeg_mp4_keeps_every_frame_in_order_through_its_feeder_and_a_pipe_that_holds_a_frame(tmp_path):
    need_ffmpeg()
    import fcntl

    from edgecv.pipeline.sinks import FfmpegMp4

    w, h = 768, 576  # 1.3 MB a frame: larger than the default 64 KB pipe
    video = FfmpegMp4(tmp_path / "v.mp4", fps=25.0, size=(w, h))
    assert fcntl.fcntl(video._proc.stdin.fileno(), getattr(fcntl, "F_GETPIPE_SZ", 1032)) >= min(w * h * 3, 1 << 20)
    for i in range(40):
        video.write(np.full((h, w, 3), 20 + 5 * i, np.uint8))
    video.release()
    frames, _ = read_video(tmp_path / "v.mp4")
    levels = [float(f.mean()) for f in frames]
    assert len(frames) == 40
    assert np.all(np.diff(levels) > 1)  # in the order written
    np.testing.assert_allclose(levels, [20 + 5 * i for i in range(40)], atol=4)  # BGR -> YUV 4:2:0 -> BGR


def colour_bars(w: int = 128, h: int = 96) -> np.ndarray:
    """Eight saturated colour bars over a grey ramp: every chroma the YUV conversion must keep."""
    img = np.zeros((h, w, 3), np.uint8)
    bars = [(255, 255, 255), (0, 255, 255), (255, 255, 0), (0, 255, 0), (255, 0, 255), (0, 0, 255), (255, 0, 0),
            (0, 0, 0)]
    for i, colour in enumerate(bars):
        img[: h // 2, i * w // 8 : (i + 1) * w // 8] = colour
    img[h // 2 :] = np.linspace(0, 255, w, dtype=np.uint8)[None, :, None]
    return img


@pytest.mark.parametrize("size, fed", [((128, 96), "yuv420p"), ((127, 95), "bgr24")])
def test_ffmpeg_mp4_feeds_yuv_when_the_sides_are_even_with_the_colours_ffmpeg_would_give(tmp_path, size, fed):
    need_ffmpeg()
    pytest.importorskip("cv2")
    from edgecv.pipeline import sinks

    w, h = size
    image = np.ascontiguousarray(colour_bars()[:h, :w])
    decoded = {}
    for how in ("edgecv", "ffmpeg"):
        feed = "bgr24" if how == "ffmpeg" else None  # BGR into the pipe: ffmpeg converts
        video = sinks.FfmpegMp4(tmp_path / f"{how}.mp4", fps=10.0, size=(w, h), feed=feed)
        args = video._proc.args
        assert args[args.index("-pix_fmt") + 1] == (fed if how == "edgecv" else "bgr24")
        for _ in range(3):
            video.write(image)
        video.release()
        frames, _ = read_video(tmp_path / f"{how}.mp4")
        assert len(frames) == 3
        decoded[how] = frames[0][:h, :w].astype(np.float64)
    error = {how: float(np.abs(d - image).mean()) for how, d in decoded.items()}
    # as close to the frame as ffmpeg's own conversion (measured: 0.5 against 2.0 levels: OpenCV keeps white 255)
    assert error["edgecv"] <= min(error["ffmpeg"] + 0.5, 3.0), error
    assert np.abs(decoded["edgecv"] - decoded["ffmpeg"]).mean() < 2.5  # the same colours (BT.601, limited range)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi"])
def test_video_is_readable_with_every_frame(tmp_path, suffix):
    pytest.importorskip("cv2")
    if suffix == ".mp4":
        need_ffmpeg()
    path = tmp_path / f"clip{suffix}"
    counters = [LineCounter(Line.parse("door=32,0,32,48")), ZoneCounter(Zone.parse("z=0,0,20,0,20,20,0,20"))]
    sink = VideoSink(path, counters=counters, trail=3)
    sink.open(INFO)
    for i in range(12):
        r = result(i, image=moving(i), empty=i == 5)  # trails of tracks and a frame without any
        sink.write(r)
    assert sink.frames == 12
    sink.close()
    sink.close()
    frames, fps = read_video(path)
    assert len(frames) == 12 and {f.shape for f in frames} == {(48, 64, 3)}
    assert fps == pytest.approx(25.0, abs=0.01)
    # the boxes are drawn: the annotated frame differs from the plain one where the dog's box is
    diff = np.abs(frames[0].astype(int) - moving(0).astype(int))
    assert diff.max() > 60


def test_video_keeps_its_first_size_and_the_rate_divided_by_stride(tmp_path):
    pytest.importorskip("cv2")
    need_ffmpeg()
    path = tmp_path / "s.mp4"
    sink = VideoSink(path, stride=2)
    sink.open(INFO)
    sink.write(result(0, image=np.zeros((48, 64, 3), np.uint8), tracked=False))
    sink.write(result(1, image=np.zeros((48, 64), np.uint8), empty=True))  # gray
    sink.write(result(2, image=np.zeros((96, 32, 3), np.uint8), empty=True))  # a stream back at another size
    sink.close()
    frames, fps = read_video(path)
    assert len(frames) == 3 and {f.shape for f in frames} == {(48, 64, 3)}
    assert fps == pytest.approx(12.5, abs=0.01)


@pytest.mark.parametrize("fps, scale, written, rate, shape", [
    (None, 1.0, 12, 25.0, (48, 64, 3)),
    (10.0, 1.0, 6, 12.5, (48, 64, 3)),  # one frame in round(25 / 10) = 2
    (5.0, 0.5, 3, 5.0, (24, 32, 3)),  # one in 5, at half the size
    (100.0, 1.0, 12, 25.0, (48, 64, 3)),  # never faster than the frames come
])
def test_video_at_a_lower_rate_or_size_than_the_analysis(tmp_path, fps, scale, written, rate, shape):
    pytest.importorskip("cv2")
    sink = VideoSink(tmp_path / "v.mkv", fps=fps, scale=scale, trail=30)
    sink.open(INFO)
    for i in range(12):
        sink.write(result(i, image=moving(i)))
    sink.close()
    frames, got_rate = read_video(tmp_path / "v.mkv")
    assert (len(frames), sink.frames) == (written, written) and {f.shape for f in frames} == {shape}
    assert got_rate == pytest.approx(rate, abs=0.01)
    assert all(len(t) == 12 for t in sink.overlay.trails.values())  # trails follow every frame, written or not


@pytest.mark.parametrize("in_place", [False, True])
def test_the_video_draws_on_the_frame_only_when_told_to(tmp_path, in_place):
    pytest.importorskip("cv2")
    sink = VideoSink(tmp_path / "p.mkv", in_place=in_place)
    sink.open(INFO)
    r = result(0, image=moving(0))
    sink.write(r)
    sink.close()
    assert (r.frame.image.tobytes() != moving(0).tobytes()) is in_place


@pytest.mark.parametrize("options, error", [
    ({"fps": 0}, "video fps: expected a number > 0, got 0"),
    ({"fps": "10"}, "video fps: expected a number > 0, got '10'"),
    ({"scale": 0}, r"video scale: expected a number in \(0, 1\], got 0"),
    ({"scale": 1.5}, r"video scale: expected a number in \(0, 1\], got 1.5"),
])
def test_bad_video_rate_or_scale(tmp_path, options, error):
    with pytest.raises(ConfigError, match=error):
        VideoSink(tmp_path / "b.mkv", **options)


def test_video_without_a_rate_uses_25(tmp_path):
    pytest.importorskip("cv2")
    sink = VideoSink(tmp_path / "n.mkv")
    sink.open({**INFO, "fps": None})
    sink.write(result(0, empty=True))
    sink.close()
    frames, fps = read_video(tmp_path / "n.mkv")
    assert len(frames) == 1 and fps == pytest.approx(25.0, abs=0.01)


def test_a_video_sink_that_wrote_nothing_leaves_no_file(tmp_path):
    pytest.importorskip("cv2")
    need_ffmpeg()
    sink = VideoSink(tmp_path / "none.mp4")
    sink.open(INFO)
    sink.close()
    assert not (tmp_path / "none.mp4").exists()


def mp4_boxes(path: Path) -> list[str]:
    """The top-level box types of an MP4 file, in order."""
    data, pos, boxes = path.read_bytes(), 0, []
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        boxes.append(data[pos + 4:pos + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[pos + 8:pos + 16], "big")
        pos += size if size else len(data)
    return boxes


def test_the_mp4_is_fragmented_and_an_odd_size_is_padded_by_a_pixel(tmp_path):
    need_ffmpeg()
    path = tmp_path / "odd.mp4"
    sink = VideoSink(path)
    sink.open({**INFO, "fps": 10.0})
    for i in range(25):
        sink.write(result(i, image=np.full((47, 63, 3), 10 * i, np.uint8), empty=True))
    sink.close()
    # an index without samples, then a fragment (moof + mdat) a second: what plays after a hard kill
    # (test_cli_track kills a run); 25 frames at 10 frames/s are at least three fragments (a scene cut adds one)
    boxes = mp4_boxes(path)
    fragments = (len(boxes) - 3) // 2
    assert boxes == ["ftyp", "moov"] + ["moof", "mdat"] * fragments + ["mfra"] and fragments >= 3, boxes
    frames, fps = read_video(path)
    assert len(frames) == 25 and {f.shape for f in frames} == {(48, 64, 3)} and fps == pytest.approx(10.0)
    # the picture survives the YUV 4:2:0 round trip within 6 levels; the added pixel column and row are black
    assert abs(int(frames[20][10, 10, 0]) - 200) <= 6 and frames[20][47, 63].max() <= 20


def test_without_ffmpeg_an_mp4_is_a_one_line_error_and_mkv_still_works(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing named ffmpeg there
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # and no edgecv[video]
    with pytest.raises(OutputError) as exc:
        VideoSink(tmp_path / "street.mp4")
    assert str(exc.value) == ("writing the annotated video street.mp4 needs the ffmpeg program, which is not on PATH: "
                              "install it (apt install ffmpeg, or pip install 'edgecv[video]'), or write .mkv "
                              "(--video-format mkv), or leave out the video sink")
    sink = VideoSink(tmp_path / "street.mkv")
    sink.open(INFO)
    sink.write(result(0, empty=True))
    sink.close()
    assert len(read_video(tmp_path / "street.mkv")[0]) == 1


def test_ffmpeg_mp4_feed_is_none_or_bgr24(tmp_path):
    need_ffmpeg()
    with pytest.raises(ConfigError, match=r"^video feed: expected None or 'bgr24', got 'yuv'$"):
        FfmpegMp4(tmp_path / "v.mp4", fps=10.0, size=(64, 48), feed="yuv")
    assert not (tmp_path / "v.mp4").exists()


@pytest.mark.parametrize("shape, error", [
    ((48, 60, 3), "a 48x60x3 frame, expected 48x64x3 (height x width x BGR)"),
    ((48, 64, 4), "a 48x64x4 frame, expected 48x64x3 (height x width x BGR)"),
    ((64, 48), "a 64x48x3 frame, expected 48x64x3 (height x width x BGR)"),  # gray, turned: repeated to BGR
])
def test_ffmpeg_mp4_refuses_a_frame_of_another_size_and_the_video_stays_whole(tmp_path, shape, error):
    need_ffmpeg()
    video = FfmpegMp4(tmp_path / "v.mp4", fps=10.0, size=(64, 48))
    video.write(moving(0))
    with pytest.raises(OutputError) as exc:
        video.write(np.zeros(shape, np.uint8))
    assert str(exc.value) == f"cannot write video {tmp_path / 'v.mp4'}: {error}"
    video.write(moving(1))
    video.release()
    frames, _ = read_video(tmp_path / "v.mp4")
    assert len(frames) == 2


def test_ffmpeg_dying_mid_run_is_an_output_error_naming_it(tmp_path):
    need_ffmpeg()
    video = FfmpegMp4(tmp_path / "v.mp4", fps=10.0, size=(64, 48))
    video.write(np.zeros((48, 64, 3), np.uint8))
    video._proc.kill()  # as the OOM killer or a full disk would end it
    video._proc.wait()
    with pytest.raises(OutputError, match=r"^cannot write video .*v\.mp4: ffmpeg stopped \(exit code -9\)$"):
        for _ in range(10):  # the pipe's buffer may take the first frame after the kill
            video.write(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(OutputError, match=r"^cannot write video .*v\.mp4: ffmpeg failed \(exit code -9\)$"):
        video.release()


@pytest.mark.parametrize("name, error", [
    ("clip.gif", "video sink: unsupported file type '.gif'; valid: .mp4, .mkv, .avi"),
    ("clip.webm", "video sink: unsupported file type '.webm'; valid: .mp4, .mkv, .avi"),
    ("clip", "video sink: unsupported file type '(none)'; valid: .mp4, .mkv, .avi"),
    ("clip.MP4", None),
    ("clip.mkv", None),
])
def test_video_file_types(tmp_path, name, error):
    if error is None:
        assert VideoSink(tmp_path / name).path == tmp_path / name
        return
    with pytest.raises(ConfigError) as exc:
        VideoSink(tmp_path / name)
    assert str(exc.value) == error


# -- the registry ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, name, expected, error", [
    ("video", "street", "street.mp4", None),
    ("video", "video", "video.mp4", None),
    ("jsonl", "street", "tracks.jsonl", None),
    ("mot", "street", "tracks.mot.txt", None),
    ("gif", "street", None, "sink: unknown 'gif'; valid sinks: video, jsonl, mot"),
    ("Video", "street", None, "sink: unknown 'Video'; valid sinks: video, jsonl, mot"),
    ("", "street", None, "sink: unknown ''; valid sinks: video, jsonl, mot"),
])
def test_make_sink(tmp_path, kind, name, expected, error):
    if error is not None:
        with pytest.raises(ConfigError) as exc:
            make_sink(kind, tmp_path, name=name)
        assert str(exc.value) == error
        return
    sink = make_sink(kind, tmp_path, name=name)
    assert isinstance(sink, SINKS[kind]) and sink.path == tmp_path / expected and sink.name == kind


def test_registry():
    assert list(SINKS) == ["video", "jsonl", "mot"]
    assert all(issubclass(cls, Sink) and cls.name == key and cls.default_file and cls.description
               for key, cls in SINKS.items())
    assert make_sink("video", "out", trail=5, stride=3).trail == 5


def test_without_ffmpeg_on_path_the_video_extra_writes_the_mp4(tmp_path, monkeypatch):
    """edgecv[video] (imageio-ffmpeg's static ffmpeg) stands in for a system ffmpeg."""
    pytest.importorskip("imageio_ffmpeg", reason="edgecv[video] is not installed")
    monkeypatch.setenv("PATH", str(tmp_path))
    sink = VideoSink(tmp_path / "street.mp4")
    sink.open({**INFO, "fps": 10.0})
    for i in range(12):
        sink.write(result(i, empty=True))
    sink.close()
    frames, fps = read_video(tmp_path / "street.mp4")
    assert len(frames) == 12 and fps == pytest.approx(10.0)
    assert mp4_boxes(tmp_path / "street.mp4")[:3] == ["ftyp", "moov", "moof"]
