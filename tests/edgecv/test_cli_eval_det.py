"""``edgecv eval-det``: the table, JSON for scripts, YOLO folders, one-line errors with exit code 2."""

import json
import re
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
    # a COCO results list names no classes: its ids are the COCO ground truth's by definition, compared as they are
    assert out["class_matching"] == {"by": "ids", "map_file": None, "left_out": [],
                                     "note": "classes compared by id: the predictions name no classes",
                                     "pairs": [{"pred_id": c, "pred_name": None, "gt_id": c, "gt_name": n, "how": "id",
                                                "predictions": k} for c, n, k in ((0, "cat", 4), (1, "dog", 2))]}
    assert "compared by id" not in proc.stdout


def test_yolo_folders_give_the_same_map(data):
    proc = edgecv("eval-det", "--gt", data / "gt_labels", "--pred", data / "pred_labels", "--image-size", "512x512",
                  "--labels", data / "names.txt", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["map"] == pytest.approx(MAP, abs=1e-9) and out["map75"] == pytest.approx(MAP75, abs=1e-9)
    assert [c["name"] for c in out["per_class"]] == ["kitten", "puppy"]
    proc = edgecv("eval-det", "--gt", data / "gt_labels", "--pred", data / "pred_labels", "--image-size", "512x512")
    assert "classes compared by id: the ground truth and the predictions name no classes" in proc.stdout


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


# --- a real SSD's COCO predictions against YOLO labels: classes matched by name ------------------------------------

SSD = "models/ssd_mobilenet_v1_coco_quant"


@pytest.fixture(scope="module")
def ssd_run(shared_data, tmp_path_factory):
    """`edgecv detect` with the real SSD on its golden image (COCO 91-id classes, names from labelmap.txt), and the
    golden results written as YOLO labels (COCO's 80 classes counted from 0, named in classes.txt), as a YOLO user
    has them; plus the same truth in the SSD's own ids, for reference."""
    pytest.importorskip("cv2")
    ssd = shared_data / SSD
    root = tmp_path_factory.mktemp("ssd_eval")
    proc = edgecv("detect", "--model", ssd / "detect.tflite", "--spec", "ssd-mobilenet-v1-coco", "--labels",
                  ssd / "labelmap.txt", "--source", ssd / "table.jpg", "--out", root / "run", "--score", "0.3")
    assert proc.returncode == 0, proc.stderr
    labelmap = (ssd / "labelmap.txt").read_text().splitlines()
    coco80 = [n for n in labelmap if n != "???"]
    yolo, own = root / "yolo", root / "ssd_ids"
    yolo.mkdir(), own.mkdir()
    (yolo / "classes.txt").write_text("\n".join(coco80) + "\n")
    lines80, lines91 = [], []
    for line in (ssd / "table_results.txt").read_text().splitlines():  # label left top right bottom score, 640x480
        label, *ltrb, _ = line.split()
        name = label.replace("_", " ")
        left, top, right, bottom = map(float, ltrb)
        box = f"{(left + right) / 1280} {(top + bottom) / 960} {(right - left) / 640} {(bottom - top) / 480}"
        lines80.append(f"{coco80.index(name)} {box}")
        lines91.append(f"{labelmap.index(name)} {box}")  # edgecv's SSD class k is line k of the label map
    (yolo / "table.txt").write_text("\n".join(lines80) + "\n")
    (own / "table.txt").write_text("\n".join(lines91) + "\n")
    german = root / "german"  # the same labels, named in German where the image has them
    german.mkdir()
    (german / "table.txt").write_text("\n".join(lines80) + "\n")
    names = "\n".join(coco80) + "\n"
    for en, de in (("dining table", "Esstisch"), ("cup", "Tasse"), ("book", "Buch"), ("knife", "Messer")):
        names = names.replace(f"\n{en}\n", f"\n{de}\n")
    (german / "classes.txt").write_text(names)
    return {"pred": root / "run" / "predictions.json", "yolo": yolo, "own": own, "german": german, "root": root}


def eval_json(*args):
    proc = edgecv("eval-det", *args, "--image-size", "640x480", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_ssd_predictions_against_yolo_labels_match_by_name(ssd_run):
    doc = eval_json("--gt", ssd_run["yolo"], "--pred", ssd_run["pred"])
    matching = doc["class_matching"]
    assert matching["by"] == "names" and matching["left_out"] == []
    pairs = {p["pred_name"]: (p["pred_id"], p["gt_id"]) for p in matching["pairs"]}
    assert pairs["cup"] == (47, 41) and pairs["dining table"] == (67, 60) and pairs["book"] == (84, 73)
    classes = {c["name"]: c for c in doc["per_class"]}
    assert classes["cup"]["ap50"] == pytest.approx(1.0, abs=1e-9)
    assert classes["dining table"]["ap50"] == pytest.approx(1.0, abs=1e-9)
    assert classes["knife"]["pred"] == 0 and classes["knife"]["ap"] == 0.0  # the SSD calls it scissors
    assert 0.4 < doc["map"] < 0.7 and doc["map50"] >= 0.5  # measured: mAP 0.550, mAP50 0.625
    # the same numbers as the truth written in the SSD's own ids, compared as they are
    reference = eval_json("--gt", ssd_run["own"], "--pred", ssd_run["pred"])  # unnamed truth: ids as they are
    assert reference["class_matching"]["by"] == "ids"
    assert reference["class_matching"]["note"] == "classes compared by id: the ground truth name no classes"
    for key in ("map", "map50", "map75", "recall", "gt", "pred"):
        assert doc[key] == pytest.approx(reference[key], abs=1e-12), key

    proc = edgecv("eval-det", "--gt", ssd_run["yolo"], "--pred", ssd_run["pred"], "--image-size", "640x480")
    assert proc.returncode == 0 and proc.stderr == ""
    assert "prediction classes matched to ground-truth ids by name: 47 cup -> 41, 67 dining table -> 60," in proc.stdout


def test_ssd_class_map_file(ssd_run):
    """Ground truth named in another language: no shared name stops; a class map by name (YAML) or by id (JSON)
    gives the numbers of the name match."""
    german = ssd_run["german"]
    by_name = eval_json("--gt", ssd_run["yolo"], "--pred", ssd_run["pred"])
    yaml_map, json_map = ssd_run["root"] / "de.yaml", ssd_run["root"] / "de.json"
    yaml_map.write_text("dining_table: Esstisch\ncup: tasse\nbook: Buch\n'???': null\n")
    json_map.write_text(json.dumps({"67": 60, "47": 41, "84": 73}))
    for path in (yaml_map, json_map):
        doc = eval_json("--gt", german, "--pred", ssd_run["pred"], "--class-map", path)
        assert doc["class_matching"]["by"] == "map" and doc["class_matching"]["map_file"] == str(path)
        how = {p["pred_id"]: p["how"] for p in doc["class_matching"]["pairs"]}
        assert how[47] == how[67] == how[84] == "map" and how[82] == "name"  # refrigerator: by name
        for key in ("map", "map50", "map75", "recall"):
            assert doc[key] == pytest.approx(by_name[key], abs=1e-12), key


@pytest.mark.parametrize(
    "case, message",
    [
        ("no shared name", r"predictions and ground truth share no class by name: predictions have 47 'cup', 67 "
                           r"'dining table', .*; ground truth has 41 'Tasse', .*; give a class map \(--class-map FILE"),
        ("no shared id", r"share no class by id \(classes compared by id: the predictions name no classes\): predictions "
                         r"have 47, 67, .*; ground truth has 41 'cup'.*--pred-labels"),
        ("map not a mapping", r"class map .*bad\.yaml: expected a mapping of prediction class -> ground-truth class \(ids or names\), got list"),
        ("map not YAML", r"class map .*bad\.yaml: not valid YAML"),
        ("map not JSON", r"class map .*bad\.json: not valid JSON"),
        ("map value a list", r"class map .*bad\.yaml: entry \"cup\": expected a ground-truth class id or name, or null, got \[41\]"),
        ("unknown prediction name", r"'sofa_bed' is not a prediction class name; the predictions name '\?\?\?', 'person'"),
        ("unknown ground-truth name", r"'teacup' is not a ground-truth class name; the ground truth names 'person'"),
        ("ground-truth id out of range", r"ground-truth class id 80 is not one of the ground truth's classes \(0 'person'"),
        ("mapped twice", r"prediction class 47 is mapped twice, to 41 and to 40"),
        ("map missing", r"class map not found: "),
    ],
)
def test_class_errors_one_line(ssd_run, case, message):
    pred, gt = ssd_run["pred"], ssd_run["yolo"]
    bad = ssd_run["root"] / ("bad.json" if case == "map not JSON" else "bad.yaml")
    content = {
        "map not a mapping": "- cup\n- 41\n", "map not YAML": "cup: [41\n", "map not JSON": "{'47': 41}",
        "map value a list": "cup: [41]\n", "unknown prediction name": "sofa_bed: couch\n",
        "unknown ground-truth name": "cup: teacup\n", "ground-truth id out of range": "47: 80\n",
        "mapped twice": "cup: 41\n47: 40\n",
    }.get(case)
    if content is not None:
        bad.write_text(content)
    args = ["--gt", gt, "--pred", pred, "--image-size", "640x480"]
    if case == "no shared name":
        args[1] = ssd_run["german"]
    elif case == "no shared id":
        results = ssd_run["root"] / "results.json"
        coco = json.loads(pred.read_text())
        results.write_text(json.dumps([{**{k: a[k] for k in ("category_id", "bbox", "score")}, "image_id": "table"}
                                       for a in coco["annotations"]]))
        args[3] = results
    elif case == "map missing":
        args += ["--class-map", ssd_run["root"] / "none.yaml"]
    else:
        args += ["--class-map", bad]
    proc = edgecv("eval-det", *args)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecv: error: ") and "Traceback" not in proc.stderr
    assert re.search(message, lines[0]), lines[0]
