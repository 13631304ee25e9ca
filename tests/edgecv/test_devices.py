import pytest

from edgecv.devices import load_profile, profile_names
from edgecv.errors import ConfigError


def test_the_ci_machine_profile_loads():
    assert "ci-x86-64-avx2" in profile_names()
    p = load_profile("ci-x86-64-avx2")
    assert p.arch == "x86_64" and set(p.formats) == {"tflite", "onnx", "openvino"}
    assert p.precisions["int8"]["accelerated"] is False  # no VNNI on this CPU


@pytest.mark.parametrize(
    "text, message",
    [
        ("[1, 2]", "expected a mapping"),
        ("name: x\n", "missing key(s) description, arch, runtimes, formats, precisions"),
        ("name: x\ndescription: d\narch: a\nruntimes: {tensorrt: {}}\nformats: [onnx]\nprecisions: {}\n", "unknown runtime(s) ['tensorrt']"),
        ("name: x\ndescription: d\narch: a\nruntimes: {}\nformats: [coreml]\nprecisions: {}\n", "unknown format(s) ['coreml']"),
        ("name: [unclosed\n", "cannot read device profile"),
    ],
)
def test_bad_profiles(tmp_path, text, message):
    path = tmp_path / "dev.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_profile(path)


def test_unknown_device_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known devices: ci-x86-64-avx2"):
        load_profile("raspberry-pi-9")
