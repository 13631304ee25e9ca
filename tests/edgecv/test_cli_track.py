"""``edgecv track`` in-process (``main([...])``) on the tiny constant ONNX detector of test_detector.py: the
scene generator (outputs that agree with each other and with the summary, line and zone counts, tracking
metrics against the generator's truth, --stride, --sequential, .mkv), a video file written with OpenCV, the
option choices against the registries, and bad input: a one-line error, a non-zero exit, nothing written.

The fake detector finds the same two boxes in every frame; on a 96x96 frame (stretch) they are the dog at
[24, 24, 48, 72] (score 0.9) and the cat at [48, 0, 96, 48] (score 0.6).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecv.cli.main import main
from tests.edgecv.pipeline.test_sinks import need_ffmpeg, read_video
from tests.edgecv.detection.test_detector import make_fake_detector, write_fake_spec
from tests.edgecv.test_sources import cut, write_clip

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

SYNTHETIC = "synthetic:frames=40,size=96x96"
DOG = [24.0, 24.0, 48.0, 72.0]
CAT = [48.0, 0.0, 96.0, 48.0]
SUMMARY_KEYS = {"source", "state", "frames", "wall_s", "fps", "stages", "latency_ms", "written_ms", "capture",
                "concurrent", "counts", "events", "tracks", "model", "backend", "spec", "tracker", "out"}
# every key of summary.json, mid-run (state "running") as at the end, for a run scored against ground truth
ALL_KEYS = SUMMARY_KEYS | {"detections", "peak_rss_mb", "error", "input", "tracker_thresholds", "warnings",
                           "tracking_metrics", "stopped", "files", "tracker_dropped", "cpu", "threads", "skipped"}


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake")
    return {"model": make_fake_detector(root / "fake.onnx"), "spec": write_fake_spec(root / "fake.yaml")}


@pytest.fixture
def trackeval():
    return pytest.importorskip("trackeval")  # the generator's truth is scored with TrackEval


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """12 frames, 96 wide and 64 high, at 10 frames/s."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 64))
    for k in range(12):
        writer.write(np.full((64, 96, 3), 20 * k, np.uint8))
    writer.release()
    return path


def track(capsys, fake, *args) -> tuple[int, str, str]:
    code = main(["track", "--model", str(fake["model"]), "--spec", str(fake["spec"]), *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def jsonl(path: Path) -> list[dict]:
    """The per-frame records; the file must end with the line that says how the run ended (``ending``)."""
    return ending(path)[0]


def ending(path: Path) -> tuple[list[dict], dict]:
    """(the per-frame records, the last line ``{"end": state, ...}``)."""
    *records, end = [json.loads(line) for line in path.read_text().splitlines()]
    assert set(end) == {"end", "frames", "expected_frames", "read_frames", "message"}, end
    assert all("end" not in r for r in records)
    return records, end


def mot_rows(path: Path) -> list[list[float]]:
    return [[float(v) for v in line.split(",")] for line in path.read_text().splitlines()]


def check_outputs_agree(out: Path, summary: dict, video_name: str, frames: list[int]) -> list[dict]:
    """Every output holds the same frames: video frames == JSON lines == summary frames, and the MOT rows are
    the JSON lines' tracks."""
    records, end = ending(out / "tracks.jsonl")
    assert [r["frame"] for r in records] == frames and summary["frames"] == len(frames)
    assert end == {"end": summary["state"], "frames": len(frames), "expected_frames": summary["input"]["expected_frames"],
                   "read_frames": summary["capture"]["read"], "message": summary["input"]["truncated"]}
    shown, _ = read_video(out / video_name)
    assert len(shown) == len(frames)
    from_jsonl = [[r["frame"] + 1, t["id"], *t["xyxy"][:2], t["xyxy"][2] - t["xyxy"][0], t["xyxy"][3] - t["xyxy"][1],
                   t["score"]] for r in records for t in r["tracks"]]
    rows = np.array([row[:7] for row in mot_rows(out / "tracks.mot.txt")]).reshape(-1, 7)
    np.testing.assert_allclose(rows, np.array(from_jsonl, np.float64).reshape(-1, 7), atol=0.051)  # JSON: 0.1 px
    on_disk = json.loads((out / "summary.json").read_text())
    assert {k: on_disk[k] for k in ("frames", "state", "counts", "events", "tracks")} == \
        {k: summary[k] for k in ("frames", "state", "counts", "events", "tracks")}
    return records


# -- the scene generator -----------------------------------------------------------------------------------
def test_synthetic_end_to_end(fake, tmp_path, capsys, trackeval):
    need_ffmpeg()
    out = tmp_path / "out"
    code, stdout, err = track(capsys, fake, "--source", SYNTHETIC, "--out", out, "--json",
                              "--line", "door=0,40,96,40", "--zone", "left=0,0,48,0,48,96,0,96")
    assert code == 0, err
    s = json.loads(stdout)
    assert set(s) == ALL_KEYS and s["stopped"] is False and s["tracker_dropped"] == {}
    assert s["state"] == "ended" and s["frames"] == 40 and s["concurrent"] is True and s["error"] is None
    assert s["input"] == {"expected_frames": 40, "read_frames": 40, "undecodable": 0, "undecodable_files": [],
                          "truncated": None}
    assert s["source"]["kind"] == "synthetic" and s["source"]["size"] == [96, 96] and s["source"]["fps"] == 30.0
    assert s["tracker"] == "ocsort" and s["backend"] == "onnxruntime" and s["spec"] == "fake"
    assert s["cpu"]["total_ms"] > 0 and s["cpu"]["limit_fps"] > 0 and s["cpu"]["children_ms"] > 0  # ffmpeg's
    assert s["threads"]["chosen_by"] in ("calibrated", "default") and s["threads"]["threads"] >= 1
    assert s["capture"]["read"] == 40 and s["capture"]["dropped"] == 0 and s["capture"]["strided"] == 0
    assert list(s["stages"]) == ["capture", "inference", "decode", "tracking", "sinks"]
    assert all(stage["frames"] == 40 for stage in s["stages"].values())
    assert s["latency_ms"]["p50"] > 0 and s["written_ms"]["p50"] >= s["latency_ms"]["p50"]
    # the dog (OC-SORT leaves the 0.6 cat alone) stands still, its bottom centre (36, 72) in "left", below the door
    assert s["counts"] == {"door": {"in": 0, "out": 0}, "left": {"inside": 1, "entered": 1}}
    assert s["events"] == {"enter": 1, "zone_enter": 1, "exit": 1} and s["tracks"] == 1
    # 40 frames at 30 frames/s end within the 2 s calibration window: OC-SORT's own thresholds all along
    th = s["tracker_thresholds"]
    assert th["state"] == "calibrating" and th["detector_threshold"] == 0.5 and th["start_score"] == 0.7
    assert th["values"] == {"track_thresh": 0.6, "new_track_thresh": 0.7} and th["calibration"] is None
    assert set(th["sources"].values()) == {"tracker default (calibrating)"}
    assert s["detections"] == {"count": 80, "frames": 40, "max_score": pytest.approx(0.9), "startable": 40}
    assert s["warnings"] == []
    assert sorted(p.name for p in out.iterdir()) == ["gt.mot.txt", "summary.json", "synthetic_seed0.mp4",
                                                     "tracks.jsonl", "tracks.mot.txt"]
    records = check_outputs_agree(out, s, "synthetic_seed0.mp4", list(range(40)))
    for i, r in enumerate(records):
        assert r["time_s"] == pytest.approx(i / 30, abs=1e-4)
        assert r["tracks"] == [{"id": 1, "class_id": 1, "label": "dog", "score": 0.9, "xyxy": DOG}]
    assert [(e["kind"], e["frame"], e["where"]) for e in records[0]["events"]] == [("enter", 0, ""),
                                                                                   ("zone_enter", 0, "left")]
    assert all(r["events"] == [] for r in records[1:])
    frames, _ = read_video(out / "synthetic_seed0.mp4")
    assert frames[0].shape == (96, 96, 3)
    # scored against the generator's exact truth: none of the fixed boxes is an object of the scene
    m = s["tracking_metrics"]
    assert {"mota", "idf1", "hota", "idsw"} <= set(m)
    gt_rows = (out / "gt.mot.txt").read_text().splitlines()
    assert m["frames"] == 40 and m["gt_dets"] == len(gt_rows) > 0 and m["tracker_dets"] == 40
    assert m["tp"] == 0 and m["fp"] == 40 and m["fn"] == m["gt_dets"]
    assert m["mota"] == pytest.approx(1 - (m["fn"] + m["fp"] + m["idsw"]) / m["gt_dets"], abs=1e-9)
    assert m["idf1"] == 0.0 and m["hota"] < 0.02  # HOTA's lowest IoU thresholds credit a passing overlap


def test_synthetic_prints_the_metrics_in_the_text_summary(fake, tmp_path, capsys, trackeval):
    code, stdout, err = track(capsys, fake, "--source", "synthetic:frames=12,size=96x96", "--out", tmp_path / "o",
                              "--tracker", "sort", "--sinks", "mot")
    assert code == 0, err
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    m = s["tracking_metrics"]
    assert s["frames"] == 12 and s["tracks"] == 2 and s["events"] == {"enter": 2, "exit": 2}
    assert f"against ground truth: MOTA {100 * m['mota']:.1f}, IDF1 {100 * m['idf1']:.1f}, " \
           f"HOTA {100 * m['hota']:.1f}, ID switches {m['idsw']}" in stdout
    assert "12 frames in" in stdout and "2 tracks (sort)" in stdout
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["gt.mot.txt", "summary.json", "tracks.mot.txt"]
    # SORT keeps the 0.6 cat too: two tracks per frame
    assert [row[:2] for row in mot_rows(tmp_path / "o" / "tracks.mot.txt")] == \
        [[f, t] for f in range(1, 13) for t in (1, 2)]


def test_stride_processes_half_the_frames(fake, tmp_path, capsys, trackeval):
    out = tmp_path / "out"
    code, stdout, err = track(capsys, fake, "--source", SYNTHETIC, "--out", out, "--json", "--stride", "2",
                              "--video-format", "mkv")
    assert code == 0, err
    s = json.loads(stdout)
    assert s["frames"] == 20
    assert s["capture"]["read"] == 40 and s["capture"]["strided"] == 20 and s["capture"]["delivered"] == 20
    check_outputs_agree(out, s, "synthetic_seed0.mkv", list(range(0, 40, 2)))
    _, fps = read_video(out / "synthetic_seed0.mkv")
    assert fps == pytest.approx(15.0, abs=0.01)  # the source's 30 frames/s, one frame in two
    # the truth scored is the frames processed only (MOT frames are 1-based)
    gt_frames = {int(float(line.split(",")[0])) for line in (out / "gt.mot.txt").read_text().splitlines()}
    assert gt_frames and gt_frames <= set(range(1, 41, 2))
    assert s["tracking_metrics"]["frames"] in (39, 40)


def test_sequential_and_two_inference_workers_give_the_same_tracks(fake, tmp_path, capsys, trackeval):
    results = {}
    modes = {"pipelined": [], "sequential": ["--sequential"], "two workers": ["--workers", "2", "--threads", "1"]}
    for mode, extra in modes.items():
        out = tmp_path / mode
        code, stdout, err = track(capsys, fake, "--source", SYNTHETIC, "--out", out, "--json", "--tracker", "sort",
                                  "--sinks", "jsonl,mot", *extra)
        assert code == 0, err
        s = json.loads(stdout)
        assert s["concurrent"] is (mode != "sequential")
        if mode == "two workers":
            assert s["threads"] == {"threads": 1, "workers": 2, "inline": False, "chosen_by": "given", "why": "",
                                    "others_cpu_ms": None, "candidates": []}
        records = [{k: v for k, v in r.items() if k != "latency_ms"} for r in jsonl(out / "tracks.jsonl")]
        results[mode] = (records, (out / "tracks.mot.txt").read_text(), s["events"], s["frames"],
                         s["tracking_metrics"])
    assert results["pipelined"] == results["sequential"] == results["two workers"]
    assert results["sequential"][3] == 40


# -- a video file ------------------------------------------------------------------------------------------
def test_video_file(fake, video, tmp_path, capsys):
    need_ffmpeg()
    out = tmp_path / "out"
    code, stdout, err = track(capsys, fake, "--source", video, "--out", out, "--json", "--tracker", "sort")
    assert code == 0, err
    s = json.loads(stdout)
    assert s["source"]["kind"] == "video" and s["source"]["size"] == [96, 64] and s["source"]["policy"] == "every"
    assert s["state"] == "ended" and s["frames"] == 12 and "tracking_metrics" not in s
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4", "summary.json", "tracks.jsonl", "tracks.mot.txt"]
    records = check_outputs_agree(out, s, "clip.mp4", list(range(12)))
    assert [r["time_s"] for r in records] == pytest.approx([k / 10 for k in range(12)], abs=1e-3)
    # on a 96x64 frame the dog is [24, 16, 48, 48] and the cat [48, 0, 96, 32]
    assert [t["xyxy"] for t in records[0]["tracks"]] == [[24.0, 16.0, 48.0, 48.0], [48.0, 0.0, 96.0, 32.0]]
    frames, fps = read_video(out / "clip.mp4")
    assert frames[0].shape == (64, 96, 3) and fps == pytest.approx(10.0, abs=0.01)
    assert len(mot_rows(out / "tracks.mot.txt")) == 24


def test_video_file_max_frames(fake, video, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = track(capsys, fake, "--source", video, "--out", out, "--json", "--max-frames", "5",
                              "--sinks", "jsonl")
    assert code == 0, err
    s = json.loads(stdout)
    assert s["frames"] == 5 and [r["frame"] for r in jsonl(out / "tracks.jsonl")] == [0, 1, 2, 3, 4]
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "tracks.jsonl"]


# -- the option choices ------------------------------------------------------------------------------------
def test_option_choices_match_the_registries():
    from edgecv.cli.track_cmd import RESIZE_CHOICES, SINK_CHOICES, TRACKER_CHOICES
    from edgecv.detection.frames import RESIZE_MODES
    from edgecv.pipeline.sinks import SINKS
    from edgecv.tracking.trackers import TRACKERS

    assert TRACKER_CHOICES == tuple(TRACKERS)
    assert SINK_CHOICES == tuple(SINKS)
    assert RESIZE_CHOICES == tuple(RESIZE_MODES)
    from edgecv.cli.track_cmd import THRESHOLD_CHOICES
    from edgecv.tracking.thresholds import FIT_MODES

    assert THRESHOLD_CHOICES == FIT_MODES


# -- bad input ---------------------------------------------------------------------------------------------
BAD = [
    # (case, arguments as flag, value pairs (IMAGES and GT are filled in; None: a flag without value), expected error)
    ("bad line", ["--line", "door=1,2,3"],
     "line 'door=1,2,3': expected 'x0,y0,x1,y1' or 'name=x0,y0,x1,y1' (pixels), got 3 numbers"),
    ("bad zone", ["--zone", "0,0,10,0"],
     "zone '0,0,10,0': expected 'x0,y0,x1,y1,x2,y2,...' or 'name=x0,y0,...' (pixels, 3 or more points), got 4 numbers"),
    ("stride 0", ["--stride", "0"], "--stride must be at least 1, got 0"),
    ("max frames 0", ["--max-frames", "0"], "--max-frames must be at least 1, got 0"),
    ("negative reconnect", ["--reconnect", "-1"], "--reconnect must be at least 0, got -1"),
    ("no workers", ["--workers", "0"], "--workers must be at least 1, got 0"),
    ("unknown sink", ["--sinks", "video,gif"], "unknown gif; valid sinks: video, jsonl, mot"),
    ("missing source", ["--source", "nowhere.mp4"], "source not found: nowhere.mp4"),
    ("bad synthetic source", ["--source", "synthetic:frames=ten"], "cannot read 'frames=ten'"),
    ("missing gt", ["--gt", "missing.mot.txt"], "missing.mot.txt: file not found"),
    ("unknown class", ["--classes", "bird"], "classes: unknown class 'bird'; the detector's labels: cat, dog"),
    ("missing model", ["--model", "missing.onnx"], "model file not found"),
    ("missing tracker config", ["--tracker-config", "missing.yaml"], "--tracker-config missing.yaml: cannot read it"),
    ("unknown tracker option", ["--tracker-config", "CONFIG"], "ocsort options: unknown key(s) max_lost; valid keys: "),
    ("tracker option before the model", ["--tracker-config", "CONFIG", "--model", "missing.onnx"],
     "ocsort options: unknown key(s) max_lost"),
    ("gt without the mot sink", ["--gt", "GT", "--sinks", "jsonl"], "scoring against ground truth needs the mot sink"),
    ("realtime on images", ["--source", "IMAGES", "--realtime", None],
     "realtime needs a timed source (video, camera, stream), not folder"),
]


BAD_PARAMS = [pytest.param(*case, id=case[0]) for case in BAD]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for k in range(2):
        cv2.imwrite(str(folder / f"{k}.png"), np.full((32, 48, 3), 50 * k, np.uint8))
    return folder


@pytest.mark.parametrize("case, changes, message", BAD_PARAMS)
def test_bad_input_is_one_line_and_writes_nothing(fake, images, tmp_path, capsys, monkeypatch, case, changes, message):
    monkeypatch.chdir(tmp_path)  # relative names in the table are missing files here
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,10,20,20,1,1,1\n")
    values = {"--model": str(fake["model"]), "--source": "synthetic:frames=5,size=64x64", "--out": str(tmp_path / "out")}
    config = tmp_path / "tracker.yaml"
    config.write_text("max_lost: 3\n")
    names = {"IMAGES": str(images), "GT": str(gt), "CONFIG": str(config)}
    extra = []
    for key, value in zip(changes[::2], changes[1::2]):
        value = names.get(value, value)
        if key in values:
            values[key] = value
        else:
            extra += [key] if value is None else [key, value]
    args = [a for k, v in values.items() for a in (k, v)] + ["--spec", str(fake["spec"])] + extra
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["track", *args])
    stdout, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if "edgecv: error:" in line]
    assert code != 0 and len(errors) == 1 and "Traceback" not in err, err
    assert message in errors[0]
    assert stdout == ""
    out = tmp_path / "out"
    assert not out.exists() or [p.name for p in out.iterdir()] == []  # nothing half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == before and not out.exists()  # OUT not even created


def test_out_holding_the_source_video_is_refused(fake, video, tmp_path, capsys):
    folder = tmp_path / "v"
    folder.mkdir()
    clip = folder / "clip.mp4"
    clip.write_bytes(video.read_bytes())
    code, stdout, err = track(capsys, fake, "--source", clip, "--out", folder)
    assert code == 2 and stdout == ""
    assert err.strip().splitlines()[-1] == \
        f"edgecv: error: out {folder} holds the source video; the annotated video would replace it"
    assert [p.name for p in folder.iterdir()] == ["clip.mp4"] and clip.read_bytes() == video.read_bytes()


def test_unknown_tracker_is_refused_by_the_parser(fake, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        track(capsys, fake, "--source", SYNTHETIC, "--out", tmp_path / "o", "--tracker", "deepsort")
    assert exc.value.code == 2
    assert "invalid choice: 'deepsort'" in capsys.readouterr().err and not (tmp_path / "o").exists()


# -- Ctrl-C ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def interrupted(fake, tmp_path_factory):
    """``edgecv track`` on an endless generated video, as its own process (a signal sent to the test process
    would also reach the runtimes' threads of every other test), interrupted by SIGINT once 5 JSON lines are
    on disk: (exit code, printed summary, OUT)."""
    import signal
    import subprocess
    import sys
    import time

    need_ffmpeg()
    out = tmp_path_factory.mktemp("interrupted") / "out"
    proc = subprocess.Popen([sys.executable, "-m", "edgecv", "track", "--model", str(fake["model"]), "--spec",
                             str(fake["spec"]), "--source", "synthetic:frames=0,size=64x64", "--out", str(out),
                             "--json", "--max-frames", "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            path = out / "tracks.jsonl"
            if path.exists() and path.read_text().count("\n") >= 5:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.3)  # the handler is installed before the first frame; let a few more frames through
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, json.loads(stdout), out


def test_ctrl_c_stops_cleanly_with_every_output_closed(interrupted):
    code, printed, out = interrupted
    assert code == 130 and printed["stopped_by"] == "SIGINT"
    s = json.loads((out / "summary.json").read_text())
    assert s["state"] == "stopped" and s["stopped"] is True and s["frames"] >= 5
    assert {k: printed[k] for k in ("frames", "state", "events", "capture")} == \
        {k: s[k] for k in ("frames", "state", "events", "capture")}
    assert s["source"]["length"] is None and "tracking_metrics" not in s  # endless: no truth kept
    records = jsonl(out / "tracks.jsonl")
    assert [r["frame"] for r in records] == list(range(s["frames"]))
    shown, _ = read_video(out / "synthetic_seed0.mp4")  # the .mp4 got its index: readable to the last frame
    assert len(shown) == s["frames"]
    assert len(mot_rows(out / "tracks.mot.txt")) == s["frames"]


def test_ctrl_c_is_recorded_in_summary_json(interrupted):
    _, _, out = interrupted
    assert json.loads((out / "summary.json").read_text()).get("stopped_by") == "SIGINT"


# -- detections but no track -------------------------------------------------------------------------------
def test_detections_that_start_no_track_print_a_warning(fake, tmp_path, capsys):
    config = tmp_path / "tracker.yaml"
    config.write_text("track_thresh: 0.95\nnew_track_thresh: 0.95\n")
    out = tmp_path / "out"
    code, stdout, err = track(capsys, fake, "--source", "synthetic:frames=12,size=96x96", "--out", out,
                              "--tracker-config", config, "--sinks", "jsonl")
    assert code == 0, err  # the run itself went well: a warning, not an error
    s = json.loads((out / "summary.json").read_text())
    assert s["tracks"] == 0 and s["detections"] == {"count": 24, "frames": 12, "max_score": pytest.approx(0.9),
                                                    "startable": 0}
    assert s["tracker_thresholds"]["sources"] == {"track_thresh": "user", "new_track_thresh": "user"}
    message = ("24 detection(s) in 12 frame(s) but no track started: every detection scored below 0.95, the score "
               "that starts a track (new_track_thresh from user); the best scored 0.9. Set new_track_thresh and "
               "track_thresh below it with --tracker-config")
    assert [w["message"] for w in s["warnings"]] == [message]
    assert f"warning: {message}\n" in err
    assert "tracker thresholds: track_thresh 0.95 (user); new_track_thresh 0.95 (user)" in stdout


# -- a real detector on real footage ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shaky_clip(shared_data, tmp_path_factory) -> Path:
    """Frames 40-99 of OpenCV's vtest.avi (pedestrians, 10 frames/s) with a 14 px horizontal motion blur and the
    contrast at 85%, as from a shaking handheld camera in dim light: TensorFlow's SSD MobileNet scores its people
    0.5 to 0.69, never 0.7. (A 15 px blur alone kept them under 0.7 until frames shrank by resize_image; one
    person then scored 0.71.)"""
    video = shared_data / "video" / "vtest.avi"
    path = tmp_path_factory.mktemp("shaky") / "shaky.avi"
    cap = cv2.VideoCapture(str(video))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (768, 576))
    kernel = np.zeros((14, 14), np.float32)
    kernel[7, :] = 1 / 14
    for i in range(100):
        ok, image = cap.read()
        assert ok, f"{video}: frame {i} unreadable"
        if i >= 40:
            writer.write(cv2.convertScaleAbs(cv2.filter2D(image, -1, kernel), alpha=0.85, beta=0.15 * 128))
    cap.release()
    writer.release()
    return path


def test_real_ssd_on_a_shaky_clip_starts_tracks_only_with_fitted_thresholds(shared_data, shaky_clip, tmp_path,
                                                                            capsys):
    ssd = shared_data / "models" / "ssd_mobilenet_v1_coco_quant"
    runs = {}
    for mode in ("tracker", "auto"):
        out = tmp_path / mode
        code = main(["track", "--model", str(ssd / "detect.tflite"), "--spec", "ssd-mobilenet-v1-coco", "--labels",
                     str(ssd / "labelmap.txt"), "--source", str(shaky_clip), "--out", str(out), "--sinks", "jsonl",
                     "--classes", "person", "--thresholds", mode, "--threads", "1"])
        _, err = capsys.readouterr()
        assert code == 0, err
        runs[mode] = (json.loads((out / "summary.json").read_text()), err)
    s, err = runs["tracker"]
    assert s["frames"] == 60 and s["detections"]["count"] >= 150 and s["detections"]["max_score"] < 0.7
    assert s["tracks"] == 0 and [w["cause"] for w in s["warnings"]] == ["below_start_score"]
    assert "warning: " in err and "but no track started: every detection scored below 0.7" in err
    s, err = runs["auto"]
    th = s["tracker_thresholds"]
    assert th["state"] == "calibrated" and th["calibration"]["frames"] == 20  # 2 s at 10 frames/s
    assert 0.5 <= th["values"]["track_thresh"] <= th["values"]["new_track_thresh"] < 0.65
    assert s["tracks"] >= 4 and s["warnings"] == [] and "warning" not in err
    records = jsonl(tmp_path / "auto" / "tracks.jsonl")
    assert sum(len(r["tracks"]) for r in records) >= 50  # 61 here, in the 40 frames after the calibration
    assert {t["label"] for r in records for t in r["tracks"]} == {"person"}


# -- cut-short inputs and hard kills -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def cut_videos(shared_data, tmp_path_factory) -> dict[str, Path]:
    """The first 100 frames of the shared pedestrian video (OpenCV's vtest.avi) at 320x240, by ffmpeg, as
    MJPG .avi, H.264 .mkv and H.264 .mp4 with its index first, each whole and cut to half its bytes."""
    need_ffmpeg()
    import subprocess

    folder = tmp_path_factory.mktemp("cut")
    made = {}
    for name, codec in (("walk.avi", ["-c:v", "mjpeg", "-q:v", "5"]), ("walk.mkv", ["-c:v", "libx264", "-g", "25"]),
                        ("walk.mp4", ["-c:v", "libx264", "-g", "25", "-movflags", "+faststart"])):
        whole = folder / name
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(shared_data / "video" / "vtest.avi"), "-frames:v", "100",
                        "-vf", "scale=320:240", "-an", *codec, str(whole)], check=True, timeout=120)
        made[name] = whole
        made[f"cut_{name}"] = cut(whole, 0.5, folder / f"cut_{name}")
    return made


TRUNCATED = [
    # (video, extra flags, exit code)
    ("cut_walk.avi", [], 4),
    ("cut_walk.mkv", [], 4),
    ("cut_walk.mp4", [], 4),
    ("cut_walk.mkv", ["--allow-truncated"], 0),
    ("walk.mkv", [], 0),
]


@pytest.mark.parametrize("name, flags, code", TRUNCATED, ids=[f"{n}{''.join(f)}" for n, f, _ in TRUNCATED])
def test_a_video_cut_short_ends_truncated_with_exit_4(fake, cut_videos, tmp_path, capsys, caplog, name, flags, code):
    out = tmp_path / "out"
    got, stdout, err = track(capsys, fake, "--source", cut_videos[name], "--out", out, "--json", "--video-format", "mkv",
                             *flags)
    assert got == code, err
    s = json.loads(stdout)
    on_disk = json.loads((out / "summary.json").read_text())
    records, end = ending(out / "tracks.jsonl")
    assert on_disk["state"] == s["state"] and on_disk["input"] == s["input"] and end["end"] == s["state"]
    n = s["frames"]
    if not name.startswith("cut_"):
        assert s["state"] == "ended" and n == 100 and s["input"]["truncated"] is None and not caplog.records
        return
    assert s["state"] == "truncated" and 0 < n < 98 and len(records) == n
    message = s["input"]["truncated"]
    assert message.startswith(f"video {cut_videos[name]}: expected 100 frames, read {n} (ends at ")
    assert end == {"end": "truncated", "frames": n, "expected_frames": 100, "read_frames": n, "message": message}
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("WARNING", message)]
    errors = [line for line in err.splitlines() if line.startswith("edgecv: error:")]
    if code:
        assert errors == [f"edgecv: error: {message}; the outputs hold the {n} frames processed (--allow-truncated "
                          "accepts a cut-short input)"]
    else:
        assert errors == []
    assert len(read_video(out / f"{Path(name).stem}.mkv")[0]) == n  # the outputs hold what was read


def test_a_truncated_run_says_so_in_the_text_summary(fake, tmp_path, capsys):
    clip = cut(write_clip(tmp_path / "clip.avi"), 0.5, tmp_path / "cut.avi")
    code, stdout, err = track(capsys, fake, "--source", clip, "--out", tmp_path / "out", "--sinks", "jsonl")
    assert code == 4
    ended = next(line for line in stdout.splitlines() if "ended:" in line)
    assert ended.endswith(f"ended: truncated (video {clip}: expected 100 frames, read 49 (ends at 4.90 s of 10.00 s: "
                          "cut short or damaged))")


@pytest.mark.parametrize("files, message", [
    ({"a.jpg": b"\xff\xd8\xff\xe0 junk", "b.png": b""}, "no frame could be read from {src}: 2 of 2 image file(s) "
     "could not be decoded (a.jpg: cannot decode the image; b.png: cannot decode the image)"),
    ({}, "no images (.jpg, .jpeg, .png, .bmp, .webp, .tif, .tiff) in folder {src}"),
])
def test_a_source_that_gives_no_frame_is_a_one_line_error(fake, tmp_path, capsys, files, message):
    src = tmp_path / "frames"
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    code, stdout, err = track(capsys, fake, "--source", src, "--out", tmp_path / "out", "--sinks", "jsonl")
    errors = [line for line in err.splitlines() if "edgecv: error:" in line]
    assert code == 2 and stdout == "" and "Traceback" not in err
    assert errors == [f"edgecv: error: {message.format(src=src)}"]
    out = tmp_path / "out"
    if files:  # found out while running: summary.json says the run failed, and why, in full
        s = json.loads((out / "summary.json").read_text())
        assert s["state"] == "failed" and s["error"] == message.format(src=src) and s["frames"] == 0
        assert set(s) == ALL_KEYS - {"tracking_metrics"} and s["input"]["undecodable"] == 2
        assert ending(out / "tracks.jsonl") == ([], {"end": "failed", "frames": 0, "expected_frames": 2, "read_frames": 0,
                                                     "message": message.format(src=src)})
    else:  # found out when opening: nothing written
        assert not out.exists()


def test_an_undecodable_image_is_skipped_and_counted(fake, tmp_path, capsys):
    src = tmp_path / "frames"
    src.mkdir()
    for k in range(3):
        cv2.imwrite(str(src / f"{k}.png"), np.full((32, 48, 3), 50 * k, np.uint8))
    (src / "1.png").write_bytes(b"\x89PNG cut")
    code, stdout, err = track(capsys, fake, "--source", src, "--out", tmp_path / "out", "--sinks", "jsonl")
    assert code == 0, err
    assert "skipped 1 undecodable image(s): 1.png" in stdout.splitlines()
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["state"] == "ended" and s["frames"] == 2
    assert s["input"] == {"expected_frames": 3, "read_frames": 2, "undecodable": 1, "undecodable_files": ["1.png"],
                          "truncated": None}


def test_without_ffmpeg_the_default_mp4_is_one_line_and_writes_nothing(fake, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # no edgecv[video] either
    code, stdout, err = track(capsys, fake, "--source", SYNTHETIC, "--out", tmp_path / "out")
    assert code == 2 and stdout == "" and not (tmp_path / "out").exists()
    assert err.strip().splitlines()[-1] == (
        "edgecv: error: writing the annotated video synthetic_seed0.mp4 needs the ffmpeg program, which is not on "
        "PATH: install it (apt install ffmpeg, or pip install 'edgecv[video]'), or write .mkv (--video-format mkv), "
        "or leave out the video sink")


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, name) of the processes whose parent is ``pid``, from /proc."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, rest = stat.read_text().rsplit(")", 1)
        except OSError:  # it ended while we looked
            continue
        if int(rest.split()[1]) == pid:
            kids.append((int(stat.parent.name), name.split("(", 1)[1]))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("killed", ["edgecv and ffmpeg", "edgecv alone"])
def test_after_a_sigkill_the_video_plays_and_summary_json_is_whole(fake, tmp_path, killed):
    """``edgecv track`` (default outputs) SIGKILLed mid-run, once progress shows on disk: summary.json was
    rewritten mid-run (5 s) and the JSON lines hold 3 s of frames. Killed with its ffmpeg at the same instant
    (both frozen first: a power cut, a cgroup kill), the fragmented .mp4 plays up to its last whole fragment;
    killed alone (the OOM killer), ffmpeg finishes the file with every frame it was given. Before issue 16:
    0 decodable frames and a 5-field summary."""
    import signal
    import subprocess
    import sys
    import time

    need_ffmpeg()
    out = tmp_path / "out"
    log = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "edgecv", "track", "--model", str(fake["model"]), "--spec",
                             str(fake["spec"]), "--source", "synthetic:frames=100000,size=96x96", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=log)
    jsonl_path = out / "tracks.jsonl"
    ffmpeg: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not ((out / "summary.json").exists() and jsonl_path.exists() and jsonl_path.read_text().count("\n") >= 90):
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
            assert time.monotonic() < deadline, "no progress on disk in 120 s"
            time.sleep(0.05)
        ffmpeg = [pid for pid, name in _children(proc.pid) if name == "ffmpeg"]
        assert len(ffmpeg) == 1, _children(proc.pid)
        victims = [proc.pid] + (ffmpeg if killed == "edgecv and ffmpeg" else [])
        for pid in victims:
            os.kill(pid, signal.SIGSTOP)  # nothing moves between the kills
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in ffmpeg):  # killed alone, edgecv leaves ffmpeg to finish the file
            assert time.monotonic() < deadline, "ffmpeg did not finish the file within 60 s of edgecv's kill"
            time.sleep(0.05)
    finally:
        for pid in [proc.pid, *ffmpeg]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    lines = jsonl_path.read_text().splitlines()
    records = [json.loads(line) for line in lines[:-1]]  # the last line may be cut mid-way
    assert all("end" not in r for r in records) and len(records) >= 90  # no end line: a killed run
    s = json.loads((out / "summary.json").read_text())  # whole: it is replaced by a rename, never rewritten in place
    assert set(s) == ALL_KEYS and s["state"] == "running" and s["tracking_metrics"] is None and s["stopped"] is False
    assert 0 < s["frames"] and s["input"]["expected_frames"] == 100000 and s["error"] is None
    assert all(stage["frames"] > 0 for stage in s["stages"].values())
    assert s["files"] == {"video": str(out / "synthetic_seed0.mp4"), "jsonl": str(jsonl_path),
                          "mot": str(out / "tracks.mot.txt"), "summary": str(out / "summary.json")}
    shown, fps = read_video(out / "synthetic_seed0.mp4")
    assert fps == pytest.approx(30.0) and {f.shape for f in shown} == {(96, 96, 3)}
    if killed == "edgecv alone":
        assert len(shown) >= len(records)  # every frame given to ffmpeg is in the file (the video is written first)
    else:
        assert len(shown) >= 30  # at least one whole fragment (a second); more than 90 frames were given
