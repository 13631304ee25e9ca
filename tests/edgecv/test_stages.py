"""edgecv.stages: the named boundaries, their trace, and the hook that stops a process at one of them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from edgecv.stages import KILL_AT, KILL_SIGNAL, PUBLISH_STAGES, STAGES, TRACE, pattern_of, stage

# A process that passes a, b, b, c and prints after each.
PASS = "from edgecv.stages import stage\nfor name in 'abbc':\n    stage(name)\n    print('passed', name, flush=True)\n"


def _run(tmp_path, kill_at: str | None, sig: str | None = None) -> tuple[int, list[str], list[str]]:
    """Exit code, stdout lines and traced stages of PASS run with the hook set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGECV_")}
    env[TRACE] = str(tmp_path / "trace.txt")
    if kill_at is not None:
        env[KILL_AT] = kill_at
    if sig is not None:
        env[KILL_SIGNAL] = sig
    proc = subprocess.run([sys.executable, "-c", PASS], env=env, capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout.splitlines(), (tmp_path / "trace.txt").read_text().splitlines()


@pytest.mark.skipif(os.name != "posix", reason="signals as POSIX has them")
@pytest.mark.parametrize("kill_at, sig, code, printed", [
    (None, None, 0, "abbc"),
    ("b", None, -signal.SIGKILL, "a"),  # default SIGKILL, the first time b is passed
    ("b#2", None, -signal.SIGKILL, "ab"),  # the second time
    ("c", "TERM", -signal.SIGTERM, "abb"),
    ("c", "SIGINT", -signal.SIGINT, "abb"),  # KeyboardInterrupt, uncaught: Python ends by SIGINT
    ("d", None, 0, "abbc"),  # a stage never passed
    ("b#3", None, 0, "abbc"),
])
def test_the_hook_stops_the_process_at_the_named_pass(tmp_path, kill_at, sig, code, printed):
    returncode, stdout, trace = _run(tmp_path, kill_at, sig)
    assert returncode == code
    assert stdout == [f"passed {n}" for n in printed]
    assert trace == list("abbc")[: len(printed) + (returncode != 0)]


def test_without_the_environment_a_stage_does_nothing(tmp_path, monkeypatch):
    for name in (KILL_AT, TRACE):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    stage("staged")
    assert list(tmp_path.iterdir()) == []


def test_the_trace_appends_each_stage(tmp_path, monkeypatch):
    monkeypatch.delenv(KILL_AT, raising=False)
    monkeypatch.setenv(TRACE, str(tmp_path / "t.txt"))
    for name in ("built:onnx.fp32", "staged", "staged"):
        stage(name)
    assert (tmp_path / "t.txt").read_text() == "built:onnx.fp32\nstaged\nstaged\n"


@pytest.mark.parametrize("name, pattern", [
    ("built:openvino.fp32", "built:{format}.{precision}"),
    ("child-started:edgecv.bench", "child-started:{target}"),
    ("moved:sub/m.fp32.xml.json", "moved:{file}"),
    ("staged", "staged"),
    ("built:", None),
    ("stage", None),
])
def test_pattern_of(name, pattern):
    assert pattern_of(name) == pattern


def test_every_publish_stage_is_a_named_stage():
    assert {p for stages in PUBLISH_STAGES.values() for p in stages} <= set(STAGES)
