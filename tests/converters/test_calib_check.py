"""The representativeness check: calibration data that does not look like the eval set is said plainly, in
one warning line naming the layers, the ratio and the remedy; ``calib_include_eval`` calibrates on the eval
images too, and the report and manifests then say the accuracy gate is not independent."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from edgecv.errors import ConfigError

pytestmark = pytest.mark.workstation
pytest.importorskip("onnxruntime")

LAYERS = ["conv_1", "relu_1", "conv_2", "relu_2", "pool", "scores"]  # the compute nodes of the test net
SAMPLES = 24


def make_net(path: Path) -> Path:
    """A small conv net with named nodes: conv, relu, conv, relu, global pool, flatten, dense. No biases, so
    every activation scales with the input."""
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(0)
    weights = {"w1": rng.normal(0, 0.5, (4, 3, 3, 3)), "w2": rng.normal(0, 0.5, (4, 4, 3, 3)), "w3": rng.normal(0, 0.5, (4, 5))}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv_1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu_1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv_2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu_2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "w3"], ["y"], name="scores"),
    ]
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
                              [numpy_helper.from_array(w.astype(np.float32), k) for k, w in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return path


def inputs(low: float, high: float, seed: int) -> np.ndarray:
    """Model inputs (NCHW, within the [0, 1] the default preprocessing gives pixels)."""
    return np.random.default_rng(seed).uniform(low, high, (SAMPLES, 3, 8, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> Path:
    return make_net(tmp_path_factory.mktemp("calib-check") / "net.onnx")


def run_export(net: Path, out: Path, calib, eval_data, **kwargs):
    from edgecv.converters.export import ExportOptions, export
    from edgecv.converters.quant import QuantOptions

    quant = QuantOptions(fallback=False, calib_samples=SAMPLES, eval_samples=SAMPLES, max_drop=100.0, min_sqnr=0.0)
    return export(net, to="onnx", quant="int8", calib=calib, eval_data=eval_data, out=out,
                  options=ExportOptions(bench_runs=0, quant=quant), **kwargs)


def manifest_quantization(report) -> dict:
    artifact = report.artifacts[0]
    assert artifact.path is not None, artifact.reason
    return json.loads(Path(f"{artifact.path}.json").read_text())["quantization"]


def check_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "edgecv.converters.calib_check" and r.levelno >= logging.WARNING]


def test_calibration_far_from_the_eval_set_warns_in_one_line(net, tmp_path, caplog):
    """Calibrated on inputs in [0, 0.05], judged on inputs in [0, 1]: every layer's eval activations reach
    about 20x their calibrated range."""
    caplog.set_level(logging.INFO, logger="edgecv.converters")
    report = run_export(net, tmp_path / "out", inputs(0, 0.05, 1), inputs(0, 1, 2))
    [line] = check_warnings(caplog)
    assert "\n" not in line
    assert line.startswith("calibration data does not represent the eval set: eval activations reach 2x to ")
    assert f"in {len(LAYERS)} of {len(LAYERS)} layers (worst: " in line
    assert "calibrate on frames like the eval set, or pass --calib-include-eval" in line
    check = report.settings["calibration_check"]
    assert check["independent"] and check["measured"] and check["representative"] is False
    assert check["layers"] == len(LAYERS) and check["layers_over"] == len(LAYERS)
    assert {o["layer"] for o in check["over"]} == set(LAYERS)
    assert 10 < check["worst_ratio"] < 30  # inputs 20x wider, no biases: ~20x
    named = [o["layer"] for o in check["over"][:3]]
    assert f"(worst: {named[0]} " in line and named[2] in line
    assert check["calib_samples"] == SAMPLES and check["eval_samples"] == SAMPLES and check["note"] == line
    assert report.settings["calib_include_eval"] is False
    assert manifest_quantization(report)["calibration_check"]["representative"] is False
    assert line in (tmp_path / "out" / "report.md").read_text()
    assert json.loads((tmp_path / "out" / "report.json").read_text())["settings"]["calibration_check"] == check


def test_representative_calibration_is_quiet(net, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edgecv.converters")
    report = run_export(net, tmp_path / "out", inputs(0, 1, 1), inputs(0, 1, 2))
    assert check_warnings(caplog) == []
    check = report.settings["calibration_check"]
    assert check["representative"] is True and check["layers_over"] == 0 and check["layers"] == len(LAYERS)
    assert 1.0 <= check["worst_ratio"] < 1.5
    assert check["note"].startswith("calibration data represents the eval set")
    assert manifest_quantization(report)["calibration_check"]["representative"] is True


def test_calib_include_eval_calibrates_on_the_eval_images_and_says_the_gate_is_not_independent(net, tmp_path, caplog):
    from edgecv.converters.calib_check import NOT_INDEPENDENT

    caplog.set_level(logging.INFO, logger="edgecv.converters")
    report = run_export(net, tmp_path / "out", inputs(0, 0.05, 1), inputs(0, 1, 2), calib_include_eval=True)
    assert check_warnings(caplog) == []  # skipped: the eval images are part of the calibration
    assert report.settings["calib_include_eval"] is True
    assert report.settings["calibration_check"] == {"independent": False, "measured": False, "note": NOT_INDEPENDENT}
    quant = manifest_quantization(report)
    assert quant["calibration_samples"] == 2 * SAMPLES
    assert quant["calibration_set"] == f"{SAMPLES} samples of an array + {SAMPLES} samples of an array (the eval set)"
    assert quant["calibration_check"]["independent"] is False
    assert NOT_INDEPENDENT in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.parametrize("calib, eval_data, error, message", [
    (None, None, ConfigError, "int8 needs calibration data"),
    ("narrow", None, ConfigError, "adds the eval images to calibration: pass --eval DATA"),
    (None, "wide", None, f"{SAMPLES} samples of an array (the eval set)"),  # the eval images alone
])
def test_calib_include_eval_needs_an_eval_set(net, tmp_path, calib, eval_data, error, message):
    data = {"narrow": inputs(0, 0.05, 1), "wide": inputs(0, 1, 2), None: None}
    if error is not None:
        with pytest.raises(error, match=message):
            run_export(net, tmp_path / "out", data[calib], data[eval_data], calib_include_eval=True)
        assert not (tmp_path / "out" / "report.json").exists()
        return
    report = run_export(net, tmp_path / "out", data[calib], data[eval_data], calib_include_eval=True)
    assert manifest_quantization(report)["calibration_set"] == message
    assert report.settings["calibration_check"]["independent"] is False


def test_include_eval_chains_calibration_then_spread_eval_samples():
    from edgecv.converters.calib_check import include_eval
    from edgecv.converters.data import InputSpec, open_dataset

    spec = InputSpec((1, 3, 8, 8), "NCHW")
    calib = open_dataset(np.full((4, 3, 8, 8), 0.25, np.float32), spec=spec)
    eval_set = open_dataset(np.arange(10, dtype=np.float32)[:, None, None, None] * np.ones((1, 3, 8, 8), np.float32) / 10, spec=spec)
    joined = include_eval(calib, eval_set, 3)
    firsts = [float(x[0, 0, 0, 0]) for x in joined.inputs()]
    assert firsts == pytest.approx([0.25] * 4 + [0.0, 0.4, 0.9])  # 3 eval samples spread evenly over the 10
    assert joined.description == "4 samples of an array + 3 spread over 10 samples of an array (the eval set)"
    assert [float(x[0, 0, 0, 0]) for x in joined.inputs()] == firsts  # re-iterable
    assert eval_set.description == "10 samples of an array"  # the eval set itself is untouched


@pytest.mark.parametrize("layers, ratios, representative", [
    (86, [15.0, 5.7] + [2.5] * 31 + [1.5] * 53, False),  # BlazeFace calibrated on street frames: 33 of 86
    (86, [1.1] * 86, True),  # BlazeFace calibrated on other faces
    (20, [9.0, 3.0] + [1.0] * 18, False),  # 10% of the layers: the threshold itself
    (30, [40.0, 3.0] + [1.0] * 28, True),  # one output logit far out, 2 of 30 layers: under 10%
    (10, [1.99] * 10, True),  # just under 2x everywhere
])
def test_threshold(layers, ratios, representative):
    from edgecv.converters.calib_check import LAYER_RATIO, CalibrationCheck

    over = tuple((f"layer_{i}", r) for i, r in enumerate(ratios) if r >= LAYER_RATIO)
    check = CalibrationCheck(measured=True, layers=layers, over=over, worst_ratio=max(ratios), worst_layer="layer_0")
    assert check.representative is representative
    assert check.summary().startswith("calibration data " + ("represents" if representative else "does not represent"))
    assert "\n" not in check.summary()


def test_cli_export_takes_calib_include_eval(net, tmp_path, capsys):
    from edgecv.cli.main import main
    from edgecv.converters.calib_check import NOT_INDEPENDENT

    np.save(tmp_path / "calib.npy", inputs(0, 0.05, 1))
    np.save(tmp_path / "eval.npy", inputs(0, 1, 2))
    out = tmp_path / "out"
    main(["export", str(net), "--to", "onnx", "--quant", "int8", "--calib", str(tmp_path / "calib.npy"), "--eval",
          str(tmp_path / "eval.npy"), "--calib-include-eval", "--calib-samples", str(SAMPLES), "--eval-samples", str(SAMPLES),
          "--no-fallback", "--out", str(out)])
    assert NOT_INDEPENDENT in capsys.readouterr().out
    settings = json.loads((out / "report.json").read_text())["settings"]
    assert settings["calib_include_eval"] is True and settings["calibration_check"]["independent"] is False
    assert "(the eval set)" in settings["calib"]


def test_cli_optimize_passes_calib_include_eval_to_every_calibrated_build(net, tmp_path, capsys):
    from edgecv.cli.main import main
    from edgecv.converters.calib_check import NOT_INDEPENDENT

    device = tmp_path / "here.yaml"
    device.write_text("name: here\ndescription: this machine, ONNX int8\narch: x86_64\nhost: local\n"
                      "runtimes:\n  onnxruntime: {providers: [CPUExecutionProvider]}\nformats: [onnx]\n"
                      "precisions:\n  int8: {accelerated: false}\npreferred: {format: onnx, precision: int8}\n")
    np.save(tmp_path / "calib.npy", inputs(0, 0.05, 1))
    np.save(tmp_path / "eval.npy", inputs(0, 1, 2))
    out = tmp_path / "out"
    main(["optimize", str(net), "--device", str(device), "--calib", str(tmp_path / "calib.npy"), "--eval",
          str(tmp_path / "eval.npy"), "--calib-include-eval", "--max-drop", "100", "--workers", "1", "--runs", "5",
          "--out", str(out)])
    assert NOT_INDEPENDENT in capsys.readouterr().out
    result = json.loads((out / "optimize.json").read_text())
    assert result["calibration_check"]["independent"] is False
    assert NOT_INDEPENDENT in (out / "optimize.md").read_text()
    assert json.loads((out / "candidates" / "onnx-int8" / "candidate.json").read_text())["calibration_check"]["independent"] is False


def test_the_warning_reaches_the_terminal_as_one_line(net, tmp_path):
    """Through the real command line (its logging set-up and the library log that takes fd 2)."""
    import subprocess
    import sys

    np.save(tmp_path / "calib.npy", inputs(0, 0.05, 1))
    np.save(tmp_path / "eval.npy", inputs(0, 1, 2))
    proc = subprocess.run([sys.executable, "-m", "edgecv", "export", str(net), "--to", "onnx", "--quant", "int8", "--calib",
                           str(tmp_path / "calib.npy"), "--eval", str(tmp_path / "eval.npy"), "--no-fallback", "--max-drop", "100",
                           "--json", "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if "calibration data" in line]
    assert len(lines) == 1 and lines[0].startswith("WARNING edgecv.converters.calib_check: calibration data does not represent")
    assert f"in {len(LAYERS)} of {len(LAYERS)} layers" in lines[0] and lines[0].endswith("the accuracy gate is then not independent)")
    assert json.loads(proc.stdout)["settings"]["calibration_check"]["note"] in lines[0]
