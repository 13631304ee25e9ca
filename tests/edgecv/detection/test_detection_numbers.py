"""Numeric edge cases of Detections and of every conversion into it: floats checked after conversion to
float32, ids range-checked before conversion to int64 (nothing wraps), ragged input refused in one line, and a
seeded fuzz of garbage arrays that ends in an edgecv error or a valid, finite Detections."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecv.detection import Detections
from edgecv.detection.decoders.tflite_postprocess import TflitePostprocessDecoder
from edgecv.detection.detections import check_ids
from edgecv.detection.ground_truth import read_coco_ground_truth, read_coco_predictions, read_yolo_ground_truth
from edgecv.errors import EdgeCVError, InputError

BOX = [[0.0, 0.0, 10.0, 10.0]]
U64_MAX = np.array([2**64 - 1], np.uint64)

# name, Detections keyword arguments, expected: None (valid) or a regex of the one-line InputError
CONSTRUCTION = [
    ("float64 past float32's max", dict(xyxy=[[0, 0, 1e39, 1]]),
     r"Detections\.xyxy: expected finite values in float32 \(\|v\| <= 3\.4e\+38\), got 1e\+39 at index \[0, 2\]"),
    ("float32's max itself", dict(xyxy=[[0, 0, 3.4028234e38, 1]]), None),
    ("-1e300 box", dict(xyxy=[[-1e300, 0, 1, 1]]), r"xyxy: expected finite values .*got -1e\+300 at index \[0, 0\]"),
    ("NaN box", dict(xyxy=[[0, 0, 1, 1], [0, np.nan, 1, 1]]), r"xyxy: expected finite values .*got nan at index \[1, 1\]"),
    ("longdouble inf", dict(xyxy=np.array([[0, 0, 1, 1]], np.longdouble) * np.longdouble("1e4000")),
     r"xyxy: expected finite values"),
    ("score 1e39", dict(confidence=[1e39]), r"Detections\.confidence: expected finite values .*got 1e\+39 at index 0"),
    ("score inf", dict(confidence=[np.inf]), r"confidence: expected finite values .*got inf at index 0"),
    ("negative score: a logit, kept", dict(confidence=[-3.5]), None),
    ("score above 1: another scale, kept", dict(confidence=[97.0]), None),
    ("inverted box: kept as given", dict(xyxy=[[10, 10, 0, 0]]), None),
    ("ragged boxes", dict(xyxy=[[0, 0, 1, 1], [0, 0, 1]], confidence=[0.5, 0.5], class_id=[0, 0]),
     r"Detections\.xyxy: expected shape \[N,4\], got a ragged sequence \(items of lengths 4, 3\)"),
    ("ragged scores", dict(confidence=[[0.5], 0.5]), r"Detections\.confidence: expected shape \[N\], got a ragged"),
    ("nested one level too deep", dict(xyxy=[[[0, 0, 1, 1]]]), r"xyxy: expected shape \[N,4\], got \[1,1,4\]"),
    ("complex boxes", dict(xyxy=np.array(BOX, complex)), r"xyxy: expected a real-number array, got dtype complex128"),
    ("boxes of None", dict(xyxy=[[None] * 4]), r"xyxy: expected a real-number array, got dtype object"),
    ("uint64 class 2**64-1", dict(class_id=U64_MAX),
     r"Detections\.class_id: expected whole numbers from -1 to 2\*\*63-1, got 18446744073709551615 at index 0"),
    ("uint64 class 2**63-1", dict(class_id=np.array([2**63 - 1], np.uint64)), None),
    ("class 1e20 (float)", dict(class_id=[1e20]), r"class_id: expected an integer array, got dtype float64"),
    ("class 10**20 (int)", dict(class_id=[10**20]), r"class_id: expected an integer array, got dtype object"),
    ("class 1.5", dict(class_id=[1.5]), r"class_id: expected an integer array, got dtype float64"),
    ("class -1: no class", dict(class_id=[-1]), None),
    ("class -2", dict(class_id=[-2]), r"class_id: expected whole numbers from -1 to 2\*\*63-1, got -2 at index 0"),
    ("class bool", dict(class_id=[True]), r"class_id: expected an integer array, got dtype bool"),
    ("track id -1", dict(tracker_id=[-1]), r"Detections\.tracker_id: expected whole numbers from 0 to 2\*\*63-1, got -1"),
    ("track id 0", dict(tracker_id=[0]), None),
    ("track id uint64 max", dict(tracker_id=U64_MAX), r"tracker_id: expected whole numbers from 0 .*18446744073709551615"),
    ("ragged data", dict(data={"kp": [[1, 2], [3]]}), r"Detections\.data\['kp'\]: expected shape \[1,\.\.\.\], got a ragged"),
    ("NaN keypoint: data is kept as given", dict(data={"keypoints": np.full((1, 2, 2), np.nan)}), None),
]


@pytest.mark.parametrize("kwargs, expected", [c[1:] for c in CONSTRUCTION], ids=[c[0] for c in CONSTRUCTION])
def test_construction_numbers(kwargs, expected):
    args = dict(xyxy=BOX, confidence=[0.5], class_id=[0])
    args.update(kwargs)
    if expected is None:
        det = Detections(**args)
        assert np.isfinite(det.xyxy).all() and np.isfinite(det.confidence).all()
        np.testing.assert_array_equal(det.xyxy, np.asarray(args["xyxy"], np.float32))  # kept as given
        np.testing.assert_array_equal(det.confidence, np.asarray(args["confidence"], np.float32))
        assert det.class_id.tolist() == np.asarray(args["class_id"]).astype(np.int64).tolist()
        return
    with pytest.raises(InputError, match=expected) as info:
        Detections(**args)
    assert "\n" not in str(info.value)


# values, low, expected: the int64 list or a regex of the InputError
IDS = [
    (np.array([3.0, -1.0, 0.0]), -1, [3, -1, 0]),
    (np.array([2.0**62]), -1, [2**62]),
    (np.array([2.0**63]), -1, r"got 9\.223372036854776e\+18 at index 0"),
    (np.array([1e20]), -1, r"ids: expected whole numbers from -1 to 2\*\*63-1, got 1e\+20 at index 0"),
    (np.array([1.0, 1.5]), -1, r"got 1\.5 at index 1"),
    (np.array([np.nan]), -1, r"got nan at index 0"),
    (np.array([-np.inf]), -1, r"got -inf at index 0"),
    (np.array([-1]), 0, r"from 0 to 2\*\*63-1, got -1 at index 0"),
    (U64_MAX, 0, r"got 18446744073709551615"),
    (np.array([2**63 - 1], np.uint64), 0, [2**63 - 1]),
    (np.array(["1"]), 0, r"ids: expected an integer array, got dtype <U1"),
    ([[1, 2], [3]], 0, r"ids: expected shape \[N\], got a ragged sequence"),
]


@pytest.mark.parametrize("values, low, expected", IDS)
def test_check_ids_never_wraps(values, low, expected):
    if isinstance(expected, list):
        out = check_ids(values, what="ids", low=low)
        assert out.dtype == np.int64 and out.tolist() == expected
        return
    with pytest.raises(InputError, match=expected):
        check_ids(values, what="ids", low=low)


# category_id of a COCO item -> Detections.from_coco's class id, or a regex of the InputError
COCO_CLASSES = [
    (3, 3),
    (3.0, 3),
    (-1, -1),
    (2**63 - 1, 2**63 - 1),
    (1.5, r"from_coco item 0: expected an integer category_id from -1 to 2\*\*63-1, got 1\.5"),
    (1e20, r"got 1e\+20"),
    (10**20, r"got 100000000000000000000"),
    (2**64 - 1, r"got 18446744073709551615"),
    (-2, r"got -2"),
    (True, r"got True"),
    ("3", r"got '3'"),
]


@pytest.mark.parametrize("category, expected", COCO_CLASSES)
def test_from_coco_class_ids(category, expected):
    items = [{"bbox": [1, 2, 3, 4], "category_id": category, "score": 0.5}]
    if isinstance(expected, int):
        assert Detections.from_coco(items).class_id.tolist() == [expected]
        return
    with pytest.raises(InputError, match=expected) as info:
        Detections.from_coco(items)
    assert "\n" not in str(info.value)


def test_from_coco_box_past_float32_is_refused():
    with pytest.raises(InputError, match=r"xyxy: expected finite values .*got 1e\+39 at index \[0, 0\]"):
        Detections.from_coco([{"bbox": [1e39, 0, 1e39, 4], "category_id": 1}])


def _tflite_outputs(classes):
    boxes = np.array([[[0.1, 0.1, 0.5, 0.5]] * len(classes)], np.float32)
    return [boxes, np.array([classes], np.float32), np.array([[0.9] * len(classes)], np.float32),
            np.array([len(classes)], np.float32)]


# a damaged SSD's classes output -> class ids, or a regex of the InputError (before: rint + astype wrapped)
TFLITE_CLASSES = [
    ([2.0, 0.0], 1, [3, 1]),
    ([np.nan, 1.0], 0, r"tflite_postprocess classes \(\+ label_offset 0\): expected whole numbers from -1 .*got nan at index 0"),
    ([1.0, 1e20], 0, r"got 1\.0000000200408773e\+20 at index 1"),
    ([0.0, -np.inf], 1, r"got -inf at index 1"),
    ([0.0], -2, r"label_offset -2\): expected whole numbers from -1 to 2\*\*63-1, got -2\.0"),
]


@pytest.mark.parametrize("classes, offset, expected", TFLITE_CLASSES)
def test_tflite_postprocess_class_ids_never_wrap(classes, offset, expected):
    decoder = TflitePostprocessDecoder(label_offset=offset)
    outputs = _tflite_outputs(classes)  # classes first, as the op orders them (the scores are no class ids)
    if isinstance(expected, list):
        assert decoder.decode(outputs, input_size=(100, 100)).class_id.tolist() == expected
        return
    with pytest.raises(InputError, match=expected):
        decoder.decode(outputs, input_size=(100, 100))


# --- ground-truth and prediction files ------------------------------------------------------------------------

IMAGES = [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}]


def _coco(tmp_path, annotations):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"images": IMAGES, "annotations": annotations, "categories": []}))
    return path


# annotation -> None (read) or a regex of the one-line InputError naming the file and item
COCO_GT = [
    ({"bbox": [1, 2, 10, 20]}, None),
    ({"bbox": [-30, 2, 10, 20]}, None),  # partly outside the image, as MOT15's TUD-Campus gt has
    ({"bbox": [1, 2, 1e38, 20]}, r"gt\.json annotations\[0\]: expected box corners within \+-1e\+06 pixels, got 1e\+38"),
    ({"bbox": [-2e6, 2, 10, 20]}, r"annotations\[0\]: expected box corners within \+-1e\+06 pixels, got -2e\+06"),
    ({"bbox": [1, 2, 10, 20], "category_id": 1e20}, r"annotations\[0\]: expected an integer 'category_id', got 1e\+20"),
    ({"bbox": [1, 2, 10, 20], "category_id": 2**64 - 1}, r"got 18446744073709551615 \(a whole number from -1"),
    ({"bbox": [1, 2, 10, 20], "category_id": 1.5}, r"expected an integer 'category_id', got 1\.5"),
    ({"bbox": [1, 2, 10, 20], "category_id": -3}, r"expected an integer 'category_id', got -3"),
]


@pytest.mark.parametrize("annotation, expected", COCO_GT)
def test_coco_ground_truth_numbers(tmp_path, annotation, expected):
    ann = {"image_id": 1, "category_id": 1, "iscrowd": 0, **annotation}
    path = _coco(tmp_path, [ann])
    if expected is None:
        gt = read_coco_ground_truth(path)
        x, y, w, h = annotation["bbox"]
        assert gt.detections[0].xyxy.tolist() == [[x, y, x + w, y + h]]
        return
    with pytest.raises(InputError, match=expected) as info:
        read_coco_ground_truth(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "score, expected",
    [(0.5, None), (-4.2, None), (97.0, None), (1e39, r"item 0: expected 'score' to be a finite number, got 1e\+39 \(float32")],
)
def test_coco_prediction_scores(tmp_path, score, expected):
    gt = read_coco_ground_truth(_coco(tmp_path, [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 20]}]))
    path = tmp_path / "pred.json"
    path.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 20], "score": score}]))
    if expected is None:
        assert read_coco_predictions(path, gt)[0].confidence.tolist() == [pytest.approx(score, rel=1e-6)]
        return
    with pytest.raises(InputError, match=expected):
        read_coco_predictions(path, gt)


# YOLO label line -> None (read) or a regex of the InputError naming file:line
YOLO = [
    ("0 0.5 0.5 0.25 0.5", None),
    ("1e20 0.5 0.5 0.25 0.5", r"a\.txt:1: expected a class id \(an integer >= 0\) first, got '1e20'"),
    ("1.5 0.5 0.5 0.25 0.5", r"a\.txt:1: expected a class id"),
    ("0 0.5 0.5 1e30 0.5", r"a\.txt:1: expected box corners within \+-1e\+06 pixels, got -3\.2e\+32"),
    ("0 nan 0.5 0.25 0.5", r"a\.txt:1: expected finite numbers"),
    ("0 0.5 0.5 -0.25 0.5", r"a\.txt:1: expected a width and height >= 0"),
]


@pytest.mark.parametrize("line, expected", YOLO)
def test_yolo_ground_truth_numbers(tmp_path, line, expected):
    (tmp_path / "a.txt").write_text(line + "\n")
    if expected is None:
        gt = read_yolo_ground_truth(tmp_path, image_size=(640, 480))
        assert gt.detections[0].xyxy.tolist() == [[240.0, 120.0, 400.0, 360.0]]
        return
    with pytest.raises(InputError, match=expected) as info:
        read_yolo_ground_truth(tmp_path, image_size=(640, 480))
    assert "\n" not in str(info.value)


# --- seeded fuzz: garbage in, an edgecv error or a valid finite Detections out ----------------------------------


def garbage(rng: np.random.Generator, n: int):
    """One random, often invalid, value for a Detections field of ``n`` rows (or of some other length)."""
    kind = rng.integers(12)
    rows = int(rng.choice([n, n, n, max(n - 1, 0), n + 1]))
    specials = np.array([np.nan, np.inf, -np.inf, 1e39, -1e300, 3.4e38, -0.0, 1e-45, 2.0**63, -1.0, 1.5])
    if kind == 0:  # a plain valid float array
        return rng.uniform(-100, 100, size=(rows, 4))
    if kind == 1:  # floats with special values sprinkled in
        a = rng.uniform(-1e6, 1e6, size=(rows, 4))
        mask = rng.random(a.shape) < 0.3
        a[mask] = rng.choice(specials, size=int(mask.sum()))
        return a
    if kind == 2:  # integers of every width and sign
        dtype = [np.int8, np.uint8, np.int32, np.uint32, np.int64, np.uint64][int(rng.integers(6))]
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=(rows, 4), dtype=dtype, endpoint=True)
    if kind == 3:  # a ragged nested list
        return [[1.0] * int(rng.integers(1, 6)) for _ in range(max(rows, 2))]
    if kind == 4:  # the wrong rank
        return rng.normal(size=tuple(rng.integers(0, 4, size=int(rng.integers(0, 4)))))
    if kind == 5:  # strings, objects, bools, complex
        made = [np.array([["a"] * 4] * rows), np.full((rows, 4), None, object), np.ones((rows, 4), bool),
                np.ones((rows, 4), complex)]
        return made[int(rng.integers(4))]
    if kind == 6:  # float16 and longdouble
        dtype = [np.float16, np.longdouble][int(rng.integers(2))]
        return rng.normal(size=(rows, 4)).astype(dtype) * dtype("1e4000" if rng.random() < 0.5 else "1")
    if kind == 7:  # python lists with huge ints
        return [[int(rng.integers(0, 10)), 2**70, 0, 1]] * rows
    if kind == 8:
        return None
    if kind == 9:
        return rng.uniform(-1, 1, size=rows)  # a flat array (fits scores or ids of n rows)
    if kind == 10:
        return rng.choice(specials, size=rows)
    return rng.integers(-5, 10**6, size=rows)


def field_value(rng: np.random.Generator, field: str, n: int):
    """A valid value of ``field`` for ``n`` rows 60% of the time, else garbage (so that whole cases pass too)."""
    if rng.random() >= 0.6:
        return garbage(rng, n)
    if field == "xyxy":
        return rng.uniform(-1e3, 1e3, size=(n, 4)).astype(rng.choice(["float64", "float32", "int32"]))
    if field == "confidence":
        return rng.uniform(-5, 5, size=n)
    low = -1 if field == "class_id" else 0
    return rng.integers(low, 100, size=n).astype(rng.choice(["int64", "int8", "uint16"]) if low == 0 else "int64")


FUZZ_CASES = 400


def test_fuzz_detections_construction_never_raises_anything_but_edgecv_errors():
    rng = np.random.default_rng(16)
    outcomes = {"valid": 0, "refused": 0}
    for case in range(FUZZ_CASES):
        n = int(rng.integers(0, 5))
        args = {name: field_value(rng, name, n) for name in ("xyxy", "confidence", "class_id")}
        if rng.random() < 0.3:
            args["tracker_id"] = field_value(rng, "tracker_id", n)
        try:
            det = Detections(**args)
        except EdgeCVError as exc:
            assert "\n" not in str(exc), (case, str(exc))
            outcomes["refused"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"case {case}: {type(exc).__name__}: {exc} from {args!r:.300}")
        assert det.xyxy.dtype == np.float32 and np.isfinite(det.xyxy).all(), case
        assert det.confidence.dtype == np.float32 and np.isfinite(det.confidence).all(), case
        assert det.class_id.dtype == np.int64 and (det.class_id >= -1).all(), case
        assert det.tracker_id is None or (det.tracker_id >= 0).all(), case
        # no id wrapped: every stored id equals the value given
        assert det.class_id.tolist() == [int(v) for v in np.asarray(args["class_id"]).ravel().tolist()], case
        outcomes["valid"] += 1
    # the generator makes both kinds in numbers (a fuzz that only ever refuses tests nothing)
    assert outcomes["valid"] >= 20 and outcomes["refused"] >= 200, outcomes
