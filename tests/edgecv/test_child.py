"""edgecv.child: one runner for Python work in a child process, with real child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecv import child
from edgecv.errors import BackendError, ConfigError, ConversionError, MissingDependencyError, ModelFileError

WORKERS = "tests.edgecv.child_workers"
REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _wait_gone(pids, seconds: float = 10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return left


def test_a_result_comes_back_whatever_the_child_prints():
    result = child.call(f"{WORKERS}:echo", {"a": [1, 2.5, None], "b": "x"}, failure="echo failed")
    assert result["got"] == {"a": [1, 2.5, None], "b": "x"} and result["pid"] > 0


@pytest.mark.parametrize(
    "worker, request_, error, message",
    [
        ("raise_edgecv", {"cls": "ModelFileError", "message": "model.tflite is truncated"}, ModelFileError,
         "model.tflite is truncated"),
        ("raise_edgecv", {"cls": "ConfigError", "message": "runs must be >= 1"}, ConfigError, "runs must be >= 1"),
        ("raise_missing", None, MissingDependencyError,
         "onnx2tf is needed to convert ONNX to TFLite: pip install 'edgecv[convert]'"),
        ("raise_other", None, ConversionError, "work failed: ValueError: bad value"),
        ("exit_library", None, ConversionError, "work failed: SystemExit: 5"),
        ("segfault", None, ConversionError, "work failed: crashed (SIGSEGV): about to crash"),
        ("exit_code", None, ConversionError, "work failed: exit code 4: the reason"),
        ("out_of_memory", None, ConversionError, "work failed: ran out of memory (MemoryError): Unable to allocate "
         "1.00 PiB for an array with shape (1125899906842624,) and data type uint8"),
        ("missing_function", None, ConversionError,
         "work failed: exit code 1: AttributeError: module 'tests.edgecv.child_workers' has no attribute 'missing_function'"),
    ],
)
def test_a_failure_in_the_child_is_one_line_error_here(worker, request_, error, message):
    with pytest.raises(error) as info:
        child.call(f"{WORKERS}:{worker}", request_, failure="work failed", error=ConversionError)
    assert type(info.value) is error and str(info.value) == message


def test_an_edgecv_error_keeps_its_attributes():
    with pytest.raises(MissingDependencyError) as info:
        child.call(f"{WORKERS}:raise_missing", None, failure="work failed", error=BackendError)
    assert (info.value.package, info.value.extra) == ("onnx2tf", "convert")


def test_a_module_target_runs_its_main(tiny_onnx):
    """``python -m edgecv.probe`` serves its own work: loading a good file returns, a crash would not."""
    outcome = child.run("edgecv.probe", {"path": str(tiny_onnx), "backend": "onnxruntime"}, timeout=120)
    assert outcome.returned and outcome.returncode == 0 and outcome.signal is None


def test_a_timeout_kills_the_child_and_what_it_started(tmp_path):
    pids = tmp_path / "pids"
    start = time.monotonic()
    with pytest.raises(BackendError) as info:
        child.call(f"{WORKERS}:sleep", {"pids": str(pids)}, failure="sleeping failed", error=BackendError, timeout=3)
    assert str(info.value) == "sleeping failed: no result within 3 s" and time.monotonic() - start < 20
    assert _wait_gone([int(p) for p in pids.read_text().split()]) == []


PARENT = """
import signal, sys
from edgecv.child import call
signal.signal(signal.SIGINT, signal.default_int_handler)
call("tests.edgecv.child_workers:sleep", {"pids": sys.argv[1]}, failure="sleeping failed")
"""


@pytest.mark.parametrize(
    "sig, parent_exit, cleaned_up",
    [
        (signal.SIGTERM, -signal.SIGTERM, True),  # the parent kills the child's process group, then dies of SIGTERM
        (signal.SIGINT, -signal.SIGINT, True),  # KeyboardInterrupt: the same, and Python ends by SIGINT again
        # Nothing runs in the parent: the kernel signals the child's supervisor (PR_SET_PDEATHSIG), which removes
        # the request folder and kills the whole group, what the child started included.
        (signal.SIGKILL, -signal.SIGKILL, True),
    ],
)
def test_a_parent_killed_mid_run_takes_its_child_along(tmp_path, sig, parent_exit, cleaned_up):
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc and relies on PR_SET_PDEATHSIG")
    pids, tmp = tmp_path / "pids", tmp_path / "tmp"
    tmp.mkdir()
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(pids)], cwd=REPO, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "TMPDIR": str(tmp)})
    deadline = time.monotonic() + 60
    while not pids.exists() and time.monotonic() < deadline and parent.poll() is None:
        time.sleep(0.05)
    assert pids.exists(), parent.communicate()[1][-2000:]
    worker, grandchild = map(int, pids.read_text().split())
    try:
        parent.send_signal(sig)
        assert parent.wait(timeout=30) == parent_exit
        assert _wait_gone([worker]) == []
        if cleaned_up:
            assert _wait_gone([grandchild]) == [] and list(tmp.iterdir()) == []
    finally:
        for pid in (worker, grandchild):
            if _alive(pid):
                subprocess.run(["kill", "-9", str(pid)])


def test_what_a_child_leaves_running_is_killed_when_it_ends():
    if not sys.platform.startswith("linux"):
        pytest.skip("the supervisor is Linux only")
    result = child.call(f"{WORKERS}:leave_behind", None, failure="work failed")
    assert _wait_gone([result["grandchild"]]) == []


def test_a_request_folder_left_by_a_killed_run_is_swept_by_the_next(tmp_path, monkeypatch):
    """A folder whose lock nobody holds (its run was killed) goes; one a live run holds stays."""
    from edgecv.workdir import WorkDir

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setattr(child, "_swept", False)
    stale = tmp_path / f"{child.FOLDER_PREFIX}999999-abc"
    (stale / "sub").mkdir(parents=True)
    live = WorkDir.create(tmp_path, child.FOLDER_PREFIX)
    user = tmp_path / "edgecv-children-notes"
    user.mkdir()
    try:
        child.call(f"{WORKERS}:echo", {}, failure="echo failed")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.path.name, user.name])
    finally:
        live.remove()
