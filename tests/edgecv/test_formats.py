"""Bad model files: one clear error each, never a traceback or a crash."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgecv
from edgecv.errors import ModelFileError, UnsupportedFormatError
from edgecv.formats import FORMATS, format_for_path


def test_format_table_drives_suffixes_and_backends():
    assert {f.suffix: f.name for f in FORMATS.values()} == {".tflite": "tflite", ".onnx": "onnx", ".xml": "openvino"}
    assert format_for_path("a/B.TFLITE").name == "tflite"


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.fixture()
def tflite_bytes(exported) -> bytes:
    return next(a.path for a in exported.artifacts if a.format == "tflite" and a.precision == "fp32").read_bytes()


@pytest.mark.parametrize(
    "name, make, error, message",
    [
        ("absent.onnx", None, ModelFileError, "model file not found"),
        ("empty.onnx", lambda b: b"", ModelFileError, "model file is empty"),
        ("empty.tflite", lambda b: b"", ModelFileError, "model file is empty"),
        ("model.pt", lambda b: b"x", UnsupportedFormatError, "unknown model extension '.pt'; edgecv reads .tflite"),
        ("noext", lambda b: b"x", UnsupportedFormatError, r"unknown model extension '\(none\)'"),
        ("garbage.tflite", lambda b: b"\x00" * 64, ModelFileError, "no 'TFL3' identifier"),
        ("trunc10.tflite", lambda b: b[: len(b) // 10], ModelFileError, "truncated|corrupted"),
        ("trunc50.tflite", lambda b: b[: len(b) // 2], ModelFileError, "truncated|corrupted"),
        ("trunc90.tflite", lambda b: b[: len(b) * 9 // 10], ModelFileError, "truncated|corrupted"),
        ("short.tflite", lambda b: b[:6], ModelFileError, "no 'TFL3' identifier"),
        ("text.onnx", lambda b: b"hello world", ModelFileError, "not an ONNX protobuf"),
        ("trunc.onnx", None, ModelFileError, "cannot load .* with ONNX Runtime"),
        ("text.xml", lambda b: b"hello", ModelFileError, "not an OpenVINO IR"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, tiny_onnx, tflite_bytes, name, make, error, message):
    if name == "trunc.onnx":
        data = tiny_onnx.read_bytes()
        path = _write(tmp_path, name, data[: len(data) // 2])
    elif make is None:
        path = tmp_path / name
    else:
        path = _write(tmp_path, name, make(tflite_bytes))
    with pytest.raises(error, match=message) as info:
        edgecv.load(path)
    assert "\n" not in str(info.value)


def test_openvino_ir_without_its_weights(exported, tmp_path):
    xml = next(a.path for a in exported.artifacts if a.format == "openvino")
    lone = tmp_path / "lone.xml"
    lone.write_bytes(xml.read_bytes())
    with pytest.raises(ModelFileError, match="weights file lone.bin is missing"):
        edgecv.load(lone)


def test_openvino_ir_with_truncated_weights(exported, tmp_path):
    xml = next(a.path for a in exported.artifacts if a.format == "openvino" and a.precision == "fp32")
    (tmp_path / "m.xml").write_bytes(xml.read_bytes())
    (tmp_path / "m.bin").write_bytes(xml.with_suffix(".bin").read_bytes()[:100])
    with pytest.raises(ModelFileError, match="cannot load .* with OpenVINO"):
        edgecv.load(tmp_path / "m.xml")


FUZZ_CHILD = r"""
import json, sys
import numpy as np
import edgecv
from edgecv.errors import EdgeCVError
outcomes = []
for path in json.loads(sys.argv[1]):
    try:
        m = edgecv.load(path)
        m.run([np.zeros([d or 1 for d in t.shape], t.dtype) for t in m.inputs])
        outcomes.append("ok")
    except EdgeCVError as exc:
        outcomes.append("error")
print(json.dumps(outcomes))
"""


@pytest.mark.parametrize("source", ["exported", "blazeface", "ssd"])
def test_corrupted_tflite_files_never_crash_the_process(request, tmp_path, source):
    """Flip a few random bytes in many copies; every load must succeed or raise EdgeCVError in-process."""
    if source == "exported":
        data = next(a.path for a in request.getfixturevalue("exported").artifacts if a.format == "tflite").read_bytes()
    else:
        shared = request.getfixturevalue("shared_data")
        rel = "face_detection_short_range.tflite" if source == "blazeface" else "ssd_mobilenet_v1_coco_quant/detect.tflite"
        data = (shared / "models" / rel).read_bytes()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(60):
        buf = bytearray(data)
        # Half the flips hit the first kilobyte, where the tables and offsets live.
        limit = min(len(buf), 1024) if i % 2 else len(buf)
        for pos in rng.integers(0, limit, size=rng.integers(1, 6)):
            buf[pos] = rng.integers(0, 256)
        paths.append(str(_write(tmp_path, f"c{i}.tflite", bytes(buf))))
    proc = subprocess.run([sys.executable, "-c", FUZZ_CHILD, json.dumps(paths)], capture_output=True, text=True)
    assert proc.returncode == 0, f"loader died with {proc.returncode}: {proc.stderr[-500:]}"
    outcomes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(outcomes) == 60 and set(outcomes) <= {"ok", "error"}
