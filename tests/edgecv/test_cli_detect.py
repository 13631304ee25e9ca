"""``edgecv detect``: image folders (corrupt, gray, alpha), videos, COCO predictions eval-det reads, one-line
errors that leave nothing behind.

Most cases run the CLI in-process (``main([...])``) on a tiny constant ONNX detector, to stay fast; the
real entry point and a real model (the shared BlazeFace) run once as a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgecv.cli.main import main
from tests.edgecv.detection.test_detector import FAKE_SCORES, make_fake_detector, write_fake_spec

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake")
    return {
        "model": make_fake_detector(root / "fake.onnx"),
        "nan": make_fake_detector(root / "nan.onnx", nan=True),
        "spec": write_fake_spec(root / "fake.yaml"),
    }


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder with a colour, a gray, an alpha image, one that is not an image at all, and a text file."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / "colour.png"), rng.integers(0, 256, (64, 192, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "gray.jpg"), rng.integers(0, 256, (96, 48), dtype=np.uint8))
    cv2.imwrite(str(folder / "alpha.png"), rng.integers(0, 256, (32, 48, 4), dtype=np.uint8))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (folder / "notes.txt").write_text("ignored\n")
    return folder


def detect(capsys, *args):
    code = main(["detect", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_image_folder_end_to_end(fake, images, tmp_path, capsys, caplog):
    out = tmp_path / "out"
    code, stdout, err = detect(capsys, "--model", fake["model"], "--spec", fake["spec"], "--source", images,
                               "--out", out, "--resize", "letterbox", "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["frames"] == 3 and summary["detections"] == 6
    assert summary["skipped"] == [{"name": "broken.jpg", "reason": "cannot decode the image"}]
    assert "skipping broken.jpg: cannot decode the image" in caplog.text
    assert [c["name"] for c in summary["per_class"]] == ["cat", "dog"]
    assert set(summary["timing_ms"]["median"]) == {"preprocess_ms", "inference_ms", "postprocess_ms", "total_ms"}
    # Annotated images under their own names, in colour; nothing else left behind.
    assert sorted(p.name for p in out.iterdir()) == ["alpha.png", "colour.png", "detections.jsonl", "gray.jpg",
                                                     "predictions.json"]
    for name, (h, w) in {"colour.png": (64, 192), "gray.jpg": (96, 48), "alpha.png": (32, 48)}.items():
        shown = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
        assert shown.shape == (h, w, 3), name
    # COCO predictions: the letterbox mapping of the 64x192 image, worked out in test_detector.py.
    coco = json.loads((out / "predictions.json").read_text())
    images_by_name = {im["file_name"]: im for im in coco["images"]}
    assert images_by_name["colour.png"]["width"] == 192 and images_by_name["colour.png"]["height"] == 64
    boxes = [a["bbox"] for a in coco["annotations"] if a["image_id"] == images_by_name["colour.png"]["id"]]
    assert boxes == [[48.0, 0.0, 48.0, 64.0], [96.0, 0.0, 96.0, 32.0]]
    assert [a["score"] for a in coco["annotations"][:2]] == pytest.approx(FAKE_SCORES)
    assert coco["categories"] == [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}]
    lines = (out / "detections.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["detections"][0]["label"] == "dog"
    # eval-det reads it, as predictions and even as ground truth: a perfect score against itself.
    assert main(["eval-det", "--gt", str(out / "predictions.json"), "--pred", str(out / "predictions.json"),
                 "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["map"] == pytest.approx(1.0) and metrics["images"] == 3 and metrics["pred"] == 6


def test_table_summary_names_stages_and_skips(fake, images, tmp_path, capsys):
    code, stdout, err = detect(capsys, "--model", fake["model"], "--spec", fake["spec"], "--source",
                               images / "colour.png", "--out", tmp_path / "one", "--score", "0.7")
    assert code == 0, err
    head = stdout.splitlines()[0].split()
    assert head[:3] == ["frames", "skipped", "detections"] and "inference" in head and "postprocess" in head
    assert stdout.splitlines()[2].split()[:3] == ["1", "0", "1"]  # --score 0.7 keeps one of the two
    assert "by class: dog 1" in stdout and "score >= 0.7" in stdout


def test_video_gives_an_annotated_mp4_and_frame_lines(fake, tmp_path, capsys):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (96, 64))
    for k in range(8):
        writer.write(np.full((64, 96, 3), 30 * k, np.uint8))
    writer.release()
    out = tmp_path / "vout"
    code, stdout, err = detect(capsys, "--model", fake["model"], "--spec", fake["spec"], "--source", video,
                               "--out", out, "--max-frames", "5", "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["frames"] == 5 and summary["source_kind"] == "video" and summary["files"]["video"].endswith("clip.mp4")
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5 and cap.read()[1].shape == (64, 96, 3)
    cap.release()
    frames = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert [f["frame"] for f in frames] == [0, 1, 2, 3, 4] and frames[1]["time_ms"] == pytest.approx(200, abs=1)
    coco = json.loads((out / "predictions.json").read_text())
    assert [im["file_name"] for im in coco["images"]][:2] == ["clip_000000", "clip_000001"]


def test_a_failure_midway_leaves_nothing_behind(fake, images, tmp_path, capsys, monkeypatch):
    from edgecv.detection.detector import Detector
    from edgecv.errors import BackendError

    real = Detector.detect
    calls = []

    def flaky(self, frame):
        calls.append(1)
        if len(calls) == 2:
            raise BackendError("runtime fell over")
        return real(self, frame)

    monkeypatch.setattr(Detector, "detect", flaky)
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("x")
    for out in (tmp_path / "new", kept):
        calls.clear()
        code, _, err = detect(capsys, "--model", fake["model"], "--spec", fake["spec"], "--source", images, "--out", out)
        assert code == 2 and "edgecv: error: runtime fell over" in err
    assert not (tmp_path / "new").exists()
    assert [p.name for p in kept.iterdir()] == ["mine.txt"]


BAD = [
    # (case, arguments (MODEL, NAN, SPEC, IMAGES, OUT are filled in), expected error)
    ("missing source", ["--source", "nowhere/"], "source not found: nowhere/"),
    ("unknown source kind", ["--source", "SPEC"], "cannot tell what kind of source"),
    ("unknown spec", ["--spec", "nope"], "unknown detector spec 'nope'; built-in specs: blazeface-back, blazeface-full-range"),
    ("no spec anywhere", ["--spec", None], "fake.onnx has no detector spec in its manifest; pass a spec (--spec)"),
    ("spec does not fit", ["--spec", "blazeface-short-range"],
     "detector spec 'blazeface-short-range' does not fit fake.onnx: ssd_anchors: expected outputs [1,896,16]"),
    ("NaN outputs", ["--model", "NAN"], "nan.onnx: output 'scores' [1,2] has 1 NaN value(s) of 2"),
    ("missing model", ["--model", "missing.onnx"], "model file not found"),
    ("max frames", ["--max-frames", "0"], "--max-frames must be at least 1, got 0"),
    ("labels file", ["--labels", "missing.txt"], "labels file not found: missing.txt"),
    ("out is the source folder", ["--out", "IMAGES"], "is where the source images are"),
]


@pytest.mark.parametrize("case, changes, message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_and_writes_nothing(fake, images, tmp_path, capsys, case, changes, message):
    values = {"--model": str(fake["model"]), "--spec": str(fake["spec"]), "--source": str(images),
              "--out": str(tmp_path / "out")}
    names = {"NAN": str(fake["nan"]), "SPEC": str(fake["spec"]), "IMAGES": str(images)}
    extra = []
    for key, value in zip(changes[::2], changes[1::2]):
        value = names.get(value, value)
        if key in values:
            values[key] = value
        else:
            extra += [key, value]
    args = [a for k, v in values.items() if v is not None for a in (k, v)] + extra
    before = sorted(p.name for p in images.iterdir())
    code, stdout, err = detect(capsys, *args)
    errors = [line for line in err.splitlines() if "edgecv: error:" in line]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert message in errors[0]
    assert not (tmp_path / "out").exists() and stdout == ""
    assert sorted(p.name for p in images.iterdir()) == before


def test_option_choices_match_the_library():
    from edgecv.cli.detect_cmd import ILLUMINATION_CHOICES, RESIZE_CHOICES
    from edgecv.detection.frames import ILLUMINATIONS, RESIZE_MODES

    assert RESIZE_CHOICES == tuple(RESIZE_MODES) and ILLUMINATION_CHOICES == tuple(ILLUMINATIONS)


# --- the real entry point on a real model ------------------------------------------------------------------


def test_help_and_blazeface_on_a_folder(shared_data, tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    face = cv2.imread(str(shared_data / "models" / "blazeface_golden" / "sergey.png"))
    cv2.imwrite(str(folder / "face.png"), face)
    cv2.imwrite(str(folder / "face_gray.jpg"), cv2.cvtColor(face, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "face_wide.png"), cv2.copyMakeBorder(face, 0, 0, 200, 200, cv2.BORDER_CONSTANT))
    (folder / "zero.png").write_bytes(b"")
    model = shared_data / "models" / "face_detection_short_range.tflite"

    def edgecv(*args):
        return subprocess.run([sys.executable, "-m", "edgecv", *map(str, args)], capture_output=True, text=True,
                              timeout=120)

    # No --resize: the spec's (letterbox, as MediaPipe runs BlazeFace).
    proc = edgecv("detect", "--model", model, "--spec", "blazeface-short-range", "--source", folder,
                  "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "spec blazeface-short-range, input 128x128 letterbox, score >= 0.5" in proc.stdout
    assert "WARNING edgecv.sources: skipping zero.png: cannot decode the image" in proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[2].split()[:3] == ["3", "1", "3"] and "by class: face 3" in proc.stdout
    assert "skipped 1 unreadable: zero.png" in proc.stdout
    coco = json.loads((tmp_path / "out" / "predictions.json").read_text())
    by_image = {im["id"]: im["file_name"] for im in coco["images"]}
    faces = {by_image[a["image_id"]]: a["bbox"] for a in coco["annotations"]}
    # The same face in every image, 200 px to the right in the wide one (golden box: x 126, w 340).
    assert faces["face.png"][0] == pytest.approx(126, abs=8) and faces["face.png"][2] == pytest.approx(340, abs=8)
    assert faces["face_gray.jpg"] == pytest.approx(faces["face.png"], abs=8)
    assert faces["face_wide.png"][0] == pytest.approx(faces["face.png"][0] + 200, abs=8)
    help_text = edgecv("detect", "--help").stdout
    assert "examples:" in help_text and "--illumination" in help_text and "letterbox" in help_text


# --- frame sources (edgecv.sources), which the command reads through ----------------------------------------


def test_sources_registry_picks_the_kind_and_reads_frames(images, tmp_path):
    from edgecv.errors import ConfigError, InputError
    from edgecv.sources import SOURCES, ImageFile, ImageFolder, VideoFile, open_source

    assert list(SOURCES) == ["camera", "stream", "synthetic", "glob", "folder", "image", "video"]
    folder = open_source(images)
    assert isinstance(folder, ImageFolder) and folder.length == 4 and not folder.is_video
    frames = list(folder)
    assert [f.name for f in frames] == ["alpha.png", "colour.png", "gray.jpg"] and [f.index for f in frames] == [0, 2, 3]
    assert [f.image.shape for f in frames] == [(32, 48, 3), (64, 192, 3), (96, 48)] and frames[1].size == (192, 64)
    assert folder.skipped == [("broken.jpg", "cannot decode the image")]
    assert isinstance(open_source(images / "colour.png"), ImageFile)
    assert isinstance(open_source(images / "colour.png", kind="image"), ImageFile)
    video = tmp_path / "v.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 4.0, (32, 16))
    for k in range(3):
        writer.write(np.full((16, 32, 3), 60 * k, np.uint8))
    writer.release()
    with open_source(video) as clip:
        assert isinstance(clip, VideoFile) and clip.is_video and clip.fps == 4.0 and clip.length == 3
        got = list(clip)
        assert [f.name for f in got] == ["v_000000", "v_000001", "v_000002"] and got[2].time_ms == pytest.approx(500)
        with pytest.raises(InputError, match="can be read once"):
            list(clip)
    with pytest.raises(ConfigError, match="unknown source kind 'webcam'; valid kinds: camera, stream, synthetic, glob, folder, image, video"):
        open_source(video, kind="webcam")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        open_source(tmp_path / "empty")
    (tmp_path / "fake.avi").write_bytes(b"nope")
    with pytest.raises(InputError, match="cannot open video"):
        open_source(tmp_path / "fake.avi")


@pytest.mark.parametrize("spec_resize, flag, used", [(None, [], "stretch"), ("letterbox", [], "letterbox"),
                                                     ("letterbox", ["--resize", "stretch"], "stretch")])
def test_the_spec_resize_is_the_default_and_the_flag_wins(fake, images, tmp_path, capsys, spec_resize, flag, used):
    spec = tmp_path / "spec.yaml"
    spec.write_text(fake["spec"].read_text() + (f"resize: {spec_resize}\n" if spec_resize else ""))
    out = tmp_path / "out"
    assert main(["detect", "--model", str(fake["model"]), "--spec", str(spec), "--source", str(images / "colour.png"),
                 "--out", str(out), "--json", *flag]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["resize"] == used
    # The boxes moved accordingly: the 64x192 frame in a 32x48 input, by hand (see test_detector).
    from tests.edgecv.detection.test_detector import _expected

    rows = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    np.testing.assert_allclose([d["xyxy"] for d in rows[0]["detections"]], _expected((64, 192), used), atol=0.01)


# -- cut-short inputs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, code", [([], 4), (["--allow-truncated"], 0)])
def test_a_video_cut_short_is_truncated_exit_4_with_the_outputs_of_the_frames_read(fake, tmp_path, capsys, caplog,
                                                                                     flags, code):
    from tests.edgecv.test_sources import cut, write_clip

    clip = cut(write_clip(tmp_path / "clip.avi"), 0.5, tmp_path / "cut.avi")
    out = tmp_path / "out"
    got, stdout, err = detect(capsys, "--model", fake["model"], "--spec", fake["spec"], "--source", clip, "--out", out,
                              "--json", *flags)
    assert got == code, err
    summary = json.loads(stdout)
    n = summary["frames"]
    message = f"video {clip}: expected 100 frames, read {n} (ends at {n / 10:.2f} s of 10.00 s: cut short or damaged)"
    assert 0 < n < 98 and summary["state"] == "truncated"
    assert summary["input"] == {"expected_frames": 100, "read_frames": n, "undecodable": 0, "undecodable_files": [],
                                "truncated": message}
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("WARNING", message)]
    errors = [line for line in err.splitlines() if line.startswith("edgecv: error:")]
    assert errors == ([f"edgecv: error: {message}; the outputs hold the {n} frames read (--allow-truncated accepts a "
                       "cut-short input)"] if code else [])
    # the frames read are not thrown away
    assert len(json.loads((out / "predictions.json").read_text())["images"]) == n
    assert len((out / "detections.jsonl").read_text().splitlines()) == n
    cap = cv2.VideoCapture(str(out / "cut.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
    cap.release()


def test_a_whole_video_ends_and_a_text_summary_says_truncated(fake, tmp_path, capsys):
    from tests.edgecv.test_sources import cut, write_clip

    whole = write_clip(tmp_path / "clip.avi")
    code, stdout, err = detect(capsys, "--model", fake["model"], "--spec", fake["spec"], "--source", whole,
                               "--out", tmp_path / "a", "--json")
    assert code == 0, err
    assert json.loads(stdout)["state"] == "ended" and json.loads(stdout)["input"]["truncated"] is None
    clip = cut(whole, 0.5, tmp_path / "cut.avi")
    code, stdout, _ = detect(capsys, "--model", fake["model"], "--spec", fake["spec"], "--source", clip,
                             "--out", tmp_path / "b")
    assert code == 4 and stdout.splitlines()[-2] == (f"ended: truncated (video {clip}: expected 100 frames, read 49 "
                                                     "(ends at 4.90 s of 10.00 s: cut short or damaged))")


def test_a_folder_where_nothing_decodes_is_one_line_and_writes_nothing(fake, tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (folder / "b.png").write_bytes(b"")
    out = tmp_path / "out"
    code, stdout, err = detect(capsys, "--model", fake["model"], "--spec", fake["spec"], "--source", folder, "--out", out)
    errors = [line for line in err.splitlines() if "edgecv: error:" in line]
    assert code == 2 and stdout == "" and "Traceback" not in err
    assert errors == [f"edgecv: error: no frame could be read from {folder}: 2 of 2 image file(s) could not be decoded "
                      "(a.jpg: cannot decode the image; b.png: cannot decode the image)"]
    assert not out.exists()
