"""True boxes for the detector gate from YOLO label files (converters/box_truth.py): where they are looked for,
what a bad file says, and an int8 export judged on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecv.converters.box_truth import label_file, yolo_truth
from edgecv.errors import InputError
from tests.converters import detector_heads as heads


@pytest.mark.parametrize("image, expected", [
    ("data/images/val/a.jpg", "data/labels/val/a.txt"),
    ("images/a.png", "labels/a.txt"),
    ("images/x/images/b.jpg", "images/x/labels/b.txt"),  # the last images folder, as Ultralytics does
    ("photos/a.jpg", None),
])
def test_label_file_follows_ultralytics_layout(image, expected):
    assert label_file(Path(image)) == (None if expected is None else Path(expected))


@pytest.mark.parametrize("text, boxes, error", [
    # (label file, boxes in a 100 x 200 (h x w) input as (class, x1, y1, x2, y2), the error)
    ("0 0.5 0.5 0.2 0.4\n", [(0, 80, 30, 120, 70)], None),
    ("\n1 0.25 0.5 0.5 1.0\n\n", [(1, 0, 0, 100, 100)], None),
    ("1 0.1 0.2 0.3 0.2 0.3 0.6 0.1 0.6\n", [(1, 20, 20, 60, 60)], None),  # a segment: its bounding box
    ("0 0.5 0.5 0.2\n", None, r"line 1: expected 'class cx cy w h' \(or 'class x1 y1 x2 y2 \.\.\.'\), got 4 numbers$"),
    ("0 0.5 half 0.2 0.2\n", None, r"line 1: expected 'class cx cy w h' numbers, got '0 0.5 half 0.2 0.2'$"),
    ("2 0.5 0.5 0.2 0.2\n", None, r"line 1: class 2 is not a class id \(the model has 2 classes\)$"),
    ("0.5 0.5 0.5 0.2 0.2\n", None, r"line 1: class 0.5 is not a class id"),
    ("0\n0 50 40 20 20\n", None, r"line 1: expected 'class cx cy w h'"),
    ("0 50 40 20 20\n", None, r"line 1: coordinates must be normalized to the image \(0 to 1\), got '0 50 40 20 20'$"),
], ids=["box", "blank lines", "segment", "four numbers", "not a number", "class too high", "class not whole",
        "first bad line named", "pixels"])
def test_label_files_are_read_or_refused_with_one_line(tmp_path, text, boxes, error):
    image = tmp_path / "images" / "a.png"
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text(text)
    if error is not None:
        with pytest.raises(InputError, match=error):
            yolo_truth([image], input_size=(100, 200), classes=2)
        return
    (truth,), where = yolo_truth([image], input_size=(100, 200), classes=2)
    got = [(int(c), *np.round(b).astype(int).tolist()) for c, b in zip(truth.class_id, truth.xyxy)]
    assert got == boxes and where.startswith(f"{len(boxes)} boxes from 1 label files in")


def test_no_label_file_at_all_is_no_truth_and_a_missing_one_is_an_empty_image(tmp_path):
    images = [tmp_path / "images" / n for n in ("a.png", "b.png")]
    assert yolo_truth(images, input_size=(10, 10), classes=None) is None
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "b.txt").write_text("\n")
    assert yolo_truth(images, input_size=(10, 10), classes=None) is None  # label files, but no box to judge on
    (tmp_path / "labels" / "b.txt").write_text("3 0.5 0.5 1 1\n")
    truth, where = yolo_truth(images, input_size=(10, 10), classes=None)
    assert [len(d) for d in truth] == [0, 1] and "1 images without one hold no object" in where


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """The Ultralytics-style head on 24 blob images, their labels the float model's own detections clipped to
    the image, and labels that belong to other images (one small box in a corner of each)."""
    cv2 = pytest.importorskip("cv2")
    import onnxruntime as ort

    from edgecv.detection import load_spec

    folder = tmp_path_factory.mktemp("truth")
    (folder / "yolo.yaml").write_text(heads.YOLO_DFL_SPEC)
    spec = load_spec(folder / "yolo.yaml")
    model = heads.yolo_dfl_like(folder / "yolo_dfl.onnx")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    images = heads.blobs(24, seed=2)
    for split in ("val", "elsewhere"):
        (folder / split / "images").mkdir(parents=True)
        (folder / split / "labels").mkdir()
    boxes = 0
    for k, image in enumerate(images):
        x = image.transpose(2, 0, 1)[None].astype(np.float32) / 255
        det = spec.detect(session.run(None, {"x": x}), input_size=(heads.SIZE, heads.SIZE))
        boxes += len(det)
        clipped = np.clip(det.xyxy, 0, heads.SIZE) / heads.SIZE  # label files hold boxes within the image
        lines = [f"{int(c)} {(b[0] + b[2]) / 2:.6f} {(b[1] + b[3]) / 2:.6f} {b[2] - b[0]:.6f} {b[3] - b[1]:.6f}"
                 for c, b in zip(det.class_id, clipped)]
        for split, text in (("val", "\n".join(lines) + "\n"), ("elsewhere", "0 0.03 0.03 0.06 0.06\n")):
            cv2.imwrite(str(folder / split / "images" / f"{k:02d}.png"), image[..., ::-1])
            (folder / split / "labels" / f"{k:02d}.txt").write_text(text)
    np.save(folder / "calib.npy", heads.blobs(64, seed=1))
    return {"folder": folder, "model": model, "spec": spec, "boxes": boxes}


def _export(labelled, split: str, ranges: bool):
    from edgecv.converters.export import ExportOptions, export
    from edgecv.converters.quant import QuantOptions
    from edgecv.manifest import Preprocess

    folder = labelled["folder"]
    options = ExportOptions(bench_runs=0, quant=QuantOptions(fallback=False, ladder=False, detector_ranges=ranges))
    return export(labelled["model"], to="onnx", quant="int8", calib=folder / "calib.npy", eval_data=folder / split / "images",
                  detector=labelled["spec"], max_drop=5.0, out=folder / f"out-{split}-{ranges}", options=options,
                  preprocess=Preprocess(mean=(0.0,), std=(255.0,)))


def test_an_int8_detector_is_judged_on_the_eval_sets_own_boxes(labelled):
    report = _export(labelled, "val", ranges=True)
    assert report.settings["eval_boxes"].startswith(f"{labelled['boxes']} boxes from 24 label files in")
    assert report.source_scores.map > 0.8 and report.source_scores.truth_f1 == 1.0
    artifact = report.artifacts[0]
    assert artifact.status == "passed", artifact.reason
    src = report.source_scores
    assert artifact.drop == pytest.approx(100 * max(src.map - artifact.scores.map, src.truth_f1 - artifact.scores.truth_f1))


def test_boxes_the_float_model_never_finds_are_one_line_and_nothing_is_written(labelled):
    with pytest.raises(InputError, match=r"^the float model finds none of the eval set's boxes at its score threshold \(\d+ boxes from 24 label"):
        _export(labelled, "elsewhere", ranges=True)
    out = labelled["folder"] / "out-elsewhere-True"
    assert not out.exists() or not any(out.iterdir())
