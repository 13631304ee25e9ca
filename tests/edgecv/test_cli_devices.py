"""``edgecv devices list`` and ``edgecv devices check``: tables, JSON, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest

from edgecv.cli.main import main
from edgecv.devices import load_profiles


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_every_profile(capsys):
    code, out, _ = cli(capsys, "devices", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["device", "arch", "formats", "accelerated", "accelerator", "preferred"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert set(rows) == {p.name for p in load_profiles()}
    assert rows["coral-edgetpu"].split() == ["coral-edgetpu", "aarch64", "tflite", "int8", "Edge", "TPU", "tflite", "int8"]
    assert "(local)" in rows["ci-x86-64-avx2"] and rows["ci-x86-64-avx2"].split()[4] == "-"  # nothing beats fp32 there
    assert rows["jetson-orin-nano"].split()[3] == "fp16,int8"


def test_list_json(capsys):
    code, out, _ = cli(capsys, "devices", "list", "--json")
    data = {d["name"]: d for d in json.loads(out)}
    assert code == 0 and len(data) == len(load_profiles())
    coral = data["coral-edgetpu"]
    assert coral["accelerator"]["partitions"] == 1 and coral["candidates"] == [["tflite", "int8"]]
    assert Path(coral["path"]) == Path(str(files("edgecv.profiles"))) / "coral-edgetpu.yaml" and data["ci-x86-64-avx2"]["host"] == "local"


def test_check_blocked_exits_1_with_a_table(capsys, tiny_onnx):
    code, out, _ = cli(capsys, "devices", "check", tiny_onnx, "--device", "intel-npu")
    assert code == 1
    assert f"{tiny_onnx}  (onnx, fp32," in out and "5 ops) on intel-npu: 5 of 5 ops on the Intel NPU" in out
    assert "blocker   dynamic  dynamic shape on input 'x' [N,3,8,8]: the Intel NPU compiles static shapes only" in out
    assert out.rstrip().endswith("cannot run on intel-npu: 1 blocker")


def test_check_ok_exits_0(capsys, tiny_onnx_batch1):
    code, out, _ = cli(capsys, "devices", "check", tiny_onnx_batch1, "--device", "intel-npu")
    assert code == 0 and out.rstrip().endswith("runs on intel-npu") and "severity" not in out


def test_check_json(capsys, tiny_onnx):
    code, out, _ = cli(capsys, "devices", "check", tiny_onnx, "--device", "coral-edgetpu", "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and report["format"] == "onnx"
    assert [b["kind"] for b in report["blockers"]] == ["format"]


def test_check_blazeface_on_coral_summarises_past_the_limit(capsys, shared_data):
    face = shared_data / "models" / "face_detection_short_range.tflite"
    code, out, _ = cli(capsys, "devices", "check", face, "--device", "coral-edgetpu", "--limit", "5")
    assert code == 1
    rows = [line for line in out.splitlines() if line.startswith("blocker ")]
    assert len(rows) == 5
    assert "float op CONV_2D 'conv2d' on tensor 'input' float32: the Edge TPU runs full-integer models only" in out
    assert "... and 159 more blockers: " in out and "float DEQUANTIZE" in out
    assert out.rstrip().endswith("cannot run on coral-edgetpu: 164 blockers")
    code, out, _ = cli(capsys, "devices", "check", face, "--device", "coral-edgetpu", "--limit", "0")
    assert len([line for line in out.splitlines() if line.startswith("blocker ")]) == 164 and "more blockers" not in out


def test_check_ssd_on_coral_names_the_cpu_op(capsys, shared_data):
    ssd = shared_data / "models" / "ssd_mobilenet_v1_coco_quant" / "detect.tflite"
    code, out, _ = cli(capsys, "devices", "check", ssd, "--device", "coral-edgetpu")
    assert code == 0 and "63 of 64 ops on the Edge TPU" in out
    assert "fallback  op    custom op TFLite_Detection_PostProcess" in out and "runs on the CPU" in out
    assert out.rstrip().endswith("runs on coral-edgetpu, 1 fallback")


@pytest.mark.parametrize(
    "args, message",
    [
        (["devices", "check", "{onnx}", "--device", "raspberry-pi-9"],
         "edgecv: error: unknown device 'raspberry-pi-9'; known devices: android-phone, ci-x86-64-avx2, coral-edgetpu,"),
        (["devices", "check", "missing.onnx", "--device", "intel-npu"], "edgecv: error: model file not found: missing.onnx"),
        (["devices", "check", "model.pt", "--device", "intel-npu"], "edgecv: error: model.pt: unknown model extension '.pt'"),
        (["devices", "check", "{onnx}", "--device", "{typo}"], "edgecv: error: device profile {typo} line 4: unknown field 'formatz' (did you mean 'formats'?)"),
        (["devices", "check", "{onnx}", "--device", "intel-npu", "--limit", "-1"], "edgecv: error: --limit must be 0 (all) or more, got -1"),
    ],
)
def test_bad_input_is_one_line(capsys, tmp_path, tiny_onnx, args, message):
    typo = tmp_path / "typo.yaml"
    typo.write_text("name: typo\ndescription: d\narch: x86_64\nformatz: [onnx]\n")
    args = [a.format(onnx=tiny_onnx, typo=typo) for a in args]
    code, out, err = cli(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith(message.format(typo=typo)) and err.count("\n") == 1, err


def test_help_has_examples_and_the_command_is_registered():
    proc = subprocess.run([sys.executable, "-m", "edgecv", "devices", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "examples:" in proc.stdout and "edgecv devices check" in proc.stdout
    top = subprocess.run([sys.executable, "-m", "edgecv", "--help"], capture_output=True, text=True, timeout=120)
    assert "devices" in top.stdout and "edgecv devices check model.int8.tflite --device coral-edgetpu" in top.stdout
    proc = subprocess.run([sys.executable, "-m", "edgecv", "devices"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "ACTION" in proc.stderr
