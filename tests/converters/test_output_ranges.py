"""A detector's int8 output ranges from its spec (converters/output_ranges.py): the ranges measured on the
float model's outputs, where each format puts them, and int8 detectors built in-process that lose their
detections without them and keep them with them, in ONNX, OpenVINO and full-integer TFLite."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecv.converters.output_ranges import (
    LOGIT_LIMIT,
    GraphNode,
    OutputRange,
    OutputRanges,
    head_ranges,
    match_outputs,
    plan_output_ranges,
)
from edgecv.detection import load_spec
from edgecv.detection.decoders.base import OutputRole
from tests.converters import detector_heads as heads


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("specs")
    (folder / "yolo.yaml").write_text(heads.YOLO_SPEC)
    (folder / "ssd.yaml").write_text(heads.SSD_SPEC)
    return {"yolo": folder / "yolo.yaml", "ssd": folder / "ssd.yaml"}


def _ssd_outputs(logits: np.ndarray, boxes: np.ndarray | None = None) -> list[np.ndarray]:
    """One batch of ssd_like outputs: boxes [N, 64, 4] and logits [N, 64, 1]."""
    n = len(logits)
    return [boxes if boxes is not None else np.zeros((n, 64, 4), np.float32), logits.reshape(n, 64, 1).astype(np.float32)]


def test_logits_get_a_range_the_sigmoid_can_tell_apart(specs):
    logits = np.full((2, 64), -1200.0)
    logits[0, :3] = [0.5, 2.0, 4.0]
    plan = plan_output_ranges(load_spec(specs["ssd"]), ["boxes", "logits"], [_ssd_outputs(logits)])
    logit = next(r for r in plan.ranges if r.role.kind == "logit")
    assert (logit.low, logit.high) == (-LOGIT_LIMIT, LOGIT_LIMIT)
    assert logit.calibrated == (-1200.0, 4.0)
    narrow = plan_output_ranges(load_spec(specs["ssd"]), ["boxes", "logits"], [_ssd_outputs(np.full((1, 64), -3.0))])
    assert next(r for r in narrow.ranges if r.role.kind == "logit").low == -3.0  # no wider than calibration saw


@pytest.mark.parametrize(
    "scoring, expected",
    [
        # boxes of background anchors reach 600; the two anchors that score keep the range, a quarter wider
        (True, (10.0 - 2.5, 20.0 + 2.5)),
        # no anchor scores: the calibrated range is all there is
        (False, (-50.0, 600.0)),
    ],
)
def test_box_range_is_that_of_candidates_that_score(specs, scoring, expected):
    logits = np.full((1, 64), -9.0)
    boxes = np.zeros((1, 64, 4), np.float32)
    boxes[0, :, :] = np.linspace(-50, 600, 64)[:, None]
    if scoring:
        logits[0, 10:12] = 3.0
        boxes[0, 10], boxes[0, 11] = 10.0, 20.0
    plan = plan_output_ranges(load_spec(specs["ssd"]), ["boxes", "logits"], [_ssd_outputs(logits, boxes)])
    box = next(r for r in plan.ranges if r.role.kind == "box")
    assert (box.low, box.high) == pytest.approx(expected)


def test_a_decoder_without_roles_gives_no_ranges():
    spec = load_spec("ssd-mobilenet-v1-coco")  # TFLite_Detection_PostProcess: final detections
    outs = [np.zeros((1, 10, 4)), np.zeros((1, 10)), np.zeros((1, 10)), np.zeros((1,))]
    assert plan_output_ranges(spec, ["a", "b", "c", "d"], [outs]) is None


BOX = OutputRange("y", 0, OutputRole(0, 1, 0, 4, "box"), 0.0, 320.0, (0.0, 330.0), "")
SCORE = OutputRange("y", 0, OutputRole(0, 1, 4, 6, "score"), 0.0, 1.0, (0.0, 1.0), "")
MIXED = OutputRanges(("y",), ((1, 6, 9),), (BOX, SCORE))


@pytest.mark.parametrize(
    "nodes, shapes, ranges, keep, note",
    [
        # boxes and scores joined on the value axis: the join stays float, each side gets its own range
        ({"y": GraphNode("cat", "concat", ("b", "s"), axis=1)}, {"y": (1, 6, 9), "b": (1, 4, 9), "s": (1, 2, 9)},
         {"b": (0.0, 320.0), "s": (0.0, 1.0)}, ["cat"], None),
        # a transpose before the output: the value axis is followed through it
        ({"y": GraphNode("t", "transpose", ("yt",), perm=(0, 2, 1)), "yt": GraphNode("cat", "concat", ("b", "s"), axis=2)},
         {"y": (1, 6, 9), "yt": (1, 9, 6), "b": (1, 9, 4), "s": (1, 9, 2)}, {"b": (0.0, 320.0), "s": (0.0, 1.0)}, ["cat"], None),
        # box decoding in the graph (an anchor grid added) stays float, back to the layer that predicts offsets
        ({"y": GraphNode("cat", "concat", ("b", "s"), axis=1), "b": GraphNode("add", "elementwise", ("off",)),
          "off": GraphNode("conv", "compute", ("x",)), "s": GraphNode("sig", "compute", ("x",))},
         {"y": (1, 6, 9), "b": (1, 4, 9), "s": (1, 2, 9)}, {"b": (0.0, 320.0), "s": (0.0, 1.0)}, ["cat", "add"], None),
        # an expectation over distance bins (YOLOv8's DFL: softmax, reshape, fixed conv) stays float with the
        # decoding after it; the layer that predicts the bins does not
        ({"y": GraphNode("cat", "concat", ("b", "s"), axis=1), "b": GraphNode("mul", "elementwise", ("d",)),
          "d": GraphNode("dfl", "compute", ("p",)), "p": GraphNode("reshape", "shape", ("sm",)),
          "sm": GraphNode("softmax", "softmax", ("bins",)), "bins": GraphNode("conv", "compute", ("x",)),
          "s": GraphNode("sig", "compute", ("x",))},
         {"y": (1, 6, 9), "b": (1, 4, 9), "s": (1, 2, 9)}, {"b": (0.0, 320.0), "s": (0.0, 1.0)},
         ["cat", "mul", "dfl", "softmax"], None),
        # centre and size joined before the stride multiplies them (YOLOv8's dist2bbox): the join between two
        # float ops stays float too, not only the arithmetic
        ({"y": GraphNode("cat", "concat", ("b", "s"), axis=1), "b": GraphNode("mul", "elementwise", ("j",)),
          "j": GraphNode("join", "concat", ("c", "w"), axis=1), "c": GraphNode("div", "elementwise", ("d",)),
          "w": GraphNode("sub", "elementwise", ("d",)), "d": GraphNode("conv", "compute", ("x",)),
          "s": GraphNode("sig", "compute", ("x",))},
         {"y": (1, 6, 9), "b": (1, 4, 9), "s": (1, 2, 9), "j": (1, 4, 9)}, {"b": (0.0, 320.0), "s": (0.0, 1.0)},
         ["cat", "mul", "join", "sub", "div"], None),
        # a conv after a softmax in the score path is not box decoding
        ({"y": GraphNode("cat", "concat", ("b", "s"), axis=1), "b": GraphNode("conv", "compute", ("x",)),
          "s": GraphNode("mix", "compute", ("sm",)), "sm": GraphNode("softmax", "softmax", ("x",))},
         {"y": (1, 6, 9), "b": (1, 4, 9), "s": (1, 2, 9)}, {"b": (0.0, 320.0), "s": (0.0, 1.0)}, ["cat"], None),
        # one layer makes boxes and scores: nothing can split them, and the plan says so
        ({"y": GraphNode("conv", "compute", ("x",))}, {"y": (1, 6, 9)}, {}, [], "cannot be split"),
        # joined on another axis: not a join of boxes and scores
        ({"y": GraphNode("cat", "concat", ("b", "s"), axis=2)}, {"y": (1, 6, 9), "b": (1, 6, 4), "s": (1, 6, 5)},
         {}, [], "cannot be split"),
    ],
)
def test_head_ranges_follow_the_graph(nodes, shapes, ranges, keep, note):
    plan = head_ranges(MIXED, ["y"], nodes, shapes)
    assert plan.ranges == ranges
    assert plan.keep_float == keep
    assert (note is None and not plan.notes) or (note is not None and note in plan.notes[0])


def test_a_uniform_output_gives_its_range_to_every_tensor_it_is_made_of():
    logit = OutputRange("l", 0, OutputRole(0, 2, 0, 1, "logit"), -8.0, 8.0, (-1200.0, 4.0), "")
    nodes = {"l": GraphNode("cat", "concat", ("r1", "r2"), axis=1), "r1": GraphNode("reshape1", "shape", ("c1",)),
             "r2": GraphNode("reshape2", "shape", ("c2",)), "c1": GraphNode("conv1", "compute", ("x",))}
    plan = head_ranges(OutputRanges(("l",), ((1, 9, 1),), (logit,)), ["l"], nodes, {})
    assert plan.ranges == {t: (-8.0, 8.0) for t in ("l", "r1", "r2", "c1", "c2")}
    assert plan.keep_float == []


@pytest.mark.parametrize(
    "names, shapes, expected",
    [
        (["scores", "boxes"], [(1, 9, 1), (1, 9, 4)], ["boxes", "scores"]),  # by name
        (["Identity_1", "Identity"], [(1, 9, 1), (1, 9, 4)], ["Identity", "Identity_1"]),  # by shape
        (["a", "b"], [(1, 9, 4), (1, 9, 4)], None),  # neither
    ],
)
def test_outputs_are_matched_by_name_then_shape(names, shapes, expected):
    plan = OutputRanges(("boxes", "scores"), ((1, 9, 4), (1, 9, 1)), ())
    assert match_outputs(plan, names, shapes) == expected


# Points of detection agreement lost (F1 plus score change) by each in-process detector, per format, with
# the spec's ranges (measured: yolo_like 0.17 / 0.84 / 0.20, ssd_like 0.08 / 0.39 / 0.11) and without them
# (measured: yolo_like 100 / 0.9 / 100, ssd_like 66 / 68 / 76). OpenVINO leaves the heads' outputs float.
WITH_RANGES_MAX = 1.5
WITHOUT_RANGES_MIN = 5.0


@pytest.fixture(scope="module")
def head_exports(tmp_path_factory, specs):
    from edgecv.converters.export import ExportOptions, export
    from edgecv.converters.quant import QuantOptions

    folder = tmp_path_factory.mktemp("heads")
    calib, evaluation = folder / "calib.npy", folder / "eval.npy"
    np.save(calib, heads.blobs(64, seed=1))
    np.save(evaluation, heads.blobs(64, seed=2))
    reports = {}
    for name, make in (("yolo", heads.yolo_like), ("ssd", heads.ssd_like)):
        model = make(folder / f"{name}_like.onnx")
        for ranges in (True, False):
            options = ExportOptions(bench_runs=0, quant=QuantOptions(fallback=False, io_type="int8", detector_ranges=ranges))
            reports[name, ranges] = export(model, to="onnx,openvino,tflite", quant="int8", calib=calib, eval_data=evaluation,
                                           detector=str(specs[name]), max_drop=5.0, out=folder / f"{name}-{ranges}",
                                           options=options, preprocess=_pixels())
    return reports


def _pixels():
    from edgecv.manifest import Preprocess

    return Preprocess(mean=(0.0,), std=(255.0,))


@pytest.mark.parametrize("name", ["yolo", "ssd"])
@pytest.mark.parametrize("fmt", ["onnx", "openvino", "tflite"])
def test_int8_detectors_keep_their_detections_with_the_specs_ranges(head_exports, name, fmt):
    artifact = next(a for a in head_exports[name, True].artifacts if a.format == fmt)
    assert artifact.status == "passed", artifact.reason
    assert artifact.drop <= WITH_RANGES_MAX


@pytest.mark.parametrize("name, fmt", [("yolo", "onnx"), ("yolo", "tflite"), ("ssd", "tflite")])
def test_without_the_ranges_one_scale_loses_them(head_exports, name, fmt):
    artifact = next(a for a in head_exports[name, False].artifacts if a.format == fmt)
    assert artifact.status == "failed"
    assert artifact.drop >= WITHOUT_RANGES_MIN


def test_without_the_ranges_the_ssd_onnx_keeps_its_detections_with_noisy_scores(head_exports):
    """ONNX Runtime's one scale keeps every detection of the SSD-like head, ranked as the float model ranks them
    (the gate passes it), but its scores move 20x more than with the spec's ranges."""
    plain, ranged = (next(a for a in head_exports["ssd", r].artifacts if a.format == "onnx") for r in (False, True))
    assert plain.scores.detection_f1 == 1.0 and plain.scores.map50_float == 1.0
    assert plain.scores.score_error >= 20 * ranged.scores.score_error


def test_full_integer_tflite_keeps_integer_input_and_a_float_output_only_where_boxes_meet_scores(head_exports):
    from edgecv.model import load

    dtypes = {}
    for name in ("yolo", "ssd"):
        artifact = next(a for a in head_exports[name, True].artifacts if a.format == "tflite")
        model = load(artifact.path)
        dtypes[name] = (model.inputs[0].dtype, sorted({t.dtype for t in model.outputs}))
    assert dtypes == {"yolo": ("int8", ["float32"]), "ssd": ("int8", ["int8"])}


def test_the_ranges_are_in_the_report_and_every_int8_manifest(head_exports):
    report = head_exports["ssd", True]
    ranges = report.settings["output_ranges"]["outputs"]
    assert [(r["output"], r["index"], r["kind"], r["range"]) for r in ranges] == [
        ("boxes", 0, "box", ranges[0]["range"]), ("logits", 1, "logit", [-LOGIT_LIMIT, LOGIT_LIMIT])]
    assert ranges[1]["calibrated"][0] < -900  # the background logits calibration saw
    for artifact in report.artifacts:
        manifest = json.loads(artifact.path.with_name(artifact.path.name + ".json").read_text())
        assert manifest["quantization"]["output_ranges"]["outputs"] == ranges
    assert "logits logit [-8, 8] (calibration saw [-99" in (report.out / "report.md").read_text()
    assert head_exports["ssd", False].settings["output_ranges"] is None


# Measured here (portraits 0..63 to calibrate, 100..139 to judge; no ladder, no fallback): 1.68 points lost
# with uint8 I/O (1.46 float I/O), all 76 ops on the Edge TPU; without the spec's ranges 5.68 (5.41).
BLAZEFACE_BUDGET = 5.0


def test_real_blazeface_full_integer_tflite_runs_whole_on_the_edge_tpu(shared_data, tmp_path):
    """MediaPipe's BlazeFace (a float .tflite made by others) to full-integer TFLite with uint8 I/O, as the
    Edge TPU takes it, with no float fallback and no PTQ ladder: its faces stay within the 5-point budget,
    and every op runs on the Edge TPU by Coral's op list."""
    from edgecv.compat import check_artifact
    from edgecv.converters.export import ExportOptions, export
    from edgecv.converters.quant import QuantOptions
    from edgecv.manifest import Preprocess
    from edgecv.model import load
    from edgecv.devices import load_profile

    pytest.importorskip("cv2")
    src = shared_data / "models" / "face_detection_short_range.tflite"
    np.save(tmp_path / "calib.npy", heads.portrait_closeups(64))
    np.save(tmp_path / "eval.npy", heads.portrait_closeups(40, start=100))
    options = ExportOptions(bench_runs=0, quant=QuantOptions(fallback=False, ladder=False, io_type="uint8"))
    report = export(src, to="tflite", quant="int8", calib=tmp_path / "calib.npy", eval_data=tmp_path / "eval.npy",
                    detector="blazeface-short-range", max_drop=BLAZEFACE_BUDGET, out=tmp_path / "out", options=options,
                    preprocess=Preprocess(mean=(127.5,), std=(127.5,)))
    artifact = report.artifacts[0]
    assert artifact.status == "passed", artifact.reason
    assert artifact.drop <= BLAZEFACE_BUDGET
    model = load(artifact.path)
    assert model.inputs[0].dtype == "uint8" and {t.dtype for t in model.outputs} == {"uint8"}
    coral = check_artifact(artifact.path, load_profile("coral-edgetpu"))
    assert coral.ok and not coral.fallbacks, [f.message for f in coral.fallbacks]
    assert coral.accelerator_ops == coral.ops


def test_a_float_head_after_an_int8_body_runs_on_the_cpu_of_an_edge_tpu(head_exports):
    """The YOLO-like full-integer TFLite keeps its box+score join in float: the Edge TPU compiler leaves such
    ops to the CPU, so devices check reports them as fallbacks after the int8 part, not as blockers."""
    from edgecv.compat import check_artifact
    from edgecv.devices import load_profile

    artifact = next(a for a in head_exports["yolo", True].artifacts if a.format == "tflite")
    report = check_artifact(artifact.path, load_profile("coral-edgetpu"))
    assert report.ok, [f.message for f in report.blockers]
    floats = [f for f in report.fallbacks if f.kind == "float"]
    assert floats and any(f.op == "CONCATENATION" for f in floats)
    assert 0 < report.accelerator_ops < report.ops
    assert "run on the CPU (one partition)" in floats[0].message or "runs on the CPU" in floats[0].message
