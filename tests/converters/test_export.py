"""Float export to TFLite, ONNX and OpenVINO from every source kind, checked against the source."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import edgecv
from edgecv.converters.export import FAILED_DIR, ExportOptions, export
from edgecv.converters.targets import TARGETS, ExportTarget
from edgecv.errors import ConfigError, ModelFileError, OutputError
from edgecv.fileio import sha256_of
from tests.conftest import build_tiny_keras, tiny_cnn_reference, tiny_cnn_weights

BASELINES = json.loads((Path(__file__).parents[1] / "baselines.json").read_text())


def converting_with(name: str, convert) -> ExportTarget:
    """The ``name`` target with its conversion replaced by ``convert`` (a function of convert's arguments)."""

    class Replaced(type(TARGETS[name])):
        def convert(self, source, precision, out_file, work, quant=None, *, static_batch=False, input_shape=None):
            convert(source, precision, out_file, work, quant, static_batch=static_batch, input_shape=input_shape)

    return Replaced(TARGETS[name].format)


def test_keras_exports_to_all_formats_and_precisions(exported, tiny_keras_path):
    assert exported.ok
    got = {(a.format, a.precision) for a in exported.artifacts}
    assert got == {(f, p) for f in ("tflite", "onnx", "openvino") for p in ("fp32", "fp16")}
    for a in exported.artifacts:
        assert a.path.is_file() and a.path.parent == exported.out
        assert (a.max_abs_diff < 1e-5) if a.precision == "fp32" else (a.max_abs_diff < 1e-2)
        assert a.top1_agreement == 1.0
    assert not list(exported.out.glob(".edgecv-*")), "work folders left behind"


def test_every_artifact_has_a_complete_manifest(exported, tiny_keras_path):
    for a in exported.artifacts:
        m = json.loads(Path(f"{a.path}.json").read_text())
        assert m["format"] == a.format and m["precision"] == a.precision and m["artifact"] == a.path.name
        assert m["inputs"][0]["shape"] == [None, 16, 16, 3] and m["inputs"][0]["layout"] == "NHWC"
        assert m["preprocess"] == {"layout": "NHWC", "color": "RGB", "mean": [0.0], "std": [255.0]}
        assert m["labels"] == ["circle", "square", "triangle", "cross"]
        assert m["source"]["sha256"] == sha256_of(tiny_keras_path) and m["source"]["kind"] == "keras"
        assert {"edgecv", "tensorflow", "onnx", "openvino"} <= set(m["toolchain"])
        v = m["validation"]
        assert v["status"] == "passed" and v["samples"] == 8 and v["outputs"][0]["max_abs_diff"] >= 0


def test_onnx_source_to_tflite_goes_nhwc_and_matches_numpy(tiny_onnx, tmp_path):
    report = export(tiny_onnx, to="tflite,openvino", quant="fp32", out=tmp_path)
    assert report.ok, [a.reason for a in report.artifacts]
    tfl = edgecv.load(tmp_path / "tiny.fp32.tflite")
    assert tfl.inputs[0].shape[1:] == (8, 8, 3) and tfl.inputs[0].layout == "NHWC"
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(
        tfl.run(x.transpose(0, 2, 3, 1).copy())[0], tiny_cnn_reference(x, tiny_cnn_weights()), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("kind", ["saved_model", "h5"])
def test_saved_model_and_h5_sources(tmp_path, kind):
    model = build_tiny_keras(seed=1)
    if kind == "saved_model":
        src = tmp_path / "sm"
        model.export(str(src), format="tf_saved_model", verbose=False)
    else:
        src = tmp_path / "tiny.h5"
        model.save(src)
    report = export(src, to="onnx,tflite,openvino", quant="fp32", out=tmp_path / "out")
    assert report.ok, [a.reason for a in report.artifacts]


def test_float_tflite_source_exports_to_onnx_and_openvino(exported, tmp_path):
    src = next(a.path for a in exported.artifacts if (a.format, a.precision) == ("tflite", "fp32"))
    report = export(src, to="onnx,openvino", out=tmp_path)
    assert report.ok and len(report.artifacts) == 4


def test_tflite_source_to_tflite_is_a_failed_row_not_a_crash(exported, tmp_path):
    src = next(a.path for a in exported.artifacts if (a.format, a.precision) == ("tflite", "fp32"))
    report = export(src, to="tflite", quant="fp32", out=tmp_path)
    assert not report.ok and "export it to onnx or openvino" in report.artifacts[0].reason
    assert not list(tmp_path.glob("*.tflite"))


def test_in_memory_keras_model_is_not_changed_by_export(tmp_path):
    model = build_tiny_keras(seed=2)
    before = [w.copy() for w in model.get_weights()]
    report = export(model, to="onnx", quant="fp32", out=tmp_path, name="mem")
    assert report.ok and (tmp_path / "mem.fp32.onnx").is_file()
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_mismatching_artifact_goes_to_failed_and_never_replaces_a_good_one(tiny_onnx, tmp_path, monkeypatch):
    good = tmp_path / "tiny.fp32.onnx"
    shutil.copy(tiny_onnx, good)
    good_bytes = good.read_bytes()

    from tests.conftest import make_tiny_onnx

    def wrong_weights(source, precision, out_file, work, quant=None, *, static_batch=False, input_shape=None):
        make_tiny_onnx(out_file, seed=99)  # a different model: validation must catch it

    monkeypatch.setitem(TARGETS, "onnx", converting_with("onnx", wrong_weights))
    report = export(tiny_onnx, to="onnx", quant="fp32", out=tmp_path)
    (result,) = report.artifacts
    assert not report.ok and result.status == "failed" and "differs by" in result.reason
    assert good.read_bytes() == good_bytes
    assert result.path == tmp_path / FAILED_DIR / "tiny.fp32.onnx"
    assert json.loads(Path(f"{result.path}.json").read_text())["validation"]["status"] == "failed"


def test_a_converter_crash_leaves_only_the_report_behind(tiny_onnx, tmp_path, monkeypatch):
    def explode(source, precision, out_file, work, quant=None, *, static_batch=False, input_shape=None):
        out_file.write_bytes(b"half")
        raise RuntimeError("converter blew up\nwith a long trace")

    monkeypatch.setitem(TARGETS, "openvino", converting_with("openvino", explode))
    report = export(tiny_onnx, to="openvino", quant="fp32", out=tmp_path)
    assert report.artifacts[0].reason == "RuntimeError: converter blew up"
    # No half file, no work folder: only the report that says why (it is published with the set).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]
    assert json.loads((tmp_path / "report.json").read_text())["artifacts"][0]["status"] == "failed"


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"to": "tflite,coreml"}, ConfigError, "unknown export format 'coreml'; choose from: tflite, onnx, openvino"),
        ({"to": ""}, ConfigError, "no export format given"),
        ({"quant": "int3"}, ConfigError, r"unknown precision \(--quant\) 'int3'; choose from: fp32, fp16, dynamic, int8, int16x8, int4"),
        ({"quant": "binary"}, ConfigError, r"precision binary: .* docs/precisions\.md"),
        ({"to": "tflite", "quant": "int4"}, ConfigError,
         r"precision int4 is not written for tflite \(tflite: the TFLite converter writes 4-bit weights only for a "
         r"model trained with 4-bit fake quantization .*\); it is for: onnx, openvino"),
    ],
)
def test_bad_arguments_fail_before_any_work(tiny_onnx, tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        export(tiny_onnx, out=tmp_path / "never", **kwargs)
    assert not (tmp_path / "never").exists()


def test_an_output_path_that_cannot_be_written(tiny_onnx, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="output path is a file"):
        export(tiny_onnx, out=blocker)
    with pytest.raises(OutputError, match="cannot write to output directory"):
        export(tiny_onnx, out=blocker / "sub")


@pytest.mark.parametrize(
    "name, content, error, message",
    [
        ("missing.keras", None, ModelFileError, "model not found"),
        ("empty.keras", b"", ModelFileError, "model file is empty"),
        ("broken.keras", b"not a zip", ModelFileError, "cannot load Keras model"),
        ("model.pt", b"x", Exception, "not a model edgecv can export; it accepts a SavedModel folder"),
    ],
)
def test_bad_sources(tmp_path, name, content, error, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=message):
        export(path, out=tmp_path / "out")


def test_mnist8_artifacts_keep_the_accuracy_baseline(shared_data, tmp_path):
    """fp32, fp16 and int8 (calibrated on images 0..7999, scored on 8000..9999) in every format."""
    from tests.edgecv.test_real_models import load_mnist
    from edgecv.manifest import Preprocess

    images, labels = load_mnist(shared_data)
    np.savez(tmp_path / "calib.npz", x=images[:8000])
    np.savez(tmp_path / "eval.npz", x=images[8000:], y=labels[8000:])
    report = export(shared_data / "models" / "mnist-8.onnx", out=tmp_path / "out", name="mnist", quant="fp32,fp16,int8",
                    calib=tmp_path / "calib.npz", eval_data=tmp_path / "eval.npz", max_drop=0.3,
                    preprocess=Preprocess(mean=(0,), std=(1,)), options=ExportOptions(bench_runs=0))
    assert report.ok, [a.reason for a in report.artifacts]
    assert report.source_scores.top1 == pytest.approx(BASELINES["mnist8_top1_images_8000_9999"])
    size = {(a.format, a.precision): a.size_bytes for a in report.artifacts}
    for fmt in ("tflite", "onnx", "openvino"):
        assert size[(fmt, "fp16")] < 0.8 * size[(fmt, "fp32")], fmt  # weights dominate: fp16 halves them
    for fmt in ("tflite", "onnx"):  # int8 weights; on a 26 KB model graph overhead keeps it above 0.3x
        assert size[(fmt, "int8")] < 0.55 * size[(fmt, "fp32")], fmt
    for a in report.artifacts:
        model = edgecv.load(a.path)
        x = images[8000:].astype(np.float32)
        x = x[:, None] if model.inputs[0].layout == "NCHW" else x[..., None]
        top1 = float(np.mean(model.run(x)[0].argmax(1) == labels[8000:]))
        assert top1 == pytest.approx(a.scores.top1), a.path.name  # the report's figure is the model's
        if a.precision == "int8":
            assert a.fallback is None  # no layer needed float
            # int8 kernels differ by CPU (AVX2 emulation, VNNI): up to 3 of the 2,000 images move.
            assert top1 >= BASELINES["mnist8_int8_top1_images_8000_9999"][a.format] - 0.0015, (a.path.name, top1)
        else:
            assert top1 >= BASELINES["mnist8_top1_images_8000_9999"] - 0.001, (a.path.name, top1)


# --- dynamic input dims, fixed shapes, "passed" only with a file, p50 as edgecv bench measures it ---------------


def make_dynamic_onnx(path: Path) -> Path:
    """The tiny CNN (conv, global average pool, dense) with input ``N x 3 x H x W``: it runs at any size."""
    import onnx

    from tests.conftest import make_tiny_onnx

    model = onnx.load(str(make_tiny_onnx(path)))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for d, name in zip(dims, ("N", None, "H", "W")):
        if name:
            d.Clear()
            d.dim_param = name
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def dynamic_onnx(tmp_path_factory) -> Path:
    return make_dynamic_onnx(tmp_path_factory.mktemp("dyn") / "dyn.onnx")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, r"input 'x' is \?x3x\?x\?, with dynamic dims: give the shape to check and calibrate at with --input-shape "
             r"\(input_shape=\), e\.g\. 1x3x224x224"),
        ({"input_shape": (1, 16, 16, 3)}, r"input shape 1x16x16x3 does not fit input 'x' \?x3x\?x\?"),
        ({"input_shape": (1, 3, 16)}, r"input shape 1x3x16 does not fit input 'x'"),
    ],
)
def test_dynamic_dims_need_a_fitting_input_shape_before_anything_is_written(dynamic_onnx, tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        export(dynamic_onnx, to="onnx", quant="fp32", out=tmp_path / "never", **kwargs)
    assert not (tmp_path / "never").exists()


def test_static_shape_needs_an_input_shape_on_a_dynamic_batch(tiny_onnx, tmp_path):
    with pytest.raises(ConfigError, match="--static-shape .* needs --input-shape"):
        export(tiny_onnx, to="onnx", quant="fp32", out=tmp_path, options=ExportOptions(static_shape=True))


def _manifest(path: Path) -> dict:
    return json.loads(Path(f"{path}.json").read_text())


def test_dynamic_dims_stay_dynamic_and_are_checked_at_two_shapes(dynamic_onnx, tmp_path):
    report = export(dynamic_onnx, to="onnx,openvino", quant="fp32,fp16", out=tmp_path, input_shape=(1, 3, 16, 16),
                    options=ExportOptions(bench_runs=0))
    assert report.ok, [a.reason for a in report.artifacts]
    for a in report.artifacts:
        assert a.status == "passed" and a.path.is_file() and a.path.parent == tmp_path
        m = _manifest(a.path)
        assert m["inputs"][0]["shape"] == [None, 3, None, None]
        shapes = m["validation"]["shapes"]
        assert shapes["fixed"] is False and shapes["dynamic_axes"] == [0, 2, 3] and shapes["note"] == ""
        assert [c["shape"] for c in shapes["checked"]] == [[1, 3, 16, 16], [1, 3, 48, 48]]
        assert shapes["checked"][1]["outputs"][0]["rel_diff"] < (1e-3 if a.precision == "fp32" else 2e-2)
        model = edgecv.load(a.path)  # the artifact really takes another size
        x = np.random.default_rng(1).normal(size=(2, 3, 40, 24)).astype(np.float32)
        np.testing.assert_allclose(model.run(x)[0], tiny_cnn_reference(x, tiny_cnn_weights()), rtol=2e-2, atol=2e-2)
    assert report.settings["shapes"] == {"source": [None, 3, None, None], "dynamic_axes": [0, 2, 3], "check": [1, 3, 16, 16],
                                         "second": [1, 3, 48, 48], "static": False}


def test_static_shape_fixes_the_input_in_every_artifact(dynamic_onnx, tmp_path):
    report = export(dynamic_onnx, to="onnx,openvino", quant="fp32", out=tmp_path, input_shape=(1, 3, 16, 16),
                    options=ExportOptions(bench_runs=0, static_shape=True))
    assert report.ok, [a.reason for a in report.artifacts]
    for a in report.artifacts:
        assert edgecv.load(a.path).inputs[0].shape == (1, 3, 16, 16)
        shapes = _manifest(a.path)["validation"]["shapes"]
        assert shapes["fixed"] is True and shapes["dynamic_axes"] == [] and shapes["note"] == "input fixed to 1x3x16x16 (static shape asked)"
        assert [c["shape"] for c in shapes["checked"]] == [[1, 3, 16, 16]]  # a fixed artifact has one shape to check


@pytest.mark.workstation
def test_tflite_gets_the_static_shape_with_a_note(dynamic_onnx, tmp_path):
    from edgecv.converters.report import format_text

    np.save(tmp_path / "calib.npy", np.random.default_rng(0).integers(0, 256, size=(24, 16, 16, 3), dtype=np.uint8))
    report = export(dynamic_onnx, to="tflite", quant="fp32,int8", calib=tmp_path / "calib.npy", out=tmp_path / "out",
                    input_shape=(1, 3, 16, 16), options=ExportOptions(bench_runs=0))
    assert report.ok, [a.reason for a in report.artifacts]
    for a in report.artifacts:
        assert edgecv.load(a.path).inputs[0].shape == (1, 16, 16, 3)
        assert a.shapes["note"] == "input fixed to 1x3x16x16: tflite takes static shapes (dims ?x3x?x? in the source)"
        assert [c["shape"] for c in a.shapes["checked"]] == [[1, 3, 16, 16]]
        assert f"tflite {a.precision}: input fixed to 1x3x16x16: tflite takes static shapes" in format_text(report)


def test_an_artifact_that_fixes_a_dynamic_dim_fails_at_the_second_shape(dynamic_onnx, tmp_path, monkeypatch):
    from tests.conftest import make_tiny_onnx

    def fixed_size(source, precision, out_file, work, quant=None, *, static_batch=False, input_shape=None):
        make_tiny_onnx(out_file)  # the same weights, but 8x8 only

    monkeypatch.setitem(TARGETS, "onnx", converting_with("onnx", fixed_size))
    report = export(dynamic_onnx, to="onnx", quant="fp32", out=tmp_path, input_shape=(1, 3, 8, 8), options=ExportOptions(bench_runs=0))
    (a,) = report.artifacts
    assert not report.ok and a.status == "failed"
    assert a.reason == "does not run at the second check shape 1x3x40x40: input 'x': expected shape ?x3x8x8, got 2x3x40x40"
    assert a.path == tmp_path / FAILED_DIR / "dyn.fp32.onnx" and not (tmp_path / "dyn.fp32.onnx").exists()


def test_an_artifact_the_benchmark_cannot_run_is_not_passed(tiny_onnx, tmp_path, monkeypatch):
    import edgecv.bench
    from edgecv.errors import BackendError

    def crash(path, **kwargs):
        raise BackendError(f"benchmark of {Path(path).name} crashed (signal 11)")

    monkeypatch.setattr(edgecv.bench, "benchmark", crash)
    report = export(tiny_onnx, to="onnx", quant="fp32", out=tmp_path, options=ExportOptions(bench_runs=3))
    (a,) = report.artifacts
    assert not report.ok and a.status == "failed" and a.reason == "benchmark failed: benchmark of tiny.fp32.onnx crashed (signal 11)"
    assert a.path == tmp_path / FAILED_DIR / "tiny.fp32.onnx" and _manifest(a.path)["validation"]["status"] == "failed"
    assert not (tmp_path / "tiny.fp32.onnx").exists()


def test_a_passed_row_without_its_file_is_not_ok(tiny_onnx, tmp_path):
    report = export(tiny_onnx, to="onnx", quant="fp32", out=tmp_path, options=ExportOptions(bench_runs=0))
    assert report.ok
    report.artifacts[0].path.unlink()
    assert not report.ok


def test_p50_is_measured_with_edgecv_bench_code_and_settings(dynamic_onnx, tmp_path, monkeypatch):
    """Not timing equality (the machine is noisy): the same function, settings and process isolation as
    `edgecv bench` on the same file, recorded in the report with the command that reproduces the figure."""
    import edgecv.bench
    from edgecv.cli.main import build_parser

    calls = []
    real = edgecv.bench.benchmark

    def spy(path, **kwargs):
        calls.append((Path(path).name, kwargs))
        return real(path, **kwargs)

    monkeypatch.setattr(edgecv.bench, "benchmark", spy)
    options = ExportOptions(bench_runs=7, bench_warmup=2, bench_threads=1)
    report = export(dynamic_onnx, to="onnx", quant="fp32", out=tmp_path, input_shape=(1, 3, 16, 16), options=options)
    (a,) = report.artifacts
    assert report.ok and calls == [("dyn.fp32.onnx", {"runs": 7, "warmup": 2, "threads": 1, "input_shape": (1, 3, 16, 16), "isolate": True})]
    assert a.bench["command"] == "edgecv bench dyn.fp32.onnx --runs 7 --warmup 2 --threads 1 --input-shape 1x3x16x16"
    assert a.bench["input_shape_arg"] == a.bench["input_shape"] == [1, 3, 16, 16] and a.bench["batch"] == 1 and a.bench["threads_used"] == 1
    assert _manifest(a.path)["validation"]["bench"] == a.bench
    # The command's arguments are what bench's CLI passes to the same function.
    args = build_parser().parse_args(a.bench["command"].split()[1:])
    assert (args.runs, args.warmup, args.threads, args.input_shape, args.batch) == (7, 2, 1, (1, 3, 16, 16), 1)
    # Defaults: export times its artifacts with edgecv bench's defaults.
    defaults = build_parser().parse_args(["bench", "x.onnx"])
    default = ExportOptions()
    assert (default.bench_runs, default.bench_warmup, default.bench_threads) == (defaults.runs, defaults.warmup, defaults.threads)


def test_cli_export_keeps_or_fixes_dynamic_dims(dynamic_onnx, tmp_path, capsys):
    from edgecv.cli.main import main

    assert main(["export", str(dynamic_onnx), "--to", "onnx", "--quant", "none", "--out", str(tmp_path / "dyn")]) != 0
    assert "with dynamic dims: give the shape to check and calibrate at with --input-shape" in capsys.readouterr().err
    assert main(["export", str(dynamic_onnx), "--to", "onnx", "--quant", "none", "--input-shape", "1x3x16x16",
                 "--out", str(tmp_path / "dyn"), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["artifacts"]
    assert row["status"] == "passed" and Path(row["path"]).is_file() and row["shapes"]["input"] == [None, 3, None, None]
    assert row["bench"]["runs"] == 100 and row["bench"]["input_shape"] == [1, 3, 16, 16] and row["p50_ms"] > 0
    assert main(["export", str(dynamic_onnx), "--to", "onnx", "--quant", "none", "--input-shape", "1x3x16x16", "--static-shape",
                 "--out", str(tmp_path / "fixed"), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["artifacts"]
    assert row["shapes"]["input"] == [1, 3, 16, 16] and row["shapes"]["fixed"] is True and row["bench"]["input_shape"] == [1, 3, 16, 16]
    assert _manifest(Path(row["path"]))["inputs"][0]["shape"] == [1, 3, 16, 16]


def test_int8_artifacts_keep_dynamic_dims_and_calibrate_at_the_input_shape(dynamic_onnx, tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(24, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "calib.npy", pixels)
    report = export(dynamic_onnx, to="onnx,openvino", quant="int8", calib=tmp_path / "calib.npy", out=tmp_path / "out",
                    input_shape=(1, 3, 16, 16), options=ExportOptions(bench_runs=0))
    assert report.ok, [a.reason for a in report.artifacts]
    for a in report.artifacts:
        assert edgecv.load(a.path).inputs[0].shape == (None, 3, None, None)
        assert [c["shape"] for c in a.shapes["checked"]] == [[1, 3, 16, 16], [1, 3, 48, 48]]
        assert a.scores.agreement >= 0.9  # top-1 against the float model on the calibration set
