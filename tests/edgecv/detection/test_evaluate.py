"""COCO mAP by pycocotools, checked against a case worked out by hand; the COCO and YOLO readers."""

import json
import re
import sys

import numpy as np
import pytest

from edgecv.detection import Detections
from edgecv.errors import ConfigError, InputError, MissingDependencyError

pytest.importorskip("pycocotools")

from edgecv.detection.evaluate import DetectionMetrics, evaluate_detections  # noqa: E402
from edgecv.labels import names_by_id, read_labels  # noqa: E402
from edgecv.detection.ground_truth import (  # noqa: E402
    DetectionSet,
    load_ground_truth,
    load_predictions,
    parse_image_size,
    read_coco_ground_truth,
    read_coco_predictions,
    read_yolo_ground_truth,
    read_yolo_predictions,
)


def dets(boxes, scores=None, classes=None, **data) -> Detections:
    n = len(boxes)
    return Detections(
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.ones(n) if scores is None else scores,
        np.zeros(n, np.int64) if classes is None else np.asarray(classes, np.int64),
        data=data,
    )


# --- the hand-computed case ------------------------------------------------------------------------------------
#
# Two 512x512 images, class 0 ("cat") and class 1 ("dog"). A prediction [0, 0, w, 100] inside a ground-truth box
# [0, 0, 100, 100] has IoU w / 100, so the IoUs are chosen away from COCO's thresholds .50 .55 ... .95.
#
#   image 1  GT  cat A1 [0,0,100,100]   cat A2 [200,0,300,100]
#            P   cat 0.9 [0,0,97,100]    IoU .97 with A1 -> right at all 10 thresholds
#                cat 0.7 [200,0,272,100] IoU .72 with A2 -> right at .50-.70 (5 thresholds), wrong above
#   image 2  GT  cat A3 [0,0,100,100]   dog B1 [200,200,300,300]
#            P   cat 0.8 [400,400,500,500] nothing there -> always wrong
#                cat 0.6 [0,0,62,100]    IoU .62 with A3 -> right at .50-.60 (3 thresholds), wrong above
#                dog 0.5 [200,200,288,300] IoU .88 with B1 -> right at .50-.85 (8 thresholds)
#                dog 0.4 [200,200,300,300] IoU 1.0 with B1 -> a duplicate while the 0.5 one holds B1;
#                                                          takes B1 at .90 and .95, where the 0.5 one cannot
#
# AP at one threshold: predictions by descending score, precision made non-increasing from the right, then read
# at the 101 recall points r = 0, .01, ..., 1 (the first prediction reaching recall >= r; 0 if none does).
#
# cat, 3 GT, order 0.9 0.8 0.7 0.6:
#   .50 .55 .60  right wrong right right: recall 1/3 1/3 2/3 1, precision 1 1/2 2/3 3/4 -> 1 3/4 3/4 3/4
#                r 0..0.33 (34 points) -> 1, r .34..1 (67 points) -> 3/4        AP = (34 + 67 * 3/4) / 101 = 84.25/101
#   .65 .70      right wrong right wrong: recall 1/3 1/3 2/3 2/3, precision 1 1/2 2/3 1/2 -> 1 2/3 2/3 1/2
#                34 points -> 1, r .34..0.66 (33 points) -> 2/3, r .67..1 -> 0  AP = (34 + 22) / 101 = 56/101
#   .75 ... .95  right then wrong: 34 points -> 1, the rest 0                  AP = 34/101
#   AP(cat) = (3 * 84.25 + 2 * 56 + 5 * 34) / 1010 = 534.75/1010, AP50 = 84.25/101, AP75 = 34/101
#   recall: 1 at three thresholds, 2/3 at two, 1/3 at five -> (3 + 4/3 + 5/3) / 10 = 0.6
# dog, 1 GT, order 0.5 0.4:
#   .50 ... .85  right wrong: precision 1 at every recall point               AP = 1 (8 thresholds)
#   .90 .95      wrong right: precision 1/2 at every recall point             AP = 1/2 (2 thresholds)
#   AP(dog) = (8 + 1) / 10 = 0.9, AP50 = AP75 = 1, recall 1 everywhere
# mean over the two classes:
MAP = (534.75 / 1010 + 0.9) / 2  # 0.71473
MAP50 = (84.25 / 101 + 1) / 2  # 0.91708
MAP75 = (34 / 101 + 1) / 2  # 0.66832
AR100 = (0.6 + 1.0) / 2

SIZE = (512, 512)
GT = [
    dets([[0, 0, 100, 100], [200, 0, 300, 100]], classes=[0, 0]),
    dets([[0, 0, 100, 100], [200, 200, 300, 300]], classes=[0, 1]),
]
PRED = [
    dets([[0, 0, 97, 100], [200, 0, 272, 100]], [0.9, 0.7], [0, 0]),
    dets([[400, 400, 500, 500], [0, 0, 62, 100], [200, 200, 288, 300], [200, 200, 300, 300]], [0.8, 0.6, 0.5, 0.4], [0, 0, 1, 1]),
]


def check_hand_case(m: DetectionMetrics):
    assert m.map == pytest.approx(MAP, abs=1e-9)
    assert m.map50 == pytest.approx(MAP50, abs=1e-9)
    assert m.map75 == pytest.approx(MAP75, abs=1e-9)
    assert m.recall == pytest.approx(AR100, abs=1e-9)
    cat, dog = m.per_class[0], m.per_class[1]
    assert cat["ap"] == pytest.approx(534.75 / 1010, abs=1e-9) and cat["ap50"] == pytest.approx(84.25 / 101, abs=1e-9)
    assert cat["ap75"] == pytest.approx(34 / 101, abs=1e-9) and cat["recall"] == pytest.approx(0.6, abs=1e-9)
    assert dog["ap"] == pytest.approx(0.9, abs=1e-9) and dog["ap50"] == pytest.approx(1.0, abs=1e-9)
    assert (cat["gt"], cat["pred"], dog["gt"], dog["pred"]) == (3, 4, 1, 2)
    assert (m.images, m.gt, m.pred) == (2, 4, 6)


def test_hand_computed_case():
    m = evaluate_detections(GT, PRED, labels=["cat", "dog"])
    check_hand_case(m)
    assert m.per_class[0]["name"] == "cat" and m.per_class[1]["name"] == "dog"
    assert list(m.per_class) == [0, 1]


def test_perfect_predictions_score_one_and_empty_ones_zero():
    perfect = evaluate_detections(GT, GT)
    assert (perfect.map, perfect.map50, perfect.map75, perfect.recall) == pytest.approx((1, 1, 1, 1), abs=1e-9)
    empty = evaluate_detections(GT, [Detections.empty(), Detections.empty()])
    assert (empty.map, empty.map50, empty.map75, empty.recall) == (0.0, 0.0, 0.0, 0.0)
    assert empty.per_class[0] == {"name": "0", "ap": 0.0, "ap50": 0.0, "ap75": 0.0, "recall": 0.0, "gt": 3, "pred": 0}


def test_a_class_without_predictions_counts_zero_in_the_mean():
    gt = [Detections.merge([GT[0], dets([[400, 400, 450, 450]], classes=[2])]), GT[1]]
    m = evaluate_detections(gt, PRED)
    assert m.per_class[2]["ap"] == 0.0 and m.per_class[2]["pred"] == 0
    assert m.map == pytest.approx((534.75 / 1010 + 0.9 + 0) / 3, abs=1e-9)
    assert m.map50 == pytest.approx((84.25 / 101 + 1 + 0) / 3, abs=1e-9)


def test_a_class_without_ground_truth_is_left_out_and_harms_no_other_class():
    # A confident class-7 box exactly on cat A1: COCO compares classes separately and skips class 7.
    pred = [Detections.merge([PRED[0], dets([[0, 0, 100, 100]], [0.99], [7])]), PRED[1]]
    m = evaluate_detections(GT, pred)
    assert (m.map, m.map50, m.map75) == pytest.approx((MAP, MAP50, MAP75), abs=1e-9)
    assert m.per_class[7] == {"name": "7", "ap": None, "ap50": None, "ap75": None, "recall": None, "gt": 0, "pred": 1}
    assert m.pred == 7


def test_crowd_regions_make_no_false_positives():
    gt = [dets([[0, 0, 10, 10], [50, 50, 150, 150]], iscrowd=np.array([False, True]))]
    pred = [dets([[60, 60, 80, 80], [0, 0, 10, 10]], [0.9, 0.5])]  # the 0.9 box lies inside the crowd region
    assert evaluate_detections(gt, pred).map == pytest.approx(1.0, abs=1e-9)
    plain = [dets(gt[0].xyxy)]  # the same boxes without the flag: the crowd is one more missed object
    assert evaluate_detections(plain, pred).map < 0.5


def test_max_detections_caps_each_image_and_class_by_confidence():
    gt = [dets([[0, 0, 10, 10], [20, 20, 30, 30]])]
    pred = [dets([[50, 50, 60, 60], [0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8, 0.7])]
    assert evaluate_detections(gt, pred, max_detections=1).map == 0.0  # only the wrong, most confident box
    assert evaluate_detections(gt, pred, max_detections=3).recall == pytest.approx(1.0)


def test_pycocotools_prints_nothing_and_results_are_json(capsys):
    m = evaluate_detections(GT, PRED)
    assert capsys.readouterr().out == ""
    out = json.loads(json.dumps(m.to_dict()))
    assert out["map"] == pytest.approx(MAP) and out["per_class"][1]["class_id"] == 1 and out["max_detections"] == 100


@pytest.mark.parametrize(
    "gt, pred, error, message",
    [
        (GT, PRED[:1], InputError, "2 ground-truth images and 1 prediction images"),
        ([Detections.empty()], [Detections.empty()], InputError, "the ground truth has no boxes in 1 images"),
        ([dets([[0, 0, 5, 5]], iscrowd=[True])], [Detections.empty()], InputError, "only crowd regions"),
        (GT[0], PRED[0], InputError, "expected one Detections per image (a list)"),
        ([GT[0], "boxes"], PRED, InputError, "ground_truth[1]: expected Detections, got str"),
        (GT, [PRED[0], dets([[10, 0, 5, 5]])], InputError, "predictions[1] box 0: expected x2 >= x1"),
    ],
)
def test_evaluate_rejects_bad_input(gt, pred, error, message):
    with pytest.raises(error, match=None) as info:
        evaluate_detections(gt, pred)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_evaluate_rejects_bad_max_detections():
    with pytest.raises(ConfigError, match="max_detections"):
        evaluate_detections(GT, PRED, max_detections=0)


def test_missing_pycocotools_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)
    with pytest.raises(MissingDependencyError, match=r"pycocotools is needed to compute COCO mAP: pip install 'edgecv\[eval\]'"):
        evaluate_detections(GT, PRED)


# --- readers ----------------------------------------------------------------------------------------------------


def coco_gt() -> dict:
    """The hand case as a COCO file; image ids 10 and 20 to show they need not count from 1."""
    return {
        "images": [{"id": 10, "file_name": "1.png", "width": 512, "height": 512},
                   {"id": 20, "file_name": "2.png", "width": 512, "height": 512}],
        "annotations": [{"id": j + 1, "image_id": image_id, "category_id": int(c), "bbox": box, "iscrowd": 0}
                        for j, (image_id, c, box) in enumerate(_rows(GT))],
        "categories": [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}],
    }


def _rows(items):
    for image_id, d in zip((10, 20), items):
        for box, c in zip(d.xyxy.tolist(), d.class_id):
            yield image_id, c, [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def coco_results() -> list:
    return [r for image_id, d in zip((10, 20), PRED) for r in d.to_coco(image_id=image_id)]


def write_yolo(folder, items, *, scores: bool):
    """YOLO txt files 1.txt and 2.txt; with 512x512 images every coordinate is an exact binary fraction."""
    folder.mkdir()
    for stem, d in zip(("1", "2"), items):
        lines = []
        for (x1, y1, x2, y2), c, s in zip(d.xyxy.tolist(), d.class_id, d.confidence):
            cx, cy, w, h = (x1 + x2) / 2 / 512, (y1 + y2) / 2 / 512, (x2 - x1) / 512, (y2 - y1) / 512
            lines.append(f"{c} {cx!r} {cy!r} {w!r} {h!r}" + (f" {float(s)!r}" if scores else ""))
        (folder / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture()
def files(tmp_path):
    gt_json = tmp_path / "gt.json"
    gt_json.write_text(json.dumps(coco_gt()))
    results_json = tmp_path / "results.json"
    results_json.write_text(json.dumps(coco_results()))
    return {
        "gt_json": gt_json,
        "results_json": results_json,
        "gt_yolo": write_yolo(tmp_path / "gt_labels", GT, scores=False),
        "pred_yolo": write_yolo(tmp_path / "pred_labels", PRED, scores=True),
        "tmp": tmp_path,
    }


def test_coco_ground_truth_and_results(files):
    gt = read_coco_ground_truth(files["gt_json"])
    assert isinstance(gt, DetectionSet) and len(gt) == 2
    assert gt.files == ["1.png", "2.png"] and gt.image_ids == [10, 20] and gt.sizes == [SIZE, SIZE]
    assert gt.categories == {0: "cat", 1: "dog"}
    np.testing.assert_array_equal(gt.detections[1].xyxy, GT[1].xyxy)
    assert gt.detections[0].data["iscrowd"].tolist() == [False, False]
    pred = read_coco_predictions(files["results_json"], gt)
    check_hand_case(evaluate_detections(gt.detections, pred))


def test_a_coco_predictions_dict_is_matched_by_file_name(files):
    # As `edgecv detect` writes predictions.json: its own image ids (here reversed), file names, scored annotations.
    gt = read_coco_ground_truth(files["gt_json"])
    ids = {10: 2, 20: 1}
    data = {
        "images": [{"id": 1, "file_name": "2.png", "width": 512, "height": 512}, {"id": 2, "file_name": "1.png"}],
        "annotations": [{**r, "image_id": ids[r["image_id"]], "id": k + 1} for k, r in enumerate(coco_results())],
        "categories": [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}],
    }
    path = files["tmp"] / "predictions.json"
    path.write_text(json.dumps(data))
    check_hand_case(evaluate_detections(gt.detections, read_coco_predictions(path, gt)))
    del data["images"]  # without images, ids are taken as the ground truth's: now they point nowhere
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"annotations\[0\]: image_id 2 is not in the ground truth"):
        read_coco_predictions(path, gt)


def test_yolo_and_coco_files_of_the_same_boxes_give_identical_metrics(files):
    yolo_gt = read_yolo_ground_truth(files["gt_yolo"], image_size=SIZE)
    assert yolo_gt.files == ["1", "2"] and yolo_gt.image_ids == [1, 2]
    yolo = evaluate_detections(yolo_gt.detections, read_yolo_predictions(files["pred_yolo"], yolo_gt))
    coco_set = read_coco_ground_truth(files["gt_json"])
    coco = evaluate_detections(coco_set.detections, read_coco_predictions(files["results_json"], coco_set))
    check_hand_case(yolo)
    assert yolo.to_dict() == coco.to_dict()
    # mixed: COCO ground truth (sizes from its images) with YOLO predictions (matched by file stem), and
    # YOLO ground truth with a COCO results list whose image ids are the numeric stems, as Ultralytics writes
    check_hand_case(evaluate_detections(coco_set.detections, load_predictions(files["pred_yolo"], coco_set)))
    results = files["tmp"] / "stems.json"
    results.write_text(json.dumps([{**r, "image_id": r["image_id"] // 10} for r in coco_results()]))
    check_hand_case(evaluate_detections(yolo_gt.detections, load_predictions(results, yolo_gt)))


def test_yolo_with_an_image_folder(files):
    cv2 = pytest.importorskip("cv2")
    images = files["tmp"] / "images"
    images.mkdir()
    for name in ("1.png", "2.jpg", "3.png"):  # 3.png has no label file: an image without objects
        cv2.imwrite(str(images / name), np.zeros((512, 512, 3), np.uint8))
    gt = load_ground_truth(files["gt_yolo"], images=images)
    assert gt.files == ["1.png", "2.jpg", "3.png"] and gt.sizes == [SIZE] * 3 and len(gt.detections[2]) == 0
    (files["pred_yolo"] / "2.txt").unlink()  # no prediction file: no predictions for that image
    pred = load_predictions(files["pred_yolo"], gt)
    assert [len(p) for p in pred] == [2, 0, 0]
    m = evaluate_detections(gt.detections, pred)
    assert m.images == 3 and m.per_class[1]["ap"] == 0.0
    (files["gt_yolo"] / "4.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(InputError, match=r"4.txt: no image 4\.\* in .*images \(1 label files without an image\)"):
        load_ground_truth(files["gt_yolo"], images=images)


def test_yolo_sizes_and_class_names(files):
    with pytest.raises(ConfigError, match="normalized to the image size: give an image folder"):
        read_yolo_ground_truth(files["gt_yolo"])
    (files["gt_yolo"] / "classes.txt").write_text("cat\ndog\n")
    assert read_yolo_ground_truth(files["gt_yolo"], image_size=SIZE).categories == {0: "cat", 1: "dog"}
    assert parse_image_size("640x480") == (640, 480)
    for bad in ("640", "0x480", "axb", "640x480x3"):
        with pytest.raises(ConfigError, match="expected WIDTHxHEIGHT"):
            parse_image_size(bad)
    txt, yml, yml_dict = (files["tmp"] / n for n in ("names.txt", "data.yaml", "dict.yml"))
    txt.write_text("person\n\ncar\n")
    yml.write_text("path: x\nnames: [person, car]\n")
    yml_dict.write_text("names:\n  0: person\n  3: car\n")
    # line k is class k (edgecv.labels): the blank line is class 1, without a name
    assert names_by_id(read_labels(txt)) == {0: "person", 2: "car"}
    assert names_by_id(read_labels(yml)) == {0: "person", 1: "car"}
    assert names_by_id(read_labels(yml_dict)) == {0: "person", 3: "car"}


def _gt_json(annotations=None, images=None, categories=None) -> str:
    return json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}] if images is None else images,
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 20]}] if annotations is None else annotations,
        "categories": [{"id": 3, "name": "car"}] if categories is None else categories,
    })


def _ann(**kw):
    return [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 20], **kw}]


def _res(**kw):
    return json.dumps([{"image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 20], "score": 0.5, **kw}])


@pytest.mark.parametrize(
    "kind, content, expected",
    [
        # COCO ground truth
        ("coco_gt", _gt_json(), None),
        ("coco_gt", "{not json", "gt.json: not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2)"),
        ("coco_gt", json.dumps([1, 2]), "expected a COCO object with 'images', 'annotations' and 'categories'"),
        ("coco_gt", json.dumps({"annotations": []}), "gt.json: expected an 'images' list"),
        ("coco_gt", _gt_json(_ann(bbox=[1, 2, float("nan"), 20])), "annotations[0]: expected 'bbox' [x, y, width, height] of 4 finite numbers, got [1, 2, NaN, 20]"),
        ("coco_gt", _gt_json(_ann(bbox=[1, 2, 3])), "of 4 finite numbers, got [1, 2, 3]"),
        ("coco_gt", _gt_json(_ann(bbox=[1, 2, -10, 20])), "annotations[0]: expected a bbox width and height >= 0, got [1, 2, -10, 20]"),
        ("coco_gt", _gt_json(_ann(image_id=9)), "annotations[0]: image_id 9 is not in 'images'"),
        ("coco_gt", _gt_json(_ann(image_id=[1])), "annotations[0]: image_id [1] is not in 'images'"),
        ("coco_gt", _gt_json(_ann(category_id=7)), "annotations[0]: category_id 7 is not in 'categories'"),
        ("coco_gt", _gt_json(_ann(category_id="car")), "annotations[0]: expected an integer 'category_id', got \"car\""),
        ("coco_gt", _gt_json(images=[{"id": 1}, {"id": 1}]), "images[1]: image id 1 appears twice"),
        ("coco_gt", _gt_json(images=[{"id": 1, "width": -64, "height": 48}]), "images[0]: expected a positive integer 'width', got -64"),
        # COCO predictions, read against the first row's ground truth
        ("coco_pred", _res(), None),
        ("coco_pred", _res(image_id=99), "pred.json item 0: image_id 99 is not in the ground truth"),
        ("coco_pred", json.dumps([{"image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 20]}]), "item 0: expected a 'score' in every prediction (is this a ground-truth file?)"),
        ("coco_pred", _res(score=float("nan")), "item 0: expected 'score' to be a finite number, got NaN"),
        ("coco_pred", _res(score="high"), "expected 'score' to be a finite number, got \"high\""),
        ("coco_pred", _gt_json(), "annotations[0]: expected a 'score' in every prediction"),
        ("coco_pred", json.dumps({"images": [{"id": 1, "file_name": "b.jpg"}], "annotations": []}), "images[0]: file_name 'b.jpg' is not in the ground truth"),
        ("coco_pred", json.dumps("results"), "expected a COCO results list or an object with 'annotations', got str"),
        # YOLO ground truth (a.txt in a folder, image size 64x48)
        ("yolo_gt", "0 0.5 0.5 0.25 0.5\n\n2 0.1 0.1 0.1 0.1\n", None),
        ("yolo_gt", "0 0.5 0.5 0.25 0.5\n1 0.5 0.5 0.25\n", "a.txt:2: expected 'class cx cy w h', got 4 fields: '1 0.5 0.5 0.25'"),
        ("yolo_gt", "0 0.5 0.5 0.25 0.5 0.9\n", "a.txt:1: expected 'class cx cy w h', got 6 fields"),
        ("yolo_gt", "car 0.5 0.5 0.25 0.5\n", "a.txt:1: expected numbers 'class cx cy w h', got 'car 0.5 0.5 0.25 0.5'"),
        ("yolo_gt", "0 nan 0.5 0.25 0.5\n", "a.txt:1: expected finite numbers, got '0 nan 0.5 0.25 0.5'"),
        ("yolo_gt", "1.5 0.5 0.5 0.25 0.5\n", "a.txt:1: expected a class id (an integer >= 0) first, got '1.5'"),
        ("yolo_gt", "0 0.5 0.5 -0.25 0.5\n", "a.txt:1: expected a width and height >= 0, got -0.25 0.5"),
        # YOLO predictions, read against a ground truth of image "a"
        ("yolo_pred", "0 0.5 0.5 0.25 0.5 0.9\n0 0.5 0.5 0.25 0.5\n", None),
        ("yolo_pred", "0 0.5 0.5 0.25 0.5 0.9 7\n", "a.txt:1: expected 'class cx cy w h [confidence]', got 7 fields"),
        ("yolo_pred", "0 0.5 0.5 0.25 0.5 inf\n", "a.txt:1: expected finite numbers"),
    ],
)
def test_readers_bad_input_table(tmp_path, kind, content, expected):
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(_gt_json())
    labels = tmp_path / "labels"
    labels.mkdir()

    def read():
        if kind == "coco_gt":
            gt_path.write_text(content)
            return read_coco_ground_truth(gt_path)
        if kind == "coco_pred":
            (tmp_path / "pred.json").write_text(content)
            return read_coco_predictions(tmp_path / "pred.json", read_coco_ground_truth(gt_path))
        (labels / "a.txt").write_text(content)
        if kind == "yolo_gt":
            return read_yolo_ground_truth(labels, image_size=(64, 48))
        return read_yolo_predictions(labels, read_coco_ground_truth(gt_path))

    if expected is None:
        assert read() is not None
    else:
        with pytest.raises(InputError) as info:
            read()
        assert expected in str(info.value) and "\n" not in str(info.value)


def test_yolo_rows_become_pixels(tmp_path):
    labels, preds = tmp_path / "labels", tmp_path / "preds"
    labels.mkdir(), preds.mkdir()
    (labels / "a.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    (preds / "a.txt").write_text("0 0.5 0.5 0.25 0.5 0.9\n2 0.5 0.5 0.25 0.5\n")  # no 6th column: confidence 1
    gt = read_yolo_ground_truth(labels, image_size=(64, 48))
    np.testing.assert_allclose(gt.detections[0].xyxy, [[24, 12, 40, 36]])
    pred = read_yolo_predictions(preds, gt)[0]
    np.testing.assert_allclose(pred.xyxy, [[24, 12, 40, 36]] * 2)
    np.testing.assert_allclose(pred.confidence, [0.9, 1.0])
    assert pred.class_id.tolist() == [0, 2]


@pytest.mark.parametrize(
    "path, message",
    [("missing.json", "ground truth not found: "), ("missing_dir", "ground truth not found: "), ("notes.txt", "expected a COCO .json file or a folder of YOLO .txt files")],
)
def test_load_tells_the_kind_by_path(tmp_path, path, message):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=message):
        load_ground_truth(tmp_path / path)


def test_yolo_predictions_for_unknown_images_and_unknown_sizes(files, tmp_path):
    gt = read_coco_ground_truth(files["gt_json"])
    (files["pred_yolo"] / "9.txt").write_text("0 0.5 0.5 0.1 0.1 0.5\n")
    with pytest.raises(InputError, match=r"9.txt: image '9' is not in the ground truth"):
        read_yolo_predictions(files["pred_yolo"], gt)
    (files["pred_yolo"] / "9.txt").unlink()
    no_sizes = DetectionSet(gt.files, gt.image_ids, gt.detections, [None, None], source="gt")
    with pytest.raises(InputError, match=r"1.txt: the size of image '1.png' is unknown"):
        read_yolo_predictions(files["pred_yolo"], no_sizes)
    check_hand_case(evaluate_detections(gt.detections, read_yolo_predictions(files["pred_yolo"], no_sizes, image_size=SIZE)))


def test_coco_crowd_annotations_are_kept_as_crowd_regions(tmp_path):
    gt_path, pred_path = tmp_path / "gt.json", tmp_path / "pred.json"
    gt_path.write_text(_gt_json(_ann() + [{"id": 2, "image_id": 1, "category_id": 3, "bbox": [30, 0, 30, 40], "iscrowd": 1}]))
    pred_path.write_text(json.dumps([{"image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 20], "score": 0.5},
                                     {"image_id": 1, "category_id": 3, "bbox": [35, 5, 10, 10], "score": 0.9}]))
    gt = read_coco_ground_truth(gt_path)
    assert gt.detections[0].data["iscrowd"].tolist() == [False, True]
    m = evaluate_detections(gt.detections, read_coco_predictions(pred_path, gt))
    assert m.map == pytest.approx(1.0, abs=1e-9) and m.gt == 2


# --- prediction classes -> ground-truth classes --------------------------------------------------------------------

from edgecv.detection.class_map import match_classes, normalize_name, read_class_map  # noqa: E402
from edgecv.detection.ground_truth import load_prediction_set  # noqa: E402

BOX = [[0, 0, 10, 10]]
GT80 = [dets(BOX, classes=[0]), dets(BOX, classes=[2])]  # person (0), car (2): YOLO's COCO-80 ids
PRED91 = [dets(BOX, [0.9], [1]), dets(BOX + [[50, 50, 60, 60]], [0.8, 0.7], [3, 90])]  # COCO-91 ids: person 1, car 3
NAMES80 = {0: "person", 1: "bicycle", 2: "car"}
NAMES91 = {0: "???", 1: "person", 2: "bicycle", 3: "car", 90: "toothbrush"}

# gt names, prediction names, class map, expected (by, mapping, left_out) or the error
MATCH_CASES = [
    ("by name", NAMES80, NAMES91, None, ("names", {1: 0, 3: 2}, {90: 1})),
    ("names differ in case and separators", {0: "Person", 2: "Sports_Car"}, {1: "person", 3: "sports-car", 90: "x"}, None,
     ("names", {1: 0, 3: 2}, {90: 1})),
    ("no prediction names: ids as they are", NAMES80, None, None, "share no class by id"),
    ("names that are only ids are no names", NAMES80, {1: "1", 3: "3", 90: "90"}, None, "the predictions name no classes"),
    ("same scheme, unnamed", None, None, None, "share no class by id"),
    ("map by id", None, None, {1: 0, 3: 2, 90: None}, ("map", {1: 0, 3: 2}, {90: 1})),
    ("map by name, the rest by name", NAMES80, NAMES91, {"car": "person"}, ("map", {1: 0, 3: 0}, {90: 1})),
    ("map ids as strings (JSON keys)", None, None, {"1": "0"}, ("map", {1: 0}, {3: 1, 90: 1})),
    ("map leaves out", NAMES80, NAMES91, {"person": None}, ("map", {3: 2}, {1: 1, 90: 1})),
    ("no shared name", {0: "Person", 2: "Auto"}, {1: "human", 3: "automobile", 90: "x"}, None,
     "share no class by name: predictions have 1 'human', 3 'automobile', 90 'x'; ground truth has 0 'Person', 2 'Auto'"),
    ("ambiguous ground-truth name", {0: "person", 2: "person"}, NAMES91, None, "the ground truth names 2 classes 'person' (ids [0, 2])"),
    ("map name without names", None, None, {"person": 0}, "prediction class 'person' is a name, but the predictions name no classes"),
    ("map to a name the truth lacks", NAMES80, NAMES91, {"car": "truck"}, "'truck' is not a ground-truth class name"),
    ("map to an id the truth lacks", NAMES80, NAMES91, {3: 7}, "ground-truth class id 7 is not one of the ground truth's classes"),
    ("map from an id the predictions lack", NAMES80, NAMES91, {5: 0}, "prediction class id 5 is not one of the predictions' classes"),
]


@pytest.mark.parametrize("gt_names, pred_names, class_map, expected", [c[1:] for c in MATCH_CASES], ids=[c[0] for c in MATCH_CASES])
def test_match_classes(gt_names, pred_names, class_map, expected):
    if isinstance(expected, str):
        with pytest.raises(InputError, match=re.escape(expected)) as info:
            match_classes(GT80, PRED91, gt_names=gt_names, pred_names=pred_names, class_map=class_map)
        assert "\n" not in str(info.value)
        return
    m = match_classes(GT80, PRED91, gt_names=gt_names, pred_names=pred_names, class_map=class_map)
    by, mapping, left_out = expected
    assert (m.by, m.mapping, m.left_out) == (by, mapping, left_out)
    moved = m.apply(PRED91)
    assert [d.class_id.tolist() for d in moved] == [[mapping[1]] if 1 in mapping else [],
                                                    [mapping[c] for c in (3, 90) if c in mapping]]
    assert sum(len(d) for d in moved) == 3 - sum(left_out.values())
    assert m.to_dict()["left_out"] == [{"pred_id": c, "pred_name": m.pred_names.get(c), "predictions": n}
                                       for c, n in sorted(left_out.items())]


def test_match_by_name_gives_the_hand_case_numbers():
    """The hand case with predictions numbered otherwise (cat 5, dog 9) and named: the same mAP as by id."""
    renumbered = [dets(d.xyxy, d.confidence, np.where(d.class_id == 0, 5, 9)) for d in PRED]
    m = match_classes(GT, renumbered, gt_names={0: "cat", 1: "dog"}, pred_names={5: "Cat", 9: "dog"})
    assert (m.by, m.mapping, m.renamed) == ("names", {5: 0, 9: 1}, {5: 0, 9: 1})
    check_hand_case(evaluate_detections(GT, m.apply(renumbered), labels=["cat", "dog"]))
    same = match_classes(GT, PRED)  # unnamed, same ids: nothing changes
    assert (same.by, same.mapping, same.note) == ("ids", {0: 0, 1: 1}, "classes compared by id: the ground truth and the predictions name no classes")
    assert same.apply(PRED) == PRED


def test_match_without_predictions_or_with_placeholder_names():
    empty = match_classes(GT80, [Detections.empty(), Detections.empty()], gt_names=NAMES80, pred_names=NAMES91)
    assert empty.mapping == {} and empty.left_out == {}  # nothing predicted: mAP 0, not an error
    labelmap = {0: "???", 1: "person", 12: "???"}  # a label map's placeholders on both sides: the same id
    m = match_classes([dets(BOX, classes=[1])], [dets(BOX * 2, [0.5, 0.4], [1, 12])], gt_names=labelmap, pred_names=labelmap)
    assert m.mapping == {1: 1, 12: 12}
    assert normalize_name("  Dining_Table ") == normalize_name("dining-table") == "dining table"


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("m.yaml", "1: 0\nperson: person\nmotorbike: motorcycle\n'???': null\n'7': '3'\n",
         {1: 0, "person": "person", "motorbike": "motorcycle", "???": None, 7: 3}),
        ("m.json", '{"1": 0, "motorbike": "motorcycle", "???": null}', {1: 0, "motorbike": "motorcycle", "???": None}),
        ("m.yaml", "yes: 1\n", "expected a prediction class id or name as key, got true"),
        ("m.yaml", "~: 1\n", "expected a prediction class id or name as key, got null"),
        ("m.yaml", "1: 2.5\n", "entry 1: expected a ground-truth class id or name, or null, got 2.5"),
        ("m.yaml", "1: {a: 2}\n", "entry 1: expected a ground-truth class id or name, or null, got {\"a\": 2}"),
        ("m.yaml", "{}\n", "got an empty mapping"),
        ("m.yaml", "just text\n", "got str"),
        ("m.json", "[1, 2]", "got list"),
        ("m.json", "{1: 2}", "not valid JSON (Expecting property name enclosed in double quotes at line 1)"),
    ],
)
def test_read_class_map(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    if isinstance(expected, dict):
        assert read_class_map(path) == expected
    else:
        with pytest.raises(InputError, match=re.escape(expected)) as info:
            read_class_map(path)
        assert str(info.value).startswith(f"class map {path}") and "\n" not in str(info.value)


def test_prediction_set_carries_class_names(tmp_path, files):
    gt = read_coco_ground_truth(files["gt_json"])
    coco = tmp_path / "pred.json"
    coco.write_text(json.dumps({"images": [{"id": 5, "file_name": "1.png"}],
                                "annotations": [{"image_id": 5, "category_id": 3, "bbox": [0, 0, 5, 5], "score": 0.5}],
                                "categories": [{"id": 3, "name": "car"}]}))
    pred = load_prediction_set(coco, gt)
    assert pred.categories == {3: "car"} and pred.categories_source == f"{coco} categories"
    assert [len(d) for d in pred.detections] == [1, 0] and pred.files == gt.files
    results = load_prediction_set(files["results_json"], gt)  # a results list names nothing
    assert results.categories == {} and results.categories_source == ""
    # YOLO: classes.txt, else data.yaml 'names' up to two folders up (Ultralytics' dataset/labels/val/)
    labels = tmp_path / "dataset" / "labels" / "val"
    labels.mkdir(parents=True)
    (labels / "1.txt").write_text("0 0.5 0.5 0.1 0.1 0.9\n")
    assert load_prediction_set(labels, gt).categories == {}
    (tmp_path / "dataset" / "data.yaml").write_text("path: .\nnames: {0: person, 1: car}\n")
    (labels.parent / "data.yaml").write_text("lr: 0.01\n")  # another tool's data.yaml: no names, passed over
    pred = load_prediction_set(labels, gt)
    assert pred.categories == {0: "person", 1: "car"} and pred.categories_source.endswith("dataset/data.yaml")
    train = labels.parent / "train"  # ground truth finds the same data.yaml
    train.mkdir()
    (train / "1.txt").write_text("1 0.5 0.5 0.1 0.1\n")
    truth = read_yolo_ground_truth(train, image_size=SIZE)
    assert truth.categories == {0: "person", 1: "car"} and truth.categories_source.endswith("dataset/data.yaml")
    (labels / "classes.txt").write_text("human\n")
    assert load_prediction_set(labels, gt).categories == {0: "human"}
    (labels / "classes.txt").unlink()
    (labels.parent / "data.yaml").write_text("names: [a\n")
    with pytest.raises(InputError, match=r"cannot read .*labels/data\.yaml"):
        load_prediction_set(labels, gt)
