"""TensorFlow's and absl's own log lines (C++, straight to fd 2) stay out of a workstation command's output:
they go to a log file, named on failure, and ``-v`` shows them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.workstation

# absl/glog lines ("E0000 00:00:1796418343.589 13287 cuda_platform.cc:52] failed call to cuInit"), TensorFlow's
# dated lines ("2026-01-01 12:00:00.1: I tensorflow/..."), and the rest of what TF prints at start.
LIBRARY_LINE = re.compile(r"^[IWEF]\d{4} |^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[.,]\d+: [IWEF] |cuda|absl|oneDNN|XNNPACK", re.I)


def _edgecv(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # Level 0: TensorFlow logs everything it can, so the test sees its lines whatever the machine.
    env = {**os.environ, "EDGECV_CACHE_DIR": str(cwd / "cache"), "TF_CPP_MIN_LOG_LEVEL": "0"}
    return subprocess.run([sys.executable, "-m", "edgecv", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def _library_lines(text: str) -> list[str]:
    return [line for line in text.replace("\r", "\n").splitlines() if LIBRARY_LINE.search(line)]


def test_export_keeps_library_lines_in_the_log_file(tiny_keras_path, tmp_path):
    done = _edgecv("export", str(tiny_keras_path), "--to", "tflite", "--quant", "fp32", "--out", "art", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _library_lines(done.stderr) == [] and _library_lines(done.stdout) == []
    assert "tflite" in done.stdout  # the command's own output is still there
    log = (tmp_path / "cache" / "logs" / "export.log").read_text()
    assert _library_lines(log), log[-2000:]  # TensorFlow did print: into the file
    assert "libraries' log" not in done.stderr  # named only on failure


def test_verbose_shows_library_lines(tiny_keras_path, tmp_path):
    done = _edgecv("-v", "export", str(tiny_keras_path), "--to", "tflite", "--quant", "fp32", "--out", "art", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _library_lines(done.stderr)
    assert not (tmp_path / "cache" / "logs" / "export.log").exists()


def test_a_failure_names_the_log_file(tmp_path):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a keras archive")
    done = _edgecv("export", str(bad), "--to", "tflite", "--out", "art", cwd=tmp_path)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("edgecv: error: ") and _library_lines(done.stderr) == []
    log = tmp_path / "cache" / "logs" / "export.log"
    assert _library_lines(log.read_text())  # TensorFlow was imported to read the file, and logged
    assert lines[1:] == [f"edgecv: the libraries' log (TensorFlow and others) is in {log}"]
