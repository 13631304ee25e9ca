"""Device profiles: every shipped profile is valid and carries its facts; mistakes in a profile are one-line
errors that name the file and the line."""

from __future__ import annotations

import re
import tomllib
from importlib.resources import files
from pathlib import Path

import pytest

from edgecv.devices import PRECISIONS, DeviceProfile, load_profile, load_profiles, profile_names
from edgecv.errors import ConfigError
from edgecv.flatbuffer import BUILTIN_OPS

REPO = Path(__file__).resolve().parents[2]
DEVICES = REPO / "devices"
INSTALLED = Path(str(files("edgecv.profiles")))  # DEVICES itself in an editable install; in the wheel on a device
SHIPPED = {
    "android-phone", "ci-x86-64-avx2", "coral-edgetpu", "intel-cpu", "intel-igpu", "intel-npu", "jetson-orin-nano",
    "raspberry-pi-4", "raspberry-pi-5", "x86-64-avx2", "x86-64-vnni",
}


def test_every_shipped_profile_loads_and_is_consistent():
    profiles = load_profiles()
    assert {p.name for p in profiles} == SHIPPED == set(profile_names())
    for p in profiles:
        assert isinstance(p, DeviceProfile) and p.path == INSTALLED / f"{p.name}.yaml"
        assert p.description and p.arch in ("x86_64", "aarch64"), p.name
        assert (p.preferred.format, p.preferred.precision) in p.candidates(), p.name
        assert p.preferred.steps, f"{p.name}: the preferred recipe says how to make it"
        assert set(p.precisions) <= set(PRECISIONS)
        if p.accelerator:
            assert set(p.accelerator.formats) <= set(p.formats), p.name
    assert [p.name for p in profiles if p.local] == ["ci-x86-64-avx2"]


def test_the_wheel_carries_the_profiles():
    """The repo's ``devices/`` installs as the package ``edgecv.profiles`` with its YAML files as package data
    (tests/test_layout.py builds the wheel and reads what it holds)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "edgecv.profiles" in project["packages"] and project["package-dir"]["edgecv.profiles"] == "devices"
    assert "*.yaml" in project["package-data"]["edgecv.profiles"]
    assert (DEVICES / "__init__.py").is_file()
    assert sorted(p.stem for p in DEVICES.glob("*.yaml")) == sorted(SHIPPED)


def test_device_facts():
    pi4, pi5 = load_profile("raspberry-pi-4"), load_profile("raspberry-pi-5")
    assert pi4.cpu.cores == 4 and "asimddp" in pi4.cpu.lacks and pi4.precisions["int8"].accelerated
    assert "asimddp" in pi5.cpu.features and pi5.accelerator is None
    assert pi4.runtimes["litert"].delegates == ("xnnpack",)
    coral = load_profile("coral-edgetpu")
    acc = coral.accelerator
    assert coral.formats == ("tflite",) and coral.candidates() == [("tflite", "int8")]
    assert acc.full_integer and acc.static_shapes and acc.partitions == 1 and acc.fallback == "cpu"
    assert acc.max_rank == 4 and acc.memory_mb == 8 and coral.quantization.required == "int8"
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "SOFTMAX", "edgetpu-custom-op"} <= set(acc.ops["tflite"])
    assert not {"GELU", "HARD_SWISH", "DEQUANTIZE", "TFLite_Detection_PostProcess"} & set(acc.ops["tflite"])
    jetson = load_profile("jetson-orin-nano")
    assert jetson.runtimes["onnxruntime"].providers[:2] == ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    assert jetson.precisions["fp16"].accelerated and jetson.precisions["int8"].accelerated
    assert load_profile("intel-cpu").precisions["int8"].accelerated
    assert not load_profile("x86-64-avx2").precisions["int8"].accelerated
    assert load_profile("x86-64-vnni").precisions["int8"].accelerated
    assert load_profile("intel-igpu").runtimes["openvino"].devices[0] == "GPU"
    npu = load_profile("intel-npu")
    assert npu.accelerator.static_shapes and npu.accelerator.fallback == "error" and set(npu.precisions) == {"fp16", "int8"}
    android = load_profile("android-phone")
    assert set(android.runtimes["litert"].delegates) == {"gpu", "nnapi", "xnnpack"}
    assert android.preferred.precision == "fp16"


def test_op_lists_use_tflite_schema_names():
    """A misspelt op in a profile would silently never match: every TFLite op named is a builtin or a known
    custom op."""
    custom = {"edgetpu-custom-op"}
    for p in load_profiles():
        if p.accelerator:
            for name in p.accelerator.ops.get("tflite", ()):
                assert name in BUILTIN_OPS or name in custom, f"{p.name}: {name}"


def test_builtin_op_table_matches_the_tflite_schema():
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}
    assert [codes[i] for i in range(len(BUILTIN_OPS))] == list(BUILTIN_OPS)


# -- mistakes ---------------------------------------------------------------------------------------------


def _copy_with(tmp_path: Path, name: str, old: str, new: str) -> tuple[Path, int]:
    """``devices/<name>.yaml`` with the first ``old`` replaced; returns the path and that line's number."""
    text = (DEVICES / f"{name}.yaml").read_text()
    assert old in text
    line = text[: text.index(old)].count("\n") + 1
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(old, new, 1))
    return path, line


@pytest.mark.parametrize(
    "name, old, new, expected",
    [
        ("coral-edgetpu", "  static_shapes: true", "  static_shape: true",
         "unknown field 'static_shape' in accelerator (did you mean 'static_shapes'?)"),
        ("coral-edgetpu", "\nformats: [tflite]", "\nformat: [tflite]", "unknown field 'format' (did you mean 'formats'?)"),
        ("raspberry-pi-4", "  features: [fp, asimd, crc32]", "  featurs: [fp, asimd, crc32]",
         "unknown field 'featurs' in cpu (did you mean 'features'?)"),
        ("raspberry-pi-5", "    accelerated: true\n    note: \"XNNPACK", "    acelerated: true\n    note: \"XNNPACK",
         "unknown field 'acelerated' in precisions.int8 (did you mean 'accelerated'?)"),
        ("jetson-orin-nano", "    providers: [Tensorrt", "    provider: [Tensorrt",
         "unknown field 'provider' in runtimes.onnxruntime (did you mean 'providers'?)"),
    ],
)
def test_a_misspelt_field_names_file_and_line(tmp_path, name, old, new, expected):
    path, line = _copy_with(tmp_path, name, old, new)
    line += old.startswith("\n")
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    message = str(err.value)
    assert message.startswith(f"device profile {path} line {line}: "), message
    assert expected in message and "\n" not in message


MINIMAL = """\
name: x
description: d
arch: x86_64
runtimes: {onnxruntime: {providers: [CPUExecutionProvider]}}
formats: [onnx]
precisions: {fp32: {accelerated: true}}
preferred: {format: onnx, precision: fp32}
"""


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[1, 2]", "the profile: expected a mapping, got list"),
        ("name: x\n", "missing field(s) description, arch, runtimes, formats, precisions, preferred"),
        (MINIMAL.replace("onnxruntime:", "tensorrt:"), "runtimes: unknown tensorrt; valid runtimes: litert, onnxruntime, openvino"),
        (MINIMAL.replace("formats: [onnx]", "formats: [coreml]"), "formats: expected some of tflite, onnx, openvino, got ['coreml']"),
        (MINIMAL.replace("fp32: {", "fp8: {"), "precisions: expected some of fp32, fp16, dynamic, int8, int16x8, int4, got ['fp8']"),
        (MINIMAL.replace("format: onnx,", "format: tflite,"), "preferred.format 'tflite' is not one of the profile's formats (onnx)"),
        (MINIMAL.replace("accelerated: true", "accelerated: yes please"), "line 6: precisions.fp32.accelerated: expected true or false"),
        (MINIMAL + "cpu: {cores: 0}\n", "cpu.cores: expected >= 1 or null, got 0"),
        (MINIMAL + "cpu: {cores: four}\n", "line 8: cpu.cores: expected an integer, got 'four'"),
        (MINIMAL + "budgets: {model_mb: -5}\n", "budgets.model_mb: expected a positive number or null, got -5.0"),
        (MINIMAL + "quantization: {io: float16}\n", "quantization.io: expected float, int8 or uint8, got 'float16'"),
        (MINIMAL + "accelerator: {name: a, formats: [onnx], precisions: [fp16], fallback: maybe}\n",
         "accelerator.fallback: expected cpu or error, got 'maybe'"),
        (MINIMAL + "accelerator: {name: a, formats: [onnx], precisions: [fp16], partitions: 0}\n",
         "accelerator.partitions: expected >= 1, got 0"),
        (MINIMAL + "accelerator: {name: a, formats: [onnx], precisions: [fp16], ops: {tflite: [ADD]}}\n",
         "accelerator.ops: tflite is not one of accelerator.formats (onnx)"),
        (MINIMAL + "accelerator: {name: a, formats: [onnx], precisions: [fp16], dtypes: [int9]}\n",
         "accelerator.dtypes: unknown int9"),
        (MINIMAL + "accelerator: {name: a, formats: [onnx]}\n", "missing field(s) precisions in accelerator"),
        ("name: [unclosed\n", "cannot read device profile"),
    ],
)
def test_bad_profiles(tmp_path, text, expected):
    path = tmp_path / "dev.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    message = str(err.value)
    assert expected in message and f"device profile {path}" in message and "\n" not in message, message


def test_minimal_profile_defaults(tmp_path):
    path = tmp_path / "dev.yaml"
    path.write_text(MINIMAL)
    p = load_profile(path)
    assert p.accelerator is None and p.cpu is None and not p.local and p.quantization.required is None
    assert p.candidates() == [("onnx", "fp32")] and p.budgets.model_mb is None


def test_a_profile_in_the_folder_must_be_named_after_its_file(tmp_path):
    (tmp_path / "y.yaml").write_text(MINIMAL)
    with pytest.raises(ConfigError, match=r"name 'x' must match the file name 'y'"):
        load_profile("y", folder=tmp_path)


def test_unknown_device_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        load_profile("raspberry-pi-9")
    assert str(err.value) == f"unknown device 'raspberry-pi-9'; known devices: {', '.join(sorted(SHIPPED))}"


def test_missing_profile_path():
    with pytest.raises(ConfigError, match=re.escape("device profile not found: nowhere/dev.yaml")):
        load_profile("nowhere/dev.yaml")
