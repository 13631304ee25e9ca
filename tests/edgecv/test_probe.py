"""Corrupted .tflite files that crash LiteRT are caught in a child process, and good files are checked once."""

import subprocess
import sys

import numpy as np
import pytest

import edgecv
from edgecv import probe

# Byte edits to BlazeFace that are still valid flatbuffers yet made LiteRT 2.3.0 segfault in
# allocate_tensors()/invoke() when loaded directly (found by a 9,600-load corruption study).
BLAZEFACE_CRASHERS = {
    "dequantize_shape_a": [(215198, 24)],
    "dequantize_shape_b": [(215385, 200)],
}


@pytest.mark.parametrize("name", sorted(BLAZEFACE_CRASHERS))
def test_files_that_crash_litert_give_an_error_instead(shared_data, tmp_path, name):
    data = bytearray((shared_data / "models" / "face_detection_short_range.tflite").read_bytes())
    for pos, value in BLAZEFACE_CRASHERS[name]:
        data[pos] = value
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(bytes(data))
    # Loaded from a child of the test, so a missed crash fails this test instead of killing pytest.
    code = (
        "import sys, numpy as np, edgecv\n"
        "from edgecv.errors import ModelFileError\n"
        f"try:\n    m = edgecv.load({str(path)!r}); m.run(np.zeros((1, 128, 128, 3), np.float32))\n"
        "except ModelFileError as e:\n    print(e); sys.exit(7)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 7, f"expected a ModelFileError, got exit {proc.returncode}: {proc.stderr[-300:]}"
    assert "crashed the litert runtime (SIGSEGV)" in proc.stdout and len(proc.stdout.strip().splitlines()) == 1


def test_a_good_file_is_checked_once_then_remembered(exported, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGECV_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(probe, "_passed", set())
    path = next(a.path for a in exported.artifacts if a.format == "tflite")
    calls = []
    real_run = probe.child.run
    monkeypatch.setattr(probe.child, "run", lambda *a, **k: calls.append(a) or real_run(*a, **k))
    edgecv.load(path)
    edgecv.load(path)
    assert len(calls) == 1
    assert len(list((tmp_path / "probed").iterdir())) == 1
    probe._passed.clear()  # a new process: the on-disk record is enough
    edgecv.load(path)
    assert len(calls) == 1


def test_isolate_false_skips_the_child(exported, monkeypatch):
    monkeypatch.setattr(probe, "check_in_child", lambda *a, **k: pytest.fail("child check ran"))
    path = next(a.path for a in exported.artifacts if a.format == "tflite")
    model = edgecv.load(path, isolate=False)
    assert model.run(np.zeros((1, 16, 16, 3), np.float32))[0].shape == (1, 4)
