"""``edgecv eval-det``: the table, JSON for scripts, YOLO folders, one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("pycocotools")

# Two images, classes 0 (cat) and 1 (dog); tests/edgecv/detection/test_evaluate.py works this case out by hand.
MAP, MAP50, MAP75 = (534.75 / 1010 + 0.9) / 2, (84.25 / 101 + 1) / 2, (34 / 101 + 1) / 2
GT_BOXES = {  # image id -> [(class, [x, y, w, h])]
    1: [(0, [0, 0, 100, 100]), (0, [200, 0, 100, 100])],
    2: [(0, [0, 0, 100, 100]), (1, [200, 200, 100, 100])],
}
PRED_BOXES = {  # image id -> [(class, [x, y, w, h], score)]
    1: [(0, [0, 0, 97, 100], 0.9), (0, [200, 0, 72, 100], 0.7)],
    2: [(0, [400, 400, 100, 100], 0.8), (0, [0, 0, 62, 100], 0.6), (1, [200, 200, 88, 100], 0.5), (1, [200, 200, 100, 100], 0.4)],
}


def edgecv(*args):
    return subprocess.run([sys.executable, "-m", "edgecv", *map(str, args)], capture_output=True, text=True, timeout=120)


def _yolo_line(c, box, *score):
    x, y, w, h = (v / 512 for v in box)  # 512x512 images: exact binary fractions
    return " ".join(repr(v) for v in (c, x + w / 2, y + h / 2, w, h, *score))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_det")
    gt = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 512, "height": 512} for i in GT_BOXES],
        "annotations": [
            {"id": 10 * i + k + 1, "image_id": i, "category_id": c, "bbox": box, "iscrowd": 0}
            for i, rows in GT_BOXES.items()
            for k, (c, box) in enumerate(rows)
        ],
        "categories": [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}],
    }
    results = [{"image_id": i, "category_id": c, "bbox": box, "score": s} for i, rows in PRED_BOXES.items() for c, box, s in rows]
    (root / "gt.json").write_text(json.dumps(gt))
    (root / "results.json").write_text(json.dumps(results))
    (root / "bad.json").write_text(json.dumps(results + [{"image_id": 7, "category_id": 0, "bbox": [0, 0, 1, 1], "score": 0.1}]))
    for name, boxes, scored in (("gt_labels", GT_BOXES, False), ("pred_labels", PRED_BOXES, True)):
        (root / name).mkdir()
        for i, rows in boxes.items():
            lines = [_yolo_line(r[0], r[1], *(r[2:] if scored else ())) for r in rows]
            (root / name / f"{i}.txt").write_text("\n".join(lines) + "\n")
    (root / "names.txt").write_text("kitten\npuppy\n")
    (root / "broken_labels").mkdir()
    (root / "broken_labels" / "1.txt").write_text("0 0.5 0.5 0.1\n")
    return root


def test_help_shows_examples():
    proc = edgecv("eval-det", "--help")
    assert proc.returncode == 0 and "examples:" in proc.stdout and "--image-size" in proc.stdout


def test_coco_table_and_json(data):
    proc = edgecv("eval-det", "--gt", data / "gt.json", "--pred", data / "results.json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["id", "class", "AP@[.5:.95]", "AP50", "GT", "pred"]
    assert lines[2].split() == ["0", "cat", f"{534.75 / 1010:.3f}", f"{84.25 / 101:.3f}", "3", "4"]
    assert lines[3].split() == ["1", "dog", "0.900", "1.000", "1", "2"]
    assert f"mAP@[.5:.95] {MAP:.3f}   mAP50 {MAP50:.3f}   mAP75 {MAP75:.3f}   AR@100 0.800" in proc.stdout
    assert "2 images, 4 ground-truth boxes, 6 predictions" in proc.stdout
    out = json.loads(edgecv("eval-det", "--gt", data / "gt.json", "--pred", data / "results.json", "--json").stdout)
    assert out["map"] == pytest.approx(MAP, abs=1e-9) and out["map50"] == pytest.approx(MAP50, abs=1e-9)
    assert out["ground_truth"].endswith("gt.json") and out["gt"] == 4 and out["pred"] == 6
    assert [c["name"] for c in out["per_class"]] == ["cat", "dog"]


def test_yolo_folders_give_the_same_map(data):
    proc = edgecv("eval-det", "--gt", data / "gt_labels", "--pred", data / "pred_labels", "--image-size", "512x512",
                  "--labels", data / "names.txt", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["map"] == pytest.approx(MAP, abs=1e-9) and out["map75"] == pytest.approx(MAP75, abs=1e-9)
    assert [c["name"] for c in out["per_class"]] == ["kitten", "puppy"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--gt", "{d}/gt.json", "--pred", "{d}/bad.json"], "bad.json item 6: image_id 7 is not in the ground truth"),
        (["--gt", "{d}/missing.json", "--pred", "{d}/results.json"], "ground truth not found: "),
        (["--gt", "{d}/names.txt", "--pred", "{d}/results.json"], "expected a COCO .json file or a folder of YOLO .txt files"),
        (["--gt", "{d}/gt_labels", "--pred", "{d}/pred_labels"], "give an image folder (--images DIR) or one image size"),
        (["--gt", "{d}/gt_labels", "--pred", "{d}/pred_labels", "--image-size", "512"], "expected WIDTHxHEIGHT"),
        (["--gt", "{d}/gt.json", "--pred", "{d}/broken_labels"], "1.txt:1: expected 'class cx cy w h [confidence]', got 4 fields"),
        (["--gt", "{d}/gt.json", "--pred", "{d}/results.json", "--labels", "{d}/none.txt"], "labels file not found"),
        (["--gt", "{d}/gt.json", "--pred", "{d}/results.json", "--max-dets", "0"], "--max-dets must be at least 1"),
        (["--gt", "{d}/gt.json"], "the following arguments are required: --pred"),
    ],
)
def test_bad_input_prints_one_line_and_exits_2(data, args, message):
    proc = edgecv("eval-det", *[a.replace("{d}", str(data)) for a in args])
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    if "required" not in message:  # argparse adds its usage line
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("edgecv: error: ")
