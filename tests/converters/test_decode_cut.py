"""Cutting a YOLOv8 head before its DFL (converters/decode_cut.py): the cut model decoded by yolo_dfl gives the
full model's detections, bad inputs stop with one line, and the cut int8 TFLite runs whole on an Edge TPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecv.converters.decode_cut import BOX_TOLERANCE, cut_source
from edgecv.converters.sources import open_source
from edgecv.detection import DetectorSpec, load_spec
from edgecv.errors import ConfigError, ConversionError
from tests.converters import detector_heads as heads


@pytest.fixture(scope="module")
def yolo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cut")
    (folder / "yolo.yaml").write_text(heads.YOLO_DFL_SPEC)
    (folder / "ssd.yaml").write_text(heads.SSD_SPEC)
    return {"model": heads.yolo_dfl_like(folder / "yolo_dfl.onnx"), "spec": load_spec(folder / "yolo.yaml"),
            "ssd_spec": load_spec(folder / "ssd.yaml"), "folder": folder}


def _inputs(count: int, seed: int) -> list[np.ndarray]:
    return [heads.blobs(count, seed=seed).transpose(0, 3, 1, 2).astype(np.float32) / 255]


def test_the_cut_model_decoded_on_the_cpu_gives_the_full_models_detections(yolo):
    source = open_source(yolo["model"])
    inputs = _inputs(8, seed=0)
    reference = source.reference(inputs)
    cut, spec, cut_reference, record = cut_source(source, yolo["spec"], inputs=inputs, reference=reference)
    assert spec.decoder == "yolo_dfl" and spec.decoder_options.to_dict() == {
        "reg_max": 16, "strides": [8, 16, 32], "num_classes": 2, "min_score_thresh": None}
    assert (spec.score_threshold, spec.labels, spec.nms) == (yolo["spec"].score_threshold, yolo["spec"].labels, yolo["spec"].nms)
    assert [o.name for o in cut.outputs] == ["boxes", "scores"] and [o.shape for o in cut_reference] == [(8, 64, 21), (8, 2, 21)]
    assert record.removed_ops == 14 and record.max_box_error <= BOX_TOLERANCE
    found = 0
    for i in range(8):
        full = yolo["spec"].detect([reference[0][i : i + 1]], input_size=(32, 32))
        mine = spec.detect([o[i : i + 1] for o in cut_reference], input_size=(32, 32))
        np.testing.assert_allclose(mine.xyxy, full.xyxy, atol=1e-3)
        assert mine.class_id.tolist() == full.class_id.tolist()
        found += len(full)
    assert found >= 16  # the blobs are found: the comparison is not between two empty sets
    path = cut.path
    assert path.exists()
    del cut
    import gc

    gc.collect()
    assert not path.exists()  # the temporary cut goes with its source


@pytest.mark.parametrize(
    "model, spec, error, message",
    [
        ("yolo", None, ConfigError, r"--cut-decode \(cut_decode=True\) needs a detector spec \(--spec\)"),
        ("yolo", "ssd_spec", ConfigError, "no cut for decoder 'ssd_anchors'; decoders with a cut: yolo"),
        ("no_dfl", "spec", ConfigError, "expected one DFL .* found 0; is this an Ultralytics v8/v11 detection export"),
        ("corner_anchors", "spec", ConversionError,
         r"the cut model does not reproduce the full model's detections \(boxes differ by up to 16 px, scores by 0\); export without --cut-decode"),
    ],
)
def test_what_cannot_be_cut_stops_with_one_line(yolo, model, spec, error, message):
    folder = yolo["folder"]
    path = {"yolo": yolo["model"], "no_dfl": heads.yolo_like(folder / "no_dfl.onnx"),
            "corner_anchors": heads.yolo_dfl_like(folder / "corner.onnx", anchor_offset=0.0)}[model]
    source = open_source(path)
    inputs = [np.zeros((1, 3, 32, 32), np.float32)]
    with pytest.raises(error, match=message) as info:
        cut_source(source, yolo.get(spec) if spec else None, inputs=inputs, reference=source.reference(inputs))
    assert "\n" not in str(info.value)


def test_only_an_onnx_source_is_cut(shared_data, yolo):
    source = open_source(shared_data / "models" / "face_detection_short_range.tflite")
    with pytest.raises(ConfigError, match="--cut-decode cuts an ONNX graph; this source is tflite: export it to ONNX first"):
        cut_source(source, yolo["spec"], inputs=[], reference=[])


# Measured here: 0.50 points lost in ONNX int8 and 2.11 in full-integer TFLite (int8 I/O), the same as without the
# cut (the same int8 layers; there the DFL tail stays float), every TFLite op int8 and on the Edge TPU.
CUT_BUDGET = 3.0


@pytest.fixture(scope="module")
def cut_export(yolo):
    from edgecv.converters.export import ExportOptions, export
    from edgecv.converters.quant import QuantOptions
    from edgecv.manifest import Preprocess

    folder = yolo["folder"]
    np.save(folder / "calib.npy", heads.blobs(64, seed=1))
    np.save(folder / "eval.npy", heads.blobs(48, seed=2))
    options = ExportOptions(bench_runs=0, quant=QuantOptions(fallback=False, ladder=False, io_type="int8"))
    return {cut: export(yolo["model"], to="onnx,tflite", quant="none,int8" if cut else "int8", calib=folder / "calib.npy",
                        eval_data=folder / "eval.npy", detector=yolo["spec"], max_drop=CUT_BUDGET, out=folder / f"out-{cut}",
                        options=options, preprocess=Preprocess(mean=(0.0,), std=(255.0,)), cut_decode=cut)
            for cut in (True, False)}


def test_cut_artifacts_pass_and_their_manifests_name_the_cpu_decoder(cut_export, yolo):
    cut_export = cut_export[True]
    assert cut_export.ok, [(a.format, a.precision, a.reason) for a in cut_export.artifacts if a.status != "passed"]
    assert all(a.drop is None or a.drop <= CUT_BUDGET for a in cut_export.artifacts)
    assert cut_export.settings["decode_cut"]["decoder"] == "yolo_dfl"
    for artifact in cut_export.artifacts:
        manifest = json.loads(artifact.path.with_name(artifact.path.name + ".json").read_text())
        assert manifest["detector"]["decoder"] == "yolo_dfl"
        assert manifest["source"]["path"] == str(yolo["model"]) and manifest["source"]["decode_cut"]["removed_ops"] == 14


def test_the_cut_loses_nothing_against_an_int8_export_that_keeps_the_decoding_float(cut_export):
    drops = {cut: {a.format: a.drop for a in report.artifacts if a.precision == "int8"} for cut, report in cut_export.items()}
    assert drops[True].keys() == drops[False].keys() == {"onnx", "tflite"}
    for fmt, drop in drops[False].items():
        assert drops[True][fmt] == pytest.approx(drop, abs=0.05)


def test_a_cut_artifact_detects_through_its_manifest_as_the_full_model_does(cut_export, yolo):
    from edgecv.detection import Detector

    cut_export = cut_export[True]
    fp32 = next(a for a in cut_export.artifacts if a.format == "onnx" and a.precision in ("none", "fp32"))
    images = heads.blobs(6, seed=5)
    cut = Detector(fp32.path)
    full = Detector(yolo["model"], spec=DetectorSpec.from_dict(yolo["spec"].to_dict() | {"mean": [0], "std": [255]}))
    for image in images:
        a, b = cut.detect(image), full.detect(image)
        assert len(a) > 0
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-2)


def test_the_cut_full_integer_tflite_runs_every_op_on_the_edge_tpu(cut_export):
    """Uncut, the box decoding after the int8 layers stays float and runs on the CPU (see
    test_output_ranges.py); cut, every op is int8 and maps to the Edge TPU."""
    from edgecv.compat import check_artifact
    from edgecv.devices import load_profile
    from edgecv.model import load

    artifact = next(a for a in cut_export[True].artifacts if a.format == "tflite" and a.precision == "int8")
    model = load(artifact.path)
    assert model.inputs[0].dtype == "int8" and {t.dtype for t in model.outputs} == {"int8"}
    coral = check_artifact(artifact.path, load_profile("coral-edgetpu"))
    assert coral.ok and not coral.fallbacks, [f.message for f in coral.fallbacks]
    assert coral.accelerator_ops == coral.ops


def test_optimize_for_the_edge_tpu_cuts_the_decoding_so_the_chosen_model_runs_whole_on_it(yolo, cut_export):
    from edgecv.converters.optimize import optimize
    from edgecv.manifest import Preprocess

    folder = yolo["folder"]  # calib.npy and eval.npy: written by cut_export
    result = optimize(yolo["model"], device="coral-edgetpu", calib=folder / "calib.npy", eval_data=folder / "eval.npy",
                      max_drop=CUT_BUDGET, out=folder / "coral", detector=folder / "yolo.yaml",
                      preprocess=Preprocess(mean=(0.0,), std=(255.0,)))
    chosen = result.chosen
    manifest = json.loads(chosen.path.with_name(chosen.path.name + ".json").read_text())
    assert manifest["detector"]["decoder"] == "yolo_dfl"
    compat = chosen.compat
    assert compat["ok"] and not compat["fallbacks"] and compat["accelerator_ops"] == compat["ops"], compat


def test_the_cli_cuts_and_refuses_a_cut_without_a_spec_in_one_line(yolo, tmp_path):
    import subprocess
    import sys

    def edgecv(*args):
        return subprocess.run([sys.executable, "-m", "edgecv", "export", str(yolo["model"]), "--to", "onnx", "--cut-decode",
                               "--mean", "0", "--std", "255", *map(str, args)], capture_output=True, text=True, timeout=600)

    proc = edgecv("--out", tmp_path / "none")
    assert proc.returncode == 2 and not (tmp_path / "none").exists()
    assert proc.stderr.strip().splitlines() == [
        "edgecv: error: --cut-decode (cut_decode=True) needs a detector spec (--spec) saying how the outputs decode"]
    proc = edgecv("--spec", yolo["folder"] / "yolo.yaml", "--out", tmp_path / "out", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert report["settings"]["decode_cut"]["outputs"] == ["boxes", "scores"]


def test_a_real_ultralytics_export_made_by_others_is_cut_and_decodes_as_before(corpus):
    """NudeNet's YOLOv8n (320n.onnx, from its wheel: dynamic shapes, 18 classes, anchors computed in the graph):
    measured 101 ops removed, boxes within 6.1e-5 px of the full model's."""
    source = open_source(corpus / "nudenet" / "320n.onnx")
    spec = DetectorSpec.from_dict({"decoder": "yolo", "decoder_options": {"layout": "v8", "num_classes": 18},
                                   "score_threshold": 0.25})
    inputs = [np.random.default_rng(0).random((2, 3, 320, 320), dtype=np.float32)]
    _, cut_spec, cut_reference, record = cut_source(source, spec, inputs=inputs, reference=source.reference(inputs))
    assert cut_spec.decoder_options.to_dict() == {"reg_max": 16, "strides": [8, 16, 32], "num_classes": 18,
                                                   "min_score_thresh": None}
    assert [o.shape for o in cut_reference] == [(2, 64, 2100), (2, 18, 2100)]
    assert record.max_box_error <= BOX_TOLERANCE and record.removed_ops > 14
